//! Tests of the PKI: issuance, CSR signing, CRLs, the development PKI.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, PublicKeyData, RsaKeySize, PKCS_RSA_SHA256,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, CertificateSigningRequestDer, PrivateKeyDer,
    ServerName, UnixTime,
};
use time::Duration;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::issue::key_from_pem;
use super::*;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &CaBundle) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(roots)
}

fn client_verifier(ca: &CaBundle, crl_pem: &str) -> Arc<dyn ClientCertVerifier> {
    let crl = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).unwrap();
    WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .with_crls([crl])
        .build()
        .unwrap()
}

fn verify_client(verifier: &dyn ClientCertVerifier, cert_pem: &str) -> Result<(), rustls::Error> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    verifier
        .verify_client_cert(&der, &[], UnixTime::now())
        .map(|_| ())
}

fn empty_crl(ca: &CaBundle) -> String {
    let now = OffsetDateTime::now_utc();
    make_crl(ca, &[], now, now + Duration::days(7), 1).unwrap()
}

fn serial_of(cert_pem: &str) -> Serial {
    Serial::from_hex(&describe_cert(cert_pem).unwrap().serial_hex).unwrap()
}

fn with_x509<R>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let (rest, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    assert!(rest.is_empty());
    f(&cert)
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn csr_pem_from_der(der: &[u8]) -> String {
    let body = base64(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    )
}

/// A CSR like the array's: its own key, a subject with more than a CN, and
/// requested extensions the CA must not copy.
fn client_csr(common_name: Option<&str>, key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Pure Storage");
    if let Some(cn) = common_name {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serialize_request(key).unwrap().pem().unwrap()
}

#[test]
fn issued_certificates_parse_and_carry_the_right_extensions() {
    let ca = init_ca("Pure Storage FlashArray", 365).unwrap();
    with_x509(&ca.cert_pem, |cert| {
        assert!(cert.is_ca());
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert!(!ku.digital_signature());
    });
    let ca_info = describe_cert(&ca.cert_pem).unwrap();
    assert_eq!(
        ca_info.subject_cn.as_deref(),
        Some("Pure Storage FlashArray")
    );
    assert_eq!(ca_info.issuer_cn, ca_info.subject_cn);
    assert!(ca_info.is_ca);
    let lifetime = ca_info.not_after - ca_info.not_before;
    assert!(
        lifetime >= Duration::days(365) && lifetime <= Duration::days(365) + Duration::hours(1)
    );

    let server = issue_server_cert(
        &ca,
        &["kmip.example.net".to_owned()],
        &[IpAddr::from([10, 0, 0, 7])],
        90,
    )
    .unwrap();
    with_x509(&server.cert_pem, |cert| {
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let sans = &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        assert!(sans.contains(&GeneralName::DNSName("kmip.example.net")));
        assert!(sans.contains(&GeneralName::IPAddress(&[10, 0, 0, 7])));
    });

    let client = issue_client_cert(&ca, "purefa", 30).unwrap();
    with_x509(&client.cert_pem, |cert| {
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    });
    let info = describe_cert(&client.cert_pem).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("purefa"));
    assert_eq!(info.issuer_cn.as_deref(), Some("Pure Storage FlashArray"));
    assert_eq!(info.sha256_fingerprint_hex.len(), 64);
    assert_ne!(info.serial_hex, ca_info.serial_hex);
    assert!(PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).is_ok());
}

#[test]
fn client_certificate_verifies_until_its_serial_is_in_the_crl() {
    let ca = init_ca("test CA", 30).unwrap();
    let client = issue_client_cert(&ca, "purefa", 30).unwrap();
    let other = issue_client_cert(&ca, "vsphere", 30).unwrap();

    let verifier = client_verifier(&ca, &empty_crl(&ca));
    verify_client(&*verifier, &client.cert_pem).unwrap();
    verify_client(&*verifier, &other.cert_pem).unwrap();

    let now = OffsetDateTime::now_utc();
    let crl = make_crl(
        &ca,
        &[(serial_of(&client.cert_pem), now)],
        now,
        now + Duration::days(7),
        2,
    )
    .unwrap();
    let verifier = client_verifier(&ca, &crl);
    let err = verify_client(&*verifier, &client.cert_pem).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
    verify_client(&*verifier, &other.cert_pem).unwrap();
}

