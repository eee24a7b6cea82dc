//! A KMIP proxy's view of lifecycle changes made on its upstream by others (issue 18): a key
//! revoked or destroyed on the key manager's console or by another of its clients. The proxy's
//! refresher (`crate::upstream::refresh`) reads [`UPSTREAM_LIFECYCLE`] of each mapped object
//! and hands it here; a change is written through the store like an operation's (durable in the
//! upstream map first; indexes, quotas and the Locate cache follow).
//!
//! Only what makes a key **less usable** is taken, so the upstream's view never overrides the
//! gateway's lifecycle: the proxy activates every key upstream when it makes it and keeps the
//! real state itself (a Pre-Active or gateway-revoked key is Active upstream), so an upstream
//! Active is no news. Taken: Deactivated or Compromised upstream while the gateway's state is
//! earlier (its dates and Revocation Reason come along); Destroyed upstream, or the object gone
//! (Item Not Found), makes it Destroyed here (Destroyed Compromised when either side says
//! compromised). Names, Object Groups and the other attributes are the gateway's own.

use super::object::{is_destroyed, state_of};
use super::{OpError, Ops};
use crate::kmip::store::ObjectDraft;
use kmip_wire::model::{Attribute, KmipEnum, State};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Value};

/// The attributes the refresher reads upstream: the state and what a revocation or a
/// destruction sets with it.
pub const UPSTREAM_LIFECYCLE: &[Tag] = &[
    tags::STATE,
    tags::DEACTIVATION_DATE,
    tags::COMPROMISE_DATE,
    tags::COMPROMISE_OCCURRENCE_DATE,
    tags::REVOCATION_REASON,
    tags::DESTROY_DATE,
];

/// What the upstream says of one mapped object.
#[derive(Debug, Clone)]
pub enum UpstreamLifecycle {
    /// The upstream no longer has it (Item Not Found, Object Not Found, Object Destroyed).
    Gone,
    /// Its lifecycle attributes (those of [`UPSTREAM_LIFECYCLE`] it reported).
    Seen(Vec<Attribute>),
}

/// What applying the upstream's view did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    Unchanged,
    /// The object is now Deactivated or Compromised, as upstream.
    Revoked(State),
    /// The object is now destroyed (its material is gone upstream).
    Destroyed,
}

/// How far along the lifecycle a state is: the upstream's state is taken only when further.
fn rank(s: State) -> u8 {
    match s {
        State::PreActive | State::Other(_) => 0,
        State::Active => 1,
        State::Deactivated => 2,
        State::Compromised => 3,
        State::Destroyed => 4,
        State::DestroyedCompromised => 5,
    }
}

fn upstream_state(seen: &[Attribute]) -> Option<State> {
    seen.iter()
        .find(|a| a.is(tags::STATE))
        .and_then(|a| a.as_enum::<State>())
}

/// Copies the upstream's value of each of `kept` it reported, else sets `now` for `dated`.
fn take(o: &mut ObjectDraft, seen: &[Attribute], kept: &[Tag], dated: Option<Tag>, now: i64) {
    for tag in kept {
        if let Some(a) = seen.iter().find(|a| a.is(*tag)) {
            o.set(*tag, a.value.clone());
        }
    }
    if let Some(tag) = dated {
        if o.first(tag).is_none() {
            o.set(tag, Value::DateTime(now));
        }
    }
}

/// Marks `o` Deactivated or Compromised as the upstream reported, if that is further than its
/// state; whether it changed.
fn revoke_as_upstream(o: &mut ObjectDraft, seen: &[Attribute], to: State, now: i64) -> bool {
    if rank(to) <= rank(state_of(o)) {
        return false;
    }
    let dated = if to == State::Compromised {
        take(
            o,
            seen,
            &[tags::COMPROMISE_DATE, tags::COMPROMISE_OCCURRENCE_DATE],
            Some(tags::COMPROMISE_DATE),
            now,
        );
        None
    } else {
        Some(tags::DEACTIVATION_DATE)
    };
    take(
        o,
        seen,
        &[tags::DEACTIVATION_DATE, tags::REVOCATION_REASON],
        dated,
        now,
    );
    o.set(tags::STATE, Value::Enumeration(to.to_u32()));
    o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
    true
}

/// Marks `o` destroyed: Destroyed Compromised when it or the upstream says compromised.
fn destroy_as_upstream(o: &mut ObjectDraft, seen: &[Attribute], now: i64) {
    let compromised = state_of(o) == State::Compromised
        || upstream_state(seen) == Some(State::DestroyedCompromised);
    if compromised {
        take(
            o,
            seen,
            &[
                tags::COMPROMISE_DATE,
                tags::COMPROMISE_OCCURRENCE_DATE,
                tags::REVOCATION_REASON,
            ],
            Some(tags::COMPROMISE_DATE),
            now,
        );
    }
    let next = if compromised {
        State::DestroyedCompromised
    } else {
        State::Destroyed
    };
    take(
        o,
        seen,
        &[tags::DESTROY_DATE],
        Some(tags::DESTROY_DATE),
        now,
    );
    o.set(tags::STATE, Value::Enumeration(next.to_u32()));
    o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
}

