//! KMIP operation semantics over the [`Store`]: the object state machine, the attributes the
//! server sets itself, Locate matching, and the mapping of Create/Register/Get to the backend.

mod certificate;
mod error;
mod names;

pub use error::OpError;

use crate::config::LocateCacheConfig;
use crate::config::{LimitsConfig, DEFAULT_MAX_LOCATE_RESULTS, DEFAULT_MAX_OBJECTS_PER_USER};
use crate::kmip::access::{facts, policy_operation, Access};
use crate::kmip::locate_cache::{CacheKey, Dependency, LocateCache};
use crate::kmip::store::{Store, StoredObject, Written};
use bytes::Bytes;
use kmip_backends::{CipherMode, CipherRequest, KeyAlgorithm, KeySpec, ObjectKind};
use kmip_policy::{Decision, DenyReason, OperationKind};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Tag, Value};
use names::NameLocks;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Versions this server speaks, newest first (the Discover Versions answer).
pub const SUPPORTED_VERSIONS: &[(i32, i32)] =
    &[(2, 1), (2, 0), (1, 4), (1, 3), (1, 2), (1, 1), (1, 0)];

/// Operations this server implements (the Query Operations answer).
pub const SUPPORTED_OPERATIONS: &[Operation] = &[
    Operation::DiscoverVersions,
    Operation::Query,
    Operation::Create,
    Operation::Register,
    Operation::Locate,
    Operation::Get,
    Operation::GetAttributes,
    Operation::GetAttributeList,
    Operation::AddAttribute,
    Operation::ModifyAttribute,
    Operation::DeleteAttribute,
    Operation::SetAttribute,
    Operation::Activate,
    Operation::Revoke,
    Operation::Destroy,
    Operation::ReKey,
    Operation::Check,
    Operation::Encrypt,
    Operation::Decrypt,
    Operation::Mac,
];

/// Object types this server stores (the Query Objects answer).
pub const SUPPORTED_OBJECT_TYPES: &[ObjectType] = &[
    ObjectType::SymmetricKey,
    ObjectType::SecretData,
    ObjectType::OpaqueObject,
    ObjectType::Certificate,
    ObjectType::PublicKey,
    ObjectType::PrivateKey,
];

pub const VENDOR_IDENTIFICATION: &str = "kmip-gateway";

/// Attributes only the server sets: a client may not add, modify or delete them.
const SERVER_ATTRIBUTES: &[Tag] = &[
    tags::UNIQUE_IDENTIFIER,
    tags::OBJECT_TYPE,
    tags::STATE,
    tags::INITIAL_DATE,
    tags::LAST_CHANGE_DATE,
    tags::DESTROY_DATE,
    tags::COMPROMISE_DATE,
    tags::DIGEST,
    tags::FRESH,
    tags::ORIGINAL_CREATION_DATE,
    tags::ALWAYS_SENSITIVE,
    tags::NEVER_EXTRACTABLE,
    tags::KEY_VALUE_PRESENT,
    tags::CRYPTOGRAPHIC_ALGORITHM,
    tags::CRYPTOGRAPHIC_LENGTH,
];

/// Whether only the server sets this attribute.
fn server_set(tag: Tag) -> bool {
    SERVER_ATTRIBUTES.contains(&tag) || certificate::DERIVED.contains(&tag)
}

/// Dates a client may set or change only while the object is Pre-Active.
const LIFECYCLE_DATES: &[Tag] = &[
    tags::ACTIVATION_DATE,
    tags::PROCESS_START_DATE,
    tags::PROTECT_STOP_DATE,
];

/// Attributes a client sets at Create/Register but may not change later.
const CREATE_ONLY: &[Tag] = &[
    tags::CRYPTOGRAPHIC_ALGORITHM,
    tags::CRYPTOGRAPHIC_LENGTH,
    tags::FRESH,
];

/// Standard attributes that may have several instances.
const MULTI_VALUED: &[Tag] = &[
    tags::NAME,
    tags::OBJECT_GROUP,
    tags::LINK,
    tags::ALTERNATIVE_NAME,
    tags::APPLICATION_SPECIFIC_INFORMATION,
    tags::CRYPTOGRAPHIC_PARAMETERS,
    tags::CRYPTOGRAPHIC_DOMAIN_PARAMETERS,
    tags::DIGEST,
    tags::KEY_VALUE_LOCATION,
];

/// Refuses what a client sets as an attribute but is none (a 1.x name that is neither standard
/// nor `x-`/`y-`, or the tag of something else): stored, it could never be named back.
fn check_is_attribute(name: &AttributeName) -> Result<(), OpError> {
    if name.is_attribute() {
        return Ok(());
    }
    Err(OpError::InvalidField(match name {
        AttributeName::Tag(tag) => match kmip_wire::spec::TAGS.iter().find(|t| t.tag == *tag) {
            Some(info) => format!("{} is not an attribute", info.spec_name),
            None => format!("tag {:06X} is not an attribute", tag.0),
        },
        other => format!(
            "'{}' is not a KMIP attribute (custom attribute names start with x- or y-)",
            other.v1_name().unwrap_or_default()
        ),
    }))
}

/// The Name values among `attributes`, for [`NameLocks::lock`].
fn name_values<'a>(attributes: impl IntoIterator<Item = &'a Attribute>) -> Vec<String> {
    attributes
        .into_iter()
        .filter(|a| a.is(tags::NAME))
        .filter_map(|a| a.as_name().map(|n| n.value))
        .collect()
}

/// Whether `name` is an attribute a client of `version` may be shown. The server keeps Secret
/// Data Type, Key Format Type and Opaque Data Type with an object to rebuild it on Get, but Secret
/// Data Type is an attribute in no version and the other two only from 2.0 on; listing them
/// breaks clients (PyKMIP at 2.0 rejects a Get Attribute List naming Secret Data Type).
fn reportable(name: &AttributeName, version: ProtocolVersion) -> bool {
    match name {
        AttributeName::Tag(t) if *t == tags::SECRET_DATA_TYPE => false,
        AttributeName::Tag(t) if *t == tags::KEY_FORMAT_TYPE || *t == tags::OPAQUE_DATA_TYPE => {
            version.is_v2()
        }
        _ => name.defined_in(version),
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

fn state_of(obj: &StoredObject) -> State {
    obj.enum_of(tags::STATE)
        .map(State::from_u32)
        .unwrap_or(State::PreActive)
}

fn state_name(s: State) -> &'static str {
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

fn is_destroyed(obj: &StoredObject) -> bool {
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
        _ => {
            return Err(OpError::FeatureNotSupported(
                "this Object Type is not stored here".into(),
            ))
        }
    })
}

fn object_type_of(k: ObjectKind) -> ObjectType {
    match k {
        ObjectKind::SymmetricKey => ObjectType::SymmetricKey,
        ObjectKind::SecretData => ObjectType::SecretData,
        ObjectKind::OpaqueObject => ObjectType::OpaqueObject,
        ObjectKind::Certificate => ObjectType::Certificate,
        ObjectKind::PublicKey => ObjectType::PublicKey,
        ObjectKind::PrivateKey => ObjectType::PrivateKey,
    }
}

fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn digest_attr(material: &[u8], format: KeyFormatType) -> Attribute {
    let d = Digest {
        hashing_algorithm: HashingAlgorithm::Sha256,
        digest_value: Bytes::copy_from_slice(&Sha256::digest(material)),
        key_format_type: Some(format),
    };
    Attribute::new(tags::DIGEST, d.to_value())
}

/// The Unique Identifier a request names, for operations on one existing object.
pub fn target_uid(payload: &RequestPayload) -> Option<&Option<String>> {
    Some(match payload {
        RequestPayload::Get(r) => &r.unique_identifier,
        RequestPayload::GetAttributes(r) => &r.unique_identifier,
        RequestPayload::GetAttributeList(r)
        | RequestPayload::Activate(r)
        | RequestPayload::Destroy(r) => &r.unique_identifier,
        RequestPayload::AddAttribute(r) | RequestPayload::SetAttribute(r) => &r.unique_identifier,
        RequestPayload::ModifyAttribute(r) => &r.unique_identifier,
        RequestPayload::DeleteAttribute(r) => &r.unique_identifier,
        RequestPayload::Revoke(r) => &r.unique_identifier,
        RequestPayload::ReKey(r) => &r.unique_identifier,
        RequestPayload::Check(r) => &r.unique_identifier,
        RequestPayload::Encrypt(r) | RequestPayload::Decrypt(r) => &r.unique_identifier,
        RequestPayload::Mac(r) => &r.unique_identifier,
        _ => return None,
    })
}

/// What a batch with Batch Error Continuation Option *Undo* must take back if an item fails:
/// every write its items made, with the index of the item that made it. Only writes are
/// journaled, after authorization: an object the batch did not change is never touched.
#[derive(Default)]
pub struct UndoJournal {
    /// Items run so far (the next item's index).
    items: usize,
    writes: Vec<(usize, Written)>,
}

/// The items of an Undo batch whose changes were not all taken back: someone changed the object
/// since (it is left as it is) or the backend failed.
#[derive(Debug)]
pub struct UndoIncomplete {
    pub items: Vec<usize>,
}

