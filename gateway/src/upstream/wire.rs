//! What the proxy sends upstream for each backend call, and how it reads the answers: the
//! requests (typed payloads of `kmip_wire::model`), the material of a Get, and the upstream's
//! failures as backend errors.

use bytes::Bytes;
use kmip_backends::asym::{
    self as soft, HashAlgorithm, KeyPairAlgorithm, KeyPairSpec, RsaPadding, SignatureScheme,
};
use kmip_backends::error::FailureClass;
use kmip_backends::{BackendError, CipherMode, KeyAlgorithm, KeySpec, MacAlgorithm, ObjectKind};
use kmip_wire::model::{
    usage_mask, Attribute, BlockCipherMode, CertificateType, CreateKeyPairRequest, CreateRequest,
    CryptoRequest, CryptographicAlgorithm, CryptographicParameters, GetRequest, HashingAlgorithm,
    KeyBlock, KeyFormatType, KeyValue, KmipEnum, ManagedObject, ObjectType, PaddingMethod,
    RegisterRequest, RequestPayload, ResultReason, SecretBytes, SecretDataType, SecretTtlv,
    SignRequest,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Ttlv, Value};
use zeroize::Zeroizing;

use super::pool::CallError;
use crate::kmip::ops::{
    decode_material, der_of_transparent_key, encode_material, encrypt_wrapping, SplitGroup,
    REGISTERED,
};

/// The usage mask of every key the proxy makes upstream: every use the backend interface
/// forwards (Wrap Key: Get with a Key Wrapping Specification). The gateway enforces the client's
/// own mask before forwarding.
const UPSTREAM_USAGE: i32 = usage_mask::ENCRYPT
    | usage_mask::DECRYPT
    | usage_mask::MAC_GENERATE
    | usage_mask::MAC_VERIFY
    | usage_mask::WRAP_KEY
    | usage_mask::UNWRAP_KEY;

/// The usage masks of a key pair the proxy makes or registers upstream: every use the backend
/// interface forwards (Sign, RSA Decrypt) or the gateway does itself with the public key.
const UPSTREAM_PRIVATE_USAGE: i32 = usage_mask::SIGN | usage_mask::DECRYPT;
const UPSTREAM_PUBLIC_USAGE: i32 = usage_mask::VERIFY | usage_mask::ENCRYPT;

/// What the gateway recorded of a registered key, for the upstream's Key Block (servers such
/// as PyKMIP's refuse an asymmetric key without its algorithm and length).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyFacts {
    pub algorithm: Option<CryptographicAlgorithm>,
    pub length: Option<i32>,
    pub format: Option<KeyFormatType>,
}

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

/// Register of a client-supplied object. A Split Key's, PGP Key's or Certificate Request's
/// material is the gateway's encoding of the whole object, registered as that object (the
/// split's group is returned: the caller keeps it in the mapping record).
pub(crate) fn register(
    uid: &str,
    kind: ObjectKind,
    material: &[u8],
    spec: Option<&KeySpec>,
    facts: KeyFacts,
) -> Result<(RequestPayload, Option<SplitGroup>), BackendError> {
    let bytes = SecretBytes::from_slice(material);
    let mut group = None;
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
        (ObjectKind::PrivateKey, _) => {
            let block = asymmetric_block(kind, material, facts)?;
            (
                ObjectType::PrivateKey,
                ManagedObject::PrivateKey(block),
                vec![Attribute::integer(
                    tags::CRYPTOGRAPHIC_USAGE_MASK,
                    UPSTREAM_PRIVATE_USAGE,
                )],
            )
        }
        (ObjectKind::PublicKey, _) => {
            let block = asymmetric_block(kind, material, facts)?;
            (
                ObjectType::PublicKey,
                ManagedObject::PublicKey(block),
                vec![Attribute::integer(
                    tags::CRYPTOGRAPHIC_USAGE_MASK,
                    UPSTREAM_PUBLIC_USAGE,
                )],
            )
        }
        (ObjectKind::SplitKey | ObjectKind::PgpKey | ObjectKind::CertificateRequest, _) => {
            let (object, split) = decode_material(uid, kind, material)?;
            if kind == ObjectKind::SplitKey {
                group = Some(split);
            }
            (object.object_type(), object, Vec::new())
        }
        (other, _) => {
            return Err(BackendError::Unsupported(format!(
                "the kmip backend does not register {other:?} objects upstream"
            )))
        }
    };
    let payload = RequestPayload::Register(RegisterRequest {
        templates: Vec::new(),
        object_type,
        attributes,
        object,
    });
    Ok((payload, group))
}

