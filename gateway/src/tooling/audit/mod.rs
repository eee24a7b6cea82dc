//! Tamper-evident audit trail: one JSON line per KMIP batch item, hash-chained across files.
//!
//! # What a record holds
//! [`AuditRecord`] has exactly these fields: `seq`, `time` (RFC 3339 UTC, microseconds), `conn_id`,
//! `peer`, `cert_subject`, `cert_fingerprint` (SHA-256 of the client certificate), `user`,
//! `operation`, `unique_identifiers`, `result_status`, `result_reason`, `latency_us`, `prev`,
//! `hash`. **No field can hold key material, PINs or private keys**: the type has no bytes field
//! and no attribute bag, so a caller cannot put a secret in a record by accident, and unknown
//! fields are rejected when a record is read back. Client-supplied strings are cut to
//! [`MAX_FIELD_BYTES`] (and the identifier list to [`MAX_UIDS`]) with a visible marker, so a
//! record always fits in [`MAX_LINE_BYTES`].
//!
//! # The chain
//! `hash` is the lowercase hex SHA-256 of the record's canonical form: the compact `serde_json`
//! encoding of the record **without** `hash`, fields in the order listed above. `prev` is the
//! `hash` of the previous record (64 zeros for the first record, seq [`GENESIS_SEQ`]); `seq`
//! grows by one per record, across files. Editing a record breaks its hash; deleting or moving
//! one breaks the seq/prev links. The chain has no secret key: someone who can write the files
//! can rewrite every record after the one they change. The rotation log line (`tracing` info with
//! the last seq and hash) and [`VerifyReport`]'s last hash are the anchors to keep elsewhere;
//! removing records from the *end* is only visible against such an anchor.
//!
//! # Files
//! Records are appended to `DIR/audit.log`. When the next record would take it over the size
//! limit, it is fsynced and renamed `audit-<first seq>-<last seq>.log` (20-digit, zero-padded),
//! the directory is fsynced, and the chain continues in a new `audit.log`. Each batch the writer
//! takes from the queue is written with one `write` and no fsync; files are fsynced on rotation
//! and on [`AuditLog::close`]/drop. A crash can leave a partial last line: [`AuditLog::open`]
//! moves those bytes to `audit.log.torn-<unix seconds>` (kept for inspection, ignored by
//! [`verify`]) and continues from the last complete record.
//!
//! # Not blocking the workers
//! The file is written by a dedicated thread fed by a bounded queue ([`QUEUE_CAPACITY`]).
//! [`AuditLog::record`] enqueues without waiting when there is room; when the queue is full it
//! waits up to [`ENQUEUE_TIMEOUT`] (the task yields, the worker thread keeps running other
//! tasks), which slows the client down instead of losing its record; only after that is the
//! record dropped, counted in `kmip_audit_dropped_total` and reported at error level. An auditor
//! prefers a slower gateway to silent gaps, but a stuck disk must not stop key service forever.
//! Drops are also written into the chain: before its next batch the writer adds a marker record
//! (`operation` [`DROP_MARKER_OPERATION`], empty `user`, `result_reason` "N audit record(s)
//! dropped…"), so the trail itself says where records are missing and [`verify`] counts them.
//! Dropped records never get a seq, so they do not break the chain.
//!
//! Metrics: `kmip_audit_records_total`, `kmip_audit_dropped_total{reason}` (`queue_full`,
//! `io_error`, `encode`, `closed`), `kmip_audit_write_errors_total`, `kmip_audit_rotations_total`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::{error, info, warn};

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
/// Records the writer takes from the queue per write, bounding the size of one write call.
const MAX_BATCH: usize = 512;
/// Longest client-controlled string kept in a record (UIDs, subject, reason…), in bytes.
pub const MAX_FIELD_BYTES: usize = 512;
/// Most unique identifiers kept in one record (Locate can return many).
pub const MAX_UIDS: usize = 16;
/// Longest line read back, by [`AuditLog::open`] and [`verify`]: a record at every limit, with
/// worst-case JSON escaping, stays well below; it bounds the memory a corrupt file can claim.
pub const MAX_LINE_BYTES: usize = 256 * 1024;
/// Dropped records are logged once, then once per this many, so an overload does not also
/// flood the log.
const DROP_LOG_EVERY: u64 = 1000;
/// Audit files are readable by the service group (log shippers), writable by the service only.
const FILE_MODE: u32 = 0o640;
/// Chunk used when looking backwards for the end of the last complete line.
const TAIL_SCAN_CHUNK: u64 = 64 * 1024;

