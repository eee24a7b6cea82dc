//! The record: what one audited batch item becomes, its canonical form and hash, and the drop
//! marker. No field can hold a secret; the format is in `docs/audit-format.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{AuditError, DROP_MARKER_OPERATION, MAX_FIELD_BYTES, MAX_UIDS};

const TRUNCATED_MARK: &str = "…[truncated]";

const DROP_MARKER_REASON: &str =
    "audit record(s) dropped before this one (queue full or write error)";

/// One audited batch item, as written to the log. See `docs/audit-format.md` for the field list
/// and why none of them can carry a secret.
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
    /// The client's own text of a Log or Interop item (escaped by the operation layer, bounded
    /// here); absent otherwise, and then absent from the line, so records without one keep the
    /// form and hash they had before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `hash` of the previous record, or [`super::GENESIS_PREV`].
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
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
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
            note: self.note.as_deref(),
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
    /// The client's own text of a Log or Interop item, already escaped (`kmip::ops`).
    pub note: Option<String>,
}

impl AuditEvent {
    /// The record with its chain fields, `hash` still empty.
    pub(super) fn into_record(self, seq: u64, prev: &str) -> AuditRecord {
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
            note: self.note.map(bounded),
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

/// Where the chain continues: the next seq and the hash it must point back to.
#[derive(Clone)]
pub(super) struct Tip {
    pub(super) next_seq: u64,
    pub(super) prev: String,
}

impl Tip {
    pub(super) fn after(last: &AuditRecord, path: &Path) -> Result<Tip, AuditError> {
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

/// A record encoded as its line, with its hash (the next record's `prev`).
pub(super) struct Line {
    pub(super) bytes: Vec<u8>,
    pub(super) hash: String,
}

/// Chains `event` after `tip` and encodes it as one line; a failure carries the seq it would
/// have had.
pub(super) fn encode_line(event: AuditEvent, tip: &Tip) -> Result<Line, (serde_json::Error, u64)> {
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
pub(super) fn drop_marker(dropped: u64) -> AuditEvent {
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
        note: None,
    }
}

/// The number a drop marker reports, if `record` is one.
pub(super) fn reported_drops(record: &AuditRecord) -> Option<u64> {
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
