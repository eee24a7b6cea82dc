//! `[admin]`: the admin listener and who may use it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::defaults::DEFAULT_ADMIN_LISTEN;
use super::raw::RawAdmin;
use super::{addr, invalid, resolve, ConfigError};

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

/// A Host header name: letters, digits, `-` and `.` (no port, no wildcard).
fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

pub(super) fn admin_config(
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
