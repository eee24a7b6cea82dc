//! Configuration: TOML (via the `config` crate) with `KMIP_GATEWAY__SECTION__KEY` environment
//! overrides, read into a raw serde structure and then validated into [`GatewayConfig`], whose
//! every field is known good. `deploy/config/gateway.example.toml` documents every key.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Default KMIP port (IANA-registered for KMIP over TLS).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5696";
/// Default admin listener (metrics, health): loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9696";
/// Default data folder of the embedded configuration, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "kmip-gateway-data";
/// Default cap on open client connections: bounds memory and file descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default cap on open connections from one source address (an IPv4 address, an IPv6 /64):
/// one misbehaving or hostile host cannot take every connection slot. A storage array or
/// hypervisor cluster opens a handful; 64 leaves room for a few clients behind one NAT, and
/// takes a hundred and fifty sources to fill `DEFAULT_MAX_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 64;
/// Default cap on connections still in the TLS handshake, all sources together: idle or slow
/// sockets cannot hold the connection slots (and the handshake's CPU) of every client; a real
/// client finishes its handshake in milliseconds, so a few hundred at once is a reconnect storm.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;
/// Default cap on connections still in the TLS handshake from one source: one host cannot take
/// the handshake slots of all others (it takes eight sources to fill `DEFAULT_MAX_HANDSHAKES`),
/// while a host reconnecting a few dozen connections at once (a cluster behind one address after
/// a restart) is not refused.
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 32;
/// Default time a client has to finish the TLS handshake: stops half-open connections from holding
/// a handshake slot for long.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default budget of request bytes held in memory by all connections together (message buffers
/// as they fill): bounds what many clients sending large or unfinished messages can make the
/// gateway hold, at 64 messages of the default `max_message_size`.
pub const DEFAULT_MAX_INFLIGHT_REQUEST_BYTES: usize = 64 << 20;
/// Default time to receive the rest of a message once its first byte arrived: defeats slowloris.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a connection may sit idle between requests before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time in-flight requests get to finish after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default upper bound on batch items in one request: bounds the work one message can ask for.
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 1_000;
/// Default time a request waits for a pooled HSM session before failing with Operation Failed.
pub const DEFAULT_PKCS11_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of cached Locate results: bounds the cache's bookkeeping (each entry holds one
/// identifier list).
pub const DEFAULT_LOCATE_CACHE_ENTRIES: usize = 10_000;
/// Default bytes of cached Locate results (identifier lists and their keys): bounds the cache's
/// memory whatever the size of the results.
pub const DEFAULT_LOCATE_CACHE_BYTES: usize = 64 << 20;
/// Default PKCS#11 session pool size: SoftHSM gains nothing past a few sessions.
pub const DEFAULT_PKCS11_POOL_SIZE: u32 = 4;
/// Default cap on identifiers in one Locate answer, applied also when the client asks for more
/// or sets no Maximum Items: bounds the memory, the response and the cache entry one Locate
/// makes (clients page with Offset Items; Located Items still gives the full count).
pub const DEFAULT_MAX_LOCATE_RESULTS: usize = 10_000;
/// Default cap on live (not destroyed) objects one user owns: one client cannot fill the store,
/// the backend or the token for everyone (Create, Register and ReKey fail beyond it).
pub const DEFAULT_MAX_OBJECTS_PER_USER: usize = 100_000;
/// File name of the admin token the embedded default creates in its data folder.
pub const DEFAULT_ADMIN_TOKEN_FILE: &str = "admin.token";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    tls: Option<RawTls>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    limits: RawLimits,
    backend: Option<RawBackend>,
    admin: Option<RawAdmin>,
    revocation: Option<RawRevocation>,
    /// Access policy embedded in this file (`[[policy.users]]`, `[[policy.rules]]`, …).
    policy: Option<kmip_policy::PolicyConfig>,
    /// Or: a standalone policy file (see `deploy/config/policy.example.toml`).
    policy_file: Option<PathBuf>,
    locate_cache: Option<RawLocateCache>,
    audit: Option<RawAudit>,
    capture_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    cas: Vec<PathBuf>,
    #[serde(default)]
    crls: Vec<PathBuf>,
    direct_issuer_only: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_message_size: Option<usize>,
    max_depth: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_source: Option<usize>,
    max_batch_items: Option<usize>,
    handshake_timeout_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    max_locate_results: Option<usize>,
    max_objects_per_user: Option<usize>,
    max_handshakes: Option<usize>,
    max_handshakes_per_source: Option<usize>,
    max_inflight_request_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    kind: String,
    master_key_file: Option<PathBuf>,
    master_key_env: Option<String>,
    head_file: Option<PathBuf>,
    module: Option<PathBuf>,
    token_label: Option<String>,
    pin_file: Option<PathBuf>,
    pin_env: Option<String>,
    pool_size: Option<u32>,
    acquire_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    enabled: Option<bool>,
    dir: Option<PathBuf>,
    max_file_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocateCache {
    max_entries: Option<usize>,
    max_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token_file: Option<PathBuf>,
    metrics_require_token: Option<bool>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

/// `[admin]` besides the listen address: who may use the admin listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// The bearer token file (0600; created with a random token when missing). `None`: no token,
    /// so `/reload` and `/clients` are refused.
    pub token_file: Option<PathBuf>,
    /// Whether `/metrics` also needs the token (`/healthz` and `/readyz` never do: probes).
    pub metrics_require_token: bool,
    /// Host header values accepted besides `localhost` and the listener's own IP address
    /// (lowercase, no port): the names scrapers use, e.g. a Kubernetes Service name.
    pub allowed_hosts: Vec<String>,
}

