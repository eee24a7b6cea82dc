//! The admin listener's defences, against the real binary: the bearer token for `/reload` and
//! `/clients` (and `/metrics` when configured), the Host check, browser requests, the request
//! deadline and the connection cap; and the CLI using the token.

use kmip_e2e::{admin_exchange, gateway_cli, read_admin_token, GatewayOptions, GatewayProcess};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The gateway's `ADMIN_REQUEST_DEADLINE` (5 s) with ample room for a loaded machine: a slow
/// client must be cut well before this.
const CUT_BOUND: Duration = Duration::from_secs(60);
/// The gateway's `ADMIN_MAX_CONNECTIONS`.
const ADMIN_MAX_CONNECTIONS: usize = 16;

fn admin_started() -> GatewayProcess {
    GatewayProcess::start_with(&GatewayOptions {
        admin: true,
        ..GatewayOptions::default()
    })
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {answer:?}"))
}

#[test]
fn reload_and_clients_need_the_token() {
    let gw = admin_started();
    let token_file = gw.admin_token_file();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600, "the token file is not private");
    let token = gw.admin_token();
    assert!(!gw.log().contains(&token), "the log shows the token");

    for (method, path) in [
        ("POST", "/reload"),
        ("GET", "/clients"),
        ("GET", "/revocation"),
    ] {
        let (code, body) = gw.admin_request(method, path, None);
        assert_eq!(code, 401, "{method} {path} without a token: {body}");
        let (code, body) = gw.admin_request(method, path, Some("not-the-token"));
        assert_eq!(code, 401, "{method} {path} with a wrong token: {body}");
        let (code, body) = gw.admin_request(method, path, Some(&format!("{token}x")));
        assert_eq!(code, 401, "{method} {path} with a longer token: {body}");
        let (code, body) = gw.admin_request(method, path, Some(&token));
        assert_eq!(code, 200, "{method} {path} with the token: {body}");
    }
    // Probes and the scraper need none by default.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(gw.admin_get(path).0, 200, "{path}");
    }

    // The CLI reads the token: explicitly, or from the embedded default's data folder.
    let addr = gw.admin_addr().unwrap().to_string();
    let data_dir = gw.data_dir().display().to_string();
    let file = token_file.display().to_string();
    for args in [
        vec!["reload", "--admin", &addr, "--token-file", &file],
        vec!["reload", "--admin", &addr, "--data-dir", &data_dir],
        vec![
            "clients",
            "--admin",
            &addr,
            "--data-dir",
            &data_dir,
            "--json",
        ],
        vec!["clients", "--admin", &addr, "--token-file", &file],
    ] {
        let (ok, out) = gateway_cli(&args);
        assert!(ok, "{args:?}: {out}");
    }
    let other = tempfile::tempdir().unwrap();
    let wrong = other.path().join("wrong.token");
    std::fs::write(&wrong, "a-token-that-is-long-enough-but-not-the-one\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (ok, out) = gateway_cli(&[
        "reload",
        "--admin",
        &addr,
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("401"), "{out}");
    assert!(!out.contains(&token), "{out}");

    // Rotation: a reload re-reads the token file, creating a new token when it was removed.
    std::fs::remove_file(&token_file).unwrap();
    assert_eq!(gw.admin_request("POST", "/reload", Some(&token)).0, 200);
    let rotated = gw.admin_token();
    assert_ne!(rotated, token);
    assert_eq!(gw.admin_request("GET", "/clients", Some(&token)).0, 401);
    assert_eq!(gw.admin_request("GET", "/clients", Some(&rotated)).0, 200);
}

#[test]
fn foreign_hosts_and_browser_requests_are_refused() {
    let gw = admin_started();
    let addr = gw.admin_addr().unwrap();
    let port = addr.port();
    let ask = |head: &str| status_of(&admin_exchange(addr, &format!("{head}\r\n\r\n")));
    // DNS rebinding: a name that resolves to this host but is not this listener's.
    let foreign = [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        "10.1.2.3".into(),
    ];
    for host in &foreign {
        assert_eq!(
            ask(&format!("GET /metrics HTTP/1.1\r\nHost: {host}")),
            421,
            "{host}"
        );
    }
    let token = gw.admin_token();
    for host in &foreign {
        assert_eq!(
            ask(&format!(
                "POST /reload HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}"
            )),
            421,
            "{host}"
        );
    }
    assert_eq!(ask("GET /metrics HTTP/1.0"), 421, "no Host");
    assert_eq!(
        ask(&format!(
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nHost: {addr}"
        )),
        421,
        "two Hosts"
    );
    assert_eq!(
        ask(&format!("GET /metrics HTTP/1.1\r\nHost: localhost:{port}")),
        200
    );
    // A page in a browser: refused with or without the token, preflights never answered.
    assert_eq!(
        ask(&format!(
            "POST /reload HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nAuthorization: Bearer {token}"
        )),
        403
    );
    assert_eq!(
        ask(&format!(
            "GET /clients HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: cross-site\r\nAuthorization: Bearer {token}"
        )),
        403
    );
    let preflight = admin_exchange(
        addr,
        &format!(
            "OPTIONS /reload HTTP/1.1\r\nHost: {addr}\r\nAccess-Control-Request-Method: POST\r\n\r\n"
        ),
    );
    assert_eq!(status_of(&preflight), 405, "{preflight}");
    assert!(
        !preflight.to_ascii_lowercase().contains("access-control"),
        "{preflight}"
    );
}

