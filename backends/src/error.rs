//! The backend layer's one error type. The gateway maps each variant to a KMIP Result Reason in a
//! single exhaustive function; messages here never contain key material or PINs.

use thiserror::Error;

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
    #[error("stored data is corrupt or foreign: {0}")]
    Corrupt(String),
    /// A PKCS#11 call failed; `class` is the coarse meaning the gateway maps to a Result Reason,
    /// `rv` the CKR name (never data or PINs).
    #[error("PKCS#11 call {call} failed: {rv}")]
    Pkcs11 {
        call: String,
        class: crate::pkcs11::RvClass,
        rv: String,
    },
}
