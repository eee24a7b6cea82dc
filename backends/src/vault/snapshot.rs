//! A consistent copy of a vault that a running gateway keeps writing (`kmip-gateway backup`),
//! and putting such a copy in place (`kmip-gateway restore`). The argument is in
//! `backends/README.md`, "Backups".

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::files::{io_err, sync_dir};
use super::format::LOG_FILE;
use super::head::Head;
use super::keyfile::{self, MasterKeySource};
use super::open::prepare;
use super::slots::KEYS_FILE;
use crate::BackendError;

/// How many times a snapshot is tried before giving up: each try needs no head write between
/// two reads of the head, a window of one small file read, while the writer makes several
/// fdatasyncs per commit. The bound keeps a vault written without pause from looping forever.
pub(crate) const SNAPSHOT_ATTEMPTS: u32 = 1_000;

/// Where the log's salt sits in its header (after magic and version).
const LOG_SALT_RANGE: std::ops::Range<usize> = 12..44;

/// A vault's files as of one acknowledged state, and the master key that opens them.
pub struct VaultSnapshot {
    /// `vault.log` cut at the head's position.
    pub log: Vec<u8>,
    /// `vault.keys` (wrapped data keys only).
    pub keys: Vec<u8>,
    /// The master key.
    pub master_key: Zeroizing<Vec<u8>>,
    /// Frames in `log`.
    pub frames: u64,
}

/// What [`restore`] put in place.
#[derive(Debug)]
pub struct Restored {
    /// Live objects (tombstones included) in the restored vault.
    pub objects: usize,
    /// Frames of the backed-up log, all verified along the MAC chain (the restore may rewrite
    /// them as one).
    pub frames: u64,
}

fn read_file(path: &Path) -> Result<Vec<u8>, BackendError> {
    std::fs::read(path).map_err(|e| io_err(path, e))
}

/// Copies the vault in `dir` (head at `head_path`) while its writer may be running: reads the
/// head, the key slots, the head again, and the log up to the head's position. The copy is
/// kept only if both head reads name the same commit and the log still has that commit's salt,
/// so no commit reached its head — nor, therefore, zeroed a slot — while the slots were read:
/// the slots hold every data key the log's live objects name.
pub fn snapshot(
    dir: &Path,
    source: &MasterKeySource,
    head_path: &Path,
) -> Result<VaultSnapshot, BackendError> {
    let master = keyfile::load(dir, source, true)?;
    let no_head = || {
        BackendError::Unavailable(format!(
            "no vault head at {}: the vault was never opened by this version, or the head \
             file is configured elsewhere",
            head_path.display()
        ))
    };
    for _ in 0..SNAPSHOT_ATTEMPTS {
        let first = Head::load(head_path, &master)?.ok_or_else(no_head)?.state;
        let keys = read_file(&dir.join(KEYS_FILE))?;
        let second = Head::load(head_path, &master)?.ok_or_else(no_head)?.state;
        // A head with `next` is a compaction (or upgrade) under way: its log is being replaced.
        let (Some(pos), None) = (first.current.as_ref(), first.next.as_ref()) else {
            continue;
        };
        if second.counter != first.counter {
            continue;
        }
        let path = dir.join(LOG_FILE);
        let mut log = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(pos.log_len).read_to_end(&mut log))
            .map_err(|e| io_err(&path, e))?;
        if log.len() as u64 != pos.log_len || log.get(LOG_SALT_RANGE) != Some(&pos.salt[..]) {
            // Compacted since the head was read: a new file with a new salt.
            continue;
        }
        return Ok(VaultSnapshot {
            log,
            keys,
            master_key: Zeroizing::new(master.to_vec()),
            frames: pos.frames,
        });
    }
    Err(BackendError::Unavailable(format!(
        "the vault in {} was written to during each of {SNAPSHOT_ATTEMPTS} attempts to copy \
         it: try again at a quieter time",
        dir.display()
    )))
}

/// Writes `bytes` to a new file at `path` (mode 0600), refusing an existing one, and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BackendError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => BackendError::InvalidInput(format!(
                "{} exists: restore never overwrites",
                path.display()
            )),
            _ => io_err(path, e),
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(path, e))
}

