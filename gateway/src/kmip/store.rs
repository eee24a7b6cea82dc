//! The gateway's view of managed objects: every object's attributes in memory (Locate and
//! GetAttributes never touch the backend), persisted through the backend as an opaque blob.
//!
//! Writes to one object are serialised by a per-object lock and applied copy-on-write: the new
//! version is made durable by the backend first, and only then becomes visible to readers. A
//! reader therefore never sees a change that was not acknowledged by the backend.

use crate::kmip::locate_cache::{Dependency, Generations};
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use kmip_backends::{Backend, BackendError, KeySpec, ObjectKind, ObjectRecord};
use kmip_wire::model::{Attribute, AttributeName, KmipEnum, State};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Tag, Ttlv, Value};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use zeroize::Zeroizing;

/// Private extension tags of the metadata blob (KMIP reserves 0x54xxxx for extensions).
const META_RECORD: Tag = Tag(0x54_FF00);
const META_VERSION: Tag = Tag(0x54_FF01);
const META_OWNER: Tag = Tag(0x54_FF02);
const META_ATTRIBUTE: Tag = Tag(0x54_FF03);
const META_NAME_KEY: Tag = Tag(0x54_FF04);
const META_INDEX: Tag = Tag(0x54_FF05);
const META_VALUE: Tag = Tag(0x54_FF06);
/// Format version of the metadata blob; a blob of another version is refused, not guessed at.
const META_FORMAT: i32 = 1;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("object {0} has unreadable metadata: {1}")]
    BadMeta(String, String),
    /// The owner already has `limit` live objects (`limits.max_objects_per_user`).
    #[error("limits.max_objects_per_user ({limit}) reached")]
    ObjectLimit { limit: usize },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The object a write addresses does not exist. The caller's error type says what that means to
/// its client (the store knows nothing of KMIP Result Reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSuchObject;

/// One managed object as the gateway knows it.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub uid: String,
    pub kind: ObjectKind,
    /// The user who created or registered it.
    pub owner: String,
    pub attributes: Vec<Attribute>,
    /// The backend's write counter of this version ([`ObjectRecord::version`]): 1 once created,
    /// one more per durable write.
    pub version: u64,
}

