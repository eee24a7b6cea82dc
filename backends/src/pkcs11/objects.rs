//! How gateway objects are laid out on the token, the one scan that finds them, and how they
//! are destroyed (material first, or tombstone first when one is kept).
//!
//! Every object is two token objects: its material (a `CKO_SECRET_KEY` with `CKA_ID` = uid for
//! symmetric keys, a `CKO_DATA` with application [`MATERIAL_APP`] otherwise) and a `CKO_DATA`
//! companion with application [`META_APP`] whose value is a small header plus the gateway's
//! metadata blob. Data objects have no `CKA_ID` (SoftHSM rejects it as
//! `CKR_ATTRIBUTE_TYPE_INVALID`), so theirs carry the uid as `CKA_LABEL`. A destroyed object kept as a tombstone is the companion alone, flagged
//! [`FLAG_TOMBSTONE`].

use std::collections::HashMap;

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use tracing::warn;

use super::p11_error;
use crate::{BackendError, ObjectKind, ObjectRecord};

/// `CKA_APPLICATION` of the metadata companions.
pub(crate) const META_APP: &[u8] = b"kmip-gateway";
/// `CKA_APPLICATION` of non-key material stored as data objects.
pub(crate) const MATERIAL_APP: &[u8] = b"kmip-gateway-object";
/// Header of a companion's value: magic and format version, kind, flags, then a big-endian
/// sequence number. A companion's value is read-only in SoftHSM, so an update writes a new
/// companion before deleting the old one; after an interruption the scan keeps the higher number.
const META_MAGIC: &[u8; 3] = b"KM1";
const META_HEADER_LEN: usize = META_MAGIC.len() + 2 + 8;
/// Flag: data-object material that must never be returned (PKCS#11 cannot mark a data object
/// sensitive, so the backend enforces it).
pub(crate) const FLAG_NOT_EXTRACTABLE: u8 = 1;
/// Flag: the material was destroyed; the companion is all that is left (KMIP keeps a destroyed
/// object's attributes).
pub(crate) const FLAG_TOMBSTONE: u8 = 2;

/// Where one object lives on the token, cached so that requests never search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// `None` for a tombstone.
    pub(crate) material: Option<ObjectHandle>,
    pub(crate) meta: ObjectHandle,
    pub(crate) kind: ObjectKind,
    pub(crate) flags: u8,
    pub(crate) seq: u64,
}

/// The value stored in a metadata companion.
fn encode_meta(kind: ObjectKind, flags: u8, seq: u64, meta: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(META_HEADER_LEN + meta.len());
    value.extend_from_slice(META_MAGIC);
    value.push(kind.code());
    value.push(flags);
    value.extend_from_slice(&seq.to_be_bytes());
    value.extend_from_slice(meta);
    value
}

/// A decoded companion value: kind, flags, sequence number, gateway blob.
type Meta<'a> = (ObjectKind, u8, u64, &'a [u8]);

fn decode_meta(value: &[u8]) -> Option<Meta<'_>> {
    let rest = value.strip_prefix(META_MAGIC.as_slice())?;
    let (&kind, rest) = rest.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    let (seq, meta) = rest.split_first_chunk::<8>()?;
    Some((
        ObjectKind::from_code(kind)?,
        flags,
        u64::from_be_bytes(*seq),
        meta,
    ))
}

/// Template of a metadata companion.
fn meta_template(uid: &str, value: Vec<u8>) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Modifiable(true),
        Attribute::Application(META_APP.to_vec()),
        Attribute::Label(uid.as_bytes().to_vec()),
        Attribute::Value(value),
    ]
}

/// Creates the metadata companion of freshly created material; destroys the material if that
/// fails so no half object stays behind.
/// Creates an object: its companion first, then its material with `make_material`. A crash in
/// between leaves a companion without material, which the next scan removes; material never
/// exists without the companion that names it as the gateway's.
pub(crate) fn create_with_meta(
    session: &Session,
    uid: &str,
    kind: ObjectKind,
    flags: u8,
    meta: &[u8],
    make_material: impl FnOnce(&Session) -> Result<ObjectHandle, BackendError>,
) -> Result<Entry, BackendError> {
    let meta_handle = session
        .create_object(&meta_template(uid, encode_meta(kind, flags, 0, meta)))
        .map_err(p11_error)?;
    match make_material(session) {
        Ok(material) => Ok(Entry {
            material: Some(material),
            meta: meta_handle,
            kind,
            flags,
            seq: 0,
        }),
        Err(e) => {
            if let Err(cleanup) = session.destroy_object(meta_handle) {
                warn!(uid, error = %cleanup, "could not remove the companion after a failed create");
            }
            Err(e)
        }
    }
}