/// The audit trail: hash-chained JSON lines, rotated by size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub max_file_bytes: u64,
}

/// Default size at which an audit file is rotated: keeps each file easy to ship and verify.
pub const DEFAULT_AUDIT_FILE_BYTES: u64 = 64 << 20;
/// Smallest rotation size accepted: one record must always fit in a file.
pub const MIN_AUDIT_FILE_BYTES: u64 = 1 << 20;

/// Where the access policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// No policy configured: every configured user may do everything on the objects it created,
    /// and sees nothing else.
    OwnerOnly,
    Inline(kmip_policy::PolicyConfig),
    File(PathBuf),
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: TlsFiles,
    pub users: Vec<UserConfig>,
    pub limits: LimitsConfig,
    pub backend: BackendConfig,
    pub admin_listen: Option<SocketAddr>,
    pub admin: AdminConfig,
    pub revocation: RevocationConfig,
    pub policy: PolicySource,
    /// Bounds of the Locate cache.
    pub locate_cache: LocateCacheConfig,
    /// The audit trail; `None` when disabled.
    pub audit: Option<AuditConfig>,
    /// Wire capture folder (see [`crate::tooling::capture`]); `None` when off. Start-only.
    pub capture_dir: Option<PathBuf>,
    /// Whether this is the embedded default (development PKI created on first start).
    pub embedded_default: bool,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub name: String,
    pub cas: Vec<PathBuf>,
    /// CRLs checked for this user's certificates, besides `[revocation] crls`.
    pub crls: Vec<PathBuf>,
    /// The client certificate must be signed by one of `cas` itself, not by an intermediate
    /// below it: trusting a root then does not mean trusting every CA that root certified.
    pub direct_issuer_only: bool,
}

/// `[[users]] direct_issuer_only` when not set: off, so a chain through intermediates to a
/// user's CA is accepted as before (the FlashArray's own chains are root + leaf anyway).
pub const DEFAULT_DIRECT_ISSUER_ONLY: bool = false;
/// `[locate_cache]`: the cache is bounded by entries and by bytes; 0 in either disables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocateCacheConfig {
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for LocateCacheConfig {
    fn default() -> Self {
        LocateCacheConfig {
            max_entries: DEFAULT_LOCATE_CACHE_ENTRIES,
            max_bytes: DEFAULT_LOCATE_CACHE_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsConfig {
    pub max_message_size: usize,
    pub max_depth: usize,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub max_batch_items: usize,
    pub handshake_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_locate_results: usize,
    pub max_objects_per_user: usize,
    /// Connections still in the TLS handshake, all sources together.
    pub max_handshakes: usize,
    /// Connections still in the TLS handshake from one source.
    pub max_handshakes_per_source: usize,
    /// Request bytes all connections together may hold while receiving messages.
    pub max_inflight_request_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_size: kmip_wire::ttlv::DEFAULT_MAX_MESSAGE_SIZE,
            max_depth: kmip_wire::ttlv::DEFAULT_MAX_DEPTH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_locate_results: DEFAULT_MAX_LOCATE_RESULTS,
            max_objects_per_user: DEFAULT_MAX_OBJECTS_PER_USER,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_handshakes_per_source: DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            max_inflight_request_bytes: DEFAULT_MAX_INFLIGHT_REQUEST_BYTES,
        }
    }
}

/// Where the master key of the file vault comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterKeyConfig {
    /// A 0600 file, created with a random key on first start.
    File(PathBuf),
    /// An environment variable holding the key in hex.
    Env(String),
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
}

