//! The chain head: where the vault log ended at the last acknowledged commit, kept outside the
//! data folder (next to the master key) so that a copy of the data folder cannot roll it back.
//!
//! ```text
//! file     = copy[0] copy[1]                                        (512 bytes each)
//! copy     = magic[8] version:u32 counter:u64 current next mac[32]  (rest of the 512 zero)
//! current  = 0 | 1 position          next = 0 | 1 position
//! position = salt[32] frames:u64 log_len:u64 mac[32]
//! ```
//!
//! `mac` is HMAC-SHA256 under a key derived from the master key over everything before it. An
//! update writes the copy the counter's parity names and fdatasyncs, so a write torn by a crash
//! leaves the other copy, one step older, valid. `current` is the log the vault last
//! acknowledged; `next` a log that is about to replace it (compaction, upgrade, creation): until
//! the head is updated again, either is accepted.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::{constant_time, hkdf, hmac};

use super::files::{create_private, io_err, sync_dir};
use super::keyfile::MasterKey;
use crate::BackendError;

/// The head's file name when it sits beside the master key.
pub const HEAD_FILE: &str = "vault.head";
const MAGIC: [u8; 8] = *b"KMIPVHD\0";
const VERSION: u32 = 1;
/// One copy per 512-byte sector, so a torn write of one never touches the other.
const COPY_LEN: usize = 512;
const POSITION_LEN: usize = 32 + 8 + 8 + 32;
const MAC_LEN: usize = 32;
const SIGNED_LEN: usize = 8 + 4 + 8 + 2 * (1 + POSITION_LEN);
const HKDF_INFO_HEAD_KEY: &[u8] = b"kmip-gateway vault v2 chain head";

/// A point in one log file: which file (its salt), how many frames, how many bytes, and the
/// chain MAC of the last frame (the header's check value when there are none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub salt: [u8; 32],
    pub frames: u64,
    pub log_len: u64,
    pub mac: [u8; 32],
}

/// What the head says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadState {
    pub counter: u64,
    /// The log last acknowledged; `None` before the first v2 log is in place.
    pub current: Option<Position>,
    /// A log about to replace `current`.
    pub next: Option<Position>,
}

/// The open head file.
pub(crate) struct Head {
    file: File,
    path: PathBuf,
    key: hmac::Key,
    pub state: HeadState,
}

fn head_key(master: &MasterKey) -> Result<hmac::Key, BackendError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(&master[..]);
    let okm = prk
        .expand(&[HKDF_INFO_HEAD_KEY], hmac::HMAC_SHA256)
        .map_err(|_| BackendError::Crypto("key derivation failed".into()))?;
    Ok(hmac::Key::from(okm))
}

fn put_position(out: &mut Vec<u8>, p: Option<&Position>) {
    match p {
        None => out.extend_from_slice(&[0u8; 1 + POSITION_LEN]),
        Some(p) => {
            out.push(1);
            out.extend_from_slice(&p.salt);
            out.extend_from_slice(&p.frames.to_le_bytes());
            out.extend_from_slice(&p.log_len.to_le_bytes());
            out.extend_from_slice(&p.mac);
        }
    }
}

fn get_position(b: &[u8]) -> Option<Position> {
    if b[0] == 0 {
        return None;
    }
    let mut p = Position {
        salt: [0; 32],
        frames: 0,
        log_len: 0,
        mac: [0; 32],
    };
    p.salt.copy_from_slice(&b[1..33]);
    p.frames = u64::from_le_bytes(b[33..41].try_into().unwrap_or_default());
    p.log_len = u64::from_le_bytes(b[41..49].try_into().unwrap_or_default());
    p.mac.copy_from_slice(&b[49..81]);
    Some(p)
}

fn encode(key: &hmac::Key, s: &HeadState) -> Vec<u8> {
    let mut out = Vec::with_capacity(COPY_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&s.counter.to_le_bytes());
    put_position(&mut out, s.current.as_ref());
    put_position(&mut out, s.next.as_ref());
    let mac = hmac::sign(key, &out);
    out.extend_from_slice(mac.as_ref());
    out.resize(COPY_LEN, 0);
    out
}

