//! Attributes the server derives from a registered X.509 certificate (KMIP 2.x section 4:
//! Certificate Length and the Subject/Issuer name fields). They are read-only for clients.

use super::OpError;
use kmip_wire::model::Attribute;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Tag;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};
use x509_parser::x509::AttributeTypeAndValue;

/// Every attribute [`derived_attributes`] may set.
pub(super) const DERIVED: &[Tag] = &[
    tags::CERTIFICATE_LENGTH,
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
    name_fields(cert.subject(), true, &mut out);
    name_fields(cert.issuer(), false, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_issuer_fields_come_from_the_certificate() {
        let ca = crate::tooling::pki::init_ca("Test CA", 30).unwrap();
        let leaf = crate::tooling::pki::issue_client_cert(&ca, "purefa", 30).unwrap();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        use rustls::pki_types::pem::PemObject;
        let attrs = derived_attributes(&der).unwrap();
        let text = |tag| {
            attrs
                .iter()
                .find(|a| a.is(tag))
                .and_then(|a| a.as_text().map(str::to_owned))
        };
        assert_eq!(
            text(tags::CERTIFICATE_SUBJECT_CN).as_deref(),
            Some("purefa")
        );
        assert_eq!(
            text(tags::CERTIFICATE_ISSUER_CN).as_deref(),
            Some("Test CA")
        );
        assert_eq!(attrs[0].as_int(), Some(der.len() as i32));
        assert!(derived_attributes(b"not a certificate").is_err());
    }
}
