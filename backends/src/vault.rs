//! The encrypted file vault: every object lives in memory and in an append-only, AES-256-GCM
//! encrypted log in one directory, its material under a per-object data key kept in a slot file
//! that is zeroed in place on destroy. See `backends/README.md` for the format and the
//! durability argument.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::{BackendError, KeyAlgorithm, KeySpec, ObjectKind};

mod backend;
pub(crate) use backend::{check_label, check_meta, check_record};
mod files;
mod format;
mod head;
mod keyfile;
mod open;
mod slots;
mod snapshot;
#[cfg(test)]
mod tests;
mod writer;

pub use format::{MAX_LABEL_BYTES, MAX_MATERIAL_BYTES, MAX_META_BYTES, MAX_UID_BYTES};
pub use head::HEAD_FILE;
pub use keyfile::{HexSecret, MasterKeySource, DEFAULT_KEY_FILE, MASTER_KEY_LEN};
pub use snapshot::{restore, restore_sharing_key, snapshot, Restored, VaultSnapshot};

use head::Head;
use open::prepare;
use slots::Dek;
use writer::{Mutation, Request, Writer};

/// Requests queued for the writer before callers wait for room: backpressure, and a bound on
/// the memory queued plaintext can take.
const WRITE_QUEUE_DEPTH: usize = 4096;

/// Every object in memory, by uid. Entries behind a pointer: the table keeps spare room (up to
/// half of it empty after it grows), and a 24-byte slot wastes far less there than a whole entry
/// would. Shared (`Arc`), uid and entry: a compaction copies the table by reference counts, in
/// tens of milliseconds at a million objects while writes wait, where copying every entry took
/// most of a second.
pub(crate) type Objects = HashMap<Arc<str>, Arc<Entry>>;

/// One stored object, decrypted, as held in memory.
pub(crate) struct Entry {
    pub kind: ObjectKind,
    /// How the key was made or declared; `None` for imported objects without a key spec.
    pub spec: Option<KeySpec>,
    pub meta: bytes::Bytes,
    /// `None` once destroyed with a tombstone: the metadata stays, the material is gone.
    pub material: Option<Zeroizing<Vec<u8>>>,
    /// The data key the material is stored under; set by the writer when it stores material.
    pub key: Option<DataKey>,
}

/// An object's data key and the slot of `vault.keys` that holds it wrapped.
#[derive(Clone)]
pub(crate) struct DataKey {
    pub slot: u32,
    pub dek: Dek,
}

/// State shared by the vault handle (readers) and its writer thread (the only mutator).
pub(crate) struct Shared {
    objects: RwLock<Objects>,
    /// Set when the writer stopped on an I/O failure.
    failed: AtomicBool,
    commits: AtomicU64,
    records: AtomicU64,
    compactions: AtomicU64,
    log_bytes: AtomicU64,
    live_bytes: AtomicU64,
    torn_tail_bytes: u64,
    slots_shredded_at_open: u64,
    #[cfg(test)]
    compaction_hold: std::sync::Mutex<Option<writer::CompactionHold>>,
}

