//! What the proxy sends upstream for each backend call, and how it reads the answers: the
//! requests (typed payloads of `kmip_wire::model`), the material of a Get, and the upstream's
//! failures as backend errors.

use bytes::Bytes;
use kmip_backends::error::FailureClass;
use kmip_backends::{BackendError, CipherMode, KeyAlgorithm, KeySpec, MacAlgorithm, ObjectKind};
use kmip_wire::model::{
    usage_mask, Attribute, BlockCipherMode, CertificateType, CreateRequest, CryptoRequest,
    CryptographicAlgorithm, CryptographicParameters, KeyBlock, KeyFormatType, KeyValue,
    ManagedObject, ObjectType, PaddingMethod, RegisterRequest, RequestPayload, ResultReason,
    SecretBytes, SecretDataType,
};
use kmip_wire::spec::tags;
use zeroize::Zeroizing;

use super::pool::CallError;

/// The usage mask of every key the proxy makes upstream: every use the backend interface
/// forwards. The gateway enforces the client's own mask before forwarding.
const UPSTREAM_USAGE: i32 =
    usage_mask::ENCRYPT | usage_mask::DECRYPT | usage_mask::MAC_GENERATE | usage_mask::MAC_VERIFY;

fn algorithm(a: KeyAlgorithm) -> CryptographicAlgorithm {
    match a {
        KeyAlgorithm::Aes => CryptographicAlgorithm::Aes,
        KeyAlgorithm::HmacSha256 => CryptographicAlgorithm::HmacSha256,
        KeyAlgorithm::TripleDes => CryptographicAlgorithm::Des3,
        KeyAlgorithm::ChaCha20 => CryptographicAlgorithm::ChaCha20,
    }
}

fn bits(spec: &KeySpec) -> Result<i32, BackendError> {
    i32::try_from(spec.bits)
        .map_err(|_| BackendError::InvalidInput(format!("key length {} bits", spec.bits)))
}

fn key_attributes(spec: &KeySpec) -> Result<Vec<Attribute>, BackendError> {
    Ok(vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, algorithm(spec.algorithm)),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, bits(spec)?),
        Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, UPSTREAM_USAGE),
    ])
}

/// Create of a symmetric key as `spec` describes it.
pub(crate) fn create(spec: &KeySpec) -> Result<RequestPayload, BackendError> {
    Ok(RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes: key_attributes(spec)?,
    }))
}

/// Register of a client-supplied object.
pub(crate) fn register(
    kind: ObjectKind,
    material: &[u8],
    spec: Option<&KeySpec>,
) -> Result<RequestPayload, BackendError> {
    let bytes = SecretBytes::from_slice(material);
    let (object_type, object, attributes) = match (kind, spec) {
        (ObjectKind::SymmetricKey, Some(spec)) => (
            ObjectType::SymmetricKey,
            ManagedObject::SymmetricKey(KeyBlock::raw(
                bytes,
                Some(algorithm(spec.algorithm)),
                Some(bits(spec)?),
            )),
            key_attributes(spec)?,
        ),
        (ObjectKind::SecretData, _) => (
            ObjectType::SecretData,
            ManagedObject::SecretData {
                secret_data_type: SecretDataType::Password,
                key_block: KeyBlock {
                    key_format_type: KeyFormatType::Opaque,
                    ..KeyBlock::raw(bytes, None, None)
                },
            },
            Vec::new(),
        ),
        (ObjectKind::OpaqueObject, _) => (
            ObjectType::OpaqueObject,
            ManagedObject::OpaqueObject {
                // The first value of the extension range: the specification defines none.
                opaque_data_type: 0x8000_0001,
                value: bytes,
            },
            Vec::new(),
        ),
        (ObjectKind::Certificate, _) => (
            ObjectType::Certificate,
            ManagedObject::Certificate {
                certificate_type: CertificateType::X509,
                value: Bytes::copy_from_slice(material),
            },
            Vec::new(),
        ),
        (other, _) => {
            return Err(BackendError::Unsupported(format!(
                "the kmip backend does not register {other:?} objects upstream yet"
            )))
        }
    };
    Ok(RequestPayload::Register(RegisterRequest {
        templates: Vec::new(),
        object_type,
        attributes,
        object,
    }))
}