impl StoredObject {
    pub fn first(&self, tag: Tag) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.is(tag))
    }

    pub fn all(&self, tag: Tag) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(move |a| a.is(tag))
    }

    pub fn find<'a>(&'a self, name: &'a AttributeName) -> impl Iterator<Item = &'a Attribute> {
        self.attributes.iter().filter(move |a| &a.name == name)
    }

    pub fn enum_of(&self, tag: Tag) -> Option<u32> {
        self.first(tag).and_then(|a| match a.value {
            Value::Enumeration(e) => Some(e),
            _ => None,
        })
    }

    /// Replaces every instance of a single-valued attribute.
    pub fn set(&mut self, tag: Tag, value: Value) {
        self.attributes.retain(|a| !a.is(tag));
        self.attributes.push(Attribute::new(tag, value));
    }

    pub fn remove(&mut self, tag: Tag) {
        self.attributes.retain(|a| !a.is(tag));
    }

    /// A canonical byte form of an attribute (name and value), for cache keys.
    pub fn attribute_key(a: &Attribute) -> Vec<u8> {
        let mut fields = vec![Ttlv::new(
            META_NAME_KEY,
            Value::TextString(Self::name_key(&a.name)),
        )];
        fields.push(Ttlv::new(META_VALUE, a.value.clone()));
        Ttlv::structure(META_ATTRIBUTE, fields)
            .to_bytes()
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    fn name_key(name: &AttributeName) -> String {
        match name {
            AttributeName::Tag(t) => format!("t:{:06x}", t.0),
            AttributeName::Vendor { vendor, name } => format!("v:{vendor}:{name}"),
            AttributeName::Unknown(n) => format!("u:{n}"),
        }
    }

    fn parse_name_key(key: &str) -> Option<AttributeName> {
        let (kind, rest) = key.split_once(':')?;
        match kind {
            "t" => u32::from_str_radix(rest, 16)
                .ok()
                .map(|t| AttributeName::Tag(Tag(t))),
            "v" => rest.split_once(':').map(|(v, n)| AttributeName::Vendor {
                vendor: v.to_owned(),
                name: n.to_owned(),
            }),
            "u" => Some(AttributeName::Unknown(rest.to_owned())),
            _ => None,
        }
    }

    /// The metadata blob handed to the backend.
    pub fn to_meta(&self) -> Vec<u8> {
        let mut items = vec![
            Ttlv::new(META_VERSION, Value::Integer(META_FORMAT)),
            Ttlv::new(META_OWNER, Value::TextString(self.owner.clone())),
        ];
        for a in &self.attributes {
            let mut fields = vec![Ttlv::new(
                META_NAME_KEY,
                Value::TextString(Self::name_key(&a.name)),
            )];
            if let Some(i) = a.index {
                fields.push(Ttlv::new(META_INDEX, Value::Integer(i)));
            }
            fields.push(Ttlv::new(META_VALUE, a.value.clone()));
            items.push(Ttlv::structure(META_ATTRIBUTE, fields));
        }
        let record = Ttlv::structure(META_RECORD, items);
        let mut out = BytesMut::with_capacity(record.encoded_len());
        // Encoding only fails for tags over 24 bits, and every tag here is a constant below that.
        let _ = record.encode(&mut out);
        out.to_vec()
    }

    fn from_record(record: ObjectRecord) -> Result<StoredObject, StoreError> {
        let bad = |why: &str| StoreError::BadMeta(record.uid.clone(), why.to_owned());
        let limits = Limits {
            max_message_size: usize::MAX,
            ..Limits::default()
        };
        let root =
            decode(&Bytes::from(record.meta.clone()), &limits).map_err(|e| bad(&e.to_string()))?;
        if root.tag != META_RECORD
            || root.child(META_VERSION).and_then(Ttlv::as_i32) != Some(META_FORMAT)
        {
            return Err(bad("not a kmip-gateway metadata record of a known format"));
        }
        let owner = root
            .child(META_OWNER)
            .and_then(Ttlv::as_text)
            .ok_or_else(|| bad("no owner"))?
            .to_owned();
        let mut attributes = Vec::new();
        for a in root.children(META_ATTRIBUTE) {
            let name = a
                .child(META_NAME_KEY)
                .and_then(Ttlv::as_text)
                .and_then(Self::parse_name_key)
                .ok_or_else(|| bad("attribute without a valid name"))?;
            let value = a
                .child(META_VALUE)
                .ok_or_else(|| bad("attribute without a value"))?
                .value
                .clone();
            attributes.push(Attribute {
                name,
                index: a.child(META_INDEX).and_then(Ttlv::as_i32),
                value,
            });
        }
        Ok(StoredObject {
            uid: record.uid,
            kind: record.kind,
            owner,
            attributes,
            version: record.version,
        })
    }

    fn record(&self) -> ObjectRecord {
        ObjectRecord {
            uid: self.uid.clone(),
            kind: self.kind,
            meta: self.to_meta(),
            version: self.version,
        }
    }
}

/// One durable write to an object: the version it replaced (`None`: it created the object) and
/// the one it made visible. Undo compares the object's current version with `after` by identity.
#[derive(Debug, Clone)]
pub struct Written {
    pub before: Option<Arc<StoredObject>>,
    pub after: Arc<StoredObject>,
}

/// Whether an object counts against its owner's `limits.max_objects_per_user`: not destroyed.
fn is_live(obj: &StoredObject) -> bool {
    !matches!(
        obj.enum_of(tags::STATE).map(State::from_u32),
        Some(State::Destroyed | State::DestroyedCompromised)
    )
}

/// All objects, in memory, backed by a [`Backend`].
pub struct Store {
    backend: Arc<dyn Backend>,
    objects: DashMap<String, Arc<StoredObject>>,
    write_locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    generations: Arc<Generations>,
    /// Name value → identifiers, so Locate by Name and name uniqueness never scan every object.
    names: DashMap<String, Vec<String>>,
    /// Object Group → identifiers, for Locate by Object Group.
    groups: DashMap<String, Vec<String>>,
    /// Writes of [`Store::update_lazily`] still running, awaited by [`Store::flush_background`].
    background: std::sync::Mutex<tokio::task::JoinSet<()>>,
    /// Owner → live objects it owns, plus creations under way (reserved before the backend
    /// write): the per-user quota is one map lookup, never a scan.
    live: DashMap<String, usize>,
}

/// The values of `obj`'s attribute `tag` that an index keys on.
fn index_values(obj: Option<&StoredObject>, tag: Tag) -> Vec<String> {
    let Some(obj) = obj else { return Vec::new() };
    obj.all(tag)
        .filter_map(|a| {
            if tag == tags::NAME {
                a.as_name().map(|n| n.value)
            } else {
                a.as_text().map(str::to_owned)
            }
        })
        .collect()
}