impl Shared {
    // A panic while holding the lock cannot leave the map half-updated (every update is one
    // insert or remove), so a poisoned lock is still usable.
    fn read_objects(&self) -> RwLockReadGuard<'_, Objects> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_objects(&self) -> RwLockWriteGuard<'_, Objects> {
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
    /// Group commits (one frame appended and synced each, with its key slot and head syncs) since
    /// open.
    pub commits: u64,
    /// Records written by those commits.
    pub records: u64,
    /// Compactions since open.
    pub compactions: u64,
    /// Bytes of torn tail (an unacknowledged write cut short by a crash) cut off at open.
    pub torn_tail_bytes: u64,
    /// Key slots zeroed at open because a crash interrupted their shredding.
    pub slots_shredded_at_open: u64,
}

/// The encrypted file vault backend.
pub struct Vault {
    shared: Arc<Shared>,
    /// `None` only while dropping, to close the queue before joining the writer.
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Vault {
    /// Opens the vault in `dir`, creating directory, key file, key slots, log and head on first
    /// start, with the head at [`default_head_path`].
    pub fn open(dir: &Path, master_key: MasterKeySource) -> Result<Vault, BackendError> {
        let head = default_head_path(dir, &master_key);
        Vault::open_with_head(dir, master_key, &head)
    }

    /// Opens the vault in `dir` with its chain head at `head_path` (keep it outside `dir`, next
    /// to the master key: a copy of `dir` must not be able to roll it back).
    ///
    /// Replays the whole log into memory; refuses a log that is damaged (other than a torn tail
    /// past the head, left by a crash, which is cut off), foreign, of an unknown format
    /// version, written under another master key, or shorter than or different from what the
    /// head records. Upgrades a version-1 vault. Blocking: call it before starting the runtime
    /// or via `spawn_blocking`.
    pub fn open_with_head(
        dir: &Path,
        master_key: MasterKeySource,
        head_path: &Path,
    ) -> Result<Vault, BackendError> {
        let started = Instant::now();
        let ready = prepare(dir, &master_key, head_path, false)?;
        let objects_count = ready.objects.len();
        let shared = Arc::new(Shared {
            objects: RwLock::new(ready.objects),
            failed: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            log_bytes: AtomicU64::new(ready.pos.log_len),
            live_bytes: AtomicU64::new(ready.live_bytes),
            torn_tail_bytes: ready.torn_bytes,
            slots_shredded_at_open: ready.shredded,
            #[cfg(test)]
            compaction_hold: std::sync::Mutex::default(),
        });
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let log_bytes = ready.pos.log_len;
        let writer = Writer {
            dir: dir.to_path_buf(),
            master: ready.master,
            file: ready.file,
            keys: ready.keys,
            next_seq: ready.next_seq,
            pos: ready.pos,
            live_bytes: ready.live_bytes,
            slots: ready.slots,
            head: ready.head,
            free_slots: ready.free_slots,
            retired_slots: ready.retired_slots,
            shared: Arc::clone(&shared),
            rx,
            wake: tx.downgrade(),
            compaction: None,
            compact_retry_at: 0,
            _lock: ready.lock,
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
            log_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened the vault"
        );
        Ok(Vault {
            shared,
            tx: Some(tx),
            writer: Some(handle),
        })
    }

    /// Accepts the vault's log as it is now, after a deliberate restore from a backup: replays
    /// it without comparing it to the head, then re-anchors the head at its end. The gateway
    /// must be stopped (the directory lock is taken). Returns what was done, for the operator.
    pub fn accept_restore(
        dir: &Path,
        master_key: MasterKeySource,
        head_path: &Path,
    ) -> Result<String, BackendError> {
        let master = keyfile::load(dir, &master_key, true)?;
        // Only for the message: an unreadable head is replaced like a stale one.
        let before = Head::load(head_path, &master)
            .ok()
            .flatten()
            .map(|h| h.state);
        drop(master);
        let ready = prepare(dir, &master_key, head_path, true)?;
        let was = match before.and_then(|s| s.current) {
            Some(p) => format!("{} frames ({} bytes)", p.frames, p.log_len),
            None => "nothing".into(),
        };
        let msg = format!(
            "accepted the restored vault {}: {} objects ({} of them without key material: \
             destroyed after the backup was taken); the head {} now records {} frames ({} \
             bytes) where it recorded {was}",
            dir.display(),
            ready.objects.len(),
            ready.keys_lost,
            head_path.display(),
            ready.pos.frames,
            ready.pos.log_len
        );
        tracing::warn!("{msg}");
        Ok(msg)
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
            slots_shredded_at_open: self.shared.slots_shredded_at_open,
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

    /// The algorithm `uid` was generated or imported as, if recorded.
    fn declared_algorithm(&self, uid: &str) -> Result<Option<KeyAlgorithm>, BackendError> {
        self.with_entry(uid, |e| Ok(e.spec.as_ref().map(|s| s.algorithm)))
    }

    /// A copy of the key `uid` if it is one of `algorithms` (the first names it in errors).
    fn usable_key(
        &self,
        uid: &str,
        algorithms: &[KeyAlgorithm],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let algorithm = algorithms.first().copied().unwrap_or(KeyAlgorithm::Aes);
        self.with_entry(uid, |e| {
            let declared = e.spec.as_ref().map(|s| s.algorithm);
            if e.kind != ObjectKind::SymmetricKey
                || declared.is_some_and(|a| !algorithms.contains(&a))
            {
                return Err(BackendError::InvalidInput(format!(
                    "object {uid} is not a {} key",
                    match algorithm {
                        KeyAlgorithm::Aes => "AES",
                        KeyAlgorithm::HmacSha256 => "HMAC-SHA256",
                        KeyAlgorithm::TripleDes => "Triple DES",
                        KeyAlgorithm::ChaCha20 => "ChaCha20",
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

/// Where the chain head goes when the caller does not say: beside the master key file. A key
/// from the environment has no file, and `VaultDir` keeps its key in `dir`: there the head is
/// in `dir` too, which detects a cut log but not a rollback of the whole directory.
pub fn default_head_path(dir: &Path, master_key: &MasterKeySource) -> PathBuf {
    match master_key {
        MasterKeySource::File(p) => p.parent().unwrap_or(Path::new(".")).join(head::HEAD_FILE),
        MasterKeySource::VaultDir
        | MasterKeySource::EnvHex(_)
        | MasterKeySource::HexValue { .. } => dir.join(head::HEAD_FILE),
    }
}
