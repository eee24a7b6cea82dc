//! The PostgreSQL backend against real PostgreSQL clusters (one per test, started as the
//! non-root service user: skipped without root): every operation and versions, the exact
//! change feed across two instances (out-of-order commits included), the listener through a
//! server crash, cluster-wide Name locks, a claim one instance holds, crypto-shredding, KEK
//! rotation, failover to a synchronous standby, and schema migrations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmip_backends::envelope::{FileKek, Kek, KekRing};
use kmip_backends::postgres::{apply_migrations, pending_migrations, PgSettings, PostgresBackend};
use kmip_backends::{
    Backend, BackendError, Change, CipherMode, CipherRequest, KeyAlgorithm, KeySpec, MacAlgorithm,
    ObjectKind, ObjectRecord,
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
        meta: meta.to_vec().into(),
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
            Change::Upsert(r) => Some(r.uid.to_string()),
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
        b.import(record("aes", b"again"), secret.clone(), None)
            .await,
        Err(BackendError::AlreadyExists(_))
    ));
    assert!(matches!(
        b.generate(record("bad", b""), spec(KeyAlgorithm::Aes, 100, true))
            .await,
        Err(BackendError::InvalidInput(_))
    ));

    let mut all = b.load_all().await.unwrap();
    all.sort_by(|x, y| x.uid.cmp(&y.uid));
    let uids: Vec<_> = all.iter().map(|r| (&*r.uid, r.version)).collect();
    assert_eq!(
        uids,
        [("aes", 1), ("hmac", 1), ("locked", 1), ("secret", 1)]
    );

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
    b.update_meta("aes", b"m2".to_vec().into(), 1)
        .await
        .unwrap();
    assert!(matches!(
        b.update_meta("aes", b"stale".to_vec().into(), 1).await,
        Err(BackendError::Conflict(_))
    ));
    assert!(matches!(
        b.update_meta("nope", b"x".to_vec().into(), 1).await,
        Err(BackendError::NotFound(_))
    ));
    let shared = b.shared().unwrap();
    let r = shared.load("aes").await.unwrap().unwrap();
    assert_eq!((r.version, r.meta.as_ref()), (2, &b"m2"[..]));
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
    assert_eq!(
        b.mac("hmac", MacAlgorithm::HmacSha256, b"data")
            .await
            .unwrap()
            .len(),
        32
    );
    // Any secret bytes are an HMAC key: the gateway decides when an AES key may MAC.
    assert_eq!(
        b.mac("aes", MacAlgorithm::HmacSha512, b"data")
            .await
            .unwrap()
            .len(),
        64
    );
    let fresh = open(&pg, ring(1, &[])).await;
    assert_eq!(fresh.read_material("aes").await.unwrap(), key);

    let exported = b.export("aes").await.unwrap();
    assert_eq!(exported.material.as_deref(), Some(&*key));
    assert_eq!(exported.spec, Some(aes()));
    assert_eq!(exported.record.version, 2);

    // Destroy keeps a tombstone; an undone creation goes entirely.
    assert!(matches!(
        b.destroy("aes", Some(b"t".to_vec().into()), 1).await,
        Err(BackendError::Conflict(_))
    ));
    b.destroy("aes", Some(b"tomb".to_vec().into()), 2)
        .await
        .unwrap();
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
    assert_eq!(
        (t.record.version, t.record.meta.as_ref()),
        (3, &b"tomb"[..])
    );
    b.destroy("hmac", None, 1).await.unwrap();
    assert!(shared.load("hmac").await.unwrap().is_none());
    assert!(matches!(
        b.destroy("hmac", None, 1).await,
        Err(BackendError::NotFound(_))
    ));
}

