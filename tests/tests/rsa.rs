//! RSA and EC certificates end to end, against the real binary: a PKI made with
//! `kmip-gateway pki --key-type`, client keys and CSRs made by `openssl req` (as an appliance's
//! would be) and signed by `pki sign-csr`, PyKMIP doing Create/Get over them, and
//! `openssl s_client` showing which TLS 1.2 suites the listener offers for its key.
//!
//! Needs `openssl` on PATH and PyKMIP (`$KMIP_PYTHON`, else `<workspace>/.venv/bin/python`).

use kmip_e2e::{gateway_cli, workspace_root, GatewayOptions, GatewayProcess};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn cli_ok(args: &[&str]) -> String {
    let (ok, text) = gateway_cli(args);
    assert!(ok, "kmip-gateway {args:?} failed:\n{text}");
    text
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (is it installed?)")
}

/// A CA folder made by `pki`, a gateway configuration over it, and the clients' files.
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

    /// `pki init-ca` and `pki server-cert` with these key types.
    fn new(ca_key: &str, server_key: &str) -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        let ca = site.ca_dir();
        let out = cli_ok(&["pki", "init-ca", "--dir", s(&ca), "--key-type", ca_key]);
        assert!(out.contains(&format!("0600, {ca_key}")), "{out}");
        let out = cli_ok(&[
            "pki",
            "server-cert",
            "--dir",
            s(&ca),
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--key-type",
            server_key,
        ]);
        assert!(
            out.contains("(0600, ") && out.contains(&format!(", {server_key})")),
            "{out}"
        );
        site
    }

    /// What an appliance does: `openssl req -newkey SPEC` with CN=`name`; returns the CSR, key.
    fn openssl_csr(&self, name: &str, newkey: &[&str]) -> (PathBuf, PathBuf) {
        let csr = self.path(&format!("{name}.csr"));
        let key = self.path(&format!("{name}.key"));
        let mut args = vec!["req", "-new", "-nodes", "-subj"];
        let subject = format!("/CN={name}");
        args.push(&subject);
        args.extend_from_slice(newkey);
        args.extend_from_slice(&["-keyout", s(&key), "-out", s(&csr)]);
        let out = openssl(&args);
        assert!(out.status.success(), "openssl req: {out:?}");
        (csr, key)
    }

    /// A client key and CSR from openssl, signed by `pki sign-csr`; returns (cert, key).
    fn client(&self, name: &str, newkey: &[&str]) -> (PathBuf, PathBuf) {
        let (csr, key) = self.openssl_csr(name, newkey);
        let cert = self.path(&format!("{name}.pem"));
        let ca = self.ca_dir();
        let out = cli_ok(&[
            "pki",
            "sign-csr",
            "--dir",
            s(&ca),
            "--csr",
            s(&csr),
            "--out",
            s(&cert),
        ]);
        assert!(out.contains(&format!("CN={name}")), "{out}");
        (cert, key)
    }

    /// Starts a gateway whose users are `users`, each trusting the CA, after check-config.
    fn start(&self, users: &[&str]) -> GatewayProcess {
        let ca = self.ca_dir();
        let mut config = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [revocation]\ncrls = [\"{}\"]\n",
            s(&self.path("data")),
            s(&ca.join("server.pem")),
            s(&ca.join("server.key")),
            s(&ca.join("crl.pem")),
        );
        for user in users {
            config.push_str(&format!(
                "\n[[users]]\nname = \"{user}\"\ncas = [\"{}\"]\n",
                s(&ca.join("ca.pem"))
            ));
        }
        let path = self.path("gateway.toml");
        std::fs::write(&path, config).unwrap();
        cli_ok(&["check-config", "--config", s(&path)]);
        GatewayProcess::start_with(&GatewayOptions {
            admin: false,
            extra_args: vec!["--config".into(), s(&path).into()],
            env: Vec::new(),
            ..Default::default()
        })
    }

    /// `openssl s_client` with a client certificate; `Ok(stderr of -brief)` when the handshake
    /// completed and the server's chain verified, else `Err(everything it printed)`.
    fn s_client(
        &self,
        gw: &GatewayProcess,
        (cert, key): &(PathBuf, PathBuf),
        extra: &[&str],
    ) -> Result<String, String> {
        let connect = format!("127.0.0.1:{}", gw.addr().port());
        let ca = self.ca_dir().join("ca.pem");
        let mut args = vec![
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-CAfile",
            s(&ca),
            "-verify_return_error",
            "-cert",
            s(cert),
            "-key",
            s(key),
            "-brief",
        ];
        args.extend_from_slice(extra);
        let out = openssl(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && text.contains("CONNECTION ESTABLISHED") {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// PyKMIP's FlashArray flow (Locate, Create, Activate, Get on a new connection, Revoke,
    /// Destroy) with this client's files; returns its report.
    fn pykmip_flow(
        &self,
        gw: &GatewayProcess,
        (cert, key): &(PathBuf, PathBuf),
        tag: &str,
    ) -> Value {
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
            .arg(workspace_root().join("tests/python/flows.py"))
            .args(["--host", "127.0.0.1", "--port"])
            .arg(gw.addr().port().to_string())
            .arg("--ca")
            .arg(self.ca_dir().join("ca.pem"))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--version", "1.4", "--flow", "flasharray", "--tag", tag])
            .arg("--config-file")
            .arg(&conf)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("run flows.py");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Option<Value> = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok());
        match report {
            Some(r) if out.status.success() && r.get("error").is_none() => r,
            _ => panic!(
                "PyKMIP flow failed: {stdout}\n{}\ngateway log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                gw.log()
            ),
        }
    }
}

/// The cipher suite line of `s_client -brief`.
fn ciphersuite(brief: &str) -> &str {
    brief
        .lines()
        .find_map(|l| l.strip_prefix("Ciphersuite: "))
        .unwrap_or_else(|| panic!("no Ciphersuite line in:\n{brief}"))
        .trim()
}

fn assert_created_and_got(report: &Value, who: &str) {
    let uid = report["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("{who}: {report}"));
    assert_eq!(
        report["locate_after"],
        serde_json::json!([uid]),
        "{who}: {report}"
    );
    assert_eq!(
        report["get"]["object_type"], "SymmetricKey",
        "{who}: {report}"
    );
    assert_eq!(report["get"]["length_bytes"], 32, "{who}: {report}");
}

#[test]
fn rsa_pki_end_to_end_with_rsa_and_ec_clients() {
    let site = Site::new("rsa2048", "rsa2048");
    // Appliances' CSRs of every common RSA size are signed; a key the listener would refuse is
    // not, and the operator is told what to make instead.
    for bits in ["3072", "4096"] {
        site.client(&format!("rsa{bits}"), &["-newkey", &format!("rsa:{bits}")]);
    }
    let (weak_csr, _) = site.openssl_csr("weak", &["-newkey", "rsa:1024"]);
    let (ok, text) = gateway_cli(&[
        "pki",
        "sign-csr",
        "--dir",
        s(&site.ca_dir()),
        "--csr",
        s(&weak_csr),
        "--out",
        s(&site.path("weak.pem")),
    ]);
    assert!(
        !ok && text.contains("RSA-1024") && text.contains("rsa:2048"),
        "{text}"
    );
    assert!(!site.path("weak.pem").exists());

    let purefa = site.client("purefa", &["-newkey", "rsa:2048"]);
    let ec_client = site.client(
        "ecclient",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let gw = site.start(&["purefa", "ecclient"]);
    assert!(gw.log().contains("server_key=\"rsa\""), "{}", gw.log());

    assert_created_and_got(&site.pykmip_flow(&gw, &purefa, "rsa"), "RSA client");
    assert_created_and_got(&site.pykmip_flow(&gw, &ec_client, "ec"), "EC client");

    for client in [&purefa, &ec_client] {
        let tls12 = site.s_client(&gw, client, &["-tls1_2"]).unwrap();
        assert!(
            ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"]
                .contains(&ciphersuite(&tls12)),
            "{tls12}"
        );
        for suite in ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"] {
            let forced = site
                .s_client(&gw, client, &["-tls1_2", "-cipher", suite])
                .unwrap();
            assert_eq!(ciphersuite(&forced), suite, "{forced}");
        }
        // Not offered: ChaCha20 with RSA, and ECDSA suites (the key cannot sign them).
        for suite in [
            "ECDHE-RSA-CHACHA20-POLY1305",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ] {
            let refused = site.s_client(&gw, client, &["-tls1_2", "-cipher", suite]);
            assert!(refused.is_err(), "{suite} was agreed: {refused:?}");
        }
        let tls13 = site.s_client(&gw, client, &["-tls1_3"]).unwrap();
        assert!(tls13.contains("Protocol version: TLSv1.3"), "{tls13}");
        assert!(ciphersuite(&tls13).starts_with("TLS_AES_"), "{tls13}");
    }
}

#[test]
fn rsa_client_on_an_ec_server() {
    let site = Site::new("p256", "p256");
    let purefa = site.client("purefa", &["-newkey", "rsa:2048"]);
    let gw = site.start(&["purefa"]);
    assert!(gw.log().contains("server_key=\"ecdsa\""), "{}", gw.log());
    assert_created_and_got(&site.pykmip_flow(&gw, &purefa, "rsa-on-ec"), "RSA client");
    let tls12 = site.s_client(&gw, &purefa, &["-tls1_2"]).unwrap();
    assert!(ciphersuite(&tls12).starts_with("ECDHE-ECDSA-"), "{tls12}");
    let refused = site.s_client(
        &gw,
        &purefa,
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
    );
    assert!(refused.is_err(), "an RSA suite on an EC key: {refused:?}");
    let tls13 = site.s_client(&gw, &purefa, &["-tls1_3"]).unwrap();
    assert!(tls13.contains("Protocol version: TLSv1.3"), "{tls13}");
}

#[test]
fn mixed_trees_ec_ca_with_rsa_server_and_rsa_ca_with_ec_server() {
    for (ca_key, server_key, suite_prefix) in [
        ("p384", "rsa3072", "ECDHE-RSA-AES"),
        ("rsa3072", "p384", "ECDHE-ECDSA-AES"),
    ] {
        let site = Site::new(ca_key, server_key);
        let client = site.client(
            "purefa",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        );
        let gw = site.start(&["purefa"]);
        let tls12 = site.s_client(&gw, &client, &["-tls1_2"]).unwrap();
        assert!(
            ciphersuite(&tls12).starts_with(suite_prefix),
            "CA {ca_key}, server {server_key}: {tls12}"
        );
        let tls13 = site.s_client(&gw, &client, &["-tls1_3"]).unwrap();
        assert!(tls13.contains("TLSv1.3"), "{tls13}");
    }
}

/// How long the gateway may take to notice a rewritten server certificate and reload: far above
/// the 300 ms debounce, so a loaded machine does not fail the test.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[test]
fn switching_the_listener_to_an_rsa_key_takes_effect_on_reload() {
    let site = Site::new("rsa2048", "p256");
    let client = site.client("purefa", &["-newkey", "rsa:2048"]);
    let gw = site.start(&["purefa"]);
    let before = site.s_client(&gw, &client, &["-tls1_2"]).unwrap();
    assert!(ciphersuite(&before).starts_with("ECDHE-ECDSA-"), "{before}");
    // The operator re-issues the listener's certificate with an RSA key; the folder is watched.
    cli_ok(&[
        "pki",
        "server-cert",
        "--dir",
        s(&site.ca_dir()),
        "--dns",
        "localhost",
        "--key-type",
        "rsa2048",
    ]);
    let deadline = std::time::Instant::now() + RELOAD_WAIT;
    loop {
        if let Ok(after) = site.s_client(&gw, &client, &["-tls1_2"]) {
            if ciphersuite(&after).starts_with("ECDHE-RSA-AES") {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still not served with the RSA key\n{}",
            gw.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_created_and_got(
        &site.pykmip_flow(&gw, &client, "after-switch"),
        "after the switch",
    );
}
