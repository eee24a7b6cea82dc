//! The vault log's on-disk format: layout constants, per-file keys, header, chained frames, and
//! writing a whole log file; records are in `record.rs`, reading a log back in `replay.rs`.
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

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::Path;

use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{constant_time, hkdf, hmac, rand};

use super::files::{create_private, io_err};
use super::head::Position;
use super::keyfile::MasterKey;
use super::Entry;
use crate::BackendError;

mod record;
mod replay;

#[cfg(test)]
pub(crate) use record::recoverable_plaintexts;
pub(crate) use record::{record_disk_len, seal_record, StoredEntry};
pub(crate) use replay::{replay, Anchor, Loaded};

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
    objects: impl Iterator<Item = (&'a str, &'a Entry)>,
) -> Result<FreshLog, BackendError> {
    let mut file = create_private(tmp)?;
    let (header, keys) = new_header(master)?;
    file.write_all(&header).map_err(|e| io_err(tmp, e))?;
    let mut log = FreshLog {
        file,
        end: keys.start,
        keys,
        next_seq: 1,
    };
    log.append(tmp, objects.map(|(uid, entry)| (uid, Some(entry))))?;
    log.file.sync_all().map_err(|e| io_err(tmp, e))?;
    Ok(log)
}

impl FreshLog {
    /// Appends `records` (an object's state, or `None`: its removal) in frames of about
    /// [`FRAME_TARGET_BYTES`], without syncing.
    pub(crate) fn append<'a>(
        &mut self,
        path: &Path,
        records: impl Iterator<Item = (&'a str, Option<&'a Entry>)>,
    ) -> Result<(), BackendError> {
        let mut buf = Vec::with_capacity(FRAME_TARGET_BYTES + MAX_RECORD_BYTES + CHAIN_MAC_LEN);
        let mut frame = begin_frame(&mut buf);
        for (uid, entry) in records {
            seal_record(&self.keys, self.next_seq, uid, entry, &mut buf)?;
            self.next_seq += 1;
            if buf.len() - frame - FRAME_HEADER_LEN >= FRAME_TARGET_BYTES {
                finish_frame(&mut buf, frame, &self.keys, &mut self.end);
                self.file.write_all(&buf).map_err(|e| io_err(path, e))?;
                buf.clear();
                frame = begin_frame(&mut buf);
            }
        }
        if buf.len() > frame + FRAME_HEADER_LEN {
            finish_frame(&mut buf, frame, &self.keys, &mut self.end);
            self.file.write_all(&buf).map_err(|e| io_err(path, e))?;
        }
        Ok(())
    }
}
