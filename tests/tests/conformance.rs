//! The OASIS KMIP test vectors, run by the real `kmip-conformance` binary against the real
//! `kmip-gateway` binary over mutual TLS, on each backend (file vault, PKCS#11 on SoftHSM2,
//! PostgreSQL), and some families through a KMIP proxy in front of another gateway.

use kmip_e2e::upstream::ProxyVersion;
use kmip_e2e::{backend_tests, binary_path, vectors_dir, Backend, GatewayOptions, GatewayProcess};
use std::path::PathBuf;
use std::process::Command;

/// The vector files of `version` (`v1.4`, `v2.1`) whose names start with `prefix`, sorted.
fn family(version: &str, prefix: &str) -> Vec<PathBuf> {
    let dir = vectors_dir().join(version);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(prefix) && name.ends_with(".xml")
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no {prefix}* vectors in {}",
        dir.display()
    );
    files
}

/// One verdict line of `kmip-conformance`.
struct Verdict {
    name: String,
    passed: bool,
    line: String,
}

/// Runs `kmip-conformance` against `gw` on `files`; returns the verdicts, after checking the
/// output's shape (one line per file, then the summary) and that the exit status agrees.
fn run_vectors(gw: &GatewayProcess, files: &[PathBuf]) -> Vec<Verdict> {
    run_vectors_at(gw, &gw.addr().to_string(), &[], files)
}

