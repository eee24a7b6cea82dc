//! KMIP operation semantics over the [`Store`]: the operation layer ([`Ops`]), the context of one
//! batch item, authorization before anything runs, and the one table of operations
//! (`table`) that dispatch, authorization, the audit trail and Query read. The operations
//! themselves live in one file per KMIP function.

mod adjust;
mod adopt;
mod archive;
mod asym;
mod asynchronous;
mod attribute_order;
mod attribute_rules;
mod attributes;
mod batch;
mod certificate;
mod certify;
mod create;
mod crypto;
mod digest;
mod error;
mod export;
mod get;
mod import;
mod interop;
mod key_wrap;
mod lifecycle;
mod locate;
mod object;
mod operator;
mod pkcs11;
mod quantum_safe;
mod query;
mod rekey_pair;
mod server_attributes;
mod server_info;
mod split_key;
mod split_material;
mod stream;
mod table;
mod template;
mod unique_names;
mod upstream_state;

pub use adopt::{AdoptTarget, Adoption, UpstreamObject};
pub(crate) use asym::der_of_transparent_key;
pub use batch::{DestroyFailed, UndoIncomplete, UndoJournal};
pub use create::symmetric_key_spec;
pub use error::OpError;
pub(crate) use interop::audit_note;
pub(crate) use key_wrap::encrypt_wrapping;
pub(crate) use operator::{DestroyStep, KeyFilter};
pub use query::{SUPPORTED_OBJECT_TYPES, SUPPORTED_VERSIONS, VENDOR_IDENTIFICATION};
pub(crate) use split_material::{decode_material, encode_material, SplitGroup, REGISTERED};
pub use table::{response_uids, target_uid};
pub use upstream_state::{Refreshed, UpstreamLifecycle, UPSTREAM_LIFECYCLE};

use crate::config::LocateCacheConfig;
use crate::config::{LimitsConfig, DEFAULT_MAX_LOCATE_RESULTS, DEFAULT_MAX_OBJECTS_PER_USER};
use crate::kmip::access::{facts, Access};
use crate::kmip::locate_cache::LocateCache;
use crate::kmip::store::{NoSuchObject, ObjectDraft, Store, Written};
use kmip_policy::{Decision, DenyReason, OperationKind};
use kmip_wire::model::{ProtocolVersion, RequestPayload, ResponsePayload};
use std::sync::Arc;
use unique_names::NameLocks;

/// A write the store could not make because the object is gone: answered as a missing object.
impl From<NoSuchObject> for OpError {
    fn from(_: NoSuchObject) -> OpError {
        OpError::NotFound
    }
}

/// Who asks, in which version, with the batch's ID Placeholder.
pub struct OpContext<'a> {
    pub user: &'a str,
    pub version: ProtocolVersion,
    /// The Unique Identifier produced by an earlier item of the same batch, used when an item
    /// omits its own.
    pub id_placeholder: Option<String>,
    pub now: i64,
    /// The writes the current item made, in order: what an Undo batch may take back.
    written: Vec<Written>,
}

impl<'a> OpContext<'a> {
    pub fn new(user: &'a str, version: ProtocolVersion, now: i64) -> OpContext<'a> {
        OpContext {
            user,
            version,
            id_placeholder: None,
            now,
            written: Vec::new(),
        }
    }

    fn uid(&self, given: Option<String>) -> Result<String, OpError> {
        given
            .or_else(|| self.id_placeholder.clone())
            .ok_or_else(|| OpError::MissingData("Unique Identifier".into()))
    }
}

/// The operation layer.
pub struct Ops {
    pub store: Arc<Store>,
    pub access: Arc<Access>,
    locate_cache: LocateCache,
    name_locks: NameLocks,
    /// `limits.max_locate_results`: most identifiers one Locate returns.
    max_locate_results: usize,
    /// `limits.max_objects_per_user`: most live objects one user may own.
    max_objects_per_user: usize,
    /// The CA that signs Certify's certificates; without one Certify is refused.
    issuing_ca: Option<Arc<crate::tooling::pki::IssuingCa>>,
    /// The open multi-part Encrypt and Decrypt streams.
    streams: stream::Streams,
    /// The backend's adoption of objects its upstream held before (a KMIP proxy's only).
    adoption: Option<Arc<dyn Adoption>>,
}

impl Ops {
    pub fn new(store: Arc<Store>, access: Arc<Access>, locate_cache: LocateCacheConfig) -> Ops {
        let locate_cache = LocateCache::new(
            locate_cache.max_entries,
            locate_cache.max_bytes,
            store.generations().clone(),
        );
        Ops {
            store,
            access,
            locate_cache,
            name_locks: NameLocks::new(),
            max_locate_results: DEFAULT_MAX_LOCATE_RESULTS,
            max_objects_per_user: DEFAULT_MAX_OBJECTS_PER_USER,
            issuing_ca: None,
            streams: stream::Streams::default(),
            adoption: None,
        }
    }

