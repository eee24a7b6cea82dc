//! Opening a vault's files: creating a new vault, replaying the log against its head and key
//! slots (finishing interrupted shredding), upgrading a version-1 vault, and accepting a restored
//! log. Produces the [`Ready`] state the writer starts from.

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use super::files::{io_err, scrub, scrub_and_remove, sync_dir};
use super::format::{self, Anchor, Loaded, StoredEntry, FORMAT_VERSION_1};
use super::head::{self, Head};
use super::keyfile::{self, MasterKeySource};
use super::slots::{self, Dek, KeySlots};
use super::{DataKey, Entry, Objects};
use crate::BackendError;

/// The advisory lock file that keeps two processes from writing one vault.
const LOCK_FILE: &str = "vault.lock";

/// Takes the directory's advisory lock, held for as long as the returned file is open.
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

/// Everything a vault's writer starts from, read and checked.
pub(super) struct Ready {
    pub(super) lock: File,
    pub(super) master: keyfile::MasterKey,
    pub(super) file: File,
    pub(super) keys: format::FileKeys,
    pub(super) next_seq: u64,
    pub(super) pos: head::Position,
    pub(super) live_bytes: u64,
    pub(super) torn_bytes: u64,
    pub(super) shredded: u64,
    /// Objects of a restored log whose key slots were zeroed since (accept-restore only).
    pub(super) keys_lost: u64,
    pub(super) objects: Objects,
    pub(super) slots: KeySlots,
    pub(super) head: Head,
    pub(super) free_slots: Vec<u32>,
    pub(super) retired_slots: Vec<u32>,
}

/// Opens (or creates, or upgrades) the vault's files and checks them against each other and the
/// head; `accept` takes the log as it is and re-anchors the head to it.
pub(super) fn prepare(
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
    let loaded = format::replay(&file, &log_path, &master, anchor, slots::count_hint(dir))?;
    if loaded.version == FORMAT_VERSION_1 {
        return upgrade(dir, lock, master, loaded, file, head, head_path);
    }
    let mut slots = if loaded.referenced_slots.is_empty() && !dir.join(slots::KEYS_FILE).exists() {
        KeySlots::create(dir, &master, &[])?
    } else {
        KeySlots::open(dir, &master)?
    };
    slots.preload()?;
    let mut objects = HashMap::with_capacity(loaded.objects.len());
    // One flag per slot of the file: at a million objects, far cheaper than a set of numbers.
    let mut live_slots = vec![false; slots.len as usize];
    let mut live_bytes = format::HEADER_LEN as u64;
    let mut keys_lost = 0u64;
    for opened in open_entries(&slots, loaded.objects, accept, dir)? {
        live_bytes += opened.size;
        match opened.slot {
            Some(slot) => {
                if let Some(live) = live_slots.get_mut(slot as usize) {
                    *live = true;
                }
            }
            None if opened.key_lost => keys_lost += 1,
            None => {}
        }
        objects.insert(opened.uid, opened.entry);
    }
    // Finish shredding a crash interrupted: a slot that no live object uses must be empty
    // (a destroyed or deleted object's, or one written for a create that was never committed).
    let mut shredded = 0u64;
    let mut free_slots = Vec::new();
    let mut retired_slots = Vec::new();
    for slot in 0..slots.len {
        if live_slots[slot as usize] {
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
    slots.forget_preload();
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

/// Most threads that open objects' data keys and material at start.
const MAX_OPEN_THREADS: usize = 8;

/// An object of the log, its data key unwrapped and its material decrypted.
struct Opened {
    uid: Arc<str>,
    /// Shared from here on (made on the opening threads, not on the one that fills the table).
    entry: Arc<Entry>,
    /// Its record's size in the log.
    size: u64,
    /// The key slot it uses.
    slot: Option<u32>,
    /// A restored log names it, but its key was shredded since: back without material.
    key_lost: bool,
}

/// Unwraps every object's data key and decrypts its material, on as many threads as there are
/// cores (each object is two independent AES-GCM openings; a million take seconds on one).
fn open_entries(
    slots: &KeySlots,
    objects: HashMap<Arc<str>, (StoredEntry, u64)>,
    accept: bool,
    dir: &Path,
) -> Result<Vec<Opened>, BackendError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_OPEN_THREADS);
    let mut all: Vec<_> = objects.into_iter().collect();
    let per_thread = all.len().div_ceil(threads).max(1);
    let mut parts = Vec::with_capacity(threads);
    while all.len() > per_thread {
        parts.push(all.split_off(all.len() - per_thread));
    }
    parts.push(all);
    let open_part = |part: Vec<(Arc<str>, (StoredEntry, u64))>| {
        part.into_iter()
            .map(|(uid, (stored, size))| open_entry(slots, uid, stored, size, accept, dir))
            .collect::<Result<Vec<_>, _>>()
    };
    let opened = std::thread::scope(|s| {
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts.map(|part| s.spawn(move || open_part(part))).collect();
        let mut opened = vec![open_part(first)];
        for other in others {
            opened.push(
                other
                    .join()
                    .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked)),
            );
        }
        opened
    });
    let mut all = Vec::new();
    for part in opened {
        all.append(&mut part?);
    }
    Ok(all)
}