/// [`run_vectors`] against `addr` (a listener of `gw`) with `transport` arguments.
fn run_vectors_at(
    gw: &GatewayProcess,
    addr: &str,
    transport: &[&str],
    files: &[PathBuf],
) -> Vec<Verdict> {
    let out = Command::new(binary_path("kmip-conformance"))
        .args(transport)
        .arg("--server")
        .arg(addr)
        .args(["--server-name", gw.server_name()])
        .arg("--ca")
        .arg(gw.ca_cert())
        .arg("--cert")
        .arg(gw.client_cert())
        .arg("--key")
        .arg(gw.client_key())
        .args(files)
        .output()
        .expect("run kmip-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        files.len() + 1,
        "kmip-conformance output (stderr: {}):\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Verdict> = lines[..files.len()]
        .iter()
        .zip(files)
        .map(|(line, file)| {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let passed = *line == format!("PASS {name}");
            assert!(
                passed || line.starts_with(&format!("FAIL {name}: ")),
                "unexpected verdict line: {line}"
            );
            Verdict {
                name,
                passed,
                line: line.to_string(),
            }
        })
        .collect();
    let failed = verdicts.iter().filter(|v| !v.passed).count();
    assert_eq!(
        lines[files.len()],
        format!("{} passed, {failed} failed", files.len() - failed)
    );
    assert_eq!(
        out.status.success(),
        failed == 0,
        "exit status {}",
        out.status
    );
    verdicts
}

fn report(verdicts: &[Verdict]) -> String {
    verdicts
        .iter()
        .map(|v| v.line.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

backend_tests! {
    /// The families the gateway must pass: symmetric key lifecycle, storage arrays with
    /// self-encrypting drives, opaque objects (1.4), baseline server (2.1).
    fn mandatory_families_pass(backend) {
        let gw = GatewayProcess::start_backend(backend);
        let files: Vec<PathBuf> = MANDATORY_FAMILIES
            .iter()
        .flat_map(|(v, p)| family(v, p))
        .collect();
        let verdicts = run_vectors(&gw, &files);
        println!("{}", report(&verdicts));
        let unexpected: Vec<_> = verdicts
            .iter()
            .filter(|v| v.passed == KNOWN_FAILURES.iter().any(|(f, _)| v.name == *f))
            .collect();
        assert!(
            unexpected.is_empty(),
            "vectors failed on {}, or a known failure now passes (remove it from \
             KNOWN_FAILURES):\n{}\n\ngateway log:\n{}",
            backend.name(),
            report(&verdicts),
            gw.log()
        );
    }
}

/// The families whose every vector must pass: the profiles README.md's "KMIP support" claims
/// (and Query Profiles answers), each by the version and prefix of its mandatory vectors.
const MANDATORY_FAMILIES: &[(&str, &str)] = &[
    ("v1.4", "SKLC-M-"),
    ("v1.4", "SASED-M-"),
    ("v1.4", "OMOS-M-"),
    ("v1.4", "AKLC-M-"),
    ("v1.4", "SKFF-M-"),
    ("v1.4", "CS-RNG-M-"),
    ("v2.1", "BL-M-"),
    ("v2.1", "SKLC-M-"),
    ("v2.1", "SASED-M-"),
    ("v2.1", "AKLC-M-"),
    ("v2.1", "SKFF-M-"),
    ("v2.1", "CS-RNG-M-"),
    ("v2.1", "TL-M-"),
    ("v2.1", "AX-M-"),
    ("v2.1", "QS-M-"),
    ("v2.1", "PKCS11-M-"),
];

/// Mandatory-family vectors the gateway does not pass (on either backend), each with the reason.
/// A listed vector that starts passing fails the test, so the list cannot go stale.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

/// Every profile README.md claims names a vector family that [`MANDATORY_FAMILIES`] runs.
#[test]
fn every_profile_the_readme_claims_is_proved_by_its_vectors() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("read README.md");
    let section = &readme[readme
        .find("## KMIP support")
        .expect("KMIP support section")..];
    let rows: Vec<Vec<&str>> = section
        .lines()
        .take_while(|l| !l.starts_with("## Where"))
        .filter(|l| l.starts_with("| ") && !l.starts_with("| profile"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`'))
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "no profile rows in README.md");
    for row in rows {
        for (column, version) in [(1, "v1.4"), (2, "v2.1")] {
            if row[column] != "–" {
                assert!(
                    MANDATORY_FAMILIES.contains(&(version, row[3])),
                    "README claims {} in {version}, but its {} vectors are not required to pass",
                    row[column],
                    row[3]
                );
            }
        }
    }
}

backend_tests! {
    /// Every vector file of KMIP 1.4 and 2.1 on each backend (one gateway per version: TL-M-2-14
    /// and TL-M-2-21 create the same Name). The files that fail are exactly those
    /// [`EXPECTED_FAILURES`] lists for the backend, each with its reason: a listed file that
    /// passes fails the test too, so the list cannot go stale. The totals are printed.
    fn every_vector_file(backend) {
        let mut unexpected = Vec::new();
        let mut totals = Vec::new();
        for version in ["v1.4", "v2.1"] {
            let gw = GatewayProcess::start_backend(backend);
            let verdicts = run_vectors(&gw, &family(version, ""));
            let passed = verdicts.iter().filter(|v| v.passed).count();
            totals.push(format!("{version}: {passed}/{}", verdicts.len()));
            for v in &verdicts {
                let expected = EXPECTED_FAILURES
                    .iter()
                    .find(|(f, on, _)| *f == v.name && on.includes(backend));
                if v.passed == expected.is_some() {
                    unexpected.push(v.line.clone());
                }
            }
        }
        println!("{}: {}", backend.name(), totals.join(", "));
        assert!(
            unexpected.is_empty(),
            "on {} these vectors fail without being listed, or are listed and pass:\n{}",
            backend.name(),
            unexpected.join("\n")
        );
    }
}

/// The families run through a KMIP proxy in front of another gateway, in both directions of
/// version translation: symmetric key lifecycle and storage arrays with self-encrypting drives
/// (1.4 and 2.1), baseline server (2.1).
const PROXY_FAMILIES: &[(&str, &str)] = &[
    ("v1.4", "SKLC-M-"),
    ("v1.4", "SASED-M-"),
    ("v2.1", "SKLC-M-"),
    ("v2.1", "SASED-M-"),
    ("v2.1", "BL-M-"),
    ("v1.4", "AX-M-"),
    ("v2.1", "AX-M-"),
];

/// Runs [`PROXY_FAMILIES`] through a proxy speaking `version` to its upstream, after checking
/// from the proxy's log that it does (`expected`, the version its upstream connections speak).
/// Every file passes; the time taken is printed.
fn proxy_families(version: ProxyVersion, expected: &str) {
    let started = std::time::Instant::now();
    let backend = Backend::Proxy(version);
    let gw = GatewayProcess::start_backend(backend);
    let files: Vec<PathBuf> = PROXY_FAMILIES
        .iter()
        .flat_map(|(v, p)| family(v, p))
        .collect();
    let verdicts = run_vectors(&gw, &files);
    let log = gw.log();
    let spoken: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("upstream connection opened"))
        .collect();
    assert!(
        !spoken.is_empty()
            && spoken
                .iter()
                .all(|l| l.contains(&format!("version={expected}"))),
        "the proxy's upstream connections do not all speak KMIP {expected}:\n{log}"
    );
    let failed: Vec<_> = verdicts
        .iter()
        .filter(|v| !v.passed)
        .map(|v| v.line.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "through the proxy ({}) these vectors fail:\n{}\n\nproxy log:\n{log}",
        backend.name(),
        failed.join("\n")
    );
    println!(
        "{}: {}/{} passed in {:.1}s",
        backend.name(),
        verdicts.iter().filter(|v| v.passed).count(),
        verdicts.len(),
        started.elapsed().as_secs_f64()
    );
}

/// 1.4 and 2.1 clients in front of a 2.1 upstream.
#[test]
fn vector_families_through_the_proxy_to_a_2_1_upstream() {
    proxy_families(ProxyVersion::Negotiated, "2.1");
}

/// 1.4 and 2.1 clients in front of a 1.4 upstream: the 2.1 vectors' answers are the gateway's
/// 2.1 model over what a 1.4 upstream holds.
#[test]
fn vector_families_through_the_proxy_to_a_1_4_upstream() {
    proxy_families(ProxyVersion::V1_4, "1.4");
}

/// Where an expected failure happens.
#[derive(Clone, Copy)]
enum On {
    Every,
    /// PKCS#11 (SoftHSM2) only: the token cannot do it and the key does not leave it.
    Token,
}

impl On {
    fn includes(self, backend: Backend) -> bool {
        match self {
            On::Every => true,
            On::Token => backend == Backend::SoftHsm,
        }
    }
}

const SOFTHSM_OAEP: &str =
    "SoftHSM 2.6 decrypts RSA-OAEP with SHA-1 only, and the private key stays on the token";
const SOFTHSM_HMAC_AES: &str = "the vector MACs with a 128-bit AES key; SoftHSM takes HMAC keys of the generic-secret type only";
const SOFTHSM_CHACHA: &str = "SoftHSM 2.6 has no ChaCha20 mechanism";

/// The vector files that fail, where, and why.
const EXPECTED_FAILURES: &[(&str, On, &str)] = &[
    ("CS-AC-M-OAEP-2-14.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-OAEP-4-14.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-OAEP-6-14.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-OAEP-2-21.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-OAEP-4-21.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-OAEP-6-21.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-OAEP-8-14.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-OAEP-10-14.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-OAEP-8-21.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-OAEP-10-21.xml", On::Token, SOFTHSM_OAEP),
    ("CS-AC-M-4-14.xml", On::Token, SOFTHSM_HMAC_AES),
    ("CS-AC-M-5-14.xml", On::Token, SOFTHSM_HMAC_AES),
    ("CS-AC-M-6-14.xml", On::Token, SOFTHSM_HMAC_AES),
    ("CS-AC-M-4-21.xml", On::Token, SOFTHSM_HMAC_AES),
    ("CS-AC-M-5-21.xml", On::Token, SOFTHSM_HMAC_AES),
    ("CS-AC-M-6-21.xml", On::Token, SOFTHSM_HMAC_AES),
    ("CS-BC-M-CHACHA20-1-21.xml", On::Token, SOFTHSM_CHACHA),
    ("CS-BC-M-CHACHA20-2-21.xml", On::Token, SOFTHSM_CHACHA),
    ("CS-BC-M-CHACHA20-3-21.xml", On::Token, SOFTHSM_CHACHA),
    (
        "CS-BC-M-CHACHA20POLY1305-1-21.xml",
        On::Token,
        SOFTHSM_CHACHA,
    ),
    ("TL-M-3-14.xml", On::Every, TL_3_14),
];

/// A vector no server can pass as written.
const TL_3_14: &str = "its Get Attributes answer omits Sensitive, Extractable, Always Sensitive and Never Extractable, which its own Get Attribute List of the same key lists";

/// The runner itself: a vector whose expected response cannot match must FAIL, with the path of
/// the difference, and make the exit status non-zero.
#[test]
fn a_wrong_expectation_fails_with_its_path() {
    let gw = GatewayProcess::start_backend(Backend::Vault);
    let original = family("v1.4", "OMOS-M-1-")[0].clone();
    let text = std::fs::read_to_string(&original).unwrap();
    // The Register response must report Success; expect a failure instead.
    let first_status = r#"<ResultStatus type="Enumeration" value="Success"/>"#;
    assert!(text.contains(first_status));
    let broken = text.replacen(
        first_status,
        r#"<ResultStatus type="Enumeration" value="OperationFailed"/>"#,
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BROKEN-OMOS.xml");
    std::fs::write(&path, broken).unwrap();
    let verdicts = run_vectors(&gw, &[path]);
    assert!(!verdicts[0].passed);
    assert!(
        verdicts[0]
            .line
            .contains("/ResponseMessage/BatchItem/ResultStatus"),
        "{}",
        verdicts[0].line
    );
}

/// The message encodings over HTTPS (MSGENC-HTTPS over TTLV, MSGENC-XML over XML, MSGENC-JSON over
/// JSON, 1.4 and 2.1), through `kmip-conformance --https --encoding`. Query touches no key
/// material: one backend is enough.
#[test]
fn message_encodings_over_https() {
    let gw = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--https-listen".into(), "127.0.0.1:0".into()],
        ..Default::default()
    });
    let addr = gw
        .https_addr()
        .expect("the HTTPS listener's address")
        .to_string();
    for (prefix, encoding) in [
        ("MSGENC-HTTPS-M-", "ttlv"),
        ("MSGENC-XML-M-", "xml"),
        ("MSGENC-JSON-M-", "json"),
    ] {
        let files = [family("v1.4", prefix), family("v2.1", prefix)].concat();
        let verdicts = run_vectors_at(&gw, &addr, &["--https", "--encoding", encoding], &files);
        assert!(!verdicts.is_empty(), "no {prefix} vectors");
        for v in &verdicts {
            assert!(v.passed, "{}\ngateway log:\n{}", v.line, gw.log());
        }
    }
}
