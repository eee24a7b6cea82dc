//! TLS material and client authentication.
//!
//! The handshake verifies the client chain against the union of all users' CAs (and CRLs, when
//! configured); afterwards [`TlsState::authenticate`] maps the certificate to a user the way the
//! FlashArray guide's KMES does: the subject Common Name names the user, and the CA that issued it
//! must be one trusted for *that* user. Every refusal has a distinct [`AuthError`] so operators can
//! tell "cannot authenticate" from "not a known user".

use crate::config::{valid_user_name, GatewayConfig, UserConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

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
    #[error("certificate for user '{user}' was not issued by a CA trusted for that user")]
    CaNotTrustedForUser { user: String },
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
}

/// Everything TLS-related built from the configuration; replaced whole on reload.
pub struct TlsState {
    pub server_config: Arc<ServerConfig>,
    users: HashMap<String, UserAuth>,
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

fn roots_of(paths: &[std::path::PathBuf]) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        for cert in load_certs(path)? {
            roots.add(cert).map_err(|e| TlsSetupError::File {
                path: path.display().to_string(),
                problem: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    Ok(roots)
}

fn verifier(roots: RootCertStore, who: &str) -> Result<Arc<dyn ClientCertVerifier>, TlsSetupError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| TlsSetupError::Verifier {
            who: who.to_string(),
            problem: e.to_string(),
        })
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
        let all_cas: Vec<_> = cfg
            .users
            .iter()
            .flat_map(|u| u.cas.iter().cloned())
            .collect();
        let handshake_verifier = verifier(roots_of(&all_cas)?, "all users")?;
        let mut users = HashMap::with_capacity(cfg.users.len());
        for UserConfig { name, cas } in &cfg.users {
            let v = verifier(roots_of(cas)?, &format!("user '{name}'"))?;
            users.insert(name.clone(), UserAuth { verifier: v });
        }
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
        })
    }

    /// Maps a verified client chain to a configured user.
    pub fn authenticate(
        &self,
        chain: Option<&[CertificateDer<'_>]>,
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
        if !valid_user_name(&cn) {
            return Err(AuthError::UnknownUser(cn));
        }
        let user = self
            .users
            .get(&cn)
            .ok_or_else(|| AuthError::UnknownUser(cn.clone()))?;
        user.verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map_err(|_| AuthError::CaNotTrustedForUser { user: cn.clone() })?;
        Ok(Identity {
            user: cn,
            subject: cert.subject().to_string(),
            serial_hex: cert.raw_serial_as_string().replace(':', ""),
            fingerprint: hex::encode(Sha256::digest(end_entity.as_ref())),
        })
    }
}
