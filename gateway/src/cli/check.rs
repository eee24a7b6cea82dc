//! What `check-config` prints besides "OK": the listener certificate's names and expiry (what the
//! array's `--uri` must match, and when it stops trusting the gateway), and a KMIP proxy's
//! freshness bound.

use kmip_gateway::config::{BackendConfig, GatewayConfig, MigrateTarget};
use kmip_gateway::front::tls::{ExpiryKind, TlsState};

/// For a KMIP proxy: how soon a change made on the upstream by others shows through the
/// gateway, and, in migrate mode, where new objects go.
pub(crate) fn upstream_lines(cfg: &GatewayConfig) -> Vec<String> {
    let BackendConfig::Kmip(upstream) = &cfg.backend else {
        return Vec::new();
    };
    let mut lines = vec![match upstream.refresh_interval {
        Some(every) => format!(
            "upstream refresh: every {} ms; a key revoked or destroyed on the upstream by others \
             shows through the gateway within that plus one pass",
            every.as_millis()
        ),
        None => "upstream refresh: off (refresh_interval_ms = 0); changes made on the upstream \
                 by others never show through the gateway"
            .to_owned(),
    }];
    let local = match &upstream.migrate_to {
        None => None,
        Some(MigrateTarget::Vault(local)) => {
            Some(format!("the local vault {}", local.dir.display()))
        }
        Some(MigrateTarget::Postgres(local)) => match local.as_ref() {
            BackendConfig::Postgres { url, .. } => Some(format!(
                "PostgreSQL {url} (one migrating proxy per database: its clients use it \
                 until the copy is done)"
            )),
            _ => None,
        },
    };
    if let Some(local) = local {
        lines.push(format!(
            "mode migrate: new objects in {local}, the others read through to the upstream \
             until `kmip-gateway upstream copy` moves them"
        ));
    }
    lines
}

/// `server certificate CN=…: DNS:…, IP:…; expires 2027-…`.
pub(crate) fn server_certificate_line(tls: &TlsState) -> String {
    let Some(server) = tls.expiries.iter().find(|e| e.kind == ExpiryKind::Server) else {
        return "server certificate: not found".into();
    };
    let names = if tls.server_alt_names.is_empty() {
        "no subject alternative names (clients cannot match the address they use)".to_string()
    } else {
        tls.server_alt_names.join(", ")
    };
    let expires = time::OffsetDateTime::from_unix_timestamp(server.not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| server.not_after.to_string());
    format!(
        "server certificate {} ({}): {names}; expires {expires}",
        server.subject,
        server.path.display()
    )
}
