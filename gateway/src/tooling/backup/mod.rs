//! `kmip-gateway backup` and `restore`: one encrypted archive ([`archive`]) with everything a
//! lost host needs back — the vault (a consistent copy taken while the gateway serves, see
//! `kmip_backends::vault::snapshot`), its master key, the configuration and policy, the CA
//! folder, and the audit trail's last record (to check a restored trail continues it). For a
//! KMIP proxy (`kind = "kmip"`) the vault is its mapping vault (`<data_dir>/upstream-map`: the
//! gateway's attributes and upstream identifiers); the key material stays upstream. A migrating
//! proxy (`mode = "migrate"`) has both: its local vault and the map, copied as of one moment
//! (`take_migrating`), under their one master key; one migrating to PostgreSQL
//! (`[backend.migrate_to]`) has the map only, as a proxy's: the database is backed up by
//! PostgreSQL's own tools, like a `kind = "postgres"` installation's.

pub mod archive;

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use kmip_backends::vault::{MasterKeySource, VaultSnapshot};
use zeroize::Zeroizing;

use crate::config::{BackendConfig, GatewayConfig, MasterKeyConfig, MigrateTarget, PolicySource};
use archive::{Entry, KdfCost};

const VAULT_LOG: &str = "vault/vault.log";
const VAULT_KEYS: &str = "vault/vault.keys";
/// A KMIP proxy's mapping vault, in place of the key vault.
const MAP_LOG: &str = "upstream-map/vault.log";
const MAP_KEYS: &str = "upstream-map/vault.keys";
/// The files of a vault (key vault or mapping vault) and the master key: restored as a vault,
/// never written among the side files.
const VAULT_FILES: &[&str] = &[VAULT_LOG, VAULT_KEYS, MAP_LOG, MAP_KEYS, MASTER_KEY];
const MASTER_KEY: &str = "secrets/master.key";
const MANIFEST: &str = "manifest";
const AUDIT_HEAD: &str = "audit/last-record.jsonl";
/// Largest file taken into an archive from the configuration or CA folders: they are small,
/// and a mistaken `--ca-dir /` must not read the disk into memory.
const MAX_SIDE_FILE_BYTES: u64 = 16 << 20;
/// Largest archive `restore` reads (the vault log dominates; 100,000 keys make about 25 MB).
const MAX_ARCHIVE_BYTES: u64 = 4 << 30;
/// Permission bits a passphrase file must not have (as for the master key and PIN files).
const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// Reads a passphrase file (without its final newline), refusing one others can read.
pub fn read_passphrase(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & FORBIDDEN_MODE_BITS != 0 {
        return Err(format!(
            "{}: the passphrase file is readable by group or others: chmod 600 it",
            path.display()
        ));
    }
    let mut bytes =
        Zeroizing::new(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?);
    for end in [b'\n', b'\r'] {
        if bytes.last() == Some(&end) {
            bytes.pop();
        }
    }
    Ok(bytes)
}

fn entry(name: impl Into<String>, bytes: Vec<u8>) -> Entry {
    Entry {
        name: name.into(),
        bytes: Zeroizing::new(bytes),
    }
}

