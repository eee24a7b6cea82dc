//! The store's tests: single-instance behaviour on the vault, and following a shared backend.

use super::*;
use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_backends::{KeyAlgorithm, ObjectKind};
use kmip_wire::model::Attribute;
use kmip_wire::ttlv::Value;

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

/// A backend several stores share, in memory: the coordination contract of
/// [`kmip_backends::SharedBackend`] (versions compared on write, a change log read from each
/// instance's own place, Name locks), for the store's side of it while no database runs in
/// unit tests. `gate` holds a catch-up after it read the log, to order it against commits.
pub(crate) mod shared {
    use async_trait::async_trait;
    use kmip_backends::{
        Backend, BackendError, Change, CipherOutput, CipherRequest, KeySpec, NameLockGuard,
        ObjectKind, ObjectRecord, SharedBackend,
    };
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use zeroize::Zeroizing;

    /// An object as stored: kind, metadata blob, version.
    type Stored = (ObjectKind, Vec<u8>, u64);

    #[derive(Default)]
    pub(crate) struct Db {
        /// The cluster-wide Name lock (one for every Name: enough for the tests).
        pub(crate) names: Arc<tokio::sync::Mutex<()>>,
        objects: Mutex<HashMap<String, Stored>>,
        /// uids in commit order (the change log); `None`: removed.
        log: Mutex<Vec<(String, bool)>>,
        /// uid → key material (a generated key is all zeros: the tests read it back only).
        material: Mutex<HashMap<String, Vec<u8>>>,
    }

    pub(crate) struct Instance {
        db: Arc<Db>,
        cursor: Mutex<usize>,
        /// Calls of `changes`.
        pub(crate) catch_ups: AtomicUsize,
        /// When set, `changes` waits for a permit after reading the log.
        pub(crate) gate: Option<tokio::sync::Semaphore>,
        /// When set, `changes`, `update_meta` and `load` fail as an unreachable database does.
        pub(crate) unreachable: std::sync::atomic::AtomicBool,
    }

    impl Instance {
        pub(crate) fn new(db: &Arc<Db>, gated: bool) -> Instance {
            Instance {
                db: db.clone(),
                cursor: Mutex::new(db.log.lock().unwrap().len()),
                catch_ups: AtomicUsize::new(0),
                gate: gated.then(|| tokio::sync::Semaphore::new(0)),
                unreachable: std::sync::atomic::AtomicBool::new(false),
            }
        }

        fn reachable(&self) -> Result<(), BackendError> {
            if self.unreachable.load(Ordering::SeqCst) {
                return Err(BackendError::Unavailable("connection refused".into()));
            }
            Ok(())
        }

        fn record(&self, uid: &str) -> Option<ObjectRecord> {
            let objects = self.db.objects.lock().unwrap();
            objects.get(uid).map(|(kind, meta, version)| ObjectRecord {
                uid: uid.to_owned(),
                kind: *kind,
                meta: meta.clone(),
                version: *version,
            })
        }

        fn put(&self, record: ObjectRecord) {
            self.db.objects.lock().unwrap().insert(
                record.uid.clone(),
                (record.kind, record.meta, record.version),
            );
            self.db.log.lock().unwrap().push((record.uid, true));
        }

