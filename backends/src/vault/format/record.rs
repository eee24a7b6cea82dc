//! A log record: an object (kind, key spec, metadata, material sealed under its data key)
//! encoded and encrypted under the file's record key, and read back.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand;
use zeroize::{Zeroize, Zeroizing};

use super::{
    le_u32, FileKeys, FORMAT_VERSION_1, OP_DELETE, OP_PUT, RECORD_FIXED_LEN, SEALED_FIXED_LEN,
    TAG_LEN,
};
use crate::vault::slots::Dek;
use crate::vault::Entry;
use crate::{BackendError, KeyAlgorithm, KeySpec, ObjectKind};

fn algorithm_code(a: KeyAlgorithm) -> u8 {
    match a {
        KeyAlgorithm::Aes => 1,
        KeyAlgorithm::HmacSha256 => 2,
        KeyAlgorithm::TripleDes => 3,
        KeyAlgorithm::ChaCha20 => 4,
    }
}

fn algorithm_from_code(code: u8) -> Option<KeyAlgorithm> {
    match code {
        1 => Some(KeyAlgorithm::Aes),
        2 => Some(KeyAlgorithm::HmacSha256),
        3 => Some(KeyAlgorithm::TripleDes),
        4 => Some(KeyAlgorithm::ChaCha20),
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
    pub meta: bytes::Bytes,
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
    // Its own exact-size buffer, not a slice of the frame: the object keeps it for its life.
    let meta = bytes::Bytes::copy_from_slice(c.take(meta_len)?);
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

/// A record whose ciphertext was opened in place: its buffer now holds the plaintext at
/// `plain`.
pub(super) struct Unsealed {
    pub(super) seq: u64,
    op: u8,
    /// Where the uid is in the buffer.
    uid: std::ops::Range<usize>,
    plain: std::ops::Range<usize>,
}

impl Unsealed {
    pub(super) fn uid<'a>(&self, rec: &'a [u8]) -> Result<&'a str, String> {
        std::str::from_utf8(&rec[self.uid.clone()]).map_err(|_| "uid is not UTF-8".into())
    }

    /// The object the record puts, or `None` for a deletion.
    pub(super) fn entry(&self, rec: &[u8], version: u32) -> Result<Option<StoredEntry>, String> {
        let plain = &rec[self.plain.clone()];
        match self.op {
            OP_PUT => Ok(Some(decode_entry(plain, version)?)),
            OP_DELETE if plain.is_empty() => Ok(None),
            op => Err(format!("record {} has unknown operation {op}", self.seq)),
        }
    }
}

/// Authenticates and decrypts one record (its bytes after the length) where it lies.
pub(super) fn unseal(keys: &FileKeys, rec: &mut [u8]) -> Result<Unsealed, String> {
    let mut c = Cursor { rest: rec };
    let seq = c.u64()?;
    let op = c.u8()?;
    let uid_len = usize::from(c.u16()?);
    // The uid is authenticated as part of the AAD; `Unsealed::uid` checks it is UTF-8.
    c.take(uid_len)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(c.take(NONCE_LEN)?);
    if c.rest.len() < TAG_LEN {
        return Err("record too short for its tag".into());
    }
    let aad_len = RECORD_FIXED_LEN + uid_len;
    let (head, body) = rec.split_at_mut(aad_len + NONCE_LEN);
    let plain_len = keys
        .aead
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&head[..aad_len]),
            body,
        )
        .map_err(|_| format!("record {seq} fails authentication"))?
        .len();
    let plain_at = aad_len + NONCE_LEN;
    Ok(Unsealed {
        seq,
        op,
        uid: RECORD_FIXED_LEN..aad_len,
        plain: plain_at..plain_at + plain_len,
    })
}

/// Every plaintext anyone holding the master key can recover from the files in `dir`: each
/// record of any log file there (version 1 or 2) decrypted, and each version-2 material whose
/// key slot still unwraps. Tests use it to show destroyed material is gone.
#[cfg(test)]
pub(crate) fn recoverable_plaintexts(
    dir: &std::path::Path,
    master: &crate::vault::keyfile::MasterKey,
) -> Vec<Vec<u8>> {
    use super::{open_header, FRAME_HEADER_LEN, HEADER_LEN};
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
                let mut rec = rec.to_vec();
                let opened = unseal(&keys, &mut rec).and_then(|u| {
                    let uid = u.uid(&rec)?.to_owned();
                    Ok(u.entry(&rec, version)?.map(|e| (uid, e)))
                });
                rec.zeroize();
                if let Ok(Some((uid, e))) = opened {
                    out.push(e.meta.to_vec());
                    match e.material {
                        Some(StoredMaterial::Plain(m)) => out.push(m.to_vec()),
                        Some(m) => sealed.push((uid, m)),
                        None => {}
                    }
                }
                pos += 4 + rl as usize;
            }
            at += FRAME_HEADER_LEN + len;
        }
    }
    if let Ok(slots) = crate::vault::slots::KeySlots::open(dir, master) {
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
