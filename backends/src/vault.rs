//! The encrypted file vault: every object lives in memory and in an append-only, AES-256-GCM
//! encrypted log in one directory. See `backends/README.md` for the format and the durability
//! argument.

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::{
    Backend, BackendError, CipherOutput, CipherRequest, KeyAlgorithm, KeySpec, ObjectKind,
    ObjectRecord,
};

mod cipher;
mod format;
mod keyfile;
#[cfg(test)]
mod tests;
mod writer;

pub use format::{MAX_LABEL_BYTES, MAX_MATERIAL_BYTES, MAX_META_BYTES, MAX_UID_BYTES};
pub use keyfile::{HexSecret, MasterKeySource, DEFAULT_KEY_FILE, MASTER_KEY_LEN};

use writer::{Mutation, Request, Writer};

/// The advisory lock file that keeps two processes from writing one vault.
const LOCK_FILE: &str = "vault.lock";
/// Requests queued for the writer before callers wait for room: backpressure, and a bound on
/// the memory queued plaintext can take.
const WRITE_QUEUE_DEPTH: usize = 4096;
/// Smallest HMAC-SHA256 key generated (bits): below this a MAC key is weaker than the tag.
const HMAC_MIN_BITS: u32 = 128;
/// Largest HMAC-SHA256 key generated (bits): one SHA-256 block; longer keys are hashed anyway.
const HMAC_MAX_BITS: u32 = 512;
/// AES key lengths (bits).
const AES_BITS: [u32; 3] = [128, 192, 256];

/// One stored object, decrypted, as held in memory.
pub(crate) struct Entry {
    pub kind: ObjectKind,
    /// How the key was made or declared; `None` for imported objects without a key spec.
    pub spec: Option<KeySpec>,
    pub meta: Vec<u8>,
    /// `None` once destroyed with a tombstone: the metadata stays, the material is gone.
    pub material: Option<Zeroizing<Vec<u8>>>,
}

/// State shared by the vault handle (readers) and its writer thread (the only mutator).
pub(crate) struct Shared {
    objects: RwLock<HashMap<String, Entry>>,
    /// Set when the writer stopped on an I/O failure.
    failed: AtomicBool,
    commits: AtomicU64,
    records: AtomicU64,
    compactions: AtomicU64,
    log_bytes: AtomicU64,
    live_bytes: AtomicU64,
    torn_tail_bytes: u64,
}

