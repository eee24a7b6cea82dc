//! `[backend] kind = "kmip"`: the gateway as a proxy in front of other KMIP servers (issue 18).
//! The upstreams in priority order, the gateway's own client certificate for them, the version
//! to speak, the connection pool, and the local vault that keeps the gateway's metadata.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmip_wire::model::ProtocolVersion;

use super::backend::{
    default_secrets_dir, default_vault_paths, BackendConfig, LocalVault, MasterKeyConfig,
    MigrateTarget, UpstreamConfig,
};
use super::defaults::{
    DEFAULT_MASTER_KEY_FILE, DEFAULT_UPSTREAM_ACQUIRE_TIMEOUT, DEFAULT_UPSTREAM_IDLE_TIMEOUT,
    DEFAULT_UPSTREAM_POOL_SIZE, DEFAULT_UPSTREAM_REFRESH_INTERVAL,
    DEFAULT_UPSTREAM_REQUEST_TIMEOUT, MAX_UPSTREAMS, MIN_UPSTREAM_REFRESH_INTERVAL,
    UPSTREAM_MAP_DIR, UPSTREAM_MAP_HEAD_FILE,
};
use super::postgres::postgres_backend;
use super::raw::RawBackend;
use super::{invalid, millis, resolve, ConfigError};

/// Versions an operator may pin, as written in the file.
fn parse_version(v: &str) -> Option<ProtocolVersion> {
    ProtocolVersion::ALL
        .into_iter()
        .find(|p| format!("{}.{}", p.major, p.minor) == v.trim())
}

/// `backend.refresh_interval_ms`: 0 turns the refresher off (`None`); otherwise at least
/// [`MIN_UPSTREAM_REFRESH_INTERVAL`].
fn refresh_interval(ms: Option<u64>) -> Result<Option<Duration>, ConfigError> {
    match ms {
        None => Ok(Some(DEFAULT_UPSTREAM_REFRESH_INTERVAL)),
        Some(0) => Ok(None),
        Some(ms) if Duration::from_millis(ms) < MIN_UPSTREAM_REFRESH_INTERVAL => Err(invalid(
            "backend.refresh_interval_ms",
            format!(
                "{ms} is below the minimum of {} ms (each pass reads every mapped object \
                 upstream); use 0 to turn the refresh off",
                MIN_UPSTREAM_REFRESH_INTERVAL.as_millis()
            ),
        )),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
    }
}

/// Checks that `s` is `host:port` with a port number.
fn check_upstream(s: &str) -> Result<(), ConfigError> {
    let ok = s
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "backend.upstreams",
            format!("'{s}' is not host:port (for example \"kms1.example.com:5696\")"),
        ))
    }
}

/// `[backend.migrate_to]`: the database a migrating proxy makes new objects in, read by the
/// `kind = "postgres"` parser (the table is the `[backend]` the configuration becomes once
/// `upstream copy` is done), its errors named under `backend.migrate_to`.
fn migrate_to_postgres(local: RawBackend, base: &Path) -> Result<BackendConfig, ConfigError> {
    match local.kind.as_str() {
        "postgres" => {}
        "vault" => {
            return Err(invalid(
                "backend.migrate_to.kind",
                "leave [backend.migrate_to] out for the local vault: without it, new objects go \
                 to the vault of data_dir",
            ))
        }
        other => {
            return Err(invalid(
                "backend.migrate_to.kind",
                format!(
                    "'{other}' is not \"postgres\" (the one shared backend a proxy migrates to)"
                ),
            ))
        }
    }
    for (set, key) in [
        (local.upstreams.is_some(), "upstreams"),
        (local.cert.is_some(), "cert"),
        (local.key.is_some(), "key"),
        (local.server_name.is_some(), "server_name"),
        (local.version.is_some(), "version"),
        (local.request_timeout_ms.is_some(), "request_timeout_ms"),
        (local.idle_timeout_ms.is_some(), "idle_timeout_ms"),
        (local.refresh_interval_ms.is_some(), "refresh_interval_ms"),
        (local.mode.is_some(), "mode"),
        (local.migrate_to.is_some(), "migrate_to"),
    ] {
        if set {
            return Err(invalid(
                format!("backend.migrate_to.{key}"),
                "is a key of the proxy's [backend], not of the database it migrates to",
            ));
        }
    }
    postgres_backend(local, base).map_err(|e| match e {
        ConfigError::Invalid { key, problem } => ConfigError::Invalid {
            key: match key.strip_prefix("backend.") {
                Some(rest) => format!("backend.migrate_to.{rest}"),
                None => key,
            },
            problem,
        },
        other => other,
    })
}

