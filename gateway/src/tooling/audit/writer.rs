//! The writer thread: takes events from the bounded queue in batches, chains them into records
//! and appends them to `audit.log`, rotating at the size limit.
//!
//! Not blocking the workers: [`super::AuditLog::record`] enqueues without waiting when there is
//! room; when the queue is full it waits up to [`super::ENQUEUE_TIMEOUT`] (the task yields, the
//! worker thread keeps running other tasks), which slows the client down instead of losing its
//! record; only after that is the record dropped, counted in `kmip_audit_dropped_total` and
//! reported at error level. An auditor prefers a slower gateway to silent gaps, but a stuck disk
//! must not stop key service forever. Drops are also written into the chain: before its next
//! batch the writer adds a marker record, so the trail itself says where records are missing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::files::free_rotated_name;
use super::record::{drop_marker, encode_line, Tip};
use super::{AuditEvent, CURRENT_FILE, FILE_MODE};

/// Records the writer takes from the queue per write, bounding the size of one write call.
const MAX_BATCH: usize = 512;
/// How long the writer waits after the first record of a batch for more to arrive. Without it,
/// under load the writer woke (a futex wake and two context switches) for nearly every record:
/// at ~25,000 Gets/s that was a fifth of the gateway's CPU. The trail is not fsynced per record
/// anyway; this delays a record's write by at most this long, and a clean stop still drains
/// everything queued.
const LINGER: Duration = Duration::from_millis(1);
/// Dropped records are logged once, then once per this many, so an overload does not also
/// flood the log.
const DROP_LOG_EVERY: u64 = 1000;

/// Counters shared by the handle and the writer thread (the metrics recorder may not be
/// installed, and tests need the numbers).
#[derive(Default)]
pub(super) struct Counters {
    pub(super) dropped: AtomicU64,
    pub(super) written: AtomicU64,
    /// Drops not yet reported in the chain by a marker record.
    pub(super) unreported: AtomicU64,
}

impl Counters {
    pub(super) fn drop_records(&self, n: u64, reason: &'static str) {
        if n == 0 {
            return;
        }
        metrics::counter!("kmip_audit_dropped_total", "reason" => reason).increment(n);
        self.unreported.fetch_add(n, Ordering::Relaxed);
        let before = self.dropped.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        if before == 0 || before / DROP_LOG_EVERY != after / DROP_LOG_EVERY {
            error!(
                dropped = n,
                dropped_total = after,
                reason,
                "audit records dropped (a marker record in the chain will report them)"
            );
        }
    }
}

/// The writer thread's state: the open `audit.log`, where the chain continues, the counters.
pub(super) struct ChainWriter {
    pub(super) dir: PathBuf,
    pub(super) max_file_bytes: u64,
    pub(super) file: File,
    /// Bytes in `audit.log` known to be written completely.
    pub(super) len: u64,
    /// Seq of the first record in `audit.log`, `None` while it is empty.
    pub(super) first_seq: Option<u64>,
    pub(super) tip: Tip,
    pub(super) counters: Arc<Counters>,
}

