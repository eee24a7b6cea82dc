//! The refresher (`[backend] refresh_interval_ms`, issue 18): the gateway answers Locate and
//! Get Attributes from its own store, exact for every write that passes through it; a key
//! revoked or destroyed on the upstream by others (its console, another client) reaches that
//! view here. Every interval, a pass reads the lifecycle attributes
//! ([`UPSTREAM_LIFECYCLE`]) of the mapped objects upstream, [`REFRESH_BATCH`] Get Attributes
//! items to a message, and hands each answer to the operation layer
//! (`Ops::apply_upstream_lifecycle`), which writes a change through the store. So a change made
//! upstream is visible through the gateway within one interval plus one pass.
//!
//! Bounded: one message in flight (one pooled connection, each call within the pool's timeouts),
//! at most [`MAX_REFRESH_PER_PASS`] objects a pass (the next pass goes on from there), the
//! store's per-object lock only while a change is written. An upstream that does not answer
//! ends the pass with nothing changed; the next pass tries again from the same place. Failures
//! are logged and counted in `kmip_upstream_refresh_failures_total{stage}`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kmip_backends::BackendError;
use kmip_wire::model::{AttributeName, GetAttributesRequest, RequestPayload, ResponsePayload};
use tokio::sync::watch;

use super::{unexpected, MigratingBackend, UpstreamBackend};
use crate::kmip::dispatch::Dispatcher;
use crate::kmip::ops::{Refreshed, UpstreamLifecycle, UPSTREAM_LIFECYCLE};

/// Get Attributes items in one message upstream: few round trips per pass, and a message small
/// enough for any server's batch and size limits and for one `request_timeout`.
pub const REFRESH_BATCH: usize = 32;

/// Objects one pass reads at most: bounds a pass's time and the upstream's load; with more
/// mapped objects the next pass continues where this one stopped.
pub const MAX_REFRESH_PER_PASS: usize = 4_096;

/// Where the passes are in the mapped objects, by gateway identifier.
#[derive(Default)]
struct Cursor(Option<String>);

/// How one pass ended.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// The objects of the pass were read (all, or up to its bound, or until shutdown), and
    /// `changed` of them changed.
    Done { changed: usize },
    /// The upstream did not answer; the next pass retries from the same place.
    Unreachable,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl UpstreamBackend {
    /// The upstream's lifecycle of each of `batch` (gateway, upstream identifiers), in one
    /// message; `Err` when no upstream answered.
    async fn lifecycles(
        &self,
        batch: &[(String, String)],
    ) -> Result<Vec<Result<UpstreamLifecycle, BackendError>>, BackendError> {
        let names: Vec<AttributeName> = UPSTREAM_LIFECYCLE
            .iter()
            .map(|t| AttributeName::Tag(*t))
            .collect();
        let uids: Vec<&str> = batch.iter().map(|(gateway, _)| gateway.as_str()).collect();
        let payloads = batch
            .iter()
            .map(|(_, upstream)| {
                RequestPayload::GetAttributes(GetAttributesRequest {
                    unique_identifier: Some(upstream.clone()),
                    names: names.clone(),
                })
            })
            .collect();
        let answers = self.call_batch("Get Attributes", &uids, payloads).await?;
        Ok(answers
            .into_iter()
            .map(|answer| match answer {
                Ok(ResponsePayload::GetAttributes(r)) => Ok(UpstreamLifecycle::Seen(
                    r.attributes
                        .into_iter()
                        .filter(|a| a.tag().is_some_and(|t| UPSTREAM_LIFECYCLE.contains(&t)))
                        .collect(),
                )),
                Ok(_) => Err(unexpected("Get Attributes")),
                Err(BackendError::NotFound(_)) => Ok(UpstreamLifecycle::Gone),
                Err(e) => Err(e),
            })
            .collect())
    }
}

