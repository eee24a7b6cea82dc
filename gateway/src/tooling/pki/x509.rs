//! Reading certificates: PEM input bounded and parsed, and what `pki list` and the expiry
//! gauges show of a certificate.

use rustls_pki_types::pem::{self as pki_pem, PemObject};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use super::{CertInfo, PkiError, Serial, MAX_PEM_LEN};

/// Describes the one certificate in `pem`.
pub fn describe_cert(pem: &str) -> Result<CertInfo, PkiError> {
    let der = parse_single_cert_der(pem, "certificate")?;
    describe_der(&der)
}

/// The subject alternative names of the one certificate in `pem`, as an operator writes them
/// (`DNS:kmip.example.net`, `IP:10.0.0.7`; other kinds by their type).
pub fn subject_alt_names(pem: &str) -> Result<Vec<String>, PkiError> {
    use x509_parser::extensions::GeneralName;
    let der = parse_single_cert_der(pem, "certificate")?;
    let cert = parse_x509(&der, "certificate")?;
    let mut names = Vec::new();
    for ext in cert.extensions() {
        let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
            continue;
        };
        for name in &san.general_names {
            names.push(match name {
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::IPAddress(ip) => match <[u8; 4]>::try_from(*ip) {
                    Ok(v4) => format!("IP:{}", std::net::Ipv4Addr::from(v4)),
                    Err(_) => match <[u8; 16]>::try_from(*ip) {
                        Ok(v6) => format!("IP:{}", std::net::Ipv6Addr::from(v6)),
                        Err(_) => format!("IP:{}", hex::encode(ip)),
                    },
                },
                GeneralName::RFC822Name(m) => format!("email:{m}"),
                GeneralName::URI(u) => format!("URI:{u}"),
                other => format!("{other:?}"),
            });
        }
    }
    Ok(names)
}

/// Describes every certificate of a PEM bundle (such as an exported CA tree), in order.
pub fn describe_certs(pem: &str) -> Result<Vec<CertInfo>, PkiError> {
    check_len("certificate bundle", pem.len())?;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|der| {
            let der = der.map_err(|e| pem_error("certificate", &e))?;
            describe_der(&der)
        })
        .collect()
}

pub(super) fn check_len(what: &'static str, len: usize) -> Result<(), PkiError> {
    if len > MAX_PEM_LEN {
        return Err(PkiError::TooLarge {
            what,
            len,
            limit: MAX_PEM_LEN,
        });
    }
    Ok(())
}

pub(super) fn pem_error(what: &'static str, error: &pki_pem::Error) -> PkiError {
    // Only a fixed reason: the error's own text may quote input, which can be a key.
    let reason = match error {
        pki_pem::Error::NoItemsFound => "no such PEM section",
        pki_pem::Error::MissingSectionEnd { .. } => "a PEM section has no end marker",
        pki_pem::Error::IllegalSectionStart { .. } => "malformed PEM section header",
        pki_pem::Error::Base64Decode(_) => "invalid base64",
        _ => "unreadable PEM",
    };
    PkiError::Pem { what, reason }
}

fn first_common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

pub(super) fn parse_single_cert_der(
    pem: &str,
    what: &'static str,
) -> Result<CertificateDer<'static>, PkiError> {
    check_len(what, pem.len())?;
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, &e))?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        0 => Err(PkiError::Pem {
            what,
            reason: "no certificate found",
        }),
        count => Err(PkiError::CertificateCount { count }),
    }
}

pub(super) fn parse_x509<'a>(
    der: &'a CertificateDer<'_>,
    what: &'static str,
) -> Result<X509Certificate<'a>, PkiError> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| PkiError::Parse {
        what,
        reason: e.to_string(),
    })?;
    Ok(cert)
}

pub(super) fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn describe_der(der: &CertificateDer<'_>) -> Result<CertInfo, PkiError> {
    let cert = parse_x509(der, "certificate")?;
    let validity = cert.validity();
    let serial_hex = Serial::from_bytes(cert.raw_serial())
        .map(|s| s.to_hex())
        .unwrap_or_else(|_| hex::encode(cert.raw_serial()));
    Ok(CertInfo {
        subject_cn: first_common_name(cert.subject()),
        issuer_cn: first_common_name(cert.issuer()),
        serial_hex,
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        sha256_fingerprint_hex: hex::encode(Sha256::digest(der.as_ref())),
        is_ca: cert.is_ca(),
    })
}
