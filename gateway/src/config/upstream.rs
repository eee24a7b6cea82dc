//! `[backend] kind = "kmip"`: the gateway as a proxy in front of other KMIP servers (issue 18).
//! The upstreams in priority order, the gateway's own client certificate for them, the version
//! to speak, the connection pool, and the local vault that keeps the gateway's metadata.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmip_wire::model::ProtocolVersion;

use super::backend::{
    default_secrets_dir, default_vault_paths, BackendConfig, LocalVault, MasterKeyConfig,
    UpstreamConfig,
};
use super::defaults::{
    DEFAULT_MASTER_KEY_FILE, DEFAULT_UPSTREAM_ACQUIRE_TIMEOUT, DEFAULT_UPSTREAM_IDLE_TIMEOUT,
    DEFAULT_UPSTREAM_POOL_SIZE, DEFAULT_UPSTREAM_REFRESH_INTERVAL,
    DEFAULT_UPSTREAM_REQUEST_TIMEOUT, MAX_UPSTREAMS, MIN_UPSTREAM_REFRESH_INTERVAL,
    UPSTREAM_MAP_DIR, UPSTREAM_MAP_HEAD_FILE,
};
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
            return Err(invalid(
                format!("backend.{key}"),
                format!("only applies to kind = \"{kind}\""),
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
    let migrate_to = match b.mode.as_deref() {
        None | Some("proxy") => None,
        Some("migrate") => {
            // Exactly the vault a plain vault configuration on this data folder (and master
            // key) opens, so the installation becomes one by changing its [backend].
            let (dir, head) = default_vault_paths(data_dir, &master_key);
            Some(LocalVault { dir, head })
        }
        Some(other) => {
            return Err(invalid(
                "backend.mode",
                format!(
                    "'{other}' is not \"proxy\" (everything upstream, the default) or \
                     \"migrate\" (new objects in a local vault)"
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