/// Replaces the companion of `entry` with one holding `flags` and `meta`: the new one is written
/// before the old one is deleted, so an interruption leaves two (resolved by the scan), never none.
pub(crate) fn replace_meta(
    session: &Session,
    uid: &str,
    entry: &Entry,
    flags: u8,
    meta: &[u8],
) -> Result<Entry, BackendError> {
    let seq = entry.seq.wrapping_add(1);
    let value = encode_meta(entry.kind, flags, seq, meta);
    let new = session
        .create_object(&meta_template(uid, value))
        .map_err(p11_error)?;
    if let Err(e) = session.destroy_object(entry.meta) {
        // Keep exactly one companion; the caller may rescan and retry.
        if let Err(cleanup) = session.destroy_object(new) {
            warn!(uid, error = %cleanup, "could not remove a new metadata object after a failed update");
        }
        return Err(p11_error(e));
    }
    Ok(Entry {
        meta: new,
        flags,
        seq,
        ..*entry
    })
}

fn attr_bytes(attrs: Vec<Attribute>, wanted: AttributeType) -> Option<Vec<u8>> {
    attrs.into_iter().find_map(|a| match (a, wanted) {
        (Attribute::Id(v), AttributeType::Id)
        | (Attribute::Label(v), AttributeType::Label)
        | (Attribute::Value(v), AttributeType::Value) => Some(v),
        _ => None,
    })
}

/// What one scan of the token found.
pub(crate) struct Scan {
    pub(crate) index: HashMap<String, Entry>,
    pub(crate) records: Vec<ObjectRecord>,
}

/// Finds every gateway object on the token. Linear in the number of token objects (SoftHSM's
/// find is): called at start and after handles went stale, never per request.
pub(crate) fn scan(session: &Session) -> Result<Scan, BackendError> {
    let metas = session
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Application(META_APP.to_vec()),
        ])
        .map_err(p11_error)?;
    let mut found: HashMap<String, (ObjectHandle, ObjectKind, u8, u64, Vec<u8>)> = HashMap::new();
    for handle in metas {
        let attrs = session
            .get_attributes(handle, &[AttributeType::Label, AttributeType::Value])
            .map_err(p11_error)?;
        let id = attr_bytes(attrs.clone(), AttributeType::Label);
        let value = attr_bytes(attrs, AttributeType::Value);
        let (Some(id), Some(value)) = (id, value) else {
            warn!(handle = %handle, "metadata object without id or value; ignored");
            continue;
        };
        let Ok(uid) = String::from_utf8(id) else {
            warn!(handle = %handle, "metadata object with a non-UTF-8 id; ignored");
            continue;
        };
        let Some((kind, flags, seq, meta)) = decode_meta(&value) else {
            return Err(BackendError::Corrupt(format!(
                "metadata object of {uid} has an unknown format"
            )));
        };
        if let Some(kept) = found.get(&uid) {
            warn!(
                uid,
                "two metadata objects for one uid (interrupted update); keeping the newer"
            );
            if kept.3 >= seq {
                continue;
            }
        }
        found.insert(uid, (handle, kind, flags, seq, meta.to_vec()));
    }

    let mut material: HashMap<String, ObjectHandle> = HashMap::new();
    let key_objects = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
        ])
        .map_err(p11_error)?;
    // Private keys of key pairs, like secret keys, carry the uid as CKA_ID.
    let private_keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Token(true),
        ])
        .map_err(p11_error)?;
    let data_objects = session
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Application(MATERIAL_APP.to_vec()),
        ])
        .map_err(p11_error)?;
    let tagged = key_objects
        .into_iter()
        .chain(private_keys)
        .map(|h| (h, AttributeType::Id))
        .chain(data_objects.into_iter().map(|h| (h, AttributeType::Label)));
    for (handle, uid_attr) in tagged {
        let attrs = session
            .get_attributes(handle, &[uid_attr])
            .map_err(p11_error)?;
        let Some(uid) = attr_bytes(attrs, uid_attr).and_then(|id| String::from_utf8(id).ok())
        else {
            continue;
        };
        if !found.contains_key(&uid) {
            // Keys the gateway does not manage (or left over by an interrupted write).
            continue;
        }
        if material.insert(uid.clone(), handle).is_some() {
            warn!(
                uid,
                "two material objects for one uid; keeping the last found"
            );
        }
    }

    let mut index = HashMap::with_capacity(found.len());
    let mut records = Vec::with_capacity(found.len());
    for (uid, (meta_handle, kind, flags, seq, meta)) in found {
        let material = material.get(&uid).copied();
        match (material, flags & FLAG_TOMBSTONE != 0) {
            (None, false) => {
                // A create interrupted before its material was made, or a removal interrupted
                // after its material went: neither was acknowledged, so finish it.
                warn!(
                    uid,
                    "metadata without material (interrupted create or removal); removing it"
                );
                session.destroy_object(meta_handle).map_err(p11_error)?;
                continue;
            }
            (Some(handle), true) => {
                // A destroy interrupted after its tombstone was written: finish it, so destroyed
                // key material never outlives a restart.
                warn!(
                    uid,
                    "destroyed object still had material; destroying it now"
                );
                session.destroy_object(handle).map_err(p11_error)?;
            }
            _ => {}
        }
        let material = material.filter(|_| flags & FLAG_TOMBSTONE == 0);
        index.insert(
            uid.clone(),
            Entry {
                material,
                meta: meta_handle,
                kind,
                flags,
                seq,
            },
        );
        records.push(ObjectRecord {
            uid: uid.into(),
            kind,
            meta: meta.into(),
            version: 0,
        });
    }
    Ok(Scan { index, records })
}

