//! The vault log's on-disk format: header, frames, encrypted records, and replay.
//!
//! ```text
//! file   = header frame*
//! header = magic[8] version:u32 salt[32] check[32] crc32:u32          (80 bytes)
//! frame  = len:u32 payload_crc:u32 header_crc:u32 payload[len]         (one group commit)
//! payload= record+
//! record = rec_len:u32 seq:u64 op:u8 uid_len:u16 uid nonce[12] ciphertext tag[16]
//! body   = kind:u8 (0 | 1 alg:u8 bits:u32 extractable:u8 sensitive:u8 (0 | 1 len:u16 label))
//!          meta_len:u32 meta (0 | 1 len:u32 material)          (the plaintext of a put)
//! ```
//!
//! All integers are little-endian. Each log file has a random salt; HKDF-SHA256 over the master
//! key and that salt yields the file's AES-256-GCM record key and the HMAC key of the header's
//! `check` field, which tells a wrong master key from a damaged file. A record's AAD is its
//! `seq op uid_len uid` bytes, so a record cannot be moved to another uid or position. `seq`
//! counts from 1 in each file without gaps.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{constant_time, hkdf, hmac, rand};
use zeroize::{Zeroize, Zeroizing};

use super::keyfile::MasterKey;
use super::{io_err, sync_dir, Entry};
use crate::{BackendError, KeyAlgorithm, KeySpec, ObjectKind};

/// The log file's name inside the vault directory.
pub(crate) const LOG_FILE: &str = "vault.log";
/// Where a new log is written before it atomically replaces the old one.
pub(crate) const TMP_LOG_FILE: &str = "vault.log.new";

const MAGIC: [u8; 8] = *b"KMIPVLT\0";
/// The only format this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;
const SALT_LEN: usize = 32;
const CHECK_LEN: usize = 32;
const CHECKED_HEADER_LEN: usize = MAGIC.len() + 4 + SALT_LEN;
pub(crate) const HEADER_LEN: usize = CHECKED_HEADER_LEN + CHECK_LEN + 4;
pub(crate) const FRAME_HEADER_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// seq, op and uid_len: the fixed part of a record's AAD.
const RECORD_FIXED_LEN: usize = 8 + 1 + 2;

const HKDF_INFO_RECORD_KEY: &[u8] = b"kmip-gateway vault v1 record key";
const HKDF_INFO_CHECK_KEY: &[u8] = b"kmip-gateway vault v1 header check";

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// Longest uid accepted; bounds the clear part of a record (KMIP uids are usually 36-byte UUIDs).
pub const MAX_UID_BYTES: usize = 1024;
/// Largest metadata blob per object; bounds record size and memory per object.
pub const MAX_META_BYTES: usize = 1 << 20;
/// Largest object material (key, secret, certificate...); bounds record size and memory per object.
pub const MAX_MATERIAL_BYTES: usize = 1 << 20;
/// Longest label; bounds record size.
pub const MAX_LABEL_BYTES: usize = 4096;
/// Upper bound of one encoded record, all limits above at their maximum.
const MAX_RECORD_BYTES: usize = 4
    + RECORD_FIXED_LEN
    + MAX_UID_BYTES
    + NONCE_LEN
    + TAG_LEN
    + 32
    + MAX_LABEL_BYTES
    + MAX_META_BYTES
    + MAX_MATERIAL_BYTES;
/// A frame is closed once its payload reaches this size; keeps single appends (and so the
/// window a crash can tear) and the writer's buffer moderate.
pub(crate) const FRAME_TARGET_BYTES: usize = 4 << 20;
/// Largest frame payload a reader accepts: a full frame plus one maximal record. Bounds what a
/// reader allocates for a length field it has checked but not yet proven by the payload CRC.
const MAX_FRAME_PAYLOAD: usize = FRAME_TARGET_BYTES + MAX_RECORD_BYTES;

/// Buffer of the replay reader; large reads keep opening a big vault fast.
const REPLAY_BUFFER_BYTES: usize = 1 << 20;

/// Keys of one log file.
pub(crate) struct FileKeys {
    aead: LessSafeKey,
}

