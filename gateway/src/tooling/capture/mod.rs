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
//! Key material, credentials and data never reach the files: [`redact`] replaces their values by
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

use bytes::Bytes;
use kmip_wire::names::{
    enum_names_for_tag, mask_flags, mask_for_tag, tag_by_name, tag_by_spec_name, tag_hex, tag_name,
    EnumNames,
};
use kmip_wire::spec::{tags, EnumDef};
use kmip_wire::ttlv::{decode, ItemType, Limits, Tag, Ttlv, Value};
use kmip_wire::xml::to_xml_string;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::warn;

/// Records waiting for the writer: bounds the queue when the disk is slower than the traffic.
pub const CAPTURE_QUEUE_RECORDS: usize = 1024;
/// Message bytes waiting for the writer: bounds the memory the queue holds (a record can be as
/// large as `limits.max_message_size`).
pub const CAPTURE_QUEUE_BYTES: usize = 64 << 20;
/// Largest capture file: a long-lived connection must not fill the disk. Past it, the
/// connection's capture stops (and says so).
pub const MAX_CAPTURE_FILE_BYTES: u64 = 256 << 20;
/// Distinct server identifiers a capture's XML numbers: bounds the memory of a long connection
/// (a Locate can return many); past it, identifiers stay literal.
const MAX_REPLAY_IDENTIFIERS: usize = 100_000;
/// Distinct client-sent date-times remembered per capture, for the same reason.
const MAX_REPLAY_TIMES: usize = 10_000;
/// A response date-time this close to the response's own time is taken as chosen by the server.
const SERVER_TIME_WINDOW_SECS: u64 = 24 * 3600;
/// Characters of the user name kept in a file name.
const MAX_USER_IN_FILE_NAME: usize = 64;
/// Ends every XML capture file; overwritten by the next message.
const XML_FOOTER: &str = "</KMIP>\n";

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

// --- redaction (pure) -----------------------------------------------------------------------

/// Tags whose value is secret wherever it appears: key material, wrapped keys, credentials,
/// nonces/IVs, MACs and tags, plain and cipher text, certificates, opaque data, the fields of
/// transparent keys, and digests of key values (a digest of a low-entropy Secret Data, such as a
/// drive password, can be brute-forced offline). A Structure with one of these tags keeps its
/// shape; its secret leaves go.
const SECRET_TAGS: &[Tag] = &[
    tags::KEY_MATERIAL,
    tags::DIGEST_VALUE,
    tags::KEY_VALUE,
    tags::OPAQUE_DATA_VALUE,
    tags::CERTIFICATE_VALUE,
    tags::DATA,
    tags::IV_COUNTER_NONCE,
    tags::INITIALIZATION_VECTOR,
    tags::MACDATA,
    tags::MAC_SIGNATURE,
    tags::SIGNATURE_DATA,
    tags::AUTHENTICATED_ENCRYPTION_TAG,
    tags::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA,
    tags::PASSWORD,
    tags::HASHED_PASSWORD,
    tags::SERVER_HASHED_PASSWORD,
    tags::ONE_TIME_PASSWORD,
    tags::CREDENTIAL_VALUE,
    tags::NONCE_VALUE,
    tags::TICKET_VALUE,
    tags::DERIVATION_DATA,
    tags::SALT,
    tags::DIGESTED_DATA,
    tags::PKCS_11_INPUT_PARAMETERS,
    tags::PKCS_11_OUTPUT_PARAMETERS,
    tags::P,
    tags::Q,
    tags::G,
    tags::X,
    tags::Y,
    tags::J,
    tags::D,
    tags::MODULUS,
    tags::PRIVATE_EXPONENT,
    tags::PUBLIC_EXPONENT,
    tags::PRIME_EXPONENT_P,
    tags::PRIME_EXPONENT_Q,
    tags::CRTCOEFFICIENT,
];

/// A message as a capture shows it: secret values replaced by their length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown<'a> {
    /// Nothing secret in it: shown as is.
    Plain(&'a Ttlv),
    /// A Structure with a secret somewhere below it.
    Structure { tag: Tag, items: Vec<Shown<'a>> },
    /// A secret value: only its tag, type and length remain.
    Redacted {
        tag: Tag,
        item_type: ItemType,
        len: usize,
    },
    /// A value written as a named XML placeholder (a server-assigned identifier).
    Named {
        tag: Tag,
        item_type: ItemType,
        name: String,
    },
}

/// Replaces every secret value of `t` by its length. Secret: a byte string, big integer or text
/// string under one of [`SECRET_TAGS`] or anywhere inside Key Material (transparent keys); every
/// Big Integer (KMIP only uses them for key parts); a byte string under a tag the specifications
/// do not name (a vendor extension may carry anything).
pub fn redact(t: &Ttlv) -> Shown<'_> {
    walk(t, false, &mut |_| None)
}

