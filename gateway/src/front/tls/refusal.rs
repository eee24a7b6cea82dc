//! Why a client is refused: the stable labels of failed handshakes and of certificates that pass
//! TLS but are not let in, as logs and metrics show them.

use thiserror::Error;

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
pub(super) fn chain_refusal(err: &rustls::Error, user: &str) -> AuthError {
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
