//! The gateway's store and dispatcher on a shared backend, against real PostgreSQL (one
//! throwaway cluster per test, started as the non-root service user: skipped without root):
//! two `Store`s (and two `Dispatcher`s) in this process, each on its own `PostgresBackend`
//! of one database, as two gateways would be. What one writes the other's fence applies;
//! echoes change nothing; a write that lost a race runs again on the fresh copy; undo and lazy
//! writes give way to the other instance's write; fences share only catch-ups started after
//! them; a failing feed is reported; read-your-writes per message or per connection; a failed
//! fence fails the items, not the connection; Names are unique across instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmip_backends::envelope::{FileKek, KekRing};
use kmip_backends::postgres::{PgSettings, PostgresBackend};
use kmip_backends::{KeyAlgorithm, KeySpec, ObjectKind};
use kmip_e2e::accounts::is_root;
use kmip_e2e::postgres::{PgCluster, PG_DATABASE, PG_USER};
use kmip_gateway::config::{LimitsConfig, LocateCacheConfig, ReadYourWrites};
use kmip_gateway::identity::Identity;
use kmip_gateway::kmip::access::{owner_only, Access};
use kmip_gateway::kmip::dispatch::{ConnContext, Dispatcher, Outcome};
use kmip_gateway::kmip::ops::{OpContext, OpError, Ops};
use kmip_gateway::kmip::store::{NoSuchObject, ObjectDraft, Store, StoreError};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Value};
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

/// One backend on `url` of `pg`'s database; every instance has the same KEK.
async fn backend_at(pg: &PgCluster, url: String) -> PostgresBackend {
    let kek = FileKek::from_bytes("test kek", &[7; 32]).unwrap();
    let settings = PgSettings {
        url,
        password: Some(Zeroizing::new(pg.password().to_owned())),
        ca: None,
        pool_size: 4,
        acquire_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
    };
    PostgresBackend::open(settings, KekRing::new(Arc::new(kek), Vec::new()).unwrap())
        .await
        .unwrap()
}

/// A store on its own backend of `pg`'s database, as one gateway has.
async fn store(pg: &PgCluster) -> Arc<Store> {
    let backend = backend_at(pg, pg.url()).await;
    Arc::new(Store::open(Arc::new(backend)).await.unwrap())
}

/// Two stores on one database, each with a feed of its own.
async fn pair(pg: &PgCluster) -> (Arc<Store>, Arc<Store>) {
    (store(pg).await, store(pg).await)
}

/// A raw connection to the cluster, as another session of the database.
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