impl GatewayConfig {
    /// The embedded default: loopback listener, data and a development PKI under `data_dir`,
    /// the user `purefa` trusted through that PKI's CA, the file vault.
    pub fn embedded(data_dir: &Path) -> GatewayConfig {
        let pki = data_dir.join("pki");
        GatewayConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5696))),
            data_dir: data_dir.to_path_buf(),
            tls: TlsFiles {
                cert: pki.join("server.pem"),
                key: pki.join("server.key"),
            },
            users: vec![UserConfig {
                name: "purefa".into(),
                cas: vec![pki.join("ca.pem")],
                crls: Vec::new(),
                direct_issuer_only: DEFAULT_DIRECT_ISSUER_ONLY,
            }],
            limits: LimitsConfig::default(),
            backend: vault_backend(data_dir, None, None),
            admin_listen: DEFAULT_ADMIN_LISTEN.parse().ok(),
            admin: AdminConfig {
                token_file: Some(data_dir.join(DEFAULT_ADMIN_TOKEN_FILE)),
                ..AdminConfig::default()
            },
            revocation: RevocationConfig::default(),
            policy: PolicySource::OwnerOnly,
            locate_cache: LocateCacheConfig::default(),
            audit: Some(AuditConfig {
                dir: data_dir.join("audit"),
                max_file_bytes: DEFAULT_AUDIT_FILE_BYTES,
            }),
            capture_dir: None,
            embedded_default: true,
        }
    }

    /// Reads and validates a configuration file, with environment overrides
    /// (`KMIP_GATEWAY__LIMITS__MAX_CONNECTIONS=100`). Relative paths are taken from the file's folder.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("KMIP_GATEWAY")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()?
            .try_deserialize()?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate(raw, base)
    }

    /// Validates a TOML document given as a string (tests, `check-config` on stdin).
    pub fn from_toml_str(toml: &str, base: &Path) -> Result<GatewayConfig, ConfigError> {
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        validate(raw, base)
    }
}

fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| invalid(key, format!("'{s}' is not an address like 127.0.0.1:5696")))
}