fn read_side_file(path: &Path) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > MAX_SIDE_FILE_BYTES {
        return Err(format!(
            "{}: {len} bytes, more than the {MAX_SIDE_FILE_BYTES}-byte limit of a configuration or CA file",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned())
}

/// A consistent copy of the vault in `dir`, with its master key.
fn snapshot_vault(
    dir: &Path,
    master_key: &MasterKeyConfig,
    head: &Path,
) -> Result<VaultSnapshot, String> {
    let source = match master_key {
        MasterKeyConfig::File(p) => MasterKeySource::File(p.clone()),
        MasterKeyConfig::Env(name) => MasterKeySource::EnvHex(name.clone()),
    };
    kmip_backends::vault::snapshot(dir, &source, head).map_err(|e| e.to_string())
}

/// Adds a vault's log and key slots (under `names`) to `entries`; returns its frame count and
/// the log's length in bytes.
fn push_vault(entries: &mut Vec<Entry>, snap: VaultSnapshot, names: (&str, &str)) -> (u64, usize) {
    let taken = (snap.frames, snap.log.len());
    entries.push(entry(names.0, snap.log));
    entries.push(entry(names.1, snap.keys));
    taken
}

/// Adds a consistent copy of the vault in `dir` (its log and key slots under `names`) and its
/// master key to `entries`; returns its frame count and the log's length in bytes.
fn take_vault(
    entries: &mut Vec<Entry>,
    dir: &Path,
    master_key: &MasterKeyConfig,
    head: &Path,
    names: (&str, &str),
) -> Result<(u64, usize), String> {
    let mut snap = snapshot_vault(dir, master_key, head)?;
    let key = std::mem::take(&mut snap.master_key);
    let taken = push_vault(entries, snap, names);
    entries.push(Entry {
        name: MASTER_KEY.into(),
        bytes: key,
    });
    Ok(taken)
}

/// How many times [`take_migrating`] copies the local vault before giving up: the upstream map
/// changes rarely in migrate mode (attribute changes, revocations and destroys of the objects
/// still upstream), and the bound keeps a map written without pause from looping forever.
const CUT_ATTEMPTS: u32 = 100;

/// A migrating proxy's two vaults, both as of one moment: the upstream map, then the local
/// vault, then the map again; kept when the map did not change in between (its log, cut at its
/// head, is the same bytes), so the map's copy is its state while the local vault was copied.
/// Returns the map's and the local vault's frame counts and log lengths. `after_map_copy` runs
/// after each copy of the map but the last: the running gateway's writes land there (the tests
/// make one).
fn take_migrating(
    entries: &mut Vec<Entry>,
    master_key: &MasterKeyConfig,
    (map_dir, map_head): (&Path, &Path),
    (local_dir, local_head): (&Path, &Path),
    after_map_copy: &mut dyn FnMut(),
) -> Result<[(u64, usize); 2], String> {
    let map = || snapshot_vault(map_dir, master_key, map_head);
    let mut before = map()?;
    for _ in 0..CUT_ATTEMPTS {
        after_map_copy();
        let vault = snapshot_vault(local_dir, master_key, local_head)?;
        let after = map()?;
        if after.frames != before.frames || after.log != before.log {
            before = after;
            continue;
        }
        // One key opens both (config: the local vault takes the map's); a key file replaced
        // between the copies would make an archive whose vaults cannot both be opened.
        if vault.master_key[..] != before.master_key[..] {
            return Err(format!(
                "the master key changed while {} and {} were copied: try again",
                map_dir.display(),
                local_dir.display()
            ));
        }
        let key = std::mem::take(&mut before.master_key);
        let taken = [
            push_vault(entries, before, (MAP_LOG, MAP_KEYS)),
            push_vault(entries, vault, (VAULT_LOG, VAULT_KEYS)),
        ];
        entries.push(Entry {
            name: MASTER_KEY.into(),
            bytes: key,
        });
        return Ok(taken);
    }
    Err(format!(
        "the upstream map {} was written to during each of {CUT_ATTEMPTS} copies of the local \
         vault: try again at a quieter time",
        map_dir.display()
    ))
}

/// Adds a KMIP proxy's upstream map (and in migrate mode its local vault) with their master key
/// to `entries`; returns the manifest's lines and what the operator is told.
fn take_proxy(
    entries: &mut Vec<Entry>,
    upstream: &crate::config::UpstreamConfig,
) -> Result<(String, String), String> {
    let upstreams = upstream.upstreams.join(", ");
    let local = match &upstream.migrate_to {
        Some(MigrateTarget::Vault(local)) => local,
        other => {
            let (frames, bytes) = take_vault(
                entries,
                &upstream.map_dir,
                &upstream.master_key,
                &upstream.map_head,
                (MAP_LOG, MAP_KEYS),
            )?;
            // The database is shared and has its own consistent backup (its tools, point in
            // time); a copy of it here would be neither.
            let database = if matches!(other, Some(MigrateTarget::Postgres(_))) {
                "migrate mode on PostgreSQL: the objects made or copied there are not in this \
                 archive; back the database up with its own tools (pg_basebackup and WAL \
                 archiving), and the key encryption key of [backend.migrate_to] apart from it\n"
            } else {
                ""
            };
            return Ok((
                format!("upstream-map-frames = {frames}\n"),
                format!(
                    "{database}upstream map {}: {frames} frames ({bytes} bytes) and its master \
                     key (owners, Names, attributes and upstream identifiers); no key material: \
                     the keys stay on the upstream ({upstreams}), back it up with its own tools\n",
                    upstream.map_dir.display(),
                ),
            ));
        }
    };
    let [(map_frames, map_bytes), (frames, bytes)] = take_migrating(
        entries,
        &upstream.master_key,
        (&upstream.map_dir, &upstream.map_head),
        (&local.dir, &local.head),
        &mut || {},
    )?;
    Ok((
        format!("upstream-map-frames = {map_frames}\nvault-frames = {frames}\n"),
        format!(
            "migrate mode: both vaults as of one moment, and their one master key\n\
             local vault {}: {frames} frames ({bytes} bytes) and its key slots: the objects made \
             or copied locally, with their key material\n\
             upstream map {}: {map_frames} frames ({map_bytes} bytes): owners, Names, attributes \
             and upstream identifiers of the objects still on the upstream; no key material of \
             those: it stays on the upstream ({upstreams}), back it up with its own tools\n",
            local.dir.display(),
            upstream.map_dir.display(),
        ),
    ))
}

/// Takes a backup of the gateway configured by `config_path` into a new file `out`, encrypted
/// to `passphrase`; `ca_dir` adds the CA folder. Safe while the gateway runs. Returns what it
/// holds, for the operator.
pub fn backup(
    cfg: &GatewayConfig,
    config_path: &Path,
    ca_dir: Option<&Path>,
    passphrase: &[u8],
    cost: KdfCost,
    out: &Path,
) -> Result<String, String> {
    let mut entries = vec![entry(
        format!("config/{}", file_name(config_path)),
        read_side_file(config_path)?,
    )];
    if let PolicySource::File(p) = &cfg.policy {
        entries.push(entry(
            format!("config/{}", file_name(p)),
            read_side_file(p)?,
        ));
    }
    if let Some(dir) = ca_dir {
        let listing = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for item in listing {
            let path = item.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if path.is_file() {
                entries.push(entry(
                    format!("ca/{}", file_name(&path)),
                    read_side_file(&path)?,
                ));
            }
        }
    }
    if let Some(audit) = &cfg.audit {
        let current = audit.dir.join(crate::tooling::audit::CURRENT_FILE);
        if let Ok(text) = std::fs::read_to_string(&current) {
            if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                entries.push(entry(AUDIT_HEAD, format!("{last}\n").into_bytes()));
            }
        }
    }
    let mut summary = String::new();
    let mut manifest = format!(
        "written-by = kmip-gateway {}\nconfig = {}\n",
        env!("CARGO_PKG_VERSION"),
        config_path.display()
    );
    match &cfg.backend {
        BackendConfig::Vault {
            dir,
            master_key,
            head,
        } => {
            let (frames, bytes) =
                take_vault(&mut entries, dir, master_key, head, (VAULT_LOG, VAULT_KEYS))?;
            manifest.push_str(&format!("vault-frames = {frames}\n"));
            summary.push_str(&format!(
                "vault {}: {frames} frames ({bytes} bytes), its key slots and master key\n",
                dir.display()
            ));
        }
        BackendConfig::Kmip(upstream) => {
            let (lines, said) = take_proxy(&mut entries, upstream)?;
            manifest.push_str(&lines);
            summary.push_str(&said);
        }
        BackendConfig::Pkcs11 { token_label, .. } => summary.push_str(&format!(
            "no keys: they are on the PKCS#11 token '{token_label}'; back it up with the HSM's own tools\n"
        )),
        BackendConfig::Postgres { .. } => summary.push_str(
            "no objects: they are in PostgreSQL; back the database up with its own tools \
             (pg_basebackup and WAL archiving), and the key encryption key apart from it\n",
        ),
    }
    entries.push(entry(MANIFEST, manifest.into_bytes()));
    for e in &entries {
        if !VAULT_FILES.contains(&e.name.as_str()) && e.name != MANIFEST {
            summary.push_str(&format!("{}\n", e.name));
        }
    }
    let sealed = archive::seal(&entries, passphrase, cost).map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    std::io::Write::write_all(&mut file, &sealed)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(format!(
        "wrote {} ({} bytes, encrypted to the passphrase) with:\n{summary}",
        out.display(),
        sealed.len()
    ))
}