/// Waits until `sql` (one count) on `client` is positive: a session reached a wait.
async fn until_positive(client: &tokio_postgres::Client, sql: &str, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) == 0 {
        assert!(Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
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

fn key(uid: &str, attributes: Vec<Attribute>) -> (ObjectDraft, KeySpec) {
    let obj = ObjectDraft {
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
    Attribute::name(&Name::new(value))
}

fn tier(value: &str) -> Attribute {
    Attribute {
        name: AttributeName::from_v1_name("x-tier"),
        index: None,
        value: Value::TextString(value.into()),
    }
}

fn group(value: &str) -> Attribute {
    Attribute::text(tags::OBJECT_GROUP, value)
}

/// The identifiers of the objects `store`'s index finds for `filter`.
fn indexed(store: &Store, filter: &[Attribute]) -> Vec<String> {
    let found = store.candidates(filter).expect("an indexed filter");
    found.iter().map(|o| o.uid.to_string()).collect()
}

/// What A writes, B's fence makes visible: the object, its indexes (Name, a custom attribute,
/// State), the live count; an attribute change and a Destroy move B's indexes and invalidate
/// its Locate generations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_applies_the_other_instances_writes() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let (a, b) = pair(&pg).await;
    let (obj, spec) = key("k1", vec![name("disk-1"), tier("gold")]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    assert!(b.get("k1").is_none());
    let seen = b.generations().current();
    b.fence().await.unwrap();
    assert_eq!(b.get("k1").map(|o| o.version), Some(1));
    assert_eq!(b.by_name("disk-1").len(), 1);
    assert_eq!(indexed(&b, &[tier("gold")]), ["k1"]);
    assert_eq!(b.live_objects("purefa"), 1);
    assert!(b.generations().current() > seen, "membership changed");

    a.update::<(), TestError>("k1", |o| {
        o.remove(tags::NAME);
        o.attributes.retain(|a| a.name != tier("").name);
        o.attributes.push(name("disk-2"));
        o.attributes.push(tier("silver"));
        Ok(())
    })
    .await
    .unwrap();
    let seen = b.generations().current();
    b.fence().await.unwrap();
    assert!(b.by_name("disk-1").is_empty());
    assert_eq!(b.by_name("disk-2").len(), 1);
    assert!(indexed(&b, &[tier("gold")]).is_empty());
    assert_eq!(indexed(&b, &[tier("silver")]), ["k1"]);
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
    let destroyed = Attribute::enumeration(tags::STATE, State::Destroyed);
    assert_eq!(indexed(&b, &[destroyed]), ["k1"]);
}

/// This instance's own writes come back through the feed: an echo changes nothing (no
/// double-counted object, no needless invalidation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_of_an_own_write_is_ignored() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let a = store(&pg).await;
    let (obj, spec) = key("k1", vec![name("n")]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    let seen = a.generations().current();
    a.fence().await.unwrap();
    assert_eq!(a.live_objects("purefa"), 1);
    assert_eq!(a.generations().current(), seen);
}

/// A write from a stale copy conflicts, is re-read and runs again on the fresh copy: two
/// charges on two instances are both counted, never one lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_runs_again_on_the_fresh_copy() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let (a, b) = pair(&pg).await;
    let counter = tags::USAGE_LIMITS_COUNT;
    let (obj, spec) = key("k1", vec![Attribute::new(counter, Value::LongInteger(10))]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    b.fence().await.unwrap();
    let charge = |o: &mut ObjectDraft| -> Result<i64, TestError> {
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
    a.fence().await.unwrap();
    let stored = a.get("k1").unwrap();
    assert_eq!(
        stored.first(counter).map(|a| a.value.clone()),
        Some(Value::LongInteger(8)),
        "the database holds both charges"
    );
}

/// Undo on a stale copy: the other instance's write stays, and the local copy follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_after_another_instances_write_leaves_it() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let (a, b) = pair(&pg).await;
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
    assert_eq!(
        indexed(&a, &[group("h")]).len(),
        1,
        "A now holds B's version"
    );
    assert!(indexed(&a, &[group("g")]).is_empty());
}

/// A lazy write that lost a race does not leave the local version ahead of the stored one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lazy_write_rereads_the_object() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let (a, b) = pair(&pg).await;
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
    assert!(a.flush_background(PATIENCE).await);
    let now = a.get("k1").unwrap();
    assert_eq!(now.version, 2, "the stored version, not one ahead of it");
    assert_eq!(indexed(&a, &[group("h")]).len(), 1);
}

/// A lazy write lost to an outage, whose re-read fails too, does not leave A's version ahead of
/// the stored one: B's next write (the same version number) still replaces it on A once the
/// database is back, rather than being taken for an echo of A's own write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_write_lost_to_an_outage_does_not_hide_the_next_change() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let (a, b) = pair(&pg).await;
    let (obj, spec) = key("k1", vec![Attribute::boolean(tags::FRESH, true)]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    b.fence().await.unwrap();
    pg.stop();
    a.update_lazily("k1", |o| o.set(tags::FRESH, Value::Boolean(false)))
        .await;
    assert!(a.flush_background(PATIENCE).await);
    assert_eq!(a.get("k1").unwrap().version, 1, "the stored version");
    pg.restart();
    b.update::<(), TestError>("k1", |o| {
        o.set(tags::OBJECT_GROUP, Value::TextString("h".into()));
        Ok(())
    })
    .await
    .unwrap();
    a.fence().await.unwrap();
    assert_eq!(indexed(&a, &[group("h")]).len(), 1, "B's write reached A");
}

/// Undoing a creation on A removes the object on B too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_reaches_the_other_instance() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let (a, b) = pair(&pg).await;
    let (obj, spec) = key("k1", vec![name("n")]);
    let created = a.create(obj, spec, usize::MAX).await.unwrap();
    b.fence().await.unwrap();
    assert!(b.get("k1").is_some());
    assert!(a.remove(&created).await.unwrap());
    b.fence().await.unwrap();
    assert!(b.get("k1").is_none());
    assert!(b.by_name("n").is_empty());
    let key_type = Attribute::enumeration(tags::OBJECT_TYPE, ObjectType::SymmetricKey);
    assert!(indexed(&b, &[key_type]).is_empty());
    assert_eq!(b.live_objects("purefa"), 0);
}

/// Text of the feed's snapshot query (`SharedBackend::changes`, and `load_all`): each
/// catch-up runs it once, so the reader's statement log counts catch-ups.
const CATCH_UP_MARK: &str = "pg_snapshot_xip";

/// Concurrent fences share one catch-up, but never one that started before they were called:
/// it may have read the feed before the write they must see was committed. The first
/// catch-up is held, its snapshot taken, by a session that locks a table the feed's query
/// reads; a write commits meanwhile; the fences called then must not take that catch-up's
/// result, and share the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_coalesce_only_on_catch_ups_started_after_them() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let writer = store(&pg).await;
    // Only the reader's sessions log their statements: the catch-ups it runs.
    let logged = format!("{}&options=-c%20log_statement%3Dall", pg.url());
    let reader = Arc::new(
        Store::open(Arc::new(backend_at(&pg, logged).await))
            .await
            .unwrap(),
    );
    let catch_ups = || pg.log().matches(CATCH_UP_MARK).count();
    let at_open = catch_ups();

    let mut blocker = raw(&pg).await;
    let observer = raw(&pg).await;
    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE kmip_changes_pruned IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let first = tokio::spawn({
        let reader = reader.clone();
        async move { reader.fence().await }
    });
    // The first catch-up holds its snapshot (backend_xmin) and waits for the table.
    until_positive(
        &observer,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
         AND backend_xmin IS NOT NULL AND query LIKE '%pg\\_snapshot\\_xip%'",
        "the first catch-up waiting with its snapshot",
    )
    .await;

    // Then a write commits, and two more fences are called (one poll each: they take their
    // place and wait for the running catch-up).
    let (obj, spec) = key("k1", vec![name("n")]);
    writer.create(obj, spec, usize::MAX).await.unwrap();
    let mut second = std::pin::pin!(reader.fence());
    let mut third = std::pin::pin!(reader.fence());
    for f in [&mut second, &mut third] {
        assert!(tokio::time::timeout(Duration::ZERO, f).await.is_err());
    }
    tx.rollback().await.unwrap();
    tokio::time::timeout(PATIENCE, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        reader.get("k1").is_none(),
        "the first catch-up read the feed before the write"
    );
    let (r2, r3) = tokio::time::timeout(PATIENCE, async { tokio::join!(second, third) })
        .await
        .unwrap();
    r2.unwrap();
    r3.unwrap();
    assert!(reader.get("k1").is_some(), "the later fences see the write");
    assert_eq!(
        catch_ups() - at_open,
        2,
        "the two later fences shared one catch-up"
    );
}

