//! Certificate day-2 operations against the real binary over real TLS: the FlashArray guide's
//! setup replayed with `kmip-gateway pki`/`user` commands, hot reload of the server certificate
//! under load, revocation closing open connections, the deny-list, and a failed reload that keeps
//! the gateway serving.

use kmip_e2e::{gateway_cli, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, LocateRequest, Name, ProtocolVersion, RequestBatchItem, RequestHeader,
    RequestMessage, RequestPayload, ResponseMessage, ResultStatus,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The array's KMIP version for the Locate of `purearray test security-token`.
const VERSION: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };
/// Server certificate reloads in the reload-under-load test.
const RELOADS: usize = 100;
/// Clients sending requests during those reloads.
const LOAD_CLIENTS: usize = 4;
/// How long a SIGHUP reload (asynchronous) may take to show on new connections.
const SIGNAL_RELOAD_WAIT: Duration = Duration::from_secs(10);
/// How long a line already logged may take to be read from the gateway's stderr.
const LOG_WAIT: Duration = Duration::from_secs(30);

fn cli_ok(args: &[&str]) -> String {
    let (ok, text) = gateway_cli(args);
    assert!(ok, "kmip-gateway {args:?} failed:\n{text}");
    text
}

/// `pki revoke` of `cert` by the CA in `ca`; its output.
fn revoke(ca: &Path, cert: &Path) -> String {
    cli_ok(&["pki", "revoke", "--dir", s(ca), "--cert", s(cert)])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The server side of the guide, set up with the gateway's own commands.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn ca_dir(&self) -> PathBuf {
        self.path("ca")
    }
    fn config(&self) -> PathBuf {
        self.path("gateway.toml")
    }

    /// What the array does in step 1 (`purecert create cert_1 --common-name NAME` + CSR): its
    /// own key and a CSR with that Common Name.
    fn array_csr(&self, name: &str, tag: &str) -> (PathBuf, PathBuf) {
        let csr = kmip_gateway::tooling::pki::server_csr(&[name.to_owned()], &[]).unwrap();
        let csr_path = self.path(&format!("{name}-{tag}.csr"));
        let key_path = self.path(&format!("{name}-{tag}.key"));
        std::fs::write(&csr_path, &csr.csr_pem).unwrap();
        std::fs::write(&key_path, csr.key_pem.as_bytes()).unwrap();
        (csr_path, key_path)
    }

    /// Steps 1–3 for one client: CSR, signed by the CA; returns (cert, key).
    fn client(&self, name: &str, tag: &str) -> (PathBuf, PathBuf) {
        let (csr, key) = self.array_csr(name, tag);
        let cert = self.path(&format!("{name}-{tag}.pem"));
        let ca = self.ca_dir();
        cli_ok(&[
            "pki",
            "sign-csr",
            "--dir",
            s(&ca),
            "--csr",
            s(&csr),
            "--out",
            s(&cert),
        ]);
        (cert, key)
    }

    /// Steps 2–5 of the guide: CA, the array's certificate, the user, the listener's certificate.
    fn guide_setup() -> (Site, (PathBuf, PathBuf)) {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        let ca = site.ca_dir();
        let out = cli_ok(&[
            "pki",
            "init-ca",
            "--dir",
            s(&ca),
            "--cn",
            "Pure Storage FlashArray",
        ]);
        assert!(out.contains("Pure Storage FlashArray"), "{out}");
        let purefa = site.client("purefa", "1");
        cli_ok(&[
            "pki",
            "server-cert",
            "--dir",
            s(&ca),
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ]);
        std::fs::write(
            site.config(),
            format!(
                "# FlashArray gateway\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[revocation]\ncrls = [\"{}\"]\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
                s(&site.path("data")),
                s(&ca.join("server.pem")),
                s(&ca.join("server.key")),
                s(&ca.join("crl.pem")),
                s(&site.path("admin.token")),
            ),
        )
        .unwrap();
        let out = cli_ok(&[
            "user",
            "add",
            "purefa",
            "--ca",
            s(&ca.join("ca.pem")),
            "--config",
            s(&site.config()),
        ]);
        assert!(out.contains("purefa"), "{out}");
        let (dup_ok, dup) = gateway_cli(&[
            "user",
            "add",
            "purefa",
            "--ca",
            s(&ca.join("ca.pem")),
            "--config",
            s(&site.config()),
        ]);
        assert!(!dup_ok && dup.contains("already exists"), "{dup}");
        cli_ok(&["check-config", "--config", s(&site.config())]);
        (site, purefa)
    }

    fn start(&self) -> GatewayProcess {
        GatewayProcess::start_with(&GatewayOptions {
            admin: true,
            extra_args: vec!["--config".into(), s(&self.config()).into()],
            env: Vec::new(),
            ..Default::default()
        })
    }

    fn tls(&self, (cert, key): &(PathBuf, PathBuf)) -> ClientTls {
        ClientTls::from_files(&self.ca_dir().join("ca.pem"), cert, key).unwrap()
    }
}