#[test]
fn crl_lists_the_revoked_serials() {
    let ca = init_ca("test CA", 30).unwrap();
    let serials = [Serial::random().unwrap(), Serial::from_hex("80").unwrap()];
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let revoked: Vec<_> = serials.iter().map(|s| (s.clone(), now)).collect();
    let crl_pem = make_crl(&ca, &revoked, now, now + Duration::days(1), 42).unwrap();
    let der = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).unwrap();
    let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).unwrap();
    assert_eq!(
        crl.crl_number().map(|n| n.to_string()),
        Some("42".to_owned())
    );
    let listed: Vec<Serial> = crl
        .iter_revoked_certificates()
        .map(|r| Serial::from_bytes(r.raw_serial()).unwrap())
        .collect();
    assert_eq!(listed, serials);
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
    let (_, ca_cert) = X509Certificate::from_der(ca_der.as_ref()).unwrap();
    crl.verify_signature(ca_cert.public_key()).unwrap();

    assert!(matches!(
        make_crl(&ca, &[], now, now, 43),
        Err(PkiError::Rcgen(rcgen::Error::InvalidCrlNextUpdate))
    ));
}

#[test]
fn signed_csr_keeps_only_the_common_name_and_gets_client_auth() {
    let ca = init_ca("Pure Storage FlashArray", 30).unwrap();
    let array_key = KeyPair::generate().unwrap();
    let csr = client_csr(Some("purefa"), &array_key);
    let serial = Serial::random().unwrap();
    let cert_pem = sign_csr(&ca, &csr, 365, &serial).unwrap();

    let info = describe_cert(&cert_pem).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("purefa"));
    assert_eq!(info.serial_hex, serial.to_hex());
    with_x509(&cert_pem, |cert| {
        assert_eq!(cert.public_key().raw, array_key.subject_public_key_info());
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(cert.subject().iter_organization().count(), 0);
    });
    verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &cert_pem).unwrap();
}

#[test]
fn rsa_csr_is_signed() {
    // Arrays often make RSA keys; the ECDSA CA must sign them all the same.
    let ca = init_ca("test CA", 30).unwrap();
    let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let cert_pem = sign_csr(
        &ca,
        &client_csr(Some("purefa"), &key),
        30,
        &Serial::random().unwrap(),
    )
    .unwrap();
    verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &cert_pem).unwrap();
}

#[test]
fn csr_without_usable_common_name_is_refused() {
    let ca = init_ca("test CA", 30).unwrap();
    let key = KeyPair::generate().unwrap();
    let serial = Serial::random().unwrap();
    let sign = |cn: Option<&str>| sign_csr(&ca, &client_csr(cn, &key), 30, &serial);
    assert!(matches!(sign(None), Err(PkiError::MissingCommonName)));
    assert!(matches!(sign(Some("")), Err(PkiError::MissingCommonName)));
    assert!(matches!(sign(Some("*")), Err(PkiError::WildcardCommonName)));
    assert!(matches!(
        sign(Some("*.arrays.example")),
        Err(PkiError::WildcardCommonName)
    ));
    assert!(matches!(
        sign(Some("pure\nfa")),
        Err(PkiError::InvalidCommonName(_))
    ));
    assert!(matches!(
        sign(Some(&"a".repeat(65))),
        Err(PkiError::InvalidCommonName(_))
    ));
}

#[test]
fn tampered_csr_is_refused() {
    let ca = init_ca("test CA", 30).unwrap();
    let key = KeyPair::generate().unwrap();
    let csr = client_csr(Some("purefa"), &key);
    let mut der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    let at = der.windows(6).position(|w| w == b"purefa").unwrap();
    der[at + 5] = b'b';
    let forged = csr_pem_from_der(&der);
    let serial = Serial::random().unwrap();
    assert!(matches!(
        sign_csr(&ca, &forged, 30, &serial),
        Err(PkiError::CsrSignature)
    ));
    // The untouched re-encoding is accepted: the refusal above is the signature's.
    let original = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).unwrap();
    sign_csr(&ca, &csr_pem_from_der(original.as_ref()), 30, &serial).unwrap();

    assert!(matches!(
        sign_csr(&ca, "not a csr", 30, &serial),
        Err(PkiError::Pem { .. })
    ));
    let huge = "A".repeat(MAX_PEM_LEN + 1);
    assert!(matches!(
        sign_csr(&ca, &huge, 30, &serial),
        Err(PkiError::TooLarge { .. })
    ));
}

