//! The gateway's view of managed objects: every object's attributes in memory (Locate and
//! GetAttributes never touch the backend), persisted through the backend as an opaque blob.
//!
//! Writes to one object are serialised by a per-object lock and applied copy-on-write: the new
//! version is made durable by the backend first, and only then becomes visible to readers. A
//! reader therefore never sees a change that was not acknowledged by the backend.
//!
//! On a backend several gateways share ([`Backend::shared`]), every write passes the version
//! it read and is retried on a fresh copy when another instance wrote first, and the store
//! follows the backend's change feed (`follow.rs`), so this instance's indexes and Locate cache
//! learn of the others' writes.

use crate::kmip::locate_cache::{Dependency, Generations};
use dashmap::DashMap;
use kmip_backends::asym::KeyPairSpec;
use kmip_backends::{Backend, BackendError, KeySpec, ObjectRecord};
use kmip_wire::model::{Attribute, AttributeName, KmipEnum, State};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use thiserror::Error;
use zeroize::Zeroizing;

mod compact;
mod follow;
mod index;
mod locks;
mod meta;
mod object;
#[cfg(test)]
mod tests;

pub use follow::{FEED_DEGRADED_AFTER, FOLLOW_INTERVAL};
pub use index::object_type_of;
pub use object::{AttributeView, ObjectDraft, StoredObject};

/// Attempts of one write on a shared backend, the first included: each failed one lost a race
/// with another instance's write to the same object and re-read it. Bounds the work one request
/// spends on a hot object; past it the write fails (General Failure) rather than spin.
pub const MAX_WRITE_ATTEMPTS: usize = 8;

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
    /// Keyed by the object's own identifier string (shared, not copied).
    objects: DashMap<Arc<str>, Arc<StoredObject>>,
    /// One string per owner, shared by all its objects.
    owners: dashmap::DashSet<Arc<str>>,
    write_locks: locks::WriteLocks,
    generations: Arc<Generations>,
    /// Attribute values → objects, so that Locate by the attributes clients use and name
    /// uniqueness never scan every object. Kept in step with `objects` by [`Store::reindex`].
    index: RwLock<index::Index>,
    /// Writes of [`Store::update_lazily`] still running, awaited by [`Store::flush_background`].
    background: std::sync::Mutex<tokio::task::JoinSet<()>>,
    /// Owner → live objects it owns, plus creations under way (reserved before the backend
    /// write): the per-user quota is one map lookup, never a scan.
    live: DashMap<String, usize>,
    /// Where this instance is in a shared backend's change feed.
    feed: follow::Feed,
}

/// The attributes whose values differ between two versions of an object.
fn changed_attributes(old: &StoredObject, new: &StoredObject) -> Vec<Dependency> {
    let (old, new): (Vec<Attribute>, Vec<Attribute>) =
        (old.attributes().collect(), new.attributes().collect());
    let values = |all: &'_ [Attribute], name: &AttributeName| -> Vec<Value> {
        all.iter()
            .filter(|x| &x.name == name)
            .map(|x| x.value.clone())
            .collect()
    };
    let mut changed: Vec<Dependency> = Vec::new();
    for a in old.iter().chain(new.iter()) {
        let dep = Dependency::Attribute(a.name.clone());
        if changed.contains(&dep) {
            continue;
        }
        if values(&old, &a.name) != values(&new, &a.name) {
            changed.push(dep);
        }
    }
    changed
}

