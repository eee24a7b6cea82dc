//! The operator's walk-through of `docs/flasharray.md`, end to end, with the built binary and the
//! gateway running as a non-root service user, once with EC keys and once with RSA keys:
//!
//! 1. setup in the guide's order: the template copied with its paths rewritten, `pki init-ca
//!    --group`, the array's CSR from `openssl req` (CN `purefa`) signed by `pki sign-csr`, `user
//!    add`, `pki server-cert --group`, `init` as the service user, `check-config`, `serve`;
//! 2. the array's `purekmip test` / `purearray test` (TLS + Locate) and its key (Create,
//!    Activate, Get) through PyKMIP, and `kmip-gateway clients` listing it;
//! 3. a restart (SIGTERM, start again) and the array's "Get at boot": the same bytes;
//! 4. renewal of the listener's certificate as root (`pki server-cert` again): the reload
//!    succeeds, the new certificate is served, the previous one is kept as `.bak`;
//! 5. `pki revoke --cert purefa.pem --config …`: "enforced", the live connection cut, a new one
//!    refused; access given back by a new CSR signed for `purefa` (no reload);
//! 6. `keys list` / `keys destroy --yes --operator …`: the array's Get then fails (Item Not
//!    Found in KMIP 1.4, Object Destroyed in 2.1);
//! 7. `backup` while serving, `restore` into a new folder, the restore drill's configuration,
//!    `check-config` and a gateway on it: the key created before the backup has the same bytes,
//!    the destroyed one stays destroyed.
//!
//! Needs root (to create the service user and switch to it; skips without it), `openssl` and
//! PyKMIP (`$KMIP_PYTHON`, else `<workspace>/.venv/bin/python`).

use kmip_e2e::accounts::{is_root, service_account, SERVICE_USER};
use kmip_e2e::{binary_path, gateway_cli, workspace_root, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, GetRequest, LocateRequest, Name, ProtocolVersion, RequestBatchItem, RequestHeader,
    RequestMessage, RequestPayload, ResponseMessage, ResultReason, ResultStatus,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Time a stopping gateway gets to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The array's key name (as its Locate looks for it).
const ARRAY_KEY: &str = "purefa-rdl";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn cli_ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let (ok, text) = gateway_cli(args);
    assert!(ok, "kmip-gateway {args:?} failed:\n{text}");
    text
}

fn mode_and_gid(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap();
    (m.mode() & 0o7777, m.gid())
}

/// A folder owned by the service user, 0700, as systemd's `StateDirectory=` makes it.
fn state_dir(path: &Path, uid: u32, gid: u32) {
    std::fs::create_dir(path).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A loopback port nothing listens on now (bound, then released): the admin listener's fixed
/// port, which the CLI reads from the configuration.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `openssl req` as the array's `purecert construct` would: a new key and a CSR with CN `cn`.
fn openssl_csr(csr: &Path, key: &Path, cn: &str, newkey: &[&str]) {
    let subject = format!("/CN={cn}");
    let mut args = vec!["req", "-new", "-nodes", "-subj", &subject];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&["-keyout", s(key), "-out", s(csr)]);
    let out = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (is it installed?)");
    assert!(out.status.success(), "openssl req: {out:?}");
}

/// The array's side of KMIP, through PyKMIP 1.4 (as the FlashArray speaks it): `create NAME`
/// (Locate, Create, Activate, Locate, Get) or `get UID`. Prints one JSON object.
const ARRAY_PY: &str = r#"
import binascii, json, sys
from kmip.core import enums
from kmip.core.factories import attributes
from kmip.pie import exceptions
from kmip.pie.client import ProxyKmipClient

host, port, ca, cert, key, conf, action, arg = sys.argv[1:9]
client = ProxyKmipClient(hostname=host, port=int(port), cert=cert, key=key, ca=ca,
                         config_file=conf, kmip_version=enums.KMIPVersion.KMIP_1_4)
out = {}
try:
    with client as c:
        if action == "create":
            flt = [attributes.AttributeFactory().create_attribute(enums.AttributeType.NAME, arg)]
            out["locate_before"] = c.locate(attributes=flt)
            uid = c.create(enums.CryptographicAlgorithm.AES, 256, name=arg)
            c.activate(uid)
            out["uid"] = uid
            out["locate_after"] = c.locate(attributes=flt)
            out["key"] = binascii.hexlify(c.get(uid).value).decode()
        else:
            out["key"] = binascii.hexlify(c.get(arg).value).decode()
