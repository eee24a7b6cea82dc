//! The PostgreSQL backend: several gateway processes on one database (high availability).
//! Key material is stored sealed under per-object data keys wrapped by a KEK
//! ([`crate::envelope`]); the database holds only ciphertext. Every write transaction writes
//! its `kmip_objects` row first (taking its transaction id), then its `kmip_changes` row, then
//! notifies; the change feed ([`crate::SharedBackend::changes`]) relies on that order.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::envelope::KekRing;
use crate::{BackendError, KeySpec, ObjectKind};

mod cache;
mod connect;
mod feed;
mod locks;
mod ops;
mod rotate;
mod rows;
mod schema;
mod seal;

pub use feed::CHANGE_RETENTION;
pub use rotate::RotateReport;
pub use schema::Migration;

use connect::{unavailable, Manager, Pool};

/// How to reach the database, as the gateway's `[backend]` section gives it.
#[derive(Clone)]
pub struct PgSettings {
    /// A libpq-style URI, `postgresql://user@host1:port1,host2:port2/db?target_session_attrs=read-write&sslmode=require`.
    /// Several hosts are tried in order; it never carries a password.
    pub url: String,
    /// The password, read by the gateway from a file or the environment.
    pub password: Option<Zeroizing<String>>,
    /// PEM bundle of the CAs that sign the database server's certificate (TLS is verified
    /// against these; without it, `sslmode` must be `disable`).
    pub ca: Option<PathBuf>,
    /// Connections in the pool, and in the separate pool of Name locks.
    pub pool_size: u32,
    /// How long an operation waits for a pooled connection before failing.
    pub acquire_timeout: Duration,
    /// How long opening one connection may take (per host).
    pub connect_timeout: Duration,
}

/// The PostgreSQL backend. Dropping it stops its change listener and pruning task.
pub struct PostgresBackend {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    pool: Pool,
    /// Connections holding Name locks, apart from `pool`: a Name's holder goes on to fence and
    /// write through `pool`, so holders sharing it could take every connection and wait for
    /// one of their own, each until the acquire timeout.
    lock_pool: Pool,
    /// The one connection the feed reads through (its reads never overlap): a fence, which
    /// every request waits for, never queues behind writes waiting for their commits.
    feed_pool: Pool,
    acquire_timeout: Duration,
    keks: KekRing,
    cache: cache::MaterialCache,
    feed: tokio::sync::Mutex<feed::FeedPosition>,
    wake: tokio::sync::Mutex<tokio::sync::watch::Receiver<u64>>,
    manager: Manager,
    /// Connections holding this process's session advisory locks ([`PostgresBackend::claim`]):
    /// a lock lives as long as its connection.
    claims: std::sync::Mutex<Vec<tokio_postgres::Client>>,
}

impl PostgresBackend {
    /// Connects, applies pending schema migrations, checks that every stored data key's KEK is
    /// configured, and starts the change listener and the change log's pruning.
    pub async fn open(
        settings: PgSettings,
        keks: KekRing,
    ) -> Result<PostgresBackend, BackendError> {
        let manager = Manager::new(&settings)?;
        let mut client = manager.connect_client().await.map_err(unavailable)?;
        schema::apply(&mut client).await?;
        check_keks(&client, &keks).await?;
        drop(client);
        let pool = connect::pool(&settings, settings.pool_size, manager.clone());
        let lock_pool = connect::pool(&settings, settings.pool_size, manager.clone());
        let feed_pool = connect::pool(&settings, 1, manager.clone());
        let (wake_tx, wake_rx) = tokio::sync::watch::channel(0u64);
        let tasks = vec![
            tokio::spawn(feed::listen(manager.clone(), wake_tx)),
            tokio::spawn(feed::prune_periodically(
                pool.clone(),
                settings.acquire_timeout,
            )),
        ];
        Ok(PostgresBackend {
            inner: Arc::new(Inner {
                pool,
                lock_pool,
                feed_pool,
                acquire_timeout: settings.acquire_timeout,
                keks,
                cache: cache::MaterialCache::default(),
                feed: tokio::sync::Mutex::new(feed::FeedPosition::default()),
                wake: tokio::sync::Mutex::new(wake_rx),
                manager,
                claims: std::sync::Mutex::default(),
            }),
            tasks,
        })
    }

    /// Takes the session advisory lock `key` on a connection of its own, kept as long as this
    /// backend: `Ok(false)` when another session holds it. What a process alone may do on the
    /// database (a migrating KMIP proxy) claims it at start, so a second one is refused. Only
    /// a start-time guard: a connection lost later (a database restart) releases the lock.
    pub async fn claim(&self, key: i64) -> Result<bool, BackendError> {
        let client = self
            .inner
            .manager
            .connect_client()
            .await
            .map_err(unavailable)?;
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(unavailable)?;
        let held: bool = row.try_get(0).map_err(unavailable)?;
        if held {
            self.inner
                .claims
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(client);
        }
        Ok(held)
    }

    /// Deletes the change log's entries older than `retention` and records the pruning point
    /// (what the periodic task does with [`CHANGE_RETENTION`]); returns how many went.
    /// An instance whose feed is behind the pruning point resyncs.
    pub async fn prune_changes(&self, retention: Duration) -> Result<u64, BackendError> {
        feed::prune(&self.inner.pool, self.inner.acquire_timeout, retention).await
    }

    async fn conn(&self) -> Result<bb8::PooledConnection<'static, Manager>, BackendError> {
        connect::checkout(&self.inner.pool, self.inner.acquire_timeout).await
    }

    async fn feed_conn(&self) -> Result<bb8::PooledConnection<'static, Manager>, BackendError> {
        connect::checkout(&self.inner.feed_pool, self.inner.acquire_timeout).await
    }

    async fn lock_conn(&self) -> Result<bb8::PooledConnection<'static, Manager>, BackendError> {
        connect::checkout(&self.inner.lock_pool, self.inner.acquire_timeout).await
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Refuses to start when a stored data key is wrapped by a KEK that is not configured: every
/// read of it would fail later, one object at a time.
async fn check_keks(client: &tokio_postgres::Client, keks: &KekRing) -> Result<(), BackendError> {
    let rows = client
        .query(
            "SELECT DISTINCT kek_id FROM kmip_objects WHERE kek_id IS NOT NULL",
            &[],
        )
        .await
        .map_err(unavailable)?;
    let missing: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|id| keks.by_id(id).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(BackendError::InvalidInput(format!(
            "data keys in the database are wrapped by key encryption keys that are not \
             configured ({}): add them to backend.previous_keks",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The migrations `open` would apply to this database (`migrate-schema --dry-run`).
pub async fn pending_migrations(settings: &PgSettings) -> Result<Vec<Migration>, BackendError> {
    let client = Manager::new(settings)?
        .connect_client()
        .await
        .map_err(unavailable)?;
    schema::pending(&client).await
}

/// Applies the pending migrations now; returns those applied (`migrate-schema`).
pub async fn apply_migrations(settings: &PgSettings) -> Result<Vec<Migration>, BackendError> {
    let mut client = Manager::new(settings)?
        .connect_client()
        .await
        .map_err(unavailable)?;
    schema::apply(&mut client).await
}

/// Opens a stored `sealed` value with an unwrapped data key, for the object `uid` of `kind` and
/// key facts `spec`, exactly as the backend reads material: lets an audit (and the tests) check
/// what a destroyed object's data key, unwrapped from an old backup, still opens.
pub fn open_sealed(
    data_key: &[u8],
    uid: &str,
    kind: ObjectKind,
    spec: Option<&KeySpec>,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    seal::open(data_key, uid, kind, spec, sealed)
}
