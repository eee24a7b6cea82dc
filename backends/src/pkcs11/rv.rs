//! The one table from PKCS#11 return values to the backend-neutral [`FailureClass`] the backend
//! acts on (retry on a fresh session) and the gateway maps to a KMIP Result Reason.

use cryptoki::error::RvError;

use crate::error::FailureClass;

/// Classifies a PKCS#11 return value. Exhaustive on purpose: a new `RvError` variant in a cryptoki
/// update must be classified here before the crate compiles again.
pub fn classify(rv: RvError) -> FailureClass {
    use FailureClass::*;
    match rv {
        RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::DeviceRemoved
        | RvError::TokenNotPresent
        | RvError::UserNotLoggedIn
        // Our sessions run one single-part operation at a time, so a leftover active
        // operation means the session is in a state we cannot reason about.
        | RvError::OperationActive => BrokenSession,

        RvError::ObjectHandleInvalid
        | RvError::KeyHandleInvalid
        | RvError::WrappingKeyHandleInvalid
        | RvError::UnwrappingKeyHandleInvalid => NotFound,

        RvError::AttributeSensitive
        | RvError::AttributeReadOnly
        | RvError::ActionProhibited
        | RvError::InformationSensitive
        | RvError::KeyFunctionNotPermitted
        | RvError::KeyUnextractable
        | RvError::KeyNotWrappable
        | RvError::PinIncorrect
        | RvError::PinExpired
        | RvError::PinLocked
        | RvError::UserPinNotInitialized
        | RvError::UserAnotherAlreadyLoggedIn
        | RvError::UserTooManyTypes
        | RvError::SessionReadOnly
        | RvError::TokenWriteProtected
        | RvError::FunctionRejected => PermissionDenied,

        RvError::ArgumentsBad
        | RvError::AttributeTypeInvalid
        | RvError::AttributeValueInvalid
        | RvError::DataInvalid
        | RvError::DataLenRange
        | RvError::EncryptedDataLenRange
        | RvError::KeySizeRange
        | RvError::KeyTypeInconsistent
        | RvError::KeyIndigestible
        | RvError::MechanismInvalid
        | RvError::MechanismParamInvalid
        | RvError::TemplateIncomplete
        | RvError::TemplateInconsistent
        | RvError::CurveNotSupported
        | RvError::DomainParamsInvalid
        | RvError::PublicKeyInvalid
        | RvError::WrappedKeyInvalid
        | RvError::WrappedKeyLenRange
        | RvError::WrappingKeySizeRange
        | RvError::WrappingKeyTypeInconsistent
        | RvError::UnwrappingKeySizeRange
        | RvError::UnwrappingKeyTypeInconsistent
        | RvError::PinInvalid
        | RvError::PinLenRange
        | RvError::PinTooWeak => InvalidInput,

        RvError::EncryptedDataInvalid
        | RvError::SignatureInvalid
        | RvError::SignatureLenRange
        | RvError::ExceededMaxIterations => Crypto,

        RvError::GeneralError
        | RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::HostMemory
        | RvError::SlotIdInvalid
        | RvError::TokenNotRecognized
        | RvError::CryptokiNotInitialized
        | RvError::FipsSelfTestFailed
        | RvError::LibraryLoadFailed
        | RvError::RandomNoRng => Unavailable,

        RvError::SessionCount => Busy,

        RvError::Cancel
        | RvError::FunctionFailed
        | RvError::FunctionCanceled
        | RvError::NoEvent
        | RvError::NeedToCreateThreads
        | RvError::CantLock
        | RvError::FunctionNotParallel
        | RvError::FunctionNotSupported
        | RvError::KeyNotNeeded
        | RvError::KeyChanged
        | RvError::KeyNeeded
        | RvError::OperationNotInitialized
        | RvError::SessionParallelNotSupported
        | RvError::SessionExists
        | RvError::SessionReadOnlyExists
        | RvError::SessionReadWriteSoExists
        | RvError::UserAlreadyLoggedIn
        | RvError::UserTypeInvalid
        | RvError::RandomSeedNotSupported
        | RvError::BufferTooSmall
        | RvError::SavedStateInvalid
        | RvError::StateUnsaveable
        | RvError::CryptokiAlreadyInitialized
        | RvError::MutexBad
        | RvError::MutexNotLocked
        | RvError::NewPinMode
        | RvError::NextOtp
        | RvError::VendorDefined(_)
        | RvError::UnknownErrorCode(_) => Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::error::Rv;
    use std::collections::HashSet;
    use std::os::raw::c_ulong;

    /// Highest standard CK_RV value plus margin: every code below it is converted and checked.
    const LAST_STANDARD_CODE: c_ulong = 0x400;
    /// CKR_VENDOR_DEFINED.
    const VENDOR_DEFINED: c_ulong = 0x8000_0000;

    /// The expected class of every named return value, written independently of `classify`.
    fn expected() -> Vec<(FailureClass, Vec<RvError>)> {
        use RvError::*;
        vec![
            (
                FailureClass::BrokenSession,
                vec![
                    SessionHandleInvalid,
                    SessionClosed,
                    DeviceRemoved,
                    TokenNotPresent,
                    UserNotLoggedIn,
                    OperationActive,
                ],
            ),
            (
                FailureClass::NotFound,
                vec![
                    ObjectHandleInvalid,
                    KeyHandleInvalid,
                    WrappingKeyHandleInvalid,
                    UnwrappingKeyHandleInvalid,
                ],
            ),
            (
                FailureClass::PermissionDenied,
                vec![
                    AttributeSensitive,
                    AttributeReadOnly,
                    ActionProhibited,
                    InformationSensitive,
                    KeyFunctionNotPermitted,
                    KeyUnextractable,
                    KeyNotWrappable,
                    PinIncorrect,
                    PinExpired,
                    PinLocked,
                    UserPinNotInitialized,
                    UserAnotherAlreadyLoggedIn,
                    UserTooManyTypes,
                    SessionReadOnly,
                    TokenWriteProtected,
                    FunctionRejected,
                ],
            ),
            (
                FailureClass::InvalidInput,
                vec![
                    ArgumentsBad,
                    AttributeTypeInvalid,
                    AttributeValueInvalid,
                    DataInvalid,
                    DataLenRange,
                    EncryptedDataLenRange,
                    KeySizeRange,
                    KeyTypeInconsistent,
                    KeyIndigestible,
                    MechanismInvalid,
                    MechanismParamInvalid,
                    TemplateIncomplete,
                    TemplateInconsistent,
                    CurveNotSupported,
                    DomainParamsInvalid,
                    PublicKeyInvalid,
                    WrappedKeyInvalid,
                    WrappedKeyLenRange,
                    WrappingKeySizeRange,
                    WrappingKeyTypeInconsistent,
                    UnwrappingKeySizeRange,
                    UnwrappingKeyTypeInconsistent,
                    PinInvalid,
                    PinLenRange,
                    PinTooWeak,
                ],
            ),
            (
                FailureClass::Crypto,
                vec![
                    EncryptedDataInvalid,
                    SignatureInvalid,
                    SignatureLenRange,
                    ExceededMaxIterations,
                ],
            ),
            (
                FailureClass::Unavailable,
                vec![
                    GeneralError,
                    DeviceError,
                    DeviceMemory,
                    HostMemory,
                    SlotIdInvalid,
                    TokenNotRecognized,
                    CryptokiNotInitialized,
                    FipsSelfTestFailed,
                    LibraryLoadFailed,
                    RandomNoRng,
                ],
            ),
            (FailureClass::Busy, vec![SessionCount]),
            (
                FailureClass::Other,
                vec![
                    Cancel,
                    FunctionFailed,
                    FunctionCanceled,
                    NoEvent,
                    NeedToCreateThreads,
                    CantLock,
                    FunctionNotParallel,
                    FunctionNotSupported,
                    KeyNotNeeded,
                    KeyChanged,
                    KeyNeeded,
                    OperationNotInitialized,
                    SessionParallelNotSupported,
                    SessionExists,
                    SessionReadOnlyExists,
                    SessionReadWriteSoExists,
                    UserAlreadyLoggedIn,
                    UserTypeInvalid,
                    RandomSeedNotSupported,
                    BufferTooSmall,
                    SavedStateInvalid,
                    StateUnsaveable,
                    CryptokiAlreadyInitialized,
                    MutexBad,
                    MutexNotLocked,
                    NewPinMode,
                    NextOtp,
                ],
            ),
        ]
    }

    #[test]
    fn every_named_return_value_has_its_expected_class() {
        let table = expected();
        let mut listed = HashSet::new();
        for (class, variants) in &table {
            for rv in variants {
                assert_eq!(classify(*rv), *class, "{rv:?}");
                assert!(listed.insert(format!("{rv:?}")), "{rv:?} listed twice");
            }
        }
        // Every code cryptoki names must appear in the table above, so the table (and with it
        // this test) covers every variant.
        let mut named = HashSet::new();
        for code in 1..LAST_STANDARD_CODE {
            if let Rv::Error(rv) = Rv::from(code) {
                if !matches!(rv, RvError::UnknownErrorCode(_)) {
                    named.insert(format!("{rv:?}"));
                }
            }
        }
        assert_eq!(named, listed);
    }

    #[test]
    fn vendor_and_unknown_codes_are_other() {
        assert_eq!(
            classify(RvError::VendorDefined(VENDOR_DEFINED)),
            FailureClass::Other
        );
        assert_eq!(
            classify(RvError::UnknownErrorCode(LAST_STANDARD_CODE)),
            FailureClass::Other
        );
        assert!(matches!(
            Rv::from(VENDOR_DEFINED + 1),
            Rv::Error(RvError::VendorDefined(_))
        ));
    }
}
