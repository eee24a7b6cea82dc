//! Wire capture (`serve --capture DIR`, config `capture_dir`): every KMIP message of every
//! authenticated connection, so that the exact sequence a new client sends (the first FlashArray)
//! can be read and replayed. Two files per connection, named
//! `DIR/<opened, UTC>-<conn_id>-<user>.{txt,xml}` and created 0600:
//!
//! - `.txt`: one block per message (direction, time, length) with an indented TTLV tree of tag
//!   names, types and values;
//! - `.xml`: a `<KMIP>` document of `RequestMessage`/`ResponseMessage` pairs in the KMIP XML
//!   encoding, which `kmip-conformance` reads (`--codec-only`, or replayed against a server).
//!
//! Key material, credentials and data never reach the files: [`redact()`] replaces their values by
//! their length (`<redacted 32 bytes>` in text, a `$REDACTED_32_BYTES_n` placeholder in XML). In
//! the XML, identifiers the server returned are `$UNIQUE_IDENTIFIER_n` placeholders and the
//! server's date-times `$NOW-n` ([`replay_form`]), so a replay binds what the replayed-to server
//! assigns.
//!
//! A connection only clones the message's `Bytes` into a bounded queue and never waits: when the
//! queue is full the message is left out of the capture (counted, and marked in the files). One
//! writer thread decodes, redacts, renders and writes. A capture problem is logged and counted;
//! it never fails a request. The XML file is closed (`</KMIP>`) after every message, so it stays
//! readable while the connection is open and after a crash.
//!
//! The `redact` and `render` modules are pure; `replay` numbers what a replay must bind;
//! `writer` is the thread that writes the files.

mod redact;
mod render;
mod replay;
mod writer;

pub use redact::{redact, Shown};
pub use render::{placeholder, text_tree, xml_tree};
pub use replay::{replay_form, ReplayState, IDENTIFIER_TAGS, UID_PREFIX};

use bytes::Bytes;
use kmip_wire::ttlv::Limits;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;
use tracing::warn;

use render::{file_name_part, file_stamp, rfc3339, xml_comment};
use writer::{CaptureWriter, ConnFiles, Direction, FileState, Queued};

/// Records waiting for the writer: bounds the queue when the disk is slower than the traffic.
pub const CAPTURE_QUEUE_RECORDS: usize = 1024;
/// Message bytes waiting for the writer: bounds the memory the queue holds (a record can be as
/// large as `limits.max_message_size`).
pub const CAPTURE_QUEUE_BYTES: usize = 64 << 20;
/// Largest capture file: a long-lived connection must not fill the disk. Past it, the
/// connection's capture stops (and says so).
pub const MAX_CAPTURE_FILE_BYTES: u64 = 256 << 20;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("capture folder {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("capture writer thread: {0}")]
    Thread(std::io::Error),
}

/// The gateway's wire capture: a folder and the writer thread behind a bounded queue.
pub struct Capture {
    dir: PathBuf,
    tx: SyncSender<Queued>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Capture {
    /// Creates `dir` (0700) when missing and starts the writer thread. `limits` bound the
    /// decoding of captured messages (as the listener's do).
    pub fn start(dir: &Path, limits: Limits) -> Result<Arc<Capture>, CaptureError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CaptureError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        let (tx, rx) = mpsc::sync_channel(CAPTURE_QUEUE_RECORDS);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let writer = CaptureWriter {
            limits,
            queued_bytes: queued_bytes.clone(),
        };
        std::thread::Builder::new()
            .name("kmip-capture".into())
            .spawn(move || writer.run(rx))
            .map_err(CaptureError::Thread)?;
        Ok(Arc::new(Capture {
            dir: dir.to_path_buf(),
            tx,
            queued_bytes,
        }))
    }

    /// The capture of a newly authenticated connection. Its files are created with its first
    /// message.
    pub fn connection(
        &self,
        conn_id: u64,
        peer: SocketAddr,
        identity: &crate::identity::Identity,
    ) -> ConnCapture {
        let opened = SystemTime::now();
        let base = format!(
            "{}-{conn_id}-{}",
            file_stamp(opened),
            file_name_part(&identity.user)
        );
        let text_header = format!(
            "# kmip-gateway wire capture\n\
             # connection {conn_id} from {peer}, user {:?}, certificate {:?} serial {}\n\
             # opened {}\n\
             # key material, credentials and data are shown by their length only\n\n",
            identity.user,
            identity.subject,
            identity.serial_hex,
            rfc3339(opened)
        );
        let xml_header = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}<KMIP>\n",
            xml_comment(&format!(
                "kmip-gateway wire capture: connection {conn_id} from {peer}, opened {}; \
                 secret values are $REDACTED_<length>_BYTES_<n> placeholders, identifiers the \
                 server returned $UNIQUE_IDENTIFIER_<n> and its times $NOW-<seconds> (the .txt \
                 file has their values)",
                rfc3339(opened)
            ))
        );
        ConnCapture {
            tx: self.tx.clone(),
            queued_bytes: self.queued_bytes.clone(),
            files: Arc::new(ConnFiles {
                text_path: self.dir.join(format!("{base}.txt")),
                xml_path: self.dir.join(format!("{base}.xml")),
                text_header,
                xml_header,
                state: Mutex::new(FileState::default()),
            }),
            next_seq: 0,
            warned: false,
        }
    }

    /// Waits (up to `timeout`) until the writer has written everything queued before this call.
    /// Blocking: call it off the async workers. Returns whether it got there in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::channel();
        let mut record = Queued::Flush(ack_tx);
        loop {
            match self.tx.try_send(record) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(r)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The capture handle a connection holds: queues its messages for the writer, never waits.
pub struct ConnCapture {
    tx: SyncSender<Queued>,
    queued_bytes: Arc<AtomicUsize>,
    files: Arc<ConnFiles>,
    next_seq: u64,
    /// Whether a dropped message was already logged for this connection.
    warned: bool,
}

impl ConnCapture {
    pub fn request(&mut self, bytes: &Bytes) {
        self.message(Direction::Request, bytes);
    }

    pub fn response(&mut self, bytes: &Bytes) {
        self.message(Direction::Response, bytes);
    }

    /// The connection ended (`why`, as the listener logs it).
    pub fn closed(&mut self, why: &'static str) {
        let record = Queued::Closed {
            conn: self.files.clone(),
            seq: self.take_seq(),
            at: SystemTime::now(),
            why,
        };
        self.send(record, 0);
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn message(&mut self, direction: Direction, bytes: &Bytes) {
        let seq = self.take_seq();
        let len = bytes.len();
        if self.queued_bytes.fetch_add(len, Ordering::Relaxed) + len > CAPTURE_QUEUE_BYTES {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.dropped();
            return;
        }
        let record = Queued::Message {
            conn: self.files.clone(),
            seq,
            direction,
            at: SystemTime::now(),
            bytes: bytes.clone(),
        };
        self.send(record, len);
    }

    fn send(&mut self, record: Queued, len: usize) {
        if self.tx.try_send(record).is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.dropped();
        }
    }

    fn dropped(&mut self) {
        metrics::counter!("kmip_capture_errors_total", "reason" => "queue_full").increment(1);
        if !self.warned {
            self.warned = true;
            warn!(file = %self.files.text_path.display(),
                  "capture writer behind: messages of this connection are left out of its capture");
        }
    }
}

#[cfg(test)]
mod tests;
