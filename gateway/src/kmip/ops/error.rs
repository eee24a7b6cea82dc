//! The operation layer's error, and the one exhaustive mapping of every error of every layer
//! below the connection (the dispatcher's message-level failures included) to a KMIP Result
//! Reason.

use kmip_backends::error::FailureClass;
use kmip_backends::BackendError;
use kmip_wire::model::{ModelError, ProtocolVersion, ResultReason};
use kmip_wire::ttlv::TtlvError;
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
    /// An object of another type than the operation works on (a Join Split Key part that is not
    /// a Split Key).
    #[error("{0}")]
    InvalidObjectType(String),
    #[error("missing {0}")]
    MissingData(String),
    /// A certificate request the server will not certify (unparsable, bad signature, asks for
    /// what Certify does not issue).
    #[error("invalid certificate request: {0}")]
    InvalidCsr(String),
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
    /// The encoded response is larger than the request's Maximum Response Size.
    #[error("response exceeds the client's Maximum Response Size")]
    ResponseTooLarge,
    /// The message's bytes are not TTLV: answered once, then the connection is closed.
    #[error(transparent)]
    Undecodable(TtlvError),
    /// The caller already owns this many live objects (`limits.max_objects_per_user`).
    #[error(
        "limits.max_objects_per_user ({0}) reached: destroy objects or ask for a higher limit"
    )]
    ObjectLimit(usize),
    /// The client asked for a Quantum Safe object that this key would not be.
    #[error("not quantum safe: {0}")]
    NotQuantumSafe(String),
    /// An authentication tag length (GCM, Poly1305) outside SP 800-38D's set (bytes asked).
    #[error("tag length {0} is not one of {allowed:?} bytes", allowed = super::crypto::TAG_LENGTHS)]
    TagLength(i32),
    /// Poll named an asynchronous operation, and this server never leaves one outstanding.
    #[error("no asynchronous operation is outstanding: this server answers every request at once")]
    NoAsynchronousOperation,
    /// A PKCS#11 operation naming a function this server does not offer.
    #[error("PKCS#11: {0}")]
    Pkcs11InvalidFunction(String),
    /// A PKCS#11 operation naming an interface this server does not offer.
    #[error("PKCS#11: {0}")]
    Pkcs11InvalidInterface(String),
    /// A Correlation Value that names no open stream of the caller (unknown, expired,
    /// finished, or another user's: answered alike).
    #[error("no open multi-part operation has this Correlation Value")]
    UnknownStream,
    /// A multi-part operation limit (named in the message) is reached.
    #[error("too many open multi-part operations: {0}")]
    StreamLimit(&'static str),
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
            // KMIP 1.x has no Invalid Object Type reason: the field naming the object is invalid.
            OpError::InvalidObjectType(_) if v2 => ResultReason::InvalidObjectType,
            OpError::InvalidObjectType(_) => ResultReason::InvalidField,
            OpError::MissingData(_) => ResultReason::MissingData,
            // KMIP 1.x has no Invalid CSR reason: the request field is invalid.
            OpError::InvalidCsr(_) if v2 => ResultReason::InvalidCsr,
            OpError::InvalidCsr(_) => ResultReason::InvalidField,
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
            // No Result Reason names it; the Quantum Safe profile (QS-M-2) answers General Failure.
            OpError::NotQuantumSafe(_) => ResultReason::GeneralFailure,
            // The OASIS vectors (CS-BC-M-GCM-1, CS-BC-M-CHACHA20POLY1305-1) answer an unusable
            // tag length with General Failure in 1.4 and 2.1 alike.
            OpError::TagLength(_) => ResultReason::GeneralFailure,
            OpError::NoAsynchronousOperation if v2 => {
                ResultReason::InvalidAsynchronousCorrelationValue
            }
            // KMIP 1.4 11.29: Poll of no outstanding operation is Item Not Found.
            OpError::NoAsynchronousOperation => ResultReason::ItemNotFound,
            // The OASIS vectors (CS-BC-M-11) answer a missing IV with Invalid Message in 1.4
            // and 2.1 alike.
            OpError::MissingIv => ResultReason::InvalidMessage,
            // The PKCS#11 operation is 2.x only; a 1.x client cannot have asked for it.
            OpError::Pkcs11InvalidFunction(_) if v2 => ResultReason::Pkcs11InvalidFunction,
            OpError::Pkcs11InvalidInterface(_) if v2 => ResultReason::Pkcs11InvalidInterface,
            OpError::Pkcs11InvalidFunction(_) | OpError::Pkcs11InvalidInterface(_) => {
                ResultReason::OperationNotSupported
            }
            OpError::Undecodable(_) => ResultReason::InvalidMessage,
            OpError::UnknownStream if v2 => ResultReason::InvalidCorrelationValue,
            // KMIP 1.x has no Correlation Value reason: the stream, like an object, is not found.
            OpError::UnknownStream => ResultReason::ItemNotFound,
            OpError::StreamLimit(_) if v2 => ResultReason::ServerLimitExceeded,
            OpError::StreamLimit(_) => ResultReason::GeneralFailure,
            OpError::Model(e) => match e {
                ModelError::Missing { .. }
                | ModelError::NotARequest { .. }
                | ModelError::BatchCountMismatch { .. }
                | ModelError::TooManyItems { .. } => ResultReason::InvalidMessage,
                ModelError::WrongType { .. } | ModelError::Invalid { .. } => {
                    ResultReason::InvalidField
                }
                ModelError::Unsupported { .. } => ResultReason::FeatureNotSupported,
            },
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
                | BackendError::Corrupt(_) => ResultReason::GeneralFailure,
                // The store retries a conflicting write on a fresh copy; one still refused
                // after its retries is the server failing to complete it, not a bad request.
                BackendError::Conflict(_) => ResultReason::GeneralFailure,
                // A failed call into the key store answers by what it means, as the backend's
                // own variants above do. KMIP 1.4 §11 (e.g. §11.30, Encrypt Errors) answers a
                // missing object with Item Not Found, an object that may not be used so with
                // Permission Denied, an invalid value with Invalid Field and a cryptographic
                // error with Cryptographic Failure; 2.1's tables (§6.1.x.1) list the same.
                BackendError::Call { class, .. } => match class {
                    FailureClass::NotFound => ResultReason::ItemNotFound,
                    FailureClass::PermissionDenied => ResultReason::PermissionDenied,
                    FailureClass::InvalidInput => ResultReason::InvalidField,
                    FailureClass::Crypto => ResultReason::CryptographicFailure,
                    // An outage is the server's trouble, not the request's: KMIP 1.4 §6.10 has
                    // only General Failure for it. 2.1 §11.46 adds Internal Server Error, but
                    // every other outage (vault I/O, token gone, no free session) answers
                    // General Failure in both versions, and one key store must not answer
                    // differently from another.
                    FailureClass::BrokenSession
                    | FailureClass::Unavailable
                    | FailureClass::Busy
                    | FailureClass::Other => ResultReason::GeneralFailure,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use ResultReason as R;

    /// A failed key-store call of `class`, as the PKCS#11 backend reports one.
    fn call(class: FailureClass) -> OpError {
        OpError::Backend(BackendError::Call {
            api: "PKCS#11",
            call: "C_Encrypt".into(),
            class,
            code: "SomeCode".into(),
        })
    }

    fn model(e: ModelError) -> OpError {
        OpError::Model(e)
    }

    fn backend(e: BackendError) -> OpError {
        OpError::Backend(e)
    }

    /// Every error there is, with the reason a 1.4 and a 2.1 client gets for it, written
    /// independently of `result_reason`.
    fn table() -> Vec<(OpError, ResultReason, ResultReason)> {
        let s = || "x".to_owned();
        vec![
            (OpError::NotFound, R::ItemNotFound, R::ObjectNotFound),
            (
                OpError::IncompatibleUsageMask,
                R::PermissionDenied,
                R::IncompatibleCryptographicUsageMask,
            ),
            (OpError::MissingIv, R::InvalidMessage, R::InvalidMessage),
            (OpError::Destroyed, R::ItemNotFound, R::ObjectDestroyed),
            (
                OpError::PermissionDenied(s()),
                R::PermissionDenied,
                R::PermissionDenied,
            ),
            (
                OpError::OperationNotSupported,
                R::OperationNotSupported,
                R::OperationNotSupported,
            ),
            (
                OpError::FeatureNotSupported(s()),
                R::FeatureNotSupported,
                R::FeatureNotSupported,
            ),
            (OpError::InvalidField(s()), R::InvalidField, R::InvalidField),
            (
                OpError::InvalidObjectType(s()),
                R::InvalidField,
                R::InvalidObjectType,
            ),
            (OpError::MissingData(s()), R::MissingData, R::MissingData),
            (OpError::InvalidCsr(s()), R::InvalidField, R::InvalidCsr),
            (
                OpError::WrongState("Active"),
                R::PermissionDenied,
                R::WrongKeyLifecycleState,
            ),
            (
                OpError::ReadOnlyAttribute(s()),
                R::PermissionDenied,
                R::AttributeReadOnly,
            ),
            (
                OpError::SingleValued(s()),
                R::IllegalOperation,
                R::AttributeSingleValued,
            ),
            (
                OpError::AttributeNotFound,
                R::ItemNotFound,
                R::AttributeNotFound,
            ),
            (
                OpError::NonUniqueName(s()),
                R::IllegalOperation,
                R::NonUniqueNameAttribute,
            ),
            (
                OpError::KeyFormatNotSupported,
                R::KeyFormatTypeNotSupported,
                R::KeyFormatTypeNotSupported,
            ),
            (OpError::Sensitive, R::PermissionDenied, R::Sensitive),
            (
                OpError::NotExtractable,
                R::PermissionDenied,
                R::NotExtractable,
            ),
            (
                OpError::BadCryptoParameters(s()),
                R::CryptographicFailure,
                R::CryptographicFailure,
            ),
            (
                OpError::ResponseTooLarge,
                R::ResponseTooLarge,
                R::ResponseTooLarge,
            ),
            (
                OpError::Undecodable(TtlvError::TrailingBytes { count: 1 }),
                R::InvalidMessage,
                R::InvalidMessage,
            ),
            (
                OpError::ObjectLimit(1),
                R::GeneralFailure,
                R::ServerLimitExceeded,
            ),
            (
                OpError::NotQuantumSafe(s()),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
            (OpError::TagLength(1), R::GeneralFailure, R::GeneralFailure),
            (
                OpError::UnknownStream,
                R::ItemNotFound,
                R::InvalidCorrelationValue,
            ),
            (
                OpError::StreamLimit("x"),
                R::GeneralFailure,
                R::ServerLimitExceeded,
            ),
            (
                OpError::NoAsynchronousOperation,
                R::ItemNotFound,
                R::InvalidAsynchronousCorrelationValue,
            ),
            (
                OpError::Pkcs11InvalidFunction(s()),
                R::OperationNotSupported,
                R::Pkcs11InvalidFunction,
            ),
            (
                OpError::Pkcs11InvalidInterface(s()),
                R::OperationNotSupported,
                R::Pkcs11InvalidInterface,
            ),
            (
                model(ModelError::Missing { path: s() }),
                R::InvalidMessage,
                R::InvalidMessage,
            ),
            (
                model(ModelError::WrongType {
                    path: s(),
                    expected: "Integer",
                }),
                R::InvalidField,
                R::InvalidField,
            ),
            (
                model(ModelError::Invalid {
                    path: s(),
                    reason: s(),
                }),
                R::InvalidField,
                R::InvalidField,
            ),
            (
                model(ModelError::Unsupported {
                    path: s(),
                    what: "this protocol version",
                }),
                R::FeatureNotSupported,
                R::FeatureNotSupported,
            ),
            (
                model(ModelError::BatchCountMismatch {
                    declared: 2,
                    actual: 1,
                }),
                R::InvalidMessage,
                R::InvalidMessage,
            ),
            (
                model(ModelError::NotARequest { found: s() }),
                R::InvalidMessage,
                R::InvalidMessage,
            ),
            (
                model(ModelError::TooManyItems {
                    actual: 2,
                    limit: 1,
                }),
                R::InvalidMessage,
                R::InvalidMessage,
            ),
            (
                backend(BackendError::NotFound(s())),
                R::ItemNotFound,
                R::ItemNotFound,
            ),
            (
                backend(BackendError::AlreadyExists(s())),
                R::IllegalOperation,
                R::IllegalOperation,
            ),
            (
                backend(BackendError::NotExtractable(s())),
                R::PermissionDenied,
                R::NotExtractable,
            ),
            (
                backend(BackendError::Unsupported(s())),
                R::FeatureNotSupported,
                R::FeatureNotSupported,
            ),
            (
                backend(BackendError::InvalidInput(s())),
                R::InvalidField,
                R::InvalidField,
            ),
            (
                backend(BackendError::Crypto(s())),
                R::CryptographicFailure,
                R::CryptographicFailure,
            ),
            (
                backend(BackendError::IntegrityCheckFailed),
                R::CryptographicFailure,
                R::CryptographicFailure,
            ),
            (
                backend(BackendError::Busy(Duration::from_millis(1))),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
            (
                backend(BackendError::Unavailable(s())),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
            (
                backend(BackendError::Io(std::io::Error::other("x"))),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
            (
                backend(BackendError::Corrupt(s())),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
            (
                backend(BackendError::Conflict(s())),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
            (
                call(FailureClass::NotFound),
                R::ItemNotFound,
                R::ItemNotFound,
            ),
            (
                call(FailureClass::PermissionDenied),
                R::PermissionDenied,
                R::PermissionDenied,
            ),
            (
                call(FailureClass::InvalidInput),
                R::InvalidField,
                R::InvalidField,
            ),
            (
                call(FailureClass::Crypto),
                R::CryptographicFailure,
                R::CryptographicFailure,
            ),
            (
                call(FailureClass::BrokenSession),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
            (
                call(FailureClass::Unavailable),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
            (
                call(FailureClass::Busy),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
            (
                call(FailureClass::Other),
                R::GeneralFailure,
                R::GeneralFailure,
            ),
        ]
    }

    /// How many rows `row` numbers: one more with every arm added there.
    const ROWS: usize = 57;

    /// The row of the table an error belongs to. Exhaustive over every nested error enum, so a
    /// new variant fails to compile here until it is numbered, and then the table test fails
    /// until the table has its row.
    fn row(e: &OpError) -> usize {
        match e {
            OpError::NotFound => 0,
            OpError::IncompatibleUsageMask => 1,
            OpError::MissingIv => 2,
            OpError::Destroyed => 3,
            OpError::PermissionDenied(_) => 4,
            OpError::OperationNotSupported => 5,
            OpError::FeatureNotSupported(_) => 6,
            OpError::InvalidField(_) => 7,
            OpError::MissingData(_) => 8,
            OpError::WrongState(_) => 9,
            OpError::ReadOnlyAttribute(_) => 10,
            OpError::SingleValued(_) => 11,
            OpError::AttributeNotFound => 12,
            OpError::NonUniqueName(_) => 13,
            OpError::KeyFormatNotSupported => 14,
            OpError::Sensitive => 15,
            OpError::NotExtractable => 16,
            OpError::BadCryptoParameters(_) => 17,
            OpError::ResponseTooLarge => 18,
            OpError::Undecodable(_) => 19,
            OpError::ObjectLimit(_) => 20,
            OpError::NotQuantumSafe(_) => 48,
            OpError::TagLength(_) => 49,
            OpError::InvalidCsr(_) => 50,
            OpError::NoAsynchronousOperation => 51,
            OpError::Pkcs11InvalidFunction(_) => 52,
            OpError::Pkcs11InvalidInterface(_) => 53,
            OpError::UnknownStream => 54,
            OpError::StreamLimit(_) => 55,
            OpError::InvalidObjectType(_) => 56,
            OpError::Model(m) => match m {
                ModelError::Missing { .. } => 21,
                ModelError::WrongType { .. } => 22,
                ModelError::Invalid { .. } => 23,
                ModelError::Unsupported { .. } => 24,
                ModelError::BatchCountMismatch { .. } => 25,
                ModelError::NotARequest { .. } => 26,
                ModelError::TooManyItems { .. } => 27,
            },
            OpError::Backend(b) => match b {
                BackendError::NotFound(_) => 28,
                BackendError::AlreadyExists(_) => 29,
                BackendError::NotExtractable(_) => 30,
                BackendError::Unsupported(_) => 31,
                BackendError::InvalidInput(_) => 32,
                BackendError::Crypto(_) => 33,
                BackendError::IntegrityCheckFailed => 34,
                BackendError::Busy(_) => 35,
                BackendError::Unavailable(_) => 36,
                BackendError::Io(_) => 37,
                BackendError::Corrupt(_) => 38,
                BackendError::Conflict(_) => 47,
                BackendError::Call { class, .. } => match class {
                    FailureClass::NotFound => 39,
                    FailureClass::PermissionDenied => 40,
                    FailureClass::InvalidInput => 41,
                    FailureClass::Crypto => 42,
                    FailureClass::BrokenSession => 43,
                    FailureClass::Unavailable => 44,
                    FailureClass::Busy => 45,
                    FailureClass::Other => 46,
                },
            },
        }
    }

    #[test]
    fn every_error_has_its_expected_result_reason_in_both_versions() {
        let table = table();
        let mut rows: Vec<usize> = table.iter().map(|(e, _, _)| row(e)).collect();
        rows.sort_unstable();
        assert_eq!(rows, (0..ROWS).collect::<Vec<_>>(), "one row per variant");
        for (e, v1, v2) in &table {
            assert_eq!(e.result_reason(ProtocolVersion::V1_4), *v1, "1.4: {e:?}");
            assert_eq!(e.result_reason(ProtocolVersion::V2_1), *v2, "2.1: {e:?}");
        }
    }

    /// A failed key-store call tells the client which call failed and its return code's name,
    /// nothing more.
    #[test]
    fn a_failed_call_says_which_call_and_code_only() {
        assert_eq!(
            call(FailureClass::InvalidInput).to_string(),
            "PKCS#11 call C_Encrypt failed: SomeCode"
        );
    }

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
