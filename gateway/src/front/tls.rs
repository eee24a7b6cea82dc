//! TLS material and client authentication.
//!
//! The handshake verifies the client chain against the union of all users' CAs (and CRLs, when
//! configured); afterwards [`TlsState::authenticate`] maps the certificate to a user the way the
//! FlashArray guide's KMES does: the subject Common Name names the user, and the CA that issued it
//! must be one trusted for *that* user. Every refusal has a distinct [`AuthError`] so operators can
//! tell "cannot authenticate" from "not a known user".
//!
//! A client certificate must carry the clientAuth extended key usage (one with none at all passes
//! webpki, so [`TlsState::authenticate`] refuses it). A user with `direct_issuer_only` accepts
//! only certificates signed by one of its CAs itself, not through an intermediate below them.
//! The CertificateRequest names no CA: the listener is shared by tenants who must not learn each
//! other's CAs, and clients with one certificate (PyKMIP, the array) send it regardless.
//!
//! Revocation: CRLs (per user and `[revocation] crls`) are given to both the handshake verifier and
//! the per-user verifiers, and a deny-list of serials/fingerprints is checked in
//! [`TlsState::authenticate`]. Only the end-entity certificate's revocation is checked, and a
//! certificate whose CA has no CRL configured passes: the FlashArray cannot use intermediates, so
//! the chain is root + leaf and a root (a trust anchor) is never checked against a CRL anyway; and
//! with several users' CAs behind one listener, requiring a CRL from every CA would lock out the
//! users of a CA that publishes none. Expired CRLs are still used (a stale CRL must not lock the
//! array out at boot): their `next_update` is exported as an expiry instead.
//! Because `authenticate` re-verifies the chain (CRLs included), a revoked client cannot get back
//! in through TLS session resumption, and a reload can re-check open connections with it.

use crate::config::{valid_user_name, GatewayConfig};
use crate::identity::Identity;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// How far ahead an expiring certificate or CRL is warned about in the log: time enough to renew
/// it before the array raises its alert (or loses its key at the next boot).
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier for {who}: {problem}")]
    Verifier { who: String, problem: String },
}

/// Why an authenticated TLS peer is not let in. Labels are stable metric/log values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("no client certificate presented")]
    NoCertificate,
    #[error("client certificate cannot be parsed")]
    Unparsable,
    #[error("client certificate has no subject Common Name")]
    EmptyCommonName,
    #[error("client certificate Common Name '{0}' is a wildcard")]
    WildcardCommonName(String),
    #[error("client certificate subject has {0} Common Names where exactly one is required")]
    MultipleCommonNames(usize),
    #[error("client certificate Common Name is not a plain name: {0}")]
    InvalidCommonName(crate::tooling::pki::CommonNameError),
    #[error("no user for Common Name '{0}'")]
    UnknownUser(String),
    #[error("client certificate does not allow client authentication (no clientAuth extended key usage)")]
    MissingClientAuthEku,
    #[error("certificate for user '{user}' was not issued by a CA trusted for that user")]
    CaNotTrustedForUser { user: String },
    #[error("certificate for user '{user}' is not signed directly by one of that user's CAs (direct_issuer_only)")]
    IndirectIssuer { user: String },
    #[error("certificate for user '{user}' is revoked")]
    Revoked { user: String },
    #[error("certificate for user '{user}' has expired")]
    Expired { user: String },
    #[error("certificate (serial {serial}) is on the deny list")]
    Denied { serial: String },
}

impl AuthError {
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::NoCertificate => "no_certificate",
            AuthError::Unparsable => "unparsable_certificate",
            AuthError::EmptyCommonName => "empty_common_name",
            AuthError::WildcardCommonName(_) => "wildcard_common_name",
            AuthError::MultipleCommonNames(_) => "multiple_common_names",
            AuthError::InvalidCommonName(_) => "invalid_common_name",
            AuthError::UnknownUser(_) => "unknown_user",
            AuthError::MissingClientAuthEku => "missing_client_auth_eku",
            AuthError::CaNotTrustedForUser { .. } => "ca_not_trusted_for_user",
            AuthError::IndirectIssuer { .. } => "indirect_issuer",
            // The same labels as the handshake's for these causes (`handshake_failure_label`).
            AuthError::Revoked { .. } => "certificate_revoked",
            AuthError::Expired { .. } => "certificate_expired",
            AuthError::Denied { .. } => "denied",
        }
    }
}

impl From<crate::tooling::pki::CommonNameError> for AuthError {
    /// Keeps the labels the listener had before the rule was shared: no usable name is
    /// `empty_common_name`, a wildcard is `wildcard_common_name`.
    fn from(e: crate::tooling::pki::CommonNameError) -> Self {
        use crate::tooling::pki::CommonNameError as E;
        match e {
            E::Missing | E::Empty | E::Unreadable => AuthError::EmptyCommonName,
            E::Wildcard(cn) => AuthError::WildcardCommonName(cn),
            E::Multiple(n) => AuthError::MultipleCommonNames(n),
            e @ (E::TooLong | E::ControlCharacters | E::SurroundingWhitespace) => {
                AuthError::InvalidCommonName(e)
            }
        }
    }
}