pub(super) fn upstream_backend(
    b: RawBackend,
    base: &Path,
    data_dir: &Path,
) -> Result<BackendConfig, ConfigError> {
    for (set, key, kind) in [
        (b.module.is_some(), "module", "pkcs11"),
        (b.token_label.is_some(), "token_label", "pkcs11"),
        (
            b.pin_file.is_some() || b.pin_env.is_some(),
            "pin_file/pin_env",
            "pkcs11",
        ),
        (b.url.is_some(), "url", "postgres"),
        (
            b.password_file.is_some() || b.password_env.is_some(),
            "password_file/password_env",
            "postgres",
        ),
        (
            b.connect_timeout_ms.is_some(),
            "connect_timeout_ms",
            "postgres",
        ),
        (b.read_your_writes.is_some(), "read_your_writes", "postgres"),
        (b.kek.is_some(), "kek", "postgres"),
        (!b.previous_keks.is_empty(), "previous_keks", "postgres"),
    ] {
        if set {
            let hint = if kind == "postgres" {
                " (a migrating proxy's database is given in [backend.migrate_to])"
            } else {
                ""
            };
            return Err(invalid(
                format!("backend.{key}"),
                format!("only applies to kind = \"{kind}\"{hint}"),
            ));
        }
    }
    let upstreams = b.upstreams.unwrap_or_default();
    if upstreams.is_empty() {
        return Err(invalid(
            "backend.upstreams",
            "missing: the KMIP servers to forward to, in priority order, \
             upstreams = [\"kms1:5696\", \"kms2:5696\"]",
        ));
    }
    if upstreams.len() > MAX_UPSTREAMS {
        return Err(invalid(
            "backend.upstreams",
            format!("{} given; at most {MAX_UPSTREAMS}", upstreams.len()),
        ));
    }
    for u in &upstreams {
        check_upstream(u)?;
    }
    let file = |v: Option<PathBuf>, key: &str, what: &str| {
        v.map(|p| resolve(base, p))
            .ok_or_else(|| invalid(format!("backend.{key}"), format!("missing: {what}")))
    };
    let cert = file(
        b.cert,
        "cert",
        "the gateway's client certificate (PEM) for the upstreams",
    )?;
    let key = file(b.key, "key", "the private key (PEM) of backend.cert")?;
    let ca = file(
        b.ca,
        "ca",
        "the CA certificates (PEM) the upstreams' certificates chain to",
    )?;
    let server_name = match b.server_name {
        Some(n) if n.trim().is_empty() => {
            return Err(invalid("backend.server_name", "must not be empty"))
        }
        other => other,
    };
    let version = match b.version {
        None => None,
        Some(v) => Some(parse_version(&v).ok_or_else(|| {
            invalid(
                "backend.version",
                format!("'{v}' is not one of 1.0, 1.1, 1.2, 1.3, 1.4, 2.0, 2.1 (or leave it out to negotiate)"),
            )
        })?),
    };
    let pool_size = match b.pool_size {
        Some(0) => return Err(invalid("backend.pool_size", "must be greater than zero")),
        Some(n) => n,
        None => DEFAULT_UPSTREAM_POOL_SIZE,
    };
    let acquire_timeout = millis(
        "backend.acquire_timeout_ms",
        b.acquire_timeout_ms,
        DEFAULT_UPSTREAM_ACQUIRE_TIMEOUT,
    )?;
    let request_timeout = millis(
        "backend.request_timeout_ms",
        b.request_timeout_ms,
        DEFAULT_UPSTREAM_REQUEST_TIMEOUT,
    )?;
    let idle_timeout = millis(
        "backend.idle_timeout_ms",
        b.idle_timeout_ms,
        DEFAULT_UPSTREAM_IDLE_TIMEOUT,
    )?;
    let refresh_interval = refresh_interval(b.refresh_interval_ms)?;
    let secrets = default_secrets_dir(data_dir);
    let master_key = match (b.master_key_file, b.master_key_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "backend.master_key_file",
                "give master_key_file or master_key_env, not both",
            ))
        }
        (Some(f), None) => MasterKeyConfig::File(resolve(base, f)),
        (None, Some(e)) => MasterKeyConfig::Env(e),
        (None, None) => MasterKeyConfig::File(secrets.join(DEFAULT_MASTER_KEY_FILE)),
    };
    let map_head = match b.head_file {
        Some(h) => resolve(base, h),
        None => secrets.join(UPSTREAM_MAP_HEAD_FILE),
    };
    if map_head.starts_with(data_dir) {
        return Err(invalid(
            "backend.head_file",
            format!(
                "{} is inside data_dir: a restored copy of the data folder would roll it back \
                 too; put it next to the master key",
                map_head.display()
            ),
        ));
    }
    let migrate_to = match (b.mode.as_deref(), b.migrate_to) {
        (None | Some("proxy"), None) => None,
        (None | Some("proxy"), Some(_)) => {
            return Err(invalid(
                "backend.migrate_to",
                "only applies to mode = \"migrate\" (in mode = \"proxy\" every object is \
                 upstream)",
            ))
        }
        (Some("migrate"), None) => {
            // Exactly the vault a plain vault configuration on this data folder (and master
            // key) opens, so the installation becomes one by changing its [backend].
            let (dir, head) = default_vault_paths(data_dir, &master_key);
            Some(MigrateTarget::Vault(LocalVault { dir, head }))
        }
        (Some("migrate"), Some(local)) => Some(MigrateTarget::Postgres(Box::new(
            migrate_to_postgres(*local, base)?,
        ))),
        (Some(other), _) => {
            return Err(invalid(
                "backend.mode",
                format!(
                    "'{other}' is not \"proxy\" (everything upstream, the default) or \
                     \"migrate\" (new objects in a local vault or [backend.migrate_to])"
                ),
            ))
        }
    };
    Ok(BackendConfig::Kmip(Box::new(UpstreamConfig {
        upstreams,
        cert,
        key,
        ca,
        server_name,
        version,
        pool_size,
        acquire_timeout,
        request_timeout,
        idle_timeout,
        refresh_interval,
        migrate_to,
        map_dir: data_dir.join(UPSTREAM_MAP_DIR),
        master_key,
        map_head,
    })))
}
