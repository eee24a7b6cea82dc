//! Whether the data folder holds an installation. `serve` refuses a missing or empty one (a
//! mistyped `data_dir` would otherwise start an empty vault, and the array's Get at boot would
//! answer Item Not Found); `init` creates it.

use std::path::{Path, PathBuf};

use kmip_backends::vault::{MasterKeySource, Vault};

use crate::config::{BackendConfig, GatewayConfig, MasterKeyConfig};

/// The file `init` leaves in the data folder: when and by which version it was created. Only
/// for the operator; a folder without it (made before `init` existed) is initialised all the
/// same if it holds a vault.
const INIT_MARKER: &str = "kmip-gateway.init";

/// Why a data folder is not an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uninitialised {
    /// The data folder does not exist.
    Missing(PathBuf),
    /// It exists but holds nothing.
    Empty(PathBuf),
    /// The configured backend is the vault and its log is not there.
    NoVault(PathBuf),
}

impl std::fmt::Display for Uninitialised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uninitialised::Missing(d) => {
                write!(f, "the data folder {} does not exist", d.display())
            }
            Uninitialised::Empty(d) => write!(f, "the data folder {} is empty", d.display()),
            Uninitialised::NoVault(log) => {
                write!(
                    f,
                    "the data folder holds no vault ({} is missing)",
                    log.display()
                )
            }
        }
    }
}

/// The vault's log file inside its directory.
fn vault_log(dir: &Path) -> PathBuf {
    dir.join("vault.log")
}

/// The vault in the data folder the configured backend keeps (its folder, master key and head):
/// the key vault, or a KMIP proxy's mapping of its objects to the upstream's (without it, every
/// object the clients stored would answer Item Not Found just the same).
fn local_vault(cfg: &GatewayConfig) -> Option<(&Path, &MasterKeyConfig, &Path)> {
    match &cfg.backend {
        BackendConfig::Vault {
            dir,
            master_key,
            head,
        } => Some((dir, master_key, head)),
        BackendConfig::Kmip(upstream) => {
            Some((&upstream.map_dir, &upstream.master_key, &upstream.map_head))
        }
        BackendConfig::Pkcs11 { .. } | BackendConfig::Postgres { .. } => None,
    }
}

/// `Ok` when `cfg`'s data folder exists, is not empty and, for the vault, holds its log.
pub fn check(cfg: &GatewayConfig) -> Result<(), Uninitialised> {
    let dir = &cfg.data_dir;
    let mut entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) if !dir.exists() => return Err(Uninitialised::Missing(dir.clone())),
        // Unreadable (permissions): let the start fail on it with the real error.
        Err(_) => return Ok(()),
    };
    if entries.next().is_none() {
        return Err(Uninitialised::Empty(dir.clone()));
    }
    if let Some((vault, _, _)) = local_vault(cfg) {
        let log = vault_log(vault);
        if !log.exists() {
            return Err(Uninitialised::NoVault(log));
        }
    }
    Ok(())
}

/// What `serve --config FILE` prints when it refuses `why`: what happened and what to run.
pub fn refusal(why: &Uninitialised, config: &Path) -> String {
    format!(
        "{why}: refusing to start, since the gateway would serve an empty key store and every \
         key the clients stored before would answer Item Not Found.\n\
         - a new installation: run `kmip-gateway init --config {c}`, then start again;\n\
         - an existing one: correct data_dir in {c}, or restore the last backup with \
         `kmip-gateway restore` (docs/operations.md, \"Restore drill\")",
        c = config.display()
    )
}

/// Creates what `check` asks for: the data folder (mode 0700) with its marker and, for the
/// vault, the vault (its master key and head too, where they are configured). An installation
/// that passes [`check`] is left as it is. Blocking. Returns what was done, for the operator.
pub fn init(cfg: &GatewayConfig) -> Result<String, String> {
    if check(cfg).is_ok() {
        return Ok(format!(
            "{} is already initialised: nothing changed\n",
            cfg.data_dir.display()
        ));
    }
    use std::os::unix::fs::DirBuilderExt;
    let dir = &cfg.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let marker = dir.join(INIT_MARKER);
    std::fs::write(
        &marker,
        format!(
            "initialised by kmip-gateway {} at unix time {}\n",
            env!("CARGO_PKG_VERSION"),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ),
    )
    .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    let mut done = format!("created the data folder {}\n", dir.display());
    if let Some((vault, master_key, head)) = local_vault(cfg) {
        let source = match master_key {
            MasterKeyConfig::File(p) => MasterKeySource::File(p.clone()),
            MasterKeyConfig::Env(name) => MasterKeySource::EnvHex(name.clone()),
        };
        // Opening a vault that does not exist creates it; dropping closes it again.
        drop(Vault::open_with_head(vault, source, head).map_err(|e| e.to_string())?);
        done.push_str(&format!(
            "created an empty vault in {}; chain head {}\n",
            vault.display(),
            head.display()
        ));
        if let MasterKeyConfig::File(key) = master_key {
            done.push_str(&format!(
                "master key {} (back it up apart from the data: docs/operations.md)\n",
                key.display()
            ));
        }
    }
    Ok(done)
}
