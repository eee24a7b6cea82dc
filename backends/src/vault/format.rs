//! The vault log's on-disk format: header, chained frames, encrypted records, and replay.
//!
//! ```text
//! file   = header frame*
//! header = magic[8] version:u32 salt[32] check[32] crc32:u32          (80 bytes)
//! frame  = len:u32 payload_crc:u32 header_crc:u32 payload[len]         (one group commit)
//! payload= record+ chain_mac[32]                                      (version 2)
//! record = rec_len:u32 seq:u64 op:u8 uid_len:u16 uid nonce[12] ciphertext tag[16]
//! body   = kind:u8 (0 | 1 alg:u8 bits:u32 extractable:u8 sensitive:u8 (0 | 1 len:u16 label))
//!          meta_len:u32 meta material                          (the plaintext of a put)
//! material = 0 | 1 slot:u32 nonce[12] len:u32 ciphertext[len] tag[16]   (version 2)
//!          | 0 | 1 len:u32 material[len]                                 (version 1)
//! ```
//!
//! All integers are little-endian. Each log file has a random salt; HKDF-SHA256 over the master
//! key and that salt yields the file's AES-256-GCM record key, the HMAC key of the header's
//! `check` field (which tells a wrong master key from a damaged file) and the HMAC key of the
//! frame chain. A record's AAD is its `seq op uid_len uid` bytes, so a record cannot be moved to
//! another uid or position. `seq` counts from 1 in each file without gaps.
//!
//! Version 2: an object's material is encrypted under its own data key (DEK), which lives only
//! in key slot `slot` of `vault.keys` (see `slots.rs`); the material's AAD is `uid slot`.
//! Each frame ends with `chain_mac = HMAC(chain key, previous chain_mac || frame number:u64 ||
//! records)`, the first frame chaining from the header's `check`: frames cannot be dropped,
//! reordered or taken from another copy of the file without the chain breaking, and the head
//! file (`head.rs`) pins where the chain ended at the last acknowledgement.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{constant_time, hkdf, hmac, rand};
use zeroize::{Zeroize, Zeroizing};

use super::files::{create_private, io_err};
use super::head::{HeadState, Position};
use super::keyfile::MasterKey;
use super::slots::Dek;
use super::Entry;
use crate::{BackendError, KeyAlgorithm, KeySpec, ObjectKind};

/// The log file's name inside the vault directory.
pub(crate) const LOG_FILE: &str = "vault.log";
/// Where a new log is written before it atomically replaces the old one.
pub(crate) const TMP_LOG_FILE: &str = "vault.log.new";

const MAGIC: [u8; 8] = *b"KMIPVLT\0";
/// The format this build writes.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The format before key slots and the frame chain: read only, to upgrade it.
pub(crate) const FORMAT_VERSION_1: u32 = 1;
const SALT_LEN: usize = 32;
const CHECK_LEN: usize = 32;
const CHECKED_HEADER_LEN: usize = MAGIC.len() + 4 + SALT_LEN;
pub(crate) const HEADER_LEN: usize = CHECKED_HEADER_LEN + CHECK_LEN + 4;
pub(crate) const FRAME_HEADER_LEN: usize = 12;
/// The chain MAC that ends every version-2 frame.
pub(crate) const CHAIN_MAC_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// seq, op and uid_len: the fixed part of a record's AAD.
const RECORD_FIXED_LEN: usize = 8 + 1 + 2;
/// slot, nonce and length of a version-2 sealed material, before its ciphertext and tag.
const SEALED_FIXED_LEN: usize = 4 + NONCE_LEN + 4;

const HKDF_INFO_RECORD_KEY: &[u8] = b"kmip-gateway vault v1 record key";
const HKDF_INFO_CHECK_KEY: &[u8] = b"kmip-gateway vault v1 header check";
const HKDF_INFO_CHAIN_KEY: &[u8] = b"kmip-gateway vault v2 frame chain";

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
    + SEALED_FIXED_LEN
    + TAG_LEN
    + MAX_LABEL_BYTES
    + MAX_META_BYTES
    + MAX_MATERIAL_BYTES;
