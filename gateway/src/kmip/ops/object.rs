//! What every operation needs of a stored object: looking it up, its state, its kind, and a new
//! object with the attributes only the server sets.

use super::{OpContext, OpError, Ops};
pub(super) use crate::kmip::store::object_type_of;
use crate::kmip::store::{AttributeView, ObjectDraft, StoredObject};
use bytes::Bytes;
use kmip_backends::ObjectKind;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

impl Ops {
    /// Looks up an object the caller addresses; destroyed objects are found (their attributes
    /// remain readable).
    pub(super) fn object(&self, uid: &str) -> Result<Arc<StoredObject>, OpError> {
        self.store.get(uid).ok_or(OpError::NotFound)
    }

    /// Looks up an object the caller addresses that is not destroyed.
    pub(super) fn live_object(&self, uid: &str) -> Result<Arc<StoredObject>, OpError> {
        let obj = self.object(uid)?;
        if is_destroyed(&obj) {
            return Err(OpError::Destroyed);
        }
        Ok(obj)
    }

    /// A new object of `ctx.user` with `attrs` and the attributes only the server sets.
    pub(super) fn new_object(
        &self,
        ctx: &OpContext<'_>,
        object_type: ObjectType,
        mut attrs: Vec<Attribute>,
    ) -> Result<ObjectDraft, OpError> {
        let uid = new_uid();
        attrs.push(Attribute::text(tags::UNIQUE_IDENTIFIER, &uid));
        attrs.push(Attribute::enumeration(tags::OBJECT_TYPE, object_type));
        attrs.push(Attribute::enumeration(tags::STATE, State::PreActive));
        attrs.push(Attribute::datetime(tags::INITIAL_DATE, ctx.now));
        attrs.push(Attribute::datetime(tags::LAST_CHANGE_DATE, ctx.now));
        attrs.push(Attribute::datetime(tags::ORIGINAL_CREATION_DATE, ctx.now));
        if !attrs.iter().any(|a| a.is(tags::FRESH)) {
            attrs.push(Attribute::boolean(tags::FRESH, true));
        }
        // An activation date in the past activates the object at once.
        let mut obj = ObjectDraft {
            uid,
            kind: kind_of(object_type)?,
            owner: ctx.user.to_owned(),
            attributes: attrs,
            version: 1,
        };
        if let Some(d) = obj
            .first(tags::ACTIVATION_DATE)
            .and_then(Attribute::as_datetime)
        {
            if d <= ctx.now {
                obj.set(tags::STATE, Value::Enumeration(State::Active.to_u32()));
            }
        }
        Ok(obj)
    }
}

/// The object's State; an object without one has never been activated.
pub(super) fn state_of(obj: &impl AttributeView) -> State {
    obj.enum_of(tags::STATE)
        .map(State::from_u32)
        .unwrap_or(State::PreActive)
}

pub(super) fn state_name(s: State) -> &'static str {
    match s {
        State::PreActive => "Pre-Active",
        State::Active => "Active",
        State::Deactivated => "Deactivated",
        State::Compromised => "Compromised",
        State::Destroyed => "Destroyed",
        State::DestroyedCompromised => "Destroyed Compromised",
        State::Other(_) => "in an unknown state",
    }
}

pub(super) fn is_destroyed(obj: &StoredObject) -> bool {
    matches!(
        state_of(obj),
        State::Destroyed | State::DestroyedCompromised
    )
}

fn kind_of(t: ObjectType) -> Result<ObjectKind, OpError> {
    Ok(match t {
        ObjectType::SymmetricKey => ObjectKind::SymmetricKey,
        ObjectType::SecretData => ObjectKind::SecretData,
        ObjectType::OpaqueObject => ObjectKind::OpaqueObject,
        ObjectType::Certificate => ObjectKind::Certificate,
        ObjectType::PublicKey => ObjectKind::PublicKey,
        ObjectType::PrivateKey => ObjectKind::PrivateKey,
        ObjectType::Template => ObjectKind::Template,
        ObjectType::SplitKey => ObjectKind::SplitKey,
        ObjectType::PgpKey => ObjectKind::PgpKey,
        ObjectType::CertificateRequest => ObjectKind::CertificateRequest,
        _ => {
            return Err(OpError::FeatureNotSupported(
                "this Object Type is not stored here".into(),
            ))
        }
    })
}

fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The SHA-256 Digest attribute of `material` in `format`.
pub(super) fn digest_attr(material: &[u8], format: KeyFormatType) -> Attribute {
    let d = Digest {
        hashing_algorithm: HashingAlgorithm::Sha256,
        digest_value: Bytes::copy_from_slice(&Sha256::digest(material)),
        key_format_type: Some(format),
    };
    Attribute::new(tags::DIGEST, d.to_value())
}
