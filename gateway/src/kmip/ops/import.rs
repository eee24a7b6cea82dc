//! Import (KMIP 1.4 / 2.x): an object under the Unique Identifier and attributes it had
//! elsewhere (what Export answered). It is registered as Register would (same material checks,
//! Names, quotas, backend), and the attributes only a server sets keep the supplied values, as
//! the specification asks, except those derived from the material or the identity.

use super::attribute_rules::{server_set, CREATE_ONLY};
use super::{certificate, OpContext, OpError, Ops};
use crate::kmip::store::ObjectDraft;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Value};

/// Server attributes an Import never takes from the request: the server derives them from the
/// request's identifier, object type or material.
const DERIVED_HERE: &[Tag] = &[
    tags::UNIQUE_IDENTIFIER,
    tags::OBJECT_TYPE,
    tags::DIGEST,
    tags::KEY_FORMAT_TYPE,
];

/// What makes a Register an Import: the identifier, and the server attributes supplied.
pub(super) struct Imported {
    uid: String,
    kept: Vec<Attribute>,
}

impl Imported {
    /// Gives `obj` the imported identifier and the supplied server attributes.
    pub(super) fn apply(self, obj: &mut ObjectDraft) {
        obj.uid = self.uid;
        obj.set(tags::UNIQUE_IDENTIFIER, Value::TextString(obj.uid.clone()));
        for a in self.kept {
            if let Some(tag) = a.tag() {
                obj.set(tag, a.value);
            }
        }
    }
}

impl Ops {
    pub(super) async fn import(
        &self,
        ctx: &mut OpContext<'_>,
        r: ImportRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = r.unique_identifier;
        if uid.is_empty() {
            return Err(OpError::InvalidField("an empty Unique Identifier".into()));
        }
        if r.key_wrap_type.is_some() {
            return Err(OpError::FeatureNotSupported(
                "wrapped objects cannot be imported: import the object unwrapped".into(),
            ));
        }
        if self.store.get(&uid).is_some() {
            // Replacing would destroy the object before its successor is durable, and an Undo
            // batch could not give it back: refused rather than risk losing a key.
            return Err(if r.replace_existing == Some(true) {
                OpError::FeatureNotSupported(format!(
                    "Replace Existing: an object {uid} exists; Destroy it first, then Import"
                ))
            } else {
                OpError::InvalidField(format!("an object {uid} exists already"))
            });
        }
        let (kept, attributes): (Vec<Attribute>, Vec<Attribute>) =
            r.attributes.into_iter().partition(|a| {
                a.tag()
                    .is_some_and(|t| server_set(t) && !CREATE_ONLY.contains(&t))
            });
        let mut server = Vec::with_capacity(kept.len());
        for a in kept {
            let Some(tag) = a.tag() else { continue };
            if DERIVED_HERE.contains(&tag) || certificate::DERIVED.contains(&tag) {
                continue;
            }
            if tag == tags::STATE {
                match a.as_enum::<State>() {
                    Some(
                        State::PreActive | State::Active | State::Deactivated | State::Compromised,
                    ) => {}
                    _ => {
                        return Err(OpError::InvalidField(
                            "a destroyed object cannot be imported (State)".into(),
                        ))
                    }
                }
            }
            server.push(a);
        }
        self.register_as(
            ctx,
            RegisterRequest {
                templates: Vec::new(),
                object_type: r.object_type,
                attributes,
                object: r.object,
            },
            Some(Imported { uid, kept: server }),
        )
        .await
    }
}
