//! Observability of the real binary: `/metrics` counters and histograms move with real requests
//! over mutual TLS, `/healthz` and `/readyz` answer, and the wire capture (`serve --capture`)
//! writes text and KMIP XML files that name the operations, hold no key bytes, and that
//! `kmip-conformance` reads (codec round trip) and replays against the gateway.

use kmip_e2e::{aes256_key_of, binary_path, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, CreateRequest, CryptographicAlgorithm, GetRequest, LocateRequest, ObjectType,
    ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
    ResponseBatchItem, ResponseMessage, ResponsePayload, ResultStatus,
};
use kmip_wire::spec::tags;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const VERSION: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };
/// How long a counter updated after the client saw its answer (a handshake failure, the capture
/// writer) may take to show.
const SETTLE: Duration = Duration::from_secs(10);

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses `name{k="v",...} value` lines (quoted values may hold commas, `=` and escapes).
fn parse_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..name_end].to_owned();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            let mut end = body.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '}' => {
                        end = i + 1;
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '\\' => {
                                    if let Some((_, e)) = chars.next() {
                                        value.push(if e == 'n' { '\n' } else { e });
                                    }
                                }
                                '"' => break,
                                c => value.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
            rest = &body[end..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value in metric line: {line}"));
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// A `/metrics` scrape.
struct Scrape(Vec<Sample>);

impl Scrape {
    fn take(gw: &GatewayProcess) -> Scrape {
        let (code, body) = gw.admin_get("/metrics");
        assert_eq!(code, 200, "{body}");
        Scrape(parse_samples(&body))
    }

    /// The sum of the samples named `name` carrying every label of `labels` (0 when none).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

async fn call(c: &mut KmipClient, payload: RequestPayload) -> ResponseBatchItem {
    let request = RequestMessage {
        header: RequestHeader::new(VERSION),
        items: vec![RequestBatchItem::new(payload)],
    };
    let reply = c.call(&request.to_ttlv()).await.expect("a response");
    let mut msg = ResponseMessage::from_ttlv(&reply).expect("a Response Message");
    assert_eq!(msg.items.len(), 1);
    msg.items.remove(0)
}

fn create_aes256() -> RequestPayload {
    RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes: vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
        ],
    })
}

async fn create(c: &mut KmipClient) -> String {
    let item = call(c, create_aes256()).await;
    match (&item.result_status, &item.payload) {
        (ResultStatus::Success, Some(ResponsePayload::Create(r))) => r.unique_identifier.clone(),
        _ => panic!("Create: {item:?}"),
    }
}

