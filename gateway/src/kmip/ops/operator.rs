//! Key administration by the operator (the admin listener's `/keys`): selecting objects, and
//! Revoke and Destroy run through the very handlers a KMIP client's requests run, so the state
//! machine, the durable write, crypto-shredding and the Locate cache's invalidation cannot
//! differ. Only the policy is not asked: the admin token is the operator's authority.

use super::object::{object_type_of, state_of};
use super::{OpContext, OpError, Ops};
use crate::kmip::access::facts;
use crate::kmip::store::StoredObject;
use kmip_wire::model::{
    ObjectType, ProtocolVersion, RevocationReason, RevocationReasonCode, RevokeRequest, State,
    UidRequest,
};
use std::sync::Arc;

/// The version the operator's requests are run in (it decides nothing for Revoke and Destroy).
const OPERATOR_VERSION: ProtocolVersion = ProtocolVersion { major: 2, minor: 1 };

/// Which objects an operator selects; every field given must match.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyFilter {
    pub owner: Option<String>,
    pub name: Option<String>,
    pub group: Option<String>,
    pub state: Option<State>,
    pub object_type: Option<ObjectType>,
}

impl KeyFilter {
    fn matches(&self, obj: &StoredObject) -> bool {
        let f = facts(obj);
        self.owner.as_ref().is_none_or(|o| &f.owner == o)
            && self.name.as_ref().is_none_or(|n| f.names.contains(n))
            && self
                .group
                .as_ref()
                .is_none_or(|g| f.object_groups.contains(g))
            && self.state.is_none_or(|s| state_of(obj) == s)
            && self
                .object_type
                .is_none_or(|t| object_type_of(obj.kind) == t)
    }
}

/// One page of selected objects, in identifier order.
pub(crate) struct KeyPage {
    pub objects: Vec<Arc<StoredObject>>,
    /// More objects match after the last one of this page.
    pub more: bool,
}

/// What an operator's Destroy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DestroyStep {
    /// The object was Active: revoked first, as KMIP allows no Active → Destroyed transition.
    Revoke,
    Destroy,
}

impl Ops {
    /// Objects matching `filter` with an identifier after `after`, at most `limit` of them.
    pub(crate) fn operator_select(
        &self,
        filter: &KeyFilter,
        after: Option<&str>,
        limit: usize,
    ) -> KeyPage {
        let mut objects: Vec<Arc<StoredObject>> = self
            .store
            .snapshot()
            .into_iter()
            .filter(|o| after.is_none_or(|a| &*o.uid > a) && filter.matches(o))
            .collect();
        objects.sort_by(|a, b| a.uid.cmp(&b.uid));
        let more = objects.len() > limit;
        objects.truncate(limit);
        KeyPage { objects, more }
    }

    /// One object, destroyed ones included (their attributes remain).
    pub(crate) fn operator_object(&self, uid: &str) -> Option<Arc<StoredObject>> {
        self.store.get(uid)
    }

    /// KMIP Revoke of `uid` on the operator's behalf.
    pub(crate) async fn operator_revoke(
        &self,
        operator: &str,
        now: i64,
        uid: &str,
        reason: RevocationReason,
        compromise_occurrence_date: Option<i64>,
    ) -> Result<(), OpError> {
        let mut ctx = OpContext::new(operator, OPERATOR_VERSION, now);
        self.revoke(
            &mut ctx,
            RevokeRequest {
                unique_identifier: Some(uid.to_owned()),
                revocation_reason: reason,
                compromise_occurrence_date,
            },
        )
        .await
        .map(drop)
    }

    /// KMIP Destroy of `uid` on the operator's behalf, revoked first (with `reason`, Cessation
    /// of Operation if none) when it is Active. Returns each KMIP operation run with its outcome,
    /// in order (the audit trail records each); the last one's outcome is the answer.
    pub(crate) async fn operator_destroy(
        &self,
        operator: &str,
        now: i64,
        uid: &str,
        reason: Option<RevocationReason>,
    ) -> Vec<(DestroyStep, Result<(), OpError>)> {
        let mut steps = Vec::new();
        let active = match self.live_object(uid) {
            Ok(obj) => state_of(&obj) == State::Active,
            Err(e) => return vec![(DestroyStep::Destroy, Err(e))],
        };
        if active {
            let reason = reason.unwrap_or(RevocationReason {
                code: RevocationReasonCode::CessationOfOperation,
                message: None,
            });
            let revoked = self.operator_revoke(operator, now, uid, reason, None).await;
            let failed = revoked.is_err();
            steps.push((DestroyStep::Revoke, revoked));
            if failed {
                return steps;
            }
        }
        let mut ctx = OpContext::new(operator, OPERATOR_VERSION, now);
        let destroyed = self
            .destroy(
                &mut ctx,
                UidRequest {
                    unique_identifier: Some(uid.to_owned()),
                },
            )
            .await
            .map(drop);
        steps.push((DestroyStep::Destroy, destroyed));
        steps
    }
}
