//! Attributes the server derives from a registered or issued X.509 certificate: the 1.x
//! Certificate Identifier/Subject/Issuer structures (text), the X.509 Certificate
//! Identifier/Subject/Issuer structures (DER), the 2.x name fields (Certificate Subject CN, ...),
//! Certificate Length, Digital Signature Algorithm, and the Cryptographic Algorithm and Length of
//! the certified key. They are read-only for clients; each version's answer carries only the
//! ones that version defines.

use super::OpError;
use kmip_wire::model::{Attribute, CryptographicAlgorithm, KmipEnum};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use x509_parser::oid_registry::{self as oids, Oid};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate, X509Name};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::AttributeTypeAndValue;

/// Every attribute [`derived_attributes`] may set that only a certificate has (the key's
/// Cryptographic Algorithm and Length are derived too, but clients set them on keys).
pub(super) const DERIVED: &[Tag] = &[
    tags::CERTIFICATE_LENGTH,
    tags::CERTIFICATE_IDENTIFIER,
    tags::CERTIFICATE_SUBJECT,
    tags::CERTIFICATE_ISSUER,
    tags::X_509_CERTIFICATE_IDENTIFIER,
    tags::X_509_CERTIFICATE_SUBJECT,
    tags::X_509_CERTIFICATE_ISSUER,
    tags::DIGITAL_SIGNATURE_ALGORITHM,
    tags::CERTIFICATE_SUBJECT_CN,
    tags::CERTIFICATE_SUBJECT_O,
    tags::CERTIFICATE_SUBJECT_OU,
    tags::CERTIFICATE_SUBJECT_EMAIL,
    tags::CERTIFICATE_SUBJECT_C,
    tags::CERTIFICATE_SUBJECT_ST,
    tags::CERTIFICATE_SUBJECT_L,
    tags::CERTIFICATE_ISSUER_CN,
    tags::CERTIFICATE_ISSUER_O,
    tags::CERTIFICATE_ISSUER_OU,
    tags::CERTIFICATE_ISSUER_EMAIL,
    tags::CERTIFICATE_ISSUER_C,
    tags::CERTIFICATE_ISSUER_ST,
    tags::CERTIFICATE_ISSUER_L,
];

