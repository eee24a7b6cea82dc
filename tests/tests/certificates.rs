//! End-to-end tests of certificates against the real binary: PyKMIP registers an X.509
//! certificate, gets it back byte for byte and locates it by its derived attributes (KMIP 1.2
//! and 2.0, on every backend).

use kmip_e2e::{backend_tests, workspace_root, GatewayProcess};
use kmip_gateway::tooling::pki::{self, CertProfile, IssueOptions, Serial};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The versions PyKMIP speaks that differ in how attributes are encoded.
const VERSIONS: [&str; 2] = ["1.2", "2.0"];

/// The Python interpreter with PyKMIP (`$KMIP_PYTHON`, else the workspace venv).
fn python() -> PathBuf {
    let path = std::env::var_os("KMIP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        path.is_file(),
        "no Python for the PyKMIP tests at {}: set KMIP_PYTHON",
        path.display()
    );
    path
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs one flow of certificates.py; panics with its report and the gateway log unless it ran
/// to its end.
fn run_flow(gw: &GatewayProcess, version: &str, flow: &str, args: &[(&str, String)]) -> Value {
    let conf = gw.dir().join("pykmip.conf");
    if !conf.exists() {
        std::fs::write(&conf, "").unwrap();
    }
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/python/certificates.py"))
        .args(["--host", "127.0.0.1", "--port"])
        .arg(gw.addr().port().to_string())
        .arg("--ca")
        .arg(gw.ca_cert())
        .arg("--cert")
        .arg(gw.client_cert())
        .arg("--key")
        .arg(gw.client_key())
        .arg("--config-file")
        .arg(&conf)
        .args(["--version", version, "--flow", flow])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (k, v) in args {
        cmd.arg(k).arg(v);
    }
    let out = cmd.output().expect("run certificates.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Option<Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    match report {
        Some(r) if out.status.success() && r.get("error").is_none() => r,
        _ => panic!(
            "flow {flow} at KMIP {version} failed.\nreport: {stdout}\npython stderr:\n{}\n\
             gateway log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        ),
    }
}

/// A certificate with a known serial and issuer, as DER in a file under `dir`.
struct TestCertificate {
    file: PathBuf,
    der: Vec<u8>,
    issuer_dn: Vec<u8>,
    serial: Vec<u8>,
}

fn test_certificate(dir: &Path, serial: &[u8]) -> TestCertificate {
    let ca = pki::init_ca("Certificates Test CA", 30).unwrap();
    let mut options = IssueOptions::new(Some("array-01".into()), CertProfile::Client, 30).unwrap();
    options.serial = Serial::from_bytes(serial).unwrap();
    let leaf = pki::issue_cert(&ca, &options).unwrap();
    let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
        .unwrap()
        .to_vec();
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
    // The CA's name is one Common Name, so its DER (the leaf's issuer DN) is known here
    // without parsing the certificate: SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, UTF8String } } }.
    let cn = b"Certificates Test CA";
    let mut issuer_dn = vec![
        0x30, 0x1f, 0x31, 0x1d, 0x30, 0x1b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x14,
    ];
    issuer_dn.extend_from_slice(cn);
    assert!(
        ca_der.windows(issuer_dn.len()).any(|w| w == issuer_dn),
        "the CA's certificate holds the expected DN"
    );
    let file = dir.join(format!("cert-{}.der", hex(serial)));
    std::fs::write(&file, &der).unwrap();
    TestCertificate {
        file,
        der,
        issuer_dn,
        serial: serial.to_vec(),
    }
}

backend_tests! {
    /// Register, Get (the exact DER) and Locate by Certificate Type and Length, by the X.509
    /// Certificate Identifier and, in 1.x, by the text Certificate Identifier.
    fn pykmip_register_get_locate(backend) {
        let gw = GatewayProcess::start_backend(backend);
        for (i, v) in VERSIONS.iter().enumerate() {
            let serial = [0x0a, 0x0b, 0x10 + i as u8];
            let cert = test_certificate(gw.dir(), &serial);
            let serial_text = u32::from_be_bytes([0, serial[0], serial[1], serial[2]]).to_string();
            let r = run_flow(&gw, v, "register_get_locate", &[
                ("--cert-file", cert.file.display().to_string()),
                ("--tag", format!("{}-{v}", backend.name())),
                ("--issuer-dn", hex(&cert.issuer_dn)),
                ("--serial", hex(&cert.serial)),
                ("--serial-text", serial_text),
                ("--issuer-text", "CN=Certificates Test CA".into()),
            ]);
            let ctx = format!("KMIP {v}: {r}");
            let uid = r["uid"].as_str().unwrap();
            assert_eq!(r["got_type"], "X509Certificate", "{ctx}");
            assert_eq!(r["got_der"], hex(&cert.der), "Get answers the registered bytes: {ctx}");
            assert_eq!(r["locate_type_length_name"], json!([uid]), "{ctx}");
            assert_eq!(r["locate_wrong_length"], json!([]), "{ctx}");
            assert_eq!(r["locate_x509_identifier"], json!([uid]), "{ctx}");
            assert_eq!(r["locate_x509_other_serial"], json!([]), "{ctx}");
            if !v.starts_with('2') {
                assert_eq!(r["locate_1x_identifier"], json!([uid]), "{ctx}");
            }
        }
    }
}