/// A frame is closed once its payload reaches this size; keeps single appends (and so the
/// window a crash can tear) and the writer's buffer moderate.
pub(crate) const FRAME_TARGET_BYTES: usize = 4 << 20;
/// Largest frame payload a reader accepts: a full frame plus one maximal record and the chain
/// MAC. Bounds what a reader allocates for a length field it has checked but not yet proven by
/// the payload CRC.
const MAX_FRAME_PAYLOAD: usize = FRAME_TARGET_BYTES + MAX_RECORD_BYTES + CHAIN_MAC_LEN;

/// Buffer of the replay reader; large reads keep opening a big vault fast.
const REPLAY_BUFFER_BYTES: usize = 1 << 20;

/// Keys of one log file, and where its chain starts.
pub(crate) struct FileKeys {
    aead: LessSafeKey,
    chain: hmac::Key,
    /// The chain before the first frame: this file's salt, no frames, the header's check value.
    pub start: Position,
}

fn derive_keys(
    master: &MasterKey,
    salt: &[u8; SALT_LEN],
) -> Result<(LessSafeKey, hmac::Key, hmac::Key), BackendError> {
    let failed = |_| BackendError::Crypto("key derivation failed".into());
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&master[..]);
    let record = prk
        .expand(&[HKDF_INFO_RECORD_KEY], &AES_256_GCM)
        .map_err(failed)?;
    let check = prk
        .expand(&[HKDF_INFO_CHECK_KEY], hmac::HMAC_SHA256)
        .map_err(failed)?;
    let chain = prk
        .expand(&[HKDF_INFO_CHAIN_KEY], hmac::HMAC_SHA256)
        .map_err(failed)?;
    Ok((
        LessSafeKey::new(UnboundKey::from(record)),
        hmac::Key::from(check),
        hmac::Key::from(chain),
    ))
}

fn file_keys(aead: LessSafeKey, chain: hmac::Key, salt: &[u8; SALT_LEN], check: &[u8]) -> FileKeys {
    let mut mac = [0u8; CHAIN_MAC_LEN];
    mac.copy_from_slice(check);
    FileKeys {
        aead,
        chain,
        start: Position {
            salt: *salt,
            frames: 0,
            log_len: HEADER_LEN as u64,
            mac,
        },
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// A new version-2 header with a fresh salt, and the keys it stands for.
fn new_header(master: &MasterKey) -> Result<([u8; HEADER_LEN], FileKeys), BackendError> {
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt).map_err(|_| BackendError::Crypto("random generator failed".into()))?;
    header_with(master, FORMAT_VERSION, salt)
}

fn header_with(
    master: &MasterKey,
    version: u32,
    salt: [u8; SALT_LEN],
) -> Result<([u8; HEADER_LEN], FileKeys), BackendError> {
    let (aead, check_key, chain) = derive_keys(master, &salt)?;
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..CHECKED_HEADER_LEN].copy_from_slice(&salt);
    let check = hmac::sign(&check_key, &h[..CHECKED_HEADER_LEN]);
    h[CHECKED_HEADER_LEN..CHECKED_HEADER_LEN + CHECK_LEN].copy_from_slice(check.as_ref());
    let crc = crc32fast::hash(&h[..HEADER_LEN - 4]);
    h[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    Ok((h, file_keys(aead, chain, &salt, check.as_ref())))
}

/// Validates a header, telling a foreign file, a damaged header, another format version and a
/// wrong master key apart. Returns the file's keys and format version.
fn open_header(h: &[u8; HEADER_LEN], master: &MasterKey) -> Result<(FileKeys, u32), BackendError> {
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
    if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
        return Err(BackendError::Corrupt(format!(
            "vault format version {version} is not supported (this build reads versions \
             {FORMAT_VERSION_1} and {FORMAT_VERSION})"
        )));
    }
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&h[12..CHECKED_HEADER_LEN]);
    let (aead, check_key, chain) = derive_keys(master, &salt)?;
    let check = &h[CHECKED_HEADER_LEN..CHECKED_HEADER_LEN + CHECK_LEN];
    let expected = hmac::sign(&check_key, &h[..CHECKED_HEADER_LEN]);
    constant_time::verify_slices_are_equal(expected.as_ref(), check).map_err(|_| {
        BackendError::Corrupt(
            "the master key does not match this vault (wrong key, or another vault's log)".into(),
        )
    })?;
    Ok((file_keys(aead, chain, &salt, check), version))
}

