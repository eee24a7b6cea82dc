//! The gateway as a service runs it: files made by `kmip-gateway pki --group` and `user add` as
//! root, the gateway started as a non-root system user, the server certificate renewed by root
//! the documented way and reloaded, then a reload that fails on purpose and is visible on
//! `/readyz`, in the metrics and in `kmip-gateway reload`/`clients`, while the old state serves.
//! Needs root (to create the user and switch to it); skips without it.

use kmip_e2e::accounts::{is_root, service_account, SERVICE_USER};
use kmip_e2e::{gateway_cli, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    LocateRequest, ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage,
    RequestPayload, ResponseMessage, ResultStatus,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const VERSION: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };

fn cli_ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let (ok, text) = gateway_cli(args);
    assert!(ok, "kmip-gateway {args:?} failed:\n{text}");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode_and_gid(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap();
    (m.mode() & 0o7777, m.gid())
}

async fn locate(client: &mut KmipClient) -> Result<(), String> {
    let message = RequestMessage {
        header: RequestHeader::new(VERSION),
        items: vec![RequestBatchItem::new(RequestPayload::Locate(
            LocateRequest::default(),
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

async fn connect_and_locate(gw: &GatewayProcess, tls: &ClientTls) -> Result<KmipClient, String> {
    let mut c = KmipClient::connect(&gw.addr().to_string(), "localhost", tls)
        .await
        .map_err(|e| e.to_string())?;
    c.set_timeout(Duration::from_secs(10));
    locate(&mut c).await?;
    Ok(c)
}

/// The server certificate a fresh client is shown.
async fn served_certificate(gw: &GatewayProcess, ca: &Path, cert: &Path, key: &Path) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
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

fn der_of(pem_file: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem_file)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// The value of the metric line starting with `prefix`, 0 when absent.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A private folder of the service user (data, secrets), made by root as an installer would.
fn service_dir(path: &Path, uid: u32, gid: u32) -> PathBuf {
    std::fs::create_dir(path).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_root_service_renewal_and_a_visible_failed_reload() {
    if !is_root() {
        eprintln!("skipped: needs root to create {SERVICE_USER} and run the gateway as it");
        return;
    }
    let (uid, gid) = service_account();
    let site = tempfile::tempdir().unwrap();
    std::fs::set_permissions(site.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = |n: &str| site.path().join(n);
    let ca = path("ca");

    // The operator's setup, as root, naming the service's group.
    cli_ok(&["pki", "init-ca", "--dir", s(&ca), "--group", SERVICE_USER]);
    assert_eq!(mode_and_gid(&ca), (0o750, gid));
    assert_eq!(
        mode_and_gid(&ca.join("ca.key")),
        (0o600, 0),
        "the CA key stays root's"
    );
    let out = cli_ok(&[
        "pki",
        "server-cert",
        "--dir",
        s(&ca),
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--group",
        SERVICE_USER,
    ]);
    assert!(out.contains("0640"), "{out}");
    assert_eq!(mode_and_gid(&ca.join("server.key")), (0o640, gid));
    let csr = kmip_gateway::tooling::pki::server_csr(&["purefa".to_owned()], &[]).unwrap();
    std::fs::write(path("purefa.csr"), &csr.csr_pem).unwrap();
    std::fs::write(path("purefa.key"), csr.key_pem.as_bytes()).unwrap();
    let (client_cert, client_key) = (path("purefa.pem"), path("purefa.key"));
    cli_ok(&[
        "pki",
        "sign-csr",
        "--dir",
        s(&ca),
        "--csr",
        s(&path("purefa.csr")),
        "--out",
        s(&client_cert),
    ]);
    let data = service_dir(&path("data"), uid, gid);
    service_dir(&path("data-secrets"), uid, gid);
    let config = path("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [revocation]\ncrls = [\"{}\"]\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
            s(&data),
            s(&ca.join("server.pem")),
            s(&ca.join("server.key")),
            s(&ca.join("crl.pem")),
            s(&data.join("admin.token")),
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&config, Some(0), Some(gid)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    cli_ok(&[
        "user",
        "add",
        "purefa",
        "--ca",
        s(&ca.join("ca.pem")),
        "--config",
        s(&config),
    ]);
    assert_eq!(
        mode_and_gid(&config),
        (0o640, gid),
        "user add keeps the configuration readable by the service"
    );

    let gw = GatewayProcess::start_as(
        SERVICE_USER,
        &GatewayOptions {
            admin: true,
            extra_args: vec!["--config".into(), s(&config).into()],
            env: Vec::new(),
            ..Default::default()
        },
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let running_uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    assert_eq!(
        running_uid.split_whitespace().next(),
        Some(uid.to_string().as_str())
    );
    // Alerts have their series before any failure.
    let metrics = gw.admin_get("/metrics").1;
    assert!(
        metrics.contains("kmip_reload_last_failed 0")
            && metrics.contains("kmip_reload_failures_total{trigger=\"sighup\"} 0"),
        "{metrics}"
    );
    let tls = ClientTls::from_files(&ca.join("ca.pem"), &client_cert, &client_key).unwrap();
    let mut open = connect_and_locate(&gw, &tls).await.unwrap();
    let admin = gw.admin_addr().unwrap().to_string();
    let with_admin = |cmd: &str| {
        vec![
            cmd.to_owned(),
            "--admin".into(),
            admin.clone(),
            "--config".into(),
            s(&config).into(),
        ]
    };

    // The config's admin listener has port 0: the CLI refuses to guess one.
    let (ok, out) = gateway_cli(&["clients", "--config", s(&config)]);
    assert!(!ok && out.contains("port 0"), "{out}");

    // The documented renewal, as root and without --group: the key keeps its owner and mode.
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
    assert_eq!(mode_and_gid(&ca.join("server.key")), (0o640, gid));
    let renewed = der_of(&ca.join("server.pem"));
    let out = cli_ok(&with_admin("reload"));
    assert!(out.contains("last reload: ok"), "{out}");
    assert_eq!(
        served_certificate(&gw, &ca.join("ca.pem"), &client_cert, &client_key).await,
        renewed
    );
    assert_eq!(gw.admin_get("/readyz"), (200, "ready\n".into()));

    // A reload that cannot work: the service may no longer read its key.
    std::fs::set_permissions(
        ca.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (ok, out) = gateway_cli(&with_admin("reload"));
    assert!(!ok && out.contains("last reload: FAILED"), "{out}");
    assert!(out.contains("server.key"), "{out}");
    let (code, body) = gw.admin_get("/readyz");
    assert!(
        code == 200 && body.starts_with("degraded: last reload FAILED"),
        "{code} {body}"
    );
    let (code, body) = gw.admin_get("/readyz?strict");
    assert!(code == 503 && body.contains("server.key"), "{code} {body}");
    let metrics = gw.admin_get("/metrics").1;
    assert!(
        metric(&metrics, "kmip_reload_failures_total{trigger=\"admin\"}") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "kmip_reload_last_failed"),
        1.0,
        "{metrics}"
    );
    let out = cli_ok(&with_admin("clients"));
    assert!(
        out.contains("purefa") && out.contains("last reload: FAILED"),
        "{out}"
    );
    // The previous state still serves, open and new connections alike.
    locate(&mut open).await.unwrap();
    connect_and_locate(&gw, &tls).await.unwrap();
    assert_eq!(
        served_certificate(&gw, &ca.join("ca.pem"), &client_cert, &client_key).await,
        renewed
    );

    // Fixed: the next reload clears it.
    std::fs::set_permissions(
        ca.join("server.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let out = cli_ok(&with_admin("reload"));
    assert!(out.contains("last reload: ok"), "{out}");
    assert_eq!(gw.admin_get("/readyz?strict"), (200, "ready\n".into()));
    assert_eq!(
        metric(&gw.admin_get("/metrics").1, "kmip_reload_last_failed"),
        0.0
    );

    // Someone who is not root cannot keep a root-owned file's owner: refused, saying why,
    // rather than leaving a file owned by someone else.
    let shared = service_dir(&path("shared"), uid, gid);
    let other_config = shared.join("gateway.toml");
    std::fs::copy(&config, &other_config).unwrap();
    std::fs::set_permissions(&other_config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::read(&other_config).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            SERVICE_USER,
            "--regid",
            SERVICE_USER,
            "--init-groups",
            "--",
        ])
        .arg(kmip_e2e::binary_path("kmip-gateway"))
        .args([
            "user",
            "add",
            "vsphere",
            "--ca",
            s(&ca.join("ca.pem")),
            "--config",
        ])
        .arg(&other_config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("run this as root"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&other_config).unwrap(), before);
    assert_eq!(std::fs::metadata(&other_config).unwrap().uid(), 0);
}