/// The material of a Get answer.
pub(crate) fn material(
    uid: &str,
    object: ManagedObject,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let block_bytes = |b: KeyBlock| match b.key_value {
        KeyValue::Material(m) | KeyValue::TransparentSymmetricKey(m) => {
            Ok(Zeroizing::new(m.as_slice().to_vec()))
        }
        _ => Err(BackendError::Unsupported(format!(
            "the upstream answered {uid} in a key format the proxy does not read"
        ))),
    };
    match object {
        ManagedObject::SymmetricKey(b)
        | ManagedObject::PublicKey(b)
        | ManagedObject::PrivateKey(b)
        | ManagedObject::SecretData { key_block: b, .. } => block_bytes(b),
        ManagedObject::OpaqueObject { value, .. } => Ok(Zeroizing::new(value.as_slice().to_vec())),
        ManagedObject::Certificate { value, .. } => Ok(Zeroizing::new(value.to_vec())),
        ManagedObject::Template { .. } => Err(BackendError::Unsupported(format!(
            "the upstream answered {uid} with a Template, which holds no material"
        ))),
        // The proxy never registers these upstream (see `register`), so none is its own.
        ManagedObject::SplitKey(_)
        | ManagedObject::PgpKey { .. }
        | ManagedObject::CertificateRequest { .. } => Err(BackendError::Unsupported(format!(
            "the upstream answered {uid} with a Split Key, PGP Key or Certificate Request, which \
             the proxy does not keep"
        ))),
    }
}

/// The Cryptographic Parameters of a cipher mode (AES modes, or ChaCha20).
pub(crate) fn cipher_parameters(mode: CipherMode) -> CryptographicParameters {
    let (block, padding, tag) = match mode {
        CipherMode::Gcm { tag_len } => (BlockCipherMode::Gcm, None, i32::try_from(tag_len).ok()),
        CipherMode::Cbc { pad } => (BlockCipherMode::Cbc, Some(pad), None),
        CipherMode::Ecb { pad } => (BlockCipherMode::Ecb, Some(pad), None),
        CipherMode::Ctr => (BlockCipherMode::Ctr, None, None),
        CipherMode::AesKeyWrap { pad: true } => (BlockCipherMode::AesKeyWrapPadding, None, None),
        CipherMode::AesKeyWrap { pad: false } => (BlockCipherMode::NistKeyWrap, None, None),
        CipherMode::ChaCha20 => {
            return CryptographicParameters {
                cryptographic_algorithm: Some(CryptographicAlgorithm::ChaCha20),
                ..CryptographicParameters::default()
            }
        }
        CipherMode::ChaCha20Poly1305 { tag_len } => {
            return CryptographicParameters {
                cryptographic_algorithm: Some(CryptographicAlgorithm::ChaCha20Poly1305),
                tag_length: i32::try_from(tag_len).ok(),
                ..CryptographicParameters::default()
            }
        }
    };
    CryptographicParameters {
        block_cipher_mode: Some(block),
        padding_method: padding.map(|p| {
            if p {
                PaddingMethod::Pkcs5
            } else {
                PaddingMethod::None
            }
        }),
        cryptographic_algorithm: Some(CryptographicAlgorithm::Aes),
        tag_length: tag,
        ..CryptographicParameters::default()
    }
}

/// An Encrypt or Decrypt request body.
pub(crate) fn crypto(uid: &str, req: kmip_backends::CipherRequest) -> CryptoRequest {
    CryptoRequest {
        unique_identifier: Some(uid.to_owned()),
        cryptographic_parameters: Some(cipher_parameters(req.mode)),
        data: Some(SecretBytes::from_slice(&req.data)),
        iv_counter_nonce: req.iv.map(Bytes::from),
        authenticated_encryption_additional_data: req.aad.map(Bytes::from),
        authenticated_encryption_tag: req.tag.map(Bytes::from),
        ..CryptoRequest::default()
    }
}

pub(crate) fn mac_algorithm(a: MacAlgorithm) -> CryptographicAlgorithm {
    match a {
        MacAlgorithm::HmacSha1 => CryptographicAlgorithm::HmacSha1,
        MacAlgorithm::HmacSha224 => CryptographicAlgorithm::HmacSha224,
        MacAlgorithm::HmacSha256 => CryptographicAlgorithm::HmacSha256,
        MacAlgorithm::HmacSha384 => CryptographicAlgorithm::HmacSha384,
        MacAlgorithm::HmacSha512 => CryptographicAlgorithm::HmacSha512,
    }
}