const TRUNCATED_MARK: &str = "…[truncated]";

/// `operation` of the record the writer adds when records were dropped (with an empty `user`,
/// which no authenticated client has); its `result_reason` starts with the count.
pub const DROP_MARKER_OPERATION: &str = "AuditRecordsDropped";
const DROP_MARKER_REASON: &str =
    "audit record(s) dropped before this one (queue full or write error)";

/// One audited batch item, as written to the log. See the module doc for the field list and
/// why none of them can carry a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub seq: u64,
    /// RFC 3339, UTC, microseconds: `2025-01-31T12:34:56.123456Z`.
    pub time: String,
    pub conn_id: u64,
    pub peer: String,
    pub cert_subject: String,
    /// SHA-256 of the client certificate's DER, lowercase hex.
    pub cert_fingerprint: String,
    pub user: String,
    pub operation: String,
    pub unique_identifiers: Vec<String>,
    pub result_status: String,
    pub result_reason: Option<String>,
    pub latency_us: u64,
    /// `hash` of the previous record, or [`GENESIS_PREV`].
    pub prev: String,
    /// Hex SHA-256 of [`AuditRecord::canonical_json`].
    pub hash: String,
}

/// The hashed form: every field but `hash`, in declaration order. Kept as its own type so the
/// canonical form does not depend on serde_json's map ordering features.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    time: &'a str,
    conn_id: u64,
    peer: &'a str,
    cert_subject: &'a str,
    cert_fingerprint: &'a str,
    user: &'a str,
    operation: &'a str,
    unique_identifiers: &'a [String],
    result_status: &'a str,
    result_reason: Option<&'a str>,
    latency_us: u64,
    prev: &'a str,
}

impl AuditRecord {
    /// The bytes `hash` is computed over: the compact JSON of the record without `hash`.
    pub fn canonical_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Canonical {
            seq: self.seq,
            time: &self.time,
            conn_id: self.conn_id,
            peer: &self.peer,
            cert_subject: &self.cert_subject,
            cert_fingerprint: &self.cert_fingerprint,
            user: &self.user,
            operation: &self.operation,
            unique_identifiers: &self.unique_identifiers,
            result_status: &self.result_status,
            result_reason: self.result_reason.as_deref(),
            latency_us: self.latency_us,
            prev: &self.prev,
        })
    }

    /// What `hash` must be for this content.
    pub fn compute_hash(&self) -> Result<String, serde_json::Error> {
        Ok(hex::encode(Sha256::digest(self.canonical_json()?)))
    }
}

/// What the dispatcher hands over per batch item: a record without the chain fields, which the
/// writer thread assigns in queue order.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// When the item was received (`SystemTime::now()` at the start of its handling).
    pub time: SystemTime,
    pub conn_id: u64,
    pub peer: SocketAddr,
    pub cert_subject: String,
    pub cert_fingerprint: String,
    pub user: String,
    pub operation: String,
    pub unique_identifiers: Vec<String>,
    pub result_status: String,
    pub result_reason: Option<String>,
    pub latency_us: u64,
}

impl AuditEvent {
    /// The record with its chain fields, `hash` still empty.
    fn into_record(self, seq: u64, prev: &str) -> AuditRecord {
        let mut uids: Vec<String> =
            Vec::with_capacity(self.unique_identifiers.len().min(MAX_UIDS + 1));
        let total = self.unique_identifiers.len();
        for uid in self.unique_identifiers.into_iter().take(MAX_UIDS) {
            uids.push(bounded(uid));
        }
        if total > MAX_UIDS {
            uids.push(format!("…[{} more]", total - MAX_UIDS));
        }
        AuditRecord {
            seq,
            time: rfc3339_micros(self.time),
            conn_id: self.conn_id,
            peer: self.peer.to_string(),
            cert_subject: bounded(self.cert_subject),
            cert_fingerprint: bounded(self.cert_fingerprint),
            user: bounded(self.user),
            operation: bounded(self.operation),
            unique_identifiers: uids,
            result_status: bounded(self.result_status),
            result_reason: self.result_reason.map(bounded),
            latency_us: self.latency_us,
            prev: prev.to_owned(),
            hash: String::new(),
        }
    }
}