fn failed(stage: &'static str) {
    metrics::counter!("kmip_upstream_refresh_failures_total", "stage" => stage).increment(1);
}

/// One pass from `cursor`: reads up to [`MAX_REFRESH_PER_PASS`] mapped objects and applies
/// what changed. Stops between two batches once `shutdown` is set (a batch's writes are never
/// cut halfway). In migrate mode, objects the local vault holds are skipped: the upstream's
/// copy no longer decides their lifecycle.
async fn pass(
    proxy: &UpstreamBackend,
    dispatcher: &Dispatcher,
    local: Option<&MigratingBackend>,
    cursor: &mut Cursor,
    shutdown: &watch::Receiver<bool>,
) -> Pass {
    let todo = proxy
        .mapped
        .after(cursor.0.as_deref(), MAX_REFRESH_PER_PASS);
    // Where the next pass starts once this one is through: from the first object again, or
    // after the last one this pass took (skipped ones included).
    let end = if todo.len() < MAX_REFRESH_PER_PASS {
        None
    } else {
        todo.last().map(|(uid, _)| uid.clone())
    };
    let todo: Vec<(String, String)> = todo
        .into_iter()
        .filter(|(uid, _)| local.is_none_or(|l| !l.is_local(uid)))
        .collect();
    let mut changed = 0;
    for batch in todo.chunks(REFRESH_BATCH) {
        if *shutdown.borrow() {
            return Pass::Done { changed };
        }
        let answers = match proxy.lifecycles(batch).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "upstream refresh: no upstream answered; nothing changed, retried next pass");
                failed("read");
                return Pass::Unreachable;
            }
        };
        for ((uid, upstream_uid), answer) in batch.iter().zip(answers) {
            let seen = match answer {
                Ok(seen) => seen,
                Err(e) => {
                    tracing::warn!(uid = %uid, upstream_uid = %upstream_uid, error = %e, "upstream refresh: the upstream refused to read the object");
                    failed("item");
                    continue;
                }
            };
            match dispatcher
                .ops()
                .apply_upstream_lifecycle(uid, seen, now())
                .await
            {
                Ok(Refreshed::Unchanged) => {}
                Ok(Refreshed::Revoked(state)) => {
                    changed += 1;
                    metrics::counter!("kmip_upstream_refresh_changes_total", "change" => "revoked")
                        .increment(1);
                    tracing::info!(uid = %uid, upstream_uid = %upstream_uid, state = ?state, "revoked on the upstream: the gateway's object follows");
                }
                Ok(Refreshed::Destroyed) => {
                    changed += 1;
                    metrics::counter!("kmip_upstream_refresh_changes_total", "change" => "destroyed")
                        .increment(1);
                    tracing::info!(uid = %uid, upstream_uid = %upstream_uid, "gone from the upstream: the gateway's object is destroyed");
                }
                Err(e) => {
                    tracing::warn!(uid = %uid, error = %e, "upstream refresh: applying the upstream's change failed; retried next pass");
                    failed("apply");
                }
            }
        }
        // A pass cut short (upstream down, shutdown) resumes after the last batch done.
        cursor.0 = batch.last().map(|(uid, _)| uid.clone());
    }
    cursor.0 = end;
    Pass::Done { changed }
}

/// Runs a pass every `interval` (counted from the end of the previous one) until `shutdown`.
pub fn spawn(
    proxy: Arc<UpstreamBackend>,
    local: Option<Arc<MigratingBackend>>,
    dispatcher: Arc<Dispatcher>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut cursor = Cursor::default();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let started = std::time::Instant::now();
            let outcome = pass(
                &proxy,
                &dispatcher,
                local.as_deref(),
                &mut cursor,
                &shutdown,
            )
            .await;
            metrics::counter!("kmip_upstream_refresh_passes_total").increment(1);
            tracing::debug!(outcome = ?outcome, ms = started.elapsed().as_millis() as u64, "upstream refresh pass");
        }
    })
}
