//! What the listener offers, by the server key's type: TLS 1.3 suites whatever the key, TLS 1.2
//! ECDHE suites that the key can sign (ECDSA or RSA), and the key exchange groups. The server's
//! crypto provider holds exactly these, so what `docs/tls.md` lists is all a client can get; the
//! provider of clients and verifiers holds their union.

use rustls::crypto::aws_lc_rs::{cipher_suite, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{SignatureAlgorithm, SupportedCipherSuite};
use std::sync::Arc;

/// TLS 1.3 suites, offered with every key.
const TLS13_SUITES: [SupportedCipherSuite; 3] = [
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// TLS 1.2 suites of an ECDSA (or Ed25519) server key.
const TLS12_ECDSA_SUITES: [SupportedCipherSuite; 3] = [
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// TLS 1.2 suites of an RSA server key: AES-GCM only, what the appliances that need RSA offer.
const TLS12_RSA_SUITES: [SupportedCipherSuite; 2] = [
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
];

/// Key exchange groups, named here so a rustls upgrade cannot change them unnoticed.
const KX_GROUPS: [&dyn SupportedKxGroup; 4] = [
    kx_group::X25519,
    kx_group::SECP256R1,
    kx_group::SECP384R1,
    kx_group::X25519MLKEM768,
];

/// The kind of server key, which decides the TLS 1.2 suites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerKeyKind {
    /// ECDSA or Ed25519: ECDHE-ECDSA suites.
    Ecdsa,
    /// RSA: ECDHE-RSA suites.
    Rsa,
}

impl ServerKeyKind {
    /// The kind of a loaded signing key; `None` for an algorithm no offered suite can use.
    pub(crate) fn of(algorithm: SignatureAlgorithm) -> Option<ServerKeyKind> {
        match algorithm {
            SignatureAlgorithm::ECDSA | SignatureAlgorithm::ED25519 => Some(ServerKeyKind::Ecdsa),
            SignatureAlgorithm::RSA => Some(ServerKeyKind::Rsa),
            _ => None,
        }
    }

    /// The label used in logs: `ecdsa` or `rsa`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ServerKeyKind::Ecdsa => "ecdsa",
            ServerKeyKind::Rsa => "rsa",
        }
    }

    fn tls12_suites(self) -> &'static [SupportedCipherSuite] {
        match self {
            ServerKeyKind::Ecdsa => &TLS12_ECDSA_SUITES,
            ServerKeyKind::Rsa => &TLS12_RSA_SUITES,
        }
    }
}

/// Every suite the listener offers with a key of `kind`, in its order of preference.
pub(crate) fn offered_suites(kind: ServerKeyKind) -> Vec<SupportedCipherSuite> {
    TLS13_SUITES
        .iter()
        .chain(kind.tls12_suites())
        .copied()
        .collect()
}

fn provider_with(cipher_suites: Vec<SupportedCipherSuite>) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites,
        kx_groups: KX_GROUPS.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    })
}

/// The listener's provider for a key of `kind`: only the suites it offers.
pub(crate) fn server_crypto_provider(kind: ServerKeyKind) -> Arc<CryptoProvider> {
    provider_with(offered_suites(kind))
}

