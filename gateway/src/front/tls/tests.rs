//! Tests of the TLS state: client authentication, refusal labels, the CertificateRequest.

use super::*;
use crate::tooling::pki::{self, CaBundle, CertProfile, IssueOptions, IssuedCert};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use std::sync::Mutex;

/// A temporary configuration folder with the listener's certificate (of `server_ca`).
struct Setup {
    dir: tempfile::TempDir,
    server_ca: CaBundle,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = pki::init_ca("server CA", 30).unwrap();
        let server =
            pki::issue_server_cert(&server_ca, &["localhost".to_owned()], &[], 30).unwrap();
        std::fs::write(dir.path().join("server.pem"), &server.cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), server.key_pem.as_bytes()).unwrap();
        Setup { dir, server_ca }
    }

    /// Writes a file of the folder; returns its path as a TOML string.
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        format!("{:?}", path.display().to_string())
    }

    /// Builds the TLS state with `purefa` trusting `ca_pem` (plus `user_extra` lines) and
    /// `extra` appended to the file.
    fn state(&self, ca_pem: &str, user_extra: &str, extra: &str) -> TlsState {
        self.build(ca_pem, user_extra, extra).unwrap()
    }

    /// Like [`Setup::state`], the build's outcome.
    fn build(
        &self,
        ca_pem: &str,
        user_extra: &str,
        extra: &str,
    ) -> Result<TlsState, TlsSetupError> {
        let ca = self.write("ca.pem", ca_pem);
        let text = format!(
            "listen = \"127.0.0.1:0\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
             [[users]]\nname = \"purefa\"\ncas = [{ca}]\n{user_extra}\n{extra}"
        );
        let cfg = GatewayConfig::from_toml_str(&text, self.dir.path()).unwrap();
        TlsState::build(&cfg, None)
    }
}

fn chain(pems: &[&str]) -> Vec<CertificateDer<'static>> {
    pems.iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
        .collect()
}

fn issue(ca: &CaBundle, profile: CertProfile) -> IssuedCert {
    let options = IssueOptions::new(Some("purefa".into()), profile, 30).unwrap();
    pki::issue_cert(ca, &options).unwrap()
}

/// A root allowed to certify intermediates, and an intermediate below it.
fn root_and_intermediate() -> (CaBundle, CaBundle) {
    let ca_params = |cn: &str| {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("tenant root");
    let root = root_params.self_signed(&root_key).unwrap();
    let inter_key = KeyPair::generate().unwrap();
    let inter = ca_params("tenant intermediate")
        .signed_by(&inter_key, &Issuer::new(root_params, &root_key))
        .unwrap();
    let bundle = |pem: String, key: &KeyPair| CaBundle {
        cert_pem: pem,
        key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
    };
    (
        bundle(root.pem(), &root_key),
        bundle(inter.pem(), &inter_key),
    )
}

#[test]
fn a_client_certificate_must_carry_the_client_auth_eku() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let state = setup.state(&ca.cert_pem, "", "");
    let with = issue(&ca, CertProfile::Client);
    for full_handshake in [true, false] {
        let id = state
            .authenticate(Some(&chain(&[&with.cert_pem])), full_handshake)
            .unwrap();
        assert_eq!(id.user, "purefa");
    }
    let without = issue(&ca, CertProfile::NoExtendedKeyUsage);
    let server_only = issue(
        &ca,
        CertProfile::Server {
            dns_names: vec!["purefa".into()],
            ip_addrs: Vec::new(),
        },
    );
    for cert in [&without, &server_only] {
        for full_handshake in [true, false] {
            let e = state
                .authenticate(Some(&chain(&[&cert.cert_pem])), full_handshake)
                .unwrap_err();
            assert_eq!(e, AuthError::MissingClientAuthEku);
            assert_eq!(e.label(), "missing_client_auth_eku");
        }
    }
}

#[test]
fn a_server_only_certificate_fails_the_handshake_as_missing_client_auth_eku() {
    let e = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::InvalidPurpose),
    );
    assert_eq!(handshake_failure_label(&e), "missing_client_auth_eku");
}