/// A feed that fails (the database stopped) is reported (for `/readyz`) with its reason once
/// it has failed for the bound, and forgotten once a catch-up works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_feed_is_reported_until_it_works_again() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let store = store(&pg).await;
    store.fence().await.unwrap();
    assert!(store.feed_trouble_after(Duration::ZERO).is_none());
    pg.stop();
    let error = store.fence().await.expect_err("the database is down");
    let reason = store.feed_trouble_after(Duration::ZERO).unwrap();
    assert!(reason.contains(&error.to_string()), "{reason}");
    assert!(
        store.feed_trouble().is_none(),
        "not for longer than FEED_DEGRADED_AFTER yet"
    );
    pg.restart();
    store.fence().await.unwrap();
    assert!(store.feed_trouble_after(Duration::ZERO).is_none());
}

/// The follower applies the other instance's writes with no fence asked for, and stops on
/// shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_applies_changes_until_shutdown() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let (a, b) = pair(&pg).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let follower = b.follow(stopped).expect("a shared backend is followed");
    let (obj, spec) = key("k1", vec![name("followed")]);
    a.create(obj, spec, usize::MAX).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while b.by_name("followed").is_empty() {
        assert!(Instant::now() < deadline, "never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(PATIENCE, follower)
        .await
        .expect("the follower stops on shutdown")
        .unwrap();
}

/// One gateway's KMIP side: a dispatcher over a store on its own backend.
struct Gateway {
    store: Arc<Store>,
    dispatcher: Dispatcher,
}

async fn gateway(pg: &PgCluster, mode: ReadYourWrites) -> Gateway {
    let store = store(pg).await;
    let policy = owner_only(["purefa".to_owned()].into_iter()).unwrap();
    let ops = Ops::new(
        store.clone(),
        Arc::new(Access::new(policy)),
        LocateCacheConfig::default(),
    );
    Gateway {
        store,
        dispatcher: Dispatcher::new(ops, LimitsConfig::default(), None).with_read_your_writes(mode),
    }
}

fn conn(id: u64) -> ConnContext {
    ConnContext::new(
        id,
        "127.0.0.1:1".parse().unwrap(),
        Identity {
            user: "purefa".into(),
            subject: "CN=purefa".into(),
            serial_hex: "01".into(),
            fingerprint: "00".into(),
        },
    )
}

async fn send(
    g: &Gateway,
    conn: &ConnContext,
    payloads: Vec<RequestPayload>,
) -> Vec<ResponseBatchItem> {
    let msg = RequestMessage {
        header: RequestHeader::new(ProtocolVersion::V2_1),
        items: payloads.into_iter().map(RequestBatchItem::new).collect(),
    };
    let Outcome::Respond(out) = g
        .dispatcher
        .handle(conn, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("the connection was closed");
    };
    ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap())
        .unwrap()
        .items
}

