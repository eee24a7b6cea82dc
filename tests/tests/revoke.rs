//! Revocation that cannot be silently off, against the real binary: with the example
//! configuration's shape (`[pki] dir`, no `[revocation] crls`) `pki revoke --config` cuts the
//! array's live connection and refuses new ones, and says whether the gateway enforces it;
//! `pki revoke` refuses a serial its CA never issued; `check-config` rejects what would make
//! revocation or TLS silently wrong, and prints the server certificate's names and expiry.

use kmip_e2e::{gateway_cli, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, LocateRequest, Name, ProtocolVersion, RequestBatchItem, RequestHeader,
    RequestMessage, RequestPayload, ResponseMessage, ResultStatus,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn cli_ok(args: &[&str]) -> String {
    let (ok, text) = gateway_cli(args);
    assert!(ok, "kmip-gateway {args:?} failed:\n{text}");
    text
}

fn cli_fails(args: &[&str]) -> String {
    let (ok, text) = gateway_cli(args);
    assert!(!ok, "kmip-gateway {args:?} should have failed:\n{text}");
    text
}

/// A CA folder made with `pki init-ca`, a listener certificate and the array's certificate.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        cli_ok(&[
            "pki",
            "init-ca",
            "--dir",
            s(&site.ca()),
            "--cn",
            "Pure Storage FlashArray",
        ]);
        cli_ok(&[
            "pki",
            "server-cert",
            "--dir",
            s(&site.ca()),
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ]);
        site
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn ca(&self) -> PathBuf {
        self.path("pki")
    }
    fn config(&self) -> PathBuf {
        self.path("gateway.toml")
    }

    /// The array's certificate: its own key and CSR, signed by the CA; returns (cert, key).
    fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let csr = kmip_gateway::tooling::pki::server_csr(&[name.to_owned()], &[]).unwrap();
        let (csr_path, key, cert) = (
            self.path(&format!("{name}.csr")),
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.pem")),
        );
        std::fs::write(&csr_path, &csr.csr_pem).unwrap();
        std::fs::write(&key, csr.key_pem.as_bytes()).unwrap();
        cli_ok(&[
            "pki",
            "sign-csr",
            "--dir",
            s(&self.ca()),
            "--csr",
            s(&csr_path),
            "--out",
            s(&cert),
        ]);
        (cert, key)
    }

    /// Writes the configuration: the example's shape, `pki` the `[pki]` section's body.
    fn write_config(&self, pki: &str, revocation: &str, user_ca: &Path, server: &str) {
        std::fs::write(
            self.config(),
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\n\n[tls]\ncert = \"{ca}/{server}.pem\"\nkey = \"{ca}/{server}.key\"\n\n\
                 [[users]]\nname = \"purefa\"\ncas = [\"{user_ca}\"]\n\n[pki]\n{pki}\n\n[revocation]\n{revocation}\n\n\
                 [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{token}\"\n",
                data = s(&self.path("data")),
                ca = s(&self.ca()),
                user_ca = s(user_ca),
                token = s(&self.path("admin.token")),
            ),
        )
        .unwrap();
    }

    fn tls(&self, (cert, key): &(PathBuf, PathBuf)) -> ClientTls {
        ClientTls::from_files(&self.ca().join("ca.pem"), cert, key).unwrap()
    }
}

