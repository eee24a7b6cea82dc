//! How a Split Key, a PGP Key or a Certificate Request is kept in a backend: their fields beyond
//! the Key Block (Key Part Identifier, Threshold, Method, PGP Key Version, Certificate Request
//! Type) are not attributes, so the object's material is its own TTLV structure, read back whole
//! by Get. A Split Key's is preceded by the identifier
//! of the split it belongs to, which Join Split Key compares.

use super::OpError;
use kmip_backends::{BackendError, ObjectKind};
use kmip_wire::model::*;
use kmip_wire::ttlv::{decode, Limits};
use zeroize::Zeroizing;

/// The most parts one split may have: Create Split Key makes (and stores) this many objects for
/// one request, and Join Split Key reads this many; it bounds both.
pub(super) const MAX_SPLIT_KEY_PARTS: i32 = 32;

/// Which split a part belongs to: random for the parts of one Create Split Key.
pub(crate) type SplitGroup = [u8; 16];

/// The group of a part a client registered: the server did not see it split, so parts of one
/// split are told apart by their fields alone.
pub(crate) const REGISTERED: SplitGroup = [0; 16];

/// The stored material of a Split Key (with its group), a PGP Key or a Certificate Request.
pub(super) fn encode(
    object: &ManagedObject,
    group: &SplitGroup,
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    encode_material(object, group)
        .map_err(|_| OpError::InvalidField("the object's structure".into()))
}

/// [`encode`] for a backend that keeps these objects in their own form (a KMIP proxy, which
/// registers them upstream and gives their material back in this encoding).
pub(crate) fn encode_material(
    object: &ManagedObject,
    group: &SplitGroup,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let encoded = object
        .to_ttlv()
        .to_bytes()
        .map_err(|e| BackendError::InvalidInput(format!("the object's structure: {e}")))?;
    let mut out = Zeroizing::new(Vec::with_capacity(group.len() + encoded.len()));
    if let ManagedObject::SplitKey(_) = object {
        out.extend_from_slice(group);
    }
    out.extend_from_slice(&encoded);
    Ok(out)
}

/// The object `uid` of `kind` stored as `material`, and its split's group (a PGP Key's or a
/// Certificate Request's is [`REGISTERED`]).
pub(super) fn decode_object(
    uid: &str,
    kind: ObjectKind,
    material: &[u8],
) -> Result<(ManagedObject, SplitGroup), OpError> {
    decode_material(uid, kind, material).map_err(OpError::Backend)
}

/// [`decode_object`] for a backend that keeps these objects in their own form.
pub(crate) fn decode_material(
    uid: &str,
    kind: ObjectKind,
    material: &[u8],
) -> Result<(ManagedObject, SplitGroup), BackendError> {
    let corrupt = |why: &str| BackendError::Corrupt(format!("{uid}: {why}"));
    let (object_type, group, body) = match kind {
        ObjectKind::SplitKey => {
            let (group, body) = material
                .split_first_chunk::<16>()
                .ok_or_else(|| corrupt("split key material too short"))?;
            (ObjectType::SplitKey, *group, body)
        }
        ObjectKind::PgpKey => (ObjectType::PgpKey, REGISTERED, material),
        ObjectKind::CertificateRequest => (ObjectType::CertificateRequest, REGISTERED, material),
        _ => return Err(corrupt("not a Split Key, PGP Key or Certificate Request")),
    };
    let tree = decode(&bytes::Bytes::copy_from_slice(body), &Limits::default())
        .map_err(|_| corrupt("stored object is not TTLV"))?;
    let object = ManagedObject::from_ttlv(object_type, &tree)
        .map_err(|_| corrupt("stored object does not decode"))?;
    Ok((object, group))
}

/// Refuses Certificate Request objects to a KMIP 1.x client, whose protocol has none (1.x sends
/// a CSR to Certify only, as bytes).
pub(super) fn check_certificate_requests_exist(version: ProtocolVersion) -> Result<(), OpError> {
    if !version.is_v2() {
        return Err(OpError::FeatureNotSupported(
            "Certificate Request objects are KMIP 2.x objects; KMIP 1.x has none".into(),
        ));
    }
    Ok(())
}

/// The checks a Split Key's fields must pass to be stored: a part that can never be joined is
/// refused when it is registered.
pub(super) fn check_split(split: &SplitKey) -> Result<(), OpError> {
    let parts = split.split_key_parts;
    if !(1..=MAX_SPLIT_KEY_PARTS).contains(&parts) {
        return Err(OpError::InvalidField(format!(
            "Split Key Parts must be 1 to {MAX_SPLIT_KEY_PARTS}, got {parts}"
        )));
    }
    if !(1..=parts).contains(&split.split_key_threshold) {
        return Err(OpError::InvalidField(format!(
            "Split Key Threshold must be 1 to the {parts} parts, got {}",
            split.split_key_threshold
        )));
    }
    if !(1..=parts).contains(&split.key_part_identifier) {
        return Err(OpError::InvalidField(format!(
            "Key Part Identifier must be 1 to the {parts} parts, got {}",
            split.key_part_identifier
        )));
    }
    if split.split_key_method == SplitKeyMethod::Xor && split.split_key_threshold != parts {
        return Err(OpError::InvalidField(
            "an XOR split needs every part: its Split Key Threshold is its Split Key Parts".into(),
        ));
    }
    if (split.split_key_method == SplitKeyMethod::PolynomialSharingPrimeField)
        != split.prime_field_size.is_some()
    {
        return Err(OpError::InvalidField(
            "Prime Field Size is given exactly for Polynomial Sharing Prime Field".into(),
        ));
    }
    Ok(())
}
