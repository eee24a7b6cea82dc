//! The OASIS KMIP test vectors, run by the real `kmip-conformance` binary against the real
//! `kmip-gateway` binary over mutual TLS, on each backend (file vault, PKCS#11 on SoftHSM2).

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
    ("v2.1", "BL-M-"),
    ("v2.1", "SKLC-M-"),
    ("v2.1", "SASED-M-"),
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

/// Basic cryptographic vectors with AES keys (the ChaCha20 ones are a separate profile). Not all
/// pass yet (see the printed list); these must keep passing, on both backends.
const CS_BC_PASSING: &[&str] = &[
    "CS-BC-M-1-14.xml",
    "CS-BC-M-3-14.xml",
    "CS-BC-M-4-14.xml",
    "CS-BC-M-5-14.xml",
    "CS-BC-M-6-14.xml",
    "CS-BC-M-8-14.xml",
    "CS-BC-M-9-14.xml",
    "CS-BC-M-10-14.xml",
    "CS-BC-M-7-14.xml",
    "CS-BC-M-11-14.xml",
    "CS-BC-M-12-14.xml",
    "CS-BC-M-13-14.xml",
    "CS-BC-M-14-14.xml",
    "CS-BC-M-2-14.xml",
    "CS-BC-M-GCM-1-14.xml",
    "CS-BC-M-GCM-2-14.xml",
    "CS-BC-M-1-21.xml",
    "CS-BC-M-3-21.xml",
    "CS-BC-M-4-21.xml",
    "CS-BC-M-5-21.xml",
    "CS-BC-M-6-21.xml",
    "CS-BC-M-8-21.xml",
    "CS-BC-M-9-21.xml",
    "CS-BC-M-10-21.xml",
    "CS-BC-M-7-21.xml",
    "CS-BC-M-11-21.xml",
    "CS-BC-M-12-21.xml",
    "CS-BC-M-13-21.xml",
    "CS-BC-M-14-21.xml",
    "CS-BC-M-2-21.xml",
    "CS-BC-M-GCM-1-21.xml",
    "CS-BC-M-GCM-2-21.xml",
];

backend_tests! {
    fn basic_cryptographic_aes_vectors(backend) {
        let gw = GatewayProcess::start_backend(backend);
        let files: Vec<PathBuf> = ["v1.4", "v2.1"]
            .iter()
            .flat_map(|v| family(v, "CS-BC-M-"))
            .filter(|p| !p.to_string_lossy().contains("CHACHA"))
            .collect();
        let verdicts = run_vectors(&gw, &files);
        println!("{}", report(&verdicts));
        let regressed: Vec<&str> = CS_BC_PASSING
            .iter()
            .copied()
            .filter(|name| !verdicts.iter().any(|v| v.passed && v.name == *name))
            .collect();
        assert!(
            regressed.is_empty(),
            "these CS-BC vectors no longer pass on {}: {regressed:?}\n{}",
            backend.name(),
            report(&verdicts)
        );
    }
}

/// Asymmetric-key vectors (Create Key Pair, Sign/Signature Verify, RSA-OAEP) that pass on
/// every backend and must keep passing. Not yet passing: AKLC-M-* (they ask for the Random
/// Number Generator attribute), CS-AC-M-3 (a PSS verification with SHA-1, which aws-lc-rs does
/// not offer), CS-AC-M-OAEP-7..10 (OAEP with SHA-384 over MGF1-SHA-256: aws-lc-rs pairs each
/// OAEP hash with the same MGF1 hash).
const ASYM_PASSING: &[&str] = &[
    "CS-AC-M-1-14.xml",
    "CS-AC-M-2-14.xml",
    "CS-AC-M-8-14.xml",
    "CS-AC-M-OAEP-1-14.xml",
    "CS-AC-M-OAEP-3-14.xml",
    "CS-AC-M-OAEP-5-14.xml",
    "CS-AC-M-1-21.xml",
    "CS-AC-M-2-21.xml",
    "CS-AC-M-8-21.xml",
    "CS-AC-M-OAEP-1-21.xml",
    "CS-AC-M-OAEP-3-21.xml",
    "CS-AC-M-OAEP-5-21.xml",
];