/// What the XML of one capture has learnt for replays: the identifiers the server returned,
/// numbered by first appearance in a response (the order in which `kmip-conformance` binds
/// `$UNIQUE_IDENTIFIER_n`), and the date-times the client sent.
#[derive(Debug, Default)]
pub struct ReplayState {
    identifiers: HashMap<String, usize>,
    request_times: HashSet<i64>,
}

impl ReplayState {
    fn identifier(
        &mut self,
        uid: &str,
        in_response: bool,
        is_identifier_tag: bool,
    ) -> Option<String> {
        let n = match self.identifiers.get(uid) {
            Some(n) => *n,
            // Numbered where `kmip-conformance` numbers: identifier tags of a response.
            None if in_response
                && is_identifier_tag
                && self.identifiers.len() < MAX_REPLAY_IDENTIFIERS =>
            {
                let n = self.identifiers.len();
                self.identifiers.insert(uid.to_owned(), n);
                n
            }
            // Named by the client, never returned by the server here: kept as written.
            None => return None,
        };
        Some(format!("${}{n}", crate::client::conformance::UID_PREFIX))
    }

    /// A response's date-time close to the response's own time and not sent by the client:
    /// chosen by the server (Initial Date, Last Change Date...), so written relative to `$NOW`.
    fn time(&mut self, secs: i64, in_response: bool, at: i64) -> Option<String> {
        if !in_response {
            if self.request_times.len() < MAX_REPLAY_TIMES {
                self.request_times.insert(secs);
            }
            return None;
        }
        let age = at.checked_sub(secs)?;
        if age.unsigned_abs() > SERVER_TIME_WINDOW_SECS || self.request_times.contains(&secs) {
            return None;
        }
        Some(match age {
            0 => "$NOW".to_owned(),
            a if a > 0 => format!("$NOW-{a}"),
            a => format!("$NOW+{}", a.unsigned_abs()),
        })
    }
}

/// The form of a message the XML capture holds, so that a replay against another server (or
/// later) can match: [`redact`]ed; every identifier the server returned (in this message, if a
/// response, or earlier) written as `$UNIQUE_IDENTIFIER_n`; the server's date-times in a
/// response as `$NOW-n`. `at` is when the message went over the wire.
pub fn replay_form<'a>(
    t: &'a Ttlv,
    in_response: bool,
    at: SystemTime,
    state: &mut ReplayState,
) -> Shown<'a> {
    let at = OffsetDateTime::from(at).unix_timestamp();
    walk(t, false, &mut |leaf| {
        let (item_type, name) = match &leaf.value {
            Value::TextString(uid) => {
                let is_identifier_tag =
                    crate::client::conformance::IDENTIFIER_TAGS.contains(&leaf.tag);
                (
                    ItemType::TextString,
                    state.identifier(uid, in_response, is_identifier_tag)?,
                )
            }
            Value::DateTime(secs) => (ItemType::DateTime, state.time(*secs, in_response, at)?),
            Value::DateTimeExtended(us) => (
                ItemType::DateTimeExtended,
                state.time(us.div_euclid(1_000_000), in_response, at)?,
            ),
            _ => return None,
        };
        // The header's time stamp is not compared by the runner: kept as it was.
        (leaf.tag != tags::TIME_STAMP).then_some(Shown::Named {
            tag: leaf.tag,
            item_type,
            name,
        })
    })
}

/// Redacts secrets, and lets `other` replace what else it wants among the remaining leaves (in
/// document order).
fn walk<'a>(
    t: &'a Ttlv,
    inside_key_material: bool,
    other: &mut dyn FnMut(&'a Ttlv) -> Option<Shown<'a>>,
) -> Shown<'a> {
    match &t.value {
        Value::Structure(items) => {
            let inside = inside_key_material || t.tag == tags::KEY_MATERIAL;
            let shown: Vec<Shown<'a>> = items.iter().map(|c| walk(c, inside, other)).collect();
            if shown.iter().all(|s| matches!(s, Shown::Plain(_))) {
                Shown::Plain(t)
            } else {
                Shown::Structure {
                    tag: t.tag,
                    items: shown,
                }
            }
        }
        Value::BigInteger(b) => redacted(t, b.len()),
        Value::ByteString(b)
            if inside_key_material || SECRET_TAGS.contains(&t.tag) || tag_name(t.tag).is_none() =>
        {
            redacted(t, b.len())
        }
        Value::TextString(s) if inside_key_material || SECRET_TAGS.contains(&t.tag) => {
            redacted(t, s.len())
        }
        _ => other(t).unwrap_or(Shown::Plain(t)),
    }
}

