//! The PostgreSQL backend against real PostgreSQL clusters (one per test, started as the
//! non-root service user: skipped without root): every operation and versions, the exact
//! change feed across two instances (out-of-order commits included), the listener through a
//! server crash, cluster-wide Name locks, crypto-shredding, KEK rotation, failover to a
//! synchronous standby, and schema migrations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmip_backends::envelope::{FileKek, Kek, KekRing};
use kmip_backends::postgres::{
    apply_migrations, pending_migrations, PgSettings, PostgresBackend,
};
use kmip_backends::{
    Backend, BackendError, Change, CipherMode, CipherRequest, KeyAlgorithm, KeySpec, ObjectKind,
    ObjectRecord,
};
use kmip_e2e::accounts::is_root;
use kmip_e2e::postgres::{PgCluster, PG_DATABASE, PG_USER};
use zeroize::Zeroizing;

/// Far above anything a loaded machine needs, so that only a real hang fails a test.
const PATIENCE: Duration = Duration::from_secs(120);

fn skip() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root to run PostgreSQL as the service user");
        return true;
    }
    false
}

fn kek(byte: u8) -> Arc<dyn Kek> {
    Arc::new(FileKek::from_bytes("test kek", &[byte; 32]).unwrap())
}

fn ring(current: u8, previous: &[u8]) -> KekRing {
    KekRing::new(kek(current), previous.iter().map(|b| kek(*b)).collect()).unwrap()
}

fn settings_for(url: String, password: &str, pool_size: u32) -> PgSettings {
    PgSettings {
        url,
        password: Some(Zeroizing::new(password.to_owned())),
        ca: None,
        pool_size,
        acquire_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
    }
}

fn settings(pg: &PgCluster) -> PgSettings {
    settings_for(pg.url(), pg.password(), 4)
}

async fn open(pg: &PgCluster, keks: KekRing) -> PostgresBackend {
    PostgresBackend::open(settings(pg), keks).await.unwrap()
}

fn record(uid: &str, meta: &[u8]) -> ObjectRecord {
    ObjectRecord {
        uid: uid.into(),
        kind: ObjectKind::SymmetricKey,
        meta: meta.to_vec(),
        version: 0,
    }
}

fn spec(algorithm: KeyAlgorithm, bits: u32, extractable: bool) -> KeySpec {
    KeySpec {
        algorithm,
        bits,
        extractable,
        sensitive: false,
        label: Some("label".into()),
    }
}

fn aes() -> KeySpec {
    spec(KeyAlgorithm::Aes, 256, true)
}

fn upserted(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Upsert(r) => Some(r.uid.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_round_trips_with_versions() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let b = open(&pg, ring(1, &[])).await;
    assert_eq!(b.name(), "postgres");
    b.health().await.unwrap();

    b.generate(record("aes", b"m1"), aes()).await.unwrap();
    b.generate(
        record("hmac", b"h"),
        spec(KeyAlgorithm::HmacSha256, 256, true),
    )
    .await
    .unwrap();
    b.generate(record("locked", b"l"), spec(KeyAlgorithm::Aes, 128, false))
        .await
        .unwrap();
    let secret = Zeroizing::new(b"a secret".to_vec());
    let mut sd = record("secret", b"s");
    sd.kind = ObjectKind::SecretData;
    b.import(sd, secret.clone(), None).await.unwrap();
    assert!(matches!(
        b.import(record("aes", b"again"), secret.clone(), None).await,
        Err(BackendError::AlreadyExists(_))
    ));
    assert!(matches!(
        b.generate(record("bad", b""), spec(KeyAlgorithm::Aes, 100, true)).await,
        Err(BackendError::InvalidInput(_))
    ));

    let mut all = b.load_all().await.unwrap();
    all.sort_by(|x, y| x.uid.cmp(&y.uid));
    let uids: Vec<_> = all.iter().map(|r| (r.uid.as_str(), r.version)).collect();
    assert_eq!(uids, [("aes", 1), ("hmac", 1), ("locked", 1), ("secret", 1)]);

    let key = b.read_material("aes").await.unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(&b.read_material("secret").await.unwrap()[..], b"a secret");
    assert!(matches!(
        b.read_material("locked").await,
        Err(BackendError::NotExtractable(_))
    ));
    assert!(matches!(
        b.read_material("nope").await,
        Err(BackendError::NotFound(_))
    ));

    // Compare-and-set on versions.
    b.update_meta("aes", b"m2".to_vec(), 1).await.unwrap();
    assert!(matches!(
        b.update_meta("aes", b"stale".to_vec(), 1).await,
        Err(BackendError::Conflict(_))
    ));
    assert!(matches!(
        b.update_meta("nope", b"x".to_vec(), 1).await,
        Err(BackendError::NotFound(_))
    ));
    let shared = b.shared().unwrap();
    let r = shared.load("aes").await.unwrap().unwrap();
    assert_eq!((r.version, r.meta.as_slice()), (2, &b"m2"[..]));
    assert!(shared.load("nope").await.unwrap().is_none());

    // Key operations, with the key from the database and from the cache.
    let req = |data: &[u8], iv, tag| CipherRequest {
        mode: CipherMode::Gcm { tag_len: 16 },
        data: Zeroizing::new(data.to_vec()),
        iv,
        aad: None,
        tag,
    };
    let enc = b.encrypt("aes", req(b"plain", None, None)).await.unwrap();
    let dec = b
        .decrypt(
            "aes",
            req(&enc.data, enc.generated_iv.clone(), enc.tag.clone()),
        )
        .await
        .unwrap();
    assert_eq!(&dec.data[..], b"plain");
    assert_eq!(b.mac("hmac", b"data").await.unwrap().len(), 32);
    assert!(matches!(
        b.mac("aes", b"data").await,
        Err(BackendError::InvalidInput(_))
    ));
    let fresh = open(&pg, ring(1, &[])).await;
    assert_eq!(fresh.read_material("aes").await.unwrap(), key);

    let exported = b.export("aes").await.unwrap();
    assert_eq!(exported.material.as_deref(), Some(&*key));
    assert_eq!(exported.spec, Some(aes()));
    assert_eq!(exported.record.version, 2);

    // Destroy keeps a tombstone; an undone creation goes entirely.
    assert!(matches!(
        b.destroy("aes", Some(b"t".to_vec()), 1).await,
        Err(BackendError::Conflict(_))
    ));
    b.destroy("aes", Some(b"tomb".to_vec()), 2).await.unwrap();
    assert!(matches!(
        b.read_material("aes").await,
        Err(BackendError::NotFound(_))
    ));
    assert!(matches!(
        b.encrypt("aes", req(b"x", None, None)).await,
        Err(BackendError::NotFound(_))
    ));
    let t = b.export("aes").await.unwrap();
    assert!(t.material.is_none());
    assert_eq!((t.record.version, t.record.meta.as_slice()), (3, &b"tomb"[..]));
    b.destroy("hmac", None, 1).await.unwrap();
    assert!(shared.load("hmac").await.unwrap().is_none());
    assert!(matches!(
        b.destroy("hmac", None, 1).await,
        Err(BackendError::NotFound(_))
    ));
}
