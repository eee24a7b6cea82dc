//! The admin listener (loopback by default): `GET /metrics` (Prometheus text), `GET /healthz` (the
//! process answers), `GET /readyz` (backend reachable, TLS configuration loaded), `GET /clients`
//! (client certificates with last-seen time and open connections, JSON) and `POST /reload` (reload
//! the configuration now and say how it went). A deliberately tiny HTTP/1.1 responder: one
//! request per connection, no request body.

use crate::reload::{Reloader, Trigger};
use kmip_backends::Backend;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::warn;

/// Largest admin request read: these are one-line GETs from a scraper or a probe.
const MAX_ADMIN_REQUEST: usize = 4096;
/// A probe that does not send its request line within this time is dropped.
const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Admin {
    pub metrics: PrometheusHandle,
    pub backend: Arc<dyn Backend>,
    pub reloader: Arc<Reloader>,
}

impl Admin {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_ADMIN_REQUEST];
                let mut n = 0;
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(ADMIN_READ_TIMEOUT, stream.read(&mut buf[n..])).await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
                        Ok(Ok(k)) => n += k,
                    }
                }
                let line = String::from_utf8_lossy(&buf[..n]);
                let mut words = line.split_whitespace();
                let method = words.next().unwrap_or("");
                let path = words.next().unwrap_or("");
                let (status, ctype, body) = this.route(method, path).await;
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                if let Err(e) = stream.write_all(resp.as_bytes()).await {
                    warn!(error = %e, "admin response not written");
                }
                let _ = stream.shutdown().await;
            });
        }
    }

    async fn route(&self, method: &str, path: &str) -> (&'static str, &'static str, String) {
        match (method, path) {
            ("POST", "/reload") => match self.reloader.reload_async(Trigger::Admin).await {
                Ok(o) => (
                    "200 OK",
                    "application/json",
                    serde_json::json!({
                        "result": "success",
                        "generation": o.generation,
                        "restart_needed": o.restart_needed,
                        "connections_checked": o.connections.checked,
                        "connections_closed": o.connections.closed,
                    })
                    .to_string(),
                ),
                Err(e) => (
                    "500 Internal Server Error",
                    "application/json",
                    serde_json::json!({ "result": "failure", "error": e.to_string() }).to_string(),
                ),
            },
            ("GET", "/clients") => (
                "200 OK",
                "application/json",
                serde_json::to_string(&self.reloader.listener().clients_report())
                    .unwrap_or_else(|_| "[]".into()),
            ),
            (_, "/reload") | (_, "/clients") => (
                "405 Method Not Allowed",
                "text/plain",
                "method not allowed\n".into(),
            ),
            (_, "/metrics") => ("200 OK", "text/plain; version=0.0.4", self.metrics.render()),
            (_, "/healthz") => ("200 OK", "text/plain", "ok\n".into()),
            (_, "/readyz") => match self.backend.health().await {
                Ok(()) => ("200 OK", "text/plain", "ready\n".into()),
                Err(e) => (
                    "503 Service Unavailable",
                    "text/plain",
                    format!("backend not ready: {e}\n"),
                ),
            },
            _ => ("404 Not Found", "text/plain", "not found\n".into()),
        }
    }
}