impl ChainWriter {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<AuditEvent>) -> io::Result<()> {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(event) = rx.blocking_recv() {
            batch.push(event);
            std::thread::sleep(LINGER);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            self.write_batch(&mut batch);
        }
        if self.counters.unreported.load(Ordering::Relaxed) > 0 {
            self.write_batch(&mut batch);
        }
        self.file.sync_all()
    }

    /// Writes `batch` (leaving it empty), preceded by a drop marker if records were dropped
    /// since the last batch, rotating where the size limit falls. On a write error the file is
    /// cut back to its last complete record and the unwritten records are dropped (and
    /// reported by the next marker), so the chain on disk stays unbroken.
    fn write_batch(&mut self, batch: &mut Vec<AuditEvent>) {
        let carried = self.counters.unreported.swap(0, Ordering::Relaxed);
        let marker = (carried > 0).then(|| (drop_marker(carried), carried));
        let mut buf: Vec<u8> = Vec::new();
        let mut pending = Pending {
            records: 0,
            carried: 0,
            first_seq: None,
            tip: self.tip.clone(),
        };
        // Each event with the drop count it reports (0 for a client's record).
        let mut events = marker
            .into_iter()
            .chain(batch.drain(..).map(|event| (event, 0)));
        while let Some((event, carries)) = events.next() {
            let line = match encode_line(event, &pending.tip) {
                Ok(line) => line,
                Err((e, record_seq)) => {
                    warn!(seq = record_seq, error = %e, "audit record could not be encoded");
                    self.lose(carries, "encode");
                    continue;
                }
            };
            let used = self.len + buf.len() as u64;
            if used > 0 && used + line.bytes.len() as u64 > self.max_file_bytes {
                if let Err(e) = self.commit(&mut buf, &mut pending) {
                    self.fail(&e, &pending);
                    self.lose(carries, "io_error");
                    for (_, carries) in events.by_ref() {
                        self.lose(carries, "io_error");
                    }
                    return;
                }
                if let Err(e) = self.rotate() {
                    // Keep appending to the current file: a missed rotation loses nothing.
                    metrics::counter!("kmip_audit_write_errors_total").increment(1);
                    error!(error = %e, dir = %self.dir.display(), "audit log rotation failed");
                }
            }
            buf.extend_from_slice(&line.bytes);
            pending.records += 1;
            pending.carried += carries;
            pending.first_seq.get_or_insert(pending.tip.next_seq);
            pending.tip = Tip {
                next_seq: pending.tip.next_seq.saturating_add(1),
                prev: line.hash,
            };
        }
        drop(events);
        if let Err(e) = self.commit(&mut buf, &mut pending) {
            self.fail(&e, &pending);
        }
    }

    fn commit(&mut self, buf: &mut Vec<u8>, pending: &mut Pending) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(buf).and_then(|()| self.file.flush()) {
            // Remove a partial write so the next record does not land mid-line.
            if let Err(cut) = self.file.set_len(self.len) {
                error!(error = %cut, "audit log could not be cut back after a failed write");
            }
            buf.clear();
            return Err(e);
        }
        self.len += buf.len() as u64;
        buf.clear();
        if self.first_seq.is_none() {
            self.first_seq = pending.first_seq;
        }
        self.tip = pending.tip.clone();
        self.counters
            .written
            .fetch_add(pending.records, Ordering::Relaxed);
        metrics::counter!("kmip_audit_records_total").increment(pending.records);
        pending.records = 0;
        pending.carried = 0;
        pending.first_seq = None;
        Ok(())
    }

    /// A failed write lost the records in `pending`.
    fn fail(&self, e: &io::Error, pending: &Pending) {
        metrics::counter!("kmip_audit_write_errors_total").increment(1);
        error!(error = %e, dir = %self.dir.display(), "audit log write failed");
        let marker = u64::from(pending.carried > 0);
        self.counters
            .drop_records(pending.records - marker, "io_error");
        self.counters
            .unreported
            .fetch_add(pending.carried, Ordering::Relaxed);
    }

    /// One event that will not be written: a client's record is a drop, a marker's count goes
    /// back to the next marker.
    fn lose(&self, carries: u64, reason: &'static str) {
        if carries == 0 {
            self.counters.drop_records(1, reason);
        } else {
            self.counters
                .unreported
                .fetch_add(carries, Ordering::Relaxed);
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        let Some(first) = self.first_seq else {
            return Ok(());
        };
        let last = self.tip.next_seq.saturating_sub(1);
        self.file.sync_all()?;
        let current = self.dir.join(CURRENT_FILE);
        let target = free_rotated_name(&self.dir, first, last);
        fs::rename(&current, &target)?;
        // Until the new file exists, records keep going to the renamed one (same handle):
        // the chain stays intact, only that file's name understates its last seq.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(&current)?;
        self.file = file;
        self.len = 0;
        self.first_seq = None;
        File::open(&self.dir)?.sync_all()?;
        metrics::counter!("kmip_audit_rotations_total").increment(1);
        info!(
            file = %target.display(),
            first_seq = first,
            last_seq = last,
            last_hash = %self.tip.prev,
            "audit log rotated"
        );
        Ok(())
    }
}

/// Records encoded into `buf` but not yet written.
struct Pending {
    records: u64,
    /// Drops reported by a marker among them.
    carried: u64,
    first_seq: Option<u64>,
    tip: Tip,
}