fn derive_keys(
    master: &MasterKey,
    salt: &[u8; SALT_LEN],
) -> Result<(FileKeys, hmac::Key), BackendError> {
    let failed = |_| BackendError::Crypto("key derivation failed".into());
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&master[..]);
    let record = prk
        .expand(&[HKDF_INFO_RECORD_KEY], &AES_256_GCM)
        .map_err(failed)?;
    let check = prk
        .expand(&[HKDF_INFO_CHECK_KEY], hmac::HMAC_SHA256)
        .map_err(failed)?;
    Ok((
        FileKeys {
            aead: LessSafeKey::new(UnboundKey::from(record)),
        },
        hmac::Key::from(check),
    ))
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// A new header with a fresh salt, and the keys it stands for.
fn new_header(master: &MasterKey) -> Result<([u8; HEADER_LEN], FileKeys), BackendError> {
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt).map_err(|_| BackendError::Crypto("random generator failed".into()))?;
    let (keys, check_key) = derive_keys(master, &salt)?;
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..CHECKED_HEADER_LEN].copy_from_slice(&salt);
    let check = hmac::sign(&check_key, &h[..CHECKED_HEADER_LEN]);
    h[CHECKED_HEADER_LEN..CHECKED_HEADER_LEN + CHECK_LEN].copy_from_slice(check.as_ref());
    let crc = crc32fast::hash(&h[..HEADER_LEN - 4]);
    h[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    Ok((h, keys))
}

/// Validates a header, telling a foreign file, a damaged header, another format version and a
/// wrong master key apart.
fn open_header(h: &[u8; HEADER_LEN], master: &MasterKey) -> Result<FileKeys, BackendError> {
    if h[..8] != MAGIC {
        return Err(BackendError::Corrupt(
            "not a kmip-gateway vault log (bad magic)".into(),
        ));
    }
    if crc32fast::hash(&h[..HEADER_LEN - 4]) != le_u32(&h[HEADER_LEN - 4..]) {
        return Err(BackendError::Corrupt(
            "vault header is damaged (checksum mismatch)".into(),
        ));
    }
    let version = le_u32(&h[8..12]);
    if version != FORMAT_VERSION {
        return Err(BackendError::Corrupt(format!(
            "vault format version {version} is not supported (this build reads version {FORMAT_VERSION})"
        )));
    }
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&h[12..CHECKED_HEADER_LEN]);
    let (keys, check_key) = derive_keys(master, &salt)?;
    let expected = hmac::sign(&check_key, &h[..CHECKED_HEADER_LEN]);
    constant_time::verify_slices_are_equal(
        expected.as_ref(),
        &h[CHECKED_HEADER_LEN..CHECKED_HEADER_LEN + CHECK_LEN],
    )
    .map_err(|_| {
        BackendError::Corrupt(
            "the master key does not match this vault (wrong key, or another vault's log)".into(),
        )
    })?;
    Ok(keys)
}

/// Reserves room for a frame header at the end of `buf`; returns where the frame starts.
pub(crate) fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    start
}

/// Fills in the header of the frame that starts at `start` and runs to the end of `buf`.
pub(crate) fn finish_frame(buf: &mut [u8], start: usize) {
    let payload = &buf[start + FRAME_HEADER_LEN..];
    // Payloads are bounded by MAX_FRAME_PAYLOAD, far below u32::MAX.
    let len = payload.len() as u32;
    let payload_crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&buf[start..start + 8]);
    buf[start + 8..start + 12].copy_from_slice(&header_crc.to_le_bytes());
}

fn algorithm_code(a: KeyAlgorithm) -> u8 {
    match a {
        KeyAlgorithm::Aes => 1,
        KeyAlgorithm::HmacSha256 => 2,
    }
}

fn algorithm_from_code(code: u8) -> Option<KeyAlgorithm> {
    match code {
        1 => Some(KeyAlgorithm::Aes),
        2 => Some(KeyAlgorithm::HmacSha256),
        _ => None,
    }
}

/// Exact length of [`encode_entry`]'s output.
fn entry_plain_len(e: &Entry) -> usize {
    let spec_len = match &e.spec {
        None => 0,
        Some(s) => 1 + 4 + 1 + 1 + 1 + s.label.as_ref().map_or(0, |l| 2 + l.len()),
    };
    1 + 1 + spec_len + 4 + e.meta.len() + 1 + e.material.as_ref().map_or(0, |m| 4 + m.len())
}