fn admin(gw: &GatewayProcess) -> String {
    gw.admin_addr().unwrap().to_string()
}

/// `kmip-gateway reload` through `gw`'s admin listener; its output.
fn reload(gw: &GatewayProcess) -> String {
    cli_ok(&[
        "reload",
        "--admin",
        &admin(gw),
        "--token-file",
        &token_file(gw),
    ])
}

fn token_file(gw: &GatewayProcess) -> String {
    gw.admin_token_file().display().to_string()
}

/// The Locate of `purearray test security-token`: must come back Success.
async fn locate(client: &mut KmipClient) -> Result<(), String> {
    let message = RequestMessage {
        header: RequestHeader::new(VERSION),
        items: vec![RequestBatchItem::new(RequestPayload::Locate(
            LocateRequest {
                attributes: vec![Attribute::name(&Name::new("purefa-rdl-secondary"))],
                ..LocateRequest::default()
            },
        ))],
    };
    let ttlv = client
        .call(&message.to_ttlv())
        .await
        .map_err(|e| e.to_string())?;
    let response = ResponseMessage::from_ttlv(&ttlv).map_err(|e| e.to_string())?;
    match response.items.first() {
        Some(item) if item.result_status == ResultStatus::Success => Ok(()),
        other => Err(format!("Locate failed: {other:?}")),
    }
}

/// Connects and runs one Locate (the client sees a refused certificate on its first read).
async fn connect_and_locate(gw: &GatewayProcess, tls: &ClientTls) -> Result<KmipClient, String> {
    let mut c = KmipClient::connect(&gw.addr().to_string(), "localhost", tls)
        .await
        .map_err(|e| e.to_string())?;
    c.set_timeout(Duration::from_secs(10));
    locate(&mut c).await?;
    Ok(c)
}

fn scrape(gw: &GatewayProcess) -> String {
    let (ok, body) = gateway_cli(&[
        "clients",
        "--admin",
        &admin(gw),
        "--token-file",
        &token_file(gw),
        "--json",
    ]);
    assert!(ok, "{body}");
    metrics_text(gw)
}

fn metrics_text(gw: &GatewayProcess) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.admin_addr().unwrap()).unwrap();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", admin(gw)).as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of one metric line starting with `prefix` (name and labels), 0 when absent.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The server certificate a fresh client (no session to resume) is shown.
async fn served_certificate(
    gw: &GatewayProcess,
    site: &Site,
    client: &(PathBuf, PathBuf),
) -> Vec<u8> {
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(site.ca_dir().join("ca.pem")).unwrap() {
            r.add(c.unwrap()).unwrap();
        }
        r
    };
    let chain: Vec<_> = CertificateDer::pem_file_iter(&client.0)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&client.1).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

