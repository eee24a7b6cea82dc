//! Where the vault's master key comes from, and how it is kept off other users' screens.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::files::{io_err, sync_dir};
use crate::BackendError;

/// Length of the master key: one AES-256 key's worth of entropy.
pub const MASTER_KEY_LEN: usize = 32;

/// File name of the default key file inside the vault directory.
pub const DEFAULT_KEY_FILE: &str = "master.key";

/// Permission bits a key file must not have: any access for group or other.
const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// The master key, wiped from memory when dropped.
pub(crate) type MasterKey = Zeroizing<[u8; MASTER_KEY_LEN]>;

/// Where [`super::Vault::open`] gets the master key that encrypts everything in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `master.key` in the vault directory: 32 random bytes, created with mode 0600 when the vault
    /// is created.
    VaultDir,
    /// A key file at this path (32 raw bytes, mode 0600 or stricter), created like the default one
    /// when the vault is created.
    File(PathBuf),
    /// The name of an environment variable holding the key as 64 hex digits.
    EnvHex(String),
    /// The value of that variable, already taken out of the environment (the gateway removes it
    /// at start); `var` names it in errors.
    HexValue { var: String, hex: HexSecret },
}

/// A secret in text form, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct HexSecret(pub Zeroizing<String>);

impl std::fmt::Debug for HexSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Loads (or, for a vault being created, creates) the master key.
///
/// `vault_exists` stops a missing key file from being silently replaced by a fresh key, which
/// would make every stored object unreadable.
pub(crate) fn load(
    dir: &Path,
    source: &MasterKeySource,
    vault_exists: bool,
) -> Result<MasterKey, BackendError> {
    match source {
        MasterKeySource::VaultDir => from_file(&dir.join(DEFAULT_KEY_FILE), vault_exists),
        MasterKeySource::File(path) => from_file(path, vault_exists),
        MasterKeySource::EnvHex(var) => from_env(var),
        MasterKeySource::HexValue { var, hex } => from_hex(var, &hex.0),
    }
}

fn from_env(var: &str) -> Result<MasterKey, BackendError> {
    let value = Zeroizing::new(std::env::var(var).map_err(|_| {
        BackendError::Unavailable(format!(
            "master key variable {var} is not set or not valid UTF-8"
        ))
    })?);
    from_hex(var, &value)
}

fn from_hex(var: &str, value: &str) -> Result<MasterKey, BackendError> {
    let mut key: MasterKey = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    hex::decode_to_slice(value.trim(), &mut key[..]).map_err(|_| {
        BackendError::Unavailable(format!(
            "master key variable {var} must hold exactly {} hex digits",
            MASTER_KEY_LEN * 2
        ))
    })?;
    Ok(key)
}

fn from_file(path: &Path, vault_exists: bool) -> Result<MasterKey, BackendError> {
    match File::open(path) {
        Ok(file) => read_key_file(path, file),
        Err(e) if e.kind() == ErrorKind::NotFound && !vault_exists => create_key_file(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(BackendError::Unavailable(format!(
            "the vault exists but its master key file {} is missing; refusing to create a new key",
            path.display()
        ))),
        Err(e) => Err(io_err(path, e)),
    }
}

fn read_key_file(path: &Path, mut file: File) -> Result<MasterKey, BackendError> {
    // fstat on the open descriptor, so the checked file is the one read.
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(BackendError::Unavailable(format!(
            "master key path {} is not a regular file",
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & FORBIDDEN_MODE_BITS != 0 {
        return Err(BackendError::Unavailable(format!(
            "refusing master key file {}: mode {mode:04o} gives group/other access; run chmod 600 on it",
            path.display()
        )));
    }
    if meta.len() != MASTER_KEY_LEN as u64 {
        return Err(BackendError::Corrupt(format!(
            "master key file {} holds {} bytes, expected {MASTER_KEY_LEN}",
            path.display(),
            meta.len()
        )));
    }
    let mut key: MasterKey = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    file.read_exact(&mut key[..]).map_err(|e| io_err(path, e))?;
    Ok(key)
}

fn create_key_file(path: &Path) -> Result<MasterKey, BackendError> {
    let mut key: MasterKey = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    aws_lc_rs::rand::fill(&mut key[..])
        .map_err(|_| BackendError::Crypto("random generator failed".into()))?;
    // The default folder (beside the data folder) may not exist yet on first start.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| io_err(parent, e))?;
    }
    // create_new: never overwrite a key someone else just wrote.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    file.write_all(&key[..]).map_err(|e| io_err(path, e))?;
    file.sync_all().map_err(|e| io_err(path, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    tracing::info!(path = %path.display(), "created a new vault master key file");
    Ok(key)
}