/// Bytes an object's record takes in the log, for garbage accounting.
pub(crate) fn record_disk_len(uid: &str, entry: Option<&Entry>) -> u64 {
    (4 + RECORD_FIXED_LEN + uid.len() + NONCE_LEN + entry.map_or(0, entry_plain_len) + TAG_LEN)
        as u64
}

/// Serialises an object for encryption. Callers have checked every field against the MAX_*
/// limits, so the length casts below cannot truncate.
fn encode_entry(e: &Entry) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(entry_plain_len(e)));
    out.push(e.kind.code());
    match &e.spec {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.push(algorithm_code(s.algorithm));
            out.extend_from_slice(&s.bits.to_le_bytes());
            out.push(u8::from(s.extractable));
            out.push(u8::from(s.sensitive));
            match &s.label {
                None => out.push(0),
                Some(l) => {
                    out.push(1);
                    out.extend_from_slice(&(l.len() as u16).to_le_bytes());
                    out.extend_from_slice(l.as_bytes());
                }
            }
        }
    }
    out.extend_from_slice(&(e.meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&e.meta);
    match &e.material {
        None => out.push(0),
        Some(m) => {
            out.push(1);
            out.extend_from_slice(&(m.len() as u32).to_le_bytes());
            out.extend_from_slice(m);
        }
    }
    out
}

/// Bounds-checked reader over a decrypted record.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err("record body ends early".into());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(le_u32(self.take(4)?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("bad flag byte {other}")),
        }
    }
}

fn decode_entry(plain: &[u8]) -> Result<Entry, String> {
    let mut c = Cursor { rest: plain };
    let kind = ObjectKind::from_code(c.u8()?).ok_or("unknown object kind")?;
    let spec = if c.flag()? {
        let algorithm = algorithm_from_code(c.u8()?).ok_or("unknown key algorithm")?;
        let bits = c.u32()?;
        let extractable = c.flag()?;
        let sensitive = c.flag()?;
        let label = if c.flag()? {
            let n = usize::from(c.u16()?);
            let bytes = c.take(n)?;
            Some(String::from_utf8(bytes.to_vec()).map_err(|_| "label is not UTF-8".to_string())?)
        } else {
            None
        };
        Some(KeySpec {
            algorithm,
            bits,
            extractable,
            sensitive,
            label,
        })
    } else {
        None
    };
    let meta_len = c.u32()? as usize;
    let meta = c.take(meta_len)?.to_vec();
    let material = if c.flag()? {
        let len = c.u32()? as usize;
        Some(Zeroizing::new(c.take(len)?.to_vec()))
    } else {
        None
    };
    if !c.rest.is_empty() {
        return Err("trailing bytes after record body".into());
    }
    Ok(Entry {
        kind,
        spec,
        meta,
        material,
    })
}

/// Appends the encrypted record for `uid` (a put of `entry`, or a delete when `None`) to `out`.
/// On failure `out` is left as it was.
pub(crate) fn seal_record(
    keys: &FileKeys,
    seq: u64,
    uid: &str,
    entry: Option<&Entry>,
    out: &mut Vec<u8>,
) -> Result<(), BackendError> {
    let plain = match entry {
        Some(e) => encode_entry(e),
        None => Zeroizing::new(Vec::new()),
    };
    let start = out.len();
    // Callers bound uid and entry by the MAX_* limits, so these fit.
    let rec_len = record_disk_len(uid, entry) as u32 - 4;
    out.extend_from_slice(&rec_len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(if entry.is_some() { OP_PUT } else { OP_DELETE });
    out.extend_from_slice(&(uid.len() as u16).to_le_bytes());
    out.extend_from_slice(uid.as_bytes());
    let aad = out[start + 4..].to_vec();
    let mut nonce = [0u8; NONCE_LEN];
    if rand::fill(&mut nonce).is_err() {
        out.truncate(start);
        return Err(BackendError::Crypto("random generator failed".into()));
    }
    out.extend_from_slice(&nonce);
    let body = out.len();
    out.extend_from_slice(&plain);
    match keys.aead.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad),
        &mut out[body..],
    ) {
        Ok(tag) => {
            out.extend_from_slice(tag.as_ref());
            Ok(())
        }
        Err(_) => {
            out[start..].zeroize();
            out.truncate(start);
            Err(BackendError::Crypto("record encryption failed".into()))
        }
    }
}