#[test]
fn expired_and_not_yet_valid_certificates_are_rejected() {
    let ca = init_ca("test CA", 30).unwrap();
    let verifier = client_verifier(&ca, &empty_crl(&ca));
    let now = OffsetDateTime::now_utc();
    let mut options = IssueOptions::new(Some("purefa".into()), CertProfile::Client, 1).unwrap();
    options.not_before = now - Duration::days(10);
    options.not_after = now - Duration::days(1);
    let expired = issue_cert(&ca, &options).unwrap();
    let err = verify_client(&*verifier, &expired.cert_pem).unwrap_err();
    assert!(matches!(
        err,
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        )
    ));

    options.not_before = now + Duration::days(1);
    options.not_after = now + Duration::days(2);
    let future = issue_cert(&ca, &options).unwrap();
    assert!(verify_client(&*verifier, &future.cert_pem).is_err());

    options.not_after = options.not_before;
    assert!(matches!(
        issue_cert(&ca, &options),
        Err(PkiError::ValidityOrder)
    ));
}

#[test]
fn test_options_can_build_certificates_the_policy_refuses() {
    let ca = init_ca("test CA", 30).unwrap();
    assert!(matches!(
        issue_client_cert(&ca, "*.example", 30),
        Err(PkiError::WildcardCommonName)
    ));
    assert!(matches!(
        issue_client_cert(&ca, "", 30),
        Err(PkiError::MissingCommonName)
    ));

    let wildcard = IssueOptions::new(Some("*".into()), CertProfile::Client, 30).unwrap();
    let cert = issue_cert(&ca, &wildcard).unwrap();
    assert_eq!(
        describe_cert(&cert.cert_pem).unwrap().subject_cn.as_deref(),
        Some("*")
    );

    let anonymous = IssueOptions::new(None, CertProfile::Client, 30).unwrap();
    let cert = issue_cert(&ca, &anonymous).unwrap();
    assert_eq!(describe_cert(&cert.cert_pem).unwrap().subject_cn, None);
    // Chain-wise both are fine: refusing them is the gateway's job, which is what they test.
    verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &cert.cert_pem).unwrap();

    let no_eku =
        IssueOptions::new(Some("purefa".into()), CertProfile::NoExtendedKeyUsage, 30).unwrap();
    let cert = issue_cert(&ca, &no_eku).unwrap();
    with_x509(&cert.cert_pem, |cert| {
        assert!(cert.extended_key_usage().unwrap().is_none());
    });
    // webpki lets a certificate without EKU through the handshake: `tls` refuses it.
    verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &cert.cert_pem).unwrap();
}

#[test]
fn server_certificate_verifies_for_its_names_only_and_not_as_a_client() {
    let ca = init_ca("test CA", 30).unwrap();
    let server = issue_server_cert(
        &ca,
        &["localhost".to_owned()],
        &[IpAddr::from([127, 0, 0, 1])],
        30,
    )
    .unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(&ca), provider())
        .build()
        .unwrap();
    let der = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
    let check = |name: &str| {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier.verify_server_cert(&der, &[], &name, &[], UnixTime::now())
    };
    check("localhost").unwrap();
    check("127.0.0.1").unwrap();
    assert!(check("kmip.example.net").is_err());
    assert!(check("127.0.0.2").is_err());

    let err = verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &server.cert_pem).unwrap_err();
    assert!(matches!(err, rustls::Error::InvalidCertificate(_)));

    assert!(matches!(
        issue_server_cert(&ca, &[], &[], 30),
        Err(PkiError::NoSubjectAltName)
    ));
    assert!(matches!(
        issue_server_cert(&ca, &["bad name".to_owned()], &[], 30),
        Err(PkiError::InvalidDnsName { .. })
    ));
}