/// RSA-OAEP decryptions with SHA-256/384/512: SoftHSM 2.6 decrypts OAEP with SHA-1 only, and
/// the private key does not leave the token to be used elsewhere.
const ASYM_PASSING_SOFTWARE_ONLY: &[&str] = &[
    "CS-AC-M-OAEP-2-14.xml",
    "CS-AC-M-OAEP-4-14.xml",
    "CS-AC-M-OAEP-6-14.xml",
    "CS-AC-M-OAEP-2-21.xml",
    "CS-AC-M-OAEP-4-21.xml",
    "CS-AC-M-OAEP-6-21.xml",
];

backend_tests! {
    fn asymmetric_key_vectors(backend) {
        let gw = GatewayProcess::start_backend(backend);
        let files: Vec<PathBuf> = ["v1.4", "v2.1"]
            .iter()
            .flat_map(|v| {
                ["AKLC-M-", "CS-AC-M-1-", "CS-AC-M-2-", "CS-AC-M-3-", "CS-AC-M-8-", "CS-AC-M-OAEP-"]
                    .iter()
                    .flat_map(move |p| family(v, p))
            })
            .collect();
        let verdicts = run_vectors(&gw, &files);
        println!("{}", report(&verdicts));
        let extra = match backend {
            Backend::Vault | Backend::Postgres => ASYM_PASSING_SOFTWARE_ONLY,
            Backend::SoftHsm => &[][..],
        };
        let regressed: Vec<&str> = ASYM_PASSING
            .iter()
            .chain(extra)
            .copied()
            .filter(|name| !verdicts.iter().any(|v| v.passed && v.name == *name))
            .collect();
        assert!(
            regressed.is_empty(),
            "these asymmetric-key vectors do not pass on {}: {regressed:?}\n{}\n\ngateway log:\n{}",
            backend.name(),
            report(&verdicts),
            gw.log()
        );
    }
}

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

/// Protocol-breadth vectors (issue 15: Query, Undo of Destroy, Quantum Safe, tape library keys) that
/// pass on every backend and must keep passing. TL-M-2-21 passes too, but only on a server
/// where TL-M-2-14 has not left its key behind (both name it alike; TL-M-3, which destroys it,
/// does not pass yet), so one of the pair runs here. QS-M-1-21 cannot pass: its Query answer
/// lists Interop and Log, the OASIS test-harness markers, which this server acknowledges without
/// acting on (Log's message is kept nowhere), so listing them would claim what it does not do;
/// and SetEndpointRole, which it does not serve.
const PROTOCOL_PASSING: &[&str] = &[
    "TL-M-1-14.xml",
    "TL-M-1-21.xml",
    "AX-M-1-14.xml",
    "AX-M-1-21.xml",
    "TL-M-2-14.xml",
    "QS-M-2-21.xml",
];

backend_tests! {
    fn protocol_breadth_vectors_pass(backend) {
        let gw = GatewayProcess::start_backend(backend);
        let files: Vec<PathBuf> = PROTOCOL_PASSING
            .iter()
            .map(|name| {
                let version = if name.ends_with("-14.xml") { "v1.4" } else { "v2.1" };
                vectors_dir().join(version).join(name)
            })
            .collect();
        let verdicts = run_vectors(&gw, &files);
        assert!(
            verdicts.iter().all(|v| v.passed),
            "protocol vectors failed on {}:\n{}\n\ngateway log:\n{}",
            backend.name(),
            report(&verdicts),
            gw.log()
        );
    }
}

