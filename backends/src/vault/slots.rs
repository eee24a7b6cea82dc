//! The key-slot file: one fixed-size slot per object's data key (DEK), overwritten with zeros in
//! place when the object is destroyed, so its material (encrypted under that DEK in the log)
//! can no longer be decrypted by anyone, master key or not.
//!
//! ```text
//! file   = header slot*
//! header = magic[8] version:u32 salt[32] crc32:u32 zero[16]            (64 bytes)
//! slot   = nonce[12] wrapped_dek[32] tag[16] zero[4]                    (64 bytes; all zero = empty)
//! ```
//!
//! A DEK is wrapped with AES-256-GCM under HKDF-SHA256(master key, salt); the AAD is the slot
//! index and the object's uid, so a slot cannot be moved or claimed by another object. Slots
//! are 64 bytes at 64-byte offsets: one never straddles a 512-byte sector, so a slot write is
//! all-or-nothing under the same assumption the log makes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{hkdf, rand};
use zeroize::Zeroizing;

use super::files::{create_private, io_err, sync_dir};
use super::keyfile::MasterKey;
use crate::BackendError;

/// The slot file's name inside the vault directory.
pub(crate) const KEYS_FILE: &str = "vault.keys";
/// Where a new slot file is written before it replaces the old one (upgrade from version 1).
pub(crate) const TMP_KEYS_FILE: &str = "vault.keys.new";
const MAGIC: [u8; 8] = *b"KMIPVKS\0";
const VERSION: u32 = 1;
pub(crate) const SLOT_LEN: usize = 64;
/// Length of a data key: AES-256.
pub(crate) const DEK_LEN: usize = 32;
const TAG_LEN: usize = 16;
const HKDF_INFO_WRAP_KEY: &[u8] = b"kmip-gateway vault v2 key slot wrap";
/// Most slots a file may hold: bounds the free list and the slot file (256 MiB) against a
/// damaged or hostile length.
pub(crate) const MAX_SLOTS: u32 = 1 << 22;

/// A data key, wiped from memory when dropped.
pub(crate) type Dek = Zeroizing<[u8; DEK_LEN]>;

pub(crate) struct KeySlots {
    file: File,
    path: PathBuf,
    wrap: LessSafeKey,
    /// Slots in the file (the next new one gets this index).
    pub len: u32,
    /// Every slot, read at once while the vault opens ([`KeySlots::preload`]): one read instead
    /// of one per object. At most `MAX_SLOTS` slots (256 MiB); dropped on any write.
    preloaded: Option<Vec<u8>>,
}

/// How many objects a vault whose slot file is this long probably holds (each object with
/// material has a slot; freed slots are few): a capacity hint for the replay, at most
/// [`MAX_SLOTS`], 0 when there is no slot file.
pub(crate) fn count_hint(dir: &Path) -> usize {
    std::fs::metadata(dir.join(KEYS_FILE)).map_or(0, |m| {
        let slots = (m.len() / SLOT_LEN as u64).saturating_sub(1);
        slots.min(u64::from(MAX_SLOTS)) as usize
    })
}

fn wrap_key(master: &MasterKey, salt: &[u8]) -> Result<LessSafeKey, BackendError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&master[..]);
    let okm = prk
        .expand(&[HKDF_INFO_WRAP_KEY], &AES_256_GCM)
        .map_err(|_| BackendError::Crypto("key derivation failed".into()))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

fn aad(index: u32, uid: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(4 + uid.len());
    a.extend_from_slice(&index.to_le_bytes());
    a.extend_from_slice(uid.as_bytes());
    a
}

pub(crate) fn new_dek() -> Result<Dek, BackendError> {
    let mut dek: Dek = Zeroizing::new([0u8; DEK_LEN]);
    rand::fill(&mut dek[..]).map_err(|_| BackendError::Crypto("random generator failed".into()))?;
    Ok(dek)
}