/// The chain MAC of the frame after `prev` holding `records`.
fn chain_mac(keys: &FileKeys, prev: &Position, records: &[u8]) -> [u8; CHAIN_MAC_LEN] {
    let mut ctx = hmac::Context::with_key(&keys.chain);
    ctx.update(&prev.mac);
    ctx.update(&(prev.frames + 1).to_le_bytes());
    ctx.update(records);
    let mut mac = [0u8; CHAIN_MAC_LEN];
    mac.copy_from_slice(ctx.sign().as_ref());
    mac
}

/// Reserves room for a frame header at the end of `buf`; returns where the frame starts.
pub(crate) fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    start
}

/// Closes the frame that starts at `start` and runs to the end of `buf`: appends its chain MAC
/// and fills in its header. `pos` moves on to the end of this frame.
pub(crate) fn finish_frame(buf: &mut Vec<u8>, start: usize, keys: &FileKeys, pos: &mut Position) {
    let mac = chain_mac(keys, pos, &buf[start + FRAME_HEADER_LEN..]);
    buf.extend_from_slice(&mac);
    let payload = &buf[start + FRAME_HEADER_LEN..];
    // Payloads are bounded by MAX_FRAME_PAYLOAD, far below u32::MAX.
    let len = payload.len() as u32;
    let payload_crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&buf[start..start + 8]);
    buf[start + 8..start + 12].copy_from_slice(&header_crc.to_le_bytes());
    pos.frames += 1;
    pos.mac = mac;
    pos.log_len += (buf.len() - start) as u64;
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
    1 + 1
        + spec_len
        + 4
        + e.meta.len()
        + 1
        + e.material
            .as_ref()
            .map_or(0, |m| SEALED_FIXED_LEN + m.len() + TAG_LEN)
}

/// Bytes an object's record takes in the log, for garbage accounting.
pub(crate) fn record_disk_len(uid: &str, entry: Option<&Entry>) -> u64 {
    (4 + RECORD_FIXED_LEN + uid.len() + NONCE_LEN + entry.map_or(0, entry_plain_len) + TAG_LEN)
        as u64
}

fn material_aad(uid: &str, slot: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(uid.len() + 4);
    a.extend_from_slice(uid.as_bytes());
    a.extend_from_slice(&slot.to_le_bytes());
    a
}

fn dek_key(dek: &Dek) -> Result<LessSafeKey, BackendError> {
    UnboundKey::new(&AES_256_GCM, &dek[..])
        .map(LessSafeKey::new)
        .map_err(|_| BackendError::Crypto("bad data key".into()))
}

/// Serialises an object for encryption, its material sealed under its data key. Callers have
/// checked every field against the MAX_* limits, so the length casts below cannot truncate.
fn encode_entry(uid: &str, e: &Entry) -> Result<Zeroizing<Vec<u8>>, BackendError> {
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
    match (&e.material, &e.key) {
        (None, _) => out.push(0),
        (Some(m), Some(k)) => {
            let mut nonce = [0u8; NONCE_LEN];
            rand::fill(&mut nonce)
                .map_err(|_| BackendError::Crypto("random generator failed".into()))?;
            out.push(1);
            out.extend_from_slice(&k.slot.to_le_bytes());
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&(m.len() as u32).to_le_bytes());
            let body = out.len();
            out.extend_from_slice(m);
            let tag = dek_key(&k.dek)?
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(material_aad(uid, k.slot)),
                    &mut out[body..],
                )
                .map_err(|_| BackendError::Crypto("material encryption failed".into()))?;
            out.extend_from_slice(tag.as_ref());
        }
        (Some(_), None) => {
            return Err(BackendError::Crypto(
                "material without a data key cannot be stored".into(),
            ))
        }
    }
    Ok(out)
}