/// A raw connection to the cluster, as another writer (or an attacker with database access).
async fn raw(pg: &PgCluster) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={PG_USER} dbname={PG_DATABASE} password={}",
            pg.port(),
            pg.password()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_is_exact_across_instances_even_with_out_of_order_commits() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let a = open(&pg, ring(1, &[])).await;
    let b = open(&pg, ring(1, &[])).await;
    let feed = b.shared().unwrap();
    a.generate(record("before", b""), aes()).await.unwrap();
    assert_eq!(b.load_all().await.unwrap().len(), 1);
    assert!(feed.changes().await.unwrap().is_empty());

    a.generate(record("x", b""), aes()).await.unwrap();
    assert_eq!(upserted(&feed.changes().await.unwrap()), ["x"]);
    assert!(feed.changes().await.unwrap().is_empty());

    // A writer takes a lower sequence number than a later one and commits after it.
    let mut held = raw(&pg).await;
    let tx = held.transaction().await.unwrap();
    tx.batch_execute(
        "INSERT INTO kmip_objects (uid, kind, version, meta) VALUES ('held', 3, 1, '\\x00'); \
         INSERT INTO kmip_changes (uid) VALUES ('held')",
    )
    .await
    .unwrap();
    a.generate(record("later", b""), aes()).await.unwrap();
    assert_eq!(upserted(&feed.changes().await.unwrap()), ["later"]);
    tx.commit().await.unwrap();
    assert_eq!(upserted(&feed.changes().await.unwrap()), ["held"]);

    // An undone creation is reported removed; updates carry the current record.
    a.generate(record("undone", b""), aes()).await.unwrap();
    a.destroy("undone", None, 1).await.unwrap();
    a.update_meta("x", b"new".to_vec().into(), 1).await.unwrap();
    let changes = feed.changes().await.unwrap();
    assert_eq!(changes.len(), 2);
    for c in &changes {
        match c {
            Change::Removed(uid) => assert_eq!(uid, "undone"),
            Change::Upsert(r) => {
                assert_eq!((&*r.uid, r.version, &r.meta[..]), ("x", 2, &b"new"[..]))
            }
            Change::Resync(_) => panic!("unexpected resync"),
        }
    }

    // A destroyed key is never served from another instance's cache once the feed ran.
    assert_eq!(b.read_material("x").await.unwrap().len(), 32);
    a.destroy("x", Some(b"tomb".to_vec().into()), 2)
        .await
        .unwrap();
    assert_eq!(upserted(&feed.changes().await.unwrap()), ["x"]);
    assert!(matches!(
        b.read_material("x").await,
        Err(BackendError::NotFound(_))
    ));

    // A log pruned past an instance's place: that instance resyncs with every object.
    a.generate(record("unseen", b""), aes()).await.unwrap();
    assert!(a.prune_changes(Duration::ZERO).await.unwrap() > 0);
    match &feed.changes().await.unwrap()[..] {
        [Change::Resync(all)] => {
            let mut uids: Vec<_> = all.iter().map(|r| &*r.uid).collect();
            uids.sort();
            assert_eq!(uids, ["before", "held", "later", "unseen", "x"]);
        }
        _ => panic!("expected one resync"),
    }
    assert!(feed.changes().await.unwrap().is_empty());
    a.generate(record("after", b""), aes()).await.unwrap();
    assert_eq!(upserted(&feed.changes().await.unwrap()), ["after"]);
}

/// Writes until one succeeds (connections may still be dying after a crash); the time taken.
/// A writer that took its transaction id after another's but its sequence number before it,
/// and commits after it: when the feed reads, its id is at or above the snapshot's xmax (one
/// past the latest completed id), so the snapshot's in-progress list does not name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_catches_a_writer_whose_id_is_above_the_snapshots_xmax() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let a = open(&pg, ring(1, &[])).await;
    let b = open(&pg, ring(1, &[])).await;
    let feed = b.shared().unwrap();
    a.generate(record("before", b""), aes()).await.unwrap();
    assert_eq!(b.load_all().await.unwrap().len(), 1);
    let mut first = raw(&pg).await;
    let early = first.transaction().await.unwrap();
    early
        .batch_execute(
            "INSERT INTO kmip_objects (uid, kind, version, meta) VALUES ('early', 3, 1, '\\x00')",
        )
        .await
        .unwrap();
    let mut second = raw(&pg).await;
    let overtaken = second.transaction().await.unwrap();
    overtaken
        .batch_execute(
            "INSERT INTO kmip_objects (uid, kind, version, meta) VALUES ('overtaken', 3, 1, '\\x00'); \
             INSERT INTO kmip_changes (uid) VALUES ('overtaken')",
        )
        .await
        .unwrap();
    early
        .batch_execute("INSERT INTO kmip_changes (uid) VALUES ('early')")
        .await
        .unwrap();
    early.commit().await.unwrap();
    assert_eq!(upserted(&feed.changes().await.unwrap()), ["early"]);
    overtaken.commit().await.unwrap();
    assert_eq!(upserted(&feed.changes().await.unwrap()), ["overtaken"]);
    assert!(feed.changes().await.unwrap().is_empty());
}

