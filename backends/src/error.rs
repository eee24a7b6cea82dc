//! The backend layer's one error type, and the backend-neutral classification of failures that
//! every backend maps its own error codes onto. The gateway maps each variant (and each class) to
//! a KMIP Result Reason in a single exhaustive function; messages here never contain key material
//! or PINs.

use thiserror::Error;

/// What a failed call into the library or device holding the keys means, whichever backend made
/// it: what the backend does about it (retry on a fresh session, rescan its handles) and what the
/// gateway answers. PKCS#11 maps every CK_RV onto it (`pkcs11::rv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The session or connection is unusable (closed, token gone, login lost): discard it and
    /// retry once on a fresh one.
    BrokenSession,
    /// The object or key handle does not exist (any more).
    NotFound,
    /// The key store refuses: sensitive attribute, wrong PIN, key usage not permitted, read-only.
    PermissionDenied,
    /// The request is malformed for this key store: bad lengths, mechanism, parameters, template.
    InvalidInput,
    /// A cryptographic check failed: bad ciphertext, tag or signature.
    Crypto,
    /// The key store or its library is out of service (device error, memory, not initialised).
    Unavailable,
    /// The key store has no capacity right now (session count).
    Busy,
    /// Anything else: protocol misuse or codes with no meaning for this backend.
    Other,
}

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("object {0} already exists")]
    AlreadyExists(String),
    #[error("object {0} may not be extracted")]
    NotExtractable(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("cryptographic failure: {0}")]
    Crypto(String),
    #[error("authentication tag or padding check failed")]
    IntegrityCheckFailed,
    #[error("backend busy: no session available within {0:?}")]
    Busy(std::time::Duration),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// A shared backend refused a write made from a stale copy: another instance wrote the
    /// object since. The gateway re-reads the object and tries again.
    #[error("object {0} was changed by another instance")]
    Conflict(String),
    #[error("stored data is corrupt or foreign: {0}")]
    Corrupt(String),
    /// A call into the library or device holding the keys failed. `api` names the interface
    /// ("PKCS#11"), `call` the function, `code` the name of its return code (never data or
    /// PINs); `class` is what the failure means, which the gateway maps to a Result Reason.
    #[error("{api} call {call} failed: {code}")]
    Call {
        api: &'static str,
        call: String,
        class: FailureClass,
        code: String,
    },
}