/// The Key Format Type a key is asked for in when the upstream wraps it: the encoding the
/// gateway's backends store (raw bytes, PKCS#8, SubjectPublicKeyInfo), which is what a wrapped
/// key holds wherever the gateway wraps.
pub(crate) fn wrap_format(uid: &str, kind: ObjectKind) -> Result<KeyFormatType, BackendError> {
    match kind {
        ObjectKind::SymmetricKey => Ok(KeyFormatType::Raw),
        ObjectKind::SecretData => Ok(KeyFormatType::Opaque),
        ObjectKind::PrivateKey => Ok(KeyFormatType::Pkcs8),
        ObjectKind::PublicKey => Ok(KeyFormatType::X509),
        other => Err(BackendError::Unsupported(format!(
            "{uid} is a {other:?}: the proxy wraps keys and secret data only"
        ))),
    }
}

/// Get of the upstream object `upstream_uid` in `format`, wrapped by the upstream AES key
/// `wrapping_upstream_uid` with AES Key Wrap (RFC 3394, or RFC 5649 with `pad`).
pub(crate) fn wrapped_get(
    upstream_uid: &str,
    format: KeyFormatType,
    wrapping_upstream_uid: &str,
    pad: bool,
) -> RequestPayload {
    let mode = if pad {
        BlockCipherMode::AesKeyWrapPadding
    } else {
        BlockCipherMode::NistKeyWrap
    };
    let spec = encrypt_wrapping(
        tags::KEY_WRAPPING_SPECIFICATION,
        wrapping_upstream_uid,
        mode,
    );
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(upstream_uid.to_owned()),
        key_format_type: Some(format),
        key_wrapping_specification: Some(spec),
        ..GetRequest::default()
    })
}

/// The wrapped bytes of a Get answered with a wrapped Key Block.
pub(crate) fn wrapped_bytes(
    uid: &str,
    object: ManagedObject,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    match object {
        ManagedObject::SymmetricKey(b)
        | ManagedObject::PrivateKey(b)
        | ManagedObject::PublicKey(b)
        | ManagedObject::SecretData { key_block: b, .. } => match b.key_value {
            KeyValue::Wrapped(w) => Ok(Zeroizing::new(w.as_slice().to_vec())),
            _ => Err(BackendError::Crypto(format!(
                "the upstream answered {uid} unwrapped to a Get that asked it wrapped"
            ))),
        },
        _ => Err(BackendError::Crypto(format!(
            "the upstream answered {uid} with another object than the key asked for"
        ))),
    }
}

/// The Key Format Type values of the Transparent structures (KMIP 1.4 §9.1.3.2.3: Transparent
/// Symmetric Key to Transparent EC Public Key): their Key Material is a structure, not bytes.
const TRANSPARENT_FORMATS: std::ops::RangeInclusive<u32> = 0x07..=0x15;

