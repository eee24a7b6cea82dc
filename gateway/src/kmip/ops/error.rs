//! The operation layer's error, and the one exhaustive mapping of every error of every layer
//! below the connection to a KMIP Result Reason.

use kmip_backends::BackendError;
use kmip_wire::model::{ModelError, ProtocolVersion, ResultReason};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OpError {
    /// No such object, or one the caller may not see (answered identically on purpose).
    #[error("object not found")]
    NotFound,
    #[error("the key's usage mask does not allow this use")]
    IncompatibleUsageMask,
    #[error("decryption in this mode needs the IV/Counter/Nonce")]
    MissingIv,
    #[error("object has been destroyed")]
    Destroyed,
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("operation not supported")]
    OperationNotSupported,
    #[error("{0}")]
    FeatureNotSupported(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("missing {0}")]
    MissingData(String),
    #[error("object is {0}, which does not allow this operation")]
    WrongState(&'static str),
    #[error("attribute {0} is set by the server")]
    ReadOnlyAttribute(String),
    #[error("attribute {0} is single-valued and already present")]
    SingleValued(String),
    #[error("attribute instance not found")]
    AttributeNotFound,
    #[error("another object already has the name {0}")]
    NonUniqueName(String),
    #[error("key format type not supported")]
    KeyFormatNotSupported,
    #[error("the object is sensitive and is never returned in clear")]
    Sensitive,
    #[error("the key may not be extracted")]
    NotExtractable,
    #[error("cryptographic parameters not supported: {0}")]
    BadCryptoParameters(String),
    #[error("response exceeds the client's Maximum Response Size")]
    ResponseTooLarge,
    /// The caller already owns this many live objects (`limits.max_objects_per_user`).
    #[error(
        "limits.max_objects_per_user ({0}) reached: destroy objects or ask for a higher limit"
    )]
    ObjectLimit(usize),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<crate::kmip::store::StoreError> for OpError {
    fn from(e: crate::kmip::store::StoreError) -> OpError {
        match e {
            crate::kmip::store::StoreError::Backend(b) => OpError::Backend(b),
            crate::kmip::store::StoreError::ObjectLimit { limit } => OpError::ObjectLimit(limit),
            crate::kmip::store::StoreError::BadMeta(uid, why) => {
                OpError::Backend(BackendError::Corrupt(format!("{uid}: {why}")))
            }
        }
    }
}

impl OpError {
    /// The Result Reason a client of `version` gets for this error. The only place the mapping
    /// is made; a new variant anywhere fails to compile until it is mapped here.
    pub fn result_reason(&self, version: ProtocolVersion) -> ResultReason {
        let v2 = version.is_v2();
        match self {
            OpError::NotFound if v2 => ResultReason::ObjectNotFound,
            OpError::NotFound => ResultReason::ItemNotFound,
            OpError::IncompatibleUsageMask if v2 => {
                ResultReason::IncompatibleCryptographicUsageMask
            }
            OpError::IncompatibleUsageMask => ResultReason::PermissionDenied,
            OpError::Destroyed if v2 => ResultReason::ObjectDestroyed,
            OpError::Destroyed => ResultReason::ItemNotFound,
            OpError::PermissionDenied(_) => ResultReason::PermissionDenied,
            OpError::OperationNotSupported => ResultReason::OperationNotSupported,
            OpError::FeatureNotSupported(_) => ResultReason::FeatureNotSupported,
            OpError::InvalidField(_) => ResultReason::InvalidField,
            OpError::MissingData(_) => ResultReason::MissingData,
            // KMIP 1.x has no lifecycle-state reason; its profiles answer Permission Denied.
            OpError::WrongState(_) if v2 => ResultReason::WrongKeyLifecycleState,
            OpError::WrongState(_) => ResultReason::PermissionDenied,
            OpError::ReadOnlyAttribute(_) if v2 => ResultReason::AttributeReadOnly,
            OpError::ReadOnlyAttribute(_) => ResultReason::PermissionDenied,
            OpError::SingleValued(_) if v2 => ResultReason::AttributeSingleValued,
            OpError::SingleValued(_) => ResultReason::IllegalOperation,
            OpError::AttributeNotFound if v2 => ResultReason::AttributeNotFound,
            OpError::AttributeNotFound => ResultReason::ItemNotFound,
            OpError::NonUniqueName(_) if v2 => ResultReason::NonUniqueNameAttribute,
            OpError::NonUniqueName(_) => ResultReason::IllegalOperation,
            OpError::KeyFormatNotSupported => ResultReason::KeyFormatTypeNotSupported,
            OpError::Sensitive if v2 => ResultReason::Sensitive,
            OpError::Sensitive => ResultReason::PermissionDenied,
            OpError::NotExtractable if v2 => ResultReason::NotExtractable,
            OpError::NotExtractable => ResultReason::PermissionDenied,
            OpError::BadCryptoParameters(_) => ResultReason::CryptographicFailure,
            OpError::ResponseTooLarge => ResultReason::ResponseTooLarge,
            // KMIP 1.x has no reason for a server-side limit: its catch-all, with the message
            // naming the limit.
            OpError::ObjectLimit(_) if v2 => ResultReason::ServerLimitExceeded,
            OpError::ObjectLimit(_) => ResultReason::GeneralFailure,
            // The OASIS vectors (CS-BC-M-11) answer a missing IV with Invalid Message in 1.4
            // and 2.1 alike.
            OpError::MissingIv => ResultReason::InvalidMessage,
            OpError::Model(e) => e.result_reason(),
            OpError::Backend(e) => match e {
                BackendError::NotFound(_) => ResultReason::ItemNotFound,
                BackendError::AlreadyExists(_) => ResultReason::IllegalOperation,
                BackendError::NotExtractable(_) if v2 => ResultReason::NotExtractable,
                BackendError::NotExtractable(_) => ResultReason::PermissionDenied,
                BackendError::Unsupported(_) => ResultReason::FeatureNotSupported,
                BackendError::InvalidInput(_) => ResultReason::InvalidField,
                BackendError::Crypto(_) | BackendError::IntegrityCheckFailed => {
                    ResultReason::CryptographicFailure
                }
                BackendError::Busy(_)
                | BackendError::Unavailable(_)
                | BackendError::Io(_)
                | BackendError::Corrupt(_)
                | BackendError::Pkcs11 { .. } => ResultReason::GeneralFailure,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A backend out of sessions fails the item with a reason and a message that tell the
    /// operator why, without closing the connection; the end-to-end pool test relies on it.
    #[test]
    fn a_busy_backend_is_a_general_failure_saying_no_session() {
        let e = OpError::Backend(BackendError::Busy(Duration::from_millis(200)));
        for v in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
            assert_eq!(e.result_reason(v), ResultReason::GeneralFailure);
        }
        assert!(e.to_string().contains("no session available"), "{e}");
    }
}
