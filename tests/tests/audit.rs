//! The audit trail from real requests: the real binary, real mutual TLS, every batch item a
//! record that names who did what to which object with which result, the hash chain verified by
//! `kmip-gateway audit verify`, and the same command catching an edited, a removed and a
//! reordered record.

use kmip_e2e::{aes256_key_of, gateway_cli, Backend, GatewayHome, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, AttributeRequest, CreateRequest, CryptographicAlgorithm, EndpointRole,
    GetAttributesRequest, GetRequest, InteropFunction, InteropRequest, LocateRequest, LogRequest,
    Name, ObjectType, ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage,
    RequestPayload, ResponseBatchItem, ResponseMessage, ResponsePayload, ResultStatus,
    RevocationReason, RevocationReasonCode, RevokeRequest, SetEndpointRoleRequest, UidRequest,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const VERSION: ProtocolVersion = ProtocolVersion::V1_4;
/// A graceful stop flushes and closes the trail well within this.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Sends one message of `payloads` and returns its items.
async fn batch(c: &mut KmipClient, payloads: Vec<RequestPayload>) -> Vec<ResponseBatchItem> {
    let request = RequestMessage {
        header: RequestHeader::new(VERSION),
        items: payloads.into_iter().map(RequestBatchItem::new).collect(),
    };
    let reply = c.call(&request.to_ttlv()).await.expect("an answer");
    ResponseMessage::from_ttlv(&reply)
        .expect("a Response Message")
        .items
}

async fn one(c: &mut KmipClient, payload: RequestPayload) -> ResponseBatchItem {
    let mut items = batch(c, vec![payload]).await;
    assert_eq!(items.len(), 1);
    items.remove(0)
}

fn uid_request(uid: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(uid.to_owned()),
    }
}

