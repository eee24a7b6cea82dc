//! Encrypt and Decrypt with a key the backend holds: the key must be Active, inside its
//! usage dates and mask, and each use is charged against its Usage Limits first.

use super::asym::is_asymmetric;
use super::object::{state_name, state_of};
use super::stream::{Part, PartOutput};
use super::{OpContext, OpError, Ops};
use crate::kmip::store::StoredObject;
use bytes::Bytes;
use kmip_backends::{CipherMode, CipherRequest};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

impl Ops {
    pub(super) fn usable_key(
        &self,
        uid: &str,
        usage: i32,
        now: i64,
    ) -> Result<Arc<StoredObject>, OpError> {
        let obj = self.live_object(uid)?;
        if state_of(&obj) != State::Active {
            return Err(OpError::WrongState(state_name(state_of(&obj))));
        }
        let date = |tag: Tag| obj.first(tag).and_then(|a| a.as_datetime());
        // Protecting (encrypting, MACing) stops at the Protect Stop Date; processing
        // (decrypting) starts at the Process Start Date.
        if usage != USAGE_DECRYPT && date(tags::PROTECT_STOP_DATE).is_some_and(|d| d <= now) {
            return Err(OpError::WrongState("past its Protect Stop Date"));
        }
        if usage == USAGE_DECRYPT && date(tags::PROCESS_START_DATE).is_some_and(|d| d > now) {
            return Err(OpError::WrongState("before its Process Start Date"));
        }
        if let Some(mask) = obj
            .first(tags::CRYPTOGRAPHIC_USAGE_MASK)
            .and_then(|a| a.as_int())
        {
            if mask & usage == 0 {
                return Err(OpError::PermissionDenied(
                    "the key's usage mask does not allow this operation".into(),
                ));
            }
        }
        Ok(obj)
    }

    /// Charges a use of `bytes` bytes against the key's Usage Limits, durably, before the
    /// operation runs (a failed operation still counts: the conservative side). The charge is
    /// not journaled for undo: the use happened, and an Undo batch must not refund it.
    async fn consume_usage(&self, obj: &StoredObject, bytes: usize) -> Result<(), OpError> {
        if obj.first(tags::USAGE_LIMITS).is_none() {
            return Ok(());
        }
        // Usage Limits Unit: 1 = Byte, 2 = Object (one use per operation).
        self.charge_usage_limits(&obj.uid, |unit| match unit {
            Some(1) => i64::try_from(bytes).unwrap_or(i64::MAX),
            _ => 1,
        })
        .await
    }