async fn write_until_ok(b: &PostgresBackend, uid: &str) -> Duration {
    let start = Instant::now();
    loop {
        let attempt = tokio::time::timeout(PATIENCE, b.generate(record(uid, b""), aes()))
            .await
            .expect("a write hung beyond every timeout");
        match attempt {
            Ok(()) => return start.elapsed(),
            Err(BackendError::AlreadyExists(_)) => return start.elapsed(),
            Err(e) => {
                assert!(start.elapsed() < PATIENCE, "writes keep failing: {e}");
                assert!(!e.to_string().contains("password"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_change_wakes_on_another_write_and_after_a_server_crash() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let a = Arc::new(open(&pg, ring(1, &[])).await);
    let b = open(&pg, ring(1, &[])).await;
    let feed = b.shared().unwrap();
    b.load_all().await.unwrap();
    // The listener's first connection wakes once.
    feed.wait_for_change(PATIENCE).await;

    let writer = a.clone();
    let write = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.generate(record("w1", b""), aes()).await.unwrap();
    });
    let start = Instant::now();
    feed.wait_for_change(PATIENCE).await;
    assert!(start.elapsed() < PATIENCE, "not woken by the write");
    write.await.unwrap();
    assert_eq!(upserted(&feed.changes().await.unwrap()), ["w1"]);

    pg.kill();
    // Readiness follows the database.
    let deadline = Instant::now() + PATIENCE;
    while a.health().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "health stays ok with the server down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pg.restart();
    // The listener reconnects (and wakes), and the feed catches up with what was written.
    let start = Instant::now();
    feed.wait_for_change(PATIENCE).await;
    assert!(start.elapsed() < PATIENCE, "the listener never reconnected");
    write_until_ok(&a, "w2").await;
    a.health().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        feed.wait_for_change(Duration::from_secs(1)).await;
        if let Ok(c) = feed.changes().await {
            if upserted(&c).contains(&"w2".to_owned()) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "w2 never reached the other instance"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_locks_exclude_across_instances_and_release_their_connection() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    // One connection: the guard's is the one every later call gets back.
    let a = PostgresBackend::open(settings_for(pg.url(), pg.password(), 1), ring(1, &[]))
        .await
        .unwrap();
    let b = Arc::new(open(&pg, ring(1, &[])).await);
    let guard = a
        .shared()
        .unwrap()
        .lock_names(&["n2".into(), "n1".into(), "n2".into()])
        .await
        .unwrap();
    let other = b.clone();
    let waiter = tokio::spawn(async move {
        let g = other.shared().unwrap().lock_names(&["n1".into()]).await;
        g.map(drop)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "the second holder did not wait");
    drop(guard);
    tokio::time::timeout(PATIENCE, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // No names: nothing held, no connection taken (A's only one is free for B's wait below).
    let none = a.shared().unwrap().lock_names(&[]).await.unwrap();
    // A's only connection is back, outside any transaction: B takes the names at once.
    let g2 = a
        .shared()
        .unwrap()
        .lock_names(&["n3".into()])
        .await
        .unwrap();
    drop(g2);
    a.shared().unwrap().load("x").await.unwrap();
    let g3 = b
        .shared()
        .unwrap()
        .lock_names(&["n1".into(), "n3".into()])
        .await
        .unwrap();
    drop(g3);
    a.generate(record("k", b""), aes()).await.unwrap();
    drop(none);
}

/// A claim (a migrating proxy's) is held by one backend on the database at a time, whatever
/// the other's pool does, and is released with the backend that holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_held_by_one_backend_at_a_time_and_released_with_it() {
    if skip() {
        return;
    }
    const KEY: i64 = 0x7465_7374_636c_6169;
    let pg = PgCluster::start();
    let a = open(&pg, ring(1, &[])).await;
    let b = open(&pg, ring(1, &[])).await;
    assert!(a.claim(KEY).await.unwrap());
    assert!(!b.claim(KEY).await.unwrap(), "a second holder");
    // The holder's own pool and writes do not touch it.
    a.generate(record("c", b""), aes()).await.unwrap();
    assert!(!b.claim(KEY).await.unwrap(), "released by a write");
    assert!(
        b.claim(KEY + 1).await.unwrap(),
        "another key is another claim"
    );
    drop(a);
    // The server ends the session once the dropped connection's socket closes.
    let start = Instant::now();
    while !b.claim(KEY).await.unwrap() {
        assert!(start.elapsed() < PATIENCE, "the claim outlived its backend");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_shreds_and_rotation_moves_every_key_to_the_new_kek() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let old = open(&pg, ring(1, &[])).await;
    for uid in ["k1", "k2", "k3"] {
        old.generate(record(uid, b""), aes()).await.unwrap();
    }
    let victim = old.read_material("k1").await.unwrap();
    let stored = pg.psql(
        "SELECT encode(sealed, 'hex') || ' ' || encode(wrapped_key, 'hex') || ' ' || kek_id \
         FROM kmip_objects WHERE uid = 'k1'",
    );
    let mut parts = stored.split(' ');
    let (sealed, wrapped, kek_id) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    old.destroy("k1", Some(b"tomb".to_vec().into()), 1)
        .await
        .unwrap();
    assert_eq!(
        pg.psql("SELECT sealed IS NULL AND wrapped_key IS NULL AND kek_id IS NULL, meta = '\\x746f6d62' FROM kmip_objects WHERE uid = 'k1'"),
        "t|t"
    );
    for table in [
        "kmip_objects",
        "kmip_changes",
        "kmip_changes_pruned",
        "kmip_schema_migrations",
    ] {
        let dump = pg.psql(&format!("SELECT t::text FROM {table} t"));
        for secret in [&sealed, &wrapped, &hex(&victim)] {
            assert!(!dump.contains(secret.as_str()), "{table} still holds it");
        }
    }
    // The old wrapped key opens nothing that remains: put back beside its own tombstone or
    // into another object's row, nothing decrypts.
    pg.psql(&format!(
        "UPDATE kmip_objects SET wrapped_key = '\\x{wrapped}', kek_id = '{kek_id}' \
         WHERE uid IN ('k1', 'k2')"
    ));
    let probe = open(&pg, ring(1, &[])).await;
    assert!(matches!(
        probe.read_material("k1").await,
        Err(BackendError::NotFound(_))
    ));
    assert!(matches!(
        probe.read_material("k2").await,
        Err(BackendError::Corrupt(_))
    ));
    pg.psql("DELETE FROM kmip_objects WHERE uid = 'k2'");
    pg.psql("UPDATE kmip_objects SET wrapped_key = NULL, kek_id = NULL WHERE uid = 'k1'");

    let k3 = old.read_material("k3").await.unwrap();
    old.generate(record("k4", b""), aes()).await.unwrap();
    let k4 = old.read_material("k4").await.unwrap();
    let both = open(&pg, ring(2, &[1])).await;
    let report = both.rotate_keks(1).await.unwrap();
    assert_eq!((report.rewrapped, report.already_current), (2, 0));
    let new_id = kek(2).id().to_owned();
    assert_eq!(
        pg.psql("SELECT DISTINCT kek_id FROM kmip_objects WHERE kek_id IS NOT NULL"),
        new_id
    );
    assert_eq!(
        pg.psql("SELECT version FROM kmip_objects WHERE uid = 'k3'"),
        "1"
    );
    let again = both.rotate_keks(10).await.unwrap();
    assert_eq!((again.rewrapped, again.already_current), (0, 2));
    let new_only = open(&pg, ring(2, &[])).await;
    assert_eq!(new_only.read_material("k3").await.unwrap(), k3);
    assert_eq!(new_only.read_material("k4").await.unwrap(), k4);
    let e = PostgresBackend::open(settings(&pg), ring(1, &[]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&new_id) && e.contains("backend.previous_keks"),
        "{e}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_the_synchronous_standby_loses_no_acknowledged_write() {
    if skip() {
        return;
    }
    let primary = PgCluster::start();
    let standby = primary.start_sync_standby();
    let url = format!(
        "postgresql://{PG_USER}@{},{}/{PG_DATABASE}?sslmode=disable",
        primary.host_port(),
        standby.host_port()
    );
    let b = PostgresBackend::open(settings_for(url, primary.password(), 4), ring(1, &[]))
        .await
        .unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let uid = format!("before-{i}");
        b.generate(record(&uid, b""), aes()).await.unwrap();
        acknowledged.push(uid);
    }
    let killed = Instant::now();
    primary.kill();
    // The postmaster is gone; its backends may still commit (to the synchronous standby)
    // for a moment. Writes go on until one fails: cleanly, within the timeouts. Every one
    // acknowledged meanwhile must survive the failover.
    let mut i = 0;
    let e = loop {
        let uid = format!("during-{i}");
        i += 1;
        let attempt = tokio::time::timeout(PATIENCE, b.generate(record(&uid, b""), aes()))
            .await
            .expect("a write hung with the primary down");
        match attempt {
            Ok(()) => acknowledged.push(uid),
            Err(e) => break e,
        }
        assert!(
            killed.elapsed() < PATIENCE,
            "writes go on without a primary"
        );
    };
    assert!(matches!(e, BackendError::Unavailable(_)), "{e}");
    assert!(!e.to_string().contains(primary.password()));
    standby.promote();
    let took = write_until_ok(&b, "after").await;
    eprintln!(
        "failover: kill -> first successful write {:?} (promotion included; write retries took {took:?})",
        killed.elapsed()
    );
    acknowledged.push("after".into());
    let shared = b.shared().unwrap();
    for uid in &acknowledged {
        assert!(shared.load(uid).await.unwrap().is_some(), "{uid} lost");
        assert_eq!(b.read_material(uid).await.unwrap().len(), 32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let pending = pending_migrations(&settings(&pg)).await.unwrap();
    assert_eq!(
        pending.iter().map(|m| m.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(pending[0].sql.contains("kmip_objects"));
    // A dry run writes nothing.
    assert_eq!(
        pg.psql("SELECT to_regclass('kmip_schema_migrations') IS NULL"),
        "t"
    );
    let (a, b) = tokio::join!(
        PostgresBackend::open(settings(&pg), ring(1, &[])),
        PostgresBackend::open(settings(&pg), ring(1, &[]))
    );
    a.unwrap();
    b.unwrap();
    assert!(apply_migrations(&settings(&pg)).await.unwrap().is_empty());
    assert!(pending_migrations(&settings(&pg)).await.unwrap().is_empty());
    assert_eq!(pg.psql("SELECT count(*) FROM kmip_schema_migrations"), "2");

    pg.psql("INSERT INTO kmip_schema_migrations (version, description) VALUES (99, 'future')");
    for e in [
        PostgresBackend::open(settings(&pg), ring(1, &[]))
            .await
            .err()
            .unwrap(),
        pending_migrations(&settings(&pg)).await.err().unwrap(),
    ] {
        let e = e.to_string();
        assert!(e.contains("99") && e.contains("newer"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_would_leak_or_weaken_the_connection_are_refused() {
    // No server needed: refused before connecting.
    let with_password = settings_for(
        "postgresql://kmip:hunter2@127.0.0.1:1/kmip?sslmode=disable".into(),
        "x",
        1,
    );
    let e = PostgresBackend::open(with_password, ring(1, &[]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
    let tls = settings_for(
        "postgresql://kmip@127.0.0.1:1/kmip?sslmode=require".into(),
        "x",
        1,
    );
    let e = PostgresBackend::open(tls, ring(1, &[]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("backend.ca"), "{e}");
    let unreachable = settings_for(
        "postgresql://kmip@127.0.0.1:1/kmip?sslmode=disable".into(),
        "secretpw",
        1,
    );
    let e = PostgresBackend::open(unreachable, ring(1, &[]))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e}");
    assert!(!e.to_string().contains("secretpw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_acknowledged_only_once_the_synchronous_standby_has_it() {
    if skip() {
        return;
    }
    let primary = PgCluster::start();
    let standby = primary.start_sync_standby();
    // An operator's default that would acknowledge before replication; the backend overrides it.
    primary.psql(&format!(
        "ALTER ROLE {PG_USER} SET synchronous_commit = 'local'"
    ));
    let b = Arc::new(open(&primary, ring(1, &[])).await);
    b.generate(record("first", b""), aes()).await.unwrap();
    standby.stop();
    let writer = b.clone();
    let write = tokio::spawn(async move { writer.generate(record("second", b""), aes()).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !write.is_finished(),
        "a write was acknowledged while the synchronous standby was down"
    );
    standby.restart();
    tokio::time::timeout(PATIENCE, write)
        .await
        .expect("the write never finished once the standby was back")
        .unwrap()
        .unwrap();
    assert_eq!(
        standby.psql("SELECT count(*) FROM kmip_objects WHERE uid = 'second'"),
        "1"
    );
}

/// Runs openssl in `dir`; panics with its output on failure.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `<name>.pem` (key `<name>.key`) in `dir`.
fn make_ca(dir: &std::path::Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_server_is_verified_against_backend_ca() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let (uid, gid) = kmip_e2e::accounts::service_account();
    // PostgreSQL's default file names, in its data folder.
    for (file, as_name) in [("server.pem", "server.crt"), ("server.key", "server.key")] {
        let to = pg.data().join(as_name);
        std::fs::copy(dir.join(file), &to).unwrap();
        std::os::unix::fs::chown(&to, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    pg.psql("ALTER SYSTEM SET ssl = on");
    pg.stop();
    pg.restart();
    // psql prefers TLS once the server offers it.
    let deadline = Instant::now() + PATIENCE;
    while pg.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") != "t" {
        assert!(
            Instant::now() < deadline,
            "TLS never came up:\n{}",
            pg.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let tls_url = format!(
        "postgresql://{PG_USER}@{}/{PG_DATABASE}?sslmode=require",
        pg.host_port()
    );
    let mut good = settings_for(tls_url.clone(), pg.password(), 2);
    good.ca = Some(dir.join("ca.pem"));
    let b = PostgresBackend::open(good, ring(1, &[])).await.unwrap();
    b.generate(record("over-tls", b""), aes()).await.unwrap();
    assert_eq!(
        pg.psql(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'kmip-gateway'"
        ),
        "t"
    );

    let mut wrong = settings_for(tls_url, pg.password(), 2);
    wrong.ca = Some(dir.join("other-ca.pem"));
    let e = PostgresBackend::open(wrong, ring(1, &[]))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
}

/// A database that refuses connections is reported as Unavailable, not as a pool too busy to
/// serve (Busy after the acquire timeout): bb8 makes a missing connection in the background and
/// tells its waiter nothing of a refusal, so `checkout` connects itself when the pool must grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_unavailable_not_busy() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let mut patient = settings(&pg);
    // Longer than the test's own patience: a Busy could only come from waiting it out.
    patient.acquire_timeout = Duration::from_secs(3600);
    let b = PostgresBackend::open(patient, ring(1, &[])).await.unwrap();
    b.generate(record("before-stop", b""), aes()).await.unwrap();
    pg.stop();
    let e = tokio::time::timeout(
        Duration::from_secs(120),
        b.generate(record("after-stop", b""), aes()),
    )
    .await
    .expect("a write waited for a stopped database")
    .unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e}");
}