/// The Locate of `purearray test security-token`.
async fn locate(client: &mut KmipClient) -> Result<(), String> {
    let message = RequestMessage {
        header: RequestHeader::new(ProtocolVersion { major: 1, minor: 4 }),
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

async fn connect_and_locate(gw: &GatewayProcess, tls: &ClientTls) -> Result<KmipClient, String> {
    let mut c = KmipClient::connect(&gw.addr().to_string(), "localhost", tls)
        .await
        .map_err(|e| e.to_string())?;
    c.set_timeout(Duration::from_secs(10));
    locate(&mut c).await?;
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_revoke_cuts_the_array_with_the_example_config_and_says_when_it_does_not() {
    let site = Site::new();
    let purefa = site.client("purefa");
    let ca_pem = site.ca().join("ca.pem");
    // First without [pki] dir: the gateway starts (with a warning), and revoking does nothing.
    site.write_config("", "", &ca_pem, "server");
    let gw = GatewayProcess::start_with(&GatewayOptions {
        admin: true,
        extra_args: vec!["--config".into(), s(&site.config()).into()],
        env: Vec::new(),
        ..Default::default()
    });
    assert!(
        gw.log().contains("user 'purefa'") && gw.log().contains("has no CRL in force"),
        "{}",
        gw.log()
    );
    let mut array = connect_and_locate(&gw, &site.tls(&purefa))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    let admin = gw.admin_addr().unwrap().to_string();
    let (ca_dir, config) = (site.ca(), site.config());
    let revoke = [
        "pki",
        "revoke",
        "--dir",
        s(&ca_dir),
        "--cert",
        s(&purefa.0),
        "--config",
        s(&config),
        "--admin",
        &admin,
    ];
    let out = cli_fails(&revoke);
    assert!(
        out.contains("revoked serial")
            && out.contains("not enforced: the gateway's config does not include this CA's CRL")
            && out.contains("[pki] dir"),
        "{out}"
    );
    locate(&mut array)
        .await
        .expect("not enforced: the array still works");

    // The example's shape: [pki] dir and no [revocation] crls. Now it is enforced.
    site.write_config(
        &format!("dir = \"{}\"", s(&site.ca())),
        "require_crl = true",
        &ca_pem,
        "server",
    );
    let out = cli_ok(&revoke);
    assert!(
        out.contains("already revoked")
            && out.contains("enforced: the running gateway refuses serial"),
        "{out}"
    );
    assert!(
        locate(&mut array).await.is_err(),
        "the live connection must be cut\n{}",
        gw.log()
    );
    assert!(
        connect_and_locate(&gw, &site.tls(&purefa)).await.is_err(),
        "a new connection must be refused"
    );
    // What the gateway enforces, behind the admin token.
    assert_eq!(gw.admin_request("GET", "/revocation", None).0, 401);
    let (code, body) = gw.admin_request("GET", "/revocation", Some(&gw.admin_token()));
    let crls: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(crls.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(crls[0]["path"], s(&site.ca().join("crl.pem")), "{body}");
    assert_eq!(crls[0]["revoked"].as_array().unwrap().len(), 1, "{body}");

    drop(gw);
    let out = cli_fails(&revoke);
    assert!(
        out.contains("gateway not reachable") && out.contains("kmip-gateway reload"),
        "{out}"
    );
}

#[test]
fn pki_revoke_refuses_a_serial_its_ca_never_issued() {
    let site = Site::new();
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other");
    cli_ok(&[
        "pki",
        "init-ca",
        "--dir",
        s(&other_ca),
        "--cn",
        "another CA",
    ]);
    let csr = kmip_gateway::tooling::pki::server_csr(&["purefa".to_owned()], &[]).unwrap();
    let csr_path = other.path().join("x.csr");
    std::fs::write(&csr_path, &csr.csr_pem).unwrap();
    let foreign_cert = other.path().join("x.pem");
    cli_ok(&[
        "pki",
        "sign-csr",
        "--dir",
        s(&other_ca),
        "--csr",
        s(&csr_path),
        "--out",
        s(&foreign_cert),
    ]);
    let listing: serde_json::Value =
        serde_json::from_str(&cli_ok(&["pki", "list", "--dir", s(&other_ca), "--json"])).unwrap();
    let serial = listing[0]["serial"].as_str().unwrap().to_owned();
    let before = std::fs::read(site.ca().join("crl.pem")).unwrap();

    let out = cli_fails(&["pki", "revoke", "--dir", s(&site.ca()), "--serial", &serial]);
    assert!(
        out.contains("not issued by the CA") && out.contains("nothing revoked"),
        "{out}"
    );
    let out = cli_fails(&[
        "pki",
        "revoke",
        "--dir",
        s(&site.ca()),
        "--cert",
        s(&foreign_cert),
    ]);
    assert!(out.contains("was not issued by the CA"), "{out}");
    assert_eq!(
        std::fs::read(site.ca().join("crl.pem")).unwrap(),
        before,
        "CRL untouched"
    );
}

#[test]
fn check_config_rejects_silent_revocation_and_wrong_certificates() {
    let site = Site::new();
    let purefa = site.client("purefa");
    let ca_pem = site.ca().join("ca.pem");
    let pki = format!("dir = \"{}\"", s(&site.ca()));
    let config = site.config();
    let check = ["check-config", "--config", s(&config)];

    // The example's shape passes and shows the listener's names and expiry.
    site.write_config(&pki, "require_crl = true", &ca_pem, "server");
    cli_ok(&["init", "--config", s(&config)]);
    let out = cli_ok(&check);
    assert!(
        out.contains("OK")
            && out.contains("DNS:localhost, IP:127.0.0.1")
            && out.contains("expires 20")
            && !out.contains("warning"),
        "{out}"
    );

    // A user CA without a CRL: a warning naming user and CA, an error with require_crl.
    site.write_config("", "", &ca_pem, "server");
    let out = cli_ok(&check);
    assert!(
        out.contains("warning: user 'purefa'")
            && out.contains("Pure Storage FlashArray")
            && out.contains("no CRL"),
        "{out}"
    );
    site.write_config("", "require_crl = true", &ca_pem, "server");
    let out = cli_fails(&check);
    assert!(
        out.contains("require_crl") && out.contains("user 'purefa'"),
        "{out}"
    );

    // [pki] dir without its CRL.
    let crl = site.ca().join("crl.pem");
    let saved = std::fs::read(&crl).unwrap();
    std::fs::remove_file(&crl).unwrap();
    site.write_config(&pki, "", &ca_pem, "server");
    let out = cli_fails(&check);
    assert!(
        out.contains("crl.pem") && out.contains("kmip-gateway pki crl --dir"),
        "{out}"
    );
    std::fs::write(&crl, saved).unwrap();

    // A listener certificate without serverAuth (the array's client certificate).
    std::fs::copy(&purefa.0, site.ca().join("client-as-server.pem")).unwrap();
    std::fs::copy(&purefa.1, site.ca().join("client-as-server.key")).unwrap();
    site.write_config(&pki, "", &ca_pem, "client-as-server");
    let out = cli_fails(&check);
    assert!(out.contains("serverAuth"), "{out}");

    // The CA's own certificate as the listener's.
    site.write_config(&pki, "", &ca_pem, "ca");
    let out = cli_fails(&check);
    assert!(out.contains("is a CA certificate"), "{out}");

    // A leaf given as the user's CA.
    site.write_config(&pki, "", &purefa.0, "server");
    let out = cli_fails(&check);
    assert!(out.contains("is not a CA certificate"), "{out}");
}

/// How long the file watch (300 ms after the last change) may take to apply a revocation on a
/// slow machine.
const WATCH_RELOAD_WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pki_dir_crl_is_watched_though_no_other_file_is_there() {
    let site = Site::new();
    let purefa = site.client("purefa");
    // The listener's files and the user's CA elsewhere: only [pki] dir names the CA folder.
    let elsewhere = site.path("listener");
    std::fs::create_dir(&elsewhere).unwrap();
    for name in ["server.pem", "server.key", "ca.pem"] {
        std::fs::copy(site.ca().join(name), elsewhere.join(name)).unwrap();
    }
    std::fs::write(
        site.config(),
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[tls]\ncert = \"{e}/server.pem\"\nkey = \"{e}/server.key\"\n\
             [[users]]\nname = \"purefa\"\ncas = [\"{e}/ca.pem\"]\n[pki]\ndir = \"{}\"\n",
            s(&site.path("data")),
            s(&site.ca()),
            e = s(&elsewhere),
        ),
    )
    .unwrap();
    let gw = GatewayProcess::start_with(&GatewayOptions {
        admin: false,
        extra_args: vec!["--config".into(), s(&site.config()).into()],
        env: Vec::new(),
        ..Default::default()
    });
    let mut array = connect_and_locate(&gw, &site.tls(&purefa))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    cli_ok(&[
        "pki",
        "revoke",
        "--dir",
        s(&site.ca()),
        "--cert",
        s(&purefa.0),
    ]);
    let deadline = std::time::Instant::now() + WATCH_RELOAD_WAIT;
    while locate(&mut array).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the CA folder's new CRL was not picked up\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(connect_and_locate(&gw, &site.tls(&purefa)).await.is_err());
}