/// The Key Block of a registered Private or Public Key: PKCS#8 or SubjectPublicKeyInfo as the
/// gateway stores them, or (a key kept in another format: Raw bytes, or a Transparent DSA or DH
/// structure, which the gateway keeps as its TTLV) the format it was registered in.
fn asymmetric_block(
    kind: ObjectKind,
    material: &[u8],
    facts: KeyFacts,
) -> Result<KeyBlock, BackendError> {
    let der = match kind {
        ObjectKind::PrivateKey => soft::private_to_pkcs8(material)
            .ok()
            .map(|der| (KeyFormatType::Pkcs8, der)),
        _ => soft::public_to_spki(material)
            .ok()
            .map(|der| (KeyFormatType::X509, Zeroizing::new(der))),
    };
    let (format, bytes) = match (der, facts.format) {
        (Some(der), _) => der,
        (None, Some(f)) if TRANSPARENT_FORMATS.contains(&f.to_u32()) => {
            let tree =
                decode(&Bytes::copy_from_slice(material), &Limits::default()).map_err(|e| {
                    BackendError::Corrupt(format!("a stored {f:?} {kind:?} structure: {e}"))
                })?;
            return Ok(KeyBlock {
                key_format_type: f,
                key_value: KeyValue::Transparent(SecretTtlv(tree)),
                ..KeyBlock::raw(SecretBytes::from_slice(&[]), facts.algorithm, facts.length)
            });
        }
        (None, Some(f)) => (f, Zeroizing::new(material.to_vec())),
        (None, None) => {
            return Err(BackendError::Unsupported(format!(
                "a {kind:?} kept without a Key Format Type is not registered upstream"
            )))
        }
    };
    Ok(KeyBlock {
        key_format_type: format,
        ..KeyBlock::raw(
            SecretBytes::from_slice(&bytes),
            facts.algorithm,
            facts.length,
        )
    })
}

/// The Cryptographic Algorithm and Length a key pair is asked for with.
fn pair_attributes(a: KeyPairAlgorithm) -> Result<(CryptographicAlgorithm, i32), BackendError> {
    Ok(match a {
        KeyPairAlgorithm::Rsa { bits } => (
            CryptographicAlgorithm::Rsa,
            i32::try_from(bits)
                .map_err(|_| BackendError::InvalidInput(format!("RSA key of {bits} bits")))?,
        ),
        KeyPairAlgorithm::EcP256 => (CryptographicAlgorithm::Ec, 256),
        KeyPairAlgorithm::EcP384 => (CryptographicAlgorithm::Ec, 384),
        KeyPairAlgorithm::EcP521 => (CryptographicAlgorithm::Ec, 521),
        KeyPairAlgorithm::Ed25519 => (CryptographicAlgorithm::Ed25519, 256),
    })
}

/// Create Key Pair as `spec` describes it: algorithm and length common to both halves, each its
/// own usage mask. Names stay in the gateway, as for every object.
pub(crate) fn create_key_pair(spec: &KeyPairSpec) -> Result<RequestPayload, BackendError> {
    let (alg, bits) = pair_attributes(spec.algorithm)?;
    Ok(RequestPayload::CreateKeyPair(CreateKeyPairRequest {
        common_attributes: vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, alg),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, bits),
        ],
        private_key_attributes: vec![Attribute::integer(
            tags::CRYPTOGRAPHIC_USAGE_MASK,
            UPSTREAM_PRIVATE_USAGE,
        )],
        public_key_attributes: vec![Attribute::integer(
            tags::CRYPTOGRAPHIC_USAGE_MASK,
            UPSTREAM_PUBLIC_USAGE,
        )],
        common_templates: Vec::new(),
        private_key_templates: Vec::new(),
        public_key_templates: Vec::new(),
    }))
}

fn hashing(h: HashAlgorithm) -> HashingAlgorithm {
    match h {
        HashAlgorithm::Sha1 => HashingAlgorithm::Sha1,
        HashAlgorithm::Sha224 => HashingAlgorithm::Sha224,
        HashAlgorithm::Sha256 => HashingAlgorithm::Sha256,
        HashAlgorithm::Sha384 => HashingAlgorithm::Sha384,
        HashAlgorithm::Sha512 => HashingAlgorithm::Sha512,
    }
}