/// Where [`restore`] puts things.
pub struct RestoreTarget {
    /// The new data folder: missing or empty.
    pub data_dir: PathBuf,
    /// Master key and chain head (default `<data_dir>-secrets`): no key or head there yet.
    pub secrets_dir: PathBuf,
    /// Configuration, policy, CA folder and audit head from the archive (default
    /// `<data_dir>-restored`), for the operator to put back: missing or empty.
    pub files_dir: PathBuf,
}

/// `Ok` when `dir` is missing or empty.
fn refuse_non_empty(dir: &Path, what: &str) -> Result<(), String> {
    let mut listing = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
        Ok(it) => it,
    };
    if listing.next().is_none() {
        return Ok(());
    }
    Err(format!(
        "{} is not empty: restore never overwrites {what}; restore into a new folder, or \
         move this one aside first",
        dir.display()
    ))
}

/// Restores `archive_path` into `target`: checks the archive (passphrase, authenticity,
/// version), refuses non-empty folders, writes the vault and replays it along its MAC chain.
pub fn restore(
    archive_path: &Path,
    passphrase: &[u8],
    target: &RestoreTarget,
) -> Result<String, String> {
    refuse_non_empty(&target.data_dir, "a data folder")?;
    refuse_non_empty(&target.files_dir, "restored files")?;
    let len = std::fs::metadata(archive_path)
        .map_err(|e| format!("{}: {e}", archive_path.display()))?
        .len();
    if len > MAX_ARCHIVE_BYTES {
        return Err(format!(
            "{}: {len} bytes, more than the {MAX_ARCHIVE_BYTES}-byte limit",
            archive_path.display()
        ));
    }
    let bytes =
        std::fs::read(archive_path).map_err(|e| format!("{}: {e}", archive_path.display()))?;
    let entries = archive::open(&bytes, passphrase)
        .map_err(|e| format!("{}: {e}", archive_path.display()))?;
    let find = |name: &str| entries.iter().find(|e| e.name == name);
    let mut out = String::new();
    let frames_of = |key: &str| {
        find(MANIFEST).and_then(|m| {
            String::from_utf8_lossy(&m.bytes).lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|rest| rest.strip_prefix(" = "))
                    .and_then(|v| v.parse().ok())
            })
        })
    };
    let migrating =
        frames_of("vault-frames").is_some() && frames_of("upstream-map-frames").is_some();
    // The key vault (a migrating proxy's local vault), or a KMIP proxy's mapping vault: its
    // entries, manifest key, folder, head file name, and what the operator is told it is.
    let vaults = [
        (
            (VAULT_LOG, VAULT_KEYS),
            "vault-frames",
            "vault",
            crate::config::DEFAULT_HEAD_FILE,
            if migrating {
                "local vault (migrate mode: the objects made or copied locally, with their key material)"
            } else {
                "vault"
            },
        ),
        (
            (MAP_LOG, MAP_KEYS),
            "upstream-map-frames",
            crate::config::UPSTREAM_MAP_DIR,
            crate::config::UPSTREAM_MAP_HEAD_FILE,
            "upstream map (no key material: the keys are on the upstream)",
        ),
    ];
    let key_path = target
        .secrets_dir
        .join(crate::config::DEFAULT_MASTER_KEY_FILE);
    // Both vaults of a migrating proxy are under one master key: the first restored writes it,
    // the second checks it is its own and leaves it as it is.
    let mut key_written = false;
    for ((log_name, keys_name), frames_key, folder, head_file, what) in vaults {
        let frames = match (frames_of(frames_key), find(log_name)) {
            (Some(frames), _) => frames,
            (None, None) => continue,
            (None, Some(_)) => {
                return Err(format!(
                    "the archive's manifest does not record the frames of its {what}"
                ))
            }
        };
        let (Some(log), Some(keys), Some(key)) =
            (find(log_name), find(keys_name), find(MASTER_KEY))
        else {
            return Err(format!(
                "the archive's manifest records the {what} but the archive does not hold it whole"
            ));
        };
        let snap = VaultSnapshot {
            log: log.bytes.to_vec(),
            keys: keys.bytes.to_vec(),
            master_key: key.bytes.clone(),
            frames,
        };
        let vault = target.data_dir.join(folder);
        let head_path = target.secrets_dir.join(head_file);
        let done = if key_written {
            kmip_backends::vault::restore_sharing_key(&vault, &key_path, &head_path, &snap)
        } else {
            kmip_backends::vault::restore(&vault, &key_path, &head_path, &snap)
        }
        .map_err(|e| e.to_string())?;
        key_written = true;
        out.push_str(&format!(
            "restored the {what} into {}: {} objects, {} frames, MAC chain verified\n\
             master key {}, chain head {}\n",
            vault.display(),
            done.objects,
            done.frames,
            key_path.display(),
            head_path.display()
        ));
    }
    for e in &entries {
        if VAULT_FILES.contains(&e.name.as_str()) {
            continue;
        }
        let rel = Path::new(&e.name);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("the archive names an unsafe path: {}", e.name));
        }
        let path = target.files_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::Write::write_all(&mut f, &e.bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        out.push_str(&format!("wrote {}\n", path.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
