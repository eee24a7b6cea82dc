//! From the raw structure to [`GatewayConfig`]: each section is checked by its own module, in
//! the order the errors are reported.

use std::path::Path;

use super::admin::admin_config;
use super::audit::audit_config;
use super::backend::{backend_config, vault_backend};
use super::defaults::{DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_LOG_FORMAT};
use super::limits::{limits_config, locate_cache_config};
use super::log::LogFormat;
use super::postgres::{postgres_backend, refuse_postgres_keys};
use super::raw::{RawConfig, RawLog};
use super::revocation::revocation_config;
use super::upstream::upstream_backend;
use super::users::{users_config, TlsFiles};
use super::{addr, invalid, resolve, CertifyCaFiles, ConfigError, GatewayConfig, PolicySource};

pub(super) fn validate(raw: RawConfig, base: &Path) -> Result<GatewayConfig, ConfigError> {
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
    let users = users_config(raw.users, base)?;
    let limits = limits_config(raw.limits)?;
    let backend = match raw.backend {
        None => vault_backend(&data_dir, None, None),
        Some(b) if b.kind == "kmip" => upstream_backend(b, base, &data_dir)?,
        Some(b)
            if b.refresh_interval_ms.is_some() || b.mode.is_some() || b.migrate_to.is_some() =>
        {
            return Err(invalid(
                if b.mode.is_some() {
                    "backend.mode"
                } else if b.migrate_to.is_some() {
                    "backend.migrate_to"
                } else {
                    "backend.refresh_interval_ms"
                },
                "only applies to kind = \"kmip\"",
            ))
        }
        Some(b) if b.kind == "postgres" => postgres_backend(b, base)?,
        Some(b) => {
            refuse_postgres_keys(&b)?;
            backend_config(b, base, &data_dir)?
        }
    };
    let (admin_listen, admin) = admin_config(raw.admin, base)?;
    let https_listen = match raw.https.and_then(|h| h.listen) {
        None => None,
        Some(s) if s == "off" => None,
        Some(s) => Some(addr("https.listen", &s)?),
    };
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
    let locate_cache = locate_cache_config(raw.locate_cache.as_ref());
    let audit = audit_config(raw.audit, base, &data_dir)?;
    Ok(GatewayConfig {
        listen,
        data_dir,
        tls,
        users,
        limits,
        backend,
        admin_listen,
        https_listen,
        admin,
        revocation: revocation_config(raw.revocation, base)?,
        pki_dir: raw.pki.and_then(|p| p.dir).map(|d| resolve(base, d)),
        certify: raw.certify.map(|c| CertifyCaFiles {
            cert: resolve(base, c.ca_cert),
            key: resolve(base, c.ca_key),
        }),
        policy,
        locate_cache,
        audit,
        capture_dir: raw.capture_dir.map(|d| resolve(base, d)),
        log_format: log_format(raw.log)?,
        embedded_default: false,
    })
}

/// Validates `[log]`.
fn log_format(raw: Option<RawLog>) -> Result<LogFormat, ConfigError> {
    match raw.and_then(|l| l.format) {
        None => Ok(DEFAULT_LOG_FORMAT),
        Some(f) => LogFormat::parse(&f).ok_or_else(|| {
            invalid(
                "log.format",
                format!("'{f}' is not a log format: use \"text\" or \"json\""),
            )
        }),
    }
}