        fn write(
            &self,
            uid: &str,
            meta: Option<Vec<u8>>,
            expected: u64,
        ) -> Result<(), BackendError> {
            let mut objects = self.db.objects.lock().unwrap();
            let Some(entry) = objects.get_mut(uid) else {
                return Err(BackendError::NotFound(uid.to_owned()));
            };
            if entry.2 != expected {
                return Err(BackendError::Conflict(uid.to_owned()));
            }
            match meta {
                Some(meta) => {
                    entry.1 = meta;
                    entry.2 += 1;
                    self.db.log.lock().unwrap().push((uid.to_owned(), true));
                }
                None => {
                    objects.remove(uid);
                    self.db.log.lock().unwrap().push((uid.to_owned(), false));
                }
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Backend for Instance {
        fn name(&self) -> &'static str {
            "shared-memory"
        }
        async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError> {
            let uids: Vec<String> = self.db.objects.lock().unwrap().keys().cloned().collect();
            Ok(uids.iter().filter_map(|u| self.record(u)).collect())
        }
        async fn generate(&self, record: ObjectRecord, spec: KeySpec) -> Result<(), BackendError> {
            let bytes = vec![0; spec.bits as usize / 8];
            self.db
                .material
                .lock()
                .unwrap()
                .insert(record.uid.clone(), bytes);
            self.put(record);
            Ok(())
        }
        async fn import(
            &self,
            record: ObjectRecord,
            material: Zeroizing<Vec<u8>>,
            _: Option<KeySpec>,
        ) -> Result<(), BackendError> {
            self.db
                .material
                .lock()
                .unwrap()
                .insert(record.uid.clone(), material.to_vec());
            self.put(record);
            Ok(())
        }
        async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
            let material = self.db.material.lock().unwrap();
            let bytes = material
                .get(uid)
                .ok_or_else(|| BackendError::NotFound(uid.to_owned()))?;
            Ok(Zeroizing::new(bytes.clone()))
        }
        async fn update_meta(
            &self,
            uid: &str,
            meta: Vec<u8>,
            expected: u64,
        ) -> Result<(), BackendError> {
            self.reachable()?;
            self.write(uid, Some(meta), expected)
        }
        async fn destroy(
            &self,
            uid: &str,
            tombstone: Option<Vec<u8>>,
            expected: u64,
        ) -> Result<(), BackendError> {
            self.write(uid, tombstone, expected)
        }
        async fn encrypt(&self, uid: &str, _: CipherRequest) -> Result<CipherOutput, BackendError> {
            Err(BackendError::NotFound(uid.to_owned()))
        }
        async fn decrypt(&self, uid: &str, _: CipherRequest) -> Result<CipherOutput, BackendError> {
            Err(BackendError::NotFound(uid.to_owned()))
        }
        async fn mac(&self, uid: &str, _: &[u8]) -> Result<Vec<u8>, BackendError> {
            Err(BackendError::NotFound(uid.to_owned()))
        }
        async fn health(&self) -> Result<(), BackendError> {
            Ok(())
        }
        fn shared(&self) -> Option<&dyn SharedBackend> {
            Some(self)
        }
    }

