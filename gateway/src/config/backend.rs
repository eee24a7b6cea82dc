//! `[backend]`: the file vault (its master key and chain head, by default outside the data
//! folder) or a PKCS#11 token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmip_wire::model::ProtocolVersion;

use super::defaults::{
    DEFAULT_HEAD_FILE, DEFAULT_MASTER_KEY_FILE, DEFAULT_PKCS11_ACQUIRE_TIMEOUT,
    DEFAULT_PKCS11_POOL_SIZE,
};
use super::raw::RawBackend;
use super::{invalid, millis, resolve, ConfigError, GatewayConfig};

/// Where the master key of the file vault comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterKeyConfig {
    /// A 0600 file, created with a random key on first start.
    File(PathBuf),
    /// An environment variable holding the key in hex.
    Env(String),
}

/// Where the database password comes from: never the URL.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordConfig {
    /// A private file holding the password (surrounding white space ignored).
    File(PathBuf),
    /// An environment variable, read and removed from the environment at start.
    Env(String),
    /// No password (certificate or peer authentication).
    None,
}

/// A key encryption key of the postgres backend.
#[derive(Debug, Clone, PartialEq)]
pub enum KekConfig {
    /// A private (0600) file holding the key as 64 hex digits.
    File(PathBuf),
    /// An environment variable holding the key as 64 hex digits.
    Env(String),
    /// An AES key on a PKCS#11 token, which wraps and unwraps inside the token.
    Pkcs11 {
        module: PathBuf,
        token_label: String,
        pin: PinConfig,
        key_label: String,
    },
}

/// When a gateway on a shared backend (`kind = "postgres"`) catches up with the writes other
/// gateways committed, so that a client sees its own writes whichever gateway serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadYourWrites {
    /// Before each request message: a client acknowledged by one gateway and then served by
    /// another, on a new connection or not, sees its write. One catch-up per message
    /// (concurrent messages share one).
    #[default]
    Request,
    /// Once per connection, before its first message: cheaper, and enough for clients that
    /// open a new connection for each step (a write on one gateway is then seen on the next
    /// connection to another), but not for one connection spread over several gateways.
    Connection,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PinConfig {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum BackendConfig {
    Vault {
        dir: PathBuf,
        master_key: MasterKeyConfig,
        /// The vault's chain head (rollback detection): outside `data_dir`, where a copy of the
        /// data folder cannot roll it back.
        head: PathBuf,
    },
    Pkcs11 {
        module: PathBuf,
        token_label: String,
        pin: PinConfig,
        pool_size: u32,
        acquire_timeout: Duration,
    },
    /// PostgreSQL, shared by several gateways (`config/postgres.rs`).
    Postgres {
        /// A libpq URI without a password.
        url: String,
        password: PasswordConfig,
        /// The CAs of the database server's certificate; `None` only with `sslmode=disable`.
        ca: Option<PathBuf>,
        pool_size: u32,
        acquire_timeout: Duration,
        connect_timeout: Duration,
        read_your_writes: ReadYourWrites,
        /// The key encryption key new data keys are wrapped with.
        kek: KekConfig,
        /// Older KEKs still accepted to unwrap, until `kmip-gateway kek rotate` is done.
        previous_keks: Vec<KekConfig>,
    },
    /// Other KMIP servers, the gateway in front of them (`config/upstream.rs`).
    Kmip(Box<UpstreamConfig>),
}

/// A validated `[backend] kind = "kmip"`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// `host:port` of each upstream, in priority order: the first reachable one serves.
    pub upstreams: Vec<String>,
    /// The gateway's client certificate and key, presented to every upstream.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CAs the upstreams' certificates must chain to.
    pub ca: PathBuf,
    /// The name the upstreams' certificates must carry (the host part of each upstream when
    /// not set).
    pub server_name: Option<String>,
    /// The version to speak; `None`: the highest both sides offer, by Discover Versions.
    pub version: Option<ProtocolVersion>,
    /// Connections kept per upstream.
    pub pool_size: u32,
    /// How long a request waits for a pooled connection (or a new one to open) per upstream.
    pub acquire_timeout: Duration,
    /// How long one upstream request may take before it fails.
    pub request_timeout: Duration,
    /// A connection idle this long is closed; one idle for a while is probed before reuse.
    pub idle_timeout: Duration,
    /// Time between two passes of the refresher that re-reads every mapped object's lifecycle
    /// upstream (`upstream/refresh.rs`); `None`: off, the gateway's view changes only through
    /// the gateway.
    pub refresh_interval: Option<Duration>,
    /// `mode = "migrate"`: where new objects go (the local vault a plain vault configuration
    /// on the same data folder names, or `[backend.migrate_to]`'s database); `None`:
    /// `mode = "proxy"`, all upstream.
    pub migrate_to: Option<MigrateTarget>,
    /// The local vault holding the gateway's metadata and the upstream identifiers.
    pub map_dir: PathBuf,
    pub master_key: MasterKeyConfig,
    pub map_head: PathBuf,
}