fn redacted(t: &Ttlv, len: usize) -> Shown<'_> {
    Shown::Redacted {
        tag: t.tag,
        item_type: t.value.item_type(),
        len,
    }
}

// --- rendering (pure) -----------------------------------------------------------------------

fn element_name(tag: Tag) -> String {
    tag_name(tag).map_or_else(|| tag_hex(tag), str::to_owned)
}

/// The Attribute Name among an Attribute's items: it names the values of its Attribute Value.
fn attribute_name<'a>(items: &[Shown<'a>]) -> Option<&'a str> {
    items.iter().find_map(|s| match s {
        Shown::Plain(t) if t.tag == tags::ATTRIBUTE_NAME => t.as_text(),
        _ => None,
    })
}

/// How an item's values are named: by its tag, or for an Attribute Value by its Attribute Name.
fn naming(tag: Tag, attr_name: Option<&str>) -> (Option<EnumNames>, Option<&'static EnumDef>) {
    let tag = if tag == tags::ATTRIBUTE_VALUE {
        match attr_name.and_then(|n| tag_by_spec_name(n).or_else(|| tag_by_name(n))) {
            Some(t) => t,
            None => return (None, None),
        }
    } else {
        tag
    };
    (enum_names_for_tag(tag), mask_for_tag(tag))
}

fn datetime_text(secs: i64, micros: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.replace_microsecond(micros.clamp(0, 999_999) as u32).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
    {
        Some(s) => s,
        None => format!("0x{secs:016x}"),
    }
}

/// The text of a primitive value.
fn value_text(v: &Value, tag: Tag, attr_name: Option<&str>) -> String {
    let (enums, mask) = naming(tag, attr_name);
    match v {
        Value::Structure(_) => String::new(),
        Value::Integer(i) => match mask {
            Some(mask) if *i != 0 => {
                let (mut flags, rest) = mask_flags(mask, *i as u32);
                let rest_hex = format!("0x{rest:08x}");
                if rest != 0 {
                    flags.push(&rest_hex);
                }
                format!("{} ({i})", flags.join(" | "))
            }
            _ => i.to_string(),
        },
        Value::LongInteger(i) => i.to_string(),
        Value::BigInteger(b) | Value::ByteString(b) => hex::encode(b),
        Value::Enumeration(e) => match enums.and_then(|n| n.name_of(*e)) {
            Some(name) => name.to_owned(),
            None => format!("0x{e:08x}"),
        },
        Value::Boolean(b) => b.to_string(),
        // Debug quoting: control characters a client sent cannot reach a terminal raw.
        Value::TextString(s) => format!("{s:?}"),
        Value::DateTime(d) => datetime_text(*d, 0),
        Value::DateTimeExtended(us) => {
            datetime_text(us.div_euclid(1_000_000), us.rem_euclid(1_000_000))
        }
        Value::Interval(i) => format!("{i} s"),
    }
}

