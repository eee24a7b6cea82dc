//! Configuration: TOML (via the `config` crate) with `KMIP_GATEWAY__SECTION__KEY` environment
//! overrides, read into a raw serde structure and then validated into [`GatewayConfig`], whose
//! every field is known good. `deploy/config/gateway.example.toml` documents every key.
//!
//! `raw` is the file as read; `validate` checks it section by section (`users`, `limits`,
//! `backend`, `admin`, `revocation`, `audit`, `log`, each with its validated types); `defaults` holds
//! the default values and what each bound protects.

mod admin;
mod audit;
mod backend;
mod defaults;
mod limits;
mod log;
mod postgres;
mod raw;
mod revocation;
mod upstream;
mod users;
mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

pub use admin::AdminConfig;
pub use audit::AuditConfig;
pub use backend::{
    default_secrets_dir, legacy_master_key_path, BackendConfig, KekConfig, LocalVault,
    MasterKeyConfig, MigrateTarget, PasswordConfig, PinConfig, ReadYourWrites, UpstreamConfig,
};
pub use defaults::*;
pub use limits::{LimitsConfig, LocateCacheConfig};
pub use log::LogFormat;
pub use revocation::{normalize_fingerprint, normalize_serial, RevocationConfig};
pub use users::{valid_user_name, TlsFiles, UserConfig};

use backend::vault_backend;
use raw::RawConfig;
use validate::validate;

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

/// Where the access policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// No policy configured: every configured user may do everything on the objects it created,
    /// and sees nothing else.
    OwnerOnly,
    Inline(kmip_policy::PolicyConfig),
    File(PathBuf),
}

/// The issuing CA of KMIP Certify (PEM files). It must be its own CA: start refuses one whose
/// key is the listener's or whose certificate is trusted for client logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifyCaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    /// `[https] listen`: the KMIP-over-HTTPS listener (`POST /kmip`); `None` (the default): off.
    pub https_listen: Option<SocketAddr>,
    pub admin: AdminConfig,
    pub revocation: RevocationConfig,
    /// `[pki] dir`: the gateway's own CA folder. Its `crl.pem` is always enforced (besides
    /// `[revocation] crls`), and must exist.
    pub pki_dir: Option<PathBuf>,
    /// `[certify]`: the issuing CA of KMIP Certify; `None` refuses Certify.
    pub certify: Option<CertifyCaFiles>,
    pub policy: PolicySource,
    /// Bounds of the Locate cache.
    pub locate_cache: LocateCacheConfig,
    /// The audit trail; `None` when disabled.
    pub audit: Option<AuditConfig>,
    /// Wire capture folder (see `tooling::capture`); `None` when off. Start-only.
    pub capture_dir: Option<PathBuf>,
    /// The form of the log lines (`[log] format`; `--log-format` overrides it).
    pub log_format: LogFormat,
    /// Whether this is the embedded default (development PKI created on first start).
    pub embedded_default: bool,
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
            https_listen: None,
            admin: AdminConfig {
                token_file: Some(data_dir.join(DEFAULT_ADMIN_TOKEN_FILE)),
                ..AdminConfig::default()
            },
            revocation: RevocationConfig::default(),
            pki_dir: Some(pki.clone()),
            certify: Some(CertifyCaFiles {
                // `tooling::pki::DEV_ISSUING_CA_CERT`/`_KEY` (config sits below tooling).
                cert: pki.join("issuing-ca.pem"),
                key: pki.join("issuing-ca.key"),
            }),
            policy: PolicySource::OwnerOnly,
            locate_cache: LocateCacheConfig::default(),
            audit: Some(AuditConfig {
                dir: data_dir.join("audit"),
                max_file_bytes: DEFAULT_AUDIT_FILE_BYTES,
            }),
            capture_dir: None,
            log_format: DEFAULT_LOG_FORMAT,
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

impl GatewayConfig {
    /// The CA certificate and CRL of `[pki] dir`, when configured.
    pub fn pki_files(&self) -> Option<(PathBuf, PathBuf)> {
        self.pki_dir
            .as_ref()
            .map(|d| (d.join(PKI_CA_FILE), d.join(PKI_CRL_FILE)))
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
