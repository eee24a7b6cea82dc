//! Get with a Key Wrapping Specification (KMIP 1.4 §2.1.6/§4.11): the served Key Value is
//! encrypted with another key the caller may use (AES Key Wrap, RFC 3394 / RFC 5649) and the
//! Key Block says how, in Key Wrapping Data.

use super::asym::is_der_format;
use super::crypto::effective_parameters;
use super::{OpContext, OpError, Ops};
use kmip_backends::{BackendError, CipherMode, CipherRequest, ObjectKind};
use kmip_policy::Operation as PolicyOperation;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use zeroize::Zeroizing;

/// Cryptographic Usage Mask bit Wrap Key: the wrapping key must carry it.
const USAGE_WRAP_KEY: i32 = 0x0000_0010;
/// Wrapping Method Encrypt, the only one served (no MAC/sign methods, no TR-31).
const WRAPPING_METHOD_ENCRYPT: u32 = 0x0000_0001;
/// Encoding Option No Encoding: the wrapped bytes are the Key Material alone.
const ENCODING_NO_ENCODING: u32 = 0x0000_0001;

/// The Key Format Type a Get serves when the bytes it wraps are the stored material as is, so
/// the backend can wrap them where they live (`Ops::wrapped_by_backend`); `None` when a
/// conversion comes first (`Ops::wrap_block` then wraps the converted bytes).
pub(super) fn served_as_stored(
    kind: ObjectKind,
    stored: KeyFormatType,
    wanted: Option<KeyFormatType>,
) -> Option<KeyFormatType> {
    let served = wanted.unwrap_or(stored);
    let as_stored = match kind {
        // A symmetric key's material is its raw bytes, whichever of the two forms is served.
        ObjectKind::SymmetricKey => matches!(
            served,
            KeyFormatType::Raw | KeyFormatType::TransparentSymmetricKey
        ),
        ObjectKind::SecretData => {
            served == stored && matches!(served, KeyFormatType::Raw | KeyFormatType::Opaque)
        }
        // Registered DER keys are stored as PKCS#8 and SubjectPublicKeyInfo.
        ObjectKind::PrivateKey => served == KeyFormatType::Pkcs8 && is_der_format(stored),
        ObjectKind::PublicKey => served == KeyFormatType::X509 && is_der_format(stored),
        _ => false,
    };
    as_stored.then_some(served)
}

/// A checked Key Wrapping Specification: which key wraps, how.
pub(super) struct Wrapping {
    key_uid: String,
    pad: bool,
    mode: BlockCipherMode,
}

impl Wrapping {
    /// The Key Wrapping Data of a Key Block wrapped as this specification asked.
    fn wrapping_data(&self) -> Ttlv {
        encrypt_wrapping(tags::KEY_WRAPPING_DATA, &self.key_uid, self.mode)
    }
}

/// A Key Wrapping Specification or Key Wrapping Data (`tag`): Wrapping Method Encrypt with the
/// AES key `key_uid` in Block Cipher Mode `mode`. A KMIP proxy asks its upstream so.
pub(crate) fn encrypt_wrapping(tag: Tag, key_uid: &str, mode: BlockCipherMode) -> Ttlv {
    Ttlv::structure(
        tag,
        vec![
            Ttlv::new(
                tags::WRAPPING_METHOD,
                Value::Enumeration(WRAPPING_METHOD_ENCRYPT),
            ),
            Ttlv::structure(
                tags::ENCRYPTION_KEY_INFORMATION,
                vec![
                    Ttlv::new(
                        tags::UNIQUE_IDENTIFIER,
                        Value::TextString(key_uid.to_owned()),
                    ),
                    Ttlv::structure(
                        tags::CRYPTOGRAPHIC_PARAMETERS,
                        vec![Ttlv::new(
                            tags::BLOCK_CIPHER_MODE,
                            Value::Enumeration(mode.to_u32()),
                        )],
                    ),
                ],
            ),
        ],
    )
}