    #[async_trait]
    impl SharedBackend for Instance {
        async fn changes(&self) -> Result<Vec<Change>, BackendError> {
            self.reachable()?;
            self.catch_ups.fetch_add(1, Ordering::SeqCst);
            let entries: Vec<(String, bool)> = {
                let log = self.db.log.lock().unwrap();
                let mut cursor = self.cursor.lock().unwrap();
                let new = log[*cursor..].to_vec();
                *cursor = log.len();
                new
            };
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            Ok(entries
                .into_iter()
                .map(
                    |(uid, present)| match present.then(|| self.record(&uid)).flatten() {
                        Some(record) => Change::Upsert(record),
                        None => Change::Removed(uid),
                    },
                )
                .collect())
        }
        async fn wait_for_change(&self, timeout: Duration) {
            tokio::time::sleep(timeout).await;
        }
        async fn load(&self, uid: &str) -> Result<Option<ObjectRecord>, BackendError> {
            self.reachable()?;
            Ok(self.record(uid))
        }
        async fn lock_names(&self, _: &[String]) -> Result<NameLockGuard, BackendError> {
            Ok(Box::new(self.db.names.clone().lock_owned().await))
        }
    }
}

/// The error of the tests' writes: the store's, or a missing object.
#[derive(Debug)]
enum TestError {
    #[allow(dead_code)] // read by Debug, when a test fails
    Store(StoreError),
    Missing,
}

impl From<StoreError> for TestError {
    fn from(e: StoreError) -> TestError {
        TestError::Store(e)
    }
}

impl From<NoSuchObject> for TestError {
    fn from(_: NoSuchObject) -> TestError {
        TestError::Missing
    }
}

fn key(uid: &str, attributes: Vec<Attribute>) -> (StoredObject, KeySpec) {
    let obj = StoredObject {
        uid: uid.into(),
        kind: ObjectKind::SymmetricKey,
        owner: "purefa".into(),
        attributes,
        version: 1,
    };
    let spec = KeySpec {
        algorithm: KeyAlgorithm::Aes,
        bits: 256,
        extractable: true,
        sensitive: false,
        label: None,
    };
    (obj, spec)
}

fn name(value: &str) -> Attribute {
    Attribute::name(&kmip_wire::model::Name::new(value))
}

/// Two stores on one shared backend, each with a feed of its own.
async fn pair() -> (Arc<shared::Db>, Arc<Store>, Arc<Store>) {
    let db = Arc::new(shared::Db::default());
    let a = Store::open(Arc::new(shared::Instance::new(&db, false)))
        .await
        .unwrap();
    let b = Store::open(Arc::new(shared::Instance::new(&db, false)))
        .await
        .unwrap();
    (db, Arc::new(a), Arc::new(b))
}

/// What A writes, B's fence makes visible: the object, its Name index, the live count; an
/// attribute change and a Destroy move B's indexes and invalidate its Locate generations.
#[tokio::test]
async fn a_fence_applies_the_other_instances_writes() {
    let (_db, a, b) = pair().await;
    let (obj, spec) = key("k1", vec![name("disk-1")]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    assert!(b.get("k1").is_none());
    let seen = b.generations().current();
    b.fence().await.unwrap();
    assert_eq!(b.get("k1").map(|o| o.version), Some(1));
    assert_eq!(b.by_name("disk-1").len(), 1);
    assert_eq!(b.live_objects("purefa"), 1);
    assert!(b.generations().current() > seen, "membership changed");

    a.update::<(), TestError>("k1", |o| {
        o.remove(tags::NAME);
        o.attributes.push(name("disk-2"));
        Ok(())
    })
    .await
    .unwrap();
    let seen = b.generations().current();
    b.fence().await.unwrap();
    assert!(b.by_name("disk-1").is_empty());
    assert_eq!(b.by_name("disk-2").len(), 1);
    assert!(b.generations().current() > seen, "Name changed");

    a.destroy::<TestError>("k1", |o| {
        o.set(tags::STATE, Value::Enumeration(State::Destroyed.to_u32()));
        Ok(())
    })
    .await
    .unwrap();
    b.fence().await.unwrap();
    assert_eq!(b.live_objects("purefa"), 0);
    assert_eq!(b.get("k1").map(|o| o.version), Some(3));
}

/// This instance's own writes come back through the feed: an echo changes nothing (no
/// double-counted object, no needless invalidation).
#[tokio::test]
async fn an_echo_of_an_own_write_is_ignored() {
    let (_db, a, _b) = pair().await;
    let (obj, spec) = key("k1", vec![name("n")]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    let seen = a.generations().current();
    a.fence().await.unwrap();
    assert_eq!(a.live_objects("purefa"), 1);
    assert_eq!(a.generations().current(), seen);
}

/// A write from a stale copy conflicts, is re-read and runs again on the fresh copy: two
/// charges on two instances are both counted, never one lost.
#[tokio::test]
async fn a_conflicting_write_runs_again_on_the_fresh_copy() {
    let (_db, a, b) = pair().await;
    let counter = tags::USAGE_LIMITS_COUNT;
    let (obj, spec) = key("k1", vec![Attribute::new(counter, Value::LongInteger(10))]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    b.fence().await.unwrap();
    let charge = |o: &mut StoredObject| -> Result<i64, TestError> {
        let left = match o.first(counter).map(|a| &a.value) {
            Some(Value::LongInteger(n)) => n - 1,
            _ => 0,
        };
        o.set(counter, Value::LongInteger(left));
        Ok(left)
    };
    let (_, left) = a.update("k1", charge).await.unwrap();
    assert_eq!(left, 9);
    // B has not followed: its copy still says 10.
    let mut runs = 0;
    let (_, left) = b
        .update("k1", |o| {
            runs += 1;
            charge(o)
        })
        .await
        .unwrap();
    assert_eq!((left, runs), (8, 2));
    assert_eq!(b.get("k1").map(|o| o.version), Some(3));
}

/// Undo on a stale copy: the other instance's write stays, and the local copy follows it.
#[tokio::test]
async fn a_restore_after_another_instances_write_leaves_it() {
    let (_db, a, b) = pair().await;
    let (obj, spec) = key("k1", vec![name("one")]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    b.fence().await.unwrap();
    let (written, ()) = a
        .update::<(), TestError>("k1", |o| {
            o.set(tags::OBJECT_GROUP, Value::TextString("g".into()));
            Ok(())
        })
        .await
        .unwrap();
    b.update::<(), TestError>("k1", |o| {
        o.set(tags::OBJECT_GROUP, Value::TextString("h".into()));
        Ok(())
    })
    .await
    .unwrap();
    let before = written.before.unwrap();
    assert!(!a.restore(&written.after, before).await.unwrap());
    assert_eq!(a.by_group("h").len(), 1, "A now holds B's version");
    assert!(a.by_group("g").is_empty());
}

/// A lazy write that lost a race does not leave the local version ahead of the stored one.
#[tokio::test]
async fn a_lost_lazy_write_rereads_the_object() {
    let (_db, a, b) = pair().await;
    let (obj, spec) = key("k1", vec![Attribute::boolean(tags::FRESH, true)]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    b.fence().await.unwrap();
    b.update::<(), TestError>("k1", |o| {
        o.set(tags::OBJECT_GROUP, Value::TextString("h".into()));
        Ok(())
    })
    .await
    .unwrap();
    a.update_lazily("k1", |o| o.set(tags::FRESH, Value::Boolean(false)))
        .await;
    assert!(a.flush_background(Duration::from_secs(10)).await);
    let now = a.get("k1").unwrap();
    assert_eq!(now.version, 2, "the stored version, not one ahead of it");
    assert_eq!(a.by_group("h").len(), 1);
}

/// A lazy write lost to an outage, whose re-read fails too, does not leave the local version
/// ahead of the stored one: the other instance's next write (same version number) still
/// replaces it once the database is back.
#[tokio::test]
async fn a_lazy_write_lost_to_an_outage_does_not_hide_the_next_change() {
    let db = Arc::new(shared::Db::default());
    let backend = Arc::new(shared::Instance::new(&db, false));
    let a = Arc::new(Store::open(backend.clone()).await.unwrap());
    let b = Store::open(Arc::new(shared::Instance::new(&db, false)))
        .await
        .unwrap();
    let (obj, spec) = key("k1", vec![Attribute::boolean(tags::FRESH, true)]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    b.fence().await.unwrap();
    backend
        .unreachable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    a.update_lazily("k1", |o| o.set(tags::FRESH, Value::Boolean(false)))
        .await;
    assert!(a.flush_background(Duration::from_secs(10)).await);
    assert_eq!(a.get("k1").unwrap().version, 1, "the stored version");
    backend
        .unreachable
        .store(false, std::sync::atomic::Ordering::SeqCst);
    b.update::<(), TestError>("k1", |o| {
        o.set(tags::OBJECT_GROUP, Value::TextString("h".into()));
        Ok(())
    })
    .await
    .unwrap();
    a.fence().await.unwrap();
    assert_eq!(a.by_group("h").len(), 1, "B's write reached A");
}

/// Undoing a creation on A removes the object on B too.
#[tokio::test]
async fn a_removal_reaches_the_other_instance() {
    let (_db, a, b) = pair().await;
    let (obj, spec) = key("k1", vec![name("n")]);
    let created = a.create(obj, spec, usize::MAX).await.unwrap();
    b.fence().await.unwrap();
    assert!(a.remove(&created).await.unwrap());
    b.fence().await.unwrap();
    assert!(b.get("k1").is_none());
    assert!(b.by_name("n").is_empty());
    assert_eq!(b.live_objects("purefa"), 0);
}

/// Concurrent fences share one catch-up, but never one that started before they were called:
/// it may have read the feed before the write they must see was committed.
#[tokio::test]
async fn fences_coalesce_only_on_catch_ups_started_after_them() {
    let db = Arc::new(shared::Db::default());
    let writer = Store::open(Arc::new(shared::Instance::new(&db, false)))
        .await
        .unwrap();
    let backend = Arc::new(shared::Instance::new(&db, true));
    let reader = Arc::new(Store::open(backend.clone()).await.unwrap());
    let gate = |n| backend.gate.as_ref().unwrap().add_permits(n);

    // The first fence's catch-up reads the (empty) feed and is held.
    let mut first = std::pin::pin!(reader.fence());
    assert!(tokio::time::timeout(Duration::from_millis(20), &mut first)
        .await
        .is_err());
    assert_eq!(
        backend.catch_ups.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // Then a write commits, and two more fences are called.
    let (obj, spec) = key("k1", vec![name("n")]);
    writer.create(obj, spec, usize::MAX).await.unwrap();
    let mut second = std::pin::pin!(reader.fence());
    let mut third = std::pin::pin!(reader.fence());
    for f in [&mut second, &mut third] {
        assert!(tokio::time::timeout(Duration::from_millis(20), f)
            .await
            .is_err());
    }
    gate(1);
    first.await.unwrap();
    assert!(
        reader.get("k1").is_none(),
        "the first catch-up read the feed before the write"
    );
    gate(1);
    let (r2, r3) = tokio::join!(second, third);
    r2.unwrap();
    r3.unwrap();
    assert!(reader.get("k1").is_some(), "the later fences see the write");
    assert_eq!(
        backend.catch_ups.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the two later fences shared one catch-up"
    );
}

/// On a backend only this process opens, a fence is free: no catch-up, nothing awaited.
#[tokio::test]
async fn a_fence_on_the_vault_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.fence().await.unwrap();
    assert!(store.follow(tokio::sync::watch::channel(false).1).is_none());
    assert!(store.feed_trouble().is_none());
}

/// A feed that fails is reported (for `/readyz`) with its reason once it has failed for the
/// bound, counted, and forgotten once a catch-up works again.
#[tokio::test]
async fn a_failing_feed_is_reported_until_it_works_again() {
    let db = Arc::new(shared::Db::default());
    let backend = Arc::new(shared::Instance::new(&db, false));
    let store = Store::open(backend.clone()).await.unwrap();
    store.fence().await.unwrap();
    assert!(store.feed_trouble_after(Duration::ZERO).is_none());
    backend
        .unreachable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(store.fence().await.is_err());
    let reason = store.feed_trouble_after(Duration::ZERO).unwrap();
    assert!(reason.contains("connection refused"), "{reason}");
    assert!(
        store.feed_trouble().is_none(),
        "not for longer than FEED_DEGRADED_AFTER yet"
    );
    backend
        .unreachable
        .store(false, std::sync::atomic::Ordering::SeqCst);
    store.fence().await.unwrap();
    assert!(store.feed_trouble_after(Duration::ZERO).is_none());
}

/// The follower applies the other instance's writes with no fence asked for, and stops on
/// shutdown.
#[tokio::test]
async fn the_follower_applies_changes_until_shutdown() {
    let (_db, a, b) = pair().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let follower = b.follow(stopped).expect("a shared backend is followed");
    let (obj, spec) = key("k1", vec![name("followed")]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while b.by_name("followed").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), follower)
        .await
        .expect("the follower stops on shutdown")
        .unwrap();
}