/// A KMIP proxy's local vault in `mode = "migrate"` (its master key is the upstream map's).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalVault {
    pub dir: PathBuf,
    pub head: PathBuf,
}

/// Where a KMIP proxy in `mode = "migrate"` makes new objects and `upstream copy` puts the
/// older ones: the installation the configuration becomes once everything is there.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrateTarget {
    /// No `[backend.migrate_to]`: the local vault of the data folder.
    Vault(LocalVault),
    /// `[backend.migrate_to] kind = "postgres"`: always a [`BackendConfig::Postgres`], the
    /// `[backend]` that replaces the proxy's once `upstream copy` has moved everything.
    Postgres(Box<BackendConfig>),
}

impl BackendConfig {
    /// When requests catch up with other gateways' writes: on PostgreSQL, directly or as a
    /// migrating proxy's local side; `None` on a backend only this process opens.
    pub fn read_your_writes(&self) -> Option<ReadYourWrites> {
        match self {
            BackendConfig::Postgres {
                read_your_writes, ..
            } => Some(*read_your_writes),
            BackendConfig::Kmip(upstream) => match &upstream.migrate_to {
                Some(MigrateTarget::Postgres(local)) => local.read_your_writes(),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The default folder of the vault's master key and chain head: `<data_dir>-secrets`, a sibling
/// of the data folder, so that backups and copies of the data folder hold neither the key that
/// decrypts it nor the head that detects it being rolled back.
pub fn default_secrets_dir(data_dir: &Path) -> PathBuf {
    // Through components, so a trailing slash does not put the folder inside data_dir.
    let mut dir = data_dir.components().collect::<PathBuf>().into_os_string();
    dir.push("-secrets");
    PathBuf::from(dir)
}

/// Where the master key lived before version 2 of the vault: inside the data folder.
pub fn legacy_master_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("vault").join(DEFAULT_MASTER_KEY_FILE)
}

/// The vault backend with defaults filled in: the key at `<data_dir>-secrets/master.key`
/// unless a key file from an older install already sits in the data folder (kept, with a
/// warning: see [`GatewayConfig::vault_key_warning`]); the head next to the key file, or in
/// `<data_dir>-secrets` for a key from the environment.
pub(super) fn vault_backend(
    data_dir: &Path,
    master_key: Option<MasterKeyConfig>,
    head: Option<PathBuf>,
) -> BackendConfig {
    let secrets = default_secrets_dir(data_dir);
    let master_key = master_key.unwrap_or_else(|| {
        let legacy = legacy_master_key_path(data_dir);
        MasterKeyConfig::File(if legacy.exists() {
            legacy
        } else {
            secrets.join(DEFAULT_MASTER_KEY_FILE)
        })
    });
    let (dir, default_head) = default_vault_paths(data_dir, &master_key);
    BackendConfig::Vault {
        dir,
        master_key,
        head: head.unwrap_or(default_head),
    }
}

/// The folder and chain head of the vault on `data_dir` whose master key is `master_key`, when
/// the configuration names no head: the head beside the key file.
pub(super) fn default_vault_paths(
    data_dir: &Path,
    master_key: &MasterKeyConfig,
) -> (PathBuf, PathBuf) {
    let secrets = default_secrets_dir(data_dir);
    let head = match master_key {
        MasterKeyConfig::File(p) => p
            .parent()
            .map_or(secrets, Path::to_path_buf)
            .join(DEFAULT_HEAD_FILE),
        MasterKeyConfig::Env(_) => secrets.join(DEFAULT_HEAD_FILE),
    };
    (data_dir.join("vault"), head)
}

impl GatewayConfig {
    /// A warning for a vault master key file inside the data folder: every backup of the folder
    /// then carries the key that decrypts it, and the chain head beside it rolls back with it.
    pub fn vault_key_warning(&self) -> Option<String> {
        let BackendConfig::Vault {
            master_key: MasterKeyConfig::File(key),
            head,
            ..
        } = &self.backend
        else {
            return None;
        };
        if !key.starts_with(&self.data_dir) {
            return None;
        }
        let secrets = default_secrets_dir(&self.data_dir);
        Some(format!(
            "the vault master key {key} is inside the data folder {data}: every backup or copy \
             of that folder holds the key that decrypts it, and the vault head {head} beside it \
             can be rolled back with it. Move it out while the gateway is stopped: \
             `install -d -m 0700 {secrets} && mv {key} {head} {secrets}/` (the head may not \
             exist yet), then remove master_key_file from the configuration (or point it at \
             {secrets}/master.key)",
            key = key.display(),
            data = self.data_dir.display(),
            head = head.display(),
            secrets = secrets.display(),
        ))
    }
}

pub(super) fn backend_config(
    b: RawBackend,
    base: &Path,
    data_dir: &Path,
) -> Result<BackendConfig, ConfigError> {
    match b.kind.as_str() {
        "vault" => {
            for (set, key) in [
                (b.module.is_some(), "module"),
                (b.token_label.is_some(), "token_label"),
                (
                    b.pin_file.is_some() || b.pin_env.is_some(),
                    "pin_file/pin_env",
                ),
                (b.pool_size.is_some(), "pool_size"),
            ] {
                if set {
                    return Err(invalid(
                        format!("backend.{key}"),
                        "only applies to kind = \"pkcs11\"",
                    ));
                }
            }
            let master_key = match (b.master_key_file, b.master_key_env) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "backend.master_key_file",
                        "give master_key_file or master_key_env, not both",
                    ))
                }
                (Some(f), None) => Some(MasterKeyConfig::File(resolve(base, f))),
                (None, Some(e)) => Some(MasterKeyConfig::Env(e)),
                (None, None) => None,
            };
            let head = b.head_file.map(|h| resolve(base, h));
            if let Some(h) = head.as_ref().filter(|h| h.starts_with(data_dir)) {
                return Err(invalid(
                    "backend.head_file",
                    format!(
                        "{} is inside data_dir: a restored copy of the data folder would roll \
                         it back too; put it next to the master key",
                        h.display()
                    ),
                ));
            }
            Ok(vault_backend(data_dir, master_key, head))
        }
        "pkcs11" => {
            if b.master_key_file.is_some() || b.master_key_env.is_some() || b.head_file.is_some() {
                return Err(invalid(
                    "backend.master_key_file",
                    "only applies to kind = \"vault\"",
                ));
            }
            let module = resolve(
                base,
                b.module.ok_or_else(|| {
                    invalid("backend.module", "missing: path of the PKCS#11 library")
                })?,
            );
            let token_label = b
                .token_label
                .filter(|l| !l.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        "backend.token_label",
                        "missing: the token is found by its label",
                    )
                })?;
            let pin = match (b.pin_file, b.pin_env) {
                (Some(f), None) => PinConfig::File(resolve(base, f)),
                (None, Some(e)) => PinConfig::Env(e),
                _ => {
                    return Err(invalid(
                        "backend.pin_file",
                        "give exactly one of pin_file or pin_env",
                    ))
                }
            };
            let pool_size = match b.pool_size {
                Some(0) => return Err(invalid("backend.pool_size", "must be greater than zero")),
                Some(n) => n,
                None => DEFAULT_PKCS11_POOL_SIZE,
            };
            let acquire_timeout = millis(
                "backend.acquire_timeout_ms",
                b.acquire_timeout_ms,
                DEFAULT_PKCS11_ACQUIRE_TIMEOUT,
            )?;
            Ok(BackendConfig::Pkcs11 {
                module,
                token_label,
                pin,
                pool_size,
                acquire_timeout,
            })
        }
        other => Err(invalid(
            "backend.kind",
            format!("'{other}' is not one of \"vault\", \"pkcs11\", \"postgres\", \"kmip\""),
        )),
    }
}