/// The attributes whose values differ between two versions of an object.
fn changed_attributes(old: &StoredObject, new: &StoredObject) -> Vec<Dependency> {
    let mut changed: Vec<Dependency> = Vec::new();
    for a in old.attributes.iter().chain(new.attributes.iter()) {
        let dep = Dependency::Attribute(a.name.clone());
        if changed.contains(&dep) {
            continue;
        }
        let before = old.find(&a.name).map(|x| &x.value);
        let after = new.find(&a.name).map(|x| &x.value);
        if !before.eq(after) {
            changed.push(dep);
        }
    }
    changed
}

impl Store {
    /// Loads every object from the backend.
    pub async fn open(backend: Arc<dyn Backend>) -> Result<Store, StoreError> {
        let store = Store {
            backend: backend.clone(),
            objects: DashMap::new(),
            write_locks: DashMap::new(),
            generations: Arc::new(Generations::default()),
            names: DashMap::new(),
            groups: DashMap::new(),
            background: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            live: DashMap::new(),
        };
        for record in backend.load_all().await? {
            let obj = StoredObject::from_record(record)?;
            store.reindex(&obj.uid, None, Some(&obj));
            store.recount(None, Some(&obj));
            store.objects.insert(obj.uid.clone(), Arc::new(obj));
        }
        Ok(store)
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Moves `uid` in the secondary indexes from `old`'s values to `new`'s.
    fn reindex(&self, uid: &str, old: Option<&StoredObject>, new: Option<&StoredObject>) {
        for (index, tag) in [
            (&self.names, tags::NAME),
            (&self.groups, tags::OBJECT_GROUP),
        ] {
            let before = index_values(old, tag);
            let after = index_values(new, tag);
            for gone in before.iter().filter(|v| !after.contains(v)) {
                if let Some(mut ids) = index.get_mut(gone) {
                    ids.retain(|u| u != uid);
                }
                index.remove_if(gone, |_, ids| ids.is_empty());
            }
            for added in after.iter().filter(|v| !before.contains(v)) {
                let mut ids = index.entry(added.clone()).or_default();
                if !ids.iter().any(|u| u == uid) {
                    ids.push(uid.to_owned());
                }
            }
        }
    }

    /// Keeps the live-object counts right across a change from `old` to `new` of one object.
    fn recount(&self, old: Option<&StoredObject>, new: Option<&StoredObject>) {
        let Some(owner) = new.or(old).map(|o| o.owner.as_str()) else {
            return;
        };
        match (old.is_some_and(is_live), new.is_some_and(is_live)) {
            (false, true) => *self.live.entry(owner.to_owned()).or_default() += 1,
            (true, false) => self.release(owner),
            _ => {}
        }
    }

    /// Takes one of `owner`'s `limit` object slots for a creation, atomically with the check
    /// (the map entry is locked), so concurrent creations cannot overshoot the limit.
    fn reserve(&self, owner: &str, limit: usize) -> Result<(), StoreError> {
        let mut n = self.live.entry(owner.to_owned()).or_default();
        if *n >= limit {
            return Err(StoreError::ObjectLimit { limit });
        }
        *n += 1;
        Ok(())
    }

    fn release(&self, owner: &str) {
        if let Some(mut n) = self.live.get_mut(owner) {
            *n = n.saturating_sub(1);
        }
    }

    /// Live (not destroyed) objects `owner` owns.
    pub fn live_objects(&self, owner: &str) -> usize {
        self.live.get(owner).map_or(0, |n| *n)
    }

    fn indexed(&self, index: &DashMap<String, Vec<String>>, value: &str) -> Vec<Arc<StoredObject>> {
        let ids = index.get(value).map(|ids| ids.clone()).unwrap_or_default();
        ids.iter().filter_map(|u| self.get(u)).collect()
    }

    /// Objects with this Name value.
    pub fn by_name(&self, name: &str) -> Vec<Arc<StoredObject>> {
        self.indexed(&self.names, name)
    }

    /// Objects in this Object Group.
    pub fn by_group(&self, group: &str) -> Vec<Arc<StoredObject>> {
        self.indexed(&self.groups, group)
    }

    /// Change sequence numbers of this store's writes, for the Locate cache.
    pub fn generations(&self) -> &Arc<Generations> {
        &self.generations
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn get(&self, uid: &str) -> Option<Arc<StoredObject>> {
        self.objects.get(uid).map(|o| o.value().clone())
    }

    /// A consistent-enough snapshot of every object, for Locate.
    pub fn snapshot(&self) -> Vec<Arc<StoredObject>> {
        self.objects.iter().map(|e| e.value().clone()).collect()
    }

    fn lock_for(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.write_locks
            .entry(uid.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone()
    }

    /// Stores a new object whose key the backend generates, if its owner has fewer than
    /// `max_live` live objects.
    pub async fn create(
        &self,
        obj: StoredObject,
        spec: KeySpec,
        max_live: usize,
    ) -> Result<Arc<StoredObject>, StoreError> {
        self.reserve(&obj.owner, max_live)?;
        if let Err(e) = self.backend.generate(obj.record(), spec).await {
            self.release(&obj.owner);
            return Err(e.into());
        }
        let obj = Arc::new(obj);
        self.reindex(&obj.uid, None, Some(&obj));
        self.objects.insert(obj.uid.clone(), obj.clone());
        self.generations.bump([Dependency::Membership]);
        Ok(obj)
    }

    /// Stores a new client-supplied object, if its owner has fewer than `max_live` live objects.
    pub async fn register(
        &self,
        obj: StoredObject,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
        max_live: usize,
    ) -> Result<Arc<StoredObject>, StoreError> {
        self.reserve(&obj.owner, max_live)?;
        if let Err(e) = self.backend.import(obj.record(), material, spec).await {
            self.release(&obj.owner);
            return Err(e.into());
        }
        let obj = Arc::new(obj);
        self.reindex(&obj.uid, None, Some(&obj));
        self.objects.insert(obj.uid.clone(), obj.clone());
        self.generations.bump([Dependency::Membership]);
        Ok(obj)
    }

    /// Applies `change` to a copy of the object; if it succeeds, makes the new version durable
    /// and visible. `change` sees the latest version: writes to one object are serialised.
    /// The error is the caller's: `change`'s own, or one of the store's converted into it.
    pub async fn update<R, E>(
        &self,
        uid: &str,
        change: impl FnOnce(&mut StoredObject) -> Result<R, E>,
    ) -> Result<(Written, R), E>
    where
        E: From<StoreError> + From<NoSuchObject>,
    {
        let lock = self.lock_for(uid);
        let _guard = lock.lock().await;
        let current = self.get(uid).ok_or(NoSuchObject)?;
        let mut next = (*current).clone();
        let r = change(&mut next)?;
        next.version = current.version + 1;
        self.backend
            .update_meta(uid, next.to_meta(), current.version)
            .await
            .map_err(StoreError::from)?;
        let changed = changed_attributes(&current, &next);
        let next = Arc::new(next);
        self.reindex(uid, Some(&current), Some(&next));
        self.recount(Some(&current), Some(&next));
        self.objects.insert(uid.to_owned(), next.clone());
        self.generations.bump(changed);
        let written = Written {
            before: Some(current),
            after: next,
        };
        Ok((written, r))
    }

    /// Applies `change` at once and makes it durable in the background, for informational
    /// attributes whose loss in a crash is harmless (Fresh). The object's write lock is held
    /// until the write is done, and the write stores the latest version, so later writes
    /// cannot be overtaken by it.
    pub async fn update_lazily(
        self: &Arc<Self>,
        uid: &str,
        change: impl FnOnce(&mut StoredObject),
    ) -> Option<Written> {
        let guard = self.lock_for(uid).lock_owned().await;
        let current = self.get(uid)?;
        let mut next = (*current).clone();
        change(&mut next);
        next.version = current.version + 1;
        let changed = changed_attributes(&current, &next);
        let next = Arc::new(next);
        self.reindex(uid, Some(&current), Some(&next));
        self.recount(Some(&current), Some(&next));
        self.objects.insert(uid.to_owned(), next.clone());
        self.generations.bump(changed);
        let written = Written {
            before: Some(current),
            after: next,
        };
        let this = self.clone();
        let uid = uid.to_owned();
        let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
        // Finished writes are reaped here, so the set holds only the ones still running.
        while background.try_join_next().is_some() {}
        background.spawn(async move {
            let _guard = guard;
            let Some(latest) = this.get(&uid) else { return };
            // The lazily applied version is already visible, so the stored one is one behind.
            let stored = latest.version.saturating_sub(1);
            if let Err(e) = this
                .backend
                .update_meta(&uid, latest.to_meta(), stored)
                .await
            {
                tracing::warn!(uid = %uid, error = %e, "background attribute write failed");
            }
        });
        Some(written)
    }

    /// Waits up to `timeout` for the background writes still running, so that a graceful stop
    /// keeps what a Get changed (Fresh); only a crash may lose it. Whether all of them finished.
    pub async fn flush_background(&self, timeout: Duration) -> bool {
        let mut running =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
        tokio::time::timeout(timeout, async {
            while running.join_next().await.is_some() {}
        })
        .await
        .is_ok()
    }

    /// KMIP Destroy: the material goes for good; the object stays with its attributes
    /// (`change` marks it Destroyed).
    pub async fn destroy<E>(
        &self,
        uid: &str,
        change: impl FnOnce(&mut StoredObject) -> Result<(), E>,
    ) -> Result<Arc<StoredObject>, E>
    where
        E: From<StoreError> + From<NoSuchObject>,
    {
        let lock = self.lock_for(uid);
        let _guard = lock.lock().await;
        let current = self.get(uid).ok_or(NoSuchObject)?;
        let mut next = (*current).clone();
        change(&mut next)?;
        next.version = current.version + 1;
        self.backend
            .destroy(uid, Some(next.to_meta()), current.version)
            .await
            .map_err(StoreError::from)?;
        let changed = changed_attributes(&current, &next);
        let next = Arc::new(next);
        self.reindex(uid, Some(&current), Some(&next));
        self.recount(Some(&current), Some(&next));
        self.objects.insert(uid.to_owned(), next.clone());
        self.generations.bump(changed);
        Ok(next)
    }

    /// Whether `expected` is still the object's current version (compared by identity: every
    /// write makes a new one).
    fn is_current(&self, expected: &Arc<StoredObject>) -> Option<Arc<StoredObject>> {
        self.get(&expected.uid)
            .filter(|current| Arc::ptr_eq(current, expected))
    }

    /// Undoes one write: puts back `previous` if the object is still at `expected`, the version
    /// that write made. Anything written since (by anyone) stays: `Ok(false)`.
    pub async fn restore(
        &self,
        expected: &Arc<StoredObject>,
        previous: Arc<StoredObject>,
    ) -> Result<bool, StoreError> {
        let lock = self.lock_for(&previous.uid);
        let _guard = lock.lock().await;
        let Some(current) = self.is_current(expected) else {
            return Ok(false);
        };
        let mut previous = (*previous).clone();
        previous.version = current.version + 1;
        self.backend
            .update_meta(&previous.uid, previous.to_meta(), current.version)
            .await?;
        let previous = Arc::new(previous);
        let changed = changed_attributes(&current, &previous);
        self.reindex(&previous.uid, Some(&current), Some(&previous));
        self.recount(Some(&current), Some(&previous));
        self.objects.insert(previous.uid.clone(), previous);
        self.generations.bump(changed);
        Ok(true)
    }

    /// Undoes a creation: removes the object entirely, leaving no tombstone, if it is still at
    /// `expected`, the version the creation made; otherwise leaves it (`Ok(false)`).
    pub async fn remove(&self, expected: &Arc<StoredObject>) -> Result<bool, StoreError> {
        let uid = expected.uid.as_str();
        let lock = self.lock_for(uid);
        let _guard = lock.lock().await;
        if self.is_current(expected).is_none() {
            return Ok(false);
        }
        self.backend.destroy(uid, None, expected.version).await?;
        if let Some((_, old)) = self.objects.remove(uid) {
            self.reindex(uid, Some(&old), None);
            self.recount(Some(&old), None);
        }
        self.generations.bump([Dependency::Membership]);
        Ok(true)
    }

    pub async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.backend.read_material(uid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_backends::vault::{MasterKeySource, Vault};
    use kmip_backends::{KeyAlgorithm, ObjectKind};
    use kmip_wire::model::Attribute;

    async fn open(dir: &std::path::Path) -> Arc<Store> {
        let vault = Vault::open(dir, MasterKeySource::VaultDir).unwrap();
        Arc::new(Store::open(Arc::new(vault)).await.unwrap())
    }

    /// A graceful stop waits for the background writes: what they wrote is there after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flushed_background_writes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let uids: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        for uid in &uids {
            let obj = StoredObject {
                uid: uid.clone(),
                kind: ObjectKind::SymmetricKey,
                owner: "purefa".into(),
                attributes: vec![Attribute::boolean(tags::FRESH, true)],
                version: 1,
            };
            let spec = KeySpec {
                algorithm: KeyAlgorithm::Aes,
                bits: 256,
                extractable: true,
                sensitive: false,
                label: None,
            };
            store.create(obj, spec, usize::MAX).await.unwrap();
        }
        for uid in &uids {
            store
                .update_lazily(uid, |o| o.set(tags::FRESH, Value::Boolean(false)))
                .await;
        }
        assert!(store.flush_background(Duration::from_secs(10)).await);
        drop(store);
        let store = open(dir.path()).await;
        for uid in &uids {
            let fresh = store.get(uid).and_then(|o| o.first(tags::FRESH).cloned());
            assert_eq!(fresh.and_then(|a| a.as_bool()), Some(false), "{uid}");
        }
    }
}