impl KeySlots {
    /// Writes a slot file holding `slots` (index, uid, DEK) beside its final name, makes it
    /// durable and renames it into place.
    pub(crate) fn create(
        dir: &Path,
        master: &MasterKey,
        slots: &[(u32, &str, &Dek)],
    ) -> Result<KeySlots, BackendError> {
        let tmp = dir.join(TMP_KEYS_FILE);
        let path = dir.join(KEYS_FILE);
        let mut salt = [0u8; 32];
        rand::fill(&mut salt)
            .map_err(|_| BackendError::Crypto("random generator failed".into()))?;
        let mut header = Vec::with_capacity(SLOT_LEN);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&salt);
        header.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
        header.resize(SLOT_LEN, 0);
        let mut file = create_private(&tmp)?;
        file.write_all(&header).map_err(|e| io_err(&tmp, e))?;
        let mut slots_file = KeySlots {
            file,
            path: tmp.clone(),
            wrap: wrap_key(master, &salt)?,
            len: 0,
            preloaded: None,
        };
        for (index, uid, dek) in slots {
            let sealed = slots_file.seal(*index, uid, dek)?;
            slots_file.write(*index, &sealed)?;
        }
        slots_file.file.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        sync_dir(dir)?;
        slots_file.path = path;
        Ok(slots_file)
    }

    pub(crate) fn open(dir: &Path, master: &MasterKey) -> Result<KeySlots, BackendError> {
        let path = dir.join(KEYS_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let corrupt = |what: &str| BackendError::Corrupt(format!("{}: {what}", path.display()));
        let mut header = [0u8; SLOT_LEN];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| corrupt("too short for a key slot file header"))?;
        if header[..8] != MAGIC || header[8..12] != VERSION.to_le_bytes() {
            return Err(corrupt("not a version-1 key slot file"));
        }
        if crc32fast::hash(&header[..44]).to_le_bytes() != header[44..48] {
            return Err(corrupt(
                "key slot file header is damaged (checksum mismatch)",
            ));
        }
        let size = file.metadata().map_err(|e| io_err(&path, e))?.len();
        // A slot cut short by a crash was never referenced (slots are synced before the log
        // record naming them): it is overwritten when its index is next handed out.
        let slots =
            (size.saturating_sub(SLOT_LEN as u64) / SLOT_LEN as u64).min(u64::from(MAX_SLOTS));
        Ok(KeySlots {
            file,
            wrap: wrap_key(master, &header[12..44])?,
            path,
            len: slots as u32,
            preloaded: None,
        })
    }

    fn offset(index: u32) -> u64 {
        (u64::from(index) + 1) * SLOT_LEN as u64
    }

    /// Reads every slot into memory, for the reads of an open (wrapped keys: nothing in clear).
    pub(crate) fn preload(&mut self) -> Result<(), BackendError> {
        let mut all = vec![0u8; self.len as usize * SLOT_LEN];
        self.file
            .read_exact_at(&mut all, Self::offset(0))
            .map_err(|e| io_err(&self.path, e))?;
        self.preloaded = Some(all);
        Ok(())
    }

    /// Drops what [`KeySlots::preload`] read.
    pub(crate) fn forget_preload(&mut self) {
        self.preloaded = None;
    }

    /// The slot's bytes; a slot past the end reads as empty.
    pub(crate) fn read(&self, index: u32) -> Result<[u8; SLOT_LEN], BackendError> {
        let mut b = [0u8; SLOT_LEN];
        if let Some(all) = &self.preloaded {
            let at = index as usize * SLOT_LEN;
            if let Some(slot) = all.get(at..at + SLOT_LEN) {
                b.copy_from_slice(slot);
            }
            return Ok(b);
        }
        if index < self.len {
            self.file
                .read_exact_at(&mut b, Self::offset(index))
                .map_err(|e| io_err(&self.path, e))?;
        }
        Ok(b)
    }

    pub(crate) fn seal(
        &self,
        index: u32,
        uid: &str,
        dek: &Dek,
    ) -> Result<[u8; SLOT_LEN], BackendError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce)
            .map_err(|_| BackendError::Crypto("random generator failed".into()))?;
        let mut out = [0u8; SLOT_LEN];
        out[..NONCE_LEN].copy_from_slice(&nonce);
        out[NONCE_LEN..NONCE_LEN + DEK_LEN].copy_from_slice(&dek[..]);
        let tag = self
            .wrap
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(index, uid)),
                &mut out[NONCE_LEN..NONCE_LEN + DEK_LEN],
            )
            .map_err(|_| BackendError::Crypto("key wrapping failed".into()))?;
        out[NONCE_LEN + DEK_LEN..NONCE_LEN + DEK_LEN + TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The DEK in slot `index` for `uid`; an error says why not (empty, or not authentic).
    pub(crate) fn unwrap(&self, index: u32, uid: &str) -> Result<Dek, String> {
        let slot = self.read(index).map_err(|e| e.to_string())?;
        if slot.iter().all(|&b| b == 0) {
            return Err(format!("key slot {index} is empty"));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&slot[..NONCE_LEN]);
        let mut body = Zeroizing::new(slot[NONCE_LEN..NONCE_LEN + DEK_LEN + TAG_LEN].to_vec());
        let plain = self
            .wrap
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(index, uid)),
                &mut body,
            )
            .map_err(|_| format!("key slot {index} fails authentication for {uid}"))?;
        let mut dek: Dek = Zeroizing::new([0u8; DEK_LEN]);
        dek.copy_from_slice(plain);
        Ok(dek)
    }

    /// Writes a slot in place (no sync: see [`KeySlots::sync`]).
    pub(crate) fn write(&mut self, index: u32, bytes: &[u8; SLOT_LEN]) -> Result<(), BackendError> {
        self.preloaded = None;
        self.file
            .write_all_at(bytes, Self::offset(index))
            .map_err(|e| io_err(&self.path, e))?;
        self.len = self.len.max(index + 1);
        Ok(())
    }

    pub(crate) fn zero(&mut self, index: u32) -> Result<(), BackendError> {
        self.write(index, &[0u8; SLOT_LEN])
    }

    /// fdatasync: slot writes (and a grown size) are durable when it returns.
    pub(crate) fn sync(&self) -> Result<(), BackendError> {
        self.file.sync_data().map_err(|e| io_err(&self.path, e))
    }
}