fn create(name: &str) -> RequestPayload {
    RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes: vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
            Attribute::name(&Name::new(name)),
        ],
    })
}

fn locate(name: &str) -> RequestPayload {
    RequestPayload::Locate(LocateRequest {
        maximum_items: None,
        offset_items: None,
        storage_status_mask: None,
        object_group_member: None,
        attributes: vec![Attribute::name(&Name::new(name))],
    })
}

async fn created(g: &Gateway, name: &str) -> String {
    match send(g, &conn(99), vec![create(name)])
        .await
        .remove(0)
        .payload
    {
        Some(ResponsePayload::Create(c)) => c.unique_identifier,
        other => panic!("create failed: {other:?}"),
    }
}

async fn located(g: &Gateway, conn: &ConnContext, name: &str) -> Vec<String> {
    match send(g, conn, vec![locate(name)]).await.remove(0).payload {
        Some(ResponsePayload::Locate(l)) => l.unique_identifiers,
        other => panic!("locate failed: {other:?}"),
    }
}

/// Created on A, then at once (no follower runs here) Get, Get Attributes and Locate on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_acknowledged_by_one_gateway_is_seen_by_the_next_request_on_another() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let a = gateway(&pg, ReadYourWrites::Request).await;
    let b = gateway(&pg, ReadYourWrites::Request).await;
    let on_b = conn(1);
    assert!(
        located(&b, &on_b, "disk-1").await.is_empty(),
        "cached: nothing"
    );
    let uid = created(&a, "disk-1").await;
    let items = send(
        &b,
        &on_b,
        vec![
            RequestPayload::Get(GetRequest {
                unique_identifier: Some(uid.clone()),
                key_format_type: None,
                key_wrap_type: None,
                key_compression_type: None,
                key_wrapping_specification: None,
            }),
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid.clone()),
                names: Vec::new(),
            }),
        ],
    )
    .await;
    for item in &items {
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
    }
    assert_eq!(located(&b, &on_b, "disk-1").await, vec![uid]);
}