/// Waits for a line of the gateway log matching `matches` (the log is read from the gateway's
/// stderr by another thread, so a line logged before an admin call returned can arrive after it).
fn wait_for_log_line(gw: &GatewayProcess, matches: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        if gw.log().lines().any(&matches) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn der_of(pem_file: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem_file)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Replaces a file the way deployment tools do: write beside it, then rename over it.
fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_setup_then_revoke_deny_and_restore() {
    let (site, purefa) = Site::guide_setup();
    let ca = site.ca_dir();
    let vsphere = site.client("vsphere", "1");
    cli_ok(&[
        "user",
        "add",
        "vsphere",
        "--ca",
        s(&ca.join("ca.pem")),
        "--config",
        s(&site.config()),
    ]);
    let gw = site.start();

    // Steps 7 and 9: TLS + authentication, then a Locate.
    let mut array = connect_and_locate(&gw, &site.tls(&purefa))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    let mut other = connect_and_locate(&gw, &site.tls(&vsphere)).await.unwrap();

    let clients = cli_ok(&[
        "clients",
        "--admin",
        &admin(&gw),
        "--token-file",
        &token_file(&gw),
    ]);
    assert!(
        clients.contains("purefa") && clients.contains("vsphere"),
        "{clients}"
    );
    let rows: serde_json::Value = serde_json::from_str(&cli_ok(&[
        "clients",
        "--admin",
        &admin(&gw),
        "--token-file",
        &token_file(&gw),
        "--json",
    ]))
    .unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user"] == "purefa")
        .unwrap();
    assert_eq!(row["open_connections"], 1);
    assert!(row["last_seen"].as_i64().unwrap() > 0);

    // Day 2: revoke the array's certificate, reload.
    let out = revoke(&ca, &purefa.0);
    assert!(out.contains("CRL number 2"), "{out}");
    let listing = cli_ok(&["pki", "list", "--dir", s(&ca)]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("purefa") && l.contains("revoked")),
        "{listing}"
    );
    let out = reload(&gw);
    assert!(out.contains("\"connections_closed\":1"), "{out}");
    assert!(
        locate(&mut array).await.is_err(),
        "the revoked array's open connection must be closed"
    );
    let refused = connect_and_locate(&gw, &site.tls(&purefa)).await;
    assert!(refused.is_err(), "a revoked certificate must be refused");
    locate(&mut other)
        .await
        .expect("another user's open connection keeps working");
    connect_and_locate(&gw, &site.tls(&vsphere))
        .await
        .expect("another user can still connect");
    let metrics = metrics_text(&gw);
    assert!(
        metric(
            &metrics,
            "kmip_handshake_failures_total{reason=\"certificate_revoked\"}"
        ) >= 1.0,
        "{metrics}"
    );
    // The open connection was cut for what it is, a revocation, not as an untrusted CA.
    assert_eq!(
        metric(
            &metrics,
            "kmip_connections_closed_total{reason=\"certificate_revoked\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert!(
        !metrics.contains("reason=\"ca_not_trusted_for_user\""),
        "{metrics}"
    );
    assert!(
        wait_for_log_line(&gw, |l| l.contains("closing connection")
            && l.contains("user=purefa")
            && l.contains("reason=\"certificate_revoked\"")),
        "{}",
        gw.log()
    );
    assert!(
        metrics.contains("kmip_cert_expiry_seconds{kind=\"crl\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("kmip_cert_expiry_seconds{kind=\"client\""),
        "{metrics}"
    );

    // Reversible: a new certificate from a new CSR restores access, no reload needed.
    let purefa2 = site.client("purefa", "2");
    connect_and_locate(&gw, &site.tls(&purefa2))
        .await
        .unwrap_or_else(|e| panic!("re-issued certificate refused: {e}\n{}", gw.log()));

    // The deny-list: refuse vsphere's certificate by fingerprint; its open connection closes.
    let rows: serde_json::Value = serde_json::from_str(&cli_ok(&[
        "clients",
        "--admin",
        &admin(&gw),
        "--token-file",
        &token_file(&gw),
        "--json",
    ]))
    .unwrap();
    let fingerprint = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user"] == "vsphere")
        .unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(site.config()).unwrap();
    let text = text.replace(
        "[revocation]\n",
        &format!("[revocation]\ndeny_fingerprints = [\"{fingerprint}\"]\n"),
    );
    std::fs::write(site.config(), text).unwrap();
    let out = reload(&gw);
    assert!(out.contains("\"connections_closed\":1"), "{out}");
    assert!(locate(&mut other).await.is_err());
    assert!(connect_and_locate(&gw, &site.tls(&vsphere)).await.is_err());
    connect_and_locate(&gw, &site.tls(&purefa2)).await.unwrap();
    let metrics = scrape(&gw);
    assert!(
        metric(
            &metrics,
            "kmip_connections_refused_total{reason=\"denied\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

/// The gateway remembers a chain it verified for resumed sessions; a revocation and reload must
/// still refuse the client when it resumes its session with that same chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_cannot_resume_its_session() {
    let (site, purefa) = Site::guide_setup();
    let gw = site.start();
    let tls = site.tls(&purefa);
    let mut resumed = 0;
    for _ in 0..3 {
        let client = connect_and_locate(&gw, &tls)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
        resumed += usize::from(client.resumed());
    }
    assert!(resumed >= 1, "the client never resumed its TLS session");

    let out = revoke(&site.ca_dir(), &purefa.0);
    assert!(out.contains("CRL number 2"), "{out}");
    reload(&gw);
    assert!(
        connect_and_locate(&gw, &tls).await.is_err(),
        "a revoked client got back in by resuming its session"
    );
    let metrics = scrape(&gw);
    assert!(
        metric(
            &metrics,
            "kmip_connections_refused_total{reason=\"certificate_revoked\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_reloaded_under_load_without_failed_requests() {
    let (site, purefa) = Site::guide_setup();
    let gw = site.start();
    let ca = kmip_gateway::tooling::pki::CaBundle {
        cert_pem: std::fs::read_to_string(site.ca_dir().join("ca.pem")).unwrap(),
        key_pem: zeroize::Zeroizing::new(
            std::fs::read_to_string(site.ca_dir().join("ca.key")).unwrap(),
        ),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for i in 0..LOAD_CLIENTS {
        let tls = site.tls(&purefa);
        let addr = gw.addr().to_string();
        let (stop, done) = (stop.clone(), done.clone());
        // Even clients keep one connection; odd ones reconnect for every request (and so resume
        // their TLS session across reloads).
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut conn: Option<KmipClient> = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() || i % 2 == 1 {
                    match KmipClient::connect(&addr, "localhost", &tls).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            failures.push(format!("connect: {e}"));
                            continue;
                        }
                    }
                }
                if let Some(c) = conn.as_mut() {
                    match locate(c).await {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failures.push(e);
                            conn = None;
                        }
                    }
                }
            }
            failures
        }));
    }

    let pid_file = site.path("data").join("kmip-gateway.pid");
    let started = Instant::now();
    for n in 0..RELOADS {
        let issued = kmip_gateway::tooling::pki::issue_server_cert(
            &ca,
            &["localhost".to_owned()],
            &["127.0.0.1".parse().unwrap()],
            30,
        )
        .unwrap();
        replace(&site.ca_dir().join("server.key"), issued.key_pem.as_bytes());
        replace(
            &site.ca_dir().join("server.pem"),
            issued.cert_pem.as_bytes(),
        );
        let want = der_of(&site.ca_dir().join("server.pem"));
        if n % 2 == 0 {
            reload(&gw);
            assert_eq!(served_certificate(&gw, &site, &purefa).await, want);
        } else {
            cli_ok(&["reload", "--pid-file", s(&pid_file)]);
            let deadline = Instant::now() + SIGNAL_RELOAD_WAIT;
            while served_certificate(&gw, &site, &purefa).await != want {
                assert!(
                    Instant::now() < deadline,
                    "reload {n} not applied\n{}",
                    gw.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in load {
        failures.extend(task.await.unwrap());
    }
    let requests = done.load(Ordering::Relaxed);
    eprintln!("{RELOADS} reloads in {elapsed:?} with {requests} requests served meanwhile");
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(requests > RELOADS as u64, "the load clients hardly ran");
    let metrics = metrics_text(&gw);
    let reloads = metric(&metrics, "kmip_reloads_total{result=\"success\"}");
    assert!(reloads >= RELOADS as f64, "{metrics}");
    eprintln!(
        "server side: {reloads} successful reloads (SIGHUP, admin and file watch), {} failed, \
         reload time p50 {}s p99 {}s",
        metric(&metrics, "kmip_reloads_total{result=\"failure\"}"),
        metric(&metrics, "kmip_reload_seconds{quantile=\"0.5\"}"),
        metric(&metrics, "kmip_reload_seconds{quantile=\"0.99\"}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_keeps_the_old_configuration_and_counts_the_failure() {
    let (site, purefa) = Site::guide_setup();
    let gw = site.start();
    let tls = site.tls(&purefa);
    let mut open = connect_and_locate(&gw, &tls).await.unwrap();
    let old_cert = der_of(&site.ca_dir().join("server.pem"));
    let good_cert = std::fs::read(site.ca_dir().join("server.pem")).unwrap();

    replace(
        &site.ca_dir().join("server.pem"),
        b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    );
    let (ok, out) = gateway_cli(&[
        "reload",
        "--admin",
        &admin(&gw),
        "--token-file",
        &token_file(&gw),
    ]);
    assert!(!ok && out.contains("failure"), "{out}");
    locate(&mut open).await.expect("open connection unaffected");
    connect_and_locate(&gw, &tls)
        .await
        .expect("new connections still served");
    assert_eq!(served_certificate(&gw, &site, &purefa).await, old_cert);
    let failures = metric(&metrics_text(&gw), "kmip_reloads_total{result=\"failure\"}");
    assert!(failures >= 1.0, "{}", metrics_text(&gw));

    // A configuration file that does not parse fails the same way.
    replace(&site.ca_dir().join("server.pem"), &good_cert);
    let config = std::fs::read_to_string(site.config()).unwrap();
    std::fs::write(site.config(), format!("{config}\n[[users]\n")).unwrap();
    let (ok, out) = gateway_cli(&[
        "reload",
        "--admin",
        &admin(&gw),
        "--token-file",
        &token_file(&gw),
    ]);
    assert!(!ok && out.contains("configuration"), "{out}");
    locate(&mut open).await.unwrap();
    std::fs::write(site.config(), &config).unwrap();
    reload(&gw);
    connect_and_locate(&gw, &tls).await.unwrap();
    assert!(gw.log().contains("reload failed"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_change_alone_reloads() {
    let (site, purefa) = Site::guide_setup();
    let gw = site.start();
    let mut open = connect_and_locate(&gw, &site.tls(&purefa)).await.unwrap();
    // Re-issue the listener's certificate with the CLI and send no signal: the folder watch does it.
    cli_ok(&[
        "pki",
        "server-cert",
        "--dir",
        s(&site.ca_dir()),
        "--dns",
        "localhost",
    ]);
    let want = der_of(&site.ca_dir().join("server.pem"));
    let deadline = Instant::now() + SIGNAL_RELOAD_WAIT;
    while served_certificate(&gw, &site, &purefa).await != want {
        assert!(
            Instant::now() < deadline,
            "no reload on file change\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    locate(&mut open).await.unwrap();
    // `pki revoke` rewrites crl.pem in a watched folder: the array's connection closes by itself.
    revoke(&site.ca_dir(), &purefa.0);
    let deadline = Instant::now() + SIGNAL_RELOAD_WAIT;
    while locate(&mut open).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "revocation not applied\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gw.log().contains("trigger=\"file_change\"") || gw.log().contains("trigger=file_change"),
        "{}",
        gw.log()
    );
}
