//! Unit tests of the derived certificate attributes, against certificates whose contents the
//! test chose.

use super::*;
use crate::tooling::pki::{self, CertProfile, IssueOptions, KeyType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn find(attrs: &[Attribute], tag: Tag) -> &Attribute {
    attrs
        .iter()
        .find(|a| a.is(tag))
        .unwrap_or_else(|| panic!("{tag:?} missing from {attrs:?}"))
}

fn items(a: &Attribute) -> &[Ttlv] {
    match &a.value {
        Value::Structure(items) => items,
        other => panic!("not a structure: {other:?}"),
    }
}

fn bytes_of(t: &Ttlv) -> &[u8] {
    match &t.value {
        Value::ByteString(b) => b,
        other => panic!("not bytes: {other:?}"),
    }
}

fn text(t: &Ttlv) -> &str {
    match &t.value {
        Value::TextString(s) => s,
        other => panic!("not text: {other:?}"),
    }
}

/// A server certificate for `kmip.example` and 127.0.0.1 with an RSA-2048 key, issued by a P-256
/// CA (so signed with ECDSA-SHA256), serial 0x0102A0.
fn server_certificate() -> (Vec<u8>, Vec<u8>) {
    let ca = pki::init_ca("Test CA", 30).unwrap();
    let mut options = IssueOptions::new(
        Some("kmip.example".into()),
        CertProfile::Server {
            dns_names: vec!["kmip.example".into()],
            ip_addrs: vec!["127.0.0.1".parse().unwrap()],
        },
        30,
    )
    .unwrap();
    options.key_type = KeyType::Rsa2048;
    options.serial = pki::Serial::from_bytes(&[0x01, 0x02, 0xA0]).unwrap();
    let leaf = pki::issue_cert(&ca, &options).unwrap();
    (der_of(&leaf.cert_pem), der_of(&ca.cert_pem))
}

#[test]
fn subject_and_issuer_fields_come_from_the_certificate() {
    let ca = pki::init_ca("Test CA", 30).unwrap();
    let leaf = pki::issue_client_cert(&ca, "purefa", 30).unwrap();
    let der = der_of(&leaf.cert_pem);
    let attrs = derived_attributes(&der).unwrap();
    assert_eq!(
        find(&attrs, tags::CERTIFICATE_SUBJECT_CN).as_text(),
        Some("purefa")
    );
    assert_eq!(
        find(&attrs, tags::CERTIFICATE_ISSUER_CN).as_text(),
        Some("Test CA")
    );
    assert_eq!(attrs[0].as_int(), Some(der.len() as i32));
    assert!(derived_attributes(b"not a certificate").is_err());
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(derived_attributes(&trailing).is_err());
}

#[test]
fn x509_identifier_subject_and_issuer_hold_the_der_names_serial_and_alternative_names() {
    let (der, ca_der) = server_certificate();
    let attrs = derived_attributes(&der).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let ca_subject = ca.subject().as_raw();

    let id = items(find(&attrs, tags::X_509_CERTIFICATE_IDENTIFIER));
    assert_eq!(id[0].tag, tags::ISSUER_DISTINGUISHED_NAME);
    assert_eq!(
        bytes_of(&id[0]),
        ca_subject,
        "the issuer DN is the CA's subject DN"
    );
    assert_eq!(id[1].tag, tags::CERTIFICATE_SERIAL_NUMBER);
    assert_eq!(bytes_of(&id[1]), [0x01, 0x02, 0xA0]);

    let subject = items(find(&attrs, tags::X_509_CERTIFICATE_SUBJECT));
    assert_eq!(subject[0].tag, tags::SUBJECT_DISTINGUISHED_NAME);
    // SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, UTF8String "kmip.example" } } }
    let mut cn = vec![
        0x30, 0x17, 0x31, 0x15, 0x30, 0x13, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x0c,
    ];
    cn.extend_from_slice(b"kmip.example");
    assert_eq!(bytes_of(&subject[0]), cn);
    // dNSName [2] and iPAddress [7], each as its GeneralName DER.
    let mut dns = vec![0x82, 0x0c];
    dns.extend_from_slice(b"kmip.example");
    assert_eq!(subject.len(), 3);
    assert_eq!(subject[1].tag, tags::SUBJECT_ALTERNATIVE_NAME);
    assert_eq!(bytes_of(&subject[1]), dns);
    assert_eq!(bytes_of(&subject[2]), [0x87, 4, 127, 0, 0, 1]);

    let issuer = items(find(&attrs, tags::X_509_CERTIFICATE_ISSUER));
    assert_eq!(
        issuer.len(),
        1,
        "the certificate has no Issuer Alternative Name"
    );
    assert_eq!(bytes_of(&issuer[0]), ca_subject);
}

#[test]
fn the_1x_structures_name_the_certificate_in_text() {
    let (der, _) = server_certificate();
    let attrs = derived_attributes(&der).unwrap();
    let id = items(find(&attrs, tags::CERTIFICATE_IDENTIFIER));
    assert_eq!((id[0].tag, text(&id[0])), (tags::ISSUER, "CN=Test CA"));
    // 0x0102A0 = 66208.
    assert_eq!((id[1].tag, text(&id[1])), (tags::SERIAL_NUMBER, "66208"));
    let subject = items(find(&attrs, tags::CERTIFICATE_SUBJECT));
    let texts: Vec<&str> = subject.iter().map(text).collect();
    assert_eq!(
        texts,
        ["CN=kmip.example", "DNS:kmip.example", "IP:127.0.0.1"]
    );
    assert_eq!(subject[1].tag, tags::CERTIFICATE_SUBJECT_ALTERNATIVE_NAME);
    let issuer = items(find(&attrs, tags::CERTIFICATE_ISSUER));
    assert_eq!(
        (issuer[0].tag, text(&issuer[0])),
        (tags::CERTIFICATE_ISSUER_DISTINGUISHED_NAME, "CN=Test CA")
    );
}

#[test]
fn signature_and_key_algorithms_come_from_the_certificate() {
    let (der, ca_der) = server_certificate();
    let attrs = derived_attributes(&der).unwrap();
    // ECDSA with SHA-256: the P-256 CA signed it.
    assert_eq!(
        find(&attrs, tags::DIGITAL_SIGNATURE_ALGORITHM).value,
        Value::Enumeration(0x0E)
    );
    assert_eq!(
        find(&attrs, tags::CRYPTOGRAPHIC_ALGORITHM).as_enum(),
        Some(CryptographicAlgorithm::Rsa)
    );
    assert_eq!(
        find(&attrs, tags::CRYPTOGRAPHIC_LENGTH).as_int(),
        Some(2048)
    );
    let ca_attrs = derived_attributes(&ca_der).unwrap();
    assert_eq!(
        find(&ca_attrs, tags::CRYPTOGRAPHIC_ALGORITHM).as_enum(),
        Some(CryptographicAlgorithm::Ecdsa)
    );
    assert_eq!(
        find(&ca_attrs, tags::CRYPTOGRAPHIC_LENGTH).as_int(),
        Some(256)
    );
}

#[test]
fn malformed_sequences_are_not_split() {
    assert_eq!(
        sequence_elements(&[0x30, 0x04, 0x82, 0x01, b'a', 0x87]),
        None,
        "an element running past the sequence"
    );
    assert_eq!(sequence_elements(&[0x31, 0x00]), None, "not a SEQUENCE");
    assert_eq!(
        sequence_elements(&[0x30, 0x00, 0x00]),
        None,
        "bytes after it"
    );
    assert_eq!(
        sequence_elements(&[0x30, 0x03, 0x82, 0x01, b'a']),
        Some(vec![&[0x82, 0x01, b'a'][..]])
    );
}