fn positive(key: &str, v: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match v {
        Some(0) => Err(invalid(key, "must be greater than zero")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

fn millis(key: &str, v: Option<u64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        Some(0) => Err(invalid(key, "must be greater than zero")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Ok(default),
    }
}

/// A CN a user may be named by: non-empty, no wildcard, printable.
pub fn valid_user_name(name: &str) -> bool {
    !name.trim().is_empty() && !name.contains('*') && !name.chars().any(char::is_control)
}

fn validate(raw: RawConfig, base: &Path) -> Result<GatewayConfig, ConfigError> {
    let listen = addr("listen", raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
    let data_dir = resolve(
        base,
        raw.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
    );
    let tls = raw
        .tls
        .ok_or_else(|| invalid("tls", "missing: [tls] cert and key are required"))?;
    let tls = TlsFiles {
        cert: resolve(base, tls.cert),
        key: resolve(base, tls.key),
    };
    if raw.users.is_empty() {
        return Err(invalid("users", "no [[users]]: nobody could connect"));
    }
    let mut users = Vec::with_capacity(raw.users.len());
    for (i, u) in raw.users.into_iter().enumerate() {
        let key = format!("users[{i}]");
        if !valid_user_name(&u.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("'{}' is empty, a wildcard or not printable", u.name),
            ));
        }
        if users.iter().any(|x: &UserConfig| x.name == u.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("user '{}' is listed twice", u.name),
            ));
        }
        if u.cas.is_empty() {
            return Err(invalid(
                format!("{key}.cas"),
                "at least one trusted CA is required",
            ));
        }
        users.push(UserConfig {
            name: u.name,
            cas: u.cas.into_iter().map(|p| resolve(base, p)).collect(),
            crls: u.crls.into_iter().map(|p| resolve(base, p)).collect(),
            direct_issuer_only: u.direct_issuer_only.unwrap_or(DEFAULT_DIRECT_ISSUER_ONLY),
        });
    }
    let l = raw.limits;
    let limits = LimitsConfig {
        max_message_size: positive(
            "limits.max_message_size",
            l.max_message_size,
            kmip_wire::ttlv::DEFAULT_MAX_MESSAGE_SIZE,
        )?,
        max_depth: positive(
            "limits.max_depth",
            l.max_depth,
            kmip_wire::ttlv::DEFAULT_MAX_DEPTH,
        )?,
        max_connections: positive(
            "limits.max_connections",
            l.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        )?,
        max_connections_per_source: positive(
            "limits.max_connections_per_source",
            l.max_connections_per_source,
            DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
        )?,
        max_batch_items: positive(
            "limits.max_batch_items",
            l.max_batch_items,
            DEFAULT_MAX_BATCH_ITEMS,
        )?,
        handshake_timeout: millis(
            "limits.handshake_timeout_ms",
            l.handshake_timeout_ms,
            DEFAULT_HANDSHAKE_TIMEOUT,
        )?,
        read_timeout: millis(
            "limits.read_timeout_ms",
            l.read_timeout_ms,
            DEFAULT_READ_TIMEOUT,
        )?,
        idle_timeout: millis(
            "limits.idle_timeout_ms",
            l.idle_timeout_ms,
            DEFAULT_IDLE_TIMEOUT,
        )?,
        shutdown_grace: millis(
            "limits.shutdown_grace_ms",
            l.shutdown_grace_ms,
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        max_locate_results: positive(
            "limits.max_locate_results",
            l.max_locate_results,
            DEFAULT_MAX_LOCATE_RESULTS,
        )?,
        max_objects_per_user: positive(
            "limits.max_objects_per_user",
            l.max_objects_per_user,
            DEFAULT_MAX_OBJECTS_PER_USER,
        )?,
        max_handshakes: positive(
            "limits.max_handshakes",
            l.max_handshakes,
            DEFAULT_MAX_HANDSHAKES,
        )?,
        max_handshakes_per_source: positive(
            "limits.max_handshakes_per_source",
            l.max_handshakes_per_source,
            DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
        )?,
        max_inflight_request_bytes: positive(
            "limits.max_inflight_request_bytes",
            l.max_inflight_request_bytes,
            DEFAULT_MAX_INFLIGHT_REQUEST_BYTES,
        )?,
    };
    if limits.max_inflight_request_bytes < limits.max_message_size {
        return Err(invalid(
            "limits.max_inflight_request_bytes",
            "must be at least limits.max_message_size, or a largest message could never be read",
        ));
    }
    if limits.max_batch_items > kmip_wire::model::MAX_BATCH_ITEMS {
        return Err(invalid(
            "limits.max_batch_items",
            format!(
                "at most {} (the message model's own bound)",
                kmip_wire::model::MAX_BATCH_ITEMS
            ),
        ));
    }
    if limits.max_message_size < 64 {
        return Err(invalid(
            "limits.max_message_size",
            "must be at least 64 bytes",
        ));
    }
    let backend = match raw.backend {
        None => vault_backend(&data_dir, None, None),
        Some(b) => backend_config(b, base, &data_dir)?,
    };
    let (admin_listen, admin) = admin_config(raw.admin, base)?;
    let policy = match (raw.policy, raw.policy_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "policy_file",
                "give [policy] or policy_file, not both",
            ))
        }
        (Some(inline), None) => PolicySource::Inline(inline),
        (None, Some(file)) => PolicySource::File(resolve(base, file)),
        (None, None) => PolicySource::OwnerOnly,
    };
    let locate_cache = LocateCacheConfig {
        max_entries: raw
            .locate_cache
            .as_ref()
            .and_then(|c| c.max_entries)
            .unwrap_or(DEFAULT_LOCATE_CACHE_ENTRIES),
        max_bytes: raw
            .locate_cache
            .as_ref()
            .and_then(|c| c.max_bytes)
            .unwrap_or(DEFAULT_LOCATE_CACHE_BYTES),
    };
    let audit = match raw.audit {
        Some(RawAudit {
            enabled: Some(false),
            ..
        }) => None,
        Some(a) => Some(AuditConfig {
            dir: a
                .dir
                .map(|d| resolve(base, d))
                .unwrap_or_else(|| data_dir.join("audit")),
            max_file_bytes: match a.max_file_bytes {
                Some(n) if n < MIN_AUDIT_FILE_BYTES => {
                    return Err(invalid(
                        "audit.max_file_bytes",
                        format!("must be at least {MIN_AUDIT_FILE_BYTES} bytes"),
                    ))
                }
                Some(n) => n,
                None => DEFAULT_AUDIT_FILE_BYTES,
            },
        }),
        None => Some(AuditConfig {
            dir: data_dir.join("audit"),
            max_file_bytes: DEFAULT_AUDIT_FILE_BYTES,
        }),
    };
    Ok(GatewayConfig {
        listen,
        data_dir,
        tls,
        users,
        limits,
        backend,
        admin_listen,
        admin,
        revocation: revocation_config(raw.revocation, base)?,
        policy,
        locate_cache,
        audit,
        capture_dir: raw.capture_dir.map(|d| resolve(base, d)),
        embedded_default: false,
    })
}