impl Ops {
    /// Checks a Key Wrapping Specification and its wrapping key before anything is served:
    /// the caller must be allowed to Encrypt with the key, which must be an Active AES key whose
    /// usage mask has Wrap Key.
    pub(super) fn wrapping(
        &self,
        ctx: &OpContext<'_>,
        spec: &Ttlv,
        wrapped_uid: &str,
    ) -> Result<Wrapping, OpError> {
        let method = spec.child(tags::WRAPPING_METHOD).and_then(Ttlv::as_enum);
        if method != Some(WRAPPING_METHOD_ENCRYPT) {
            return Err(OpError::FeatureNotSupported(
                "key wrapping other than Wrapping Method Encrypt".into(),
            ));
        }
        if spec.child(tags::MAC_SIGNATURE_KEY_INFORMATION).is_some() {
            return Err(OpError::InvalidField(
                "Wrapping Method Encrypt takes no MAC/Signature Key Information".into(),
            ));
        }
        if spec.child(tags::ATTRIBUTE_NAME).is_some() {
            return Err(OpError::FeatureNotSupported(
                "wrapping attributes with the key (Attribute Name in the Key Wrapping Specification)"
                    .into(),
            ));
        }
        if let Some(e) = spec.child(tags::ENCODING_OPTION) {
            if e.as_enum() != Some(ENCODING_NO_ENCODING) {
                return Err(OpError::FeatureNotSupported(
                    "Encoding Option other than No Encoding".into(),
                ));
            }
        }
        let info = spec
            .child(tags::ENCRYPTION_KEY_INFORMATION)
            .ok_or_else(|| {
                OpError::InvalidField(
                    "Wrapping Method Encrypt needs Encryption Key Information".into(),
                )
            })?;
        let key_uid = info
            .child(tags::UNIQUE_IDENTIFIER)
            .and_then(Ttlv::as_text)
            .ok_or_else(|| {
                OpError::InvalidField(
                    "Encryption Key Information needs the wrapping key's Unique Identifier".into(),
                )
            })?
            .to_owned();
        if key_uid == wrapped_uid {
            return Err(OpError::InvalidField("a key cannot wrap itself".into()));
        }
        self.decide_on(ctx, PolicyOperation::Encrypt, &key_uid)?;
        let key = self.usable_key(&key_uid, USAGE_WRAP_KEY, ctx.now)?;
        let algorithm: Option<CryptographicAlgorithm> = key
            .first(tags::CRYPTOGRAPHIC_ALGORITHM)
            .and_then(|a| a.as_enum());
        if key.kind != ObjectKind::SymmetricKey || algorithm != Some(CryptographicAlgorithm::Aes) {
            return Err(OpError::FeatureNotSupported(
                "wrapping with anything but an AES symmetric key".into(),
            ));
        }
        let given = CryptographicParameters {
            block_cipher_mode: info
                .child(tags::CRYPTOGRAPHIC_PARAMETERS)
                .and_then(|p| p.child(tags::BLOCK_CIPHER_MODE))
                .and_then(Ttlv::as_enum)
                .map(BlockCipherMode::from_u32),
            ..CryptographicParameters::default()
        };
        let mode = effective_parameters(Some(&given), &key).block_cipher_mode;
        let pad =
            match mode {
                Some(BlockCipherMode::NistKeyWrap) => false,
                Some(BlockCipherMode::AesKeyWrapPadding) => true,
                _ => return Err(OpError::FeatureNotSupported(
                    "wrapping with a Block Cipher Mode other than NIST Key Wrap or AES Key Wrap \
                     Padding"
                        .into(),
                )),
            };
        Ok(Wrapping {
            key_uid,
            pad,
            mode: mode.unwrap_or(BlockCipherMode::NistKeyWrap),
        })
    }

    /// `uid`'s stored material wrapped by the backend (on a token, by the token: neither key
    /// leaves it), with the Key Wrapping Data that says how.
    pub(super) async fn wrapped_by_backend(
        &self,
        w: &Wrapping,
        uid: &str,
    ) -> Result<(KeyValue, Ttlv), OpError> {
        let bytes = self
            .store
            .backend()
            .wrap_key(&w.key_uid, uid, w.pad)
            .await
            .map_err(|e| match e {
                BackendError::NotExtractable(_) => OpError::NotExtractable,
                other => OpError::Backend(other),
            })?;
        Ok((
            KeyValue::Wrapped(SecretBytes::from_slice(&bytes)),
            w.wrapping_data(),
        ))
    }

    /// Wraps a converted Key Block's value in the backend that holds the wrapping key, and
    /// describes it.
    pub(super) async fn wrap_block(
        &self,
        w: &Wrapping,
        block: &mut KeyBlock,
    ) -> Result<(), OpError> {
        let plain = match &block.key_value {
            KeyValue::Material(b) | KeyValue::TransparentSymmetricKey(b) => b.as_slice(),
            KeyValue::Transparent(_) | KeyValue::Wrapped(_) => {
                return Err(OpError::FeatureNotSupported(
                    "wrapping a transparent key structure: ask for a byte-string Key Format \
                     (Raw, PKCS#1, PKCS#8)"
                        .into(),
                ))
            }
        };
        let out = self
            .store
            .backend()
            .encrypt(
                &w.key_uid,
                CipherRequest {
                    mode: CipherMode::AesKeyWrap { pad: w.pad },
                    data: Zeroizing::new(plain.to_vec()),
                    iv: None,
                    aad: None,
                    tag: None,
                },
            )
            .await?;
        block.key_value = KeyValue::Wrapped(SecretBytes::from_slice(&out.data));
        block.key_wrapping_data = Some(w.wrapping_data());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stored_form_is_wrapped_by_the_backend() {
        use KeyFormatType as F;
        let sym = ObjectKind::SymmetricKey;
        assert_eq!(served_as_stored(sym, F::Raw, None), Some(F::Raw));
        assert_eq!(
            served_as_stored(sym, F::Raw, Some(F::TransparentSymmetricKey)),
            Some(F::TransparentSymmetricKey)
        );
        assert_eq!(served_as_stored(sym, F::Raw, Some(F::Pkcs8)), None);
        let private = ObjectKind::PrivateKey;
        // Registered as PKCS#1, stored as PKCS#8: served as registered, it is converted first.
        assert_eq!(served_as_stored(private, F::Pkcs1, None), None);
        assert_eq!(
            served_as_stored(private, F::Pkcs1, Some(F::Pkcs8)),
            Some(F::Pkcs8)
        );
        assert_eq!(
            served_as_stored(private, F::TransparentRsaPrivateKey, Some(F::Pkcs8)),
            None
        );
        assert_eq!(
            served_as_stored(ObjectKind::PublicKey, F::X509, None),
            Some(F::X509)
        );
        assert_eq!(
            served_as_stored(ObjectKind::SecretData, F::Opaque, Some(F::Raw)),
            None
        );
        assert_eq!(
            served_as_stored(ObjectKind::Certificate, F::Raw, None),
            None
        );
    }
}