/// Digital Signature Algorithm values (KMIP 1.4 9.1.3.2.7, 2.1 11.16) by signature OID.
const SIGNATURE_ALGORITHMS: &[(&Oid<'static>, u32)] = &[
    (&oids::OID_PKCS1_SHA1WITHRSA, 0x03),
    (&oids::OID_PKCS1_SHA224WITHRSA, 0x04),
    (&oids::OID_PKCS1_SHA256WITHRSA, 0x05),
    (&oids::OID_PKCS1_SHA384WITHRSA, 0x06),
    (&oids::OID_PKCS1_SHA512WITHRSA, 0x07),
    (&oids::OID_PKCS1_RSASSAPSS, 0x08),
    (&oids::OID_SIG_ECDSA_WITH_SHA224, 0x0D),
    (&oids::OID_SIG_ECDSA_WITH_SHA256, 0x0E),
    (&oids::OID_SIG_ECDSA_WITH_SHA384, 0x0F),
    (&oids::OID_SIG_ECDSA_WITH_SHA512, 0x10),
];

fn text_of(a: &AttributeTypeAndValue<'_>) -> Option<String> {
    a.as_str().ok().map(str::to_owned)
}

fn name_fields(name: &X509Name<'_>, subject: bool, out: &mut Vec<Attribute>) {
    let pick = |s: Tag, i: Tag| if subject { s } else { i };
    let fields: [(Tag, Vec<String>); 7] = [
        (
            pick(tags::CERTIFICATE_SUBJECT_CN, tags::CERTIFICATE_ISSUER_CN),
            name.iter_common_name().filter_map(|a| text_of(a)).collect(),
        ),
        (
            pick(tags::CERTIFICATE_SUBJECT_O, tags::CERTIFICATE_ISSUER_O),
            name.iter_organization()
                .filter_map(|a| text_of(a))
                .collect(),
        ),
        (
            pick(tags::CERTIFICATE_SUBJECT_OU, tags::CERTIFICATE_ISSUER_OU),
            name.iter_organizational_unit()
                .filter_map(|a| text_of(a))
                .collect(),
        ),
        (
            pick(
                tags::CERTIFICATE_SUBJECT_EMAIL,
                tags::CERTIFICATE_ISSUER_EMAIL,
            ),
            name.iter_email().filter_map(|a| text_of(a)).collect(),
        ),
        (
            pick(tags::CERTIFICATE_SUBJECT_C, tags::CERTIFICATE_ISSUER_C),
            name.iter_country().filter_map(|a| text_of(a)).collect(),
        ),
        (
            pick(tags::CERTIFICATE_SUBJECT_ST, tags::CERTIFICATE_ISSUER_ST),
            name.iter_state_or_province()
                .filter_map(|a| text_of(a))
                .collect(),
        ),
        (
            pick(tags::CERTIFICATE_SUBJECT_L, tags::CERTIFICATE_ISSUER_L),
            name.iter_locality().filter_map(|a| text_of(a)).collect(),
        ),
    ];
    for (tag, values) in fields {
        out.extend(values.iter().map(|v| Attribute::text(tag, v)));
    }
}

/// One DER element at the start of `b`: (its header length, the whole element, what follows).
fn der_element(b: &[u8]) -> Option<(usize, &[u8], &[u8])> {
    let first_len = *b.get(1)?;
    let (header, len) = if first_len < 0x80 {
        (2, usize::from(first_len))
    } else {
        let n = usize::from(first_len & 0x7f);
        // A length of more than four bytes cannot occur in a certificate x509-parser accepted.
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
        (2 + n, len)
    };
    let end = header.checked_add(len)?;
    Some((header, b.get(..end)?, b.get(end..)?))
}

/// The elements of one DER `SEQUENCE`, each as its own DER; `None` unless `der` is exactly one
/// well-formed sequence.
fn sequence_elements(der: &[u8]) -> Option<Vec<&[u8]>> {
    const SEQUENCE: u8 = 0x30;
    let (header, whole, rest) = der_element(der)?;
    if !rest.is_empty() || whole.first() != Some(&SEQUENCE) {
        return None;
    }
    let mut content = &whole[header..];
    let mut out = Vec::new();
    while !content.is_empty() {
        let (_, e, rest) = der_element(content)?;
        out.push(e);
        content = rest;
    }
    Some(out)
}

/// An alternative name as text, in the form OpenSSL prints it.
fn general_name_text(n: &GeneralName<'_>) -> String {
    match n {
        GeneralName::DNSName(s) => format!("DNS:{s}"),
        GeneralName::RFC822Name(s) => format!("email:{s}"),
        GeneralName::URI(s) => format!("URI:{s}"),
        GeneralName::DirectoryName(dn) => format!("DirName:{dn}"),
        GeneralName::IPAddress(b) => match b.len() {
            4 => format!("IP:{}", std::net::Ipv4Addr::from([b[0], b[1], b[2], b[3]])),
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                format!("IP:{}", std::net::Ipv6Addr::from(a))
            }
            _ => format!("IP:{}", hex_text(b)),
        },
        other => other.to_string(),
    }
}

fn hex_text(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The alternative names of one extension (Subject or Issuer Alternative Name): each as text
/// and as the DER of its GeneralName, in the certificate's order.
fn alternative_names(cert: &X509Certificate<'_>, subject: bool) -> (Vec<String>, Vec<Vec<u8>>) {
    for ext in cert.extensions() {
        let names = match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) if subject => &san.general_names,
            ParsedExtension::IssuerAlternativeName(ian) if !subject => &ian.general_names,
            _ => continue,
        };
        let texts = names.iter().map(general_name_text).collect();
        let ders = sequence_elements(ext.value)
            .filter(|e| e.len() == names.len())
            .map(|e| e.into_iter().map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        return (texts, ders);
    }
    (Vec::new(), Vec::new())
}

fn structure(tag: Tag, items: Vec<Ttlv>) -> Attribute {
    Attribute::new(tag, Value::Structure(items))
}

fn text_item(tag: Tag, s: &str) -> Ttlv {
    Ttlv::new(tag, Value::TextString(s.to_owned()))
}

fn bytes_item(tag: Tag, b: &[u8]) -> Ttlv {
    Ttlv::new(tag, Value::ByteString(bytes::Bytes::copy_from_slice(b)))
}