#[test]
fn a_client_that_dribbles_its_request_is_cut_at_the_deadline() {
    let gw = admin_started();
    let addr = gw.admin_addr().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .unwrap();
    let mut writer = s.try_clone().unwrap();
    // One header byte every 100 ms, far within any per-read timeout, until the gateway hangs up.
    let dribble = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < CUT_BOUND {
            if writer.write_all(b"X").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    s.set_read_timeout(Some(CUT_BOUND)).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let waited = started.elapsed();
    let cut = match &read {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(
        cut,
        "the connection was not closed within {CUT_BOUND:?} ({read:?} after {waited:?})"
    );
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let _ = s.shutdown(std::net::Shutdown::Both);
    dribble.join().unwrap();
    eprintln!("dribbling client cut after {waited:?}");
    assert_eq!(gw.admin_get("/healthz").0, 200);
}

#[test]
fn connections_beyond_the_cap_are_refused() {
    let gw = admin_started();
    let addr = gw.admin_addr().unwrap();
    // Connections that have not sent a request yet hold their slot.
    let held: Vec<TcpStream> = (0..ADMIN_MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // The refusal comes without reading a request (sending one could race the close).
    let mut extra = TcpStream::connect(addr).unwrap();
    extra.set_read_timeout(Some(CUT_BOUND)).unwrap();
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    drop(held);
    // Once they are gone, the listener answers again.
    let deadline = Instant::now() + CUT_BOUND;
    while try_healthz(addr) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the admin listener stays refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /healthz`'s status, `None` when the connection was refused or reset before an answer.
fn try_healthz(addr: std::net::SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(CUT_BOUND)).ok()?;
    let _ = s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// A gateway from a configuration file: the development PKI of `dir`, `admin` as its `[admin]`
/// section.
fn start_with_admin_section(dir: &Path, admin: &str) -> GatewayProcess {
    let pki = dir.join("pki");
    kmip_gateway::tooling::pki::dev_pki(&pki).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n[admin]\n{admin}\n",
            data = dir.join("data").display().to_string(),
            cert = pki.join("server.pem").display().to_string(),
            key = pki.join("server.key").display().to_string(),
            ca = pki.join("ca.pem").display().to_string(),
        ),
    )
    .unwrap();
    GatewayProcess::start_with(&GatewayOptions {
        admin: true,
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..GatewayOptions::default()
    })
}

#[test]
fn without_a_token_file_reload_and_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_admin_section(dir.path(), "");
    for (method, path) in [
        ("POST", "/reload"),
        ("GET", "/clients"),
        ("GET", "/revocation"),
    ] {
        let (code, body) = gw.admin_request(method, path, Some("anything-at-all-long-enough-0123"));
        assert_eq!(code, 403, "{method} {path}: {body}");
        assert!(body.contains("token_file"), "{body}");
    }
    assert_eq!(gw.admin_get("/metrics").0, 200);
    assert!(gw.log().contains("no [admin] token_file"), "{}", gw.log());
}

#[test]
fn metrics_can_require_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("secret/admin.token");
    let gw = start_with_admin_section(
        dir.path(),
        &format!(
            "token_file = {:?}\nmetrics_require_token = true",
            token_file.display().to_string()
        ),
    );
    assert_eq!(gw.admin_token_file(), token_file);
    let token = read_admin_token(&token_file);
    assert_eq!(gw.admin_get("/metrics").0, 401);
    assert_eq!(gw.admin_request("GET", "/metrics", Some(&token)).0, 200);
    assert_eq!(gw.admin_get("/readyz").0, 200);
    assert_eq!(gw.admin_get("/healthz").0, 200);
    // The CLI finds the token through the configuration.
    let config = dir.path().join("gateway.toml");
    let addr = gw.admin_addr().unwrap().to_string();
    let (ok, out) = gateway_cli(&[
        "clients",
        "--admin",
        &addr,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
}