fn decode(key: &hmac::Key, b: &[u8]) -> Option<HeadState> {
    let b = b.get(..SIGNED_LEN + MAC_LEN)?;
    if b[..8] != MAGIC || b[8..12] != VERSION.to_le_bytes() {
        return None;
    }
    let expected = hmac::sign(key, &b[..SIGNED_LEN]);
    constant_time::verify_slices_are_equal(expected.as_ref(), &b[SIGNED_LEN..]).ok()?;
    Some(HeadState {
        counter: u64::from_le_bytes(b[12..20].try_into().ok()?),
        current: get_position(&b[20..20 + 1 + POSITION_LEN]),
        next: get_position(&b[20 + 1 + POSITION_LEN..SIGNED_LEN]),
    })
}

impl Head {
    /// Reads the head at `path`; `None` when there is no file.
    pub(crate) fn load(path: &Path, master: &MasterKey) -> Result<Option<Head>, BackendError> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path, e)),
        };
        let key = head_key(master)?;
        let mut copies = Vec::new();
        for i in 0..2 {
            let mut b = vec![0u8; COPY_LEN];
            let n = file
                .read_at(&mut b, (i * COPY_LEN) as u64)
                .map_err(|e| io_err(path, e))?;
            copies.extend(decode(&key, &b[..n]));
        }
        let state = copies
            .into_iter()
            .max_by_key(|s| s.counter)
            .ok_or_else(|| {
                BackendError::Corrupt(format!(
                    "vault head {} is damaged or was written under another master key (no copy \
                 authenticates)",
                    path.display()
                ))
            })?;
        Ok(Some(Head {
            file,
            path: path.to_path_buf(),
            key,
            state,
        }))
    }

    /// Creates a head file holding `state` (both copies), durably, replacing any old one.
    pub(crate) fn create(
        path: &Path,
        master: &MasterKey,
        current: Option<Position>,
        next: Option<Position>,
    ) -> Result<Head, BackendError> {
        let key = head_key(master)?;
        let state = HeadState {
            counter: 1,
            current,
            next,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err(dir, e))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let mut file = create_private(&tmp)?;
        let copy = encode(&key, &state);
        file.write_all(&copy)
            .and_then(|()| file.write_all(&copy))
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        sync_dir(dir)?;
        Ok(Head {
            file,
            path: path.to_path_buf(),
            key,
            state,
        })
    }

    /// Records a new state: writes the older copy in place and fdatasyncs.
    pub(crate) fn store(
        &mut self,
        current: Option<Position>,
        next: Option<Position>,
    ) -> Result<(), BackendError> {
        let state = self.write(current, next)?;
        self.sync(state)
    }

    /// Writes the next state where readers of the file see it, not yet durable; [`Head::sync`]
    /// makes it so and this head's state.
    pub(crate) fn write(
        &mut self,
        current: Option<Position>,
        next: Option<Position>,
    ) -> Result<HeadState, BackendError> {
        let state = HeadState {
            counter: self.state.counter + 1,
            current,
            next,
        };
        let at = (state.counter % 2) * COPY_LEN as u64;
        self.file
            .write_all_at(&encode(&self.key, &state), at)
            .map_err(|e| io_err(&self.path, e))?;
        Ok(state)
    }

    /// Makes `written` (what [`Head::write`] wrote) durable and this head's state.
    pub(crate) fn sync(&mut self, written: HeadState) -> Result<(), BackendError> {
        self.file.sync_data().map_err(|e| io_err(&self.path, e))?;
        self.state = written;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `current`/`next` into the head at `path`, creating it if there is none yet.
pub(crate) fn store_or_create(
    head: Option<Head>,
    path: &Path,
    master: &MasterKey,
    current: Option<Position>,
    next: Option<Position>,
) -> Result<Head, BackendError> {
    match head {
        Some(mut h) => {
            h.store(current, next)?;
            Ok(h)
        }
        None => Head::create(path, master, current, next),
    }
}