/// The indented text tree of a message: `Name [Type] value`, two spaces per level.
pub fn text_tree(shown: &Shown<'_>) -> String {
    let mut out = String::new();
    text_item(&mut out, shown, 0, None);
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn text_item(out: &mut String, shown: &Shown<'_>, depth: usize, attr_name: Option<&str>) {
    indent(out, depth);
    match shown {
        Shown::Plain(t) => match &t.value {
            Value::Structure(items) => {
                let _ = writeln!(out, "{} [Structure]", element_name(t.tag));
                let children: Vec<Shown<'_>> = items.iter().map(Shown::Plain).collect();
                text_children(out, t.tag, &children, depth);
            }
            v => {
                let _ = writeln!(
                    out,
                    "{} [{}] {}",
                    element_name(t.tag),
                    v.item_type().xml_name(),
                    value_text(v, t.tag, attr_name)
                );
            }
        },
        Shown::Structure { tag, items } => {
            let _ = writeln!(out, "{} [Structure]", element_name(*tag));
            text_children(out, *tag, items, depth);
        }
        Shown::Redacted {
            tag,
            item_type,
            len,
        } => {
            let _ = writeln!(
                out,
                "{} [{}] <redacted {len} bytes>",
                element_name(*tag),
                item_type.xml_name()
            );
        }
        Shown::Named {
            tag,
            item_type,
            name,
        } => {
            let _ = writeln!(
                out,
                "{} [{}] {name}",
                element_name(*tag),
                item_type.xml_name()
            );
        }
    }
}

fn text_children(out: &mut String, tag: Tag, items: &[Shown<'_>], depth: usize) {
    let attr_name = if tag == tags::ATTRIBUTE {
        attribute_name(items)
    } else {
        None
    };
    for c in items {
        text_item(out, c, depth + 1, attr_name);
    }
}

/// The XML placeholder of the `n`-th redacted value of a file (unique, so a replay binds each
/// one separately).
pub fn placeholder(len: usize, n: usize) -> String {
    format!("$REDACTED_{len}_BYTES_{n}")
}

/// The KMIP XML of a message, redacted values written as placeholders numbered from `*counter`.
pub fn xml_tree(shown: &Shown<'_>, counter: &mut usize) -> String {
    let mut out = String::new();
    xml_item(&mut out, shown, 0, counter);
    out
}

fn xml_open(out: &mut String, tag: Tag) {
    out.push('<');
    match tag_name(tag) {
        Some(n) => out.push_str(n),
        None => {
            let _ = write!(out, "TTLV tag=\"{}\"", tag_hex(tag));
        }
    }
}

/// One `<Tag type=".." value=".."/>` line.
fn xml_leaf(out: &mut String, depth: usize, tag: Tag, item_type: ItemType, value: &str) {
    indent(out, depth);
    xml_open(out, tag);
    let _ = writeln!(
        out,
        " type=\"{}\" value=\"{value}\"/>",
        item_type.xml_name()
    );
}

fn xml_item(out: &mut String, shown: &Shown<'_>, depth: usize, counter: &mut usize) {
    match shown {
        Shown::Plain(t) => {
            // The wire crate's writer, re-indented: exactly what the XML reader expects.
            for line in to_xml_string(t).lines() {
                indent(out, depth);
                out.push_str(line);
                out.push('\n');
            }
        }
        Shown::Structure { tag, items } => {
            indent(out, depth);
            xml_open(out, *tag);
            out.push_str(">\n");
            for c in items {
                xml_item(out, c, depth + 1, counter);
            }
            indent(out, depth);
            out.push_str("</");
            out.push_str(tag_name(*tag).unwrap_or("TTLV"));
            out.push_str(">\n");
        }
        Shown::Redacted {
            tag,
            item_type,
            len,
        } => {
            xml_leaf(out, depth, *tag, *item_type, &placeholder(*len, *counter));
            *counter += 1;
        }
        Shown::Named {
            tag,
            item_type,
            name,
        } => xml_leaf(out, depth, *tag, *item_type, name),
    }
}

/// Text fit for an XML comment (which may not contain `--`).
fn xml_comment(text: &str) -> String {
    let mut t = text.replace("--", "- -");
    while t.contains("--") {
        t = t.replace("--", "- -");
    }
    format!("<!-- {t} -->\n")
}

/// A user name as a file name part: ASCII letters, digits, `.`, `_`, `-`; the rest `_`.
fn file_name_part(user: &str) -> String {
    let s: String = user
        .chars()
        .take(MAX_USER_IN_FILE_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

/// `20250601T101500.123Z`: sorts by time, no characters file systems dislike.
fn file_stamp(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

// --- the connection side --------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

enum Record {
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
struct ConnFiles {
    text_path: PathBuf,
    xml_path: PathBuf,
    text_header: String,
    xml_header: String,
    state: Mutex<FileState>,
}

#[derive(Default)]
struct FileState {
    created: bool,
    /// A write failed or a file reached its size limit: nothing more is written.
    stopped: bool,
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

/// The gateway's wire capture: a folder and the writer thread behind a bounded queue.
pub struct Capture {
    dir: PathBuf,
    tx: SyncSender<Record>,
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
        let writer = Writer {
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
        let mut record = Record::Flush(ack_tx);
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
    tx: SyncSender<Record>,
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
        let record = Record::Closed {
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
        let record = Record::Message {
            conn: self.files.clone(),
            seq,
            direction,
            at: SystemTime::now(),
            bytes: bytes.clone(),
        };
        self.send(record, len);
    }

    fn send(&mut self, record: Record, len: usize) {
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

// --- the writer thread ----------------------------------------------------------------------

struct Writer {
    limits: Limits,
    queued_bytes: Arc<AtomicUsize>,
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

impl Writer {
    fn run(self, rx: Receiver<Record>) {
        while let Ok(record) = rx.recv() {
            match record {
                Record::Message {
                    conn,
                    seq,
                    direction,
                    at,
                    bytes,
                } => {
                    self.message(&conn, seq, direction, at, &bytes);
                    self.queued_bytes.fetch_sub(bytes.len(), Ordering::Relaxed);
                }
                Record::Closed { conn, seq, at, why } => self.closed(&conn, seq, at, why),
                Record::Flush(ack) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_wire::model::{
        Attribute, CreateRequest, CryptographicAlgorithm, ObjectType, ProtocolVersion,
        RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
    };
    use std::os::unix::fs::PermissionsExt;

    /// Distinctive secrets: no run of 4 of their bytes occurs by chance in a rendering.
    const KEY: [u8; 32] = [
        0xA7, 0x13, 0xC9, 0x5E, 0x0B, 0xF2, 0x6D, 0x88, 0x31, 0xE4, 0x7A, 0x9C, 0x02, 0xBD, 0x56,
        0xEF, 0x4A, 0x91, 0x2C, 0xD3, 0x68, 0x07, 0xFB, 0x15, 0xB0, 0x4E, 0x8F, 0x23, 0xDA, 0x79,
        0xC6, 0x5B,
    ];
    const PASSWORD: &str = "Zq9xWv7KpL3mT8sN";

    fn secret_bytes(seed: u8, n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ 0x5A)
            .collect()
    }

    fn bs(tag: Tag, b: &[u8]) -> Ttlv {
        Ttlv::new(tag, Value::ByteString(Bytes::copy_from_slice(b)))
    }

    /// A response-shaped tree carrying every kind of secret the gateway handles.
    fn secret_tree() -> (Ttlv, Vec<Vec<u8>>) {
        let iv = secret_bytes(1, 12);
        let data = secret_bytes(2, 48);
        let tag = secret_bytes(3, 16);
        let modulus = secret_bytes(4, 256);
        let exponent = secret_bytes(5, 256);
        let opaque = secret_bytes(6, 20);
        let vendor = secret_bytes(7, 24);
        let cert = secret_bytes(8, 40);
        let tree = Ttlv::structure(
            tags::RESPONSE_MESSAGE,
            vec![
                Ttlv::structure(
                    tags::CREDENTIAL,
                    vec![Ttlv::structure(
                        tags::CREDENTIAL_VALUE,
                        vec![
                            Ttlv::new(tags::USERNAME, Value::TextString("purefa".into())),
                            Ttlv::new(tags::PASSWORD, Value::TextString(PASSWORD.into())),
                        ],
                    )],
                ),
                Ttlv::structure(
                    tags::KEY_BLOCK,
                    vec![
                        Ttlv::new(tags::KEY_FORMAT_TYPE, Value::Enumeration(1)),
                        Ttlv::structure(tags::KEY_VALUE, vec![bs(tags::KEY_MATERIAL, &KEY)]),
                    ],
                ),
                Ttlv::structure(
                    tags::KEY_MATERIAL,
                    vec![
                        Ttlv::new(
                            tags::MODULUS,
                            Value::BigInteger(Bytes::from(modulus.clone())),
                        ),
                        Ttlv::new(
                            tags::PRIVATE_EXPONENT,
                            Value::BigInteger(Bytes::from(exponent.clone())),
                        ),
                    ],
                ),
                bs(tags::IV_COUNTER_NONCE, &iv),
                bs(tags::DATA, &data),
                bs(tags::AUTHENTICATED_ENCRYPTION_TAG, &tag),
                bs(tags::OPAQUE_DATA_VALUE, &opaque),
                bs(tags::CERTIFICATE_VALUE, &cert),
                bs(Tag(0x54_0001), &vendor),
                Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString("uid-7".into())),
            ],
        );
        let secrets = vec![
            KEY.to_vec(),
            PASSWORD.as_bytes().to_vec(),
            iv,
            data,
            tag,
            modulus,
            exponent,
            opaque,
            vendor,
            cert,
        ];
        (tree, secrets)
    }

    /// Fails if any 4-byte run of `secret` appears in `out` raw, or in hex (either case).
    fn assert_absent(out: &str, secret: &[u8], what: &str) {
        let lower = out.to_ascii_lowercase();
        for w in secret.windows(4) {
            assert!(
                !out.as_bytes().windows(4).any(|o| o == w),
                "{what}: raw secret bytes {w:02x?} in:\n{out}"
            );
            assert!(
                !lower.contains(&hex::encode(w)),
                "{what}: secret bytes {w:02x?} in hex in:\n{out}"
            );
        }
    }

    #[test]
    fn no_secret_byte_sequence_reaches_text_or_xml() {
        let (tree, secrets) = secret_tree();
        let shown = redact(&tree);
        let text = text_tree(&shown);
        let mut n = 0;
        let xml = xml_tree(&shown, &mut n);
        for s in &secrets {
            assert_absent(&text, s, "text");
            assert_absent(&xml, s, "xml");
        }
        assert_eq!(n, secrets.len(), "one placeholder per secret value");
        // What is not secret stays visible.
        assert!(text.contains("Username [TextString] \"purefa\""), "{text}");
        assert!(text.contains("UniqueIdentifier [TextString] \"uid-7\""));
        assert!(text.contains("KeyFormatType [Enumeration] Raw"), "{text}");
        assert!(text.contains("KeyMaterial [ByteString] <redacted 32 bytes>"));
        assert!(text.contains("Modulus [BigInteger] <redacted 256 bytes>"));
        assert!(text.contains("Password [TextString] <redacted 16 bytes>"));
        assert!(text.contains("0x540001 [ByteString] <redacted 24 bytes>"));
        assert!(xml.contains(r#"<KeyMaterial type="ByteString" value="$REDACTED_32_BYTES_"#));
        assert!(xml.contains(r#"<TTLV tag="0x540001" type="ByteString" value="$REDACTED_24"#));
    }

    #[test]
    fn xml_capture_parses_with_placeholders_of_the_right_types() {
        let (tree, _) = secret_tree();
        let mut n = 0;
        let xml = xml_tree(&redact(&tree), &mut n);
        let node = kmip_wire::xml::parse_template(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let mut found = Vec::new();
        node.for_each_placeholder(&mut |p, t| found.push((p.0.clone(), t)));
        assert_eq!(found.len(), n);
        assert!(found.contains(&("REDACTED_32_BYTES_1".into(), ItemType::ByteString)));
        assert!(found.contains(&("REDACTED_256_BYTES_2".into(), ItemType::BigInteger)));
        assert!(found.contains(&("REDACTED_16_BYTES_0".into(), ItemType::TextString)));
    }

    #[test]
    fn a_message_without_secrets_is_written_as_the_wire_crate_writes_it() {
        let msg = RequestMessage {
            header: RequestHeader::new(ProtocolVersion { major: 1, minor: 4 }),
            items: vec![RequestBatchItem::new(RequestPayload::Create(
                CreateRequest {
                    object_type: ObjectType::SymmetricKey,
                    attributes: vec![
                        Attribute::enumeration(
                            tags::CRYPTOGRAPHIC_ALGORITHM,
                            CryptographicAlgorithm::Aes,
                        ),
                        Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
                    ],
                },
            ))],
        }
        .to_ttlv();
        let shown = redact(&msg);
        assert_eq!(shown, Shown::Plain(&msg));
        let mut n = 0;
        assert_eq!(xml_tree(&shown, &mut n), to_xml_string(&msg));
        let text = text_tree(&shown);
        assert!(text.contains("Operation [Enumeration] Create"), "{text}");
        // 1.x attribute values are named by their Attribute Name.
        assert!(text.contains("AttributeValue [Enumeration] AES"), "{text}");
        assert!(
            text.contains("AttributeValue [Integer] Encrypt | Decrypt (12)"),
            "{text}"
        );
    }

    #[test]
    fn identifiers_and_times_the_server_chose_become_placeholders() {
        let uid = |u: &str| Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString(u.into()));
        let payload = |tag, uids: &[&str]| {
            Ttlv::structure(tag, uids.iter().map(|u| uid(u)).collect::<Vec<_>>())
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let mut state = ReplayState::default();
        let mut n = 0;
        let mut xml = |t: &Ttlv, response: bool, state: &mut ReplayState| {
            xml_tree(&replay_form(t, response, at, state), &mut n)
        };
        // Named by the client first: kept (the server never returned it in this capture).
        let old = xml(&payload(tags::REQUEST_PAYLOAD, &["old"]), false, &mut state);
        assert!(old.contains(r#"value="old""#), "{old}");
        let located = xml(
            &payload(tags::RESPONSE_PAYLOAD, &["a", "b", "a", "old"]),
            true,
            &mut state,
        );
        for (i, u) in ["a", "b", "a", "old"].iter().enumerate() {
            let want = format!("$UNIQUE_IDENTIFIER_{}", [0, 1, 0, 2][i]);
            assert_eq!(
                located.lines().nth(i + 1).map(|l| l.contains(&want)),
                Some(true),
                "{u}: {located}"
            );
        }
        let get = xml(&payload(tags::REQUEST_PAYLOAD, &["b"]), false, &mut state);
        assert!(get.contains("$UNIQUE_IDENTIFIER_1"), "{get}");
        // The client sets an Activation Date; the server answers with it and its own dates.
        let date = |tag, secs| Ttlv::new(tag, Value::DateTime(secs));
        let client_date = 2_000_000_000 - 60;
        let sent = xml(
            &Ttlv::structure(
                tags::REQUEST_PAYLOAD,
                vec![date(tags::ACTIVATION_DATE, client_date)],
            ),
            false,
            &mut state,
        );
        assert!(!sent.contains("$NOW"), "{sent}");
        let t = Ttlv::structure(
            tags::RESPONSE_MESSAGE,
            vec![
                date(tags::TIME_STAMP, 2_000_000_000),
                Ttlv::structure(
                    tags::ATTRIBUTE,
                    vec![
                        Ttlv::new(
                            tags::ATTRIBUTE_NAME,
                            Value::TextString("Unique Identifier".into()),
                        ),
                        Ttlv::new(tags::ATTRIBUTE_VALUE, Value::TextString("b".into())),
                    ],
                ),
                date(tags::ACTIVATION_DATE, client_date),
                date(tags::INITIAL_DATE, 2_000_000_000 - 5),
                date(tags::LAST_CHANGE_DATE, 2_000_000_000),
                date(tags::DEACTIVATION_DATE, 1_000_000_000),
                bs(tags::KEY_MATERIAL, &KEY),
            ],
        );
        let out = xml(&t, true, &mut state);
        let line = |tag| {
            let name = tag_name(tag).unwrap();
            out.lines()
                .find(|l| l.contains(&format!("<{name} ")))
                .unwrap_or_else(|| panic!("{name} in {out}"))
                .to_owned()
        };
        assert!(
            line(tags::TIME_STAMP).contains("2033-05-18T03:33:20+00:00"),
            "{out}"
        );
        assert!(
            line(tags::ATTRIBUTE_VALUE).contains("$UNIQUE_IDENTIFIER_1"),
            "{out}"
        );
        assert!(
            line(tags::ACTIVATION_DATE).contains("2033-05-18T03:32:20"),
            "{out}"
        );
        assert!(
            line(tags::INITIAL_DATE).contains(r#"value="$NOW-5""#),
            "{out}"
        );
        assert!(
            line(tags::LAST_CHANGE_DATE).contains(r#"value="$NOW""#),
            "{out}"
        );
        assert!(
            line(tags::DEACTIVATION_DATE).contains("2001-09-09"),
            "{out}"
        );
        assert!(out.contains("$REDACTED_32_BYTES_"), "{out}");
        // What the runner reads back: placeholders of the right types.
        let node = kmip_wire::xml::parse_template(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        let mut found = Vec::new();
        node.for_each_placeholder(&mut |p, t| found.push((p.0.clone(), t)));
        assert!(
            found.contains(&("NOW-5".into(), ItemType::DateTime)),
            "{found:?}"
        );
        // The text form keeps the real values.
        assert!(text_tree(&redact(&t)).contains(r#"AttributeValue [TextString] "b""#));
    }

    #[test]
    fn comments_and_file_names_are_safe() {
        assert_eq!(xml_comment("a---b"), "<!-- a- - -b -->\n");
        let c = xml_comment("x--y----z-");
        assert!(!c[5..c.len() - 5].contains("--"), "{c}");
        assert_eq!(file_name_part("purefa"), "purefa");
        assert_eq!(file_name_part("../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_name_part(""), "_");
        assert_eq!(
            file_name_part(&"é".repeat(100)).len(),
            MAX_USER_IN_FILE_NAME
        );
    }

    fn identity() -> crate::identity::Identity {
        crate::identity::Identity {
            user: "purefa".into(),
            subject: "CN=purefa".into(),
            serial_hex: "1a2b".into(),
            fingerprint: "00".repeat(32),
        }
    }

    fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_private_files_that_stay_valid_xml_between_messages() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("capture");
        let cap = Capture::start(&dir, Limits::default()).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (tree, secrets) = secret_tree();
        let request = Ttlv::structure(
            tags::REQUEST_MESSAGE,
            vec![Ttlv::new(tags::BATCH_COUNT, Value::Integer(1))],
        )
        .to_bytes()
        .unwrap();
        let response = tree.to_bytes().unwrap();
        let mut conn = cap.connection(7, "127.0.0.1:4000".parse().unwrap(), &identity());
        conn.request(&request);
        conn.response(&response);
        assert!(cap.flush(Duration::from_secs(10)));
        let xml = files_in(&dir, "xml");
        assert_eq!(xml.len(), 1);
        let name = xml[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with("-7-purefa.xml"), "{name}");
        let doc = std::fs::read_to_string(&xml[0]).unwrap();
        let nodes = kmip_wire::xml::parse_document(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(nodes.len(), 2);
        // Undecodable bytes: left out of both files, the XML still pairs up and parses.
        conn.request(&Bytes::from_static(&[
            0x42, 0x00, 0x78, 0x01, 0, 0, 0, 8, 1, 2,
        ]));
        conn.response(&request);
        conn.closed("client closed");
        assert!(cap.flush(Duration::from_secs(10)));
        let doc = std::fs::read_to_string(&xml[0]).unwrap();
        assert_eq!(kmip_wire::xml::parse_document(&doc).unwrap().len(), 2);
        let text_path = xml[0].with_extension("txt");
        let text = std::fs::read_to_string(&text_path).unwrap();
        assert!(text.contains("--- #0 request"), "{text}");
        assert!(text.contains("--- #1 response"), "{text}");
        assert!(text.contains("undecodable TTLV"), "{text}");
        assert!(text.contains("--- closed (client closed)"), "{text}");
        for s in &secrets {
            assert_absent(&text, s, "text file");
            assert_absent(&doc, s, "xml file");
        }
        for p in [&xml[0], &text_path] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }

    #[test]
    fn lost_records_are_marked_and_unpaired_requests_left_out_of_the_xml() {
        let tmp = tempfile::tempdir().unwrap();
        let cap = Capture::start(tmp.path(), Limits::default()).unwrap();
        let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![])
            .to_bytes()
            .unwrap();
        let response = Ttlv::structure(tags::RESPONSE_MESSAGE, vec![])
            .to_bytes()
            .unwrap();
        let mut conn = cap.connection(1, "127.0.0.1:4000".parse().unwrap(), &identity());
        conn.request(&request);
        // As if the queue had dropped the response and the next request.
        conn.next_seq += 2;
        conn.response(&response);
        conn.request(&request);
        conn.response(&response);
        assert!(cap.flush(Duration::from_secs(10)));
        let xml = files_in(tmp.path(), "xml");
        let doc = std::fs::read_to_string(&xml[0]).unwrap();
        let nodes = kmip_wire::xml::parse_document(&doc).unwrap();
        let order: Vec<Tag> = nodes.iter().map(|n| n.tag).collect();
        assert_eq!(
            order,
            [tags::REQUEST_MESSAGE, tags::RESPONSE_MESSAGE],
            "{doc}"
        );
        let text = std::fs::read_to_string(xml[0].with_extension("txt")).unwrap();
        assert!(text.contains("!!! 2 message(s) not captured"), "{text}");
    }

    #[test]
    fn a_failed_file_creation_is_counted_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let cap = Capture::start(tmp.path(), Limits::default()).unwrap();
        let mut conn = cap.connection(1, "127.0.0.1:4000".parse().unwrap(), &identity());
        // The folder goes away: the connection's capture stops, the writer keeps going.
        std::fs::remove_dir_all(tmp.path()).unwrap();
        let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![])
            .to_bytes()
            .unwrap();
        conn.request(&request);
        conn.response(&request);
        assert!(cap.flush(Duration::from_secs(10)));
        assert!(conn.files.state.lock().unwrap().stopped);
    }
}
