//! Create Split Key and Join Split Key (KMIP 1.4 §4.38–4.39, 2.1 §6.1.10 and §6.1.27): a secret
//! the server generates (or an extractable key the caller may Get) is split into Split Key
//! objects, and enough parts of one split join into a new key. The unsplit secret is never
//! stored by Create Split Key; every part is an ordinary object, registered like a client's.

mod shares;

use super::split_material::{decode_object, SplitGroup, MAX_SPLIT_KEY_PARTS};
use super::{OpContext, OpError, Ops};
use kmip_backends::{BackendError, ObjectKind};
use kmip_policy::Operation as PolicyOperation;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use shares::Method;
use zeroize::Zeroizing;

/// The longest secret Create Split Key generates, in bits: it bounds the random bytes drawn for
/// one request (the secret and the parts' randomness) and the size of each part.
const MAX_SPLIT_SECRET_BITS: i32 = 4096;

/// A secret to split, with what its parts' Key Blocks say of it.
struct Secret {
    bytes: Zeroizing<Vec<u8>>,
    format: KeyFormatType,
    algorithm: Option<CryptographicAlgorithm>,
    length: Option<i32>,
}

impl Ops {
    pub(super) async fn create_split_key(
        &self,
        ctx: &mut OpContext<'_>,
        r: CreateSplitKeyRequest,
    ) -> Result<CreateSplitKeyResponse, OpError> {
        if !matches!(
            r.object_type,
            ObjectType::SplitKey | ObjectType::SymmetricKey | ObjectType::SecretData
        ) {
            return Err(OpError::InvalidObjectType(format!(
                "Create Split Key makes Split Keys, not {:?}",
                r.object_type
            )));
        }
        let parts = r.split_key_parts;
        let threshold = r.split_key_threshold;
        // The first part's fields, checked as a registered part's would be, before any work.
        super::split_material::check_split(&SplitKey {
            split_key_parts: parts,
            key_part_identifier: 1,
            split_key_threshold: threshold,
            split_key_method: r.split_key_method,
            prime_field_size: r.prime_field_size.clone(),
            key_block: KeyBlock::raw(SecretBytes::new(Vec::new()), None, None),
        })?;
        let method = method(r.split_key_method)?;
        if r.attributes.iter().any(|a| a.is(tags::NAME)) {
            return Err(OpError::InvalidField(
                "a Name is unique, and every part of the split would carry it".into(),
            ));
        }
        let secret = match &r.unique_identifier {
            Some(uid) => self.secret_of(ctx, uid).await?,
            None => self.new_secret(&r.attributes).await?,
        };
        check_pieces(method, secret.bytes.len())?;
        // `check_split` bounded both by MAX_SPLIT_KEY_PARTS, far below 256.
        let (n, t) = (parts as u8, threshold as u8);
        let random = self
            .store
            .backend()
            .random(shares::random_len(method, secret.bytes.len(), n, t))
            .await?;
        let pieces = shares::split(method, &secret.bytes, n, t, &random);
        let group: SplitGroup = self
            .store
            .backend()
            .random(16)
            .await?
            .as_slice()
            .try_into()
            .map_err(|_| OpError::Backend(BackendError::Corrupt("short random answer".into())))?;
        let mut uids: Vec<String> = Vec::with_capacity(pieces.len());
        for (i, piece) in pieces.iter().enumerate() {
            let mut attributes: Vec<Attribute> = r
                .attributes
                .iter()
                .filter(|a| {
                    !a.is(tags::CRYPTOGRAPHIC_ALGORITHM) && !a.is(tags::CRYPTOGRAPHIC_LENGTH)
                })
                .cloned()
                .collect();
            // The parts of one split are chained, and name the key they were split from.
            if let Some(previous) = uids.last() {
                attributes.push(link(LinkType::PreviousLink, previous));
            }
            if let Some(base) = &r.unique_identifier {
                attributes.push(link(LinkType::ParentLink, base));
            }
            let object = ManagedObject::SplitKey(SplitKey {
                split_key_parts: parts,
                key_part_identifier: i as i32 + 1,
                split_key_threshold: threshold,
                split_key_method: r.split_key_method,
                prime_field_size: None,
                key_block: KeyBlock {
                    key_format_type: secret.format,
                    ..KeyBlock::raw(
                        SecretBytes::from_slice(piece),
                        secret.algorithm,
                        secret.length,
                    )
                },
            });
            let request = RegisterRequest {
                templates: Vec::new(),
                object_type: ObjectType::SplitKey,
                attributes,
                object,
            };
            let made = self.register_in(ctx, request, None, &group).await?;
            uids.push(made.unique_identifier);
        }
        // KMIP: the ID Placeholder is the part whose Key Part Identifier is 1.
        ctx.id_placeholder = uids.first().cloned();
        Ok(CreateSplitKeyResponse {
            unique_identifiers: uids,
        })
    }

