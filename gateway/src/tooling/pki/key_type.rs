//! Which keys the PKI generates (`--key-type`), and which public keys it certifies from a CSR:
//! only those both the CSR check and the listener's verifier accept, so no certificate is
//! issued that can never log in.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use super::PkiError;

/// Smallest RSA modulus certified: webpki (the listener's verifier) refuses shorter keys.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus certified: webpki refuses longer keys (and they cost every handshake).
const MAX_RSA_BITS: usize = 8192;

/// The key of a CA or leaf generated here. P-256 stays the default: the smallest certificates
/// and fastest handshakes, and every client this gateway targets accepts it; RSA is for clients
/// and appliances that only take RSA certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    Rsa2048,
    Rsa3072,
    #[default]
    P256,
    P384,
}

impl KeyType {
    /// Every key type, in the order `--help` lists them.
    pub const ALL: [KeyType; 4] = [
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::P256,
        KeyType::P384,
    ];

    /// The command-line name (`rsa2048`, `p256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::P256 => "p256",
            KeyType::P384 => "p384",
        }
    }

    /// A new key pair of this type; RSA keys sign with SHA-256, P-384 with SHA-384.
    pub(super) fn generate(self) -> Result<Zeroizing<KeyPair>, PkiError> {
        let key = match self {
            KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?,
            KeyType::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072)?,
            KeyType::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            KeyType::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?,
        };
        Ok(Zeroizing::new(key))
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = KeyType::ALL.iter().map(|k| k.name()).collect();
                format!("unknown key type {s:?}; use one of {}", names.join(", "))
            })
    }
}