/// An object's material as a record holds it.
pub(crate) enum StoredMaterial {
    /// Version 1: in the record itself.
    Plain(Zeroizing<Vec<u8>>),
    /// Version 2: encrypted under the data key in `slot`.
    Sealed {
        slot: u32,
        nonce: [u8; NONCE_LEN],
        /// Ciphertext and tag.
        sealed: Vec<u8>,
    },
}

impl StoredMaterial {
    pub(crate) fn slot(&self) -> Option<u32> {
        match self {
            StoredMaterial::Plain(_) => None,
            StoredMaterial::Sealed { slot, .. } => Some(*slot),
        }
    }

    /// The material in clear; `dek` is the data key of its slot (unused for version 1).
    pub(crate) fn open(self, uid: &str, dek: Option<&Dek>) -> Result<Zeroizing<Vec<u8>>, String> {
        match (self, dek) {
            (StoredMaterial::Plain(m), _) => Ok(m),
            (StoredMaterial::Sealed { .. }, None) => Err(format!("{uid} has no data key")),
            (
                StoredMaterial::Sealed {
                    slot,
                    nonce,
                    sealed,
                },
                Some(dek),
            ) => {
                let mut body = Zeroizing::new(sealed);
                let key = dek_key(dek).map_err(|e| e.to_string())?;
                let len = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(material_aad(uid, slot)),
                        &mut body,
                    )
                    .map_err(|_| format!("the material of {uid} fails authentication"))?
                    .len();
                body.truncate(len);
                Ok(body)
            }
        }
    }
}

/// An object as its latest record holds it.
pub(crate) struct StoredEntry {
    pub kind: ObjectKind,
    pub spec: Option<KeySpec>,
    pub meta: Vec<u8>,
    pub material: Option<StoredMaterial>,
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

fn decode_entry(plain: &[u8], version: u32) -> Result<StoredEntry, String> {
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
    let material = match (c.flag()?, version) {
        (false, _) => None,
        (true, FORMAT_VERSION_1) => {
            let len = c.u32()? as usize;
            Some(StoredMaterial::Plain(Zeroizing::new(c.take(len)?.to_vec())))
        }
        (true, _) => {
            let slot = c.u32()?;
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(c.take(NONCE_LEN)?);
            let len = c.u32()? as usize;
            let sealed = c
                .take(len.checked_add(TAG_LEN).ok_or("bad length")?)?
                .to_vec();
            Some(StoredMaterial::Sealed {
                slot,
                nonce,
                sealed,
            })
        }
    };
    if !c.rest.is_empty() {
        return Err("trailing bytes after record body".into());
    }
    Ok(StoredEntry {
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
        Some(e) => encode_entry(uid, e)?,
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
    entry: Option<StoredEntry>,
}

fn open_record<'a>(keys: &FileKeys, rec: &'a [u8], version: u32) -> Result<Record<'a>, String> {
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
        OP_PUT => Some(decode_entry(plain, version)?),
        OP_DELETE if plain.is_empty() => None,
        _ => return Err(format!("record {seq} has unknown operation {op}")),
    };
    Ok(Record { seq, uid, entry })
}

/// A log file read back into memory.
pub(crate) struct Loaded {
    pub keys: FileKeys,
    pub version: u32,
    /// Each live object's latest record, and that record's size in bytes.
    pub objects: HashMap<String, (StoredEntry, u64)>,
    /// Every key slot any record of the log names (live or not).
    pub referenced_slots: HashSet<u32>,
    pub next_seq: u64,
    /// Where the valid log ends (after cutting a torn tail).
    pub end: Position,
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
             (truncate -s {offset}) and accept the result (kmip-gateway vault accept-restore)"
        ));
    }
    Ok(FrameRead::Frame(payload))
}

/// Checks the log's header alone (magic, checksum, version, master key) so that a wrong master
/// key is reported as such before anything else is read with it. A header cut short is left for
/// [`replay`] to report.
pub(crate) fn check_header(
    file: &File,
    path: &Path,
    master: &MasterKey,
) -> Result<(), BackendError> {
    let mut h = [0u8; HEADER_LEN];
    match std::os::unix::fs::FileExt::read_exact_at(file, &mut h, 0) {
        Ok(()) => open_header(&h, master).map(|_| ()).map_err(|e| match e {
            BackendError::Corrupt(m) => BackendError::Corrupt(format!("{}: {m}", path.display())),
            other => other,
        }),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(()),
        Err(e) => Err(io_err(path, e)),
    }
}