#[test]
fn direct_issuer_only_refuses_a_leaf_of_an_intermediate() {
    let setup = Setup::new();
    let (root, intermediate) = root_and_intermediate();
    let leaf = issue(&intermediate, CertProfile::Client);
    let via_intermediate = chain(&[&leaf.cert_pem, &intermediate.cert_pem]);
    let direct = issue(&root, CertProfile::Client);

    let open = setup.state(&root.cert_pem, "", "");
    open.authenticate(Some(&via_intermediate), false).unwrap();
    open.authenticate(Some(&chain(&[&direct.cert_pem])), false)
        .unwrap();

    let pinned = setup.state(&root.cert_pem, "direct_issuer_only = true", "");
    for full_handshake in [true, false] {
        let e = pinned
            .authenticate(Some(&via_intermediate), full_handshake)
            .unwrap_err();
        assert_eq!(
            e,
            AuthError::IndirectIssuer {
                user: "purefa".into()
            }
        );
        assert_eq!(e.label(), "indirect_issuer");
        pinned
            .authenticate(Some(&chain(&[&direct.cert_pem])), full_handshake)
            .unwrap();
    }
}

#[test]
fn a_revoked_certificate_is_refused_as_revoked() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let cert = issue(&ca, CertProfile::Client);
    let serial = pki::describe_cert(&cert.cert_pem).unwrap().serial_hex;
    let now = time::OffsetDateTime::now_utc();
    let crl = pki::make_crl(
        &ca,
        &[(pki::Serial::from_hex(&serial).unwrap(), now)],
        now,
        now + time::Duration::days(1),
        2,
    )
    .unwrap();
    let crl = setup.write("ca.crl", &crl);
    let state = setup.state(&ca.cert_pem, "", &format!("[revocation]\ncrls = [{crl}]\n"));
    let e = state
        .authenticate(Some(&chain(&[&cert.cert_pem])), false)
        .unwrap_err();
    assert_eq!(
        e,
        AuthError::Revoked {
            user: "purefa".into()
        }
    );
    assert_eq!(e.label(), "certificate_revoked");
}

#[test]
fn an_expired_certificate_is_refused_as_expired() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let mut options = IssueOptions::new(Some("purefa".into()), CertProfile::Client, 1).unwrap();
    options.not_after = options.not_before - time::Duration::days(1);
    options.not_before = options.not_after - time::Duration::days(10);
    let cert = pki::issue_cert(&ca, &options).unwrap();
    let state = setup.state(&ca.cert_pem, "", "");
    let e = state
        .authenticate(Some(&chain(&[&cert.cert_pem])), false)
        .unwrap_err();
    assert_eq!(e.label(), "certificate_expired");
}

/// Records the CA names the server's CertificateRequest offers.
#[derive(Debug)]
struct HintRecorder {
    key: Arc<rustls::sign::CertifiedKey>,
    seen: Mutex<Vec<Vec<Vec<u8>>>>,
}

impl rustls::client::ResolvesClientCert for HintRecorder {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.seen
            .lock()
            .unwrap()
            .push(root_hint_subjects.iter().map(|s| s.to_vec()).collect());
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Runs a handshake in memory; returns the CA names the client was offered.
fn offered_ca_names(
    state: &TlsState,
    server_ca: &CaBundle,
    client: &IssuedCert,
    version: &'static rustls::SupportedProtocolVersion,
) -> Vec<Vec<u8>> {
    let mut roots = RootCertStore::empty();
    roots.add(chain(&[&server_ca.cert_pem]).remove(0)).unwrap();
    let provider = crypto_provider();
    let key = certified_key(client, &provider);
    let recorder = Arc::new(HintRecorder {
        key,
        seen: Mutex::new(Vec::new()),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(recorder.clone());
    let mut c = rustls::ClientConnection::new(
        Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut s = rustls::ServerConnection::new(state.server_config.clone()).unwrap();
    while c.is_handshaking() || s.is_handshaking() {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets().unwrap();
    }
    let seen = recorder.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "one CertificateRequest");
    seen[0].clone()
}

fn certified_key(
    cert: &IssuedCert,
    provider: &rustls::crypto::CryptoProvider,
) -> Arc<rustls::sign::CertifiedKey> {
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    Arc::new(rustls::sign::CertifiedKey::from_der(chain(&[&cert.cert_pem]), key, provider).unwrap())
}

#[test]
fn the_certificate_request_names_no_tenant_ca() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant A's CA", 30).unwrap();
    let other = pki::init_ca("tenant B's CA", 30).unwrap();
    let other_pem = setup.write("other.pem", &other.cert_pem);
    let state = setup.state(
        &ca.cert_pem,
        "",
        &format!("[[users]]\nname = \"other\"\ncas = [{other_pem}]\n"),
    );
    let client = issue(&ca, CertProfile::Client);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let names = offered_ca_names(&state, &setup.server_ca, &client, version);
        assert!(names.is_empty(), "{version:?} offered CA names {names:?}");
    }
}

#[test]
fn a_second_common_name_is_refused_though_the_first_names_a_user() {
    // Before the shared rule the listener took the first Common Name and let this in as
    // `purefa`; the CA never issued such a subject.
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "purefa");
    params
        .distinguished_name
        .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "admin");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let ca_key = KeyPair::from_pem(&ca.key_pem).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key).unwrap();
    let cert = params
        .signed_by(&KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    let state = setup.state(&ca.cert_pem, "", "");
    for full_handshake in [true, false] {
        let e = state
            .authenticate(Some(&chain(&[&cert.pem()])), full_handshake)
            .unwrap_err();
        assert_eq!(e, AuthError::MultipleCommonNames(2));
        assert_eq!(e.label(), "multiple_common_names");
    }
    // The same CA's certificate with the one Common Name still gets in.
    let one = issue(&ca, CertProfile::Client);
    state
        .authenticate(Some(&chain(&[&one.cert_pem])), true)
        .unwrap();
}

