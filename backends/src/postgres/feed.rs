//! The change feed: what other instances (and this one) committed, read exactly from
//! `kmip_changes`; the LISTEN connection that wakes the reader; the log's pruning.
//!
//! Why the feed never misses a committed change, although transactions commit out of sequence
//! order: a writer takes its transaction id (its `kmip_objects` write) *before* its change's
//! sequence number. Say the previous read's snapshot `S` showed changes up to `max_seen`. A
//! change with `seq <= max_seen` that `S` did not show took its number before `max_seen`'s,
//! which committed before `S`; so its transaction had its id before `S` and had not committed:
//! it was in progress at `S`: either its id is in `S`'s in-progress list (`pending`), or it is
//! at or above `S`'s xmax, which PostgreSQL sets one past the latest *completed* id, not past
//! the latest assigned one, and whose in-progress ids the list leaves out. Each read therefore
//! asks for `seq > max_seen OR txid = ANY(pending) OR txid >= xmax`, and keeps the new
//! snapshot's list and xmax for the next read.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio_postgres::{IsolationLevel, Transaction};

use super::connect::{checkout, unavailable, ListenerEvent, Manager, Pool};
use super::rows::{self, RECORD_COLUMNS};
use super::{locks, PostgresBackend};
use crate::{BackendError, Change, NameLockGuard, ObjectRecord, SharedBackend};

/// How long the change log keeps an entry: an instance that is away (stopped, partitioned)
/// longer than this resyncs completely instead of catching up; the log stays bounded.
pub const CHANGE_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often each instance prunes the log (the work is idempotent across instances).
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);
/// The listener's reconnection backoff: first wait, and the cap (a restarting server is
/// retried quickly, a long outage is not hammered).
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where this instance's feed is.
#[derive(Default)]
pub(crate) struct FeedPosition {
    /// Highest sequence number reported (or read by `load_all`).
    max_seen: i64,
    /// Transaction ids in progress at the previous read's snapshot, as text.
    pending: Vec<String>,
    /// That snapshot's xmax, as text: ids from it up were in progress too, and unlisted.
    /// `None` before the first read.
    xmax: Option<String>,
}

/// What a snapshot says of the transactions in progress, and the log's pruning point.
struct SnapshotFacts {
    pending: Vec<String>,
    xmax: String,
    pruned: i64,
}

/// A read-only REPEATABLE READ transaction: one snapshot for all it reads.
async fn snapshot_tx(conn: &mut tokio_postgres::Client) -> Result<Transaction<'_>, BackendError> {
    conn.build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(unavailable)
}

/// The snapshot's in-progress transaction ids, its xmax and the log's pruning point (the
/// first statement of the transaction: it takes the snapshot).
async fn snapshot_facts(tx: &Transaction<'_>) -> Result<SnapshotFacts, BackendError> {
    let row = tx
        .query_one(
            "SELECT ARRAY(SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x), \
             pg_snapshot_xmax(pg_current_snapshot())::text, \
             (SELECT through FROM kmip_changes_pruned)",
            &[],
        )
        .await
        .map_err(unavailable)?;
    Ok(SnapshotFacts {
        pending: row.get(0),
        xmax: row.get(1),
        pruned: row.get(2),
    })
}

/// Every object, and the position after them, in `tx`'s snapshot.
async fn everything(
    tx: &Transaction<'_>,
    facts: SnapshotFacts,
) -> Result<(Vec<ObjectRecord>, FeedPosition), BackendError> {
    let objects = tx
        .query(&format!("SELECT {RECORD_COLUMNS} FROM kmip_objects"), &[])
        .await
        .map_err(unavailable)?
        .iter()
        .map(rows::record)
        .collect::<Result<Vec<_>, _>>()?;
    let last: i64 = tx
        .query_one("SELECT coalesce(max(seq), 0) FROM kmip_changes", &[])
        .await
        .map_err(unavailable)?
        .get(0);
    Ok((
        objects,
        FeedPosition {
            max_seen: last.max(facts.pruned),
            pending: facts.pending,
            xmax: Some(facts.xmax),
        },
    ))
}

impl PostgresBackend {
    /// `load_all`: every object, and the feed's starting point in the same snapshot.
    pub(crate) async fn load_all_and_mark(&self) -> Result<Vec<ObjectRecord>, BackendError> {
        let mut feed = self.inner.feed.lock().await;
        let mut conn = self.conn().await?;
        let tx = snapshot_tx(&mut conn).await?;
        let facts = snapshot_facts(&tx).await?;
        let (objects, position) = everything(&tx, facts).await?;
        tx.commit().await.map_err(unavailable)?;
        *feed = position;
        Ok(objects)
    }

