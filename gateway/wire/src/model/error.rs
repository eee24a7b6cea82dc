//! The one error type of the typed model.

use thiserror::Error;

/// Why a TTLV tree is not the KMIP message or payload it should be. `path` names the offending
/// field, e.g. `BatchItem[1].RequestPayload.UniqueIdentifier`. Messages never contain field
/// values other than names and enumeration numbers, so key material cannot leak through them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    #[error("{path}: missing")]
    Missing { path: String },
    #[error("{path}: expected {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: {what} is not supported")]
    Unsupported { path: String, what: &'static str },
    #[error("RequestHeader.BatchCount is {declared} but the message has {actual} batch items")]
    BatchCountMismatch { declared: i32, actual: usize },
    #[error("not a RequestMessage (outer tag {found})")]
    NotARequest { found: String },
    #[error("{actual} batch items exceed the limit of {limit}")]
    TooManyItems { actual: usize, limit: usize },
}
