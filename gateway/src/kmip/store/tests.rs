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