/// Symmetric-breadth vectors (Triple DES keys, MAC with the key's parameters, MAC Verify, Hash,
/// RNG): these must keep passing on every backend.
const SYMMETRIC_PASSING: &[&str] = &[
    "SKFF-M-4-14.xml",
    "SKFF-M-8-14.xml",
    "SKFF-M-4-21.xml",
    "SKFF-M-8-21.xml",
    "CS-AC-M-7-14.xml",
    "CS-RNG-M-1-14.xml",
    "CS-AC-M-7-21.xml",
    "CS-RNG-M-1-21.xml",
];

/// Symmetric-breadth vectors that pass where the gateway computes (vault, PostgreSQL) and not on
/// PKCS#11: the CS-AC ones MAC with a 128-bit AES key, which SoftHSM refuses for HMAC (it takes
/// HMAC keys of type generic secret of at least the digest's length only), and SoftHSM has no
/// ChaCha20.
const SYMMETRIC_PASSING_IN_SOFTWARE: &[&str] = &[
    "CS-BC-M-CHACHA20-1-21.xml",
    "CS-BC-M-CHACHA20-2-21.xml",
    "CS-BC-M-CHACHA20-3-21.xml",
    "CS-BC-M-CHACHA20POLY1305-1-21.xml",
    "CS-AC-M-4-14.xml",
    "CS-AC-M-5-14.xml",
    "CS-AC-M-6-14.xml",
    "CS-AC-M-4-21.xml",
    "CS-AC-M-5-21.xml",
    "CS-AC-M-6-21.xml",
];

backend_tests! {
    fn symmetric_breadth_vectors(backend) {
        let gw = GatewayProcess::start_backend(backend);
        let software = match backend {
            Backend::Vault | Backend::Postgres => SYMMETRIC_PASSING_IN_SOFTWARE,
            Backend::SoftHsm => &[][..],
        };
        let names: Vec<&str> = SYMMETRIC_PASSING.iter().chain(software).copied().collect();
        let files: Vec<PathBuf> = names
            .iter()
            .map(|n| {
                let version = if n.ends_with("-14.xml") { "v1.4" } else { "v2.1" };
                vectors_dir().join(version).join(n)
            })
            .collect();
        let verdicts = run_vectors(&gw, &files);
        assert!(
            verdicts.iter().all(|v| v.passed),
            "symmetric vectors failed on {}:\n{}\n\ngateway log:\n{}",
            backend.name(),
            report(&verdicts),
            gw.log()
        );
    }
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
        for v in &verdicts {
            let known = MSGENC_KNOWN_FAILURES.iter().any(|(f, _)| v.name == *f);
            assert_eq!(
                v.passed,
                !known,
                "{}: passes now (remove it from MSGENC_KNOWN_FAILURES), or fails unexpectedly\n\
                 gateway log:\n{}",
                v.line,
                gw.log()
            );
            // The first exchange (a Maximum Response Size too small) matched: the transport,
            // the encoding and the size check work; only the Query list is missing.
            assert!(
                v.passed || v.line.contains(": response 1 (Query): "),
                "{}",
                v.line
            );
        }
    }
}

/// MSGENC vectors that fail, with the reason: all on the operations Query must list.
const MSGENC_KNOWN_FAILURES: &[(&str, &str)] = &[
    ("MSGENC-HTTPS-M-1-14.xml", QUERY_LIST_PENDING),
    ("MSGENC-XML-M-1-14.xml", QUERY_LIST_PENDING),
    ("MSGENC-JSON-M-1-14.xml", QUERY_LIST_PENDING),
    ("MSGENC-HTTPS-M-1-21.xml", QUERY_LIST_PENDING),
    ("MSGENC-XML-M-1-21.xml", QUERY_LIST_PENDING),
    ("MSGENC-JSON-M-1-21.xml", QUERY_LIST_PENDING),
];

const QUERY_LIST_PENDING: &str = "Query must list the Split Key object type (1.4: with Create and \
     Join Split Key), which the gateway does not build yet (issue 15)";