/// The Cryptographic Parameters of a signature scheme: the algorithm, padding and hash, the
/// form both PyKMIP's server and the gateway read (no Digital Signature Algorithm, which
/// fewer servers know).
pub(crate) fn sign_parameters(scheme: SignatureScheme) -> CryptographicParameters {
    let (alg, padding, hash) = match scheme {
        SignatureScheme::RsaPkcs1v15(h) => (
            CryptographicAlgorithm::Rsa,
            Some(PaddingMethod::Pkcs1V15),
            Some(h),
        ),
        SignatureScheme::RsaPss(h) => (
            CryptographicAlgorithm::Rsa,
            Some(PaddingMethod::Pss),
            Some(h),
        ),
        SignatureScheme::Ecdsa(h) => (CryptographicAlgorithm::Ecdsa, None, Some(h)),
        SignatureScheme::Ed25519 => (CryptographicAlgorithm::Ed25519, None, None),
    };
    CryptographicParameters {
        cryptographic_algorithm: Some(alg),
        padding_method: padding,
        hashing_algorithm: hash.map(hashing),
        ..CryptographicParameters::default()
    }
}

/// A Sign request body.
pub(crate) fn sign(upstream_uid: &str, scheme: SignatureScheme, data: &[u8]) -> SignRequest {
    SignRequest {
        unique_identifier: Some(upstream_uid.to_owned()),
        cryptographic_parameters: Some(sign_parameters(scheme)),
        data: Some(SecretBytes::from_slice(data)),
        ..SignRequest::default()
    }
}

/// An RSA Decrypt request body.
pub(crate) fn rsa_decrypt(upstream_uid: &str, padding: &RsaPadding, data: &[u8]) -> CryptoRequest {
    CryptoRequest {
        unique_identifier: Some(upstream_uid.to_owned()),
        cryptographic_parameters: Some(rsa_parameters(padding)),
        data: Some(SecretBytes::from_slice(data)),
        ..CryptoRequest::default()
    }
}

/// The Cryptographic Parameters of an RSA decryption. OAEP's MGF1 hash and label are sent only
/// when they differ from the defaults (the OAEP hash, an empty label): KMIP 1.2 has no fields
/// for them, and servers that know them default to the same.
pub(crate) fn rsa_parameters(padding: &RsaPadding) -> CryptographicParameters {
    let mut p = CryptographicParameters {
        cryptographic_algorithm: Some(CryptographicAlgorithm::Rsa),
        ..CryptographicParameters::default()
    };
    match padding {
        RsaPadding::Pkcs1v15 => p.padding_method = Some(PaddingMethod::Pkcs1V15),
        RsaPadding::Oaep(oaep) => {
            p.padding_method = Some(PaddingMethod::Oaep);
            p.hashing_algorithm = Some(hashing(oaep.hash));
            if oaep.mgf1_hash != oaep.hash {
                p.other.push(Ttlv::new(
                    tags::MASK_GENERATOR_HASHING_ALGORITHM,
                    Value::Enumeration(hashing(oaep.mgf1_hash).to_u32()),
                ));
            }
            if !oaep.label.is_empty() {
                p.other.push(Ttlv::new(
                    tags::PSOURCE,
                    Value::ByteString(Bytes::copy_from_slice(&oaep.label)),
                ));
            }
        }
    }
    p
}

