//! The operator's day without traps: logs an operator can use (plain text, no colour codes, when
//! stderr is not a terminal; one JSON object per line with `--log-format json` or `[log] format =
//! "json"`; one line per successful connection naming the user, certificate serial, TLS version
//! and cipher suite), certificate renewal that keeps the previous certificate and prints the new
//! one, the `clients` view across a restart, and the guide's setup order on the template.

use kmip_e2e::{binary_path, GatewayProcess, READY_TIMEOUT};
use kmip_gateway::client::{ClientTls, KmipClient};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a line the gateway logs may take to reach the test's reader thread.
const LOG_WAIT: Duration = Duration::from_secs(30);

/// A `kmip-gateway serve` started here rather than by the harness, whose environment sets
/// `NO_COLOR` and whose ready-line parser reads text: the raw stderr lines, killed on drop.
struct RawGateway {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl RawGateway {
    /// Starts the embedded default in `dir` with `args` after `serve`, stderr piped and
    /// `NO_COLOR` removed.
    fn start(dir: &Path, args: &[&str]) -> RawGateway {
        let mut child = Command::new(binary_path("kmip-gateway"))
            .current_dir(dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .args(args)
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kmip-gateway");
        let stderr: ChildStderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        RawGateway {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `needle`; panics with all lines read when none does.
    fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; the log so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for RawGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Connects with the embedded default's client certificate (mutual TLS, user `purefa`).
fn connect(addr: &str, pki: &Path) {
    let tls = ClientTls::from_files(
        &pki.join("ca.pem"),
        &pki.join("client-purefa.pem"),
        &pki.join("client-purefa.key"),
    )
    .expect("client TLS");
    runtime().block_on(async {
        KmipClient::connect(addr, "localhost", &tls)
            .await
            .expect("connect");
    });
}

fn serial_of(cert: &Path) -> String {
    let pem = std::fs::read_to_string(cert).unwrap();
    kmip_gateway::tooling::pki::describe_cert(&pem)
        .unwrap()
        .serial_hex
}

#[test]
fn piped_stderr_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = RawGateway::start(dir.path(), &[]);
    let ready = gw.wait_for("KMIP listener ready", READY_TIMEOUT);
    let coloured: Vec<_> = gw.seen.iter().filter(|l| l.contains("\x1b[")).collect();
    assert!(coloured.is_empty(), "colour codes in a pipe: {coloured:?}");
    assert!(ready.contains(" INFO "), "{ready}");
}

#[test]
fn json_lines_parse_with_the_expected_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = RawGateway::start(dir.path(), &["--log-format", "json"]);
    let ready = gw.wait_for("KMIP listener ready", READY_TIMEOUT);
    for line in &gw.seen {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(v.get(key).is_some(), "no {key}: {line}");
        }
        assert!(v["fields"]["message"].is_string(), "no message: {line}");
    }
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["level"], "INFO");
    let addr = ready["fields"]["addr"]
        .as_str()
        .expect("addr field")
        .to_string();

    let pki = dir.path().join("kmip-gateway-data/pki");
    connect(&addr, &pki);
    let line = gw.wait_for("client connected", LOG_WAIT);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let fields = &v["fields"];
    assert_eq!(fields["user"], "purefa", "{line}");
    assert_eq!(
        fields["serial"].as_str(),
        Some(serial_of(&pki.join("client-purefa.pem")).as_str()),
        "{line}"
    );
    assert!(fields["tls_version"].is_string(), "{line}");
    assert!(fields["cipher_suite"].is_string(), "{line}");
}

#[test]
fn json_format_from_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("data/pki");
    kmip_gateway::tooling::pki::dev_pki(&pki).expect("development PKI");
    let config = dir.path().join("gateway.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n[log]\nformat = \"json\"\n",
        data = dir.path().join("data").display().to_string(),
        cert = pki.join("server.pem").display().to_string(),
        key = pki.join("server.key").display().to_string(),
        ca = pki.join("ca.pem").display().to_string(),
    );
    std::fs::write(&config, &text).unwrap();
    let (ok, out) = kmip_e2e::gateway_cli(&["init", "--config", config.to_str().unwrap()]);
    assert!(ok, "{out}");
    let mut raw = RawGateway::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let ready = raw.wait_for("KMIP listener ready", READY_TIMEOUT);
    let v: serde_json::Value =
        serde_json::from_str(&ready).unwrap_or_else(|e| panic!("not JSON ({e}): {ready}"));
    assert!(v["fields"]["addr"].is_string(), "{ready}");

