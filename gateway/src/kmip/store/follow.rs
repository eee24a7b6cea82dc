//! Following a shared backend's change feed: the other instances' writes applied to this
//! instance's objects, indexes and Locate cache, by a background follower and by the
//! read-your-writes fence ([`Store::fence`]).
//!
//! Catch-ups (one call of [`SharedBackend::changes`] and the application of what it returned)
//! are serialised and numbered. A fence needs a catch-up that *started after* it was called:
//! one that was already running may have read the feed before the write the fence must see was
//! committed. Concurrent fences share the next one instead of each running their own.

use super::{Store, StoreError};
use kmip_backends::{Change, SharedBackend};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long the follower waits for a change notification before catching up anyway: the bound
/// on how stale this instance's view of the others' writes can get when a notification is lost
/// (requests that need an exact view fence instead of relying on it). One cheap query a second
/// per instance.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// The least time between two log lines about a failing feed: a database outage would
/// otherwise log once per [`FOLLOW_INTERVAL`] and once per request.
const FEED_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// How long catch-ups may fail in a row before `/readyz` says the instance is degraded: longer
/// than a connection's reconnect after a database failover, so a failover that heals by itself
/// does not flap readiness.
pub const FEED_DEGRADED_AFTER: Duration = Duration::from_secs(10);

/// This instance's place in the feed.
#[derive(Default)]
pub(super) struct Feed {
    /// Held for the whole of a catch-up: the feed's calls must not overlap.
    run: tokio::sync::Mutex<()>,
    /// Catch-ups started so far (written under `run`): the number of the latest.
    started: AtomicU64,
    /// The number of the latest catch-up that completed.
    finished: AtomicU64,
    trouble: std::sync::Mutex<Trouble>,
}

/// The feed's failures since the last catch-up that worked.
#[derive(Default)]
struct Trouble {
    failing_since: Option<Instant>,
    last_error: String,
    last_logged: Option<Instant>,
}