/// One decrypted record.
struct Record<'a> {
    seq: u64,
    uid: &'a str,
    entry: Option<Entry>,
}

fn open_record<'a>(keys: &FileKeys, rec: &'a [u8]) -> Result<Record<'a>, String> {
    let mut c = Cursor { rest: rec };
    let seq = c.u64()?;
    let op = c.u8()?;
    let uid_len = usize::from(c.u16()?);
    let uid = std::str::from_utf8(c.take(uid_len)?).map_err(|_| "uid is not UTF-8")?;
    let aad = &rec[..RECORD_FIXED_LEN + uid_len];
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(c.take(NONCE_LEN)?);
    if c.rest.len() < TAG_LEN {
        return Err("record too short for its tag".into());
    }
    let mut body = Zeroizing::new(c.rest.to_vec());
    let plain = keys
        .aead
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| format!("record {seq} fails authentication"))?;
    let entry = match op {
        OP_PUT => Some(decode_entry(plain)?),
        OP_DELETE if plain.is_empty() => None,
        _ => return Err(format!("record {seq} has unknown operation {op}")),
    };
    Ok(Record { seq, uid, entry })
}

/// A log file read back into memory.
pub(crate) struct Loaded {
    pub keys: FileKeys,
    pub objects: HashMap<String, Entry>,
    pub next_seq: u64,
    /// Length of the valid log (after cutting a torn tail).
    pub file_len: u64,
    /// Bytes of the log that the live objects' latest records take.
    pub live_bytes: u64,
    /// Bytes cut off as a torn tail (0 when the log ended cleanly).
    pub torn_bytes: u64,
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// True when nothing but zero bytes remain: what a file system leaves where an append was
/// allocated but its data never reached the disk.
fn rest_is_zero(r: &mut impl Read) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(r, &mut buf)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < buf.len() {
            return Ok(true);
        }
    }
}

/// Granularity at which a crash can leave part of an append unwritten: a disk sector. Such a
/// part reads back as zeros (the file grew, but those blocks were never written).
const SECTOR_BYTES: u64 = 512;
/// Shortest zero-filled end of a frame taken as an unwritten last sector: a few zero bytes at a
/// frame's end occur by chance and must not hide damage.
const MIN_ZERO_TAIL: usize = 16;

/// Whether a complete frame that fails its checksum looks like an interrupted write: a sector
/// the payload spans (a whole one, or the last one cut at the frame's end) reads as all zeros.
/// The sector shared with the frame header is not looked at: had it gone unwritten, the header
/// would have failed its own checksum. A bit flip leaves every sector non-zero.
fn has_unwritten_sector(payload: &[u8], payload_offset: u64) -> bool {
    let end = payload_offset + payload.len() as u64;
    let mut start = payload_offset.next_multiple_of(SECTOR_BYTES);
    while start < end {
        let stop = (start + SECTOR_BYTES).min(end);
        let piece = &payload[(start - payload_offset) as usize..(stop - payload_offset) as usize];
        let long_enough = stop - start == SECTOR_BYTES || piece.len() >= MIN_ZERO_TAIL;
        if long_enough && piece.iter().all(|&b| b == 0) {
            return true;
        }
        start = stop;
    }
    false
}

/// How a frame read ended.
enum FrameRead {
    Frame(Vec<u8>),
    End,
    Torn,
}

