//! The admin listener (loopback by default): `GET /metrics` (Prometheus text), `GET /healthz` (the
//! process answers), `GET /readyz` (the backend is reachable; the TLS configuration was loaded
//! before this listener started; `degraded: …` while the last reload failed, 503 with `?strict`),
//! `GET /clients` (client certificates with last-seen time and open connections, JSON),
//! `GET /revocation` (the CRLs in force and their revoked serials, JSON), `POST /reload` (reload
//! the configuration now and say how it went), `GET /reload` (the last reload's outcome, JSON),
//! the key administration of [`keys`] under `/keys`, and a KMIP proxy's adoption of upstream
//! objects (`POST /upstream/adopt`, `upstream.rs`).
//! A deliberately tiny HTTP/1.1 responder: one request per connection, no request body.
//!
//! Who may use it: `/reload`, `/clients`, `/revocation`, `/keys` and `/upstream` need `Authorization: Bearer <token>` (the token file
//! of `[admin] token_file`, compared in constant time); without a configured token they are
//! refused. `/metrics` needs it too when `[admin] metrics_require_token` is set; the probes
//! never do. Every request must name this listener in `Host` (`localhost`, the address it was
//! reached on, or `[admin] allowed_hosts`), which defeats DNS rebinding; a request with an
//! `Origin` (a browser's, possibly cross-site) is refused and CORS preflights are never
//! answered. Each connection has [`ADMIN_REQUEST_DEADLINE`] from accept to the response written,
//! and at most [`ADMIN_MAX_CONNECTIONS`] are open at once.

pub mod keys;
mod upstream;

use crate::config::{AdminConfig, GatewayConfig};
use crate::front::reload::{Commit, ReloadHook, Reloader, Trigger};
use arc_swap::ArcSwap;
use kmip_backends::Backend;
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

/// Largest admin request read (request line and headers): these are one-line GETs from a
/// scraper, a probe or the CLI.
const MAX_ADMIN_REQUEST: usize = 4096;
/// Time from accept to the response written: a client that sends its request slowly (one byte
/// at a time) or never reads the answer cannot hold a connection longer than this.
pub const ADMIN_REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Admin connections open at once; more are answered 503 and closed. Scrapers and probes need a
/// few; this bounds the tasks and buffers that a flood of connections could hold.
pub const ADMIN_MAX_CONNECTIONS: usize = 16;
/// Largest token file read: a token is a line of text.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;
/// Shortest token accepted, in characters: shorter ones could be guessed.
pub const MIN_TOKEN_LEN: usize = 32;
/// Random bytes of a generated token (written as hex).
const GENERATED_TOKEN_BYTES: usize = 32;
/// Permission bits a token file must not have: any access for group or other.
const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// Problems with the admin token file. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin token file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin token file {}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
}

/// The admin bearer token (its SHA-256: only ever compared).
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    fn of(token: &[u8]) -> AdminToken {
        AdminToken {
            digest: Sha256::digest(token).into(),
        }
    }

    /// A short digest naming this token in the audit trail: which token, nothing of it.
    fn id(&self) -> String {
        format!("admin-token:{}", hex::encode(&self.digest[..8]))
    }

    /// Whether `presented` is the token. Both sides are hashed first, so the comparison takes the
    /// same time whatever the length or content presented.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let theirs: [u8; 32] = Sha256::digest(presented).into();
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.digest, &theirs).is_ok()
    }
}

/// Reads the token from `path`: a regular file without group/other permission bits, one line of
/// at least [`MIN_TOKEN_LEN`] characters (a trailing newline is ignored). Blocking.
pub fn read_token_file(path: &Path) -> Result<Zeroizing<String>, AdminError> {
    let io = |source| AdminError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |problem: String| AdminError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let file = File::open(path).map_err(io)?;
    // fstat on the open descriptor, so the checked file is the one read.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & FORBIDDEN_MODE_BITS != 0 {
        return Err(invalid(format!(
            "mode {mode:04o} gives group/other access; run chmod 600 on it"
        )));
    }
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(invalid(format!("larger than {MAX_TOKEN_FILE_BYTES} bytes")));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_TOKEN_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not UTF-8".into()))?;
    let token = Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned());
    if token.chars().count() < MIN_TOKEN_LEN
        || token.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(format!(
            "the token must be one line of at least {MIN_TOKEN_LEN} characters without spaces"
        )));
    }
    Ok(token)
}