#[test]
fn server_csr_carries_names_and_a_valid_signature() {
    let csr = server_csr(
        &["kmip.example.net".to_owned()],
        &[IpAddr::from([192, 0, 2, 1])],
    )
    .unwrap();
    let der = CertificateSigningRequestDer::from_pem_slice(csr.csr_pem.as_bytes()).unwrap();
    let (_, parsed) = X509CertificationRequest::from_der(der.as_ref()).unwrap();
    parsed.verify_signature().unwrap();
    let info = &parsed.certification_request_info;
    assert_eq!(
        subject_common_name(&info.subject).unwrap(),
        "kmip.example.net"
    );
    let key = key_from_pem(&csr.key_pem, "server").unwrap();
    assert_eq!(info.subject_pki.raw, key.subject_public_key_info());
    let sans: Vec<_> = parsed
        .requested_extensions()
        .unwrap()
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(san.general_names.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(sans.contains(&GeneralName::DNSName("kmip.example.net")));
    assert!(sans.contains(&GeneralName::IPAddress(&[192, 0, 2, 1])));
}

#[test]
fn mismatched_or_non_ca_bundles_are_refused() {
    let ca = init_ca("test CA", 30).unwrap();
    let other = init_ca("other CA", 30).unwrap();
    let mixed = CaBundle {
        cert_pem: ca.cert_pem.clone(),
        key_pem: other.key_pem.clone(),
    };
    assert!(matches!(
        issue_client_cert(&mixed, "purefa", 30),
        Err(PkiError::KeyMismatch)
    ));
    let leaf = issue_client_cert(&ca, "purefa", 30).unwrap();
    let leaf_as_ca = CaBundle {
        cert_pem: leaf.cert_pem.clone(),
        key_pem: leaf.key_pem.clone(),
    };
    assert!(matches!(
        issue_client_cert(&leaf_as_ca, "x", 30),
        Err(PkiError::NotACa)
    ));
    let debug = format!("{ca:?} {leaf:?}");
    assert!(!debug.contains("PRIVATE KEY"));
    assert!(debug.contains("[redacted]"));
}

#[test]
fn validity_limits() {
    assert!(matches!(init_ca("x", 0), Err(PkiError::Validity { .. })));
    assert!(matches!(
        init_ca("x", MAX_VALIDITY_DAYS + 1),
        Err(PkiError::Validity { .. })
    ));
    init_ca("x", MAX_VALIDITY_DAYS).unwrap();
}

#[test]
fn serial_hex_round_trip() {
    let s = Serial::from_hex("0x00:1A:2b").unwrap();
    assert_eq!(s.as_bytes(), &[0x1a, 0x2b]);
    assert_eq!(s.to_hex(), "1a2b");
    assert_eq!(Serial::from_hex("abc").unwrap().as_bytes(), &[0x0a, 0xbc]);
    assert!(Serial::from_hex("0").is_err());
    assert!(Serial::from_hex("xyz").is_err());
    assert!(Serial::from_hex(&"7f".repeat(20)).is_ok());
    assert!(Serial::from_hex(&"80".repeat(20)).is_err());
    assert!(Serial::from_hex(&"11".repeat(21)).is_err());
    let r = Serial::random().unwrap();
    assert_eq!(r.as_bytes().len(), RANDOM_SERIAL_LEN);
    assert_eq!(Serial::from_hex(&r.to_hex()).unwrap(), r);
    assert_ne!(r, Serial::random().unwrap());
}

#[test]
fn describe_certs_reads_bundles_and_describe_cert_wants_one() {
    let ca = init_ca("test CA", 30).unwrap();
    let client = issue_client_cert(&ca, "purefa", 30).unwrap();
    let bundle = format!("{}{}", client.cert_pem, ca.cert_pem);
    let infos = describe_certs(&bundle).unwrap();
    let names: Vec<_> = infos.iter().map(|i| i.subject_cn.as_deref()).collect();
    assert_eq!(names, [Some("purefa"), Some("test CA")]);
    assert!(matches!(
        describe_cert(&bundle),
        Err(PkiError::CertificateCount { count: 2 })
    ));
    assert!(matches!(describe_cert(""), Err(PkiError::Pem { .. })));
}

#[test]
fn dev_pki_is_created_once_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let made = dev_pki(&dir).unwrap();
    assert!(made.created);
    for key in [DEV_CA_KEY, DEV_SERVER_KEY, DEV_CLIENT_KEY] {
        let mode = fs::metadata(made.path(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
    let ca = CaBundle {
        cert_pem: read(DEV_CA_CERT),
        key_pem: Zeroizing::new(read(DEV_CA_KEY)),
    };
    let client = read(DEV_CLIENT_CERT);
    assert_eq!(
        describe_cert(&client).unwrap().subject_cn.as_deref(),
        Some(DEV_CLIENT_COMMON_NAME)
    );
    verify_client(&*client_verifier(&ca, &empty_crl(&ca)), &client).unwrap();
    let server_der = CertificateDer::from_pem_slice(read(DEV_SERVER_CERT).as_bytes()).unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(&ca), provider())
        .build()
        .unwrap();
    for name in ["localhost", "127.0.0.1"] {
        let name = ServerName::try_from(name).unwrap();
        verifier
            .verify_server_cert(&server_der, &[], &name, &[], UnixTime::now())
            .unwrap();
    }

    let again = dev_pki(&dir).unwrap();
    assert!(!again.created);
    assert_eq!(read(DEV_CA_CERT), ca.cert_pem);

    fs::remove_file(dir.join(DEV_SERVER_KEY)).unwrap();
    match dev_pki(&dir) {
        Err(PkiError::PartialDevPki {
            present, missing, ..
        }) => {
            assert_eq!(missing, [DEV_SERVER_KEY]);
            assert_eq!(present.len(), 5);
        }
        other => panic!("expected PartialDevPki, got {other:?}"),
    }
    assert_eq!(read(DEV_CA_CERT), ca.cert_pem);
    assert!(!dir.join(DEV_SERVER_KEY).exists());
}

#[test]
fn dev_pki_has_a_crl_of_its_ca_and_an_older_one_gets_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    dev_pki(&dir).unwrap();
    let crl = fs::read(dir.join(DEV_CRL)).unwrap();
    let crl = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&crl).unwrap();
    let (_, parsed) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(crl.as_ref()).unwrap();
    let ca = fs::read_to_string(dir.join(DEV_CA_CERT)).unwrap();
    let ca_der = CertificateDer::from_pem_slice(ca.as_bytes()).unwrap();
    let (_, ca_cert) = x509_parser::parse_x509_certificate(ca_der.as_ref()).unwrap();
    assert_eq!(parsed.issuer().as_raw(), ca_cert.subject().as_raw());
    parsed.verify_signature(ca_cert.public_key()).unwrap();
    assert_eq!(parsed.iter_revoked_certificates().count(), 0);
    // `pki revoke --dir` finds its state file there.
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join(DEV_CA_STATE)).unwrap()).unwrap();
    assert_eq!(state["crl_number"], 1);

    // A development PKI of an older version (no CRL) gets one; an existing one is kept.
    fs::remove_file(dir.join(DEV_CRL)).unwrap();
    assert!(!dev_pki(&dir).unwrap().created);
    let written = fs::read(dir.join(DEV_CRL)).unwrap();
    dev_pki(&dir).unwrap();
    assert_eq!(fs::read(dir.join(DEV_CRL)).unwrap(), written);
}