    std::fs::write(&config, text.replace("\"json\"", "\"xml\"")).unwrap();
    let (ok, out) = kmip_e2e::gateway_cli(&["check-config", "--config", config.to_str().unwrap()]);
    assert!(
        !ok && out.contains("log.format") && out.contains("\"text\" or \"json\""),
        "{out}"
    );
}

#[test]
fn a_successful_connection_is_logged_once_with_user_serial_and_tls() {
    let gw = GatewayProcess::start();
    connect(&gw.addr().to_string(), &gw.pki_dir());
    let serial = serial_of(&gw.client_cert());
    let deadline = Instant::now() + LOG_WAIT;
    let line = loop {
        let log = gw.log();
        if let Some(l) = log.lines().find(|l| l.contains("client connected")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no connection line:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for needle in [
        "user=purefa".to_string(),
        format!("serial={serial}"),
        "tls_version=TLSv1_3".into(),
        "cipher_suite=TLS13_".into(),
        "peer=127.0.0.1:".into(),
    ] {
        assert!(line.contains(&needle), "{needle} missing: {line}");
    }
    assert_eq!(
        gw.log().matches("client connected").count(),
        1,
        "{}",
        gw.log()
    );
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn renewal_keeps_the_previous_certificate_and_prints_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let ca_arg = ca.to_str().unwrap();
    let run = |args: &[&str]| {
        let (ok, out) = kmip_e2e::gateway_cli(args);
        assert!(ok, "{args:?}: {out}");
        out
    };
    run(&["pki", "init-ca", "--dir", ca_arg]);
    run(&[
        "pki",
        "server-cert",
        "--dir",
        ca_arg,
        "--dns",
        "kmip.example.net",
        "--ip",
        "10.0.0.7",
        "--days",
        "30",
    ]);
    let (cert, key) = (ca.join("server.pem"), ca.join("server.key"));
    // An operator's own mode on the certificate must survive in the backup.
    std::fs::set_permissions(&cert, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let (old_cert, old_key) = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let old_serial = serial_of(&cert);

    let out = run(&[
        "pki",
        "server-cert",
        "--dir",
        ca_arg,
        "--dns",
        "kmip.example.net",
        "--ip",
        "10.0.0.7",
    ]);
    let new_serial = serial_of(&cert);
    assert_ne!(new_serial, old_serial);
    let cert_bak = ca.join(format!("server.pem.{old_serial}.bak"));
    let key_bak = ca.join(format!("server.key.{old_serial}.bak"));
    assert_eq!(std::fs::read(&cert_bak).unwrap(), old_cert);
    assert_eq!(std::fs::read(&key_bak).unwrap(), old_key);
    assert_eq!(mode_of(&cert_bak), 0o640);
    assert_eq!(mode_of(&key_bak), 0o600);
    let expiry =
        kmip_gateway::tooling::pki::describe_cert(&std::fs::read_to_string(&cert).unwrap())
            .unwrap()
            .not_after
            .to_string();
    for needle in [
        format!("serial {new_serial}"),
        "DNS:kmip.example.net, IP:10.0.0.7".into(),
        format!("valid until {expiry}"),
        format!(
            "previous    serial {old_serial} kept as {}",
            cert_bak.display()
        ),
        key_bak.display().to_string(),
    ] {
        assert!(out.contains(&needle), "{needle:?} missing:\n{out}");
    }

    // A client certificate signed again to the same file: the old one is kept too.
    let csr_dir = tmp.path().join("array");
    std::fs::create_dir(&csr_dir).unwrap();
    run(&[
        "pki",
        "server-cert",
        "--dir",
        csr_dir.to_str().unwrap(),
        "--dns",
        "array.example.net",
        "--csr-only",
    ]);
    let csr = csr_dir.join("server.csr");
    let client = tmp.path().join("array.pem");
    let sign = || {
        run(&[
            "pki",
            "sign-csr",
            "--dir",
            ca_arg,
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            client.to_str().unwrap(),
        ])
    };
    let first = sign();
    assert!(!first.contains("previous"), "{first}");
    let old_client = serial_of(&client);
    let out = sign();
    let kept = tmp.path().join(format!("array.pem.{old_client}.bak"));
    assert_eq!(serial_of(&kept), old_client);
    assert!(
        out.contains(&format!("serial {}", serial_of(&client))),
        "{out}"
    );
    assert!(out.contains(&kept.display().to_string()), "{out}");
    assert!(out.contains("SANs"), "{out}");
}

#[test]
fn the_clients_view_survives_a_restart() {
    let home = kmip_e2e::GatewayHome::new(kmip_e2e::Backend::Vault);
    let admin = kmip_e2e::GatewayOptions {
        admin: true,
        ..Default::default()
    };
    let mut gw = home.start_with(&admin);
    connect(&gw.addr().to_string(), &home.pki_dir());
    let serial = serial_of(&home.client_cert());
    let token = gw.admin_token();
    let listed = |gw: &GatewayProcess| {
        let (status, body) = gw.admin_request("GET", "/clients", Some(&token));
        assert_eq!(status, 200, "{body}");
        body
    };
    // The client's handshake ends before the server has registered the connection: wait for it.
    let deadline = Instant::now() + READY_TIMEOUT;
    while !listed(&gw).contains(&serial) {
        assert!(Instant::now() < deadline, "never listed: {}", listed(&gw));
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.terminate();
    let status = gw.wait_exit(READY_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "no clean stop: {status:?}\n{}",
        gw.log()
    );
    let file = home.data_dir().join("clients-seen.json");
    assert_eq!(mode_of(&file), 0o600);
    drop(gw);

    let gw = home.start_with(&admin);
    let body = listed(&gw);
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["serial"] == serial.as_str())
        .unwrap_or_else(|| {
            panic!(
                "{serial} not listed after the restart: {body}\n{}",
                gw.log()
            )
        });
    assert_eq!(row["user"], "purefa");
    assert_eq!(row["open_connections"], 0);
    assert!(row["last_seen"].as_i64().unwrap() > 0, "{body}");
    let addr = gw.admin_addr().unwrap().to_string();
    let data_dir = home.data_dir().display().to_string();
    let (ok, out) = kmip_e2e::gateway_cli(&["clients", "--admin", &addr, "--data-dir", &data_dir]);
    assert!(
        ok && out.contains("purefa") && out.contains(&serial),
        "{out}"
    );
}

/// The guide's setup order (docs/flasharray.md, README): the configuration from the template
/// first, then the CA, `user add` (which edits the file), the listener's certificate, and
/// `check-config` passes, with the template's paths moved to a temporary folder.
#[test]
fn the_guides_setup_order_works_on_a_copy_of_the_template() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc/kmip-gateway");
    std::fs::create_dir_all(&etc).unwrap();
    let template = kmip_e2e::workspace_root().join("deploy/config/gateway.example.toml");
    let config = etc.join("gateway.toml");
    let text = std::fs::read_to_string(template)
        .unwrap()
        .replace("/etc/kmip-gateway", etc.to_str().unwrap())
        .replace(
            "/var/lib/kmip-gateway",
            tmp.path().join("var/lib/kmip-gateway").to_str().unwrap(),
        );
    std::fs::write(&config, text).unwrap();
    let pki = etc.join("pki");
    let (pki_arg, config_arg) = (pki.to_str().unwrap(), config.to_str().unwrap());
    let ca = pki.join("ca.pem");
    for args in [
        vec![
            "pki",
            "init-ca",
            "--dir",
            pki_arg,
            "--cn",
            "Pure Storage FlashArray",
        ],
        vec![
            "user",
            "add",
            "purefa",
            "--ca",
            ca.to_str().unwrap(),
            "--config",
            config_arg,
        ],
        vec![
            "pki",
            "server-cert",
            "--dir",
            pki_arg,
            "--dns",
            "kmip.example.net",
        ],
        vec!["check-config", "--config", config_arg],
    ] {
        let (ok, out) = kmip_e2e::gateway_cli(&args);
        assert!(ok, "{args:?}: {out}");
    }
}
