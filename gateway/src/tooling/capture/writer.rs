//! The capture's writer thread: takes queued messages in order, decodes, redacts, renders and
//! appends them to the connection's two files. A failure stops that connection's capture only.

use bytes::Bytes;
use kmip_wire::ttlv::{decode, Limits};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use thiserror::Error;
use tracing::warn;

use super::redact::redact;
use super::render::{rfc3339, text_tree, xml_comment, xml_tree};
use super::replay::{replay_form, ReplayState};
use super::MAX_CAPTURE_FILE_BYTES;

/// Ends every XML capture file; overwritten by the next message.
const XML_FOOTER: &str = "</KMIP>\n";

/// Which way a captured message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Request,
    Response,
}

impl Direction {
    pub(super) fn label(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

/// What a connection hands the writer thread.
pub(super) enum Queued {
    Message {
        conn: Arc<ConnFiles>,
        seq: u64,
        direction: Direction,
        at: SystemTime,
        bytes: Bytes,
    },
    Closed {
        conn: Arc<ConnFiles>,
        seq: u64,
        at: SystemTime,
        why: &'static str,
    },
    Flush(mpsc::Sender<()>),
}

/// The capture of one connection's files; its state is only touched by the writer thread.
pub(super) struct ConnFiles {
    pub(super) text_path: PathBuf,
    pub(super) xml_path: PathBuf,
    pub(super) text_header: String,
    pub(super) xml_header: String,
    pub(super) state: Mutex<FileState>,
}

#[derive(Default)]
pub(super) struct FileState {
    created: bool,
    /// A write failed or a file reached its size limit: nothing more is written.
    pub(super) stopped: bool,
    text_bytes: u64,
    xml_bytes: u64,
    /// The sequence number the next record should carry; a larger one means records were lost.
    next_seq: u64,
    /// The XML of the last request, written together with its response so the file always
    /// holds request/response pairs.
    pending_request: Option<String>,
    /// The last request could not be decoded: its response is left out of the XML too.
    skip_response: bool,
    /// Redacted values written to the XML so far (numbers the placeholders).
    redactions: usize,
    /// What the XML needs to be replayable.
    replay: ReplayState,
}

/// The thread that renders queued messages and writes them to each connection's files.
pub(super) struct CaptureWriter {
    pub(super) limits: Limits,
    pub(super) queued_bytes: Arc<AtomicUsize>,
}

/// A capture file write that did not happen.
#[derive(Debug, Error)]
enum WriteError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: reached the capture file size limit of {MAX_CAPTURE_FILE_BYTES} bytes")]
    SizeLimit { file: String },
}

impl WriteError {
    fn label(&self) -> &'static str {
        match self {
            WriteError::Io { .. } => "write",
            WriteError::SizeLimit { .. } => "size_limit",
        }
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        file: path.display().to_string(),
        source,
    }
}

