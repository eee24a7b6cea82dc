//! What `check-config` prints about the TLS state besides "OK": the listener certificate's names
//! and expiry (what the array's `--uri` must match, and when it stops trusting the gateway).

use kmip_gateway::front::tls::{ExpiryKind, TlsState};

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