fn get(uid: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

/// One expected record: operation, the identifier it must name (if any), result status.
struct Expected {
    operation: &'static str,
    uid: Option<String>,
    status: &'static str,
}

fn expect(operation: &'static str, uid: Option<&str>, status: &'static str) -> Expected {
    Expected {
        operation,
        uid: uid.map(str::to_owned),
        status,
    }
}

fn audit_dir(home: &GatewayHome) -> PathBuf {
    home.data_dir().join("audit")
}

fn records(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("audit.log")).expect("read audit.log");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Runs `kmip-gateway audit verify` on `paths`: (success, what it printed).
fn verify(paths: &[&Path]) -> (bool, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["audit".as_ref(), "verify".as_ref()];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    gateway_cli(&args)
}

fn stop(mut gw: GatewayProcess) {
    gw.terminate();
    let status = gw.wait_exit(STOP_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "the gateway did not stop cleanly: {status:?}\n{}",
        gw.log()
    );
}

#[test]
fn every_request_is_recorded_and_the_chain_catches_tampering() {
    let home = GatewayHome::new(Backend::Vault);
    let gw = home.start();
    let tls = ClientTls::from_files(&home.ca_cert(), &home.client_cert(), &home.client_key())
        .expect("client TLS");
    let missing = "00000000-0000-4000-8000-000000000000";
    let rt = runtime();
    let (uid, key, expected) = rt.block_on(async {
        let mut c = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
            .await
            .expect("connect");
        let mut expected = Vec::new();
        let created = one(
            &mut c,
            RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
                    Attribute::name(&Name::new("audited")),
                ],
            }),
        )
        .await;
        let Some(ResponsePayload::Create(r)) = &created.payload else {
            panic!("Create answered {created:?}");
        };
        let uid = r.unique_identifier.clone();
        expected.push(expect("Create", Some(&uid), "Success"));

        let located = one(
            &mut c,
            RequestPayload::Locate(LocateRequest {
                attributes: vec![Attribute::name(&Name::new("audited"))],
                ..LocateRequest::default()
            }),
        )
        .await;
        assert_eq!(located.result_status, ResultStatus::Success);
        expected.push(expect("Locate", Some(&uid), "Success"));

        let got = one(&mut c, get(&uid)).await;
        let key = aes256_key_of(&got, &uid);
        expected.push(expect("Get", Some(&uid), "Success"));

        let attrs = one(
            &mut c,
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid.clone()),
                ..GetAttributesRequest::default()
            }),
        )
        .await;
        assert_eq!(attrs.result_status, ResultStatus::Success);
        expected.push(expect("GetAttributes", Some(&uid), "Success"));

        // Two items in one message: two records, in order.
        let items = batch(
            &mut c,
            vec![
                RequestPayload::AddAttribute(AttributeRequest {
                    unique_identifier: Some(uid.clone()),
                    attribute: Attribute::vendor("x", "audit", Value::TextString("yes".into())),
                }),
                RequestPayload::Activate(uid_request(&uid)),
            ],
        )
        .await;
        assert!(
            items
                .iter()
                .all(|i| i.result_status == ResultStatus::Success),
            "{items:?}"
        );
        expected.push(expect("AddAttribute", Some(&uid), "Success"));
        expected.push(expect("Activate", Some(&uid), "Success"));

        let failed = one(&mut c, get(missing)).await;
        assert_eq!(failed.result_status, ResultStatus::OperationFailed);
        expected.push(expect("Get", Some(missing), "OperationFailed"));

        let revoked = one(
            &mut c,
            RequestPayload::Revoke(RevokeRequest {
                unique_identifier: Some(uid.clone()),
                revocation_reason: RevocationReason {
                    code: RevocationReasonCode::CessationOfOperation,
                    message: None,
                },
                compromise_occurrence_date: None,
            }),
        )
        .await;
        assert_eq!(revoked.result_status, ResultStatus::Success, "{revoked:?}");
        expected.push(expect("Revoke", Some(&uid), "Success"));

        let destroyed = one(&mut c, RequestPayload::Destroy(uid_request(&uid))).await;
        assert_eq!(destroyed.result_status, ResultStatus::Success);
        expected.push(expect("Destroy", Some(&uid), "Success"));
        (uid, key, expected)
    });
    let client = kmip_gateway::tooling::pki::describe_cert(
        &std::fs::read_to_string(home.client_cert()).expect("read the client certificate"),
    )
    .expect("a certificate");
    stop(gw);

    let dir = audit_dir(&home);
    let recs = records(&dir);
    assert_eq!(
        recs.len(),
        expected.len(),
        "one record per batch item: {recs:#?}"
    );
    let first_seq = recs[0]["seq"].as_u64().expect("seq");
    for (i, (rec, want)) in recs.iter().zip(&expected).enumerate() {
        assert_eq!(rec["seq"].as_u64(), Some(first_seq + i as u64), "{rec}");
        assert_eq!(rec["operation"], want.operation, "{rec}");
        assert_eq!(rec["result_status"], want.status, "{rec}");
        assert_eq!(rec["user"], "purefa", "{rec}");
        assert_eq!(
            rec["cert_fingerprint"].as_str(),
            Some(client.sha256_fingerprint_hex.as_str()),
            "{rec}"
        );
        assert!(
            rec["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{rec}"
        );
        if let Some(u) = &want.uid {
            let uids: Vec<&str> = rec["unique_identifiers"]
                .as_array()
                .expect("unique_identifiers")
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect();
            assert!(uids.contains(&u.as_str()), "{rec} should name {u}");
        }
        if i > 0 {
            assert_eq!(rec["prev"], recs[i - 1]["hash"], "chain link at {rec}");
        }
    }
    assert!(
        recs[expected.len() - 3]["result_reason"]
            .as_str()
            .is_some_and(|r| r.contains("ItemNotFound")),
        "the failed Get's reason: {}",
        recs[expected.len() - 3]
    );
    // The key never reaches the trail, in any usual spelling.
    let raw = std::fs::read(dir.join("audit.log")).expect("read audit.log");
    let text = String::from_utf8_lossy(&raw).to_lowercase();
    assert!(
        !text.contains(&hex_of(&key)),
        "the key in hex is in the trail"
    );
    assert!(
        !raw.windows(key.len()).any(|w| w == key.as_slice()),
        "the key's bytes are in the trail"
    );

    let (ok, report) = verify(&[&dir]);
    assert!(ok, "a genuine trail must verify:\n{report}");

    // Each kind of tampering is caught, on a copy of the genuine trail.
    let lines: Vec<String> = std::fs::read_to_string(dir.join("audit.log"))
        .expect("read audit.log")
        .lines()
        .map(str::to_owned)
        .collect();
    let edited = {
        let mut l = lines.clone();
        l[2] = l[2].replace("\"user\":\"purefa\"", "\"user\":\"mallory\"");
        assert_ne!(l[2], lines[2], "the edit applies");
        l
    };
    let removed = {
        let mut l = lines.clone();
        l.remove(3);
        l
    };
    let reordered = {
        let mut l = lines.clone();
        l.swap(4, 5);
        l
    };
    for (what, tampered) in [
        ("an edited record", edited),
        ("a removed record", removed),
        ("two swapped records", reordered),
    ] {
        let copy = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(copy.path().join("audit.log"), tampered.join("\n") + "\n")
            .expect("write the tampered trail");
        let (ok, report) = verify(&[copy.path()]);
        assert!(!ok, "{what} was not caught:\n{report}");
    }
    assert!(!uid.is_empty());
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client's Log Message and Interop boundary land in the gateway's log and in their items'
/// audit records as one line each, escaped: a line break in the text cannot start a forged log
/// line, and a Client role is refused while the Server role is granted.
#[test]
fn log_and_interop_text_lands_in_the_log_and_the_trail_escaped() {
    let home = GatewayHome::new(Backend::Vault);
    let gw = home.start();
    let tls = ClientTls::from_files(&home.ca_cert(), &home.client_cert(), &home.client_key())
        .expect("client TLS");
    let forged = "harness step 3\n2026-01-01T00:00:00Z  INFO forged: user=admin destroyed all keys";
    let rt = runtime();
    let items = rt.block_on(async {
        let mut c = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
            .await
            .expect("connect");
        let request = RequestMessage {
            header: RequestHeader::new(ProtocolVersion::V2_1),
            items: vec![
                RequestPayload::Interop(InteropRequest {
                    function: InteropFunction::Begin,
                    identifier: "QS-M-1-21\u{1b}[2K".into(),
                }),
                RequestPayload::Log(LogRequest {
                    message: forged.into(),
                }),
                RequestPayload::SetEndpointRole(SetEndpointRoleRequest {
                    role: EndpointRole::Server,
                }),
                RequestPayload::SetEndpointRole(SetEndpointRoleRequest {
                    role: EndpointRole::Client,
                }),
            ]
            .into_iter()
            .map(RequestBatchItem::new)
            .collect(),
        };
        let reply = c.call(&request.to_ttlv()).await.expect("an answer");
        ResponseMessage::from_ttlv(&reply)
            .expect("a Response Message")
            .items
    });
    let statuses: Vec<_> = items.iter().map(|i| i.result_status).collect();
    assert_eq!(
        statuses,
        [
            ResultStatus::Success,
            ResultStatus::Success,
            ResultStatus::Success,
            ResultStatus::OperationFailed
        ],
        "{items:?}"
    );
    assert!(
        matches!(&items[2].payload, Some(ResponsePayload::SetEndpointRole(r)) if r.role == EndpointRole::Server),
        "{:?}",
        items[2]
    );
    assert_eq!(
        items[3].result_reason,
        Some(kmip_wire::model::ResultReason::FeatureNotSupported)
    );

    let escaped_message =
        "harness step 3\\u{a}2026-01-01T00:00:00Z  INFO forged: user=admin destroyed all keys";
    // The line is written before the answer; the harness reads stderr on its own thread.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gw.log().contains(escaped_message) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains(escaped_message))
        .unwrap_or_else(|| panic!("no escaped Log line in:\n{log}"));
    assert!(line.contains("kmip_gateway::client_log"), "{line}");
    assert!(line.contains("user="), "{line}");
    assert!(
        log.lines()
            .any(|l| l.contains("QS-M-1-21\\u{1b}[2K") && l.contains("Begin")),
        "no escaped Interop line in:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a client forged a log line:\n{log}"
    );
    stop(gw);

    let notes: Vec<(String, Option<String>)> = records(&audit_dir(&home))
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap_or_default().to_owned(),
                r.get("note").and_then(|n| n.as_str()).map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        notes,
        [
            (
                "Interop".to_owned(),
                Some("Begin QS-M-1-21\\u{1b}[2K".to_owned())
            ),
            ("Log".to_owned(), Some(escaped_message.to_owned())),
            ("SetEndpointRole".to_owned(), None),
            ("SetEndpointRole".to_owned(), None),
        ]
    );
    let (ok, out) = verify(&[&audit_dir(&home)]);
    assert!(ok, "{out}");
}