/// Puts a snapshot in place: the log and key slots in `dir` (created, must not hold a vault),
/// the master key at `key_path` and a new head at `head_path` (neither may exist), then replays
/// the whole log along its MAC chain and anchors the head at its end. Anything that does not
/// verify is refused; the files written stay for inspection.
pub fn restore(
    dir: &Path,
    key_path: &Path,
    head_path: &Path,
    snapshot: &VaultSnapshot,
) -> Result<Restored, BackendError> {
    refuse_existing(key_path)?;
    refuse_existing(head_path)?;
    make_dirs(&[Some(dir), key_path.parent(), head_path.parent()])?;
    write_new(key_path, &snapshot.master_key)?;
    put_in_place(dir, key_path, head_path, snapshot)
}

/// Puts a snapshot in place beside a vault restored just before it under the same master key
/// (a migrating KMIP proxy keeps its local vault and its upstream map under one key): as
/// [`restore`], but the master key at `key_path` must be there already and be the snapshot's.
/// It is only read, never written; the head at `head_path` is new.
pub fn restore_sharing_key(
    dir: &Path,
    key_path: &Path,
    head_path: &Path,
    snapshot: &VaultSnapshot,
) -> Result<Restored, BackendError> {
    refuse_existing(head_path)?;
    let key = keyfile::load(dir, &MasterKeySource::File(key_path.to_path_buf()), true)?;
    if key[..] != snapshot.master_key[..] {
        return Err(BackendError::InvalidInput(format!(
            "{} holds another master key than the one this vault was backed up with",
            key_path.display()
        )));
    }
    make_dirs(&[Some(dir), head_path.parent()])?;
    put_in_place(dir, key_path, head_path, snapshot)
}

fn refuse_existing(path: &Path) -> Result<(), BackendError> {
    if path.exists() {
        return Err(BackendError::InvalidInput(format!(
            "{} exists: restore never overwrites a master key or head",
            path.display()
        )));
    }
    Ok(())
}

fn make_dirs(dirs: &[Option<&Path>]) -> Result<(), BackendError> {
    for d in dirs.iter().flatten() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .map_err(|e| io_err(d, e))?;
    }
    Ok(())
}

