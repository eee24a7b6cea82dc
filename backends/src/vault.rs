//! The encrypted file vault: every object lives in memory and in an append-only, AES-256-GCM
//! encrypted log in one directory, its material under a per-object data key kept in a slot file
//! that is zeroed in place on destroy. See `backends/README.md` for the format and the
//! durability argument.

use std::collections::{HashMap, HashSet};
use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
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
mod head;
mod keyfile;
mod slots;
#[cfg(test)]
mod tests;
mod writer;

pub use format::{MAX_LABEL_BYTES, MAX_MATERIAL_BYTES, MAX_META_BYTES, MAX_UID_BYTES};
pub use head::HEAD_FILE;
pub use keyfile::{HexSecret, MasterKeySource, DEFAULT_KEY_FILE, MASTER_KEY_LEN};

use format::{Anchor, Loaded, FORMAT_VERSION_1};
use head::Head;
use slots::{Dek, KeySlots};

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
    objects: RwLock<HashMap<String, Entry>>,
    /// Set when the writer stopped on an I/O failure.
    failed: AtomicBool,
    commits: AtomicU64,
    records: AtomicU64,
    compactions: AtomicU64,
    log_bytes: AtomicU64,
    live_bytes: AtomicU64,
    torn_tail_bytes: u64,
    slots_shredded_at_open: u64,
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

/// An I/O error that names the file it happened on.
pub(crate) fn io_err(path: &Path, e: std::io::Error) -> BackendError {
    BackendError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// Creates (or empties) a file only the owner can read, for the temporary copies of the log,
/// the key slots and the head that are renamed into place once complete.
pub(crate) fn create_private(path: &Path) -> Result<File, BackendError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))
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

/// Everything a vault's writer starts from, read and checked.
struct Ready {
    lock: File,
    master: keyfile::MasterKey,
    file: File,
    keys: format::FileKeys,
    next_seq: u64,
    pos: head::Position,
    live_bytes: u64,
    torn_bytes: u64,
    shredded: u64,
    /// Objects of a restored log whose key slots were zeroed since (accept-restore only).
    keys_lost: u64,
    objects: HashMap<String, Entry>,
    slots: KeySlots,
    head: Head,
    free_slots: Vec<u32>,
    retired_slots: Vec<u32>,
}