/// What an upstream's failure means to the gateway. The upstream's own message is logged by the
/// caller, never passed on: it may name the upstream's internals.
pub(crate) fn backend_error(addr: &str, call: &str, uid: &str, e: CallError) -> BackendError {
    let reason = match e {
        CallError::Transport(why) => {
            return BackendError::Unavailable(format!("upstream {addr}: {call}: {why}"))
        }
        CallError::Untranslatable(why) => {
            return BackendError::Unsupported(format!("{call} through upstream {addr}: {why}"))
        }
        // What the upstream (its version, its configuration) does not do, the proxy does not
        // either: the client is told so, not General Failure.
        CallError::Refused {
            reason: Some(ResultReason::FeatureNotSupported | ResultReason::OperationNotSupported),
            ..
        } => {
            return BackendError::Unsupported(format!(
                "upstream {addr} does not support {call} as asked"
            ))
        }
        CallError::Refused { reason, .. } => reason,
    };
    let class = match reason {
        // KMIP 2.x answers a missing object with Object Not Found, 1.x with Item Not Found; a
        // 2.x server that keeps destroyed objects answers Object Destroyed: the material is
        // gone all the same (and a Destroy retried is done).
        Some(
            ResultReason::ItemNotFound
            | ResultReason::ObjectNotFound
            | ResultReason::ObjectDestroyed,
        ) => return BackendError::NotFound(uid.to_owned()),
        Some(ResultReason::PermissionDenied) => FailureClass::PermissionDenied,
        Some(
            ResultReason::InvalidField
            | ResultReason::InvalidMessage
            | ResultReason::MissingData
            | ResultReason::IllegalOperation
            | ResultReason::InvalidObjectType,
        ) => FailureClass::InvalidInput,
        Some(ResultReason::CryptographicFailure) => FailureClass::Crypto,
        _ => FailureClass::Other,
    };
    BackendError::Call {
        api: "KMIP upstream",
        call: call.to_owned(),
        class,
        code: reason.map_or_else(|| "no Result Reason".to_owned(), |r| format!("{r:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(reason: ResultReason) -> CallError {
        CallError::Refused {
            reason: Some(reason),
            message: Some("upstream detail".into()),
        }
    }

    #[test]
    fn upstream_failures_become_backend_errors_without_the_upstream_message() {
        let e = backend_error(
            "kms1:5696",
            "Get",
            "gw-uid",
            refused(ResultReason::ItemNotFound),
        );
        assert!(
            matches!(e, BackendError::NotFound(ref u) if u == "gw-uid"),
            "{e:?}"
        );
        for gone in [ResultReason::ObjectNotFound, ResultReason::ObjectDestroyed] {
            let e = backend_error("kms1:5696", "Get", "gw-uid", refused(gone));
            assert!(matches!(e, BackendError::NotFound(_)), "{gone:?}: {e:?}");
        }
        let e = backend_error(
            "kms1:5696",
            "Decrypt",
            "gw-uid",
            refused(ResultReason::CryptographicFailure),
        );
        assert!(
            matches!(
                e,
                BackendError::Call {
                    class: FailureClass::Crypto,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!e.to_string().contains("upstream detail"), "{e}");
        for unsupported in [
            ResultReason::FeatureNotSupported,
            ResultReason::OperationNotSupported,
        ] {
            let e = backend_error("kms1:5696", "Create", "gw-uid", refused(unsupported));
            assert!(matches!(e, BackendError::Unsupported(_)), "{e:?}");
            assert!(!e.to_string().contains("upstream detail"), "{e}");
        }
        let e = backend_error(
            "kms1:5696",
            "Encrypt",
            "gw-uid",
            CallError::Untranslatable("no Authenticated Encryption Tag".into()),
        );
        assert!(
            matches!(e, BackendError::Unsupported(ref m) if m.contains("Encryption Tag")),
            "{e:?}"
        );
        let e = backend_error(
            "kms1:5696",
            "Get",
            "gw-uid",
            CallError::Transport("connection refused".into()),
        );
        assert!(
            matches!(e, BackendError::Unavailable(ref m) if m.contains("kms1:5696")),
            "{e:?}"
        );
    }

    #[test]
    fn cipher_modes_map_to_cryptographic_parameters() {
        let p = cipher_parameters(CipherMode::Gcm { tag_len: 16 });
        assert_eq!(p.block_cipher_mode, Some(BlockCipherMode::Gcm));
        assert_eq!(p.tag_length, Some(16));
        assert_eq!(p.padding_method, None);
        let p = cipher_parameters(CipherMode::Cbc { pad: true });
        assert_eq!(p.padding_method, Some(PaddingMethod::Pkcs5));
        let p = cipher_parameters(CipherMode::Ecb { pad: false });
        assert_eq!(p.block_cipher_mode, Some(BlockCipherMode::Ecb));
        assert_eq!(p.padding_method, Some(PaddingMethod::None));
    }
}