except exceptions.KmipOperationFailure as e:
    out["failure"] = {"status": e.status.name, "reason": e.reason.name}
print(json.dumps(out))
"#;

/// The operator's site: `/etc/kmip-gateway` and `/var/lib/kmip-gateway{,-secrets}` in one
/// temporary folder.
struct Site {
    dir: tempfile::TempDir,
    uid: u32,
    gid: u32,
}

impl Site {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn pki(&self) -> PathBuf {
        self.path("pki")
    }
    fn config(&self) -> PathBuf {
        self.path("gateway.toml")
    }

    /// Starts `serve --config` as the service user (already initialised), the admin listener
    /// where the configuration puts it.
    fn serve(&self) -> GatewayProcess {
        GatewayProcess::start_as(
            SERVICE_USER,
            &GatewayOptions {
                extra_args: vec!["--config".into(), s(&self.config()).into()],
                no_init: true,
                admin_from_config: true,
                ..Default::default()
            },
        )
    }

    /// Runs the array's PyKMIP script against `gw` with the certificate `cert` (and `cert`'s
    /// key beside it, `.key` for `.pem`).
    fn array(&self, gw: &GatewayProcess, cert: &Path, action: &str, arg: &str) -> Value {
        let python = std::env::var_os("KMIP_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
        assert!(
            python.is_file(),
            "no Python with PyKMIP at {}: set KMIP_PYTHON",
            python.display()
        );
        let conf = self.path("pykmip.conf");
        std::fs::write(&conf, "").unwrap();
        let out = Command::new(python)
            .arg("-c")
            .arg(ARRAY_PY)
            .arg("127.0.0.1")
            .arg(gw.addr().port().to_string())
            .arg(self.pki().join("ca.pem"))
            .arg(cert)
            .arg(cert.with_extension("key"))
            .arg(&conf)
            .args([action, arg])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("run PyKMIP");
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
        {
            Some(v) if out.status.success() => v,
            _ => panic!(
                "PyKMIP {action} {arg} failed: {stdout}\n{}\ngateway log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                gw.log()
            ),
        }
    }

    fn tls(&self, cert: &Path) -> ClientTls {
        ClientTls::from_files(
            &self.pki().join("ca.pem"),
            cert,
            &cert.with_extension("key"),
        )
        .unwrap()
    }
}

async fn call(
    c: &mut KmipClient,
    version: ProtocolVersion,
    p: RequestPayload,
) -> Result<ResponseMessage, String> {
    let message = RequestMessage {
        header: RequestHeader::new(version),
        items: vec![RequestBatchItem::new(p)],
    };
    let ttlv = c
        .call(&message.to_ttlv())
        .await
        .map_err(|e| e.to_string())?;
    ResponseMessage::from_ttlv(&ttlv).map_err(|e| e.to_string())
}

/// The Locate of `purearray test security-token`.
async fn locate(c: &mut KmipClient) -> Result<(), String> {
    let payload = RequestPayload::Locate(LocateRequest {
        attributes: vec![Attribute::name(&Name::new(ARRAY_KEY))],
        ..LocateRequest::default()
    });
    let response = call(c, ProtocolVersion { major: 1, minor: 4 }, payload).await?;
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
async fn served_certificate(gw: &GatewayProcess, ca: &Path, cert: &Path) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(cert.with_extension("key")).unwrap();
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

fn der_of(pem_file: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem_file)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// The word after `serial ` on the first line of `text` that has it.
fn serial_in(text: &str, prefix: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{text}"));
    let rest = &line[line.find("serial ").unwrap_or_else(|| panic!("{line}")) + 7..];
    rest.split_whitespace().next().unwrap().to_owned()
}

fn stop(mut gw: GatewayProcess) {
    gw.terminate();
    let status = gw.wait_exit(STOP_TIMEOUT).expect("exit after SIGTERM");
    assert!(status.success(), "exit {status:?}\n{}", gw.log());
}

/// `newkey`: the array's key (openssl `-newkey` arguments); `server_key`: `pki server-cert
/// --key-type` arguments (none for the default P-256).
async fn walk_through(newkey: &[&str], server_key: &[&str]) {
    if !is_root() {
        eprintln!("skipped: needs root to create {SERVICE_USER} and run the gateway as it");
        return;
    }
    let (uid, gid) = service_account();
    let site = Site {
        dir: tempfile::tempdir().unwrap(),
        uid,
        gid,
    };
    let (pki, config) = (site.pki(), site.config());
    let group = SERVICE_USER;

    // --- 1. Setup ---------------------------------------------------------------------------
    // `install -d -m 0750 -g kmip-gateway /etc/kmip-gateway`, and the state folders systemd's
    // StateDirectory= makes.
    std::os::unix::fs::chown(site.dir.path(), Some(0), Some(site.gid)).unwrap();
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    state_dir(&site.path("data"), site.uid, site.gid);
    state_dir(&site.path("data-secrets"), site.uid, site.gid);
    // Step 1, the array: its key and CSR.
    let csr = site.path("purefa.csr");
    let cert = site.path("purefa.pem");
    openssl_csr(&csr, &cert.with_extension("key"), "purefa", newkey);
    // Step 2: the configuration from the template, its paths this site's.
    let admin_port = free_port();
    let template =
        std::fs::read_to_string(workspace_root().join("deploy/config/gateway.example.toml"))
            .unwrap();
    let rewritten = template
        .replace("/var/lib/kmip-gateway", s(&site.path("data")))
        .replace("/etc/kmip-gateway", s(site.dir.path()))
        .replace("listen = \"0.0.0.0:5696\"", "listen = \"127.0.0.1:0\"")
        .replace("127.0.0.1:9696", &format!("127.0.0.1:{admin_port}"));
    std::fs::write(&config, rewritten).unwrap();
    std::os::unix::fs::chown(&config, Some(0), Some(site.gid)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = cli_ok(&[
        "pki",
        "init-ca",
        "--dir",
        s(&pki),
        "--cn",
        "Pure Storage FlashArray",
        "--group",
        group,
    ]);
    assert!(out.contains("ca.key"), "{out}");
    assert_eq!(mode_and_gid(&pki), (0o750, site.gid));
    assert_eq!(mode_and_gid(&pki.join("ca.key")), (0o600, 0));
    for f in ["ca.pem", "crl.pem", "ca-state.json"] {
        assert!(pki.join(f).is_file(), "{f} missing: {out}");
    }
    let out = cli_ok(&[
        "pki",
        "sign-csr",
        "--dir",
        s(&pki),
        "--csr",
        s(&csr),
        "--out",
        s(&cert),
    ]);
    assert!(out.contains("CN=purefa"), "{out}");
    // The template has no user yet, and check-config says so.
    let (ok, out) = gateway_cli(&["check-config", "--config", s(&config)]);
    assert!(
        !ok && out.contains("no [[users]]") && out.contains("kmip-gateway user add"),
        "{out}"
    );
    // Step 3: the user.
    let out = cli_ok(&[
        "user",
        "add",
        "purefa",
        "--ca",
        s(&pki.join("ca.pem")),
        "--config",
        s(&config),
    ]);
    assert!(out.contains("user 'purefa' added"), "{out}");
    assert_eq!(
        mode_and_gid(&config),
        (0o640, site.gid),
        "user add keeps the file readable by the service"
    );
    // Step 4: the listener's certificate.
    let mut args = vec![
        "pki",
        "server-cert",
        "--dir",
        s(&pki),
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--group",
        group,
    ];
    args.extend_from_slice(server_key);
    let out = cli_ok(&args);
    assert!(out.contains("0640"), "{out}");
    let first_serial = serial_in(&out, "server certificate");
    assert_eq!(mode_and_gid(&pki.join("server.key")), (0o640, site.gid));
    // Step 5: initialise the data folder as the service user, check, start.
    let init = Command::new("runuser")
        .args(["-u", SERVICE_USER, "--"])
        .arg(binary_path("kmip-gateway"))
        .args(["init", "--config", s(&config)])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let init_out =
        String::from_utf8_lossy(&init.stdout).into_owned() + &String::from_utf8_lossy(&init.stderr);
    assert!(
        init.status.success() && init_out.contains("created an empty vault"),
        "{init_out}"
    );
    let out = cli_ok(&["check-config", "--config", s(&config)]);
    assert!(
        out.contains(&format!("{}: OK", s(&config)))
            && out.contains(&format!(
                "server certificate CN=localhost ({}): DNS:localhost, IP:127.0.0.1; expires 20",
                s(&pki.join("server.pem"))
            ))
            && !out.contains("warning"),
        "{out}"
    );
    let mut gw = site.serve();
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let running_uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    assert_eq!(
        running_uid.split_whitespace().next(),
        Some(site.uid.to_string().as_str()),
        "runs as the service user"
    );

    // --- 2. The array: test (TLS + Locate), then its key -----------------------------------
    let made = site.array(&gw, &cert, "create", ARRAY_KEY);
    assert_eq!(made["locate_before"], serde_json::json!([]), "{made}");
    let key_a = made["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned();
    assert_eq!(made["locate_after"], serde_json::json!([key_a]), "{made}");
    let bytes_a = made["key"].as_str().unwrap().to_owned();
    assert_eq!(bytes_a.len(), 64, "an AES-256 key: {made}");
    let out = cli_ok(&["clients", "--config", s(&config)]);
    let row = out
        .lines()
        .find(|l| l.starts_with("purefa"))
        .unwrap_or_else(|| panic!("{out}"));
    let client_serial = serial_of(&cert);
    assert!(
        row.contains(&client_serial) && out.contains("last reload:"),
        "{out}"
    );

    // --- 3. Restart: Get at boot ------------------------------------------------------------
    gw.terminate();
    assert!(
        gw.wait_exit(STOP_TIMEOUT).is_some_and(|s| s.success()),
        "{}",
        gw.log()
    );
    drop(gw);
    let gw = site.serve();
    assert!(
        gw.log()
            .contains("client certificates seen before the restart loaded"),
        "{}",
        gw.log()
    );
    let got = site.array(&gw, &cert, "get", &key_a);
    assert_eq!(got["key"], bytes_a.as_str(), "Get at boot: {got}");

    // --- 4. Renewal of the listener's certificate, as root, without --group ----------------
    let mut args = vec![
        "pki",
        "server-cert",
        "--dir",
        s(&pki),
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
    ];
    args.extend_from_slice(server_key);
    let out = cli_ok(&args);
    let renewed_serial = serial_in(&out, "server certificate");
    assert_ne!(renewed_serial, first_serial, "{out}");
    assert_eq!(serial_in(&out, "previous"), first_serial, "{out}");
    let bak_pem = pki.join(format!("server.pem.{first_serial}.bak"));
    let bak_key = pki.join(format!("server.key.{first_serial}.bak"));
    assert!(
        out.contains(s(&bak_pem)) && bak_pem.is_file() && bak_key.is_file(),
        "{out}"
    );
    assert_eq!(mode_and_gid(&pki.join("server.key")), (0o640, site.gid));
    assert_eq!(mode_and_gid(&bak_key), (0o640, site.gid));
    let out = cli_ok(&["reload", "--config", s(&config)]);
    assert!(out.contains("last reload: ok"), "{out}\n{}", gw.log());
    assert_eq!(
        served_certificate(&gw, &pki.join("ca.pem"), &cert).await,
        der_of(&pki.join("server.pem")),
        "the renewed certificate is served"
    );
    let got = site.array(&gw, &cert, "get", &key_a);
    assert_eq!(got["key"], bytes_a.as_str(), "after renewal: {got}");

    // --- 5. Block the array: revoke its certificate ---------------------------------------
    let mut live = connect_and_locate(&gw, &site.tls(&cert))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    let out = cli_ok(&[
        "pki",
        "revoke",
        "--dir",
        s(&pki),
        "--cert",
        s(&cert),
        "--config",
        s(&config),
    ]);
    assert!(
        out.contains(&format!("revoked serial {client_serial}"))
            && out.contains(&format!(
                "enforced: the running gateway refuses serial {client_serial}"
            ))
            && out.contains(s(&pki.join("crl.pem"))),
        "{out}"
    );
    assert!(
        locate(&mut live).await.is_err(),
        "the live connection must be cut\n{}",
        gw.log()
    );
    assert!(
        connect_and_locate(&gw, &site.tls(&cert)).await.is_err(),
        "a new connection must be refused"
    );
    let out = cli_ok(&["pki", "list", "--dir", s(&pki)]);
    let row = out
        .lines()
        .find(|l| l.contains("purefa") && l.contains(&client_serial))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("revoked"), "{out}");
    // Access back: a new CSR on the array, signed; no reload.
    let csr2 = site.path("purefa-2.csr");
    let cert2 = site.path("purefa-2.pem");
    openssl_csr(&csr2, &cert2.with_extension("key"), "purefa", newkey);
    cli_ok(&[
        "pki",
        "sign-csr",
        "--dir",
        s(&pki),
        "--csr",
        s(&csr2),
        "--out",
        s(&cert2),
    ]);
    connect_and_locate(&gw, &site.tls(&cert2))
        .await
        .unwrap_or_else(|e| panic!("the new certificate: {e}\n{}", gw.log()));
    // A second key, for the backup.
    let made = site.array(&gw, &cert2, "create", "purefa-rdl-2");
    let key_b = made["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned();
    let bytes_b = made["key"].as_str().unwrap().to_owned();

    // --- 6. Delete the secret key from the gateway host -----------------------------------
    let out = cli_ok(&["keys", "list", "--config", s(&config), "--user", "purefa"]);
    let row = out
        .lines()
        .find(|l| l.starts_with(&key_a))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("Active") && row.contains(ARRAY_KEY), "{out}");
    let out = cli_ok(&[
        "keys",
        "destroy",
        "--config",
        s(&config),
        &key_a,
        "--reason",
        "CessationOfOperation",
        "--yes",
        "--operator",
        "alice",
    ]);
    assert!(
        out.contains(&format!("{key_a}: Revoke, then Destroy (now Destroyed)")),
        "{out}"
    );
    let got = site.array(&gw, &cert2, "get", &key_a);
    assert_eq!(got["failure"]["reason"], "ITEM_NOT_FOUND", "{got}");
    let mut c = connect_and_locate(&gw, &site.tls(&cert2)).await.unwrap();
    let gone = call(
        &mut c,
        ProtocolVersion { major: 2, minor: 1 },
        RequestPayload::Get(GetRequest {
            unique_identifier: Some(key_a.clone()),
            ..GetRequest::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        gone.items[0].result_reason,
        Some(ResultReason::ObjectDestroyed),
        "{gone:?}"
    );

    // --- 7. Backup while serving, restore drill --------------------------------------------
    let pass = site.path("backup.pass");
    std::fs::write(&pass, "a long backup passphrase for the walk-through\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let archive = site.path("kmip.kgb");
    let out = cli_ok(&[
        "backup",
        "--config",
        s(&config),
        "--out",
        s(&archive),
        "--passphrase-file",
        s(&pass),
        "--ca-dir",
        s(&pki),
    ]);
    assert!(archive.is_file(), "{out}");
    let new = tempfile::tempdir().unwrap();
    let new_data = new.path().join("data");
    let out = cli_ok(&[
        "restore",
        "--in",
        s(&archive),
        "--passphrase-file",
        s(&pass),
        "--data-dir",
        s(&new_data),
    ]);
    assert!(
        out.contains("2 objects") && out.contains("MAC chain verified"),
        "{out}"
    );
    let restored_config = new.path().join("gateway.toml");
    let backed_up =
        std::fs::read_to_string(new.path().join("data-restored/config/gateway.toml")).unwrap();
    let pointed: String = backed_up
        .lines()
        .map(|l| {
            if l.starts_with("data_dir = ") {
                format!("data_dir = \"{}\"\n", s(&new_data))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&restored_config, pointed).unwrap();
    let out = cli_ok(&["check-config", "--config", s(&restored_config)]);
    assert!(out.contains(": OK"), "{out}");
    // The drill's gateway, beside the running one: its own ports, as the service user. `restore`
    // ran as root (it reads root's archive and passphrase) and wrote root's 0700 folders, which
    // the service cannot open ("storage I/O failed: …/vault: Permission denied"): hand them to
    // the service user, as the state folders of step 1 are.
    std::fs::set_permissions(new.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["data", "data-secrets"] {
        let status = Command::new("chown")
            .args(["-R", &format!("{SERVICE_USER}:{SERVICE_USER}")])
            .arg(new.path().join(d))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let drill = GatewayProcess::start_as(
        SERVICE_USER,
        &GatewayOptions {
            extra_args: vec!["--config".into(), s(&restored_config).into()],
            no_init: true,
            ..Default::default()
        },
    );
    let got = site.array(&drill, &cert2, "get", &key_b);
    assert_eq!(got["key"], bytes_b.as_str(), "restored: {got}");
    let got = site.array(&drill, &cert2, "get", &key_a);
    assert_eq!(
        got["failure"]["reason"], "ITEM_NOT_FOUND",
        "destroyed before the backup: {got}"
    );
    stop(drill);
    drop((live, c));
    stop(gw);
}

fn serial_of(cert: &Path) -> String {
    let pem = std::fs::read_to_string(cert).unwrap();
    kmip_gateway::tooling::pki::describe_cert(&pem)
        .unwrap()
        .serial_hex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flasharray_walkthrough_with_ec_keys() {
    walk_through(
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flasharray_walkthrough_with_rsa_keys() {
    walk_through(&["-newkey", "rsa:2048"], &["--key-type", "rsa2048"]).await;
}