/// The material of a Get answer, in the encoding the gateway's backends store: Private Keys as
/// PKCS#8 and Public Keys as SubjectPublicKeyInfo (upstreams answer in their own format, PyKMIP's
/// RSA keys as PKCS#1, others as Transparent RSA or EC structures, and not every one converts on
/// Get), a Split Key, PGP Key or Certificate Request as the gateway's encoding of the object (a
/// Split Key's preceded by `group`).
pub(crate) fn material(
    uid: &str,
    object: ManagedObject,
    group: Option<&SplitGroup>,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let block_bytes = |b: KeyBlock| match b.key_value {
        KeyValue::Material(m) | KeyValue::TransparentSymmetricKey(m) => {
            Ok(Zeroizing::new(m.as_slice().to_vec()))
        }
        _ => Err(BackendError::Unsupported(format!(
            "the upstream answered {uid} in a key format the proxy does not read"
        ))),
    };
    let unreadable = |e: BackendError| {
        BackendError::Unsupported(format!(
            "the upstream answered {uid} in a key format the proxy does not convert: {e}"
        ))
    };
    match object {
        ManagedObject::PrivateKey(b) if is_der(b.key_format_type) => {
            soft::private_to_pkcs8(&block_bytes(b)?).map_err(unreadable)
        }
        ManagedObject::PublicKey(b) if is_der(b.key_format_type) => {
            soft::public_to_spki(&block_bytes(b)?)
                .map(Zeroizing::new)
                .map_err(unreadable)
        }
        ManagedObject::PrivateKey(KeyBlock {
            key_format_type,
            key_value: KeyValue::Transparent(t),
            ..
        }) if is_transparent_rsa_or_ec(key_format_type) => {
            soft::private_to_pkcs8(&transparent_der(uid, key_format_type, &t)?).map_err(unreadable)
        }
        ManagedObject::PublicKey(KeyBlock {
            key_format_type,
            key_value: KeyValue::Transparent(t),
            ..
        }) if is_transparent_rsa_or_ec(key_format_type) => {
            soft::public_to_spki(&transparent_der(uid, key_format_type, &t)?)
                .map(Zeroizing::new)
                .map_err(unreadable)
        }
        // Transparent DSA and DH keys are kept as their TTLV, as the gateway stores them.
        ManagedObject::PrivateKey(KeyBlock {
            key_value: KeyValue::Transparent(t),
            ..
        })
        | ManagedObject::PublicKey(KeyBlock {
            key_value: KeyValue::Transparent(t),
            ..
        }) => {
            t.0.to_bytes()
                .map(|b| Zeroizing::new(b.to_vec()))
                .map_err(|e| {
                    BackendError::Unsupported(format!(
                "the upstream answered {uid} with a key structure the proxy cannot encode: {e}"
            ))
                })
        }
        ManagedObject::SymmetricKey(b)
        | ManagedObject::PublicKey(b)
        | ManagedObject::PrivateKey(b)
        | ManagedObject::SecretData { key_block: b, .. } => block_bytes(b),
        ManagedObject::OpaqueObject { value, .. } => Ok(Zeroizing::new(value.as_slice().to_vec())),
        ManagedObject::Certificate { value, .. } => Ok(Zeroizing::new(value.to_vec())),
        ManagedObject::Template { .. } => Err(BackendError::Unsupported(format!(
            "the upstream answered {uid} with a Template, which holds no material"
        ))),
        ManagedObject::SplitKey(_)
        | ManagedObject::PgpKey { .. }
        | ManagedObject::CertificateRequest { .. } => {
            encode_material(&object, group.unwrap_or(&REGISTERED))
        }
    }
}

/// The DER of a key the upstream answered as a Transparent RSA or EC structure.
fn transparent_der(
    uid: &str,
    format: KeyFormatType,
    structure: &SecretTtlv,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    der_of_transparent_key(format, &structure.0).map_err(|e| {
        BackendError::Unsupported(format!(
            "the upstream answered {uid} as a {format:?} the proxy does not convert: {e}"
        ))
    })
}

/// The Transparent structures that convert to PKCS#8 or SubjectPublicKeyInfo.
fn is_transparent_rsa_or_ec(f: KeyFormatType) -> bool {
    matches!(
        f,
        KeyFormatType::TransparentRsaPrivateKey
            | KeyFormatType::TransparentRsaPublicKey
            | KeyFormatType::TransparentEcPrivateKey
            | KeyFormatType::TransparentEcPublicKey
    )
}

/// The DER forms of a Public or Private Key that convert to PKCS#8 or SubjectPublicKeyInfo.
fn is_der(f: KeyFormatType) -> bool {
    matches!(
        f,
        KeyFormatType::Pkcs1 | KeyFormatType::Pkcs8 | KeyFormatType::X509
    )
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
mod tests;