fn open_entry(
    slots: &KeySlots,
    uid: Arc<str>,
    stored: StoredEntry,
    size: u64,
    accept: bool,
    dir: &Path,
) -> Result<Opened, BackendError> {
    let corrupt = |what: String| BackendError::Corrupt(format!("{}: {what}", dir.display()));
    let entry = |material, key| {
        Arc::new(Entry {
            kind: stored.kind,
            spec: stored.spec,
            meta: stored.meta,
            material,
            key,
        })
    };
    let Some(m) = stored.material else {
        return Ok(Opened {
            entry: entry(None, None),
            uid,
            size,
            slot: None,
            key_lost: false,
        });
    };
    let slot = m
        .slot()
        .ok_or_else(|| corrupt(format!("{uid} has no key slot")))?;
    let dek = match slots.unwrap(slot, &uid) {
        Ok(dek) => dek,
        // A restored log can name objects destroyed since the backup: their keys are shredded
        // for good, and the object comes back without material.
        Err(_) if accept && slots.read(slot)?.iter().all(|&b| b == 0) => {
            return Ok(Opened {
                entry: entry(None, None),
                uid,
                size,
                slot: None,
                key_lost: true,
            });
        }
        Err(e) => {
            return Err(corrupt(format!(
                "{e}: vault.keys does not match the log (restored separately from it, or \
                 damaged)"
            )))
        }
    };
    let material = m.open(&uid, Some(&dek)).map_err(corrupt)?;
    Ok(Opened {
        entry: entry(Some(material), Some(DataKey { slot, dek })),
        uid,
        size,
        slot: Some(slot),
        key_lost: false,
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
    let mut objects: Objects = HashMap::with_capacity(count);
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
            Arc::new(Entry {
                kind: stored.kind,
                spec: stored.spec,
                meta: stored.meta,
                material,
                key,
            }),
        );
    }
    let fills: Vec<(u32, &str, &Dek)> = objects
        .iter()
        .filter_map(|(uid, e)| e.key.as_ref().map(|k| (k.slot, &**uid, &k.dek)))
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
    objects: &Objects,
    head: Option<Head>,
    head_path: &Path,
) -> Result<(format::FreshLog, Head), BackendError> {
    let tmp = dir.join(format::TMP_LOG_FILE);
    let fresh = format::write_log_file(&tmp, master, objects.iter().map(|(u, e)| (&**u, &**e)))?;
    let current = head.as_ref().and_then(|h| h.state.current);
    let mut head = head::store_or_create(head, head_path, master, current, Some(fresh.end))?;
    let path = dir.join(format::LOG_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir)?;
    head.store(Some(fresh.end), None)?;
    Ok((fresh, head))
}