impl Store {
    /// Loads every object from the backend.
    pub async fn open(backend: Arc<dyn Backend>) -> Result<Store, StoreError> {
        let records = backend.load_all().await?;
        let store = Store {
            backend: backend.clone(),
            objects: DashMap::with_capacity(records.len()),
            owners: dashmap::DashSet::new(),
            write_locks: locks::WriteLocks::default(),
            generations: Arc::new(Generations::default()),
            index: RwLock::default(),
            background: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            live: DashMap::new(),
            feed: follow::Feed::default(),
        };
        let objects = records
            .into_iter()
            .map(|record| StoredObject::from_record(record, |o| store.intern(o)).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        // The index is built on a thread of its own while the object map fills: the two share
        // only the objects, and at a million objects each takes seconds of the start.
        let index = std::thread::scope(|s| {
            let building = s.spawn(|| index::Index::build(&objects));
            for obj in &objects {
                store.recount(None, Some(obj));
                store.objects.insert(obj.uid.clone(), obj.clone());
            }
            building.join()
        })
        .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked));
        *store.index.write().unwrap_or_else(|e| e.into_inner()) = index;
        Ok(store)
    }

    /// The one shared string of `owner`.
    fn intern(&self, owner: &str) -> Arc<str> {
        if let Some(shared) = self.owners.get(owner) {
            return shared.clone();
        }
        let shared: Arc<str> = owner.into();
        self.owners.insert(shared.clone());
        shared
    }

    /// The object a finished draft makes, its owner's string shared.
    fn finish(&self, draft: ObjectDraft) -> StoredObject {
        draft.finish_with(|o| self.intern(o))
    }

    /// The next version of `current` a finished draft makes: it also shares `current`'s
    /// identifier string, which the map key and the indexes hold (a new string per version
    /// would leave them holding the first one, a second copy).
    fn finish_next(&self, draft: ObjectDraft, current: &StoredObject) -> StoredObject {
        let mut next = self.finish(draft);
        if next.uid == current.uid {
            next.uid = current.uid.clone();
        }
        next
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Makes `new` the version of `uid` the secondary index holds, or takes the object out of
    /// it (`None`). Called wherever `objects` changes: at open, on every write, undo and feed
    /// change.
    fn reindex(&self, uid: &str, new: Option<&Arc<StoredObject>>) {
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set(uid, new);
    }

    /// Keeps the live-object counts right across a change from `old` to `new` of one object.
    fn recount(&self, old: Option<&StoredObject>, new: Option<&StoredObject>) {
        let Some(owner) = new.or(old).map(|o| &*o.owner) else {
            return;
        };
        match (old.is_some_and(is_live), new.is_some_and(is_live)) {
            // Looked up before it is entered: an owner's string is copied once, not per object.
            (false, true) => match self.live.get_mut(owner) {
                Some(mut n) => *n += 1,
                None => *self.live.entry(owner.to_owned()).or_default() += 1,
            },
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

    /// Objects with this Name value.
    pub fn by_name(&self, name: &str) -> Vec<Arc<StoredObject>> {
        let named = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .named(name);
        named.unwrap_or_else(|| {
            self.snapshot()
                .into_iter()
                .filter(|o| {
                    o.all(tags::NAME)
                        .any(|a| a.as_name().is_some_and(|n| n.value == name))
                })
                .collect()
        })
    }

    /// A superset of the objects that satisfy every attribute of a Locate `filter`, from the
    /// index; `None` when no attribute of the filter is indexed, so that only a scan
    /// ([`Store::snapshot`]) can answer it. Locate applies the whole filter to either.
    pub fn candidates(&self, filter: &[Attribute]) -> Option<Vec<Arc<StoredObject>>> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .candidates(filter)
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

    /// Stores a new object whose key the backend generates, if its owner has fewer than
    /// `max_live` live objects.
    pub async fn create(
        &self,
        obj: ObjectDraft,
        spec: KeySpec,
        max_live: usize,
    ) -> Result<Arc<StoredObject>, StoreError> {
        self.store_new(obj, max_live, |record| self.backend.generate(record, spec))
            .await
    }

    /// Stores a new key pair the backend generates (both objects or neither), if their owner
    /// has room for two more live objects under `max_live`.
    pub async fn create_pair(
        &self,
        private: ObjectDraft,
        public: ObjectDraft,
        spec: KeyPairSpec,
        max_live: usize,
    ) -> Result<(Arc<StoredObject>, Arc<StoredObject>), StoreError> {
        let (private, public) = (self.finish(private), self.finish(public));
        // Two fresh identifiers nobody else knows yet: taking both cannot deadlock.
        let _guards = (
            self.write_locks.lock(&private.uid).await,
            self.write_locks.lock(&public.uid).await,
        );
        self.reserve(&private.owner, max_live)?;
        if let Err(e) = self.reserve(&public.owner, max_live) {
            self.release(&private.owner);
            return Err(e);
        }
        let generated = self
            .backend
            .generate_key_pair(private.record(), public.record(), spec)
            .await;
        if let Err(e) = generated {
            self.release(&private.owner);
            self.release(&public.owner);
            return Err(e.into());
        }
        Ok((self.insert_created(private), self.insert_created(public)))
    }

    /// Stores a new client-supplied object, if its owner has fewer than `max_live` live objects.
    pub async fn register(
        &self,
        obj: ObjectDraft,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
        max_live: usize,
    ) -> Result<Arc<StoredObject>, StoreError> {
        self.store_new(obj, max_live, |record| {
            self.backend.import(record, material, spec)
        })
        .await
    }

    /// Stores a new object whose backend record `write` makes: an object the backend holds
    /// already, which the gateway adopts.
    pub async fn adopt<F>(
        &self,
        obj: ObjectDraft,
        max_live: usize,
        write: impl FnOnce(ObjectRecord) -> F,
    ) -> Result<Arc<StoredObject>, StoreError>
    where
        F: std::future::Future<Output = Result<(), BackendError>>,
    {
        self.store_new(obj, max_live, write).await
    }

    /// Stores a new object, durably through `write`, then makes it visible. Refused when the
    /// identifier is taken (a live object or a tombstone) or the owner has `max_live` live
    /// objects; a failed write gives the owner's reserved slot back.
    async fn store_new<F>(
        &self,
        obj: ObjectDraft,
        max_live: usize,
        write: impl FnOnce(ObjectRecord) -> F,
    ) -> Result<Arc<StoredObject>, StoreError>
    where
        F: std::future::Future<Output = Result<(), BackendError>>,
    {
        let obj = self.finish(obj);
        // Held until the object is in the map: the feed's echo of this creation waits for it,
        // then finds its version already there.
        let _guard = self.write_locks.lock(&obj.uid).await;
        if self.objects.contains_key(&*obj.uid) {
            return Err(BackendError::AlreadyExists(obj.uid.to_string()).into());
        }
        self.reserve(&obj.owner, max_live)?;
        if let Err(e) = write(obj.record()).await {
            self.release(&obj.owner);
            return Err(e.into());
        }
        Ok(self.insert_created(obj))
    }

    /// Makes a durably created object visible (its owner's slot was reserved before the write).
    fn insert_created(&self, obj: StoredObject) -> Arc<StoredObject> {
        let obj = Arc::new(obj);
        self.reindex(&obj.uid, Some(&obj));
        self.objects.insert(obj.uid.clone(), obj.clone());
        self.generations.bump([Dependency::Membership]);
        obj
    }

    /// Makes `next`, just written durably over `current`, the visible version. The caller holds
    /// the object's write lock.
    fn install_written(
        &self,
        current: &Arc<StoredObject>,
        next: StoredObject,
    ) -> Arc<StoredObject> {
        let changed = changed_attributes(current, &next);
        let next = Arc::new(next);
        self.reindex(&next.uid, Some(&next));
        self.recount(Some(current), Some(&next));
        self.objects.insert(next.uid.clone(), next.clone());
        self.generations.bump(changed);
        next
    }

    /// Makes a stored record the visible version, as a local write would (indexes, live counts,
    /// Locate cache generations), if it is newer than the local one, or whatever the local one
    /// is with `force` (after a lost race, the stored version is the truth). The caller holds
    /// the object's write lock.
    fn install(&self, record: ObjectRecord, force: bool) -> Result<(), StoreError> {
        let current = self.get(&record.uid);
        if !force
            && current
                .as_ref()
                .is_some_and(|c| c.version >= record.version)
        {
            return Ok(());
        }
        let mut next = StoredObject::from_record(record, |o| self.intern(o))?;
        if let Some(c) = current.as_ref().filter(|c| c.uid == next.uid) {
            next.uid = c.uid.clone();
        }
        let next = Arc::new(next);
        let changed = match &current {
            Some(c) => changed_attributes(c, &next),
            None => vec![Dependency::Membership],
        };
        self.reindex(&next.uid, Some(&next));
        self.recount(current.as_deref(), Some(&next));
        self.objects.insert(next.uid.clone(), next);
        self.generations.bump(changed);
        Ok(())
    }

    /// Forgets an object that no longer exists in the backend. The caller holds its write lock.
    fn uninstall(&self, uid: &str) {
        if let Some((_, old)) = self.objects.remove(uid) {
            self.reindex(uid, None);
            self.recount(Some(&old), None);
            self.generations.bump([Dependency::Membership]);
        }
    }

    /// Re-reads one object from a shared backend and makes the stored version the visible one.
    /// The caller holds the object's write lock.
    async fn refresh(&self, uid: &str) -> Result<(), StoreError> {
        let Some(shared) = self.backend.shared() else {
            return Ok(());
        };
        match shared.load(uid).await? {
            Some(record) => self.install(record, true),
            None => {
                self.uninstall(uid);
                Ok(())
            }
        }
    }

    /// After a write failed with `e`: a conflict on a shared backend, with attempts left after
    /// `attempt`, re-reads the object so that the write can run again on the fresh copy (`Ok`);
    /// any other failure is the write's error.
    async fn after_failed_write(
        &self,
        uid: &str,
        e: BackendError,
        attempt: &mut usize,
    ) -> Result<(), StoreError> {
        match e {
            BackendError::Conflict(_)
                if *attempt < MAX_WRITE_ATTEMPTS && self.backend.shared().is_some() =>
            {
                *attempt += 1;
                metrics::counter!("kmip_store_write_conflicts_total").increment(1);
                self.refresh(uid).await
            }
            e => Err(e.into()),
        }
    }

    /// Applies `change` to a copy of the object; if it succeeds, makes the new version durable
    /// and visible. `change` sees the latest version: writes to one object are serialised, and
    /// on a shared backend a write that lost a race with another instance's runs `change` again
    /// on the re-read object (up to [`MAX_WRITE_ATTEMPTS`]), so a check-and-charge (Usage
    /// Limits) is never applied to a stale copy.
    /// The error is the caller's: `change`'s own, or one of the store's converted into it.
    pub async fn update<R, E>(
        &self,
        uid: &str,
        mut change: impl FnMut(&mut ObjectDraft) -> Result<R, E>,
    ) -> Result<(Written, R), E>
    where
        E: From<StoreError> + From<NoSuchObject>,
    {
        let _guard = self.write_locks.lock(uid).await;
        let mut attempt = 1;
        loop {
            let current = self.get(uid).ok_or(NoSuchObject)?;
            let mut next = current.draft();
            let r = change(&mut next)?;
            next.version = current.version + 1;
            let next = self.finish_next(next, &current);
            match self
                .backend
                .update_meta(uid, next.to_meta(), current.version)
                .await
            {
                Ok(()) => {
                    let after = self.install_written(&current, next);
                    let written = Written {
                        before: Some(current),
                        after,
                    };
                    return Ok((written, r));
                }
                Err(e) => self.after_failed_write(uid, e, &mut attempt).await?,
            }
        }
    }

    /// Applies `change` at once and makes it durable in the background, for informational
    /// attributes whose loss in a crash is harmless (Fresh). The object's write lock is held
    /// until the write is done, and the write stores the latest version, so later writes
    /// cannot be overtaken by it. On a shared backend, a background write that fails (another
    /// instance wrote first) re-reads the object, or if that fails too (the database is out of
    /// reach) puts the copy read before back: the local version never stays ahead of the
    /// stored one.
    pub async fn update_lazily(
        self: &Arc<Self>,
        uid: &str,
        change: impl FnOnce(&mut ObjectDraft),
    ) -> Option<Written> {
        let guard = self.write_locks.lock(uid).await;
        let current = self.get(uid)?;
        let mut next = current.draft();
        change(&mut next);
        next.version = current.version + 1;
        let next = self.finish_next(next, &current);
        let after = self.install_written(&current, next);
        let stored_copy = current.clone();
        let written = Written {
            before: Some(current),
            after,
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
                if let Err(e) = this.refresh(&uid).await {
                    // The database is out of reach: the stored copy comes back, so that the
                    // local version is not one ahead and the feed's next change of the object
                    // (which takes that version number) is not mistaken for an echo.
                    tracing::warn!(uid = %uid, error = %e, "re-reading the object after a failed background write failed; the lazily changed attributes are dropped");
                    this.install_written(&latest, (*stored_copy).clone());
                }
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
    /// (`change` marks it Destroyed). Retried on a fresh copy like [`Store::update`].
    pub async fn destroy<E>(
        &self,
        uid: &str,
        mut change: impl FnMut(&mut ObjectDraft) -> Result<(), E>,
    ) -> Result<Arc<StoredObject>, E>
    where
        E: From<StoreError> + From<NoSuchObject>,
    {
        let _guard = self.write_locks.lock(uid).await;
        let mut attempt = 1;
        loop {
            let current = self.get(uid).ok_or(NoSuchObject)?;
            let mut next = current.draft();
            change(&mut next)?;
            next.version = current.version + 1;
            let next = self.finish_next(next, &current);
            match self
                .backend
                .destroy(uid, Some(next.to_meta()), current.version)
                .await
            {
                Ok(()) => return Ok(self.install_written(&current, next)),
                Err(e) => self.after_failed_write(uid, e, &mut attempt).await?,
            }
        }
    }

    /// Whether `expected` is still the object's current version (compared by identity: every
    /// write makes a new one).
    fn is_current(&self, expected: &Arc<StoredObject>) -> Option<Arc<StoredObject>> {
        self.get(&expected.uid)
            .filter(|current| Arc::ptr_eq(current, expected))
    }

    /// Undoes one write: puts back `previous` if the object is still at `expected`, the version
    /// that write made. Anything written since (by anyone, on any instance) stays: `Ok(false)`.
    pub async fn restore(
        &self,
        expected: &Arc<StoredObject>,
        previous: Arc<StoredObject>,
    ) -> Result<bool, StoreError> {
        let _guard = self.write_locks.lock(&previous.uid).await;
        let Some(current) = self.is_current(expected) else {
            return Ok(false);
        };
        let mut previous = (*previous).clone();
        previous.version = current.version + 1;
        match self
            .backend
            .update_meta(&previous.uid, previous.to_meta(), current.version)
            .await
        {
            Ok(()) => {
                self.install_written(&current, previous);
                Ok(true)
            }
            // Another instance wrote since: re-read, and that write stays.
            Err(e) => self
                .after_failed_write(&expected.uid, e, &mut 1)
                .await
                .map(|()| false),
        }
    }

    /// Undoes a creation: removes the object entirely, leaving no tombstone, if it is still at
    /// `expected`, the version the creation made; otherwise leaves it (`Ok(false)`).
    pub async fn remove(&self, expected: &Arc<StoredObject>) -> Result<bool, StoreError> {
        let uid = &*expected.uid;
        let _guard = self.write_locks.lock(uid).await;
        if self.is_current(expected).is_none() {
            return Ok(false);
        }
        match self.backend.destroy(uid, None, expected.version).await {
            Ok(()) => {
                self.uninstall(uid);
                Ok(true)
            }
            Err(e) => self
                .after_failed_write(uid, e, &mut 1)
                .await
                .map(|()| false),
        }
    }

    pub async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.backend.read_material(uid).await
    }
}