/// Labels a failed handshake by its cause, so the FlashArray's "cannot connect and authenticate"
/// failures can be told apart in logs and metrics.
pub fn handshake_failure_label(err: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error as E};
    let Some(inner) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match err.kind() {
            std::io::ErrorKind::InvalidData => "not_tls",
            std::io::ErrorKind::UnexpectedEof => "closed_during_handshake",
            _ => "io",
        };
    };
    match inner {
        E::NoCertificatesPresented => "no_client_certificate",
        E::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate_expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate_not_yet_valid"
            }
            CertificateError::Revoked => "certificate_revoked",
            CertificateError::UnknownIssuer | CertificateError::BadSignature => "untrusted_chain",
            CertificateError::UnknownRevocationStatus => "unknown_revocation_status",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "missing_client_auth_eku"
            }
            _ => "bad_certificate",
        },
        E::InvalidMessage(_) => "not_tls",
        E::PeerIncompatible(_) | E::NoApplicationProtocol => "incompatible_client",
        E::AlertReceived(_) => "client_alert",
        _ => "tls_error",
    }
}

/// Why a user's verifier refused a chain, for the reasons an operator acts on differently.
fn chain_refusal(err: &rustls::Error, user: &str) -> AuthError {
    use rustls::{CertificateError, Error as E};
    let user = user.to_owned();
    match err {
        E::InvalidCertificate(CertificateError::Revoked) => AuthError::Revoked { user },
        E::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => AuthError::Expired { user },
        _ => AuthError::CaNotTrustedForUser { user },
    }
}

struct UserAuth {
    verifier: Arc<dyn ClientCertVerifier>,
    /// The user trusts exactly the handshake's CAs and CRLs, so a full handshake has already
    /// run this user's verification (the common single-CA deployment).
    same_as_handshake: bool,
    /// `[[users]] direct_issuer_only`.
    direct_issuer_only: bool,
}

/// What a configured certificate or CRL is, for the expiry gauges and warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryKind {
    Server,
    Ca,
    Crl,
    Client,
}

impl ExpiryKind {
    pub fn label(self) -> &'static str {
        match self {
            ExpiryKind::Server => "server",
            ExpiryKind::Ca => "ca",
            ExpiryKind::Crl => "crl",
            ExpiryKind::Client => "client",
        }
    }
}

/// When something the TLS state depends on runs out: a certificate's `notAfter`, a CRL's
/// `nextUpdate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub kind: ExpiryKind,
    pub subject: String,
    /// Unix time, seconds.
    pub not_after: i64,
    pub path: PathBuf,
}