/// A Host header name: letters, digits, `-` and `.` (no port, no wildcard).
fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn admin_config(
    raw: Option<RawAdmin>,
    base: &Path,
) -> Result<(Option<SocketAddr>, AdminConfig), ConfigError> {
    let Some(raw) = raw else {
        return Ok((
            Some(addr("admin.listen", DEFAULT_ADMIN_LISTEN)?),
            AdminConfig::default(),
        ));
    };
    let listen = match raw.listen.as_deref() {
        Some("off") => None,
        Some(s) => Some(addr("admin.listen", s)?),
        None => Some(addr("admin.listen", DEFAULT_ADMIN_LISTEN)?),
    };
    let token_file = raw.token_file.map(|f| resolve(base, f));
    let metrics_require_token = raw.metrics_require_token.unwrap_or(false);
    if metrics_require_token && token_file.is_none() {
        return Err(invalid(
            "admin.metrics_require_token",
            "needs admin.token_file: without a token nobody could read /metrics",
        ));
    }
    let mut allowed_hosts = Vec::with_capacity(raw.allowed_hosts.len());
    for (i, h) in raw.allowed_hosts.iter().enumerate() {
        let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
        if !valid_host_name(&h) {
            return Err(invalid(
                format!("admin.allowed_hosts[{i}]"),
                format!("'{h}' is not a host name (no port, no wildcard)"),
            ));
        }
        allowed_hosts.push(h);
    }
    Ok((
        listen,
        AdminConfig {
            token_file,
            metrics_require_token,
            allowed_hosts,
        },
    ))
}

/// Name of the vault's master key file in its default folder.
pub const DEFAULT_MASTER_KEY_FILE: &str = "master.key";
/// Name of the vault's chain head file in its default folder.
pub const DEFAULT_HEAD_FILE: &str = "vault.head";

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
fn vault_backend(
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
    let head = head.unwrap_or_else(|| match &master_key {
        MasterKeyConfig::File(p) => p
            .parent()
            .map_or_else(|| secrets.clone(), Path::to_path_buf)
            .join(DEFAULT_HEAD_FILE),
        MasterKeyConfig::Env(_) => secrets.join(DEFAULT_HEAD_FILE),
    });
    BackendConfig::Vault {
        dir: data_dir.join("vault"),
        master_key,
        head,
    }
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

fn backend_config(
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
            format!("'{other}' is not one of \"vault\", \"pkcs11\""),
        )),
    }
}

/// `[revocation]`: CRLs for every user and a deny-list checked after the handshake.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    #[serde(default)]
    crls: Vec<PathBuf>,
    #[serde(default)]
    deny_serials: Vec<String>,
    #[serde(default)]
    deny_fingerprints: Vec<String>,
    close_revoked_connections: Option<bool>,
}

/// Validated `[revocation]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// CRL files (PEM, one or more CRLs each) checked for every user's certificates.
    pub crls: Vec<PathBuf>,
    /// Refused certificate serials: lowercase hex, no separators or leading zero bytes.
    pub deny_serials: Vec<String>,
    /// Refused certificates by SHA-256 of their DER: 64 lowercase hex digits.
    pub deny_fingerprints: Vec<String>,
    /// Whether a reload closes open connections whose certificate no longer passes.
    pub close_revoked_connections: bool,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            crls: Vec::new(),
            deny_serials: Vec::new(),
            deny_fingerprints: Vec::new(),
            close_revoked_connections: true,
        }
    }
}

/// Normalises a serial as `openssl x509 -serial` or `pki list` print it (`0x`, `:` allowed).
pub fn normalize_serial(text: &str) -> Option<String> {
    crate::tooling::pki::Serial::from_hex(text)
        .ok()
        .map(|s| s.to_hex())
}