/// Reads the frame at the current position, telling a torn tail (an unfinished final append)
/// from damage anywhere else, which is an error.
fn read_frame(r: &mut impl Read, offset: u64) -> Result<FrameRead, String> {
    let io = |e: std::io::Error| format!("read failed at offset {offset}: {e}");
    let mut h = [0u8; FRAME_HEADER_LEN];
    let n = read_full(r, &mut h).map_err(io)?;
    if n == 0 {
        return Ok(FrameRead::End);
    }
    if n < FRAME_HEADER_LEN {
        return Ok(FrameRead::Torn);
    }
    if crc32fast::hash(&h[..8]) != le_u32(&h[8..]) {
        // A header only partly on disk is followed by nothing but zeros.
        return if rest_is_zero(r).map_err(io)? {
            Ok(FrameRead::Torn)
        } else {
            Err(format!(
                "frame header at offset {offset} is damaged and data follows it"
            ))
        };
    }
    let len = le_u32(&h[..4]) as usize;
    if len == 0 || len > MAX_FRAME_PAYLOAD {
        return Err(format!(
            "frame at offset {offset} declares an impossible length {len}"
        ));
    }
    let mut payload = vec![0u8; len];
    if read_full(r, &mut payload).map_err(io)? < len {
        return Ok(FrameRead::Torn);
    }
    if crc32fast::hash(&payload) != le_u32(&h[4..8]) {
        if !rest_is_zero(r).map_err(io)? {
            return Err(format!(
                "frame at offset {offset} fails its checksum and data follows it"
            ));
        }
        if has_unwritten_sector(&payload, offset + FRAME_HEADER_LEN as u64) {
            return Ok(FrameRead::Torn);
        }
        return Err(format!(
            "the last frame, at offset {offset} ({len} bytes), fails its checksum although all \
             of it is on disk: damage, not an interrupted write. Restore the vault from a \
             backup; or, giving up the writes of that frame, cut the log to {offset} bytes \
             (truncate -s {offset})"
        ));
    }
    Ok(FrameRead::Frame(payload))
}

/// Replays the whole log. A torn tail is cut off (and the cut made durable); any other damage,
/// a wrong key or a foreign file is refused without touching the file.
pub(crate) fn replay(file: &File, path: &Path, master: &MasterKey) -> Result<Loaded, BackendError> {
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", path.display()));
    let total = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut r = BufReader::with_capacity(REPLAY_BUFFER_BYTES, file);
    let mut h = [0u8; HEADER_LEN];
    if read_full(&mut r, &mut h).map_err(|e| io_err(path, e))? < HEADER_LEN {
        return Err(corrupt(format!(
            "{total} bytes is too short for a vault log header"
        )));
    }
    let keys = open_header(&h, master).map_err(|e| match e {
        BackendError::Corrupt(m) => corrupt(m),
        other => other,
    })?;
    let mut objects: HashMap<String, Entry> = HashMap::new();
    let mut live_bytes = HEADER_LEN as u64;
    let mut next_seq = 1u64;
    let mut offset = HEADER_LEN as u64;
    loop {
        let payload = match read_frame(&mut r, offset).map_err(corrupt)? {
            FrameRead::End => break,
            FrameRead::Torn => {
                drop(r);
                file.set_len(offset).map_err(|e| io_err(path, e))?;
                file.sync_all().map_err(|e| io_err(path, e))?;
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    discarded = total - offset,
                    "cut a torn tail (an unacknowledged write interrupted by a crash) off the vault log"
                );
                return Ok(Loaded {
                    keys,
                    objects,
                    next_seq,
                    file_len: offset,
                    live_bytes,
                    torn_bytes: total - offset,
                });
            }
            FrameRead::Frame(p) => p,
        };
        let mut pos = 0;
        while pos < payload.len() {
            let at = offset + (FRAME_HEADER_LEN + pos) as u64;
            let rec_len = payload
                .get(pos..pos + 4)
                .map(le_u32)
                .ok_or_else(|| corrupt(format!("record length cut short at offset {at}")))?
                as usize;
            let rec = payload
                .get(pos + 4..pos + 4 + rec_len)
                .ok_or_else(|| corrupt(format!("record at offset {at} overruns its frame")))?;
            let record = open_record(&keys, rec)
                .map_err(|m| corrupt(format!("record at offset {at}: {m}")))?;
            if record.seq != next_seq {
                return Err(corrupt(format!(
                    "record at offset {at} has sequence {} where {next_seq} was due",
                    record.seq
                )));
            }
            next_seq += 1;
            let new_len = record_disk_len(record.uid, record.entry.as_ref());
            let old = match record.entry {
                Some(entry) => {
                    live_bytes += new_len;
                    objects.insert(record.uid.to_owned(), entry)
                }
                None => Some(objects.remove(record.uid).ok_or_else(|| {
                    corrupt(format!(
                        "record at offset {at} deletes an object that does not exist"
                    ))
                })?),
            };
            if let Some(old) = old {
                live_bytes -= record_disk_len(record.uid, Some(&old));
            }
            pos += 4 + rec_len;
        }
        offset += (FRAME_HEADER_LEN + payload.len()) as u64;
    }
    Ok(Loaded {
        keys,
        objects,
        next_seq,
        file_len: offset,
        live_bytes,
        torn_bytes: 0,
    })
}