impl Store {
    /// Read-your-writes: returns once every change committed (by any instance) before the call
    /// is applied here. On a backend no other process opens, nothing to wait for.
    pub async fn fence(&self) -> Result<(), StoreError> {
        let Some(shared) = self.backend.shared() else {
            return Ok(());
        };
        let started = Instant::now();
        let called_at = self.feed.started.load(Ordering::SeqCst);
        let result = {
            let _run = self.feed.run.lock().await;
            if self.feed.finished.load(Ordering::SeqCst) > called_at {
                // A catch-up that started after this call completed meanwhile.
                Ok(())
            } else {
                self.catch_up_locked(shared).await
            }
        };
        metrics::histogram!("kmip_store_fence_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    /// One catch-up, whoever asked for one before.
    async fn catch_up(&self, shared: &dyn SharedBackend) -> Result<(), StoreError> {
        let _run = self.feed.run.lock().await;
        self.catch_up_locked(shared).await
    }

    /// Reads the feed and applies what it holds. The caller holds `feed.run`.
    async fn catch_up_locked(&self, shared: &dyn SharedBackend) -> Result<(), StoreError> {
        let number = self.feed.started.fetch_add(1, Ordering::SeqCst) + 1;
        let result = self.read_and_apply(shared).await;
        match &result {
            Ok(()) => {
                self.feed.finished.store(number, Ordering::SeqCst);
                self.feed_recovered();
            }
            Err(e) => self.feed_failed(e),
        }
        result
    }

    async fn read_and_apply(&self, shared: &dyn SharedBackend) -> Result<(), StoreError> {
        let changes = shared.changes().await?;
        // The feed does not repeat what it returned: every change is applied even if one of
        // them is unreadable, and that one is reported.
        let mut first_error = None;
        for change in changes {
            metrics::counter!("kmip_store_feed_changes_total").increment(1);
            if let Err(e) = self.apply(change).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Applies one change of the feed under the object's write lock: a version newer than the
    /// local one replaces it (as a local write would: indexes, live counts, Locate cache); an
    /// equal or older one (this instance's own write, echoed) changes nothing.
    pub(super) async fn apply(&self, change: Change) -> Result<(), StoreError> {
        match change {
            Change::Upsert(record) => {
                let _guard = self.write_locks.lock(&record.uid).await;
                self.install(record, false)
            }
            Change::Removed(uid) => {
                let _guard = self.write_locks.lock(&uid).await;
                self.uninstall(&uid);
                Ok(())
            }
            Change::Resync(records) => {
                let kept: std::collections::HashSet<Arc<str>> =
                    records.iter().map(|r| r.uid.clone()).collect();
                let mut first_error = None;
                for record in records {
                    let _guard = self.write_locks.lock(&record.uid).await;
                    if let Err(e) = self.install(record, false) {
                        first_error.get_or_insert(e);
                    }
                }
                let gone: Vec<Arc<str>> = self
                    .objects
                    .iter()
                    .filter(|e| !kept.contains(&**e.key()))
                    .map(|e| e.key().clone())
                    .collect();
                // An object created here after the feed took its snapshot is not in it: each
                // one missing is re-read, and forgotten only if the backend has it no more.
                for uid in gone {
                    let _guard = self.write_locks.lock(&uid).await;
                    if let Err(e) = self.refresh(&uid).await {
                        first_error.get_or_insert(e);
                    }
                }
                first_error.map_or(Ok(()), Err)
            }
        }
    }

    fn feed_recovered(&self) {
        let mut trouble = self.feed.trouble.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = trouble.failing_since.take() {
            tracing::info!(
                failing_for_ms = since.elapsed().as_millis() as u64,
                "the change feed works again"
            );
        }
        trouble.last_logged = None;
    }

    fn feed_failed(&self, e: &StoreError) {
        metrics::counter!("kmip_store_feed_errors_total").increment(1);
        let mut trouble = self.feed.trouble.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        trouble.failing_since.get_or_insert(now);
        trouble.last_error = e.to_string();
        if trouble
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= FEED_ERROR_LOG_INTERVAL)
        {
            trouble.last_logged = Some(now);
            tracing::warn!(error = %e, "catching up with the other instances' writes failed; retrying (requests that need them fail until it works)");
        }
    }

    /// Why this instance's view of the others' writes is in doubt: the feed has failed for
    /// longer than [`FEED_DEGRADED_AFTER`]. `None` while it works (or on a backend only this
    /// process opens).
    pub fn feed_trouble(&self) -> Option<String> {
        self.feed_trouble_after(FEED_DEGRADED_AFTER)
    }

    /// [`Store::feed_trouble`] with the bound given (a test asks with a zero bound rather than
    /// wait [`FEED_DEGRADED_AFTER`]).
    pub fn feed_trouble_after(&self, bound: Duration) -> Option<String> {
        let trouble = self.feed.trouble.lock().unwrap_or_else(|e| e.into_inner());
        let since = trouble.failing_since?;
        let failing = since.elapsed();
        (failing >= bound).then(|| {
            format!(
                "the change feed has failed for {} s: {}",
                failing.as_secs(),
                trouble.last_error
            )
        })
    }

    /// Starts the follower on a shared backend: it catches up whenever the backend signals a
    /// change, and at least every [`FOLLOW_INTERVAL`], until `shutdown` turns true. `None` on
    /// a backend only this process opens.
    pub fn follow(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.backend.shared()?;
        let store = self.clone();
        Some(tokio::spawn(async move {
            let Some(shared) = store.backend.shared() else {
                return;
            };
            while !*shutdown.borrow() {
                tokio::select! {
                    changed = shutdown.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        continue;
                    }
                    () = shared.wait_for_change(FOLLOW_INTERVAL) => {}
                }
                // Failures are logged and counted by the catch-up; the next round retries.
                let _ = store.catch_up(shared).await;
            }
        }))
    }
}