#[test]
fn dev_pki_has_its_own_issuing_ca_and_an_older_one_gets_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    dev_pki(&dir).unwrap();
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
    let mode = fs::metadata(dir.join(DEV_ISSUING_CA_KEY))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let issuing = crate::tooling::pki::IssuingCa::load(
        &dir.join(DEV_ISSUING_CA_CERT),
        &dir.join(DEV_ISSUING_CA_KEY),
    )
    .unwrap();
    // Neither the login CA nor the listener's key.
    issuing
        .check_separate(&read(DEV_SERVER_KEY), &[read(DEV_CA_CERT)])
        .unwrap();
    assert_eq!(
        describe_cert(&read(DEV_ISSUING_CA_CERT))
            .unwrap()
            .subject_cn
            .as_deref(),
        Some(DEV_ISSUING_CA_COMMON_NAME)
    );

    // A development PKI of an older version (no issuing CA) gets one; an existing one is kept.
    let written = read(DEV_ISSUING_CA_CERT);
    dev_pki(&dir).unwrap();
    assert_eq!(read(DEV_ISSUING_CA_CERT), written);
    fs::remove_file(dir.join(DEV_ISSUING_CA_CERT)).unwrap();
    fs::remove_file(dir.join(DEV_ISSUING_CA_KEY)).unwrap();
    assert!(!dev_pki(&dir).unwrap().created);
    assert_ne!(read(DEV_ISSUING_CA_CERT), written);
    // Half of one is refused, never completed with a key that does not match.
    fs::remove_file(dir.join(DEV_ISSUING_CA_KEY)).unwrap();
    match dev_pki(&dir) {
        Err(PkiError::PartialDevPki { missing, .. }) => {
            assert_eq!(missing, [DEV_ISSUING_CA_KEY])
        }
        other => panic!("expected PartialDevPki, got {other:?}"),
    }
}