    /// Takes `need(unit)` units from the object's Usage Limits Count, durably, or refuses when
    /// fewer remain. Never journaled for undo (see [`Ops::consume_usage`]).
    async fn charge_usage_limits(
        &self,
        uid: &str,
        need: impl Fn(Option<u32>) -> i64,
    ) -> Result<(), OpError> {
        self.store
            .update(uid, |o| {
                let Some(Value::Structure(fields)) =
                    o.first(tags::USAGE_LIMITS).map(|a| a.value.clone())
                else {
                    return Ok(());
                };
                let field = |tag: Tag| fields.iter().find(|t| t.tag == tag);
                let total = field(tags::USAGE_LIMITS_TOTAL)
                    .and_then(|t| t.as_long())
                    .unwrap_or(0);
                let remaining = field(tags::USAGE_LIMITS_COUNT)
                    .and_then(|t| t.as_long())
                    .unwrap_or(total);
                let need = need(field(tags::USAGE_LIMITS_UNIT).and_then(|t| t.as_enum()));
                if need > remaining {
                    return Err(OpError::PermissionDenied(
                        "the key's Usage Limits are exhausted".into(),
                    ));
                }
                let mut kept: Vec<kmip_wire::ttlv::Ttlv> = fields
                    .iter()
                    .filter(|t| t.tag != tags::USAGE_LIMITS_COUNT)
                    .cloned()
                    .collect();
                kept.push(kmip_wire::ttlv::Ttlv::new(
                    tags::USAGE_LIMITS_COUNT,
                    Value::LongInteger(remaining - need),
                ));
                o.set(tags::USAGE_LIMITS, Value::Structure(kept));
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Get Usage Allocation: reserves units of a protecting key's Usage Limits for the client's
    /// own use (KMIP 1.4 §4.18). Only an Active key that may protect (encrypt or MAC), inside
    /// its dates and with Usage Limits, gives an allocation; the units are taken at once.
    pub(super) async fn get_usage_allocation(
        &self,
        ctx: &mut OpContext<'_>,
        r: GetUsageAllocationRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_key(&uid, USAGE_ENCRYPT | USAGE_MAC_GENERATE, ctx.now)?;
        if obj.first(tags::USAGE_LIMITS).is_none() {
            return Err(OpError::PermissionDenied(
                "the object has no Usage Limits to allocate from".into(),
            ));
        }
        if r.usage_limits_count <= 0 {
            return Err(OpError::InvalidField(
                "Usage Limits Count must be a positive number of units".into(),
            ));
        }
        self.charge_usage_limits(&uid, |_| r.usage_limits_count)
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    pub(super) async fn encrypt(
        &self,
        ctx: &mut OpContext<'_>,
        r: CryptoRequest,
    ) -> Result<EncryptResponse, OpError> {
        if is_asymmetric(
            self,
            r.unique_identifier.as_ref(),
            ctx.id_placeholder.as_ref(),
        ) {
            return self.rsa_encrypt(ctx, r).await;
        }
        let part = Part::of(&r)?;
        let uid = ctx.uid(r.unique_identifier.clone())?;
        let obj = self
            .usable_key(&uid, USAGE_ENCRYPT, ctx.now)
            .inspect_err(|_| self.abandon_stream(&part, ctx.user, &uid))?;
        let mode = cipher_mode(r.cryptographic_parameters.as_ref(), &obj)?;
        if !matches!(part, Part::Single) {
            let out = self.streamed(ctx, &obj, part, mode, r, false).await?;
            return Ok(EncryptResponse {
                unique_identifier: uid,
                data: Some(Bytes::copy_from_slice(&out.data)),
                iv_counter_nonce: out.generated_iv.map(Bytes::from),
                correlation_value: out.correlation_value.map(Bytes::from),
                authenticated_encryption_tag: out.tag.map(Bytes::from),
            });
        }
        let data = r.data.ok_or_else(|| OpError::MissingData("Data".into()))?;
        self.consume_usage(&obj, data.len()).await?;
        let out = self
            .store
            .backend()
            .encrypt(
                &uid,
                CipherRequest {
                    mode,
                    data: Zeroizing::new(data.as_slice().to_vec()),
                    iv: r.iv_counter_nonce.map(|b| b.to_vec()),
                    aad: r
                        .authenticated_encryption_additional_data
                        .map(|b| b.to_vec()),
                    tag: None,
                },
            )
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(EncryptResponse {
            unique_identifier: uid,
            data: Some(Bytes::copy_from_slice(&out.data)),
            iv_counter_nonce: out.generated_iv.map(Bytes::from),
            correlation_value: None,
            authenticated_encryption_tag: out.tag.map(Bytes::from),
        })
    }

    /// One part of a multi-part Encrypt or Decrypt: charged against the key's Usage Limits
    /// (bytes per part; an Object unit once, at the first part), then run on the stream.
    async fn streamed(
        &self,
        ctx: &mut OpContext<'_>,
        obj: &StoredObject,
        part: Part,
        mode: CipherMode,
        r: CryptoRequest,
        decrypt: bool,
    ) -> Result<PartOutput, OpError> {
        if obj.first(tags::USAGE_LIMITS).is_some() {
            let bytes = r.data.as_ref().map_or(0, |d| d.len());
            let first = matches!(part, Part::First);
            self.charge_usage_limits(&obj.uid, |unit| match unit {
                Some(1) => i64::try_from(bytes).unwrap_or(i64::MAX),
                _ => i64::from(first),
            })
            .await
            .inspect_err(|_| self.abandon_stream(&part, ctx.user, &obj.uid))?;
        }
        let out = self
            .stream_part(ctx, &obj.uid, part, mode, r, decrypt)
            .await?;
        ctx.id_placeholder = Some(obj.uid.to_string());
        Ok(out)
    }

    pub(super) async fn decrypt(
        &self,
        ctx: &mut OpContext<'_>,
        r: CryptoRequest,
    ) -> Result<DecryptResponse, OpError> {
        if is_asymmetric(
            self,
            r.unique_identifier.as_ref(),
            ctx.id_placeholder.as_ref(),
        ) {
            return self.rsa_decrypt(ctx, r).await;
        }
        let part = Part::of(&r)?;
        let uid = ctx.uid(r.unique_identifier.clone())?;
        let obj = self
            .usable_key(&uid, USAGE_DECRYPT, ctx.now)
            .inspect_err(|_| self.abandon_stream(&part, ctx.user, &uid))?;
        let mode = cipher_mode(r.cryptographic_parameters.as_ref(), &obj)?;
        let opens = matches!(part, Part::Single | Part::First);
        if opens && !matches!(mode, CipherMode::Ecb { .. }) && r.iv_counter_nonce.is_none() {
            return Err(OpError::MissingIv);
        }
        if !matches!(part, Part::Single) {
            let out = self.streamed(ctx, &obj, part, mode, r, true).await?;
            return Ok(DecryptResponse {
                unique_identifier: uid,
                data: Some(SecretBytes::from_slice(&out.data)),
                correlation_value: out.correlation_value.map(Bytes::from),
            });
        }
        let data = r.data.ok_or_else(|| OpError::MissingData("Data".into()))?;
        self.consume_usage(&obj, data.len()).await?;
        let out = self
            .store
            .backend()
            .decrypt(
                &uid,
                CipherRequest {
                    mode,
                    data: Zeroizing::new(data.as_slice().to_vec()),
                    iv: r.iv_counter_nonce.map(|b| b.to_vec()),
                    aad: r
                        .authenticated_encryption_additional_data
                        .map(|b| b.to_vec()),
                    tag: r.authenticated_encryption_tag.map(|b| b.to_vec()),
                },
            )
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(DecryptResponse {
            unique_identifier: uid,
            data: Some(SecretBytes::from_slice(&out.data)),
            correlation_value: None,
        })
    }
}

/// The authentication tag lengths SP 800-38D allows for GCM (bytes), also taken for Poly1305's
/// truncated tags: a shorter tag is forged too easily.
pub(crate) const TAG_LENGTHS: [i32; 7] = [4, 8, 12, 13, 14, 15, 16];
/// The tag length when neither the request nor the key names one.
const GCM_FULL_TAG: i32 = 16;
/// Poly1305's tag (bytes), the only length RFC 8439 defines.
const POLY1305_TAG: i32 = 16;

const USAGE_ENCRYPT: i32 = 0x0000_0004;
const USAGE_DECRYPT: i32 = 0x0000_0008;
pub(super) const USAGE_MAC_GENERATE: i32 = 0x0000_0080;

/// The request's Cryptographic Parameters, completed field by field from the key's own
/// Cryptographic Parameters attribute (KMIP: the object's parameters apply when the request
/// omits them).
pub(super) fn effective_parameters(
    given: Option<&CryptographicParameters>,
    obj: &StoredObject,
) -> CryptographicParameters {
    let mut p = given.cloned().unwrap_or_default();
    if let Some(stored) = obj.first(tags::CRYPTOGRAPHIC_PARAMETERS) {
        let field = |tag: Tag| match &stored.value {
            Value::Structure(items) => items.iter().find(|t| t.tag == tag),
            _ => None,
        };
        let e = |tag: Tag| field(tag).and_then(|t| t.as_enum());
        p.block_cipher_mode = p
            .block_cipher_mode
            .or(e(tags::BLOCK_CIPHER_MODE).map(BlockCipherMode::from_u32));
        p.padding_method = p
            .padding_method
            .or(e(tags::PADDING_METHOD).map(PaddingMethod::from_u32));
        p.cryptographic_algorithm = p
            .cryptographic_algorithm
            .or(e(tags::CRYPTOGRAPHIC_ALGORITHM).map(CryptographicAlgorithm::from_u32));
        p.tag_length = p
            .tag_length
            .or(field(tags::TAG_LENGTH).and_then(|t| t.as_i32()));
    }
    p
}

fn cipher_mode(
    given: Option<&CryptographicParameters>,
    obj: &StoredObject,
) -> Result<CipherMode, OpError> {
    let effective = effective_parameters(given, obj);
    let p = Some(&effective);
    let alg = p.and_then(|p| p.cryptographic_algorithm).or_else(|| {
        obj.first(tags::CRYPTOGRAPHIC_ALGORITHM)
            .and_then(|a| a.as_enum())
    });
    let block_mode = p.and_then(|p| p.block_cipher_mode);
    match (alg, block_mode) {
        // ChaCha20 is a stream cipher: no block mode.
        (Some(CryptographicAlgorithm::ChaCha20), None) => return Ok(CipherMode::ChaCha20),
        (Some(CryptographicAlgorithm::ChaCha20Poly1305), None | Some(BlockCipherMode::Aead)) => {
            let tag_len = p.and_then(|p| p.tag_length).unwrap_or(POLY1305_TAG);
            if !TAG_LENGTHS.contains(&tag_len) {
                return Err(OpError::TagLength(tag_len));
            }
            return Ok(CipherMode::ChaCha20Poly1305 {
                tag_len: usize::try_from(tag_len).map_err(|_| OpError::TagLength(tag_len))?,
            });
        }
        _ => {}
    }
    match alg {
        Some(CryptographicAlgorithm::Aes) => {}
        Some(CryptographicAlgorithm::Des3)
            if p.and_then(|p| p.block_cipher_mode) != Some(BlockCipherMode::Gcm) => {}
        _ => {
            return Err(OpError::BadCryptoParameters(
                "Encrypt/Decrypt support AES (ECB, CBC, CTR, GCM), Triple DES (ECB, CBC), ChaCha20 and \
                 ChaCha20-Poly1305 (AEAD) keys"
                    .into(),
            ))
        }
    }
    let pad = match p.and_then(|p| p.padding_method) {
        None | Some(PaddingMethod::None) => false,
        Some(PaddingMethod::Pkcs5) => true,
        Some(other) => return Err(OpError::BadCryptoParameters(format!("padding {other:?}"))),
    };
    Ok(match p.and_then(|p| p.block_cipher_mode) {
        Some(BlockCipherMode::Gcm) => {
            let tag_len = p.and_then(|p| p.tag_length).unwrap_or(GCM_FULL_TAG);
            if !TAG_LENGTHS.contains(&tag_len) {
                return Err(OpError::TagLength(tag_len));
            }
            CipherMode::Gcm {
                tag_len: usize::try_from(tag_len).map_err(|_| OpError::TagLength(tag_len))?,
            }
        }
        Some(BlockCipherMode::Cbc) => CipherMode::Cbc { pad },
        Some(BlockCipherMode::Ecb) => CipherMode::Ecb { pad },
        Some(BlockCipherMode::Ctr) => CipherMode::Ctr,
        None => return Err(OpError::MissingData("Block Cipher Mode".into())),
        Some(other) => return Err(OpError::BadCryptoParameters(format!("mode {other:?}"))),
    })
}