    /// Applies the configured result and object limits (the defaults otherwise).
    pub fn with_limits(mut self, limits: &LimitsConfig) -> Ops {
        self.max_locate_results = limits.max_locate_results;
        self.max_objects_per_user = limits.max_objects_per_user;
        self
    }

    /// The CA that signs the certificates Certify issues.
    pub fn with_issuing_ca(mut self, ca: Arc<crate::tooling::pki::IssuingCa>) -> Ops {
        self.issuing_ca = Some(ca);
        self
    }

    /// The policy's decision on this request, before it runs. An object the caller may not see
    /// is answered exactly as a missing one. Fails closed: an operation the policy has no name
    /// for, or whose object cannot be determined, is refused, never let through undecided.
    fn authorize(&self, ctx: &OpContext<'_>, payload: &RequestPayload) -> Result<(), OpError> {
        let entry = table::entry(payload.operation()).ok_or(OpError::OperationNotSupported)?;
        let op = entry.policy;
        let current = self.access.current();
        let policy = &current.1;
        let id = policy.identity(ctx.user);
        let decision = match op.kind() {
            OperationKind::Global => policy.decide_global(&id, op),
            OperationKind::Object => {
                let Some(given) = entry.target.uid_in(payload) else {
                    return Err(OpError::PermissionDenied(format!(
                        "the object {op} acts on cannot be determined"
                    )));
                };
                return self.decide_on(ctx, op, &ctx.uid(given.clone())?);
            }
        };
        decided(ctx, op, decision)
    }

    /// The policy's decision on `op` at the object `uid`: the request's own object, or a second
    /// one it uses (the wrapping key of a Get), answered alike.
    fn decide_on(
        &self,
        ctx: &OpContext<'_>,
        op: kmip_policy::Operation,
        uid: &str,
    ) -> Result<(), OpError> {
        let current = self.access.current();
        let policy = &current.1;
        let obj = self.object(uid)?;
        let decision = policy.decide(&policy.identity(ctx.user), op, &facts(&obj));
        decided(ctx, op, decision)
    }

    /// A durable write to one object, recorded for an Undo batch.
    async fn update<R>(
        &self,
        ctx: &mut OpContext<'_>,
        uid: &str,
        change: impl FnMut(&mut ObjectDraft) -> Result<R, OpError>,
    ) -> Result<R, OpError> {
        let (written, r) = self.store.update(uid, change).await?;
        ctx.written.push(written);
        Ok(r)
    }

    pub async fn execute(
        &self,
        ctx: &mut OpContext<'_>,
        payload: RequestPayload,
    ) -> Result<ResponsePayload, OpError> {
        self.authorize(ctx, &payload)?;
        ctx.written.clear();
        self.run(ctx, payload).await
    }

    /// Runs an authorized request: the handler of its row in the table.
    async fn run(
        &self,
        ctx: &mut OpContext<'_>,
        payload: RequestPayload,
    ) -> Result<ResponsePayload, OpError> {
        let entry = table::entry(payload.operation()).ok_or(OpError::OperationNotSupported)?;
        (entry.run)(self, ctx, payload).await
    }
}

/// A policy decision as the answer to the request: an object the caller may not see is
/// answered exactly as a missing one.
fn decided(
    ctx: &OpContext<'_>,
    op: kmip_policy::Operation,
    decision: Decision,
) -> Result<(), OpError> {
    match decision {
        Decision::Allow => Ok(()),
        Decision::Deny(DenyReason::Invisible) => Err(OpError::NotFound),
        Decision::Deny(DenyReason::NotPermitted) => Err(OpError::PermissionDenied(format!(
            "the policy does not grant {op} to {}",
            ctx.user
        ))),
    }
}

#[cfg(test)]
mod tests;
