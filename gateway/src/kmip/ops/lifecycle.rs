//! The object state machine: Activate, Revoke, Destroy, ReKey (a replacement key linked both
//! ways) and Check.

use super::attribute_rules::server_set;
use super::object::{state_name, state_of};
use super::{OpContext, OpError, Ops};
use crate::kmip::store::AttributeView;
use kmip_backends::ObjectKind;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;

impl Ops {
    pub(super) async fn activate(
        &self,
        ctx: &mut OpContext<'_>,
        r: UidRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        self.live_object(&uid)?;
        let now = ctx.now;
        self.update(ctx, &uid, |o| {
            let s = state_of(o);
            if s != State::PreActive {
                return Err(OpError::WrongState(state_name(s)));
            }
            o.set(tags::STATE, Value::Enumeration(State::Active.to_u32()));
            o.set(tags::ACTIVATION_DATE, Value::DateTime(now));
            o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
            Ok(())
        })
        .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    pub(super) async fn revoke(
        &self,
        ctx: &mut OpContext<'_>,
        r: RevokeRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        self.live_object(&uid)?;
        let now = ctx.now;
        let compromise = matches!(
            r.revocation_reason.code,
            RevocationReasonCode::KeyCompromise | RevocationReasonCode::CaCompromise
        );
        self.update(ctx, &uid, |o| {
            if compromise {
                o.set(tags::STATE, Value::Enumeration(State::Compromised.to_u32()));
                o.set(tags::COMPROMISE_DATE, Value::DateTime(now));
                o.set(
                    tags::COMPROMISE_OCCURRENCE_DATE,
                    Value::DateTime(r.compromise_occurrence_date.unwrap_or(now)),
                );
            } else {
                let s = state_of(o);
                if s != State::Active {
                    return Err(OpError::WrongState(state_name(s)));
                }
                o.set(tags::STATE, Value::Enumeration(State::Deactivated.to_u32()));
                o.set(tags::DEACTIVATION_DATE, Value::DateTime(now));
            }
            o.set(tags::REVOCATION_REASON, r.revocation_reason.to_value());
            o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
            Ok(())
        })
        .await?;
        self.end_streams_of(&uid);
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    pub(super) async fn destroy(
        &self,
        ctx: &mut OpContext<'_>,
        r: UidRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        self.live_object(&uid)?;
        let now = ctx.now;
        self.store
            .destroy(&uid, |o| {
                let next = destroyed_state(o)?;
                o.set(tags::STATE, Value::Enumeration(next.to_u32()));
                o.set(tags::DESTROY_DATE, Value::DateTime(now));
                o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
                Ok::<(), OpError>(())
            })
            .await?;
        self.end_streams_of(&uid);
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    /// The checks Destroy makes before it writes: the object is there, alive, and in a state
    /// Destroy leaves. An Undo batch runs them when it answers a Destroy it defers.
    pub(super) fn check_destroyable(&self, uid: &str) -> Result<(), OpError> {
        let object = self.live_object(uid)?;
        destroyed_state(&object).map(|_| ())
    }

    pub(super) async fn rekey(
        &self,
        ctx: &mut OpContext<'_>,
        r: ReKeyRequest,
    ) -> Result<UidResponse, OpError> {
        let old_uid = ctx.uid(r.unique_identifier)?;
        let old = self.live_object(&old_uid)?;
        if old.kind != ObjectKind::SymmetricKey {
            return Err(OpError::FeatureNotSupported(
                "ReKey of Symmetric Keys only".into(),
            ));
        }
        // Only attributes are carried: a vault written before they were checked may hold things
        // that are none, which would fail the replacement's Create.
        let carried: Vec<Attribute> = old
            .attributes()
            .filter(|a| a.name.is_attribute())
            .filter(|a| match a.tag() {
                Some(t) => {
                    !server_set(t)
                        && ![
                            tags::NAME,
                            tags::LINK,
                            tags::ACTIVATION_DATE,
                            tags::DEACTIVATION_DATE,
                            tags::REVOCATION_REASON,
                            tags::COMPROMISE_OCCURRENCE_DATE,
                        ]
                        .contains(&t)
                }
                None => true,
            })
            .chain(old.first(tags::CRYPTOGRAPHIC_ALGORITHM))
            .chain(old.first(tags::CRYPTOGRAPHIC_LENGTH))
            .collect();
        let mut req = CreateRequest {
            templates: Vec::new(),
            object_type: ObjectType::SymmetricKey,
            attributes: carried,
        };
        for a in r.attributes {
            req.attributes.retain(|x| x.name != a.name);
            req.attributes.push(a);
        }
        let created = self.create(ctx, req).await?;
        let new_uid = created.unique_identifier;
        let names: Vec<Attribute> = old.all(tags::NAME).collect();
        let now = ctx.now;
        let link_back = Link {
            link_type: LinkType::ReplacedObjectLink,
            linked_object_identifier: old_uid.clone(),
        };
        self.update(ctx, &new_uid, |o| {
            o.attributes.extend(names.iter().cloned());
            o.attributes.push(Attribute::link(&link_back));
            Ok(())
        })
        .await?;
        let link_fwd = Link {
            link_type: LinkType::ReplacementObjectLink,
            linked_object_identifier: new_uid.clone(),
        };
        self.update(ctx, &old_uid, |o| {
            o.attributes.retain(|a| !a.is(tags::NAME));
            o.attributes.push(Attribute::link(&link_fwd));
            o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
            Ok(())
        })
        .await?;
        ctx.id_placeholder = Some(new_uid.clone());
        Ok(UidResponse {
            unique_identifier: new_uid,
        })
    }

    pub(super) fn check(
        &self,
        ctx: &mut OpContext<'_>,
        r: CheckRequest,
    ) -> Result<CheckResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.live_object(&uid)?;
        if let Some(wanted) = r.cryptographic_usage_mask {
            let have = obj
                .first(tags::CRYPTOGRAPHIC_USAGE_MASK)
                .and_then(|a| a.as_int())
                .unwrap_or(0);
            if have & wanted != wanted {
                return Err(OpError::IncompatibleUsageMask);
            }
        }
        ctx.id_placeholder = Some(uid.clone());
        Ok(CheckResponse {
            unique_identifier: Some(uid),
            ..CheckResponse::default()
        })
    }
}

/// The state Destroy moves `o` to, or why it may not be destroyed now.
fn destroyed_state(o: &impl AttributeView) -> Result<State, OpError> {
    match state_of(o) {
        State::PreActive | State::Deactivated => Ok(State::Destroyed),
        State::Compromised => Ok(State::DestroyedCompromised),
        s => Err(OpError::WrongState(state_name(s))),
    }
}