impl CaptureWriter {
    pub(super) fn run(self, rx: Receiver<Queued>) {
        while let Ok(record) = rx.recv() {
            match record {
                Queued::Message {
                    conn,
                    seq,
                    direction,
                    at,
                    bytes,
                } => {
                    self.message(&conn, seq, direction, at, &bytes);
                    self.queued_bytes.fetch_sub(bytes.len(), Ordering::Relaxed);
                }
                Queued::Closed { conn, seq, at, why } => self.closed(&conn, seq, at, why),
                Queued::Flush(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    }

    fn message(
        &self,
        conn: &ConnFiles,
        seq: u64,
        direction: Direction,
        at: SystemTime,
        bytes: &Bytes,
    ) {
        let mut st = conn.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.stopped {
            return;
        }
        let (mut text, mut xml) = gap(&mut st, seq);
        let _ = writeln!(
            text,
            "--- #{seq} {}  {}  {} bytes",
            direction.label(),
            rfc3339(at),
            bytes.len()
        );
        let limits = Limits {
            max_message_size: bytes.len(),
            max_depth: self.limits.max_depth,
        };
        match decode(bytes, &limits) {
            Ok(tree) => {
                text.push_str(&text_tree(&redact(&tree)));
                match direction {
                    Direction::Request => {
                        if st.pending_request.take().is_some() {
                            xml.push_str(&xml_comment(
                                "a request whose response was not captured is left out",
                            ));
                        }
                        let shown = replay_form(&tree, false, at, &mut st.replay);
                        st.pending_request = Some(xml_tree(&shown, &mut st.redactions));
                        st.skip_response = false;
                    }
                    Direction::Response => match st.pending_request.take() {
                        Some(request) => {
                            // Only a response that is written numbers identifiers.
                            let shown = replay_form(&tree, true, at, &mut st.replay);
                            xml.push_str(&request);
                            xml.push_str(&xml_tree(&shown, &mut st.redactions));
                        }
                        None if st.skip_response => {
                            st.skip_response = false;
                            xml.push_str(&xml_comment(
                                "the response to an undecodable request is left out",
                            ));
                        }
                        None => xml.push_str(&xml_comment(
                            "a response whose request was not captured is left out",
                        )),
                    },
                }
            }
            Err(e) => {
                // Not TTLV: not a byte of it is shown (it may hold anything).
                let _ = writeln!(text, "undecodable TTLV ({e}); content not shown");
                if direction == Direction::Request {
                    st.pending_request = None;
                    st.skip_response = true;
                }
                xml.push_str(&xml_comment(&format!(
                    "undecodable {} of {} bytes left out: {e}",
                    direction.label(),
                    bytes.len()
                )));
            }
        }
        text.push('\n');
        self.write(conn, &mut st, &text, &xml);
        metrics::counter!("kmip_capture_messages_total").increment(1);
    }

    fn closed(&self, conn: &ConnFiles, seq: u64, at: SystemTime, why: &str) {
        let mut st = conn.state.lock().unwrap_or_else(|p| p.into_inner());
        // A connection that sent nothing leaves no files.
        if st.stopped || !st.created {
            return;
        }
        let (mut text, mut xml) = gap(&mut st, seq);
        let _ = writeln!(text, "--- closed ({why})  {}", rfc3339(at));
        if st.pending_request.take().is_some() {
            xml.push_str(&xml_comment(
                "the last request had no captured response and is left out",
            ));
        }
        xml.push_str(&xml_comment(&format!("connection closed ({why})")));
        self.write(conn, &mut st, &text, &xml);
    }

    /// Writes to both files; on a failure logs once, counts and stops this connection's capture.
    fn write(&self, conn: &ConnFiles, st: &mut FileState, text: &str, xml: &str) {
        if let Err(e) = write_files(conn, st, text, xml) {
            st.stopped = true;
            metrics::counter!("kmip_capture_errors_total", "reason" => e.label()).increment(1);
            warn!(error = %e, "wire capture of this connection stops");
        }
    }
}

/// Text and XML noting the records lost before `seq` (the queue was full), and the next expected
/// sequence number advanced.
fn gap(st: &mut FileState, seq: u64) -> (String, String) {
    let mut text = String::new();
    let mut xml = String::new();
    if seq > st.next_seq {
        let lost = seq - st.next_seq;
        let _ = writeln!(
            text,
            "!!! {lost} message(s) not captured (capture queue full)\n"
        );
        if st.pending_request.take().is_some() {
            xml.push_str(&xml_comment(
                "a request whose response was not captured is left out",
            ));
        }
        xml.push_str(&xml_comment(&format!(
            "{lost} message(s) not captured (capture queue full)"
        )));
    }
    st.next_seq = seq + 1;
    (text, xml)
}

fn create_0600(path: &Path) -> Result<std::fs::File, WriteError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))
}

fn write_files(
    conn: &ConnFiles,
    st: &mut FileState,
    text: &str,
    xml: &str,
) -> Result<(), WriteError> {
    if !st.created {
        // Marked first: a failure here must not retry on every message.
        st.created = true;
        create_0600(&conn.text_path)?
            .write_all(conn.text_header.as_bytes())
            .map_err(io_error(&conn.text_path))?;
        let mut f = create_0600(&conn.xml_path)?;
        f.write_all(conn.xml_header.as_bytes())
            .and_then(|()| f.write_all(XML_FOOTER.as_bytes()))
            .map_err(io_error(&conn.xml_path))?;
        st.text_bytes = conn.text_header.len() as u64;
        st.xml_bytes = (conn.xml_header.len() + XML_FOOTER.len()) as u64;
    }
    if st.text_bytes + text.len() as u64 > MAX_CAPTURE_FILE_BYTES
        || st.xml_bytes + xml.len() as u64 > MAX_CAPTURE_FILE_BYTES
    {
        let note = format!(
            "!!! capture stopped: file size limit of {MAX_CAPTURE_FILE_BYTES} bytes reached\n"
        );
        append(&conn.text_path, &note)?;
        return Err(WriteError::SizeLimit {
            file: conn.text_path.display().to_string(),
        });
    }
    append(&conn.text_path, text)?;
    st.text_bytes += text.len() as u64;
    if !xml.is_empty() {
        // Overwrite the footer, then close the document again.
        let mut f = OpenOptions::new()
            .write(true)
            .open(&conn.xml_path)
            .map_err(io_error(&conn.xml_path))?;
        f.seek(SeekFrom::End(-(XML_FOOTER.len() as i64)))
            .and_then(|_| f.write_all(xml.as_bytes()))
            .and_then(|()| f.write_all(XML_FOOTER.as_bytes()))
            .map_err(io_error(&conn.xml_path))?;
        st.xml_bytes += xml.len() as u64;
    }
    Ok(())
}

fn append(path: &Path, text: &str) -> Result<(), WriteError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io_error(path))
}