/// Everything TLS-related built from the configuration; replaced whole on reload.
pub struct TlsState {
    pub server_config: Arc<ServerConfig>,
    users: HashMap<String, UserAuth>,
    deny_serials: HashSet<String>,
    deny_fingerprints: HashSet<String>,
    /// The server certificate, the CAs and the CRLs this state was built from.
    pub expiries: Vec<Expiry>,
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| TlsSetupError::File {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::File {
            path: path.display().to_string(),
            problem: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::File {
            path: path.display().to_string(),
            problem: "contains no certificate".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = zeroize::Zeroizing::new(read_file(path)?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsSetupError::File {
        path: path.display().to_string(),
        problem: "contains no usable PEM private key".into(),
    })
}

/// Subject and `notAfter` (Unix seconds) of a DER certificate.
pub fn cert_subject_and_expiry(der: &[u8]) -> Option<(String, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((
        cert.subject().to_string(),
        cert.validity().not_after.timestamp(),
    ))
}

/// Files already read during one build, so a CA or CRL shared by several users is read once.
#[derive(Default)]
struct Loaded {
    cas: HashMap<PathBuf, Vec<CertificateDer<'static>>>,
    crls: HashMap<PathBuf, Vec<CertificateRevocationListDer<'static>>>,
    expiries: Vec<Expiry>,
}

impl Loaded {
    fn cas(&mut self, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
        if let Some(c) = self.cas.get(path) {
            return Ok(c.clone());
        }
        let certs = load_certs(path)?;
        for der in &certs {
            let (subject, not_after) =
                cert_subject_and_expiry(der).ok_or_else(|| TlsSetupError::File {
                    path: path.display().to_string(),
                    problem: "a certificate cannot be parsed".into(),
                })?;
            self.expiries.push(Expiry {
                kind: ExpiryKind::Ca,
                subject,
                not_after,
                path: path.to_path_buf(),
            });
        }
        self.cas.insert(path.to_path_buf(), certs.clone());
        Ok(certs)
    }

    /// Reads a CRL file (one or more PEM CRLs) and checks each is signed by one of `cas`: a CRL
    /// nobody trusted issued would be silently ignored by the verifier, so it is a setup error.
    fn crls(
        &mut self,
        path: &Path,
        cas: &[CertificateDer<'static>],
    ) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
        if let Some(c) = self.crls.get(path) {
            return Ok(c.clone());
        }
        let bad = |problem: String| TlsSetupError::File {
            path: path.display().to_string(),
            problem,
        };
        let pem = read_file(path)?;
        let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not a PEM CRL file: {e}")))?;
        if crls.is_empty() {
            return Err(bad("contains no CRL".into()));
        }
        for der in &crls {
            use x509_parser::prelude::FromDer;
            let (_, crl) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(der.as_ref())
                    .map_err(|e| bad(format!("a CRL cannot be parsed: {e}")))?;
            let signed_by_trusted = cas.iter().any(|ca| {
                x509_parser::parse_x509_certificate(ca.as_ref())
                    .map(|(_, ca)| {
                        ca.subject().as_raw() == crl.issuer().as_raw()
                            && crl.verify_signature(ca.public_key()).is_ok()
                    })
                    .unwrap_or(false)
            });
            if !signed_by_trusted {
                return Err(bad(format!(
                    "CRL of '{}' is not signed by a trusted CA",
                    crl.issuer()
                )));
            }
            // No nextUpdate means "no newer CRL promised": nothing to warn about.
            if let Some(next) = crl.next_update() {
                self.expiries.push(Expiry {
                    kind: ExpiryKind::Crl,
                    subject: crl.issuer().to_string(),
                    not_after: next.timestamp(),
                    path: path.to_path_buf(),
                });
            }
        }
        self.crls.insert(path.to_path_buf(), crls.clone());
        Ok(crls)
    }
}

fn verifier(
    roots: &[CertificateDer<'static>],
    crls: Vec<CertificateRevocationListDer<'static>>,
    who: &str,
) -> Result<Arc<dyn ClientCertVerifier>, TlsSetupError> {
    let problem = |problem: String| TlsSetupError::Verifier {
        who: who.to_string(),
        problem,
    };
    let mut store = RootCertStore::empty();
    for cert in roots {
        store
            .add(cert.clone())
            .map_err(|e| problem(format!("not a usable CA certificate: {e}")))?;
    }
    // No CA names in the CertificateRequest: with several tenants behind one listener, the
    // default (every trust anchor's subject) would tell each tenant every other tenant's CAs.
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(store), crypto_provider())
            .clear_root_hint_subjects();
    if !crls.is_empty() {
        // See the module comment for why these two.
        builder = builder
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    builder.build().map_err(|e| problem(e.to_string()))
}

/// A set of DER encodings, to compare trust configurations.
fn der_set<'a>(items: impl Iterator<Item = &'a [u8]>) -> std::collections::BTreeSet<&'a [u8]> {
    items.collect()
}

/// The one crypto provider of the process (aws-lc-rs).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsState {
    /// Builds the complete TLS state, or says which file is wrong. `previous` keeps session
    /// resumption (cache and ticket keys) across reloads.
    pub fn build(
        cfg: &GatewayConfig,
        previous: Option<&TlsState>,
    ) -> Result<TlsState, TlsSetupError> {
        let chain = load_certs(&cfg.tls.cert)?;
        let key = load_key(&cfg.tls.key)?;
        let mut loaded = Loaded::default();
        let (server_subject, server_not_after) = chain
            .first()
            .and_then(|c| cert_subject_and_expiry(c))
            .ok_or_else(|| TlsSetupError::File {
                path: cfg.tls.cert.display().to_string(),
                problem: "the server certificate cannot be parsed".into(),
            })?;
        let mut all_cas = Vec::new();
        for user in &cfg.users {
            for path in &user.cas {
                all_cas.extend(loaded.cas(path)?);
            }
        }
        let mut global_crls = Vec::new();
        for path in &cfg.revocation.crls {
            global_crls.extend(loaded.crls(path, &all_cas)?);
        }
        let mut all_crls = global_crls.clone();
        let mut per_user = Vec::with_capacity(cfg.users.len());
        for user in &cfg.users {
            let mut cas = Vec::new();
            for path in &user.cas {
                cas.extend(loaded.cas(path)?);
            }
            let mut crls = global_crls.clone();
            for path in &user.crls {
                let own = loaded.crls(path, &cas)?;
                all_crls.extend(own.iter().cloned());
                crls.extend(own);
            }
            let v = verifier(&cas, crls.clone(), &format!("user '{}'", user.name))?;
            per_user.push((user.name.clone(), v, cas, crls, user.direct_issuer_only));
        }
        let mut users = HashMap::with_capacity(per_user.len());
        let all_ca_set = der_set(all_cas.iter().map(|c| c.as_ref()));
        let all_crl_set = der_set(all_crls.iter().map(|c| c.as_ref()));
        for (name, verifier, cas, crls, direct_issuer_only) in per_user {
            let same_as_handshake = der_set(cas.iter().map(|c| c.as_ref())) == all_ca_set
                && der_set(crls.iter().map(|c| c.as_ref())) == all_crl_set;
            users.insert(
                name,
                UserAuth {
                    verifier,
                    same_as_handshake,
                    direct_issuer_only,
                },
            );
        }
        let handshake_verifier = verifier(&all_cas, all_crls, "all users")?;
        let mut expiries = vec![Expiry {
            kind: ExpiryKind::Server,
            subject: server_subject,
            not_after: server_not_after,
            path: cfg.tls.cert.clone(),
        }];
        expiries.append(&mut loaded.expiries);
        let mut sc = ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(handshake_verifier)
            .with_single_cert(chain, key)?;
        match previous {
            Some(prev) => {
                sc.session_storage = prev.server_config.session_storage.clone();
                sc.ticketer = prev.server_config.ticketer.clone();
            }
            None => {
                sc.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
            }
        }
        Ok(TlsState {
            server_config: Arc::new(sc),
            users,
            deny_serials: cfg.revocation.deny_serials.iter().cloned().collect(),
            deny_fingerprints: cfg.revocation.deny_fingerprints.iter().cloned().collect(),
            expiries,
        })
    }

    /// Maps a verified client chain to a configured user. `full_handshake`: this state's own
    /// verifier checked the chain just now (not a resumed session, not a re-check after reload).
    pub fn authenticate(
        &self,
        chain: Option<&[CertificateDer<'_>]>,
        full_handshake: bool,
    ) -> Result<Identity, AuthError> {
        let chain = chain.unwrap_or(&[]);
        let (end_entity, intermediates) = chain.split_first().ok_or(AuthError::NoCertificate)?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(end_entity).map_err(|_| AuthError::Unparsable)?;
        // webpki lets a certificate without any EKU through (RFC 5280: no restriction), so any
        // certificate a tenant's CA ever issued, for a web server say, could otherwise log in.
        match cert.extended_key_usage() {
            Ok(Some(eku)) if eku.value.client_auth => {}
            Ok(_) => return Err(AuthError::MissingClientAuthEku),
            Err(_) => return Err(AuthError::Unparsable),
        }
        // The same Common Name rule the CA applies when it issues (`tooling::pki`).
        let cn = crate::tooling::pki::subject_common_name(cert.subject())
            .map_err(AuthError::from)?
            .to_owned();
        let serial_hex = crate::tooling::pki::Serial::from_bytes(cert.raw_serial())
            .map(|s| s.to_hex())
            .unwrap_or_else(|_| hex::encode(cert.raw_serial()));
        let fingerprint = hex::encode(Sha256::digest(end_entity.as_ref()));
        if self.deny_serials.contains(&serial_hex) || self.deny_fingerprints.contains(&fingerprint)
        {
            return Err(AuthError::Denied { serial: serial_hex });
        }
        if !valid_user_name(&cn) {
            return Err(AuthError::UnknownUser(cn));
        }
        let user = self
            .users
            .get(&cn)
            .ok_or_else(|| AuthError::UnknownUser(cn.clone()))?;
        let now = UnixTime::now();
        if !(full_handshake && user.same_as_handshake) {
            user.verifier
                .verify_client_cert(end_entity, intermediates, now)
                .map_err(|e| chain_refusal(&e, &cn))?;
        }
        if user.direct_issuer_only {
            // Without the intermediates the client sent, only a certificate signed by one of the
            // user's CAs itself can verify; the chain as a whole passed above.
            user.verifier
                .verify_client_cert(end_entity, &[], now)
                .map_err(|_| AuthError::IndirectIssuer { user: cn.clone() })?;
        }
        Ok(Identity {
            user: cn,
            subject: cert.subject().to_string(),
            serial_hex,
            fingerprint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tooling::pki::{self, CaBundle, CertProfile, IssueOptions, IssuedCert};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
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
            let ca = self.write("ca.pem", ca_pem);
            let text = format!(
                "listen = \"127.0.0.1:0\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
                 [[users]]\nname = \"purefa\"\ncas = [{ca}]\n{user_extra}\n{extra}"
            );
            let cfg = GatewayConfig::from_toml_str(&text, self.dir.path()).unwrap();
            TlsState::build(&cfg, None).unwrap()
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
        Arc::new(
            rustls::sign::CertifiedKey::from_der(chain(&[&cert.cert_pem]), key, provider).unwrap(),
        )
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
}
