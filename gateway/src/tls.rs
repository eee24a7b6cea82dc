//! TLS material and client authentication.
//!
//! The handshake verifies the client chain against the union of all users' CAs (and CRLs, when
//! configured); afterwards [`TlsState::authenticate`] maps the certificate to a user the way the
//! FlashArray guide's KMES does: the subject Common Name names the user, and the CA that issued it
//! must be one trusted for *that* user. Every refusal has a distinct [`AuthError`] so operators can
//! tell "cannot authenticate" from "not a known user".
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
    #[error("no user for Common Name '{0}'")]
    UnknownUser(String),
    #[error("certificate for user '{user}' was not issued by a CA trusted for that user, is revoked or has expired")]
    CaNotTrustedForUser { user: String },
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
            AuthError::UnknownUser(_) => "unknown_user",
            AuthError::CaNotTrustedForUser { .. } => "ca_not_trusted_for_user",
            AuthError::Denied { .. } => "denied",
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
            _ => "bad_certificate",
        },
        E::InvalidMessage(_) => "not_tls",
        E::PeerIncompatible(_) | E::NoApplicationProtocol => "incompatible_client",
        E::AlertReceived(_) => "client_alert",
        _ => "tls_error",
    }
}

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub subject: String,
    pub serial_hex: String,
    /// SHA-256 of the client certificate's DER, lowercase hex.
    pub fingerprint: String,
}

struct UserAuth {
    verifier: Arc<dyn ClientCertVerifier>,
    /// The user trusts exactly the handshake's CAs and CRLs, so a full handshake has already
    /// run this user's verification (the common single-CA deployment).
    same_as_handshake: bool,
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
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(store), crypto_provider());
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
            per_user.push((user.name.clone(), v, cas, crls));
        }
        let mut users = HashMap::with_capacity(per_user.len());
        let all_ca_set = der_set(all_cas.iter().map(|c| c.as_ref()));
        let all_crl_set = der_set(all_crls.iter().map(|c| c.as_ref()));
        for (name, verifier, cas, crls) in per_user {
            let same_as_handshake = der_set(cas.iter().map(|c| c.as_ref())) == all_ca_set
                && der_set(crls.iter().map(|c| c.as_ref())) == all_crl_set;
            users.insert(
                name,
                UserAuth {
                    verifier,
                    same_as_handshake,
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
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .unwrap_or_default();
        if cn.trim().is_empty() {
            return Err(AuthError::EmptyCommonName);
        }
        if cn.contains('*') {
            return Err(AuthError::WildcardCommonName(cn));
        }
        let serial_hex = crate::pki::Serial::from_bytes(cert.raw_serial())
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
        if !(full_handshake && user.same_as_handshake) {
            user.verifier
                .verify_client_cert(end_entity, intermediates, UnixTime::now())
                .map_err(|_| AuthError::CaNotTrustedForUser { user: cn.clone() })?;
        }
        Ok(Identity {
            user: cn,
            subject: cert.subject().to_string(),
            serial_hex,
            fingerprint,
        })
    }
}