/// Cuts `s` to [`MAX_FIELD_BYTES`] on a character boundary, marking the cut.
fn bounded(mut s: String) -> String {
    if s.len() > MAX_FIELD_BYTES {
        let mut end = MAX_FIELD_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(TRUNCATED_MARK);
    }
    s
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Built from components so it cannot fail for any clock value
/// the `time` crate represents; a clock outside ±9999 years is written as such, not hidden.
fn rfc3339_micros(t: SystemTime) -> String {
    let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.microsecond()
        ),
        Err(_) => format!("unrepresentable clock value ({nanos} ns since the Unix epoch)"),
    }
}

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

/// Counters shared by the handle and the writer thread (the metrics recorder may not be
/// installed, and tests need the numbers).
#[derive(Default)]
struct Counters {
    dropped: AtomicU64,
    written: AtomicU64,
    /// Drops not yet reported in the chain by a marker record.
    unreported: AtomicU64,
}

impl Counters {
    fn drop_records(&self, n: u64, reason: &'static str) {
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
        let writer = Writer {
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

/// Where the chain continues: the next seq and the hash it must point back to.
#[derive(Clone)]
struct Tip {
    next_seq: u64,
    prev: String,
}

impl Tip {
    fn after(last: &AuditRecord, path: &Path) -> Result<Tip, AuditError> {
        let next_seq = last.seq.checked_add(1).ok_or_else(|| AuditError::Corrupt {
            path: path.to_path_buf(),
            reason: "last seq is u64::MAX".into(),
        })?;
        Ok(Tip {
            next_seq,
            prev: last.hash.clone(),
        })
    }
}

struct Writer {
    dir: PathBuf,
    max_file_bytes: u64,
    file: File,
    /// Bytes in `audit.log` known to be written completely.
    len: u64,
    /// Seq of the first record in `audit.log`, `None` while it is empty.
    first_seq: Option<u64>,
    tip: Tip,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<AuditEvent>) -> io::Result<()> {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(event) = rx.blocking_recv() {
            batch.push(event);
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

struct Line {
    bytes: Vec<u8>,
    hash: String,
}

fn encode_line(event: AuditEvent, tip: &Tip) -> Result<Line, (serde_json::Error, u64)> {
    let fail = |e| (e, tip.next_seq);
    let record = event.into_record(tip.next_seq, &tip.prev);
    let mut bytes = record.canonical_json().map_err(fail)?;
    let hash = hex::encode(Sha256::digest(&bytes));
    // The line is the canonical object with `hash` appended as its last member, which is
    // exactly how `AuditRecord` serializes: hashing and writing share one encoding.
    if bytes.pop() != Some(b'}') {
        return Err(fail(serde::ser::Error::custom(
            "canonical form is not a JSON object",
        )));
    }
    bytes.extend_from_slice(b",\"hash\":\"");
    bytes.extend_from_slice(hash.as_bytes());
    bytes.extend_from_slice(b"\"}\n");
    Ok(Line { bytes, hash })
}

/// The record that puts drops into the chain: seq order shows where they happened.
fn drop_marker(dropped: u64) -> AuditEvent {
    AuditEvent {
        time: SystemTime::now(),
        conn_id: 0,
        peer: SocketAddr::from(([0, 0, 0, 0], 0)),
        cert_subject: String::new(),
        cert_fingerprint: String::new(),
        user: String::new(),
        operation: DROP_MARKER_OPERATION.to_owned(),
        unique_identifiers: Vec::new(),
        result_status: "OperationFailed".to_owned(),
        result_reason: Some(format!("{dropped} {DROP_MARKER_REASON}")),
        latency_us: 0,
    }
}

/// The number a drop marker reports, if `record` is one.
fn reported_drops(record: &AuditRecord) -> Option<u64> {
    if record.operation != DROP_MARKER_OPERATION || !record.user.is_empty() {
        return None;
    }
    let reason = record.result_reason.as_deref().unwrap_or_default();
    Some(
        reason
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    )
}

fn rotated_name(first: u64, last: u64) -> String {
    format!("audit-{first:020}-{last:020}.log")
}

/// A rotation target that does not exist yet: `rename` would silently replace an older file.
fn free_rotated_name(dir: &Path, first: u64, last: u64) -> PathBuf {
    let plain = dir.join(rotated_name(first, last));
    if !plain.exists() {
        return plain;
    }
    let mut n: u64 = 1;
    loop {
        let candidate = dir.join(format!("audit-{first:020}-{last:020}-{n}.log"));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// The first seq in a rotated file's name, or `None` for any other name.
fn rotated_first_seq(name: &str) -> Option<u64> {
    let middle = name.strip_prefix("audit-")?.strip_suffix(".log")?;
    middle.split('-').next()?.parse().ok()
}

fn is_audit_file(name: &str) -> bool {
    name == CURRENT_FILE || rotated_first_seq(name).is_some()
}

fn open_current(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// If the file does not end with a newline, its last line was torn by a crash: move those bytes
/// to a side file and cut them off. Returns the file's length afterwards.
fn set_aside_torn_tail(file: &mut File, path: &Path) -> Result<u64, AuditError> {
    let len = file.metadata().map_err(io_err(path))?.len();
    let keep = complete_prefix_len(file, len).map_err(io_err(path))?;
    if keep == len {
        return Ok(len);
    }
    let mut torn = Vec::new();
    file.seek(SeekFrom::Start(keep)).map_err(io_err(path))?;
    file.read_to_end(&mut torn).map_err(io_err(path))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let side = path.with_file_name(format!("{CURRENT_FILE}.torn-{stamp}"));
    let mut side_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(&side)
        .map_err(io_err(&side))?;
    side_file
        .write_all(&torn)
        .and_then(|()| side_file.sync_all())
        .map_err(io_err(&side))?;
    file.set_len(keep).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    warn!(
        file = %path.display(),
        bytes = torn.len(),
        kept_in = %side.display(),
        "audit log ended with a partial line (crash during a write); set it aside"
    );
    Ok(keep)
}

/// Length of the file up to and including its last newline.
fn complete_prefix_len(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut chunk = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(TAIL_SCAN_CHUNK);
        chunk.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> AuditError {
    AuditError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn parse_record(line: &[u8], path: &Path, which: &str) -> Result<AuditRecord, AuditError> {
    serde_json::from_slice(line).map_err(|e| corrupt(path, format!("{which} line: {e}")))
}

fn read_first_record(path: &Path) -> Result<AuditRecord, AuditError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    match read_line(&mut reader, &mut line).map_err(io_err(path))? {
        LineRead::Line => parse_record(&line, path, "first"),
        LineRead::TooLong => Err(corrupt(path, "first line is too long")),
        LineRead::Eof | LineRead::Incomplete => Err(corrupt(path, "no complete first line")),
    }
}

/// The last line of a file that ends with a newline (`len` > 0), read from the end so opening
/// does not scan a large file.
fn read_last_record(file: &mut File, len: u64, path: &Path) -> Result<AuditRecord, AuditError> {
    let window = len.min(MAX_LINE_BYTES as u64 + 1);
    let mut tail = vec![0u8; window as usize];
    file.seek(SeekFrom::Start(len - window))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(io_err(path))?;
    if tail.last() != Some(&b'\n') {
        return Err(corrupt(path, "does not end with a complete line"));
    }
    tail.pop();
    let line = match tail.iter().rposition(|&b| b == b'\n') {
        Some(pos) => &tail[pos + 1..],
        None if window == len => &tail[..],
        None => return Err(corrupt(path, "last line is too long")),
    };
    parse_record(line, path, "last")
}

/// The rotated file with the highest first seq that holds at least one byte.
fn newest_rotated(dir: &Path) -> Result<Option<PathBuf>, AuditError> {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(first) = name.to_str().and_then(rotated_first_seq) else {
            continue;
        };
        let path = entry.path();
        if fs::metadata(&path).map_err(io_err(&path))?.len() == 0 {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| first > *b) {
            best = Some((first, path));
        }
    }
    Ok(best.map(|(_, p)| p))
}

enum LineRead {
    Line,
    /// Bytes at the end of the file without a newline.
    Incomplete,
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without its newline), never buffering more than
/// [`MAX_LINE_BYTES`].
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<LineRead> {
    buf.clear();
    let n = reader
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        Ok(LineRead::Eof)
    } else if buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(LineRead::Line)
    } else if buf.len() > MAX_LINE_BYTES {
        Ok(LineRead::TooLong)
    } else {
        Ok(LineRead::Incomplete)
    }
}

// ---------------------------------------------------------------------------------------------
// Verification

/// Result of [`verify`]: how far the chain checked out and the first thing wrong, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The files read, in chain order.
    pub files: Vec<PathBuf>,
    /// Records that passed every check before the first problem (all of them if none).
    pub records_checked: u64,
    /// The first record read: seq and `prev` (a non-genesis start means earlier files were not
    /// given, which is not an error by itself).
    pub start: Option<ChainStart>,
    /// The last good record: compare its seq and hash with an anchor kept elsewhere to detect
    /// records removed from the end.
    pub end: Option<ChainEnd>,
    /// Drop-marker records among the checked ones, and the drops they report.
    pub drop_markers: u64,
    pub drops_reported: u64,
    pub first_problem: Option<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStart {
    pub seq: u64,
    pub prev: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEnd {
    pub seq: u64,
    pub hash: String,
}

/// Where verification stopped: file, 1-based line (0 when the file itself is the problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: u64,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// No audit file under the given paths.
    NoAuditFiles,
    /// A file or directory could not be read.
    Unreadable { reason: String },
    /// A line is not a record (bad JSON, unknown or missing field, too long, cut short).
    Unparsable { reason: String },
    /// The record's content does not match its hash: it was edited.
    Edited { seq: u64 },
    /// Seqs jump: these records are absent from the files.
    Deleted {
        first_missing: u64,
        last_missing: u64,
    },
    /// A record appears where another seq was due (and the due one is further on, or the seq
    /// goes backwards): records were moved or replayed.
    Reordered { seq: u64, expected: u64 },
    /// Seqs are contiguous but `prev` is not the previous record's hash: a neighbouring record
    /// was replaced or rewritten with a recomputed hash.
    ChainBroken { seq: u64 },
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_problem.is_none()
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::NoAuditFiles => write!(f, "no audit files (audit.log, audit-*.log)"),
            ProblemKind::Unreadable { reason } => write!(f, "cannot read: {reason}"),
            ProblemKind::Unparsable { reason } => write!(f, "not a valid audit record: {reason}"),
            ProblemKind::Edited { seq } => write!(
                f,
                "record seq {seq} was modified (its content does not match its hash)"
            ),
            ProblemKind::Deleted {
                first_missing,
                last_missing,
            } if first_missing == last_missing => {
                write!(f, "record seq {first_missing} is missing (deleted)")
            }
            ProblemKind::Deleted {
                first_missing,
                last_missing,
            } => write!(
                f,
                "records seq {first_missing}..={last_missing} are missing (deleted)"
            ),
            ProblemKind::Reordered { seq, expected } => write!(
                f,
                "record seq {seq} is out of order (seq {expected} was due here)"
            ),
            ProblemKind::ChainBroken { seq } => write!(
                f,
                "record seq {seq} does not chain to the record before it (prev mismatch: \
                 one of them was replaced or rewritten)"
            ),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.kind)
        } else {
            write!(
                f,
                "{} line {}: {}",
                self.file.display(),
                self.line,
                self.kind
            )
        }
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.files.len();
        match &self.first_problem {
            Some(problem) => write!(
                f,
                "audit chain BROKEN after {} good record(s) in {files} file(s): {problem}",
                self.records_checked
            ),
            None => {
                write!(
                    f,
                    "audit chain OK: {} record(s) in {files} file(s)",
                    self.records_checked
                )?;
                if let (Some(start), Some(end)) = (&self.start, &self.end) {
                    write!(f, ", seq {}..={}", start.seq, end.seq)?;
                    if start.seq == GENESIS_SEQ && start.prev == GENESIS_PREV {
                        write!(f, " from the genesis record")?;
                    } else {
                        write!(
                            f,
                            " (starts after seq {} with prev {}: earlier files not given)",
                            start.seq.saturating_sub(1),
                            start.prev
                        )?;
                    }
                    write!(f, "; last hash {}", end.hash)?;
                }
                if self.drop_markers > 0 {
                    write!(
                        f,
                        "; {} record(s) were dropped by the gateway (reported by {} marker \
                         record(s) in the chain)",
                        self.drops_reported, self.drop_markers
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Checks the chain in `paths`: audit files, or directories whose `audit.log` and
/// `audit-*.log` files are read. Files are put in chain order by their first record's seq
/// (whatever their names), and every record is checked for its hash, its seq (previous + 1)
/// and its `prev` (previous record's hash). Stops at the first problem.
pub fn verify(paths: &[PathBuf]) -> VerifyReport {
    let mut report = VerifyReport {
        files: Vec::new(),
        records_checked: 0,
        start: None,
        end: None,
        drop_markers: 0,
        drops_reported: 0,
        first_problem: None,
    };
    let files = match collect_files(paths) {
        Ok(files) => files,
        Err(problem) => {
            report.first_problem = Some(problem);
            return report;
        }
    };
    if files.is_empty() {
        report.first_problem = Some(Problem {
            file: paths.first().cloned().unwrap_or_default(),
            line: 0,
            kind: ProblemKind::NoAuditFiles,
        });
        return report;
    }
    report.files = files.clone();
    let mut entries = Entries::new(files);
    let mut last: Option<ChainEnd> = None;
    while let Some(entry) = entries.next() {
        let Entry {
            file,
            line,
            content,
        } = entry;
        let at = |kind| Problem {
            file: file.as_ref().clone(),
            line,
            kind,
        };
        let record = match content {
            Ok(record) => record,
            Err(kind) => {
                report.first_problem = Some(at(kind));
                break;
            }
        };
        if let Some(kind) = check(&record, last.as_ref(), &mut entries) {
            report.first_problem = Some(at(kind));
            break;
        }
        if last.is_none() {
            report.start = Some(ChainStart {
                seq: record.seq,
                prev: record.prev.clone(),
            });
        }
        report.records_checked += 1;
        if let Some(n) = reported_drops(&record) {
            report.drop_markers += 1;
            report.drops_reported += n;
        }
        last = Some(ChainEnd {
            seq: record.seq,
            hash: record.hash,
        });
    }
    report.end = last;
    report
}

/// What is wrong with `record` following `last`, if anything. A seq jump is told apart from a
/// move by looking ahead for the seq that was due.
fn check(record: &AuditRecord, last: Option<&ChainEnd>, rest: &mut Entries) -> Option<ProblemKind> {
    match record.compute_hash() {
        Ok(hash) if hash == record.hash => {}
        _ => return Some(ProblemKind::Edited { seq: record.seq }),
    }
    let last = last?;
    let Some(expected) = last.seq.checked_add(1) else {
        return Some(ProblemKind::Reordered {
            seq: record.seq,
            expected: last.seq,
        });
    };
    if record.seq < expected {
        return Some(ProblemKind::Reordered {
            seq: record.seq,
            expected,
        });
    }
    if record.seq > expected {
        let due_later = rest.any(|e| matches!(&e.content, Ok(r) if r.seq == expected));
        return Some(if due_later {
            ProblemKind::Reordered {
                seq: record.seq,
                expected,
            }
        } else {
            ProblemKind::Deleted {
                first_missing: expected,
                last_missing: record.seq - 1,
            }
        });
    }
    if record.prev != last.hash {
        return Some(ProblemKind::ChainBroken { seq: record.seq });
    }
    None
}

/// The audit files named by `paths`, deduplicated and sorted by first seq.
fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problem> {
    let unreadable = |file: &Path, e: io::Error| Problem {
        file: file.to_path_buf(),
        line: 0,
        kind: ProblemKind::Unreadable {
            reason: e.to_string(),
        },
    };
    let mut files = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).map_err(|e| unreadable(path, e))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        for entry in fs::read_dir(path).map_err(|e| unreadable(path, e))? {
            let entry = entry.map_err(|e| unreadable(path, e))?;
            if entry.file_name().to_str().is_some_and(is_audit_file) {
                files.push(entry.path());
            }
        }
    }
    let mut keyed: Vec<(u64, PathBuf)> = files
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .map(|p| (order_key(&p), p))
        .collect();
    keyed.sort();
    keyed.dedup_by(|a, b| a.1 == b.1);
    Ok(keyed.into_iter().map(|(_, p)| p).collect())
}

/// The file's first seq; failing that, the one in its rotated name; `audit.log` and anything
/// unreadable go last, where reading them reports the problem in chain order.
fn order_key(path: &Path) -> u64 {
    let from_content = File::open(path).ok().and_then(|f| {
        let mut line = Vec::new();
        match read_line(&mut BufReader::new(f), &mut line) {
            Ok(LineRead::Line | LineRead::Incomplete) => {
                serde_json::from_slice::<AuditRecord>(&line)
                    .ok()
                    .map(|r| r.seq)
            }
            _ => None,
        }
    });
    from_content
        .or_else(|| {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(rotated_first_seq)
        })
        .unwrap_or(u64::MAX)
}

struct Entry {
    file: Arc<PathBuf>,
    line: u64,
    content: Result<AuditRecord, ProblemKind>,
}

/// Every line of every file, in order, parsed. A file that cannot be read yields one entry for
/// it and reading moves on to the next file (verify stops there; a look-ahead skips it).
struct Entries {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(Arc<PathBuf>, BufReader<File>, u64)>,
    buf: Vec<u8>,
}

impl Entries {
    fn new(files: Vec<PathBuf>) -> Entries {
        Entries {
            files: files.into_iter(),
            current: None,
            buf: Vec::new(),
        }
    }
}

impl Iterator for Entries {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let Some((file, reader, line_no)) = &mut self.current else {
                let path = Arc::new(self.files.next()?);
                match File::open(path.as_ref()) {
                    Ok(f) => self.current = Some((path, BufReader::new(f), 0)),
                    Err(e) => {
                        return Some(Entry {
                            file: path,
                            line: 0,
                            content: Err(ProblemKind::Unreadable {
                                reason: e.to_string(),
                            }),
                        })
                    }
                }
                continue;
            };
            *line_no += 1;
            let line = *line_no;
            let file = Arc::clone(file);
            let content = match read_line(reader, &mut self.buf) {
                Ok(LineRead::Eof) => {
                    self.current = None;
                    continue;
                }
                Ok(LineRead::Line) => parse_line(&self.buf),
                Ok(LineRead::Incomplete) => parse_line(&self.buf).map_err(|kind| match kind {
                    ProblemKind::Unparsable { reason } => ProblemKind::Unparsable {
                        reason: format!("incomplete last line (no newline): {reason}"),
                    },
                    other => other,
                }),
                Ok(LineRead::TooLong) => {
                    self.current = None;
                    Err(ProblemKind::Unparsable {
                        reason: format!("line longer than {MAX_LINE_BYTES} bytes"),
                    })
                }
                Err(e) => {
                    self.current = None;
                    Err(ProblemKind::Unreadable {
                        reason: e.to_string(),
                    })
                }
            };
            return Some(Entry {
                file,
                line,
                content,
            });
        }
    }
}

fn parse_line(line: &[u8]) -> Result<AuditRecord, ProblemKind> {
    serde_json::from_slice(line).map_err(|e| ProblemKind::Unparsable {
        reason: e.to_string(),
    })
}