impl Shared {
    // A panic while holding the lock cannot leave the map half-updated (every update is one
    // insert or remove), so a poisoned lock is still usable.
    fn read_objects(&self) -> RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_objects(&self) -> RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.objects.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultStats {
    /// Live objects.
    pub objects: usize,
    /// Size of the log file.
    pub log_bytes: u64,
    /// Bytes of the log the live objects' latest records take; the rest is garbage.
    pub live_bytes: u64,
    /// Group commits (one append + fdatasync each) since open.
    pub commits: u64,
    /// Records written by those commits.
    pub records: u64,
    /// Compactions since open.
    pub compactions: u64,
    /// Bytes of torn tail (an unacknowledged write cut short by a crash) cut off at open.
    pub torn_tail_bytes: u64,
}

/// The encrypted file vault backend.
pub struct Vault {
    shared: Arc<Shared>,
    /// `None` only while dropping, to close the queue before joining the writer.
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

/// An I/O error that names the file it happened on.
pub(crate) fn io_err(path: &Path, e: std::io::Error) -> BackendError {
    BackendError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// Makes a directory's entries (a created or renamed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackendError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

impl Vault {
    /// Opens the vault in `dir`, creating directory, key file and log on first start.
    ///
    /// Replays the whole log into memory; refuses a log that is damaged (other than a torn tail
    /// left by a crash, which is cut off), foreign, of another format version, or written under
    /// another master key. Blocking: call it before starting the runtime or via
    /// `spawn_blocking`.
    pub fn open(dir: &Path, master_key: MasterKeySource) -> Result<Vault, BackendError> {
        let started = Instant::now();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err(dir, e))?;
        let lock = lock_dir(dir)?;
        let log_path = dir.join(format::LOG_FILE);
        let vault_exists = match std::fs::symlink_metadata(&log_path) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&log_path, e)),
        };
        let master = keyfile::load(dir, &master_key, vault_exists)?;
        // A leftover of a compaction that crashed before its rename: never authoritative.
        let tmp = dir.join(format::TMP_LOG_FILE);
        match std::fs::remove_file(&tmp) {
            Ok(()) => tracing::info!(path = %tmp.display(), "removed an unfinished compaction"),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp, e)),
        }

        let (file, keys, next_seq, file_len, live_bytes, torn_tail_bytes, objects) = if vault_exists
        {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&log_path)
                .map_err(|e| io_err(&log_path, e))?;
            let loaded = format::replay(&file, &log_path, &master)?;
            (
                file,
                loaded.keys,
                loaded.next_seq,
                loaded.file_len,
                loaded.live_bytes,
                loaded.torn_bytes,
                loaded.objects,
            )
        } else {
            let fresh = format::create_log(dir, &master)?;
            tracing::info!(dir = %dir.display(), "created a new vault");
            (
                fresh.file,
                fresh.keys,
                fresh.next_seq,
                fresh.file_len,
                fresh.file_len,
                0,
                HashMap::new(),
            )
        };
        let mut file = file;
        file.seek(SeekFrom::Start(file_len))
            .map_err(|e| io_err(&log_path, e))?;

        let objects_count = objects.len();
        let shared = Arc::new(Shared {
            objects: RwLock::new(objects),
            failed: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            log_bytes: AtomicU64::new(file_len),
            live_bytes: AtomicU64::new(live_bytes),
            torn_tail_bytes,
        });
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let writer = Writer {
            dir: dir.to_path_buf(),
            master,
            file,
            keys,
            next_seq,
            file_len,
            live_bytes,
            shared: Arc::clone(&shared),
            rx,
            _lock: lock,
        };
        let handle = std::thread::Builder::new()
            .name("vault-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| {
                BackendError::Unavailable(format!("cannot start the vault writer: {e}"))
            })?;
        tracing::info!(
            dir = %dir.display(),
            objects = objects_count,
            log_bytes = file_len,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened the vault"
        );
        Ok(Vault {
            shared,
            tx: Some(tx),
            writer: Some(handle),
        })
    }

    /// Current counters.
    pub fn stats(&self) -> VaultStats {
        VaultStats {
            objects: self.shared.read_objects().len(),
            log_bytes: self.shared.log_bytes.load(Ordering::Relaxed),
            live_bytes: self.shared.live_bytes.load(Ordering::Relaxed),
            commits: self.shared.commits.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
            compactions: self.shared.compactions.load(Ordering::Relaxed),
            torn_tail_bytes: self.shared.torn_tail_bytes,
        }
    }

    /// Rewrites the log with only live objects now (it also happens on its own once the log is
    /// mostly garbage).
    pub async fn compact(&self) -> Result<(), BackendError> {
        self.submit(Mutation::Compact).await
    }

    async fn submit(&self, mutation: Mutation) -> Result<(), BackendError> {
        let gone = || BackendError::Unavailable("the vault writer has stopped".into());
        let tx = self.tx.as_ref().ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        tx.send(Request { mutation, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Runs `f` on the object `uid` under the read lock.
    fn with_entry<T>(
        &self,
        uid: &str,
        f: impl FnOnce(&Entry) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let objects = self.shared.read_objects();
        let entry = objects
            .get(uid)
            .ok_or_else(|| BackendError::NotFound(uid.to_owned()))?;
        f(entry)
    }

    /// A copy of the key `uid` if it may be used for `algorithm`.
    fn usable_key(
        &self,
        uid: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.with_entry(uid, |e| {
            let declared = e.spec.as_ref().map(|s| s.algorithm);
            if e.kind != ObjectKind::SymmetricKey || declared.is_some_and(|a| a != algorithm) {
                return Err(BackendError::InvalidInput(format!(
                    "object {uid} is not a {} key",
                    match algorithm {
                        KeyAlgorithm::Aes => "AES",
                        KeyAlgorithm::HmacSha256 => "HMAC-SHA256",
                    }
                )));
            }
            material(uid, e)
        })
    }
}

/// A copy of an object's material; a destroyed object's is gone.
fn material(uid: &str, e: &Entry) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    e.material
        .clone()
        .ok_or_else(|| BackendError::NotFound(uid.to_owned()))
}

impl Drop for Vault {
    /// Closes the queue and waits for the writer to finish (at most a compaction), so the
    /// directory lock is released when the handle is gone and a reopen cannot race it.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!("the vault writer thread panicked");
            }
        }
    }
}

fn lock_dir(dir: &Path) -> Result<File, BackendError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(BackendError::Unavailable(format!(
            "vault {} is in use by another process",
            dir.display()
        ))),
        Err(TryLockError::Error(e)) => Err(io_err(&path, e)),
    }
}

fn check_record(record: &ObjectRecord) -> Result<(), BackendError> {
    if record.uid.is_empty() || record.uid.len() > MAX_UID_BYTES {
        return Err(BackendError::InvalidInput(format!(
            "uid must be 1 to {MAX_UID_BYTES} bytes"
        )));
    }
    check_meta(&record.meta)
}

fn check_meta(meta: &[u8]) -> Result<(), BackendError> {
    if meta.len() > MAX_META_BYTES {
        return Err(BackendError::InvalidInput(format!(
            "metadata of {} bytes exceeds {MAX_META_BYTES}",
            meta.len()
        )));
    }
    Ok(())
}

fn check_label(spec: &KeySpec) -> Result<(), BackendError> {
    match &spec.label {
        Some(l) if l.len() > MAX_LABEL_BYTES => Err(BackendError::InvalidInput(format!(
            "label of {} bytes exceeds {MAX_LABEL_BYTES}",
            l.len()
        ))),
        _ => Ok(()),
    }
}