/// Destroys the material, then removes the companion or turns it into a tombstone holding
/// `tombstone`. Material first: an interruption leaves metadata without material (ignored by
/// the scan), never key material the gateway no longer knows about.
pub(crate) fn destroy_objects(
    session: &Session,
    uid: &str,
    entry: &Entry,
    tombstone: Option<&[u8]>,
) -> Result<Option<Entry>, BackendError> {
    match tombstone {
        None => {
            if let Some(handle) = entry.material {
                session.destroy_object(handle).map_err(p11_error)?;
            }
            session.destroy_object(entry.meta).map_err(p11_error)?;
            Ok(None)
        }
        Some(meta) => {
            // The tombstone is written first: a crash before the material goes leaves a
            // Destroyed object whose leftover material the next scan destroys, never an object
            // that is neither live nor destroyed.
            let kept = Entry {
                material: None,
                ..*entry
            };
            let kept = replace_meta(session, uid, &kept, entry.flags | FLAG_TOMBSTONE, meta)?;
            if let Some(handle) = entry.material {
                session.destroy_object(handle).map_err(p11_error)?;
            }
            Ok(Some(kept))
        }
    }
}

/// A creation template holding secret material, wiped on drop.
pub(crate) struct ZeroizeTemplate(pub(crate) Vec<Attribute>);

impl Drop for ZeroizeTemplate {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for attr in &mut self.0 {
            match attr {
                Attribute::Value(v)
                | Attribute::PrivateExponent(v)
                | Attribute::Prime1(v)
                | Attribute::Prime2(v)
                | Attribute::Exponent1(v)
                | Attribute::Exponent2(v)
                | Attribute::Coefficient(v) => v.zeroize(),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_header_round_trips_every_kind() {
        for kind in [
            ObjectKind::SymmetricKey,
            ObjectKind::SecretData,
            ObjectKind::OpaqueObject,
            ObjectKind::Certificate,
            ObjectKind::PublicKey,
            ObjectKind::PrivateKey,
            ObjectKind::Template,
            ObjectKind::SplitKey,
            ObjectKind::PgpKey,
            ObjectKind::CertificateRequest,
        ] {
            let value = encode_meta(kind, FLAG_NOT_EXTRACTABLE, 7, b"blob");
            assert_eq!(
                decode_meta(&value),
                Some((kind, FLAG_NOT_EXTRACTABLE, 7, b"blob".as_slice()))
            );
        }
    }

    #[test]
    fn foreign_meta_values_are_rejected() {
        assert_eq!(decode_meta(b"KM2\x01\x00\0\0\0\0\0\0\0\0"), None);
        assert_eq!(decode_meta(b"KM1\x7f\x00\0\0\0\0\0\0\0\0"), None);
        assert_eq!(decode_meta(b"KM1\x01\x00\0\0\0"), None);
        assert!(decode_meta(b"KM1\x01\x00\0\0\0\0\0\0\0\0").is_some());
        assert_eq!(decode_meta(b""), None);
    }
}