/// Creates `path` (mode 0600) with a random token unless it exists. Blocking.
pub fn create_token_file(path: &Path) -> Result<bool, AdminError> {
    let io = |source| AdminError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut raw = Zeroizing::new([0u8; GENERATED_TOKEN_BYTES]);
    aws_lc_rs::rand::fill(&mut raw[..]).map_err(|_| AdminError::Invalid {
        path: path.to_path_buf(),
        problem: "the random generator failed".into(),
    })?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(&raw[..])));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // create_new: never overwrite a token someone else just wrote.
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io(e)),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    Ok(true)
}

/// What the admin listener enforces; replaced whole by a reload.
#[derive(Debug, Default)]
pub struct AdminAccess {
    /// `None`: no token configured, so the token-only endpoints are refused.
    token: Option<AdminToken>,
    metrics_require_token: bool,
    allowed_hosts: Vec<String>,
}

impl AdminAccess {
    /// Builds the access rules of `cfg`, reading its token file. Blocking.
    pub fn load(cfg: &AdminConfig) -> Result<AdminAccess, AdminError> {
        let token = match &cfg.token_file {
            Some(path) => Some(AdminToken::of(read_token_file(path)?.as_bytes())),
            None => None,
        };
        Ok(AdminAccess {
            token,
            metrics_require_token: cfg.metrics_require_token,
            allowed_hosts: cfg.allowed_hosts.clone(),
        })
    }

    /// Like [`AdminAccess::load`], first creating the token file if it is missing (at start, and
    /// on reload: deleting the file and reloading rotates the token). Blocking.
    pub fn create_and_load(cfg: &AdminConfig) -> Result<AdminAccess, AdminError> {
        if let Some(path) = &cfg.token_file {
            if create_token_file(path)? {
                info!(file = %path.display(), "created the admin token file (`kmip-gateway reload` and `clients` read it)");
            }
        }
        AdminAccess::load(cfg)
    }

    /// Whether the `Host` header (`None` if absent) names this listener, reached at `local`.
    fn host_allowed(&self, host: Option<&str>, local: IpAddr) -> bool {
        let Some(host) = host else { return false };
        let name = host_name(host).trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" {
            return true;
        }
        match name.parse::<IpAddr>() {
            // An address is only ever this listener's own: a rebinding attack needs a name.
            Ok(ip) => ip == local || canonical(ip) == canonical(local),
            Err(_) => self.allowed_hosts.contains(&name),
        }
    }
}

/// The host part of a `Host` header value: without the port, IPv6 brackets removed.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address, no port.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// IPv4-mapped IPv6 addresses as IPv4 (a dual-stack socket reports those).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Re-reads the token file and the access rules on every reload (token rotation).
pub struct AdminReload(pub Arc<ArcSwap<AdminAccess>>);

impl ReloadHook for AdminReload {
    fn name(&self) -> &str {
        "admin"
    }

    fn prepare(&self, cfg: &GatewayConfig) -> Result<Commit, String> {
        let access = Arc::new(AdminAccess::create_and_load(&cfg.admin).map_err(|e| e.to_string())?);
        let target = self.0.clone();
        Ok(Box::new(move || target.store(access)))
    }
}

/// The admin listener: what its endpoints read and the access rules in force.
pub struct Admin {
    pub metrics: PrometheusHandle,
    pub backend: Arc<dyn Backend>,
    pub reloader: Arc<Reloader>,
    pub access: Arc<ArcSwap<AdminAccess>>,
}

/// The parts of a request the listener looks at.
#[derive(Debug, Default)]
struct Request {
    method: String,
    path: String,
    host: Option<String>,
    hosts: usize,
    authorization: Option<String>,
    /// The operator's name ([`keys::OPERATOR_HEADER`]), recorded in the audit trail.
    operator: Option<String>,
    origin: bool,
    has_body: bool,
}

/// Parses the request head (request line and headers, up to the blank line).
fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let mut req = Request {
        method: first.next()?.to_owned(),
        path: first.next()?.to_owned(),
        ..Request::default()
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "host" => {
                req.hosts += 1;
                req.host = Some(value.to_owned());
            }
            "authorization" => req.authorization = Some(value.to_owned()),
            keys::OPERATOR_HEADER => req.operator = Some(value.to_owned()),
            "origin" => req.origin = true,
            // A browser's fetch metadata: anything but a typed-in or same-origin request.
            "sec-fetch-site" if !matches!(value, "none" | "same-origin") => req.origin = true,
            "content-length" => req.has_body |= value != "0",
            "transfer-encoding" => req.has_body = true,
            _ => {}
        }
    }
    Some(req)
}