/// A CRL of `ca` revoking `revoked` (PEM).
fn crl_of(ca: &CaBundle, revoked: &[&IssuedCert]) -> String {
    let now = time::OffsetDateTime::now_utc();
    let serials: Vec<_> = revoked
        .iter()
        .map(|c| {
            let hex = pki::describe_cert(&c.cert_pem).unwrap().serial_hex;
            (pki::Serial::from_hex(&hex).unwrap(), now)
        })
        .collect();
    pki::make_crl(ca, &serials, now, now + time::Duration::days(1), 1).unwrap()
}

#[test]
fn the_pki_dir_crl_is_enforced_without_revocation_crls() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let revoked = issue(&ca, CertProfile::Client);
    let kept = issue(&ca, CertProfile::Client);
    std::fs::create_dir(setup.dir.path().join("pki")).unwrap();
    setup.write("pki/ca.pem", &ca.cert_pem);
    setup.write("pki/crl.pem", &crl_of(&ca, &[&revoked]));
    let state = setup.state(&ca.cert_pem, "", "[pki]\ndir = \"pki\"\n");
    // (A full handshake's verifier holds the same CRLs; `false` re-verifies here.)
    let e = state
        .authenticate(Some(&chain(&[&revoked.cert_pem])), false)
        .unwrap_err();
    assert_eq!(e.label(), "certificate_revoked");
    state
        .authenticate(Some(&chain(&[&kept.cert_pem])), false)
        .unwrap();
    assert!(state.warnings.is_empty(), "{:?}", state.warnings);
    let serial = pki::describe_cert(&revoked.cert_pem).unwrap().serial_hex;
    assert_eq!(state.crls_in_force.len(), 1);
    assert_eq!(state.crls_in_force[0].revoked, [serial]);
    assert!(state.crls_in_force[0].issuer.contains("tenant CA"));

    // Configured but without its CRL: an error saying what to run.
    std::fs::remove_file(setup.dir.path().join("pki/crl.pem")).unwrap();
    let e = setup
        .build(&ca.cert_pem, "", "[pki]\ndir = \"pki\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("crl.pem") && e.contains("kmip-gateway pki crl --dir"),
        "{e}"
    );
}

#[test]
fn a_user_ca_without_a_crl_is_a_warning_or_with_require_crl_an_error() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let state = setup.state(&ca.cert_pem, "", "");
    assert_eq!(state.warnings.len(), 1, "{:?}", state.warnings);
    let w = &state.warnings[0];
    assert!(
        w.contains("user 'purefa'") && w.contains("tenant CA") && w.contains("no CRL"),
        "{w}"
    );
    let e = setup
        .build(&ca.cert_pem, "", "[revocation]\nrequire_crl = true\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("require_crl") && e.contains("user 'purefa'"),
        "{e}"
    );
    // The user's own CRL covers its CA.
    let crl = setup.write("user.crl", &crl_of(&ca, &[]));
    let state = setup
        .build(
            &ca.cert_pem,
            &format!("crls = [{crl}]"),
            "[revocation]\nrequire_crl = true\n",
        )
        .unwrap();
    assert!(state.warnings.is_empty(), "{:?}", state.warnings);
}

#[test]
fn a_leaf_is_refused_as_a_user_ca() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let leaf = issue(&ca, CertProfile::Client);
    let e = setup
        .build(&leaf.cert_pem, "", "")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is not a CA certificate"), "{e}");
}