/// A freshly written log file.
pub(crate) struct FreshLog {
    pub file: File,
    pub keys: FileKeys,
    pub next_seq: u64,
    pub file_len: u64,
}

/// Creates the log of a new, empty vault: written beside its final name, made durable, then
/// renamed into place, so a crash never leaves a half-made log.
pub(crate) fn create_log(dir: &Path, master: &MasterKey) -> Result<FreshLog, BackendError> {
    let tmp = dir.join(TMP_LOG_FILE);
    let fresh = write_log_file(&tmp, master, std::iter::empty())?;
    let path = dir.join(LOG_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir)?;
    Ok(fresh)
}

/// Writes a complete log holding `objects` to `tmp` and fsyncs it; the caller renames it into
/// place. The returned file is positioned at its end, ready for appends.
pub(crate) fn write_log_file<'a>(
    tmp: &Path,
    master: &MasterKey,
    objects: impl Iterator<Item = (&'a String, &'a Entry)>,
) -> Result<FreshLog, BackendError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| io_err(tmp, e))?;
    let (header, keys) = new_header(master)?;
    let mut buf = Vec::with_capacity(FRAME_TARGET_BYTES + MAX_RECORD_BYTES);
    buf.extend_from_slice(&header);
    let mut file_len = 0u64;
    let mut seq = 1u64;
    let mut frame = begin_frame(&mut buf);
    for (uid, entry) in objects {
        seal_record(&keys, seq, uid, Some(entry), &mut buf)?;
        seq += 1;
        if buf.len() - frame - FRAME_HEADER_LEN >= FRAME_TARGET_BYTES {
            finish_frame(&mut buf, frame);
            file.write_all(&buf).map_err(|e| io_err(tmp, e))?;
            file_len += buf.len() as u64;
            buf.clear();
            frame = begin_frame(&mut buf);
        }
    }
    if buf.len() > frame + FRAME_HEADER_LEN {
        finish_frame(&mut buf, frame);
    } else {
        buf.truncate(frame);
    }
    file.write_all(&buf).map_err(|e| io_err(tmp, e))?;
    file_len += buf.len() as u64;
    file.sync_all().map_err(|e| io_err(tmp, e))?;
    Ok(FreshLog {
        file,
        keys,
        next_seq: seq,
        file_len,
    })
}

/// Every plaintext anyone holding the master key can recover from the files in `dir`: each
/// record of any log file there, decrypted. Tests use it to show destroyed material is gone.
#[cfg(test)]
pub(crate) fn recoverable_plaintexts(dir: &Path, master: &MasterKey) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        let Some(h) = bytes.get(..HEADER_LEN) else {
            continue;
        };
        let Ok(keys) = open_header(h.try_into().unwrap(), master) else {
            continue;
        };
        let mut at = HEADER_LEN;
        while at + FRAME_HEADER_LEN <= bytes.len() {
            let len = le_u32(&bytes[at..]) as usize;
            let payload = &bytes[at + FRAME_HEADER_LEN..(at + FRAME_HEADER_LEN + len).min(bytes.len())];
            let mut pos = 0;
            while let Some(rl) = payload.get(pos..pos + 4).map(le_u32) {
                let Some(rec) = payload.get(pos + 4..pos + 4 + rl as usize) else {
                    break;
                };
                if let Ok(Record { entry: Some(e), .. }) = open_record(&keys, rec) {
                    out.push(e.meta.clone());
                    out.extend(e.material.map(|m| m.to_vec()));
                }
                pos += 4 + rl as usize;
            }
            at += FRAME_HEADER_LEN + len;
        }
    }
    out
}