    pub(super) async fn join_split_key(
        &self,
        ctx: &mut OpContext<'_>,
        r: JoinSplitKeyRequest,
    ) -> Result<UidResponse, OpError> {
        let count = r.unique_identifiers.len();
        if count == 0 {
            return Err(OpError::MissingData(
                "the Unique Identifiers of the parts".into(),
            ));
        }
        if count > MAX_SPLIT_KEY_PARTS as usize {
            return Err(OpError::InvalidField(format!(
                "a split has at most {MAX_SPLIT_KEY_PARTS} parts, {count} were named"
            )));
        }
        let mut parts: Vec<(SplitGroup, SplitKey)> = Vec::with_capacity(count);
        for (i, uid) in r.unique_identifiers.iter().enumerate() {
            if r.unique_identifiers[..i].contains(uid) {
                return Err(OpError::InvalidField(format!("part {uid} is named twice")));
            }
            // Each part is read exactly as a Get of it would be.
            self.decide_on(ctx, PolicyOperation::Get, uid)?;
            let obj = self.live_object(uid)?;
            if obj.kind != ObjectKind::SplitKey {
                return Err(OpError::InvalidObjectType(format!(
                    "{uid} is not a Split Key"
                )));
            }
            let material = self.readable_material(uid, &obj).await?;
            match decode_object(uid, obj.kind, &material)? {
                (ManagedObject::SplitKey(split), group) => parts.push((group, split)),
                _ => {
                    return Err(OpError::Backend(BackendError::Corrupt(format!(
                        "{uid}: not a Split Key"
                    ))))
                }
            }
        }
        let (group, first) = &parts[0];
        let first_block = &first.key_block;
        let first_len = first_block.key_bytes().map(SecretBytes::len);
        for (g, p) in &parts[1..] {
            let b = &p.key_block;
            let same = g == group
                && p.split_key_parts == first.split_key_parts
                && p.split_key_threshold == first.split_key_threshold
                && p.split_key_method == first.split_key_method
                && p.prime_field_size == first.prime_field_size
                && b.key_format_type == first_block.key_format_type
                && b.cryptographic_algorithm == first_block.cryptographic_algorithm
                && b.cryptographic_length == first_block.cryptographic_length
                && b.key_bytes().map(SecretBytes::len) == first_len;
            if !same {
                return Err(OpError::InvalidField(
                    "the parts do not belong to one split".into(),
                ));
            }
        }
        for (i, (_, p)) in parts.iter().enumerate() {
            if parts[..i]
                .iter()
                .any(|(_, q)| q.key_part_identifier == p.key_part_identifier)
            {
                return Err(OpError::InvalidField(format!(
                    "Key Part Identifier {} is given twice",
                    p.key_part_identifier
                )));
            }
        }
        if (count as i32) < first.split_key_threshold {
            return Err(OpError::InvalidField(format!(
                "the split needs {} parts (its Split Key Threshold), {count} were given",
                first.split_key_threshold
            )));
        }
        let method = method(first.split_key_method)?;
        check_pieces(method, first_len.unwrap_or(0))?;
        let mut shares: Vec<(u8, &[u8])> = Vec::with_capacity(count);
        for (_, p) in &parts {
            let bytes = p.key_block.key_bytes().ok_or_else(|| {
                OpError::FeatureNotSupported(
                    "joining parts whose Key Block is not raw bytes".into(),
                )
            })?;
            // Stored parts passed `check_split`: identifiers are 1..=MAX_SPLIT_KEY_PARTS.
            shares.push((p.key_part_identifier as u8, bytes.as_slice()));
        }
        let secret = shares::join(method, &shares);
        let block = KeyBlock {
            key_format_type: first_block.key_format_type,
            ..KeyBlock::raw(
                SecretBytes::from_slice(&secret),
                first_block.cryptographic_algorithm,
                first_block.cryptographic_length,
            )
        };
        let object = match r.object_type {
            ObjectType::SymmetricKey => ManagedObject::SymmetricKey(block),
            ObjectType::SecretData => ManagedObject::SecretData {
                secret_data_type: r.secret_data_type.unwrap_or(SecretDataType::Seed),
                key_block: block,
            },
            ObjectType::PrivateKey => ManagedObject::PrivateKey(block),
            other => {
                return Err(OpError::InvalidObjectType(format!(
                "Join Split Key makes a Symmetric Key, Secret Data or Private Key, not {other:?}"
            )))
            }
        };
        let request = RegisterRequest {
            templates: Vec::new(),
            object_type: r.object_type,
            attributes: r.attributes,
            object,
        };
        self.register(ctx, request).await
    }