/// Writes the log and key slots into `dir` and replays them under the key at `key_path`.
fn put_in_place(
    dir: &Path,
    key_path: &Path,
    head_path: &Path,
    snapshot: &VaultSnapshot,
) -> Result<Restored, BackendError> {
    write_new(&dir.join(KEYS_FILE), &snapshot.keys)?;
    write_new(&dir.join(LOG_FILE), &snapshot.log)?;
    sync_dir(dir)?;
    let source = MasterKeySource::File(key_path.to_path_buf());
    let ready = prepare(dir, &source, head_path, true)?;
    if ready.keys_lost > 0 {
        return Err(BackendError::Corrupt(format!(
            "{} live objects of the restored vault have no data key: the backup is not \
             consistent",
            ready.keys_lost
        )));
    }
    Ok(Restored {
        objects: ready.objects.len(),
        frames: snapshot.frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::tests::waiting_out_spawns;
    use crate::vault::Vault;
    use crate::{Backend, KeyAlgorithm, KeySpec, ObjectKind, ObjectRecord};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn rec(uid: &str) -> ObjectRecord {
        ObjectRecord {
            uid: uid.into(),
            kind: ObjectKind::SymmetricKey,
            meta: bytes::Bytes::copy_from_slice(uid.as_bytes()),
            version: 0,
        }
    }

    fn aes() -> KeySpec {
        KeySpec {
            algorithm: KeyAlgorithm::Aes,
            bits: 256,
            extractable: true,
            sensitive: false,
            label: None,
        }
    }

    /// Keys that must come back from every snapshot.
    const KEPT: usize = 30;
    /// Snapshots taken (and restored) while creates and destroys go on.
    const SNAPSHOTS: usize = 20;

    /// Snapshots taken while another task creates and destroys keys without pause each restore
    /// to a vault whose chain verifies, where every live object has its data key and the keys
    /// made before keep their bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshots_under_concurrent_creates_and_destroys_restore_whole() {
        let dir = tempfile::tempdir().unwrap();
        let vault_dir = dir.path().join("vault");
        let key = dir.path().join("secrets/master.key");
        let head = dir.path().join("secrets/vault.head");
        let source = MasterKeySource::File(key.clone());
        let v = Arc::new(Vault::open_with_head(&vault_dir, source.clone(), &head).unwrap());
        let mut kept = Vec::new();
        for i in 0..KEPT {
            let uid = format!("kept-{i}");
            v.generate(rec(&uid), aes()).await.unwrap();
            kept.push((uid.clone(), v.read_material(&uid).await.unwrap().to_vec()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (v, stop) = (Arc::clone(&v), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let uid = format!("churn-{n}");
                    v.generate(rec(&uid), aes()).await.unwrap();
                    v.destroy(&uid, Some(bytes::Bytes::from_static(b"gone")), 0)
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        };
        for i in 0..SNAPSHOTS {
            let (d, s, h) = (vault_dir.clone(), source.clone(), head.clone());
            let snap = tokio::task::spawn_blocking(move || snapshot(&d, &s, &h))
                .await
                .unwrap()
                .unwrap();
            let to = dir.path().join(format!("restored-{i}"));
            let (k, h) = (to.join("secrets/master.key"), to.join("secrets/vault.head"));
            let done = restore(&to.join("vault"), &k, &h, &snap).unwrap();
            assert!(done.objects >= KEPT);
            // `restore` locked and closed the folder: a test's child may still hold that lock.
            let r = waiting_out_spawns(|| {
                Vault::open_with_head(&to.join("vault"), MasterKeySource::File(k.clone()), &h)
            })
            .unwrap();
            for (uid, bytes) in &kept {
                assert_eq!(
                    &r.read_material(uid).await.unwrap().to_vec(),
                    bytes,
                    "{uid}"
                );
            }
        }
        stop.store(true, Ordering::SeqCst);
        assert!(churn.await.unwrap() > 0);
    }

    #[test]
    fn restore_never_overwrites_a_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("master.key");
        std::fs::write(&key, [1u8; 32]).unwrap();
        let snap = VaultSnapshot {
            log: Vec::new(),
            keys: Vec::new(),
            master_key: Zeroizing::new(vec![2u8; 32]),
            frames: 0,
        };
        let err = restore(&dir.path().join("v"), &key, &dir.path().join("h"), &snap).unwrap_err();
        assert!(err.to_string().contains("never overwrites"), "{err}");
        assert_eq!(std::fs::read(&key).unwrap(), [1u8; 32]);
    }

    /// Two vaults under one master key (a migrating proxy's map and local vault) restore side
    /// by side: the key written once, each vault with its own head, both open with their keys.
    #[tokio::test]
    async fn a_second_vault_restores_under_the_key_the_first_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secrets/master.key");
        let source = MasterKeySource::File(key.clone());
        let mut snaps = Vec::new();
        for name in ["map", "vault"] {
            let (d, h) = (
                dir.path().join(name),
                dir.path().join(format!("secrets/{name}.head")),
            );
            let v = Vault::open_with_head(&d, source.clone(), &h).unwrap();
            v.generate(rec(name), aes()).await.unwrap();
            let bytes = v.read_material(name).await.unwrap().to_vec();
            snaps.push((name, snapshot(&d, &source, &h).unwrap(), bytes));
        }
        let to = dir.path().join("restored");
        let k = to.join("secrets/master.key");
        let head = |name: &str| to.join(format!("secrets/{name}.head"));
        let (first, second) = (&snaps[0], &snaps[1]);
        restore(&to.join(first.0), &k, &head(first.0), &first.1).unwrap();
        let done = restore_sharing_key(&to.join(second.0), &k, &head(second.0), &second.1).unwrap();
        assert_eq!(done.objects, 1);
        for (name, _, bytes) in &snaps {
            let r = waiting_out_spawns(|| {
                Vault::open_with_head(
                    &to.join(name),
                    MasterKeySource::File(k.clone()),
                    &head(name),
                )
            })
            .unwrap();
            assert_eq!(
                &r.read_material(name).await.unwrap().to_vec(),
                bytes,
                "{name}"
            );
        }
    }

    #[test]
    fn a_shared_key_that_is_not_the_snapshots_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("master.key");
        std::fs::write(&key, [1u8; 32]).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let snap = VaultSnapshot {
            log: Vec::new(),
            keys: Vec::new(),
            master_key: Zeroizing::new(vec![2u8; 32]),
            frames: 0,
        };
        let err = restore_sharing_key(&dir.path().join("v"), &key, &dir.path().join("h"), &snap)
            .unwrap_err();
        assert!(err.to_string().contains("another master key"), "{err}");
        assert_eq!(std::fs::read(&key).unwrap(), [1u8; 32]);
        assert!(!dir.path().join("v").exists());
    }
}