/// The identifiers a response names, for the audit trail and undo journal.
pub fn response_uids(p: &ResponsePayload) -> Vec<String> {
    match p {
        ResponsePayload::Create(r) => vec![r.unique_identifier.clone()],
        ResponsePayload::Register(r)
        | ResponsePayload::SetAttribute(r)
        | ResponsePayload::Activate(r)
        | ResponsePayload::Revoke(r)
        | ResponsePayload::Destroy(r)
        | ResponsePayload::ReKey(r) => vec![r.unique_identifier.clone()],
        ResponsePayload::Locate(r) => r.unique_identifiers.clone(),
        ResponsePayload::Get(r) => vec![r.unique_identifier.clone()],
        ResponsePayload::GetAttributes(r) => vec![r.unique_identifier.clone()],
        ResponsePayload::GetAttributeList(r) => vec![r.unique_identifier.clone()],
        ResponsePayload::AddAttribute(r)
        | ResponsePayload::ModifyAttribute(r)
        | ResponsePayload::DeleteAttribute(r) => vec![r.unique_identifier.clone()],
        ResponsePayload::Check(r) => r.unique_identifier.iter().cloned().collect(),
        ResponsePayload::Encrypt(r) => vec![r.unique_identifier.clone()],
        ResponsePayload::Decrypt(r) => vec![r.unique_identifier.clone()],
        ResponsePayload::Mac(r) => vec![r.unique_identifier.clone()],
        _ => Vec::new(),
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
        }
    }

    /// Applies the configured result and object limits (the defaults otherwise).
    pub fn with_limits(mut self, limits: &LimitsConfig) -> Ops {
        self.max_locate_results = limits.max_locate_results;
        self.max_objects_per_user = limits.max_objects_per_user;
        self
    }

    /// The policy's decision on this request, before it runs. An object the caller may not see
    /// is answered exactly as a missing one. Fails closed: an operation the policy has no name
    /// for, or whose object cannot be determined, is refused, never let through undecided.
    fn authorize(&self, ctx: &OpContext<'_>, payload: &RequestPayload) -> Result<(), OpError> {
        // The OASIS test-harness markers name no object and change nothing.
        if matches!(payload, RequestPayload::Interop(_) | RequestPayload::Log(_)) {
            return Ok(());
        }
        let op = policy_operation(payload.operation()).ok_or(OpError::OperationNotSupported)?;
        let current = self.access.current();
        let policy = &current.1;
        let id = policy.identity(ctx.user);
        let decision = match op.kind() {
            OperationKind::Global => policy.decide_global(&id, op),
            OperationKind::Object => {
                let Some(given) = target_uid(payload) else {
                    return Err(OpError::PermissionDenied(format!(
                        "the object {op} acts on cannot be determined"
                    )));
                };
                let uid = ctx.uid(given.clone())?;
                let obj = self.object(&uid)?;
                policy.decide(&id, op, &facts(&obj))
            }
        };
        match decision {
            Decision::Allow => Ok(()),
            Decision::Deny(DenyReason::Invisible) => Err(OpError::NotFound),
            Decision::Deny(DenyReason::NotPermitted) => Err(OpError::PermissionDenied(format!(
                "the policy does not grant {op} to {}",
                ctx.user
            ))),
        }
    }

    /// A durable write to one object, recorded for an Undo batch.
    async fn update<R>(
        &self,
        ctx: &mut OpContext<'_>,
        uid: &str,
        change: impl FnOnce(&mut StoredObject) -> Result<R, OpError>,
    ) -> Result<R, OpError> {
        let (written, r) = self.store.update(uid, change).await?;
        ctx.written.push(written);
        Ok(r)
    }

    /// Looks up an object the caller addresses; destroyed objects are found (their attributes
    /// remain readable).
    fn object(&self, uid: &str) -> Result<Arc<StoredObject>, OpError> {
        self.store.get(uid).ok_or(OpError::NotFound)
    }

    fn live_object(&self, uid: &str) -> Result<Arc<StoredObject>, OpError> {
        let obj = self.object(uid)?;
        if is_destroyed(&obj) {
            return Err(OpError::Destroyed);
        }
        Ok(obj)
    }

    /// Runs one item of an Undo batch, journaling the writes it makes (also those of an item
    /// that then fails). Authorization comes first: an item the caller may not run journals
    /// nothing. Destroy cannot be undone (its material is gone at once), so an Undo batch may
    /// not contain it.
    pub async fn execute_undoable(
        &self,
        ctx: &mut OpContext<'_>,
        payload: RequestPayload,
        journal: &mut UndoJournal,
    ) -> Result<ResponsePayload, OpError> {
        let item = journal.items;
        journal.items += 1;
        if matches!(payload, RequestPayload::Destroy(_)) {
            return Err(OpError::FeatureNotSupported(
                "Destroy cannot be undone: send it outside an Undo batch".into(),
            ));
        }
        self.authorize(ctx, &payload)?;
        ctx.written.clear();
        let response = self.run(ctx, payload).await;
        journal
            .writes
            .extend(ctx.written.drain(..).map(|w| (item, w)));
        response
    }

    /// Takes back an Undo batch's writes, newest first, each only if the object is still at the
    /// version that write made: a change made since by anyone else is never overwritten, and the
    /// items whose writes stay are reported.
    pub async fn undo(&self, journal: UndoJournal) -> Result<(), UndoIncomplete> {
        let mut incomplete: Vec<usize> = Vec::new();
        for (item, w) in journal.writes.into_iter().rev() {
            let uid = w.after.uid.clone();
            let undone = match w.before {
                Some(before) => self.store.restore(&w.after, before).await,
                None => self.store.remove(&w.after).await,
            };
            match undone {
                Ok(true) => continue,
                Ok(false) => {
                    tracing::warn!(uid = %uid, item, "not undone: the object changed since");
                }
                Err(e) => tracing::error!(uid = %uid, item, error = %e, "undo write failed"),
            }
            if !incomplete.contains(&item) {
                incomplete.push(item);
            }
        }
        if incomplete.is_empty() {
            Ok(())
        } else {
            Err(UndoIncomplete { items: incomplete })
        }
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

    /// Runs an authorized request.
    async fn run(
        &self,
        ctx: &mut OpContext<'_>,
        payload: RequestPayload,
    ) -> Result<ResponsePayload, OpError> {
        let response = match payload {
            RequestPayload::DiscoverVersions(r) => {
                ResponsePayload::DiscoverVersions(discover_versions(&r))
            }
            RequestPayload::Query(r) => ResponsePayload::Query(query(&r)),
            RequestPayload::Create(r) => ResponsePayload::Create(self.create(ctx, r).await?),
            RequestPayload::Register(r) => ResponsePayload::Register(self.register(ctx, r).await?),
            RequestPayload::Locate(r) => ResponsePayload::Locate(self.locate(ctx, &r).await?),
            RequestPayload::Get(r) => ResponsePayload::Get(self.get(ctx, r).await?),
            RequestPayload::GetAttributes(r) => {
                ResponsePayload::GetAttributes(self.get_attributes(ctx, r).await?)
            }
            RequestPayload::GetAttributeList(r) => {
                ResponsePayload::GetAttributeList(self.get_attribute_list(ctx, r)?)
            }
            RequestPayload::AddAttribute(r) => {
                ResponsePayload::AddAttribute(self.add_attribute(ctx, r).await?)
            }
            RequestPayload::ModifyAttribute(r) => {
                ResponsePayload::ModifyAttribute(self.modify_attribute(ctx, r).await?)
            }
            RequestPayload::DeleteAttribute(r) => {
                ResponsePayload::DeleteAttribute(self.delete_attribute(ctx, r).await?)
            }
            RequestPayload::SetAttribute(r) => {
                ResponsePayload::SetAttribute(self.set_attribute(ctx, r).await?)
            }
            RequestPayload::Activate(r) => ResponsePayload::Activate(self.activate(ctx, r).await?),
            RequestPayload::Revoke(r) => ResponsePayload::Revoke(self.revoke(ctx, r).await?),
            RequestPayload::Destroy(r) => ResponsePayload::Destroy(self.destroy(ctx, r).await?),
            RequestPayload::ReKey(r) => ResponsePayload::ReKey(self.rekey(ctx, r).await?),
            RequestPayload::Check(r) => ResponsePayload::Check(self.check(ctx, r)?),
            RequestPayload::Encrypt(r) => ResponsePayload::Encrypt(self.encrypt(ctx, r).await?),
            RequestPayload::Decrypt(r) => ResponsePayload::Decrypt(self.decrypt(ctx, r).await?),
            RequestPayload::Mac(r) => ResponsePayload::Mac(self.mac(ctx, r).await?),
            RequestPayload::Interop(_) | RequestPayload::Log(_) => ResponsePayload::Empty,
            RequestPayload::CreateKeyPair(_) | RequestPayload::Unknown { .. } => {
                return Err(OpError::OperationNotSupported)
            }
        };
        Ok(response)
    }

    /// Attributes a client supplies at Create/Register, checked; server attributes are refused.
    fn client_attributes(
        &self,
        ctx: &OpContext<'_>,
        attrs: Vec<Attribute>,
        creating: bool,
    ) -> Result<Vec<Attribute>, OpError> {
        let mut out: Vec<Attribute> = Vec::with_capacity(attrs.len());
        for a in attrs {
            check_is_attribute(&a.name)?;
            if let Some(tag) = a.tag() {
                if tag == tags::OBJECT_TYPE || tag == tags::UNIQUE_IDENTIFIER {
                    continue;
                }
                if server_set(tag) && !(creating && CREATE_ONLY.contains(&tag)) {
                    return Err(OpError::ReadOnlyAttribute(
                        a.name.v1_name().unwrap_or_default(),
                    ));
                }
                if !MULTI_VALUED.contains(&tag) {
                    out.retain(|x| x.name != a.name);
                }
                if tag == tags::NAME {
                    self.check_name_unique(ctx, &a, None)?;
                }
            }
            out.push(Attribute { index: None, ..a });
        }
        Ok(out)
    }

    /// Names are unique among the live objects the caller can see: checking others' objects
    /// would tell the caller that a hidden object has this Name.
    fn check_name_unique(
        &self,
        ctx: &OpContext<'_>,
        name: &Attribute,
        except: Option<&str>,
    ) -> Result<(), OpError> {
        let Some(n) = name.as_name() else {
            return Ok(());
        };
        let current = self.access.current();
        let id = current.1.identity(ctx.user);
        let clash = self.store.by_name(&n.value).iter().any(|o| {
            Some(o.uid.as_str()) != except && !is_destroyed(o) && current.1.may_see(&id, &facts(o))
        });
        if clash {
            return Err(OpError::NonUniqueName(n.value));
        }
        Ok(())
    }

    fn new_object(
        &self,
        ctx: &OpContext<'_>,
        object_type: ObjectType,
        mut attrs: Vec<Attribute>,
    ) -> Result<StoredObject, OpError> {
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
        let mut obj = StoredObject {
            uid,
            kind: kind_of(object_type)?,
            owner: ctx.user.to_owned(),
            attributes: attrs,
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

    async fn create(
        &self,
        ctx: &mut OpContext<'_>,
        r: CreateRequest,
    ) -> Result<CreateResponse, OpError> {
        if r.object_type != ObjectType::SymmetricKey {
            return Err(OpError::FeatureNotSupported(
                "Create makes Symmetric Keys only".into(),
            ));
        }
        let _names = self.name_locks.lock(name_values(&r.attributes)).await;
        let attrs = self.client_attributes(ctx, r.attributes, true)?;
        let alg = attrs
            .iter()
            .find(|a| a.is(tags::CRYPTOGRAPHIC_ALGORITHM))
            .and_then(|a| a.as_enum::<CryptographicAlgorithm>())
            .ok_or_else(|| OpError::MissingData("Cryptographic Algorithm".into()))?;
        let bits = attrs
            .iter()
            .find(|a| a.is(tags::CRYPTOGRAPHIC_LENGTH))
            .and_then(Attribute::as_int)
            .ok_or_else(|| OpError::MissingData("Cryptographic Length".into()))?;
        let algorithm = match (alg, bits) {
            (CryptographicAlgorithm::Aes, 128 | 192 | 256) => KeyAlgorithm::Aes,
            (CryptographicAlgorithm::HmacSha256, 128..=512) if bits % 8 == 0 => KeyAlgorithm::HmacSha256,
            _ => {
                return Err(OpError::InvalidField(format!(
                    "cannot create {alg:?} keys of {bits} bits (AES 128/192/256 and HMAC-SHA256 are supported)"
                )))
            }
        };
        let spec = key_spec(algorithm, bits, &attrs);
        let mut obj = self.new_object(ctx, ObjectType::SymmetricKey, attrs)?;
        flag_attrs(&mut obj, &spec);
        let uid = obj.uid.clone();
        let after = self
            .store
            .create(obj, spec, self.max_objects_per_user)
            .await?;
        ctx.written.push(Written {
            before: None,
            after,
        });
        ctx.id_placeholder = Some(uid.clone());
        Ok(CreateResponse {
            object_type: ObjectType::SymmetricKey,
            unique_identifier: uid,
        })
    }

    /// The Digest of a generated key, which only the backend has seen: derived from the
    /// material when asked for rather than stored, so a Create is one durable write.
    async fn derived_digest(&self, obj: &StoredObject) -> Option<Attribute> {
        if !digest_derivable(obj) {
            return None;
        }
        match self.store.read_material(&obj.uid).await {
            Ok(material) => Some(digest_attr(&material, KeyFormatType::Raw)),
            Err(e) => {
                tracing::warn!(uid = %obj.uid, error = %e, "Digest not derived");
                None
            }
        }
    }

    async fn register(
        &self,
        ctx: &mut OpContext<'_>,
        r: RegisterRequest,
    ) -> Result<UidResponse, OpError> {
        let object_type = r.object.object_type();
        let _names = self.name_locks.lock(name_values(&r.attributes)).await;
        let mut attrs = self.client_attributes(ctx, r.attributes, true)?;
        let (material, format) = match &r.object {
            ManagedObject::SymmetricKey(kb)
            | ManagedObject::PublicKey(kb)
            | ManagedObject::PrivateKey(kb)
            | ManagedObject::SecretData { key_block: kb, .. } => {
                if let Some(a) = kb.cryptographic_algorithm {
                    attrs.retain(|x| !x.is(tags::CRYPTOGRAPHIC_ALGORITHM));
                    attrs.push(Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, a));
                }
                if let Some(l) = kb.cryptographic_length {
                    attrs.retain(|x| !x.is(tags::CRYPTOGRAPHIC_LENGTH));
                    attrs.push(Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, l));
                }
                let material = match &kb.key_value {
                    KeyValue::Material(b) | KeyValue::TransparentSymmetricKey(b) => {
                        Zeroizing::new(b.as_slice().to_vec())
                    }
                    // Transparent RSA/DSA/EC/DH keys are kept as their TTLV encoding and
                    // handed back in the same structure.
                    KeyValue::Transparent(t) => Zeroizing::new(
                        t.0.to_bytes()
                            .map_err(|_| OpError::InvalidField("key material".into()))?
                            .to_vec(),
                    ),
                    KeyValue::Wrapped(_) => {
                        return Err(OpError::FeatureNotSupported(
                            "wrapped key values cannot be registered".into(),
                        ))
                    }
                };
                (material, kb.key_format_type)
            }
            ManagedObject::OpaqueObject { value, .. } => (
                Zeroizing::new(value.as_slice().to_vec()),
                KeyFormatType::Opaque,
            ),
            ManagedObject::Certificate { value, .. } => {
                (Zeroizing::new(value.to_vec()), KeyFormatType::X509)
            }
        };
        match &r.object {
            ManagedObject::SecretData {
                secret_data_type, ..
            } => attrs.push(Attribute::enumeration(
                tags::SECRET_DATA_TYPE,
                *secret_data_type,
            )),
            ManagedObject::OpaqueObject {
                opaque_data_type, ..
            } => attrs.push(Attribute::new(
                tags::OPAQUE_DATA_TYPE,
                Value::Enumeration(*opaque_data_type),
            )),
            ManagedObject::Certificate {
                certificate_type,
                value,
            } => {
                attrs.retain(|a| {
                    a.tag().is_none_or(|t| {
                        !certificate::DERIVED.contains(&t) && t != tags::CERTIFICATE_TYPE
                    })
                });
                attrs.push(Attribute::enumeration(
                    tags::CERTIFICATE_TYPE,
                    *certificate_type,
                ));
                if *certificate_type == CertificateType::X509 {
                    attrs.extend(certificate::derived_attributes(value)?);
                }
            }
            _ => {}
        }
        attrs.push(Attribute::enumeration(tags::KEY_FORMAT_TYPE, format));
        attrs.push(digest_attr(&material, format));
        let spec =
            match (
                &r.object,
                attrs
                    .iter()
                    .find(|a| a.is(tags::CRYPTOGRAPHIC_ALGORITHM))
                    .and_then(|a| a.as_enum()),
            ) {
                (ManagedObject::SymmetricKey(_), Some(CryptographicAlgorithm::Aes)) => Some(
                    key_spec(KeyAlgorithm::Aes, (material.len() * 8) as i32, &attrs),
                ),
                (ManagedObject::SymmetricKey(_), Some(CryptographicAlgorithm::HmacSha256)) => {
                    Some(key_spec(
                        KeyAlgorithm::HmacSha256,
                        (material.len() * 8) as i32,
                        &attrs,
                    ))
                }
                _ => None,
            };
        let mut obj = self.new_object(ctx, object_type, attrs)?;
        match &spec {
            Some(s) => flag_attrs(&mut obj, s),
            None => {
                let flag = |tag: Tag| obj.first(tag).and_then(Attribute::as_bool);
                let sensitive = flag(tags::SENSITIVE).unwrap_or(false);
                let extractable = flag(tags::EXTRACTABLE).unwrap_or(true);
                obj.set(tags::ALWAYS_SENSITIVE, Value::Boolean(sensitive));
                obj.set(tags::NEVER_EXTRACTABLE, Value::Boolean(!extractable));
            }
        }
        let uid = obj.uid.clone();
        let after = self
            .store
            .register(obj, material, spec, self.max_objects_per_user)
            .await?;
        ctx.written.push(Written {
            before: None,
            after,
        });
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    /// Objects matching a Locate filter, for `user`'s visibility predicate.
    pub fn locate_filtered(
        &self,
        ctx: &OpContext<'_>,
        r: &LocateRequest,
        visible: impl Fn(&StoredObject) -> bool,
    ) -> Result<LocateResponse, OpError> {
        // Destroyed objects keep their attributes but are found only when the filter asks for
        // a State: an array locating its key by Name must not be handed a destroyed one.
        let asks_state = r.attributes.iter().any(|a| a.is(tags::STATE));
        // A Name or Object Group in the filter narrows the candidates through an index; the
        // full filter still applies to them.
        let candidates = if let Some(name) = r
            .attributes
            .iter()
            .find(|a| a.is(tags::NAME))
            .and_then(Attribute::as_name)
        {
            self.store.by_name(&name.value)
        } else if let Some(group) = r
            .attributes
            .iter()
            .find(|a| a.is(tags::OBJECT_GROUP))
            .and_then(Attribute::as_text)
        {
            self.store.by_group(group)
        } else {
            self.store.snapshot()
        };
        let mut found: Vec<(i64, String)> = candidates
            .into_iter()
            .filter(|o| (asks_state || !is_destroyed(o)) && matches(o, &r.attributes) && visible(o))
            .map(|o| {
                (
                    o.first(tags::INITIAL_DATE)
                        .and_then(Attribute::as_datetime)
                        .unwrap_or(0),
                    o.uid.clone(),
                )
            })
            .collect();
        // Newest first, as KMIP asks; the identifier breaks ties so results are stable.
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let total = found.len();
        let offset = r.offset_items.unwrap_or(0).max(0) as usize;
        // The configured cap applies whatever the client asks for, or when it asks for no cap.
        let max = r
            .maximum_items
            .filter(|m| *m > 0)
            .map(|m| m as usize)
            .unwrap_or(usize::MAX)
            .min(self.max_locate_results);
        let ids: Vec<String> = found
            .into_iter()
            .skip(offset)
            .take(max)
            .map(|(_, u)| u)
            .collect();
        let _ = ctx;
        Ok(LocateResponse {
            located_items: Some(i32::try_from(total).unwrap_or(i32::MAX)),
            unique_identifiers: ids,
        })
    }

    async fn locate(
        &self,
        ctx: &mut OpContext<'_>,
        r: &LocateRequest,
    ) -> Result<LocateResponse, OpError> {
        let current = self.access.current();
        let (policy_generation, policy) = (current.0, &current.1);
        let id = policy.identity(ctx.user);
        let mut filter: Vec<Vec<u8>> = r
            .attributes
            .iter()
            .map(StoredObject::attribute_key)
            .collect();
        filter.sort();
        let mut request = Vec::new();
        for part in [
            r.maximum_items.map(i64::from),
            r.offset_items.map(i64::from),
            r.storage_status_mask.map(i64::from),
            r.object_group_member.map(|m| i64::from(m.to_u32())),
        ] {
            request.extend_from_slice(&part.unwrap_or(-1).to_be_bytes());
        }
        for f in filter {
            request.extend_from_slice(&(f.len() as u64).to_be_bytes());
            request.extend_from_slice(&f);
        }
        let key = CacheKey::new(policy_generation, ctx.user, &request);
        // Visibility reads the owner (immutable), Names and Object Groups; tombstones are
        // filtered by State.
        let mut deps = vec![
            Dependency::Membership,
            Dependency::Attribute(AttributeName::Tag(tags::STATE)),
            Dependency::Attribute(AttributeName::Tag(tags::NAME)),
            Dependency::Attribute(AttributeName::Tag(tags::OBJECT_GROUP)),
        ];
        for a in &r.attributes {
            let d = Dependency::Attribute(a.name.clone());
            if !deps.contains(&d) {
                deps.push(d);
            }
        }
        let resp = self
            .locate_cache
            .get_or_compute(key, deps, || {
                self.locate_filtered(ctx, r, |o| policy.may_see(&id, &facts(o)))
            })
            .await?;
        if let [only] = resp.unique_identifiers.as_slice() {
            ctx.id_placeholder = Some(only.clone());
        }
        Ok((*resp).clone())
    }

    async fn get(&self, ctx: &mut OpContext<'_>, r: GetRequest) -> Result<GetResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.live_object(&uid)?;
        if r.key_wrapping_specification.is_some() || r.key_wrap_type.is_some() {
            return Err(OpError::FeatureNotSupported("key wrapping on Get".into()));
        }
        let flag = |tag: Tag| obj.first(tag).and_then(Attribute::as_bool);
        if flag(tags::SENSITIVE) == Some(true) {
            return Err(OpError::Sensitive);
        }
        if flag(tags::EXTRACTABLE) == Some(false) {
            return Err(OpError::NotExtractable);
        }
        let stored_format = obj
            .enum_of(tags::KEY_FORMAT_TYPE)
            .map(KeyFormatType::from_u32)
            .unwrap_or(KeyFormatType::Raw);
        let algorithm = obj
            .first(tags::CRYPTOGRAPHIC_ALGORITHM)
            .and_then(|a| a.as_enum());
        let length = obj
            .first(tags::CRYPTOGRAPHIC_LENGTH)
            .and_then(Attribute::as_int);
        let material = self.store.read_material(&uid).await.map_err(|e| match e {
            kmip_backends::BackendError::NotExtractable(_) => OpError::NotExtractable,
            other => OpError::Backend(other),
        })?;
        let secret = SecretBytes::from_slice(&material);
        let object = match obj.kind {
            ObjectKind::SymmetricKey => {
                // Without a requested format, the key comes back as it was registered.
                let wanted = r.key_format_type.unwrap_or(stored_format);
                let value = match Some(wanted) {
                    None | Some(KeyFormatType::Raw) => KeyValue::Material(secret),
                    Some(KeyFormatType::TransparentSymmetricKey) => {
                        KeyValue::TransparentSymmetricKey(secret)
                    }
                    Some(_) => return Err(OpError::KeyFormatNotSupported),
                };
                let format = wanted;
                ManagedObject::SymmetricKey(KeyBlock {
                    key_format_type: format,
                    key_compression_type: None,
                    key_value: value,
                    cryptographic_algorithm: algorithm,
                    cryptographic_length: length,
                    key_wrapping_data: None,
                })
            }
            kind => {
                if r.key_format_type.is_some_and(|f| f != stored_format) {
                    return Err(OpError::KeyFormatNotSupported);
                }
                let key_value = if is_transparent_structure(stored_format) {
                    let tree = decode(&Bytes::copy_from_slice(&material), &Limits::default())
                        .map_err(|e| {
                            OpError::Backend(kmip_backends::BackendError::Corrupt(format!(
                                "stored transparent key of {uid}: {e}"
                            )))
                        })?;
                    KeyValue::Transparent(SecretTtlv(tree))
                } else {
                    KeyValue::Material(secret.clone())
                };
                let block = KeyBlock {
                    key_format_type: stored_format,
                    key_compression_type: None,
                    key_value,
                    cryptographic_algorithm: algorithm,
                    cryptographic_length: length,
                    key_wrapping_data: None,
                };
                match kind {
                    ObjectKind::SecretData => ManagedObject::SecretData {
                        secret_data_type: obj
                            .enum_of(tags::SECRET_DATA_TYPE)
                            .map(SecretDataType::from_u32)
                            .unwrap_or(SecretDataType::Password),
                        key_block: block,
                    },
                    ObjectKind::PublicKey => ManagedObject::PublicKey(block),
                    ObjectKind::PrivateKey => ManagedObject::PrivateKey(block),
                    ObjectKind::OpaqueObject => ManagedObject::OpaqueObject {
                        opaque_data_type: obj
                            .enum_of(tags::OPAQUE_DATA_TYPE)
                            .unwrap_or(0x8000_0000),
                        value: secret,
                    },
                    ObjectKind::Certificate => ManagedObject::Certificate {
                        certificate_type: obj
                            .enum_of(tags::CERTIFICATE_TYPE)
                            .map(CertificateType::from_u32)
                            .unwrap_or(CertificateType::X509),
                        value: Bytes::copy_from_slice(&material),
                    },
                    ObjectKind::SymmetricKey => return Err(OpError::NotFound),
                }
            }
        };
        if flag(tags::FRESH) == Some(true) {
            // KMIP: an object stops being Fresh once it has been served to a client. The flag
            // is informational, so the Get does not wait for its durable write.
            let written = self
                .store
                .update_lazily(&uid, |o| o.set(tags::FRESH, Value::Boolean(false)))
                .await;
            ctx.written.extend(written);
        }
        ctx.id_placeholder = Some(uid.clone());
        Ok(GetResponse {
            unique_identifier: uid,
            object,
        })
    }

    async fn get_attributes(
        &self,
        ctx: &mut OpContext<'_>,
        r: GetAttributesRequest,
    ) -> Result<GetAttributesResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.object(&uid)?;
        let digest = AttributeName::Tag(tags::DIGEST);
        let derived = if r.names.is_empty() || r.names.contains(&digest) {
            self.derived_digest(&obj).await
        } else {
            None
        };
        let mut attributes: Vec<Attribute> = if r.names.is_empty() {
            obj.attributes.clone()
        } else {
            // An attribute the object does not have is simply absent (vCenter asks for custom
            // attributes before it sets them).
            r.names
                .iter()
                .flat_map(|n| obj.find(n).cloned().collect::<Vec<_>>())
                .collect()
        };
        attributes.extend(derived);
        let attributes: Vec<Attribute> = attributes
            .into_iter()
            .filter(|a| reportable(&a.name, ctx.version))
            .collect();
        ctx.id_placeholder = Some(uid.clone());
        Ok(GetAttributesResponse {
            unique_identifier: uid,
            attributes: with_indexes(attributes, ctx.version),
        })
    }

    fn get_attribute_list(
        &self,
        ctx: &mut OpContext<'_>,
        r: UidRequest,
    ) -> Result<GetAttributeListResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.object(&uid)?;
        let mut names: Vec<AttributeName> = Vec::new();
        for a in &obj.attributes {
            if reportable(&a.name, ctx.version) && !names.contains(&a.name) {
                names.push(a.name.clone());
            }
        }
        if digest_derivable(&obj) {
            names.push(AttributeName::Tag(tags::DIGEST));
        }
        ctx.id_placeholder = Some(uid.clone());
        Ok(GetAttributeListResponse {
            unique_identifier: uid,
            names,
        })
    }

    /// Whether a client may add, change or remove `name` on `obj` now.
    fn check_client_writable(
        &self,
        obj: &StoredObject,
        name: &AttributeName,
    ) -> Result<(), OpError> {
        if let AttributeName::Tag(tag) = name {
            if server_set(*tag) {
                return Err(OpError::ReadOnlyAttribute(
                    name.v1_name().unwrap_or_default(),
                ));
            }
            // The lifecycle dates that gate a key's use may only move before it is in use.
            if LIFECYCLE_DATES.contains(tag) && state_of(obj) != State::PreActive {
                return Err(OpError::WrongState(state_name(state_of(obj))));
            }
        }
        Ok(())
    }

    async fn add_attribute(
        &self,
        ctx: &mut OpContext<'_>,
        r: AttributeRequest,
    ) -> Result<AttributeResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let target = self.live_object(&uid)?;
        let a = r.attribute;
        check_is_attribute(&a.name)?;
        self.check_client_writable(&target, &a.name)?;
        let _names = self.name_locks.lock(name_values([&a])).await;
        if a.is(tags::NAME) {
            self.check_name_unique(ctx, &a, None)?;
        }
        let now = ctx.now;
        let echoed = self
            .update(ctx, &uid, |o| {
                let multi = a.tag().is_none_or(|t| MULTI_VALUED.contains(&t));
                let existing = o.find(&a.name).count();
                if existing > 0 && (!multi || a.tag().is_none()) {
                    return Err(OpError::SingleValued(a.name.v1_name().unwrap_or_default()));
                }
                let added = Attribute {
                    index: if existing > 0 {
                        Some(existing as i32)
                    } else {
                        None
                    },
                    ..a
                };
                o.attributes.push(Attribute {
                    index: None,
                    ..added.clone()
                });
                o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
                Ok(added)
            })
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(AttributeResponse {
            unique_identifier: uid,
            attribute: Some(echoed),
        })
    }

    async fn modify_attribute(
        &self,
        ctx: &mut OpContext<'_>,
        r: ModifyAttributeRequest,
    ) -> Result<AttributeResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let target = self.live_object(&uid)?;
        let new = r.attribute;
        check_is_attribute(&new.name)?;
        self.check_client_writable(&target, &new.name)?;
        let _names = self.name_locks.lock(name_values([&new])).await;
        if new.is(tags::NAME) {
            self.check_name_unique(ctx, &new, Some(&uid))?;
        }
        let now = ctx.now;
        let current = r.current;
        let echoed = self
            .update(ctx, &uid, |o| {
                let at = instance_position(o, &new.name, current.as_ref(), new.index)?;
                o.attributes[at].value = new.value.clone();
                o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
                Ok(new.clone())
            })
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(AttributeResponse {
            unique_identifier: uid,
            attribute: Some(echoed),
        })
    }

    async fn delete_attribute(
        &self,
        ctx: &mut OpContext<'_>,
        r: DeleteAttributeRequest,
    ) -> Result<AttributeResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let target = self.live_object(&uid)?;
        self.check_client_writable(&target, &r.name)?;
        let now = ctx.now;
        let removed = self
            .update(ctx, &uid, |o| {
                let at = instance_position(o, &r.name, r.current.as_ref(), r.index)?;
                let removed = o.attributes.remove(at);
                o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
                Ok(removed)
            })
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(AttributeResponse {
            unique_identifier: uid,
            attribute: Some(removed),
        })
    }

    async fn set_attribute(
        &self,
        ctx: &mut OpContext<'_>,
        r: AttributeRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let target = self.live_object(&uid)?;
        let a = r.attribute;
        check_is_attribute(&a.name)?;
        self.check_client_writable(&target, &a.name)?;
        if a.tag().is_some_and(|t| MULTI_VALUED.contains(&t)) {
            return Err(OpError::InvalidField(
                "Set Attribute applies to single-valued attributes only".into(),
            ));
        }
        let now = ctx.now;
        self.update(ctx, &uid, |o| {
            o.attributes.retain(|x| x.name != a.name);
            o.attributes.push(Attribute { index: None, ..a });
            o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
            Ok(())
        })
        .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    async fn activate(
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

    async fn revoke(
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
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    async fn destroy(
        &self,
        ctx: &mut OpContext<'_>,
        r: UidRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        self.live_object(&uid)?;
        let now = ctx.now;
        self.store
            .destroy(&uid, |o| {
                let next = match state_of(o) {
                    State::PreActive | State::Deactivated => State::Destroyed,
                    State::Compromised => State::DestroyedCompromised,
                    s => return Err(OpError::WrongState(state_name(s))),
                };
                o.set(tags::STATE, Value::Enumeration(next.to_u32()));
                o.set(tags::DESTROY_DATE, Value::DateTime(now));
                o.set(tags::LAST_CHANGE_DATE, Value::DateTime(now));
                Ok(())
            })
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    async fn rekey(
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
            .attributes
            .iter()
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
            .cloned()
            .chain(old.first(tags::CRYPTOGRAPHIC_ALGORITHM).cloned())
            .chain(old.first(tags::CRYPTOGRAPHIC_LENGTH).cloned())
            .collect();
        let mut req = CreateRequest {
            object_type: ObjectType::SymmetricKey,
            attributes: carried,
        };
        for a in r.attributes {
            req.attributes.retain(|x| x.name != a.name);
            req.attributes.push(a);
        }
        let created = self.create(ctx, req).await?;
        let new_uid = created.unique_identifier;
        let names: Vec<Attribute> = old.all(tags::NAME).cloned().collect();
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

    fn check(&self, ctx: &mut OpContext<'_>, r: CheckRequest) -> Result<CheckResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.live_object(&uid)?;
        if let Some(wanted) = r.cryptographic_usage_mask {
            let have = obj
                .first(tags::CRYPTOGRAPHIC_USAGE_MASK)
                .and_then(Attribute::as_int)
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

    fn usable_key(&self, uid: &str, usage: i32, now: i64) -> Result<Arc<StoredObject>, OpError> {
        let obj = self.live_object(uid)?;
        if state_of(&obj) != State::Active {
            return Err(OpError::WrongState(state_name(state_of(&obj))));
        }
        let date = |tag: Tag| obj.first(tag).and_then(Attribute::as_datetime);
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
            .and_then(Attribute::as_int)
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
        self.store
            .update(&obj.uid, |o| {
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
                // Usage Limits Unit: 1 = Byte, 2 = Object (one use per operation).
                let need = match field(tags::USAGE_LIMITS_UNIT).and_then(|t| t.as_enum()) {
                    Some(1) => i64::try_from(bytes).unwrap_or(i64::MAX),
                    _ => 1,
                };
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

    async fn encrypt(
        &self,
        ctx: &mut OpContext<'_>,
        r: CryptoRequest,
    ) -> Result<EncryptResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_key(&uid, USAGE_ENCRYPT, ctx.now)?;
        let mode = cipher_mode(r.cryptographic_parameters.as_ref(), &obj)?;
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

    async fn decrypt(
        &self,
        ctx: &mut OpContext<'_>,
        r: CryptoRequest,
    ) -> Result<DecryptResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_key(&uid, USAGE_DECRYPT, ctx.now)?;
        let mode = cipher_mode(r.cryptographic_parameters.as_ref(), &obj)?;
        let data = r.data.ok_or_else(|| OpError::MissingData("Data".into()))?;
        if matches!(mode, CipherMode::Cbc { .. } | CipherMode::Gcm { .. })
            && r.iv_counter_nonce.is_none()
        {
            return Err(OpError::MissingIv);
        }
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

    async fn mac(&self, ctx: &mut OpContext<'_>, r: MacRequest) -> Result<MacResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_key(&uid, USAGE_MAC_GENERATE, ctx.now)?;
        let alg = r
            .cryptographic_parameters
            .as_ref()
            .and_then(|p| p.cryptographic_algorithm)
            .or_else(|| {
                obj.first(tags::CRYPTOGRAPHIC_ALGORITHM)
                    .and_then(|a| a.as_enum())
            });
        if alg != Some(CryptographicAlgorithm::HmacSha256) {
            return Err(OpError::BadCryptoParameters(
                "MAC supports HMAC-SHA256 only".into(),
            ));
        }
        let data = r.data.ok_or_else(|| OpError::MissingData("Data".into()))?;
        let mac = self.store.backend().mac(&uid, data.as_slice()).await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(MacResponse {
            unique_identifier: uid,
            mac_data: Some(Bytes::from(mac)),
            correlation_value: None,
        })
    }
}

const USAGE_ENCRYPT: i32 = 0x0000_0004;
const USAGE_DECRYPT: i32 = 0x0000_0008;
const USAGE_MAC_GENERATE: i32 = 0x0000_0080;

/// The request's Cryptographic Parameters, completed field by field from the key's own
/// Cryptographic Parameters attribute (KMIP: the object's parameters apply when the request
/// omits them).
fn effective_parameters(
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
    if alg != Some(CryptographicAlgorithm::Aes) {
        return Err(OpError::BadCryptoParameters(
            "Encrypt/Decrypt support AES keys only".into(),
        ));
    }
    let pad = match p.and_then(|p| p.padding_method) {
        None | Some(PaddingMethod::None) => false,
        Some(PaddingMethod::Pkcs5) => true,
        Some(other) => return Err(OpError::BadCryptoParameters(format!("padding {other:?}"))),
    };
    Ok(match p.and_then(|p| p.block_cipher_mode) {
        Some(BlockCipherMode::Gcm) => CipherMode::Gcm {
            tag_len: p
                .and_then(|p| p.tag_length)
                .map(|t| t as usize)
                .unwrap_or(16),
        },
        Some(BlockCipherMode::Cbc) => CipherMode::Cbc { pad },
        Some(BlockCipherMode::Ecb) => CipherMode::Ecb { pad },
        None => return Err(OpError::MissingData("Block Cipher Mode".into())),
        Some(other) => return Err(OpError::BadCryptoParameters(format!("mode {other:?}"))),
    })
}

/// Whether a Digest can be derived for `obj`: a live generated key the backend may return.
fn digest_derivable(obj: &StoredObject) -> bool {
    let flag = |tag: Tag| obj.first(tag).and_then(Attribute::as_bool);
    obj.kind == ObjectKind::SymmetricKey
        && obj.first(tags::DIGEST).is_none()
        && !is_destroyed(obj)
        && flag(tags::EXTRACTABLE) != Some(false)
        && flag(tags::SENSITIVE) != Some(true)
}

/// Where in `o.attributes` the addressed instance of `name` is: the one whose value equals
/// `current` (2.x Current Attribute), else the `index`-th (1.x Attribute Index), else the first.
fn instance_position(
    o: &StoredObject,
    name: &AttributeName,
    current: Option<&Attribute>,
    index: Option<i32>,
) -> Result<usize, OpError> {
    let mut positions = o
        .attributes
        .iter()
        .enumerate()
        .filter(|(_, x)| x.name == *name)
        .map(|(i, _)| i);
    let pick = match (current, index) {
        (Some(cur), _) => positions.find(|&i| o.attributes[i].value == cur.value),
        (None, Some(idx)) => usize::try_from(idx).ok().and_then(|i| positions.nth(i)),
        (None, None) => positions.next(),
    };
    pick.ok_or(OpError::AttributeNotFound)
}

/// Key formats whose Key Material is a structure rather than a byte string.
fn is_transparent_structure(f: KeyFormatType) -> bool {
    !matches!(
        f,
        KeyFormatType::Raw
            | KeyFormatType::Opaque
            | KeyFormatType::Pkcs1
            | KeyFormatType::Pkcs8
            | KeyFormatType::X509
            | KeyFormatType::EcPrivateKey
            | KeyFormatType::Pkcs12
            | KeyFormatType::Pkcs10
            | KeyFormatType::TransparentSymmetricKey
            | KeyFormatType::Other(_)
    )
}

fn key_spec(algorithm: KeyAlgorithm, bits: i32, attrs: &[Attribute]) -> KeySpec {
    let flag = |tag: Tag| {
        attrs
            .iter()
            .find(|a| a.is(tag))
            .and_then(Attribute::as_bool)
    };
    KeySpec {
        algorithm,
        bits: bits.max(0) as u32,
        extractable: flag(tags::EXTRACTABLE).unwrap_or(true),
        sensitive: flag(tags::SENSITIVE).unwrap_or(false),
        label: attrs
            .iter()
            .find(|a| a.is(tags::NAME))
            .and_then(Attribute::as_name)
            .map(|n| n.value),
    }
}

fn flag_attrs(obj: &mut StoredObject, spec: &KeySpec) {
    obj.set(tags::SENSITIVE, Value::Boolean(spec.sensitive));
    obj.set(tags::EXTRACTABLE, Value::Boolean(spec.extractable));
    obj.set(tags::ALWAYS_SENSITIVE, Value::Boolean(spec.sensitive));
    obj.set(tags::NEVER_EXTRACTABLE, Value::Boolean(!spec.extractable));
}

/// KMIP 1.x numbers the instances of multi-valued attributes.
fn with_indexes(attrs: Vec<Attribute>, version: ProtocolVersion) -> Vec<Attribute> {
    if version.is_v2() {
        return attrs
            .into_iter()
            .map(|a| Attribute { index: None, ..a })
            .collect();
    }
    let mut seen: Vec<(AttributeName, i32)> = Vec::new();
    attrs
        .into_iter()
        .map(|a| {
            let n = match seen.iter_mut().find(|(name, _)| *name == a.name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((a.name.clone(), 0));
                    0
                }
            };
            let multi = a.tag().is_some_and(|t| MULTI_VALUED.contains(&t));
            Attribute {
                index: if multi { Some(n) } else { None },
                ..a
            }
        })
        .collect()
}

/// Whether an object satisfies every Locate filter attribute.
fn matches(obj: &StoredObject, filter: &[Attribute]) -> bool {
    // Two instances of one date attribute in a filter bound a range; one is an exact match.
    let mut date_ranges: Vec<(Tag, i64, i64)> = Vec::new();
    for f in filter {
        if let (Some(tag), Some(d)) = (f.tag(), f.as_datetime()) {
            match date_ranges.iter_mut().find(|(t, _, _)| *t == tag) {
                Some(r) => {
                    r.1 = r.1.min(d);
                    r.2 = r.2.max(d);
                }
                None => date_ranges.push((tag, d, d)),
            }
            continue;
        }
        let ok = match f.tag() {
            Some(t) if t == tags::NAME => {
                let want = f.as_name();
                obj.all(tags::NAME).any(|x| {
                    x.as_name()
                        .zip(want.as_ref())
                        .is_some_and(|(a, b)| a.value == b.value)
                })
            }
            Some(t) if t == tags::OBJECT_TYPE => {
                obj.enum_of(tags::OBJECT_TYPE) == f.as_enum::<ObjectType>().map(|o| o.to_u32())
                    || Some(object_type_of(obj.kind).to_u32())
                        == f.as_enum::<ObjectType>().map(|o| o.to_u32())
            }
            Some(t) if t == tags::CRYPTOGRAPHIC_USAGE_MASK => {
                let want = f.as_int().unwrap_or(0);
                obj.first(t)
                    .and_then(Attribute::as_int)
                    .is_some_and(|have| have & want == want)
            }
            _ => obj.find(&f.name).any(|x| x.value == f.value),
        };
        if !ok {
            return false;
        }
    }
    date_ranges.iter().all(|(tag, lo, hi)| {
        obj.first(*tag)
            .and_then(Attribute::as_datetime)
            .is_some_and(|d| d >= *lo && d <= *hi)
    })
}

fn discover_versions(r: &DiscoverVersionsRequest) -> DiscoverVersionsResponse {
    let ours = SUPPORTED_VERSIONS
        .iter()
        .map(|&(major, minor)| ProtocolVersion { major, minor });
    let versions = if r.versions.is_empty() {
        ours.collect()
    } else {
        // The client's order of preference, restricted to what we speak.
        r.versions
            .iter()
            .copied()
            .filter(|v| ours.clone().any(|o| o == *v))
            .collect()
    };
    DiscoverVersionsResponse { versions }
}

fn query(r: &QueryRequest) -> QueryResponse {
    let mut resp = QueryResponse::default();
    for f in &r.functions {
        match f {
            QueryFunction::QueryOperations => resp.operations = SUPPORTED_OPERATIONS.to_vec(),
            QueryFunction::QueryObjects => resp.object_types = SUPPORTED_OBJECT_TYPES.to_vec(),
            QueryFunction::QueryServerInformation => {
                resp.vendor_identification = Some(VENDOR_IDENTIFICATION.to_owned());
                resp.server_information = Some(kmip_wire::ttlv::Ttlv::structure(
                    tags::SERVER_INFORMATION,
                    vec![],
                ));
            }
            _ => {}
        }
    }
    resp
}

#[cfg(test)]
mod tests;
