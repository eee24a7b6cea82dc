//! The store's tests on the vault (a backend only this process opens). Following a shared
//! backend is tested on real PostgreSQL in `tests/tests/store_shared.rs`.

use super::*;
use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_backends::{KeyAlgorithm, ObjectKind};
use kmip_wire::model::{Attribute, ObjectType};
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

/// On a backend only this process opens, a fence is free: no catch-up, nothing awaited.
#[tokio::test]
async fn a_fence_on_the_vault_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.fence().await.unwrap();
    assert!(store.follow(tokio::sync::watch::channel(false).1).is_none());
    assert!(store.feed_trouble().is_none());
}

/// An adopted object is written by its caller's closure, counted against its owner, and never
/// takes an identifier in use; a failed write releases the owner's reserved slot.
#[tokio::test]
async fn adoption_writes_through_its_closure_and_never_over_an_identifier_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let object = |uid: &str| StoredObject {
        uid: uid.into(),
        kind: ObjectKind::SecretData,
        owner: "tenant-a".into(),
        attributes: Vec::new(),
        version: 1,
    };
    let backend = store.backend().clone();
    let write = |record: ObjectRecord| {
        let backend = backend.clone();
        async move {
            backend
                .import(record, Zeroizing::new(b"upstream-42".to_vec()), None)
                .await
        }
    };
    store.adopt(object("42"), 1, write).await.unwrap();
    assert_eq!(store.live_objects("tenant-a"), 1);
    let taken = store.adopt(object("42"), 10, write).await.unwrap_err();
    assert!(
        matches!(taken, StoreError::Backend(BackendError::AlreadyExists(ref u)) if u == "42"),
        "{taken:?}"
    );
    let full = store.adopt(object("43"), 1, write).await.unwrap_err();
    assert!(
        matches!(full, StoreError::ObjectLimit { limit: 1 }),
        "{full:?}"
    );
    let failed = store
        .adopt(object("44"), 10, |_| async {
            Err(BackendError::Unavailable("upstream down".into()))
        })
        .await
        .unwrap_err();
    assert!(matches!(
        failed,
        StoreError::Backend(BackendError::Unavailable(_))
    ));
    assert_eq!(store.live_objects("tenant-a"), 1);
    assert!(store.get("44").is_none());
}

fn state(s: State) -> Attribute {
    Attribute::enumeration(tags::STATE, s)
}

fn found(store: &Store, filter: &[Attribute]) -> Vec<String> {
    let objects = store.candidates(filter).expect("an indexed filter");
    objects.iter().map(|o| o.uid.clone()).collect()
}

/// A change a shared backend's feed delivers moves the index as a local write does; an older
/// version changes nothing, and a removal takes the object out. (The feed itself runs on
/// PostgreSQL in `tests/tests/store_shared.rs`; these are the calls it makes.)
#[tokio::test]
async fn feed_changes_move_the_index_like_local_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let obj = StoredObject {
        uid: "k".into(),
        kind: ObjectKind::SecretData,
        owner: "purefa".into(),
        attributes: vec![state(State::PreActive)],
        version: 1,
    };
    let material = Zeroizing::new(vec![1u8; 16]);
    let created = store
        .register(obj, material, None, usize::MAX)
        .await
        .unwrap();
    assert_eq!(found(&store, &[state(State::PreActive)]), ["k"]);

    let mut newer = (*created).clone();
    newer.set(tags::STATE, Value::Enumeration(State::Active.to_u32()));
    newer.version = 3;
    store.install(newer.record(), false).unwrap();
    assert!(found(&store, &[state(State::PreActive)]).is_empty());
    assert_eq!(found(&store, &[state(State::Active)]), ["k"]);

    let mut older = (*created).clone();
    older.set(tags::STATE, Value::Enumeration(State::Compromised.to_u32()));
    older.version = 2;
    store.install(older.record(), false).unwrap();
    assert!(found(&store, &[state(State::Compromised)]).is_empty());
    assert_eq!(found(&store, &[state(State::Active)]), ["k"]);

    store.uninstall("k");
    assert!(found(&store, &[state(State::Active)]).is_empty());
    let secret = Attribute::enumeration(tags::OBJECT_TYPE, ObjectType::SecretData);
    assert!(found(&store, &[secret]).is_empty());
}