fn get(uid: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

/// The 32 key bytes `Get uid` returns.
async fn key_of(c: &mut KmipClient, uid: &str) -> Vec<u8> {
    let item = call(c, get(uid)).await;
    aes256_key_of(&item, uid)
}

async fn connect(gw: &GatewayProcess) -> KmipClient {
    let tls = ClientTls::from_files(&gw.ca_cert(), &gw.client_cert(), &gw.client_key()).unwrap();
    let mut c = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", gw.log()));
    c.set_timeout(Duration::from_secs(10));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_requests_and_refusals() {
    let gw = GatewayProcess::start_with(&GatewayOptions {
        admin: true,
        ..GatewayOptions::default()
    });
    assert_eq!(gw.admin_get("/healthz").0, 200);
    let (code, body) = gw.admin_get("/readyz");
    assert_eq!(code, 200, "{body}");

    let before = Scrape::take(&gw);
    let mut c = connect(&gw).await;
    let uid = create(&mut c).await;
    for _ in 0..2 {
        let item = call(&mut c, RequestPayload::Locate(LocateRequest::default())).await;
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
    }
    key_of(&mut c, &uid).await;
    let unknown = call(&mut c, get("no-such-object")).await;
    assert_eq!(unknown.result_status, ResultStatus::OperationFailed);

    // A client certificate from another CA: refused in the TLS handshake (under TLS 1.3 the
    // client sees it on its first read).
    let foreign = tempfile::tempdir().unwrap();
    let other = kmip_gateway::tooling::pki::dev_pki(foreign.path()).unwrap();
    let tls = ClientTls::from_files(
        &gw.ca_cert(),
        &other.dir.join(kmip_gateway::tooling::pki::DEV_CLIENT_CERT),
        &other.dir.join(kmip_gateway::tooling::pki::DEV_CLIENT_KEY),
    )
    .unwrap();
    let refused = async {
        let mut c = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls).await?;
        c.set_timeout(Duration::from_secs(10));
        c.call(
            &RequestMessage {
                header: RequestHeader::new(VERSION),
                items: vec![RequestBatchItem::new(RequestPayload::Locate(
                    LocateRequest::default(),
                ))],
            }
            .to_ttlv(),
        )
        .await
    };
    assert!(
        refused.await.is_err(),
        "a foreign certificate was served a response"
    );

    let untrusted = [("reason", "untrusted_chain")];
    let deadline = Instant::now() + SETTLE;
    let after = loop {
        let s = Scrape::take(&gw);
        let counted = s.sum("kmip_handshake_failures_total", &untrusted)
            > before.sum("kmip_handshake_failures_total", &untrusted);
        if counted || Instant::now() >= deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let requests = "kmip_requests_total";
    assert_eq!(
        delta(requests, &[("operation", "Create"), ("result", "success")]),
        1.0
    );
    assert_eq!(
        delta(requests, &[("operation", "Locate"), ("result", "success")]),
        2.0
    );
    assert_eq!(
        delta(requests, &[("operation", "Get"), ("result", "success")]),
        1.0
    );
    assert_eq!(
        delta(requests, &[("operation", "Get"), ("result", "failure")]),
        1.0
    );
    assert_eq!(delta(requests, &[("result", "failure")]), 1.0);
    // Latency is a histogram with buckets (aggregatable by operation in the dashboard).
    assert_eq!(
        delta("kmip_request_seconds_count", &[("operation", "Get")]),
        2.0
    );
    assert_eq!(
        delta("kmip_request_seconds_count", &[("operation", "Locate")]),
        2.0
    );
    assert_eq!(
        delta(
            "kmip_request_seconds_bucket",
            &[("operation", "Create"), ("le", "+Inf")]
        ),
        1.0
    );
    assert!(after.sum("kmip_request_seconds_sum", &[("operation", "Create")]) > 0.0);
    assert_eq!(delta("kmip_connections_accepted_total", &[]), 2.0);
    assert_eq!(delta("kmip_handshake_failures_total", &untrusted), 1.0);
    assert_eq!(delta("kmip_handshake_failures_total", &[]), 1.0);
    assert_eq!(delta("kmip_handshake_seconds_count", &[]), 1.0);
    // The client's connection is open (the refused one may still be winding down).
    assert!(after.sum("kmip_connections_open", &[]) >= 1.0);
    // The second, identical Locate with nothing written in between is served from the cache.
    assert_eq!(delta("kmip_locate_cache_misses_total", &[]), 1.0);
    assert_eq!(delta("kmip_locate_cache_hits_total", &[]), 1.0);
    assert!(delta("kmip_locate_cache_invalidations_total", &[]) >= 1.0);
    assert!(after.sum("kmip_cert_expiry_seconds", &[("kind", "server")]) > 0.0);

    drop(c);
    let deadline = Instant::now() + SETTLE;
    while Scrape::take(&gw).sum("kmip_connections_open", &[]) != 0.0 {
        assert!(Instant::now() < deadline, "connection still counted open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Fails if any 4-byte run of `key` is in `content` raw or in hex.
fn assert_no_key_bytes(content: &[u8], key: &[u8], file: &Path) {
    let lower = String::from_utf8_lossy(content).to_ascii_lowercase();
    for w in key.windows(4) {
        assert!(
            !content.windows(4).any(|c| c == w),
            "{}: holds key bytes",
            file.display()
        );
        assert!(
            !lower.contains(&to_hex(w)),
            "{}: holds key bytes in hex",
            file.display()
        );
    }
}

fn conformance(args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new(binary_path("kmip-conformance"))
        .args(args)
        .arg(file)
        .output()
        .expect("run kmip-conformance");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_files_name_the_operations_hide_the_key_and_replay() {
    let capture = tempfile::tempdir().unwrap();
    let dir = capture.path().join("capture");
    let gw = GatewayProcess::start_with(&GatewayOptions {
        admin: true,
        extra_args: vec!["--capture".into(), dir.display().to_string()],
        ..GatewayOptions::default()
    });
    let mut c = connect(&gw).await;
    let uid = create(&mut c).await;
    let key = key_of(&mut c, &uid).await;
    drop(c);

    // The writer thread writes after the response went out: wait for the close record.
    let deadline = Instant::now() + SETTLE;
    let text_file = loop {
        let done = files_with(&dir, "txt")
            .into_iter()
            .find(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("--- closed (")));
        if let Some(f) = done {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no closed capture in {}\n{}",
            dir.display(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let xml_files = files_with(&dir, "xml");
    assert_eq!(xml_files.len(), 1, "{xml_files:?}");
    let xml_file = &xml_files[0];
    assert_eq!(xml_file.with_extension("txt"), text_file);
    let name = xml_file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("-1-purefa.xml"), "{name}");

    let text = std::fs::read_to_string(&text_file).unwrap();
    let xml = std::fs::read_to_string(xml_file).unwrap();
    assert!(text.contains("Operation [Enumeration] Create"), "{text}");
    assert!(text.contains("Operation [Enumeration] Get"), "{text}");
    assert!(
        text.contains(&format!("UniqueIdentifier [TextString] {uid:?}")),
        "{text}"
    );
    assert!(
        text.contains("KeyMaterial [ByteString] <redacted 32 bytes>"),
        "{text}"
    );
    assert!(
        xml.contains(r#"<Operation type="Enumeration" value="Create"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<Operation type="Enumeration" value="Get"/>"#),
        "{xml}"
    );
    assert!(xml.contains(r#"<KeyMaterial type="ByteString" value="$REDACTED_32_BYTES_0"/>"#));
    // The identifier the server assigned is a placeholder in the XML (for replays), and only
    // in the text file.
    assert!(
        xml.contains(r#"<UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>"#),
        "{xml}"
    );
    assert!(!xml.contains(&uid), "{xml}");
    for f in [&text_file, xml_file] {
        assert_no_key_bytes(&std::fs::read(f).unwrap(), &key, f);
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let scrape = Scrape::take(&gw);
    assert_eq!(scrape.sum("kmip_capture_messages_total", &[]), 4.0);
    assert_eq!(scrape.sum("kmip_capture_errors_total", &[]), 0.0);

    let (ok, out) = conformance(&["--codec-only"], xml_file);
    assert!(
        ok,
        "kmip-conformance --codec-only rejects the capture:\n{out}\n{xml}"
    );
    assert!(out.contains(&format!("PASS {name}")), "{out}");

    // Replayed against the gateway: a new key is created and read back; its identifier and
    // material differ from the recorded ones, which the runner binds rather than compares.
    let addr = gw.addr().to_string();
    let (ca, cert, key_path) = (gw.ca_cert(), gw.client_cert(), gw.client_key());
    let replay_args = [
        "--server",
        addr.as_str(),
        "--server-name",
        gw.server_name(),
        "--ca",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key_path.to_str().unwrap(),
    ];
    let (ok, out) = conformance(&replay_args, xml_file);
    assert!(
        ok,
        "replaying the capture failed:\n{out}\n{xml}\n{}",
        gw.log()
    );
    assert!(out.contains(&format!("PASS {name}")), "{out}");
}