/// Describes a public key ("RSA-2048", "EC P-256", "Ed25519") if a CSR carrying it can be checked
/// and the listener can verify a certificate carrying it (P-521 fails the first); refuses
/// anything else, saying what is accepted.
pub(super) fn accepted_public_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<String, PkiError> {
    let refuse = |found: String| PkiError::UnsupportedPublicKey { found };
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(refuse("an unreadable RSA key".into()));
        };
        let bits = rsa.key_size();
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(refuse(format!("an RSA-{bits} key")));
        }
        return Ok(format!("RSA-{bits}"));
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok("EC P-256".into()),
            Some(c) if c == OID_NIST_EC_P384 => Ok("EC P-384".into()),
            Some(c) => Err(refuse(format!("an EC key on curve {c}"))),
            None => Err(refuse("an EC key without a named curve".into())),
        };
    }
    if *algorithm == OID_SIG_ED25519 {
        return Ok("Ed25519".into());
    }
    Err(refuse(format!("a key of algorithm {algorithm}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rcgen::{CertificateParams, DnType, SignatureAlgorithm, PKCS_ED25519, PKCS_RSA_SHA384};
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::server::WebPkiClientVerifier;
    use rustls::RootCertStore;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use x509_parser::prelude::FromDer;

    use super::*;
    use crate::tooling::pki::{
        init_ca_with_key, issue_cert, issue_server_cert_with_key, server_csr_with_key, sign_csr,
        CaBundle, CertProfile, IssueOptions, Serial,
    };

    /// A CSR `openssl req -new -newkey rsa:1024 -subj /CN=purefa` made (rcgen cannot make keys
    /// that small).
    const RSA_1024_CSR: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIIBUDCBugIBADARMQ8wDQYDVQQDDAZwdXJlZmEwgZ8wDQYJKoZIhvcNAQEBBQAD
gY0AMIGJAoGBALa4aC5KtFpj4sNCtzY2UsWc1GmGFjmKFQgbwwNofNvWuY6YKaOR
h6SiDEB4FK/rjxWpMCsXHmRqQF4JQjAVFvlXFxEGKBgKFukqrjTk79mBfjF7vZgG
trP9u2383IF+MMg+QWW1HMGezCH+kNsQCpifgbBnkpPNxNcdptGiHKlFAgMBAAGg
ADANBgkqhkiG9w0BAQsFAAOBgQA+ES3ZkVJdQQ6kC0vCOsyqucAVE6i+Cizf9ncB
KsrLsQrvpGQrceovPQiZusG2xVZKl0azsZebsXW/vcAJ7AarpcUNR1/qrENDJyct
AmJ95kCdrkgTK83/P1rPJTIzXkm3adkIxD60ER/Vb7IpQuAh6ceu1IC3RT3IMrXc
vYAFhA==
-----END CERTIFICATE REQUEST-----
";

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn roots(ca: &CaBundle) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(der(&ca.cert_pem)).unwrap();
        Arc::new(roots)
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// What a certificate's own key is, as `accepted_public_key` names it.
    fn key_of(cert_pem: &str) -> String {
        let der = der(cert_pem);
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        accepted_public_key(cert.public_key()).unwrap()
    }

    fn expected(key_type: KeyType) -> &'static str {
        match key_type {
            KeyType::Rsa2048 => "RSA-2048",
            KeyType::Rsa3072 => "RSA-3072",
            KeyType::P256 => "EC P-256",
            KeyType::P384 => "EC P-384",
        }
    }

    #[test]
    fn names_round_trip_and_an_unknown_one_lists_the_choices() {
        for k in KeyType::ALL {
            assert_eq!(k.name().parse::<KeyType>().unwrap(), k);
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!("RSA2048".parse::<KeyType>().unwrap(), KeyType::Rsa2048);
        assert_eq!(KeyType::default(), KeyType::P256);
        let e = "rsa1024".parse::<KeyType>().unwrap_err();
        assert!(e.contains("rsa2048, rsa3072, p256, p384"), "{e}");
    }

    #[test]
    fn every_ca_key_type_issues_verifying_leaves_of_every_key_type() {
        for ca_type in KeyType::ALL {
            let ca = init_ca_with_key("mixed CA", 30, ca_type).unwrap();
            assert_eq!(key_of(&ca.cert_pem), expected(ca_type), "CA {ca_type}");
            let clients = WebPkiClientVerifier::builder_with_provider(roots(&ca), provider())
                .build()
                .unwrap();
            let servers = WebPkiServerVerifier::builder_with_provider(roots(&ca), provider())
                .build()
                .unwrap();
            for leaf_type in KeyType::ALL {
                let ctx = format!("CA {ca_type}, leaf {leaf_type}");
                let mut options =
                    IssueOptions::new(Some("purefa".into()), CertProfile::Client, 30).unwrap();
                options.key_type = leaf_type;
                let client = issue_cert(&ca, &options).unwrap();
                assert_eq!(key_of(&client.cert_pem), expected(leaf_type), "{ctx}");
                clients
                    .verify_client_cert(&der(&client.cert_pem), &[], UnixTime::now())
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let server =
                    issue_server_cert_with_key(&ca, &["localhost".into()], &[], 30, leaf_type)
                        .unwrap();
                assert_eq!(key_of(&server.cert_pem), expected(leaf_type), "{ctx}");
                servers
                    .verify_server_cert(
                        &der(&server.cert_pem),
                        &[],
                        &ServerName::try_from("localhost").unwrap(),
                        &[],
                        UnixTime::now(),
                    )
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                // The key file is the leaf's own key, usable by the TLS stack.
                let key =
                    rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes())
                        .unwrap();
                rustls::sign::CertifiedKey::from_der(vec![der(&server.cert_pem)], key, &provider())
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            }
        }
    }

    #[test]
    fn the_listener_csr_has_the_chosen_key() {
        for key_type in KeyType::ALL {
            let csr = server_csr_with_key(&["localhost".into()], &[], key_type).unwrap();
            let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(
                csr.csr_pem.as_bytes(),
            )
            .unwrap();
            let (_, parsed) =
                x509_parser::certification_request::X509CertificationRequest::from_der(
                    der.as_ref(),
                )
                .unwrap();
            let spki = &parsed.certification_request_info.subject_pki;
            assert_eq!(accepted_public_key(spki).unwrap(), expected(key_type));
        }
    }

    fn csr(alg: &'static SignatureAlgorithm, rsa: Option<RsaKeySize>) -> String {
        let key = match rsa {
            Some(size) => KeyPair::generate_rsa_for(alg, size).unwrap(),
            None => KeyPair::generate_for(alg).unwrap(),
        };
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "purefa");
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn csrs_of_every_accepted_key_are_signed_by_rsa_and_ec_cas() {
        let csrs = [
            ("RSA-2048", csr(&PKCS_RSA_SHA256, Some(RsaKeySize::_2048))),
            ("RSA-3072", csr(&PKCS_RSA_SHA384, Some(RsaKeySize::_3072))),
            ("RSA-4096", csr(&PKCS_RSA_SHA256, Some(RsaKeySize::_4096))),
            ("EC P-256", csr(&PKCS_ECDSA_P256_SHA256, None)),
            ("EC P-384", csr(&PKCS_ECDSA_P384_SHA384, None)),
            ("Ed25519", csr(&PKCS_ED25519, None)),
        ];
        for ca_type in [KeyType::Rsa2048, KeyType::P256] {
            let ca = init_ca_with_key("CA", 30, ca_type).unwrap();
            let clients = WebPkiClientVerifier::builder_with_provider(roots(&ca), provider())
                .build()
                .unwrap();
            for (what, csr) in &csrs {
                let cert = sign_csr(&ca, csr, 30, &Serial::random().unwrap())
                    .unwrap_or_else(|e| panic!("CA {ca_type}, {what}: {e}"));
                assert_eq!(key_of(&cert), *what);
                clients
                    .verify_client_cert(&der(&cert), &[], UnixTime::now())
                    .unwrap_or_else(|e| panic!("CA {ca_type}, {what}: {e}"));
            }
        }
    }

    #[test]
    fn a_csr_with_a_key_the_listener_refuses_is_not_signed_and_says_what_to_do() {
        let ca = init_ca_with_key("CA", 30, KeyType::Rsa2048).unwrap();
        let e = sign_csr(&ca, RSA_1024_CSR, 30, &Serial::random().unwrap()).unwrap_err();
        assert!(
            matches!(&e, PkiError::UnsupportedPublicKey { found } if found == "an RSA-1024 key"),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("2048 to 8192 bits") && text.contains("openssl req -newkey rsa:2048"),
            "{text}"
        );
    }
}