    /// The existing key `uid` to split: the caller must be allowed to Get it, and its material
    /// must be allowed to leave its backend.
    async fn secret_of(&self, ctx: &OpContext<'_>, uid: &str) -> Result<Secret, OpError> {
        self.decide_on(ctx, PolicyOperation::Get, uid)?;
        let obj = self.live_object(uid)?;
        let stored_format = obj
            .enum_of(tags::KEY_FORMAT_TYPE)
            .map(KeyFormatType::from_u32)
            .unwrap_or(KeyFormatType::Raw);
        // The form its material is stored in (a Private Key's is always PKCS#8).
        let format = match (obj.kind, stored_format) {
            (ObjectKind::SymmetricKey, _) => KeyFormatType::Raw,
            (ObjectKind::SecretData, f @ (KeyFormatType::Raw | KeyFormatType::Opaque)) => f,
            (ObjectKind::PrivateKey, KeyFormatType::Pkcs1 | KeyFormatType::Pkcs8) => {
                KeyFormatType::Pkcs8
            }
            (ObjectKind::SecretData | ObjectKind::PrivateKey, f) => {
                return Err(OpError::FeatureNotSupported(format!(
                    "splitting a key kept as {f:?}"
                )))
            }
            (kind, _) => {
                return Err(OpError::InvalidObjectType(format!(
                    "a {kind:?} cannot be split: only keys and secret data"
                )))
            }
        };
        let bytes = self.readable_material(uid, &obj).await?;
        Ok(Secret {
            bytes,
            format,
            algorithm: obj
                .first(tags::CRYPTOGRAPHIC_ALGORITHM)
                .and_then(|a| a.as_enum()),
            length: obj
                .first(tags::CRYPTOGRAPHIC_LENGTH)
                .and_then(|a| a.as_int()),
        })
    }

    /// A new secret from the backend's generator, of the algorithm and length the request's
    /// attributes name.
    async fn new_secret(&self, attrs: &[Attribute]) -> Result<Secret, OpError> {
        let algorithm = attrs
            .iter()
            .find(|a| a.is(tags::CRYPTOGRAPHIC_ALGORITHM))
            .and_then(|a| a.as_enum::<CryptographicAlgorithm>())
            .ok_or_else(|| OpError::MissingData("Cryptographic Algorithm".into()))?;
        let bits = attrs
            .iter()
            .find(|a| a.is(tags::CRYPTOGRAPHIC_LENGTH))
            .and_then(Attribute::as_int)
            .ok_or_else(|| OpError::MissingData("Cryptographic Length".into()))?;
        let valid = match algorithm {
            CryptographicAlgorithm::Aes => matches!(bits, 128 | 192 | 256),
            _ => bits % 8 == 0 && (8..=MAX_SPLIT_SECRET_BITS).contains(&bits),
        };
        if !valid {
            return Err(OpError::InvalidField(format!(
                "cannot generate a {algorithm:?} secret of {bits} bits to split (AES 128/192/256, \
                 others a multiple of 8 up to {MAX_SPLIT_SECRET_BITS})"
            )));
        }
        let bytes = self.store.backend().random(bits as usize / 8).await?;
        Ok(Secret {
            bytes,
            format: KeyFormatType::Raw,
            algorithm: Some(algorithm),
            length: Some(bits),
        })
    }

    /// The material of `uid`, refused as Get refuses it for a Sensitive or non-extractable key.
    async fn readable_material(
        &self,
        uid: &str,
        obj: &crate::kmip::store::StoredObject,
    ) -> Result<Zeroizing<Vec<u8>>, OpError> {
        let flag = |tag| obj.first(tag).and_then(|a| a.as_bool());
        if flag(tags::SENSITIVE) == Some(true) {
            return Err(OpError::Sensitive);
        }
        if flag(tags::EXTRACTABLE) == Some(false) {
            return Err(OpError::NotExtractable);
        }
        self.store.read_material(uid).await.map_err(|e| match e {
            BackendError::NotExtractable(_) => OpError::NotExtractable,
            other => OpError::Backend(other),
        })
    }
}

/// The arithmetic of a Split Key Method, or why it is not offered.
fn method(m: SplitKeyMethod) -> Result<Method, OpError> {
    match m {
        SplitKeyMethod::Xor => Ok(Method::Xor),
        SplitKeyMethod::PolynomialSharingGf28 => Ok(Method::Gf256),
        SplitKeyMethod::PolynomialSharingGf216 => Ok(Method::Gf65536),
        other => Err(OpError::FeatureNotSupported(format!(
            "Split Key Method {other:?}: XOR and Polynomial Sharing GF(2^8) and GF(2^16) are \
             supported"
        ))),
    }
}

/// GF(2^16) shares the secret in 16-bit pieces: a key of an odd number of bytes has none.
fn check_pieces(method: Method, len: usize) -> Result<(), OpError> {
    if !len.is_multiple_of(method.piece()) {
        return Err(OpError::InvalidField(format!(
            "Polynomial Sharing GF(2^16) splits whole 16-bit pieces; the key is {len} bytes"
        )));
    }
    Ok(())
}

fn link(link_type: LinkType, uid: &str) -> Attribute {
    Attribute::link(&Link {
        link_type,
        linked_object_identifier: uid.to_owned(),
    })
}