impl Ops {
    /// Applies what the upstream says of the gateway's object `uid` (see the module's rules).
    /// A destruction goes through the backend's destroy (a KMIP proxy finds the upstream object
    /// gone and writes the tombstone), and ends the key's multi-part streams, like Destroy.
    pub async fn apply_upstream_lifecycle(
        &self,
        uid: &str,
        seen: UpstreamLifecycle,
        now: i64,
    ) -> Result<Refreshed, OpError> {
        let Some(current) = self.store.get(uid) else {
            return Ok(Refreshed::Unchanged);
        };
        if is_destroyed(&current) {
            return Ok(Refreshed::Unchanged);
        }
        // Only an explicit answer destroys: an upstream that reports no State (it does not
        // keep one, or did not understand the names asked) says nothing of the key.
        let (gone, attrs) = match seen {
            UpstreamLifecycle::Gone => (true, Vec::new()),
            UpstreamLifecycle::Seen(attrs) => (
                matches!(
                    upstream_state(&attrs),
                    Some(State::Destroyed | State::DestroyedCompromised)
                ),
                attrs,
            ),
        };
        if gone {
            let destroyed = self
                .store
                .destroy(uid, |o| {
                    if matches!(
                        state_of(&*o),
                        State::Destroyed | State::DestroyedCompromised
                    ) {
                        // A client's Destroy came first.
                        return Err(OpError::Destroyed);
                    }
                    destroy_as_upstream(o, &attrs, now);
                    Ok(())
                })
                .await;
            return match destroyed {
                Ok(_) => {
                    self.end_streams_of(uid);
                    Ok(Refreshed::Destroyed)
                }
                Err(OpError::Destroyed) => Ok(Refreshed::Unchanged),
                Err(e) => Err(e),
            };
        }
        let Some(to @ (State::Deactivated | State::Compromised)) = upstream_state(&attrs) else {
            return Ok(Refreshed::Unchanged);
        };
        if rank(to) <= rank(state_of(&current)) {
            return Ok(Refreshed::Unchanged);
        }
        let (_, changed) = self
            .store
            .update(uid, |o| {
                Ok::<bool, OpError>(revoke_as_upstream(o, &attrs, to, now))
            })
            .await?;
        if !changed {
            return Ok(Refreshed::Unchanged);
        }
        self.end_streams_of(uid);
        Ok(Refreshed::Revoked(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_backends::ObjectKind;
    use kmip_wire::model::{RevocationReason, RevocationReasonCode};

    fn object(state: State) -> ObjectDraft {
        ObjectDraft {
            uid: "g-1".into(),
            kind: ObjectKind::SymmetricKey,
            owner: "tenant".into(),
            attributes: vec![Attribute::enumeration(tags::STATE, state)],
            version: 1,
        }
    }

    fn revoked_upstream(state: State) -> Vec<Attribute> {
        vec![
            Attribute::enumeration(tags::STATE, state),
            Attribute::datetime(tags::DEACTIVATION_DATE, 500),
            Attribute::new(
                tags::REVOCATION_REASON,
                RevocationReason {
                    code: RevocationReasonCode::KeyCompromise,
                    message: None,
                }
                .to_value(),
            ),
        ]
    }

    #[test]
    fn an_upstream_revocation_moves_the_state_forward_only() {
        for (gateway, upstream, taken) in [
            (State::Active, State::Deactivated, true),
            (State::PreActive, State::Deactivated, true),
            (State::Active, State::Compromised, true),
            (State::Deactivated, State::Compromised, true),
            (State::Deactivated, State::Deactivated, false),
            (State::Compromised, State::Deactivated, false),
        ] {
            let mut o = object(gateway);
            let changed = revoke_as_upstream(&mut o, &revoked_upstream(upstream), upstream, 900);
            assert_eq!(changed, taken, "{gateway:?} ← {upstream:?}");
            let expected = if taken { upstream } else { gateway };
            assert_eq!(state_of(&o), expected);
            if taken {
                assert_eq!(
                    o.first(tags::DEACTIVATION_DATE)
                        .and_then(Attribute::as_datetime),
                    Some(500),
                    "the upstream's date"
                );
                assert!(o.first(tags::REVOCATION_REASON).is_some());
                assert_eq!(
                    o.first(tags::LAST_CHANGE_DATE)
                        .and_then(Attribute::as_datetime),
                    Some(900)
                );
            }
        }
        // Compromised without a date upstream: the time it was seen.
        let mut o = object(State::Active);
        let seen = vec![Attribute::enumeration(tags::STATE, State::Compromised)];
        assert!(revoke_as_upstream(&mut o, &seen, State::Compromised, 900));
        assert_eq!(
            o.first(tags::COMPROMISE_DATE)
                .and_then(Attribute::as_datetime),
            Some(900)
        );
    }

    #[test]
    fn a_destruction_upstream_keeps_a_compromise_on_either_side() {
        for (gateway, upstream, expected) in [
            (State::Active, None, State::Destroyed),
            (State::PreActive, Some(State::Destroyed), State::Destroyed),
            (State::Compromised, None, State::DestroyedCompromised),
            (
                State::Active,
                Some(State::DestroyedCompromised),
                State::DestroyedCompromised,
            ),
        ] {
            let mut o = object(gateway);
            let mut seen = upstream
                .map(|s| vec![Attribute::enumeration(tags::STATE, s)])
                .unwrap_or_default();
            seen.push(Attribute::datetime(tags::DESTROY_DATE, 700));
            destroy_as_upstream(&mut o, &seen, 900);
            assert_eq!(state_of(&o), expected, "{gateway:?} ← {upstream:?}");
            assert_eq!(
                o.first(tags::DESTROY_DATE).and_then(Attribute::as_datetime),
                Some(700)
            );
        }
    }
}