/// Opens (or creates, or upgrades) the vault's files and checks them against each other and the
/// head; `accept` takes the log as it is and re-anchors the head to it.
fn prepare(
    dir: &Path,
    master_key: &MasterKeySource,
    head_path: &Path,
    accept: bool,
) -> Result<Ready, BackendError> {
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
    let master = keyfile::load(dir, master_key, vault_exists)?;
    // Leftovers of a compaction, creation or upgrade that crashed before its rename: never
    // authoritative. A version-1 one holds material under the master key alone: scrubbed.
    for leftover in [format::TMP_LOG_FILE, slots::TMP_KEYS_FILE] {
        scrub_and_remove(&dir.join(leftover))?;
    }
    let file = if vault_exists {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| io_err(&log_path, e))?;
        format::check_header(&file, &log_path, &master)?;
        Some(file)
    } else {
        None
    };
    let head = match Head::load(head_path, &master) {
        Ok(head) => head,
        // Accepting a restore replaces a damaged head as well.
        Err(e) if accept => {
            tracing::warn!(error = %e, "replacing an unreadable vault head");
            None
        }
        Err(e) => return Err(e),
    };
    let Some(file) = file else {
        if let (false, Some(p)) = (accept, head.as_ref().and_then(|h| h.state.current)) {
            if p.frames > 0 {
                return Err(BackendError::Corrupt(format!(
                    "{}: the vault log is missing, but the head {} records {} frames ({} bytes) \
                     of it. Restore the vault directory from a backup (and run `kmip-gateway \
                     vault accept-restore`), or move the head away to start an empty vault",
                    log_path.display(),
                    head_path.display(),
                    p.frames,
                    p.log_len
                )));
            }
        }
        return create(dir, lock, master, head, head_path);
    };
    let anchor = if accept {
        Anchor::Unchecked
    } else {
        Anchor::Head {
            state: head.as_ref().map(|h| &h.state),
            path: head_path,
        }
    };
    let loaded = format::replay(&file, &log_path, &master, anchor)?;
    if loaded.version == FORMAT_VERSION_1 {
        return upgrade(dir, lock, master, loaded, file, head, head_path);
    }
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", dir.display()));
    let mut slots = if loaded.referenced_slots.is_empty() && !dir.join(slots::KEYS_FILE).exists() {
        KeySlots::create(dir, &master, &[])?
    } else {
        KeySlots::open(dir, &master)?
    };
    let mut objects = HashMap::with_capacity(loaded.objects.len());
    let mut live_slots = HashSet::new();
    let mut live_bytes = format::HEADER_LEN as u64;
    let mut keys_lost = 0u64;
    for (uid, (stored, size)) in loaded.objects {
        live_bytes += size;
        let (material, key) = match stored.material {
            None => (None, None),
            Some(m) => {
                let slot = m
                    .slot()
                    .ok_or_else(|| corrupt(format!("{uid} has no key slot")))?;
                let dek = match slots.unwrap(slot, &uid) {
                    Ok(dek) => dek,
                    // A restored log can name objects destroyed since the backup: their keys
                    // are shredded for good, and the object comes back without material.
                    Err(_) if accept && slots.read(slot)?.iter().all(|&b| b == 0) => {
                        keys_lost += 1;
                        objects.insert(
                            uid,
                            Entry {
                                kind: stored.kind,
                                spec: stored.spec,
                                meta: stored.meta,
                                material: None,
                                key: None,
                            },
                        );
                        continue;
                    }
                    Err(e) => {
                        return Err(corrupt(format!(
                            "{e}: vault.keys does not match the log (restored separately from \
                             it, or damaged)"
                        )))
                    }
                };
                let material = m.open(&uid, Some(&dek)).map_err(corrupt)?;
                live_slots.insert(slot);
                (Some(material), Some(DataKey { slot, dek }))
            }
        };
        objects.insert(
            uid,
            Entry {
                kind: stored.kind,
                spec: stored.spec,
                meta: stored.meta,
                material,
                key,
            },
        );
    }
    // Finish shredding a crash interrupted: a slot that no live object uses must be empty
    // (a destroyed or deleted object's, or one written for a create that was never committed).
    let mut shredded = 0u64;
    let mut free_slots = Vec::new();
    let mut retired_slots = Vec::new();
    for slot in 0..slots.len {
        if live_slots.contains(&slot) {
            continue;
        }
        if slots.read(slot)?.iter().any(|&b| b != 0) {
            slots.zero(slot)?;
            shredded += 1;
        }
        if loaded.referenced_slots.contains(&slot) {
            retired_slots.push(slot);
        } else {
            free_slots.push(slot);
        }
    }
    if shredded > 0 {
        slots.sync()?;
        tracing::warn!(
            dir = %dir.display(),
            slots = shredded,
            "zeroed key slots of destroyed or never-committed objects: a crash had interrupted \
             their shredding"
        );
    }
    if keys_lost > 0 {
        tracing::warn!(
            dir = %dir.display(),
            objects = keys_lost,
            "the restored log names objects whose keys were destroyed (shredded) since the \
             backup: they are back without key material"
        );
    }
    if accept {
        // Rewritten so that the log names only what is there: objects whose keys were lost
        // lose their material record, and no record names a retired slot.
        let (fresh, head) = replace_log(dir, &master, &objects, head, head_path)?;
        free_slots.append(&mut retired_slots);
        free_slots.sort_unstable_by(|a, b| b.cmp(a));
        return Ok(Ready {
            lock,
            file: seek_end(fresh.file, &log_path, fresh.end.log_len)?,
            master,
            keys: fresh.keys,
            next_seq: fresh.next_seq,
            pos: fresh.end,
            live_bytes: fresh.end.log_len,
            torn_bytes: loaded.torn_bytes,
            shredded,
            keys_lost,
            objects,
            slots,
            head,
            free_slots,
            retired_slots,
        });
    }
    // Lowest first, so the file stops growing while holes remain.
    free_slots.reverse();
    let pos = loaded.end;
    let head = match head {
        Some(h) if h.state.current == Some(pos) && h.state.next.is_none() && !accept => h,
        head => head::store_or_create(head, head_path, &master, Some(pos), None)?,
    };
    Ok(Ready {
        lock,
        master,
        file: seek_end(file, &log_path, pos.log_len)?,
        keys: loaded.keys,
        next_seq: loaded.next_seq,
        pos,
        live_bytes,
        torn_bytes: loaded.torn_bytes,
        shredded,
        keys_lost,
        objects,
        slots,
        head,
        free_slots,
        retired_slots,
    })
}

fn seek_end(mut file: File, path: &Path, at: u64) -> Result<File, BackendError> {
    file.seek(SeekFrom::Start(at))
        .map_err(|e| io_err(path, e))?;
    Ok(file)
}

/// A new, empty vault: key slots, then the log beside its final name, the head naming it as
/// `next`, the rename, and the head naming it as `current`: a crash anywhere leaves either no
/// log (and a head that allows one to be made) or a log the head accepts.
fn create(
    dir: &Path,
    lock: File,
    master: keyfile::MasterKey,
    head: Option<Head>,
    head_path: &Path,
) -> Result<Ready, BackendError> {
    let slots = KeySlots::create(dir, &master, &[])?;
    let (fresh, head) = replace_log(dir, &master, &HashMap::new(), head, head_path)?;
    let path = dir.join(format::LOG_FILE);
    tracing::info!(dir = %dir.display(), head = %head.path().display(), "created a new vault");
    Ok(Ready {
        lock,
        master,
        file: seek_end(fresh.file, &path, fresh.end.log_len)?,
        keys: fresh.keys,
        next_seq: fresh.next_seq,
        pos: fresh.end,
        live_bytes: fresh.end.log_len,
        torn_bytes: 0,
        shredded: 0,
        keys_lost: 0,
        objects: HashMap::new(),
        slots,
        head,
        free_slots: Vec::new(),
        retired_slots: Vec::new(),
    })
}