    async fn read_changes(&self) -> Result<Vec<Change>, BackendError> {
        let mut feed = self.inner.feed.lock().await;
        let mut conn = self.feed_conn().await?;
        let tx = snapshot_tx(&mut conn).await?;
        let facts = snapshot_facts(&tx).await?;
        if facts.pruned > feed.max_seen {
            let (objects, position) = everything(&tx, facts).await?;
            tx.commit().await.map_err(unavailable)?;
            *feed = position;
            self.inner.cache.clear();
            return Ok(vec![Change::Resync(objects)]);
        }
        let rows = tx
            .query(
                "WITH ch AS (SELECT uid, max(seq) AS seq FROM kmip_changes \
                 WHERE seq > $1 OR txid = ANY($2::text[]::xid8[]) \
                 OR txid >= $3::text::xid8 GROUP BY uid) \
                 SELECT ch.seq, ch.uid, o.kind, o.version, o.meta \
                 FROM ch LEFT JOIN kmip_objects o ON o.uid = ch.uid",
                &[&feed.max_seen, &feed.pending, &feed.xmax],
            )
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let mut changes = Vec::with_capacity(rows.len());
        let mut max_seen = feed.max_seen;
        for row in &rows {
            max_seen = max_seen.max(row.get::<_, i64>(0));
            let uid: String = row.get(1);
            self.inner.cache.invalidate(&uid);
            let kind: Option<i16> = row.get(2);
            changes.push(match kind {
                None => Change::Removed(uid),
                Some(_) => {
                    let version: i64 = row.get(3);
                    Change::Upsert(ObjectRecord {
                        kind: rows::kind(&uid, row.get(2))?,
                        version: u64::try_from(version).map_err(|_| {
                            BackendError::Corrupt(format!("object {uid} has version {version}"))
                        })?,
                        meta: bytes::Bytes::from(row.get::<_, Vec<u8>>(4)),
                        uid: uid.into(),
                    })
                }
            });
        }
        *feed = FeedPosition {
            max_seen,
            pending: facts.pending,
            xmax: Some(facts.xmax),
        };
        Ok(changes)
    }
}

#[async_trait]
impl SharedBackend for PostgresBackend {
    async fn changes(&self) -> Result<Vec<Change>, BackendError> {
        self.read_changes().await
    }

    async fn wait_for_change(&self, timeout: Duration) {
        let mut wake = self.inner.wake.lock().await;
        let _ = tokio::time::timeout(timeout, async {
            // A listener that ended (never while the backend lives) leaves only the timeout.
            if wake.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await;
    }

    async fn load(&self, uid: &str) -> Result<Option<ObjectRecord>, BackendError> {
        let conn = self.conn().await?;
        conn.query_opt(
            &format!("SELECT {RECORD_COLUMNS} FROM kmip_objects WHERE uid = $1"),
            &[&uid],
        )
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(rows::record)
        .transpose()
    }

    async fn lock_names(&self, names: &[String]) -> Result<NameLockGuard, BackendError> {
        if names.is_empty() {
            return Ok(Box::new(()));
        }
        let conn = self.lock_conn().await?;
        Ok(Box::new(locks::lock(conn, names).await?))
    }
}

/// The LISTEN connection: a notification, or a (re)connection, bumps `wake`. It reconnects
/// with backoff after a failover or restart; the reader then catches up from the log, so a
/// notification lost meanwhile costs nothing.
pub(crate) async fn listen(manager: Manager, wake: tokio::sync::watch::Sender<u64>) {
    let mut backoff = LISTEN_BACKOFF_MIN;
    loop {
        match manager.connect_listener().await {
            Ok((client, mut events)) => {
                let subscribe = client.batch_execute("LISTEN kmip_changes");
                tokio::pin!(subscribe);
                let mut listening = false;
                loop {
                    tokio::select! {
                        r = &mut subscribe, if !listening => match r {
                            Ok(()) => {
                                listening = true;
                                backoff = LISTEN_BACKOFF_MIN;
                                wake.send_modify(|n| *n = n.wrapping_add(1));
                            }
                            Err(e) => {
                                tracing::warn!("PostgreSQL change listener: LISTEN failed: {e}");
                                break;
                            }
                        },
                        event = events.next() => match event {
                            Some(ListenerEvent::Notified) => {
                                wake.send_modify(|n| *n = n.wrapping_add(1));
                            }
                            Some(ListenerEvent::Other) => {}
                            Some(ListenerEvent::Failed(e)) => {
                                tracing::warn!("PostgreSQL change listener lost its connection: {e}");
                                break;
                            }
                            None => break,
                        },
                    }
                }
            }
            Err(e) => tracing::warn!("PostgreSQL change listener cannot connect: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// Deletes log entries older than `retention`; the highest sequence deleted becomes the
/// pruning point (a feed behind it resyncs).
pub(crate) async fn prune(
    pool: &Pool,
    acquire_timeout: Duration,
    retention: Duration,
) -> Result<u64, BackendError> {
    let conn = checkout(pool, acquire_timeout).await?;
    let row = conn
        .query_one(
            "WITH d AS (DELETE FROM kmip_changes WHERE at < now() - make_interval(secs => $1) \
             RETURNING seq), \
             u AS (UPDATE kmip_changes_pruned SET through = greatest(through, \
             (SELECT max(seq) FROM d)) WHERE EXISTS (SELECT 1 FROM d)) \
             SELECT count(*) FROM d",
            &[&retention.as_secs_f64()],
        )
        .await
        .map_err(unavailable)?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

pub(crate) async fn prune_periodically(pool: Pool, acquire_timeout: Duration) {
    loop {
        tokio::time::sleep(PRUNE_INTERVAL).await;
        if let Err(e) = prune(&pool, acquire_timeout, CHANGE_RETENTION).await {
            tracing::warn!("pruning the PostgreSQL change log failed (retried later): {e}");
        }
    }
}