/// The one crypto provider of clients and certificate verifiers (aws-lc-rs): every suite the
/// listener offers with any key, so the gateway's own client reaches it whatever its key.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    provider_with(
        TLS13_SUITES
            .iter()
            .chain(&TLS12_ECDSA_SUITES)
            .chain(&TLS12_RSA_SUITES)
            .copied()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;
    use crate::front::tls::{TlsSetupError, TlsState};
    use crate::tooling::pki::{self, CaBundle, CertProfile, IssueOptions, IssuedCert, KeyType};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

    /// An RSA-1024 key (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024`): too
    /// short for the TLS stack, and aws-lc cannot make one.
    const RSA_1024_KEY: &str = include_str!("rsa1024_test_key.pem");

    /// A listener with a CA and server certificate of these key types, and a client of `purefa`.
    struct Site {
        dir: tempfile::TempDir,
        ca: CaBundle,
        client: IssuedCert,
    }

    impl Site {
        fn new(ca_type: KeyType, server_type: KeyType, client_type: KeyType) -> Site {
            let dir = tempfile::tempdir().unwrap();
            let ca = pki::init_ca_with_key("CA", 30, ca_type).unwrap();
            let server =
                pki::issue_server_cert_with_key(&ca, &["localhost".into()], &[], 30, server_type)
                    .unwrap();
            let mut options =
                IssueOptions::new(Some("purefa".into()), CertProfile::Client, 30).unwrap();
            options.key_type = client_type;
            let client = pki::issue_cert(&ca, &options).unwrap();
            std::fs::write(dir.path().join("server.pem"), &server.cert_pem).unwrap();
            std::fs::write(dir.path().join("server.key"), server.key_pem.as_bytes()).unwrap();
            std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
            Site { dir, ca, client }
        }

        fn state(&self) -> Result<TlsState, TlsSetupError> {
            let text =
                "listen = \"127.0.0.1:0\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
                        [[users]]\nname = \"purefa\"\ncas = [\"ca.pem\"]\n";
            let cfg = GatewayConfig::from_toml_str(text, self.dir.path()).unwrap();
            TlsState::build(&cfg, None)
        }

        /// A handshake in memory by a client offering only `suite`; the suite agreed, or why not.
        fn handshake(
            &self,
            state: &TlsState,
            suite: SupportedCipherSuite,
        ) -> Result<SupportedCipherSuite, rustls::Error> {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(self.ca.cert_pem.as_bytes()).unwrap())
                .unwrap();
            let provider = CryptoProvider {
                cipher_suites: vec![suite],
                ..(*crypto_provider()).clone()
            };
            let version = match suite {
                SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
                SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
            };
            let config = ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[version])?
                .with_root_certificates(roots)
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(self.client.cert_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(self.client.key_pem.as_bytes()).unwrap(),
                )?;
            let mut c = ClientConnection::new(
                Arc::new(config),
                ServerName::try_from("localhost").unwrap(),
            )?;
            let mut s = ServerConnection::new(state.server_config.clone())?;
            while c.is_handshaking() || s.is_handshaking() {
                let mut buf = Vec::new();
                while c.wants_write() {
                    c.write_tls(&mut buf).unwrap();
                }
                s.read_tls(&mut buf.as_slice()).unwrap();
                s.process_new_packets()?;
                let mut buf = Vec::new();
                while s.wants_write() {
                    s.write_tls(&mut buf).unwrap();
                }
                c.read_tls(&mut buf.as_slice()).unwrap();
                c.process_new_packets()?;
            }
            Ok(s.negotiated_cipher_suite().unwrap())
        }
    }

    fn all_suites() -> Vec<SupportedCipherSuite> {
        rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES.to_vec()
    }

    #[test]
    fn the_listener_offers_exactly_the_suites_of_its_key() {
        let cases = [
            (
                KeyType::Rsa2048,
                KeyType::Rsa2048,
                KeyType::P256,
                ServerKeyKind::Rsa,
            ),
            (
                KeyType::P256,
                KeyType::Rsa3072,
                KeyType::Rsa2048,
                ServerKeyKind::Rsa,
            ),
            (
                KeyType::Rsa2048,
                KeyType::P256,
                KeyType::Rsa2048,
                ServerKeyKind::Ecdsa,
            ),
            (
                KeyType::P384,
                KeyType::P384,
                KeyType::P256,
                ServerKeyKind::Ecdsa,
            ),
        ];
        for (ca_type, server_type, client_type, kind) in cases {
            let ctx = format!("CA {ca_type}, server {server_type}, client {client_type}");
            let site = Site::new(ca_type, server_type, client_type);
            let state = site.state().unwrap();
            assert_eq!(state.server_key, kind, "{ctx}");
            let offered = offered_suites(kind);
            assert_eq!(
                state.server_config.crypto_provider().cipher_suites,
                offered,
                "{ctx}"
            );
            for suite in all_suites() {
                let result = site.handshake(&state, suite);
                if offered.contains(&suite) {
                    assert_eq!(result.unwrap(), suite, "{ctx}: {suite:?}");
                } else {
                    assert!(result.is_err(), "{ctx}: {suite:?} was agreed");
                }
            }
        }
    }

    #[test]
    fn rsa_servers_offer_ecdhe_rsa_aes_gcm_in_tls12_and_ec_servers_ecdhe_ecdsa() {
        let names = |kind| -> Vec<String> {
            offered_suites(kind)
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect()
        };
        assert_eq!(
            names(ServerKeyKind::Rsa),
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            ]
        );
        assert_eq!(
            names(ServerKeyKind::Ecdsa)[3..],
            [
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            ]
        );
        // Clients and verifiers can use every suite of either kind.
        let client = crypto_provider().cipher_suites.clone();
        for kind in [ServerKeyKind::Rsa, ServerKeyKind::Ecdsa] {
            assert!(offered_suites(kind).iter().all(|s| client.contains(s)));
        }
    }

    #[test]
    fn a_server_key_the_tls_stack_cannot_use_is_refused_saying_what_to_use() {
        let site = Site::new(KeyType::Rsa2048, KeyType::Rsa2048, KeyType::P256);
        std::fs::write(site.dir.path().join("server.key"), RSA_1024_KEY).unwrap();
        let Err(e) = site.state() else {
            panic!("an RSA-1024 server key was accepted");
        };
        let text = e.to_string();
        assert!(
            text.contains("server.key")
                && text.contains("2048 bits or more")
                && text.contains("--key-type rsa2048"),
            "{text}"
        );
    }
}