/// Rewrites a version-1 vault in version 2: each object's material under a new data key in its
/// own slot, a chained log, a head. The version-1 log (material under the master key alone,
/// destroyed objects' included) is renamed over and then overwritten with zeros through the
/// still open descriptor. A crash before the rename leaves the version-1 log in force (the head
/// names only the new file as `next`, which a version-1 log is allowed with) and the upgrade
/// runs again at the next open.
fn upgrade(
    dir: &Path,
    lock: File,
    master: keyfile::MasterKey,
    loaded: Loaded,
    old: File,
    head: Option<Head>,
    head_path: &Path,
) -> Result<Ready, BackendError> {
    let count = loaded.objects.len();
    let mut objects = HashMap::with_capacity(count);
    // Slots 0, 1, 2, ... in turn for the objects that have material.
    let mut next_slot = 0u32;
    for (uid, (stored, _)) in loaded.objects {
        let (material, key) = match stored.material {
            None => (None, None),
            Some(m) => {
                if next_slot >= slots::MAX_SLOTS {
                    return Err(BackendError::Unavailable(format!(
                        "more than {} objects with material: too many to upgrade",
                        slots::MAX_SLOTS
                    )));
                }
                let material = m
                    .open(&uid, None)
                    .map_err(|e| BackendError::Corrupt(e.to_string()))?;
                let key = DataKey {
                    slot: next_slot,
                    dek: slots::new_dek()?,
                };
                next_slot += 1;
                (Some(material), Some(key))
            }
        };
        objects.insert(
            uid,
            Entry {
                kind: stored.kind,
                spec: stored.spec,
                meta: stored.meta,
                material,
                key,
            },
        );
    }
    let fills: Vec<(u32, &str, &Dek)> = objects
        .iter()
        .filter_map(|(uid, e)| e.key.as_ref().map(|k| (k.slot, uid.as_str(), &k.dek)))
        .collect();
    let slots = KeySlots::create(dir, &master, &fills)?;
    drop(fills);
    let (fresh, head) = replace_log(dir, &master, &objects, head, head_path)?;
    let path = dir.join(format::LOG_FILE);
    scrub(&old, &path)?;
    tracing::warn!(
        dir = %dir.display(),
        objects = count,
        head = %head.path().display(),
        "upgraded the vault from format 1 to format 2 (per-object data keys, chained frames); \
         the version-1 log was overwritten with zeros. Backups taken before still hold every \
         key the vault ever stored, destroyed ones included: delete them once a backup of the \
         upgraded vault exists"
    );
    Ok(Ready {
        lock,
        master,
        file: seek_end(fresh.file, &path, fresh.end.log_len)?,
        keys: fresh.keys,
        next_seq: fresh.next_seq,
        pos: fresh.end,
        live_bytes: fresh.end.log_len,
        torn_bytes: loaded.torn_bytes,
        shredded: 0,
        keys_lost: 0,
        objects,
        slots,
        head,
        // Every slot of the new file is in use.
        free_slots: Vec::new(),
        retired_slots: Vec::new(),
    })
}

/// Replaces the log with a new one holding `objects`: written beside it and synced, named by
/// the head as `next`, renamed into place, then named as `current`. A crash at any point leaves
/// a log the head accepts; the head's `current` is kept meanwhile (`None` for a version-1 log,
/// which a head without `current` allows).
fn replace_log(
    dir: &Path,
    master: &keyfile::MasterKey,
    objects: &HashMap<String, Entry>,
    head: Option<Head>,
    head_path: &Path,
) -> Result<(format::FreshLog, Head), BackendError> {
    let tmp = dir.join(format::TMP_LOG_FILE);
    let fresh = format::write_log_file(&tmp, master, objects.iter())?;
    let current = head.as_ref().and_then(|h| h.state.current);
    let mut head = head::store_or_create(head, head_path, master, current, Some(fresh.end))?;
    let path = dir.join(format::LOG_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir)?;
    head.store(Some(fresh.end), None)?;
    Ok((fresh, head))
}

/// Block of zeros written over a file being scrubbed.
const SCRUB_CHUNK: usize = 64 * 1024;

/// Overwrites an open file's contents with zeros and syncs it: what is gone from a file should
/// be gone from the disk blocks too (on file systems that overwrite in place).
fn scrub(file: &File, path: &Path) -> Result<(), BackendError> {
    let len = file.metadata().map_err(|e| io_err(path, e))?.len();
    let zeros = vec![0u8; SCRUB_CHUNK];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(SCRUB_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| io_err(path, e))?;
        at += n as u64;
    }
    file.sync_data().map_err(|e| io_err(path, e))
}

/// Scrubs and deletes `path` if it exists.
fn scrub_and_remove(path: &Path) -> Result<(), BackendError> {
    match OpenOptions::new().write(true).open(path) {
        Ok(f) => {
            scrub(&f, path)?;
            std::fs::remove_file(path).map_err(|e| io_err(path, e))?;
            tracing::info!(path = %path.display(), "removed an unfinished compaction or upgrade");
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, e)),
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
                key: None,
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
                key: None,
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