#[test]
fn the_server_certificate_needs_server_auth_and_no_ca_flag() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let state = setup.state(&ca.cert_pem, "", "");
    assert_eq!(state.server_alt_names, ["DNS:localhost"]);

    let client = issue(&setup.server_ca, CertProfile::Client);
    setup.write("server.pem", &client.cert_pem);
    setup.write("server.key", client.key_pem.as_str());
    let e = setup.build(&ca.cert_pem, "", "").err().unwrap().to_string();
    assert!(e.contains("serverAuth"), "{e}");

    setup.write("server.pem", &setup.server_ca.cert_pem);
    setup.write("server.key", setup.server_ca.key_pem.as_str());
    let e = setup.build(&ca.cert_pem, "", "").err().unwrap().to_string();
    assert!(e.contains("is a CA certificate"), "{e}");
}

#[test]
fn a_verified_chain_is_remembered_only_within_its_dates() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let cert = issue(&ca, CertProfile::Client);
    let state = setup.state(&ca.cert_pem, "", "");
    let presented = chain(&[&cert.cert_pem]);
    let first = state.authenticate(Some(&presented), false).unwrap();
    assert_eq!(state.verified.len(), 1);
    let again = state.authenticate(Some(&presented), false).unwrap();
    assert_eq!(state.verified.len(), 1);
    assert_eq!(again, first);
    assert_eq!(again.user, "purefa");

    // Past the certificate's notAfter the remembered verdict does not hold: verified again, and
    // refused as expired.
    let (_, expiry) = cert_subject_and_expiry(presented[0].as_ref()).unwrap();
    let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(expiry as u64 + 1));
    let e = state
        .authenticate_at(Some(&presented), false, later)
        .unwrap_err();
    assert_eq!(e.label(), "certificate_expired");
    // Before its notBefore too.
    let epoch = UnixTime::since_unix_epoch(std::time::Duration::ZERO);
    assert!(state
        .authenticate_at(Some(&presented), false, epoch)
        .is_err());
}

#[test]
fn a_revocation_reloaded_is_enforced_on_a_chain_verified_before() {
    let setup = Setup::new();
    let ca = pki::init_ca("tenant CA", 30).unwrap();
    let cert = issue(&ca, CertProfile::Client);
    let presented = chain(&[&cert.cert_pem]);
    let before = setup.state(&ca.cert_pem, "", "");
    before.authenticate(Some(&presented), false).unwrap();

    let crl = setup.write("ca.crl", &crl_of(&ca, &[&cert]));
    let reloaded = setup.state(&ca.cert_pem, "", &format!("[revocation]\ncrls = [{crl}]\n"));
    for _ in 0..2 {
        let e = reloaded.authenticate(Some(&presented), false).unwrap_err();
        assert_eq!(e.label(), "certificate_revoked");
    }
    assert_eq!(reloaded.verified.len(), 0);

    let serial = pki::describe_cert(&cert.cert_pem).unwrap().serial_hex;
    let denied = setup.state(
        &ca.cert_pem,
        "",
        &format!("[revocation]\ndeny_serials = [\"{serial}\"]\n"),
    );
    let e = denied.authenticate(Some(&presented), false).unwrap_err();
    assert_eq!(e, AuthError::Denied { serial });
}

#[test]
fn a_chain_refused_for_its_issuer_is_not_remembered() {
    let setup = Setup::new();
    let (root, intermediate) = root_and_intermediate();
    let leaf = issue(&intermediate, CertProfile::Client);
    let via_intermediate = chain(&[&leaf.cert_pem, &intermediate.cert_pem]);
    let pinned = setup.state(&root.cert_pem, "direct_issuer_only = true", "");
    for full_handshake in [true, false, false] {
        let e = pinned
            .authenticate(Some(&via_intermediate), full_handshake)
            .unwrap_err();
        assert_eq!(e.label(), "indirect_issuer");
    }
    assert_eq!(pinned.verified.len(), 0);
}

#[test]
fn remembered_chains_are_bounded() {
    let verified = VerifiedChains::default();
    let window = ValidWindow {
        not_before: 0,
        not_after: u64::MAX,
    };
    for n in 0..=MAX_VERIFIED_CHAINS {
        let der = CertificateDer::from((n as u64).to_be_bytes().to_vec());
        let identity = Identity {
            user: "purefa".into(),
            subject: "CN=purefa".into(),
            serial_hex: format!("{n:x}"),
            fingerprint: String::new(),
        };
        verified.remember(VerifiedChains::key(&[der]), window, identity);
        assert!(verified.len() <= MAX_VERIFIED_CHAINS);
    }
    assert_eq!(verified.len(), 1);
}
