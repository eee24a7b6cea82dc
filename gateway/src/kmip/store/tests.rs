//! The store's tests on the vault (a backend only this process opens). Following a shared
//! backend is tested on real PostgreSQL in `tests/tests/store_shared.rs`.

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
