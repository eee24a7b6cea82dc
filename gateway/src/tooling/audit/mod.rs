//! Tamper-evident audit trail: one JSON line per KMIP batch item, hash-chained across files.
//!
//! The file format (the record's fields, its canonical form and the hash chain, rotation, torn
//! lines, drop markers) is specified in `docs/audit-format.md` at the root of the repository.
//! `record` builds records (no field can hold a secret), `writer` is the thread that appends
//! them behind a bounded queue, `files` names, opens and reads the files, and [`verify()`]
//! checks a chain.
//!
//! Metrics: `kmip_audit_records_total`, `kmip_audit_dropped_total{reason}` (`queue_full`,
//! `io_error`, `encode`, `closed`), `kmip_audit_write_errors_total`, `kmip_audit_rotations_total`.

mod files;
mod record;
mod verify;
mod writer;

pub use record::{AuditEvent, AuditRecord};
pub use verify::{verify, ChainEnd, ChainStart, Problem, ProblemKind, VerifyReport};

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::error;

use files::{
    newest_rotated, open_current, read_first_record, read_last_record, set_aside_torn_tail,
    sync_dir,
};
use record::Tip;
use writer::{ChainWriter, Counters};

/// The file records are appended to; rotated files are renamed away from it.
pub const CURRENT_FILE: &str = "audit.log";
/// `prev` of the first record of a chain.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// `seq` of the first record of a chain.
pub const GENESIS_SEQ: u64 = 1;

/// Records waiting for the writer thread; bounds the memory a slow disk can pin (a record is
/// typically ~400 bytes, at most a few tens of KiB with every field at its limit).
pub const QUEUE_CAPACITY: usize = 4096;
/// How long [`AuditLog::record`] waits for room in a full queue before dropping the record:
/// long enough to ride out an fsync on rotation, short enough that a dead disk does not stall
/// every KMIP request.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest client-controlled string kept in a record (UIDs, subject, reason…), in bytes.
pub const MAX_FIELD_BYTES: usize = 512;
/// Most unique identifiers kept in one record (Locate can return many).
pub const MAX_UIDS: usize = 16;
/// Longest line read back, by [`AuditLog::open`] and [`verify`]: a record at every limit, with
/// worst-case JSON escaping, stays well below; it bounds the memory a corrupt file can claim.
pub const MAX_LINE_BYTES: usize = 256 * 1024;
/// Audit files are readable by the service group (log shippers), writable by the service only.
const FILE_MODE: u32 = 0o640;

/// `operation` of the record the writer adds when records were dropped (with an empty `user`,
/// which no authenticated client has); its `result_reason` starts with the count.
pub const DROP_MARKER_OPERATION: &str = "AuditRecordsDropped";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The newest record cannot be read, so the chain cannot be continued; move the file aside
    /// (after keeping it as evidence) to start a new chain.
    #[error("audit log {path}: cannot continue the chain: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("audit writer thread panicked")]
    WriterPanicked,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an [`AuditLog`] did between open and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditTotals {
    /// Records written, drop markers included.
    pub written: u64,
    /// Records dropped (each reported by a marker in the chain, unless the last write failed).
    pub dropped: u64,
}

/// Handle on the audit trail; share it behind an `Arc`. Dropping it flushes, fsyncs and stops
/// the writer like [`AuditLog::close`], logging instead of returning a failure.
pub struct AuditLog {
    dir: PathBuf,
    tx: Option<mpsc::Sender<AuditEvent>>,
    writer: Option<JoinHandle<io::Result<()>>>,
    counters: Arc<Counters>,
}

impl AuditLog {
    /// Opens (creating if needed) the audit directory and continues the chain from the newest
    /// record found in `audit.log` or, if that is empty, in the newest rotated file.
    pub fn open(dir: impl AsRef<Path>, max_file_bytes: u64) -> Result<AuditLog, AuditError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let current = dir.join(CURRENT_FILE);
        let mut file = open_current(&current)?;
        let len = set_aside_torn_tail(&mut file, &current)?;

        let (first_seq, tip) = if len > 0 {
            let first = read_first_record(&current)?;
            let last = read_last_record(&mut file, len, &current)?;
            (Some(first.seq), Tip::after(&last, &current)?)
        } else {
            match newest_rotated(&dir)? {
                Some(path) => {
                    let mut rotated = File::open(&path).map_err(io_err(&path))?;
                    let rlen = rotated.metadata().map_err(io_err(&path))?.len();
                    let last = read_last_record(&mut rotated, rlen, &path)?;
                    (None, Tip::after(&last, &path)?)
                }
                None => (
                    None,
                    Tip {
                        next_seq: GENESIS_SEQ,
                        prev: GENESIS_PREV.to_owned(),
                    },
                ),
            }
        };
        sync_dir(&dir)?;

        let counters = Arc::new(Counters::default());
        let writer = ChainWriter {
            dir: dir.clone(),
            max_file_bytes,
            file,
            len,
            first_seq,
            tip,
            counters: Arc::clone(&counters),
        };
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("kmip-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(&dir))?;
        Ok(AuditLog {
            dir,
            tx: Some(tx),
            writer: Some(handle),
            counters,
        })
    }

    /// Queues one record. Returns at once when the queue has room; otherwise waits up to
    /// [`ENQUEUE_TIMEOUT`] (yielding the task, not blocking the thread), then drops and counts
    /// the record.
    pub async fn record(&self, event: AuditEvent) {
        let Some(tx) = &self.tx else {
            self.counters.drop_records(1, "closed");
            return;
        };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => self.counters.drop_records(1, "closed"),
            Err(TrySendError::Full(event)) => {
                match tokio::time::timeout(ENQUEUE_TIMEOUT, tx.send(event)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => self.counters.drop_records(1, "closed"),
                    Err(_) => self.counters.drop_records(1, "queue_full"),
                }
            }
        }
    }

    /// Records dropped since open (queue full, writer gone, or write failure).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records written to disk since open, drop markers included.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes everything queued (and a drop marker if records were dropped), fsyncs and stops
    /// the writer thread. Blocks for that long (one write and one fsync): call it at shutdown.
    pub fn close(mut self) -> Result<AuditTotals, AuditError> {
        self.shutdown()?;
        Ok(AuditTotals {
            written: self.written(),
            dropped: self.dropped(),
        })
    }

    fn shutdown(&mut self) -> Result<(), AuditError> {
        // Dropping the only sender ends the writer's loop once the queue is drained.
        self.tx = None;
        let Some(handle) = self.writer.take() else {
            return Ok(());
        };
        match handle.join() {
            Ok(result) => result.map_err(io_err(&self.dir.join(CURRENT_FILE))),
            Err(_) => Err(AuditError::WriterPanicked),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            error!(error = %e, "audit log did not close cleanly");
        }
    }
}