/// `connection` mode: one catch-up when a connection starts, none for its later messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_mode_catches_up_once_per_connection() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let a = gateway(&pg, ReadYourWrites::Request).await;
    let b = gateway(&pg, ReadYourWrites::Connection).await;
    let first = conn(1);
    assert!(located(&b, &first, "n").await.is_empty());
    let uid = created(&a, "n").await;
    assert!(
        located(&b, &first, "n").await.is_empty(),
        "an open connection does not catch up again"
    );
    assert_eq!(located(&b, &conn(2), "n").await, vec![uid.clone()]);
    assert_eq!(
        located(&b, &first, "n").await,
        vec![uid],
        "applied for everyone"
    );
}

/// A fence that cannot reach the database (stopped) fails every item with General Failure
/// and keeps the connection; once the database is back, the next message catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fence_fails_the_items_not_the_connection() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let a = gateway(&pg, ReadYourWrites::Request).await;
    let b = gateway(&pg, ReadYourWrites::Request).await;
    let uid = created(&a, "n").await;
    pg.stop();
    let on_b = conn(1);
    let items = send(&b, &on_b, vec![locate("n"), locate("m")]).await;
    assert_eq!(items.len(), 2);
    for item in &items {
        assert_eq!(item.result_status, ResultStatus::OperationFailed);
        assert_eq!(item.result_reason, Some(ResultReason::GeneralFailure));
    }
    pg.restart();
    assert_eq!(located(&b, &on_b, "n").await, vec![uid]);
}

/// Many more concurrent Creates with Names than the backend has pooled connections all
/// succeed: a Name lock's holder goes on to fence and write, so the locks must not take the
/// connections those need (they once did, and every Create waited out the acquire timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_named_creates_beyond_the_pool_size_all_succeed() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let g = Arc::new(gateway(&pg, ReadYourWrites::Request).await);
    let creates: Vec<_> = (0..24u64)
        .map(|i| {
            let g = g.clone();
            tokio::spawn(async move {
                send(&g, &conn(i), vec![create(&format!("disk-{i}"))])
                    .await
                    .remove(0)
            })
        })
        .collect();
    for (i, create) in creates.into_iter().enumerate() {
        let item = tokio::time::timeout(PATIENCE, create)
            .await
            .expect("every Create is answered")
            .unwrap();
        assert_eq!(
            item.result_status,
            ResultStatus::Success,
            "disk-{i}: {item:?}"
        );
    }
}

/// The Name check catches up under the cluster-wide Name lock, whatever the message's fence
/// saw: B refuses a Name A gave meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_given_on_another_gateway_is_not_given_again() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let a = gateway(&pg, ReadYourWrites::Request).await;
    let b = gateway(&pg, ReadYourWrites::Request).await;
    created(&a, "shared-name").await;
    // Straight to the operation layer, as if B's message fence ran before A's commit.
    let mut ctx = OpContext::new("purefa", ProtocolVersion::V2_1, 0);
    let r = b
        .dispatcher
        .ops()
        .execute(&mut ctx, create("shared-name"))
        .await;
    assert!(matches!(r, Err(OpError::NonUniqueName(_))), "{r:?}");
}

/// While another gateway holds a Name's database lock, a Create with it waits (seen waiting
/// on the advisory lock in the database), and goes on once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_waits_for_the_cluster_wide_name_lock() {
    if skip() {
        return;
    }
    let pg = PgCluster::start();
    let a = gateway(&pg, ReadYourWrites::Request).await;
    let b = Arc::new(gateway(&pg, ReadYourWrites::Request).await);
    let held = a
        .store
        .backend()
        .shared()
        .unwrap()
        .lock_names(&["n".to_owned()])
        .await
        .unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { created(&b, "n").await })
    };
    let observer = raw(&pg).await;
    until_positive(
        &observer,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        "the Create waiting for the Name lock",
    )
    .await;
    assert!(
        !waiter.is_finished(),
        "created while another gateway held the Name"
    );
    assert!(b.store.by_name("n").is_empty());
    drop(held);
    let uid = tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("released, the Create goes on")
        .unwrap();
    assert_eq!(b.store.by_name("n")[0].uid, uid.into());
}