/// Normalises a SHA-256 fingerprint (`AB:CD:...` or plain hex) to 64 lowercase hex digits.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

fn revocation_config(
    raw: Option<RawRevocation>,
    base: &Path,
) -> Result<RevocationConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let mut deny_serials = Vec::with_capacity(raw.deny_serials.len());
    for (i, s) in raw.deny_serials.iter().enumerate() {
        deny_serials.push(normalize_serial(s).ok_or_else(|| {
            invalid(
                format!("revocation.deny_serials[{i}]"),
                format!("'{s}' is not a certificate serial in hex"),
            )
        })?);
    }
    let mut deny_fingerprints = Vec::with_capacity(raw.deny_fingerprints.len());
    for (i, f) in raw.deny_fingerprints.iter().enumerate() {
        deny_fingerprints.push(normalize_fingerprint(f).ok_or_else(|| {
            invalid(
                format!("revocation.deny_fingerprints[{i}]"),
                format!("'{f}' is not a SHA-256 fingerprint (64 hex digits)"),
            )
        })?);
    }
    Ok(RevocationConfig {
        crls: raw.crls.into_iter().map(|p| resolve(base, p)).collect(),
        deny_serials,
        deny_fingerprints,
        close_revoked_connections: raw.close_revoked_connections.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
listen = "127.0.0.1:0"
[tls]
cert = "server.pem"
key = "server.key"
[[users]]
name = "purefa"
cas = ["ca.pem"]
"#;

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/etc/kg")).unwrap();
        assert_eq!(c.tls.cert, Path::new("/etc/kg/server.pem"));
        assert_eq!(c.users[0].cas[0], Path::new("/etc/kg/ca.pem"));
        assert_eq!(c.limits.max_message_size, 1 << 20);
        assert!(matches!(c.backend, BackendConfig::Vault { .. }));
        assert_eq!(c.capture_dir, None);
        let c = GatewayConfig::from_toml_str(
            &format!("capture_dir = \"capture\"\n{MINIMAL}"),
            Path::new("/etc/kg"),
        )
        .unwrap();
        assert_eq!(c.capture_dir.as_deref(), Some(Path::new("/etc/kg/capture")));
    }

    #[test]
    fn result_and_object_limits_are_read_and_validated() {
        let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
        assert_eq!(c.limits.max_locate_results, DEFAULT_MAX_LOCATE_RESULTS);
        assert_eq!(c.limits.max_objects_per_user, DEFAULT_MAX_OBJECTS_PER_USER);
        let c = GatewayConfig::from_toml_str(
            &format!("{MINIMAL}[limits]\nmax_locate_results = 50\nmax_objects_per_user = 7\n"),
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(
            (c.limits.max_locate_results, c.limits.max_objects_per_user),
            (50, 7)
        );
        for key in ["max_locate_results", "max_objects_per_user"] {
            let e = error_of(&format!("{MINIMAL}[limits]\n{key} = 0\n"));
            assert!(e.starts_with(&format!("limits.{key}")), "{e}");
        }
    }

    #[test]
    fn connection_and_memory_limits_default_and_are_checked() {
        let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
        assert_eq!(c.limits.max_connections_per_source, 64);
        assert_eq!(c.limits.max_handshakes, 256);
        assert_eq!(c.limits.max_handshakes_per_source, 32);
        assert_eq!(c.limits.handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.max_inflight_request_bytes, 64 << 20);
        assert_eq!(c.locate_cache, LocateCacheConfig::default());
        let c = GatewayConfig::from_toml_str(
            &format!("{MINIMAL}[limits]\nmax_handshakes = 8\nmax_handshakes_per_source = 2\nmax_inflight_request_bytes = 2097152\n[locate_cache]\nmax_bytes = 4096\n"),
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(
            (c.limits.max_handshakes, c.limits.max_handshakes_per_source),
            (8, 2)
        );
        assert_eq!(c.limits.max_inflight_request_bytes, 2 << 20);
        assert_eq!(c.locate_cache.max_bytes, 4096);
        for key in [
            "max_handshakes",
            "max_handshakes_per_source",
            "max_inflight_request_bytes",
        ] {
            assert!(error_of(&format!("{MINIMAL}[limits]\n{key} = 0\n"))
                .starts_with(&format!("limits.{key}")));
        }
        assert!(error_of(&format!(
            "{MINIMAL}[limits]\nmax_inflight_request_bytes = 1000\n"
        ))
        .starts_with("limits.max_inflight_request_bytes"));
    }

    fn vault_of(c: &GatewayConfig) -> (PathBuf, MasterKeyConfig, PathBuf) {
        match &c.backend {
            BackendConfig::Vault {
                dir,
                master_key,
                head,
            } => (dir.clone(), master_key.clone(), head.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_vault_key_and_head_default_outside_the_data_folder() {
        let c = GatewayConfig::from_toml_str(
            &format!("data_dir = \"/var/lib/kg/\"\n{MINIMAL}"),
            Path::new("/etc/kg"),
        )
        .unwrap();
        let (dir, key, head) = vault_of(&c);
        assert_eq!(dir, Path::new("/var/lib/kg/vault"));
        assert_eq!(
            key,
            MasterKeyConfig::File("/var/lib/kg-secrets/master.key".into())
        );
        assert_eq!(head, Path::new("/var/lib/kg-secrets/vault.head"));
        assert_eq!(c.vault_key_warning(), None);
        // A key from the environment: the head still goes beside the data folder, not in it.
        let c = GatewayConfig::from_toml_str(
            &format!(
                "data_dir = \"/d\"\n{MINIMAL}[backend]\nkind = \"vault\"\nmaster_key_env = \"K\"\n"
            ),
            Path::new("/etc/kg"),
        )
        .unwrap();
        assert_eq!(vault_of(&c).2, Path::new("/d-secrets/vault.head"));
        // An explicit key file: the head beside it, unless head_file says otherwise.
        let c = GatewayConfig::from_toml_str(
            &format!("data_dir = \"/d\"\n{MINIMAL}[backend]\nkind = \"vault\"\nmaster_key_file = \"/etc/kg/k/master.key\"\nhead_file = \"/var/lib/h/vault.head\"\n"),
            Path::new("/etc/kg"),
        )
        .unwrap();
        assert_eq!(vault_of(&c).2, Path::new("/var/lib/h/vault.head"));
        assert!(error_of(&format!(
            "data_dir = \"/d\"\n{MINIMAL}[backend]\nkind = \"vault\"\nhead_file = \"/d/vault.head\"\n"
        ))
        .starts_with("backend.head_file"));
    }

    #[test]
    fn a_key_file_left_in_the_data_folder_is_used_with_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("vault")).unwrap();
        std::fs::write(legacy_master_key_path(&data), [0u8; 32]).unwrap();
        for c in [
            GatewayConfig::embedded(&data),
            GatewayConfig::from_toml_str(
                &format!("data_dir = {:?}\n{MINIMAL}", data.display().to_string()),
                Path::new("/etc/kg"),
            )
            .unwrap(),
        ] {
            let (_, key, head) = vault_of(&c);
            assert_eq!(key, MasterKeyConfig::File(legacy_master_key_path(&data)));
            assert_eq!(head, data.join("vault/vault.head"));
            let warning = c.vault_key_warning().unwrap();
            assert!(
                warning.contains("inside the data folder") && warning.contains("data-secrets"),
                "{warning}"
            );
        }
        let fresh = tmp.path().join("fresh");
        let (_, key, _) = vault_of(&GatewayConfig::embedded(&fresh));
        assert_eq!(
            key,
            MasterKeyConfig::File(tmp.path().join("fresh-secrets/master.key"))
        );
    }

    fn error_of(toml: &str) -> String {
        GatewayConfig::from_toml_str(toml, Path::new("/x"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(error_of(&MINIMAL.replace("purefa", "*.example.com")).starts_with("users[0].name"));
        assert!(
            error_of(&format!("{MINIMAL}[limits]\nmax_connections = 0\n"))
                .starts_with("limits.max_connections")
        );
        assert!(error_of(&format!(
            "{MINIMAL}[limits]\nmax_connections_per_source = 0\n"
        ))
        .starts_with("limits.max_connections_per_source"));
        assert!(
            error_of(&format!("{MINIMAL}[backend]\nkind = \"hsm\"\n")).starts_with("backend.kind")
        );
        assert!(error_of(&format!(
            "{MINIMAL}[backend]\nkind = \"pkcs11\"\nmodule = \"/m.so\"\n"
        ))
        .starts_with("backend.token_label"));
        assert!(error_of(&MINIMAL.replace("127.0.0.1:0", "nowhere")).starts_with("listen"));
        assert!(error_of(&format!("{MINIMAL}bogus = 1\n")).contains("bogus"));
        assert!(error_of(&format!(
            "{MINIMAL}[[users]]\nname = \"purefa\"\ncas = [\"b.pem\"]\n"
        ))
        .contains("twice"));
        assert!(
            error_of(&format!("{MINIMAL}[admin]\nmetrics_require_token = true\n"))
                .starts_with("admin.metrics_require_token")
        );
        assert!(
            error_of(&format!("{MINIMAL}[admin]\nallowed_hosts = [\"a:80\"]\n"))
                .starts_with("admin.allowed_hosts[0]")
        );
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let c = GatewayConfig::from_toml_str(
            include_str!("../../deploy/config/gateway.example.toml"),
            Path::new("/etc/kmip-gateway"),
        )
        .unwrap();
        assert!(c.admin.token_file.is_some());
    }

    #[test]
    fn admin_section_is_resolved() {
        let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
        assert_eq!(c.admin, AdminConfig::default());
        let c = GatewayConfig::from_toml_str(
            &format!("{MINIMAL}[admin]\ntoken_file = \"admin.token\"\nallowed_hosts = [\"Gw.NS.svc.\"]\nmetrics_require_token = true\n"),
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(
            c.admin.token_file.as_deref(),
            Some(Path::new("/x/admin.token"))
        );
        assert_eq!(c.admin.allowed_hosts, ["gw.ns.svc"]);
        assert!(c.admin.metrics_require_token);
        assert_eq!(c.admin_listen, DEFAULT_ADMIN_LISTEN.parse().ok());
        let e = GatewayConfig::embedded(Path::new("/d"));
        assert_eq!(
            e.admin.token_file.as_deref(),
            Some(Path::new("/d/admin.token"))
        );
    }

    #[test]
    fn revocation_section_is_normalised_and_checked() {
        let c = GatewayConfig::from_toml_str(MINIMAL, Path::new("/x")).unwrap();
        assert_eq!(c.revocation, RevocationConfig::default());
        assert!(c.revocation.close_revoked_connections);
        assert!(c.users[0].crls.is_empty());
        assert!(!c.users[0].direct_issuer_only);
        let fp = "AB:".repeat(31) + "AB";
        let c = GatewayConfig::from_toml_str(
            &format!(
                "{}crls = [\"u.crl\"]\n[revocation]\ncrls = [\"all.crl\"]\ndeny_serials = [\"0x00:1A:2b\"]\ndeny_fingerprints = [\"{fp}\"]\nclose_revoked_connections = false\n",
                MINIMAL.trim_end().to_owned() + "\n"
            ),
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(c.users[0].crls, [Path::new("/x/u.crl")]);
        assert_eq!(c.revocation.crls, [Path::new("/x/all.crl")]);
        assert_eq!(c.revocation.deny_serials, ["1a2b"]);
        assert_eq!(c.revocation.deny_fingerprints, ["ab".repeat(32)]);
        assert!(!c.revocation.close_revoked_connections);
        assert!(error_of(&format!(
            "{MINIMAL}[revocation]\ndeny_serials = [\"xyz\"]\n"
        ))
        .starts_with("revocation.deny_serials[0]"));
        assert!(error_of(&format!(
            "{MINIMAL}[revocation]\ndeny_fingerprints = [\"abcd\"]\n"
        ))
        .starts_with("revocation.deny_fingerprints[0]"));
    }

    #[test]
    fn direct_issuer_only_is_read_per_user() {
        let c = GatewayConfig::from_toml_str(
            &format!("{MINIMAL}direct_issuer_only = true\n"),
            Path::new("/x"),
        )
        .unwrap();
        assert!(c.users[0].direct_issuer_only);
        assert!(
            error_of(&format!("{MINIMAL}direct_issuer_only = \"maybe\"\n"))
                .contains("direct_issuer_only")
        );
    }

    #[test]
    fn pkcs11_backend_is_validated() {
        let c = GatewayConfig::from_toml_str(
            &format!("{MINIMAL}[backend]\nkind = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"kmip\"\npin_env = \"PIN\"\n"),
            Path::new("/x"),
        )
        .unwrap();
        match c.backend {
            BackendConfig::Pkcs11 {
                token_label,
                pool_size,
                ..
            } => {
                assert_eq!(token_label, "kmip");
                assert_eq!(pool_size, DEFAULT_PKCS11_POOL_SIZE);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