/// What the log must agree with when it is opened.
pub(crate) enum Anchor<'a> {
    /// The head file at `path` (`None`: there is none).
    Head {
        state: Option<&'a HeadState>,
        path: &'a Path,
    },
    /// Nothing: the operator is accepting a restored log as it is.
    Unchecked,
}

/// The refusal for a log that lacks what the head says was acknowledged.
fn rolled_back(log: &Path, head: &Path, what: &str) -> BackendError {
    BackendError::Corrupt(format!(
        "{}: {what}. The head {} is updated before every acknowledgement, so this log lacks \
         acknowledged writes (destroys among them): it was cut, or replaced by an older copy. \
         Refusing to open. If the vault was deliberately restored from a backup, accept the \
         restored state with `kmip-gateway vault accept-restore --config <file>`, which \
         re-anchors the head to this log",
        log.display(),
        head.display()
    ))
}

fn describe(p: &Position) -> String {
    format!("{} frames ({} bytes)", p.frames, p.log_len)
}

/// Replays the whole log. A torn tail past the head is cut off (and the cut made durable); any
/// other damage, a log shorter than or different from what the head records, a wrong key or a
/// foreign file is refused without touching the file.
pub(crate) fn replay(
    file: &File,
    path: &Path,
    master: &MasterKey,
    anchor: Anchor<'_>,
) -> Result<Loaded, BackendError> {
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", path.display()));
    let total = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut r = BufReader::with_capacity(REPLAY_BUFFER_BYTES, file);
    let mut h = [0u8; HEADER_LEN];
    if read_full(&mut r, &mut h).map_err(|e| io_err(path, e))? < HEADER_LEN {
        return Err(corrupt(format!(
            "{total} bytes is too short for a vault log header"
        )));
    }
    let (keys, version) = open_header(&h, master).map_err(|e| match e {
        BackendError::Corrupt(m) => corrupt(m),
        other => other,
    })?;
    let chained = version == FORMAT_VERSION;
    // The position the head pins in this file, if the head is checked.
    let mut target: Option<Position> = None;
    // The head's path when a log with frames needs one that is missing.
    let mut missing_head: Option<&Path> = None;
    let mut head_path: Option<&Path> = None;
    if let Anchor::Head { state, path: hp } = anchor {
        head_path = Some(hp);
        match (chained, state) {
            (false, Some(s)) if s.current.is_some() => {
                return Err(rolled_back(
                    path,
                    hp,
                    "this is a version-1 log, but the vault was upgraded to version 2 since",
                ))
            }
            (false, _) => {}
            (true, None) => missing_head = Some(hp),
            (true, Some(s)) => {
                target = [s.current, s.next]
                    .into_iter()
                    .flatten()
                    .find(|p| p.salt == keys.start.salt);
                if target.is_none() {
                    return Err(rolled_back(
                        path,
                        hp,
                        "this log is not the file the head records (another salt: an older \
                         copy from before a compaction, or another vault's log)",
                    ));
                }
            }
        }
    }
    let mut pos = keys.start;
    let mut reached = target.is_none();
    // Checks `pos` against the head's position when it is the same frame count.
    let at_target = |pos: &Position| -> Result<bool, BackendError> {
        match (target, head_path) {
            (Some(t), Some(hp)) if t.frames == pos.frames => {
                if t.mac != pos.mac || t.log_len != pos.log_len {
                    return Err(rolled_back(
                        path,
                        hp,
                        &format!(
                            "frame {} of this log differs from the one the head records \
                             ({} bytes here, {} in the head)",
                            pos.frames, pos.log_len, t.log_len
                        ),
                    ));
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    // Refuses a log that ends before the head's position.
    let short = |pos: &Position, how: &str| -> BackendError {
        match (target, head_path, missing_head) {
            (_, _, Some(hp)) => rolled_back(
                path,
                hp,
                &format!(
                    "the head file is missing but the log {how} after {}",
                    describe(pos)
                ),
            ),
            (Some(t), Some(hp), None) => rolled_back(
                path,
                hp,
                &format!(
                    "the log {how} after {}, but the head records {}",
                    describe(pos),
                    describe(&t)
                ),
            ),
            _ => corrupt(format!("the log {how} after {}", describe(pos))),
        }
    };
    reached |= at_target(&pos)?;
    let mut objects: HashMap<String, (StoredEntry, u64)> = HashMap::new();
    let mut referenced_slots = HashSet::new();
    let mut next_seq = 1u64;
    loop {
        let offset = pos.log_len;
        let mut payload = match read_frame(&mut r, offset).map_err(corrupt)? {
            FrameRead::End => break,
            FrameRead::Torn => {
                if !reached || (missing_head.is_some() && pos.frames > 0) {
                    return Err(short(&pos, "ends in a torn frame"));
                }
                drop(r);
                file.set_len(offset).map_err(|e| io_err(path, e))?;
                file.sync_all().map_err(|e| io_err(path, e))?;
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    cut_bytes = total - offset,
                    frames_past_head = target.map_or(0, |t| pos.frames - t.frames),
                    "cut a torn tail off the vault log: one unfinished frame past the head, \
                     never acknowledged (a write interrupted by a crash)"
                );
                return Ok(Loaded {
                    keys,
                    version,
                    objects,
                    referenced_slots,
                    next_seq,
                    end: pos,
                    torn_bytes: total - offset,
                });
            }
            FrameRead::Frame(p) => p,
        };
        let frame_len = (FRAME_HEADER_LEN + payload.len()) as u64;
        if chained {
            let records_len = payload.len().checked_sub(CHAIN_MAC_LEN).ok_or_else(|| {
                corrupt(format!(
                    "frame at offset {offset} is too short for its chain MAC"
                ))
            })?;
            let expected = chain_mac(&keys, &pos, &payload[..records_len]);
            constant_time::verify_slices_are_equal(&expected, &payload[records_len..]).map_err(
                |_| {
                    corrupt(format!(
                        "frame {} at offset {offset} fails its chain MAC: frames were removed, \
                         reordered, altered or taken from another file",
                        pos.frames + 1
                    ))
                },
            )?;
            payload.truncate(records_len);
            pos.mac = expected;
        }
        let mut at_byte = 0;
        while at_byte < payload.len() {
            let at = offset + (FRAME_HEADER_LEN + at_byte) as u64;
            let rec_len = payload
                .get(at_byte..at_byte + 4)
                .map(le_u32)
                .ok_or_else(|| corrupt(format!("record length cut short at offset {at}")))?
                as usize;
            let rec = payload
                .get(at_byte + 4..at_byte + 4 + rec_len)
                .ok_or_else(|| corrupt(format!("record at offset {at} overruns its frame")))?;
            let record = open_record(&keys, rec, version)
                .map_err(|m| corrupt(format!("record at offset {at}: {m}")))?;
            if record.seq != next_seq {
                return Err(corrupt(format!(
                    "record at offset {at} has sequence {} where {next_seq} was due",
                    record.seq
                )));
            }
            next_seq += 1;
            match record.entry {
                Some(entry) => {
                    referenced_slots.extend(entry.material.as_ref().and_then(|m| m.slot()));
                    objects.insert(record.uid.to_owned(), (entry, 4 + rec_len as u64));
                }
                None => {
                    objects.remove(record.uid).ok_or_else(|| {
                        corrupt(format!(
                            "record at offset {at} deletes an object that does not exist"
                        ))
                    })?;
                }
            }
            at_byte += 4 + rec_len;
        }
        pos.frames += 1;
        pos.log_len += frame_len;
        reached |= at_target(&pos)?;
    }
    if !reached || (missing_head.is_some() && pos.frames > 0) {
        return Err(short(&pos, "ends"));
    }
    if let Some(t) = target.filter(|t| pos.frames > t.frames) {
        tracing::warn!(
            path = %path.display(),
            frames_past_head = pos.frames - t.frames,
            bytes_past_head = pos.log_len - t.log_len,
            "the vault log holds frames past the head: written and synced, but a crash came \
             before they were acknowledged; kept"
        );
    }
    Ok(Loaded {
        keys,
        version,
        objects,
        referenced_slots,
        next_seq,
        end: pos,
        torn_bytes: 0,
    })
}

/// A freshly written log file.
pub(crate) struct FreshLog {
    pub file: File,
    pub keys: FileKeys,
    pub next_seq: u64,
    pub end: Position,
}

/// Writes a complete log holding `objects` to `tmp` and fsyncs it; the caller renames it into
/// place. The returned file is positioned at its end, ready for appends.
pub(crate) fn write_log_file<'a>(
    tmp: &Path,
    master: &MasterKey,
    objects: impl Iterator<Item = (&'a String, &'a Entry)>,
) -> Result<FreshLog, BackendError> {
    let mut file = create_private(tmp)?;
    let (header, keys) = new_header(master)?;
    let mut pos = keys.start;
    let mut buf = Vec::with_capacity(FRAME_TARGET_BYTES + MAX_RECORD_BYTES + CHAIN_MAC_LEN);
    buf.extend_from_slice(&header);
    let mut seq = 1u64;
    let mut frame = begin_frame(&mut buf);
    for (uid, entry) in objects {
        seal_record(&keys, seq, uid, Some(entry), &mut buf)?;
        seq += 1;
        if buf.len() - frame - FRAME_HEADER_LEN >= FRAME_TARGET_BYTES {
            finish_frame(&mut buf, frame, &keys, &mut pos);
            file.write_all(&buf).map_err(|e| io_err(tmp, e))?;
            buf.clear();
            frame = begin_frame(&mut buf);
        }
    }
    if buf.len() > frame + FRAME_HEADER_LEN {
        finish_frame(&mut buf, frame, &keys, &mut pos);
    } else {
        buf.truncate(frame);
    }
    file.write_all(&buf).map_err(|e| io_err(tmp, e))?;
    file.sync_all().map_err(|e| io_err(tmp, e))?;
    Ok(FreshLog {
        file,
        keys,
        next_seq: seq,
        end: pos,
    })
}

/// Every plaintext anyone holding the master key can recover from the files in `dir`: each
/// record of any log file there (version 1 or 2) decrypted, and each version-2 material whose
/// key slot still unwraps. Tests use it to show destroyed material is gone.
#[cfg(test)]
pub(crate) fn recoverable_plaintexts(dir: &Path, master: &MasterKey) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut sealed = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        let Some(h) = bytes.get(..HEADER_LEN) else {
            continue;
        };
        let Ok((keys, version)) = open_header(h.try_into().unwrap(), master) else {
            continue;
        };
        let mut at = HEADER_LEN;
        while at + FRAME_HEADER_LEN <= bytes.len() {
            let len = le_u32(&bytes[at..]) as usize;
            let payload =
                &bytes[at + FRAME_HEADER_LEN..(at + FRAME_HEADER_LEN + len).min(bytes.len())];
            let mut pos = 0;
            while let Some(rl) = payload.get(pos..pos + 4).map(le_u32) {
                let Some(rec) = payload.get(pos + 4..pos + 4 + rl as usize) else {
                    break;
                };
                if let Ok(Record {
                    uid,
                    entry: Some(e),
                    ..
                }) = open_record(&keys, rec, version)
                {
                    out.push(e.meta.clone());
                    match e.material {
                        Some(StoredMaterial::Plain(m)) => out.push(m.to_vec()),
                        Some(m) => sealed.push((uid.to_owned(), m)),
                        None => {}
                    }
                }
                pos += 4 + rl as usize;
            }
            at += FRAME_HEADER_LEN + len;
        }
    }
    if let Ok(slots) = super::slots::KeySlots::open(dir, master) {
        for (uid, m) in sealed {
            let Some(slot) = m.slot() else { continue };
            if let Ok(dek) = slots.unwrap(slot, &uid) {
                if let Ok(plain) = m.open(&uid, Some(&dek)) {
                    out.push(plain.to_vec());
                }
            }
        }
    }
    out
}