/// A response: status line text, content type, extra header lines, body.
type Response = (&'static str, &'static str, &'static str, String);

fn plain(status: &'static str, body: &str) -> Response {
    (status, "text/plain", "", format!("{body}\n"))
}

/// Answered to a connection over [`ADMIN_MAX_CONNECTIONS`] without reading it.
const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

impl Admin {
    /// Answers admin connections until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let permits = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                metrics::counter!("kmip_admin_connections_refused_total").increment(1);
                // Best effort and never waiting: the socket buffer takes these few bytes.
                let _ = stream.try_write(BUSY_RESPONSE);
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if tokio::time::timeout(ADMIN_REQUEST_DEADLINE, this.handle(stream))
                    .await
                    .is_err()
                {
                    debug!("admin connection cut at the request deadline");
                }
            });
        }
    }

    async fn handle(&self, mut stream: TcpStream) {
        let mut buf = vec![0u8; MAX_ADMIN_REQUEST];
        let mut n = 0;
        let head_end = loop {
            if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
                break Some(end + 4);
            }
            if n == buf.len() {
                break None;
            }
            match stream.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => return,
                Ok(k) => n += k,
            }
        };
        let response = match head_end.map(|end| parse_request(&buf[..end])) {
            None => plain("431 Request Header Fields Too Large", "request too large"),
            Some(None) => plain("400 Bad Request", "malformed request"),
            Some(Some(req)) => {
                let local = stream
                    .local_addr()
                    .map(|a| a.ip())
                    .unwrap_or(IpAddr::from([127, 0, 0, 1]));
                let peer = stream
                    .peer_addr()
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                self.respond(&req, local, peer).await
            }
        };
        let (status, ctype, extra, body) = response;
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            body.len()
        );
        if let Err(e) = stream.write_all(resp.as_bytes()).await {
            warn!(error = %e, "admin response not written");
        }
        let _ = stream.shutdown().await;
    }

    /// Checks who asks, then answers.
    async fn respond(&self, req: &Request, local: IpAddr, peer: SocketAddr) -> Response {
        let access = self.access.load_full();
        if req.hosts != 1 || !access.host_allowed(req.host.as_deref(), local) {
            return plain(
                "421 Misdirected Request",
                "the Host header does not name this listener (see [admin] allowed_hosts)",
            );
        }
        if req.origin {
            return plain(
                "403 Forbidden",
                "browser (cross-origin) requests are refused",
            );
        }
        if req.method == "OPTIONS" {
            // Never a CORS preflight answer: no browser page may call this listener.
            return plain("405 Method Not Allowed", "method not allowed");
        }
        if req.has_body {
            return plain("413 Content Too Large", "admin requests have no body");
        }
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let needs_token = match path {
            "/reload" | "/clients" | "/revocation" => true,
            p if keys::is_keys_path(p) || upstream::is_upstream_path(p) => true,
            "/metrics" => access.metrics_require_token,
            _ => false,
        };
        if needs_token {
            let Some(token) = &access.token else {
                return plain(
                    "403 Forbidden",
                    "no admin token is configured: set [admin] token_file to use this endpoint",
                );
            };
            let presented = req
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::trim);
            if !presented.is_some_and(|p| token.matches(p.as_bytes())) {
                metrics::counter!("kmip_admin_unauthorized_total").increment(1);
                return (
                    "401 Unauthorized",
                    "text/plain",
                    "WWW-Authenticate: Bearer\r\n",
                    "a valid admin token is required (Authorization: Bearer, from [admin] token_file)\n"
                        .into(),
                );
            }
        }
        // Which token authorised the call, for the audit trail of /upstream and /keys.
        let token_id = access
            .token
            .as_ref()
            .map(AdminToken::id)
            .unwrap_or_default();
        if upstream::is_upstream_path(path) {
            let call = upstream::AdoptCall {
                method: &req.method,
                path,
                query,
                operator: req.operator.as_deref(),
                peer,
                token_id,
            };
            let server = self.reloader.server();
            let tls = server.tls.load_full();
            return upstream::respond(&server.dispatcher, |user| tls.has_user(user), &call).await;
        }
        if keys::is_keys_path(path) {
            let call = keys::KeysCall {
                method: &req.method,
                path,
                query,
                operator: req.operator.as_deref(),
                peer,
                token_id,
            };
            let dispatcher = &self.reloader.server().dispatcher;
            return keys::respond(dispatcher.ops(), dispatcher.audit(), &call).await;
        }
        self.route(&req.method, &req.path).await
    }

    /// `/readyz`: 503 when the backend is unreachable or, on a shared backend, the change feed
    /// has failed for longer than [`crate::kmip::store::FEED_DEGRADED_AFTER`]. After a failed reload the previous state
    /// still serves every client, so the answer stays 200 with `degraded: <reason>` in the body
    /// (a load balancer must not take every replica out over one bad renewal); `?strict` answers
    /// 503 then, for monitors and for operators who would rather fail over.
    async fn readiness(&self, strict: bool) -> Response {
        if let Err(e) = self.backend.health().await {
            return plain(
                "503 Service Unavailable",
                &format!("backend not ready: {e}"),
            );
        }
        // Catching up with the other gateways' writes has failed for a while: requests that
        // must see them fail (or, with `read_your_writes = "connection"`, may miss them).
        let store = &self.reloader.server().dispatcher.ops().store;
        if let Some(trouble) = store.feed_trouble() {
            return plain("503 Service Unavailable", &format!("not ready: {trouble}"));
        }
        let parts = self.backend.readiness_report().await;
        match self.reloader.degraded() {
            None if parts.is_empty() => plain("200 OK", "ready"),
            None => plain("200 OK", &format!("ready\n{}", parts.join("\n"))),
            Some(last) => plain(
                if strict {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                },
                &format!("degraded: last reload {}", last.describe()),
            ),
        }
    }

    async fn route(&self, method: &str, path: &str) -> Response {
        match (method, path) {
            ("POST", "/reload") => match self.reloader.reload_async(Trigger::Admin).await {
                Ok(o) => (
                    "200 OK",
                    "application/json",
                    "",
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
                    "",
                    serde_json::json!({ "result": "failure", "error": e.to_string() }).to_string(),
                ),
            },
            ("GET", "/clients") => (
                "200 OK",
                "application/json",
                "",
                serde_json::to_string(&self.reloader.server().registry.clients_report())
                    .unwrap_or_else(|_| "[]".into()),
            ),
            ("GET", "/reload") => (
                "200 OK",
                "application/json",
                "",
                serde_json::json!({ "last_reload": self.reloader.last_reload() }).to_string(),
            ),
            ("GET", "/revocation") => (
                "200 OK",
                "application/json",
                "",
                serde_json::to_string(&self.reloader.server().tls.load().crls_in_force)
                    .unwrap_or_else(|_| "[]".into()),
            ),
            (_, "/reload") | (_, "/clients") | (_, "/revocation") => {
                plain("405 Method Not Allowed", "method not allowed")
            }
            (_, "/metrics") => (
                "200 OK",
                "text/plain; version=0.0.4",
                "",
                self.metrics.render(),
            ),
            (_, "/healthz") => plain("200 OK", "ok"),
            (_, "/readyz") => self.readiness(false).await,
            (_, "/readyz?strict") => self.readiness(true).await,
            _ => plain("404 Not Found", "not found"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_parsed_and_checked() {
        assert_eq!(host_name("localhost:9696"), "localhost");
        assert_eq!(host_name("[::1]:9696"), "::1");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("gw.example"), "gw.example");
        let access = AdminAccess {
            allowed_hosts: vec!["gw.ns.svc".into()],
            ..AdminAccess::default()
        };
        let lo = IpAddr::from([127, 0, 0, 1]);
        for ok in [
            "localhost",
            "LOCALHOST:1",
            "127.0.0.1:9696",
            "gw.ns.svc.",
            "Gw.Ns.Svc:80",
        ] {
            assert!(access.host_allowed(Some(ok), lo), "{ok}");
        }
        for bad in ["evil.example", "10.0.0.1", "", "localhost.evil.example"] {
            assert!(!access.host_allowed(Some(bad), lo), "{bad}");
        }
        assert!(!access.host_allowed(None, lo));
    }

    #[test]
    fn requests_are_parsed() {
        let r = parse_request(
            b"POST /reload HTTP/1.1\r\nhost: a\r\nAUTHORIZATION: Bearer t\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/reload"));
        assert_eq!(r.host.as_deref(), Some("a"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer t"));
        assert!(!r.origin && !r.has_body);
        let r = parse_request(b"GET / HTTP/1.1\r\nOrigin: http://x\r\n\r\n").unwrap();
        assert!(r.origin);
        assert!(parse_request(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").is_none());
        assert!(parse_request(b"\xff\r\n\r\n").is_none());
    }

    #[test]
    fn token_files_are_created_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/admin.token");
        assert!(create_token_file(&path).unwrap());
        assert!(!create_token_file(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = read_token_file(&path).unwrap();
        assert_eq!(token.len(), GENERATED_TOKEN_BYTES * 2);
        let t = AdminToken::of(token.as_bytes());
        assert!(t.matches(token.as_bytes()));
        assert!(!t.matches(b"wrong"));
        assert!(!format!("{t:?}").contains(token.as_str()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_token_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("chmod 600") && !e.contains(token.as_str()),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_token_file(&path).is_err());
    }
}