/// The 1.x (text) and X.509 (DER) identifier, subject and issuer structures.
fn identity_structures(cert: &X509Certificate<'_>, out: &mut Vec<Attribute>) {
    let tbs = &cert.tbs_certificate;
    let (subject_alt_text, subject_alt_der) = alternative_names(cert, true);
    let (issuer_alt_text, issuer_alt_der) = alternative_names(cert, false);
    let issuer_dn = tbs.issuer.to_string();
    let subject_dn = tbs.subject.to_string();
    out.push(structure(
        tags::CERTIFICATE_IDENTIFIER,
        vec![
            text_item(tags::ISSUER, &issuer_dn),
            text_item(tags::SERIAL_NUMBER, &tbs.serial.to_string()),
        ],
    ));
    let with_alts = |tag: Tag, first: Ttlv, alts: Vec<Ttlv>| {
        let mut items = vec![first];
        items.extend(alts);
        structure(tag, items)
    };
    out.push(with_alts(
        tags::CERTIFICATE_SUBJECT,
        text_item(tags::CERTIFICATE_SUBJECT_DISTINGUISHED_NAME, &subject_dn),
        subject_alt_text
            .iter()
            .map(|t| text_item(tags::CERTIFICATE_SUBJECT_ALTERNATIVE_NAME, t))
            .collect(),
    ));
    out.push(with_alts(
        tags::CERTIFICATE_ISSUER,
        text_item(tags::CERTIFICATE_ISSUER_DISTINGUISHED_NAME, &issuer_dn),
        issuer_alt_text
            .iter()
            .map(|t| text_item(tags::CERTIFICATE_ISSUER_ALTERNATIVE_NAME, t))
            .collect(),
    ));
    out.push(structure(
        tags::X_509_CERTIFICATE_IDENTIFIER,
        vec![
            bytes_item(tags::ISSUER_DISTINGUISHED_NAME, tbs.issuer.as_raw()),
            bytes_item(tags::CERTIFICATE_SERIAL_NUMBER, tbs.raw_serial()),
        ],
    ));
    out.push(with_alts(
        tags::X_509_CERTIFICATE_SUBJECT,
        bytes_item(tags::SUBJECT_DISTINGUISHED_NAME, tbs.subject.as_raw()),
        subject_alt_der
            .iter()
            .map(|d| bytes_item(tags::SUBJECT_ALTERNATIVE_NAME, d))
            .collect(),
    ));
    out.push(with_alts(
        tags::X_509_CERTIFICATE_ISSUER,
        bytes_item(tags::ISSUER_DISTINGUISHED_NAME, tbs.issuer.as_raw()),
        issuer_alt_der
            .iter()
            .map(|d| bytes_item(tags::ISSUER_ALTERNATIVE_NAME, d))
            .collect(),
    ));
}

/// The certified key's Cryptographic Algorithm and Length, when KMIP names its algorithm.
pub(super) fn key_algorithm(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Option<(CryptographicAlgorithm, i32)> {
    let alg = &spki.algorithm.algorithm;
    if *alg == oids::OID_SIG_ED25519 {
        return Some((CryptographicAlgorithm::Ed25519, 256));
    }
    if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())?;
        let bits = [
            (oids::OID_EC_P256, 256),
            (oids::OID_NIST_EC_P384, 384),
            (oids::OID_NIST_EC_P521, 521),
        ]
        .into_iter()
        .find(|(oid, _)| *oid == curve)
        .map(|(_, bits)| bits)?;
        return Some((CryptographicAlgorithm::Ecdsa, bits));
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => Some((
            CryptographicAlgorithm::Rsa,
            i32::try_from(rsa.key_size()).ok()?,
        )),
        _ => None,
    }
}

/// The attributes of an X.509 certificate given as DER; a value that is not a certificate is
/// refused rather than stored unexamined.
pub(super) fn derived_attributes(der: &[u8]) -> Result<Vec<Attribute>, OpError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|_| {
        OpError::InvalidField("Certificate Value is not a DER X.509 certificate".into())
    })?;
    if !rest.is_empty() {
        return Err(OpError::InvalidField(
            "Certificate Value has bytes after the certificate".into(),
        ));
    }
    let mut out = vec![Attribute::integer(
        tags::CERTIFICATE_LENGTH,
        i32::try_from(der.len()).unwrap_or(i32::MAX),
    )];
    identity_structures(&cert, &mut out);
    if let Some((_, value)) = SIGNATURE_ALGORITHMS
        .iter()
        .find(|(oid, _)| **oid == cert.signature_algorithm.algorithm)
    {
        out.push(Attribute::new(
            tags::DIGITAL_SIGNATURE_ALGORITHM,
            Value::Enumeration(*value),
        ));
    }
    if let Some((alg, bits)) = key_algorithm(cert.public_key()) {
        out.push(Attribute::new(
            tags::CRYPTOGRAPHIC_ALGORITHM,
            Value::Enumeration(alg.to_u32()),
        ));
        out.push(Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, bits));
    }
    name_fields(cert.subject(), true, &mut out);
    name_fields(cert.issuer(), false, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests;