/// The key length in bytes `spec` asks for, if the vault supports it.
fn key_len(spec: &KeySpec) -> Result<usize, BackendError> {
    let ok = match spec.algorithm {
        KeyAlgorithm::Aes => AES_BITS.contains(&spec.bits),
        KeyAlgorithm::HmacSha256 => {
            spec.bits.is_multiple_of(8) && (HMAC_MIN_BITS..=HMAC_MAX_BITS).contains(&spec.bits)
        }
    };
    if !ok {
        return Err(BackendError::InvalidInput(format!(
            "{:?} keys of {} bits are not supported",
            spec.algorithm, spec.bits
        )));
    }
    Ok(spec.bits as usize / 8)
}

#[async_trait]
impl Backend for Vault {
    fn name(&self) -> &'static str {
        "vault"
    }

    async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError> {
        Ok(self
            .shared
            .read_objects()
            .iter()
            .map(|(uid, e)| ObjectRecord {
                uid: uid.clone(),
                kind: e.kind,
                meta: e.meta.clone(),
            })
            .collect())
    }

    async fn generate(&self, record: ObjectRecord, spec: KeySpec) -> Result<(), BackendError> {
        check_record(&record)?;
        check_label(&spec)?;
        if record.kind != ObjectKind::SymmetricKey {
            return Err(BackendError::InvalidInput(format!(
                "the vault generates symmetric keys only, not {:?}",
                record.kind
            )));
        }
        let mut material = Zeroizing::new(vec![0u8; key_len(&spec)?]);
        aws_lc_rs::rand::fill(&mut material[..])
            .map_err(|_| BackendError::Crypto("random generator failed".into()))?;
        self.submit(Mutation::Create {
            uid: record.uid,
            entry: Entry {
                kind: record.kind,
                spec: Some(spec),
                meta: record.meta,
                material: Some(material),
            },
        })
        .await
    }

    async fn import(
        &self,
        record: ObjectRecord,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
    ) -> Result<(), BackendError> {
        check_record(&record)?;
        if material.len() > MAX_MATERIAL_BYTES {
            return Err(BackendError::InvalidInput(format!(
                "object material of {} bytes exceeds {MAX_MATERIAL_BYTES}",
                material.len()
            )));
        }
        if let Some(spec) = &spec {
            check_label(spec)?;
            let expected_bits = material.len() as u64 * 8;
            let fits = match spec.algorithm {
                KeyAlgorithm::Aes => AES_BITS.contains(&spec.bits),
                KeyAlgorithm::HmacSha256 => spec.bits > 0,
            };
            if !fits || u64::from(spec.bits) != expected_bits {
                return Err(BackendError::InvalidInput(format!(
                    "{expected_bits}-bit material does not match a {:?} key of {} bits",
                    spec.algorithm, spec.bits
                )));
            }
        }
        self.submit(Mutation::Create {
            uid: record.uid,
            entry: Entry {
                kind: record.kind,
                spec,
                meta: record.meta,
                material: Some(material),
            },
        })
        .await
    }

    async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.with_entry(uid, |e| match &e.spec {
            Some(s) if !s.extractable || s.sensitive => {
                Err(BackendError::NotExtractable(uid.to_owned()))
            }
            _ => material(uid, e),
        })
    }

    async fn update_meta(&self, uid: &str, meta: Vec<u8>) -> Result<(), BackendError> {
        check_meta(&meta)?;
        self.submit(Mutation::UpdateMeta {
            uid: uid.to_owned(),
            meta,
        })
        .await
    }

    async fn destroy(&self, uid: &str, tombstone: Option<Vec<u8>>) -> Result<(), BackendError> {
        if let Some(meta) = &tombstone {
            check_meta(meta)?;
        }
        self.submit(Mutation::Destroy {
            uid: uid.to_owned(),
            tombstone,
        })
        .await
    }

    // AES and HMAC over request-sized data take microseconds, cheaper than a hop to a
    // blocking thread, so they run inline.
    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        let key = self.usable_key(uid, KeyAlgorithm::Aes)?;
        cipher::encrypt(&key, req)
    }

    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        let key = self.usable_key(uid, KeyAlgorithm::Aes)?;
        cipher::decrypt(&key, req)
    }

    async fn mac(&self, uid: &str, data: &[u8]) -> Result<Vec<u8>, BackendError> {
        let key = self.usable_key(uid, KeyAlgorithm::HmacSha256)?;
        Ok(cipher::hmac_sha256(&key, data))
    }

    async fn health(&self) -> Result<(), BackendError> {
        let stopped = self.shared.failed.load(Ordering::SeqCst)
            || self.tx.as_ref().is_none_or(|tx| tx.is_closed());
        if stopped {
            return Err(BackendError::Unavailable(
                "the vault writer has stopped after an I/O failure; restart to recover".into(),
            ));
        }
        Ok(())
    }
}
