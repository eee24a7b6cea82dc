//! The real gateway on the PKCS#11 backend (a private SoftHSM2 token per test), seen from both
//! sides: KMIP requests through the workspace's client, and the token itself through
//! `pkcs11-tool` (a second process: SoftHSM lets it read the token the gateway holds).
//!
//! Needs `softhsm2` and `opensc` (`apt-get install -y softhsm2 opensc`).

use kmip_e2e::{Backend, GatewayHome, GatewayOptions, GatewayProcess, Pkcs11Settings};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, AttributeRequest, CreateRequest, CryptographicAlgorithm, GetAttributesRequest,
    GetRequest, KeyBlock, LocateRequest, ManagedObject, Name, ObjectType, ProtocolVersion,
    RegisterRequest, RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
    ResponseBatchItem, ResponseMessage, ResponsePayload, ResultStatus, RevocationReason,
    RevocationReasonCode, RevokeRequest, SecretBytes, SecretDataType, UidRequest,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// KMIP 1.4: custom attributes are plain `x-` names.
const VERSION: ProtocolVersion = ProtocolVersion::V1_4;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn tls(home: &GatewayHome) -> ClientTls {
    ClientTls::from_files(&home.ca_cert(), &home.client_cert(), &home.client_key()).unwrap()
}

async fn connect(gw: &GatewayProcess, tls: &ClientTls) -> KmipClient {
    KmipClient::connect(&gw.addr().to_string(), gw.server_name(), tls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", gw.log()))
}

/// One single-item request; panics if the connection fails (the gateway must always answer).
async fn call(c: &mut KmipClient, payload: RequestPayload) -> ResponseBatchItem {
    let request = RequestMessage {
        header: RequestHeader::new(VERSION),
        items: vec![RequestBatchItem::new(payload)],
    };
    let reply = c.call(&request.to_ttlv()).await.expect("an answer");
    let mut msg = ResponseMessage::from_ttlv(&reply).expect("a Response Message");
    assert_eq!(msg.items.len(), 1);
    msg.items.remove(0)
}

async fn ok(c: &mut KmipClient, payload: RequestPayload) -> Option<ResponsePayload> {
    let what = format!("{:?}", payload.operation());
    let item = call(c, payload).await;
    assert_eq!(
        item.result_status,
        ResultStatus::Success,
        "{what}: {item:?}"
    );
    item.payload
}

fn create_aes(name: Option<&str>) -> RequestPayload {
    let mut attributes = vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
        Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
    ];
    if let Some(n) = name {
        attributes.push(Attribute::name(&Name::new(n)));
    }
    RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes,
    })
}

async fn create(c: &mut KmipClient, name: Option<&str>) -> String {
    match ok(c, create_aes(name)).await {
        Some(ResponsePayload::Create(r)) => r.unique_identifier,
        other => panic!("Create answered {other:?}"),
    }
}

fn get(uid: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

/// The key (or secret) bytes Get returns.
async fn material(c: &mut KmipClient, uid: &str) -> Vec<u8> {
    match ok(c, get(uid)).await {
        Some(ResponsePayload::Get(g)) => g
            .object
            .key_block()
            .and_then(|kb| kb.key_bytes())
            .map(|b| b.as_slice().to_vec())
            .unwrap_or_else(|| panic!("Get {uid}: no key bytes: {:?}", g.object.object_type())),
        other => panic!("Get answered {other:?}"),
    }
}

/// Every attribute of `uid`, keyed by name (values in order).
async fn attributes(c: &mut KmipClient, uid: &str) -> BTreeMap<String, Vec<Value>> {
    let payload = RequestPayload::GetAttributes(GetAttributesRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetAttributesRequest::default()
    });
    let Some(ResponsePayload::GetAttributes(r)) = ok(c, payload).await else {
        panic!("Get Attributes {uid} without payload");
    };
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for a in r.attributes {
        let name = a.name.v1_name().unwrap_or_else(|| format!("{:?}", a.name));
        out.entry(name).or_default().push(a.value);
    }
    out
}

async fn locate_name(c: &mut KmipClient, name: &str) -> Vec<String> {
    let payload = RequestPayload::Locate(LocateRequest {
        attributes: vec![Attribute::name(&Name::new(name))],
        ..LocateRequest::default()
    });
    match ok(c, payload).await {
        Some(ResponsePayload::Locate(l)) => l.unique_identifiers,
        other => panic!("Locate answered {other:?}"),
    }
}

fn uid_request(uid: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(uid.to_owned()),
    }
}

fn custom(name: &str, value: &str) -> Attribute {
    Attribute::vendor("x", name, Value::TextString(value.to_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `CKA_ID`s (hex, lower case) of the token's secret keys, as `pkcs11-tool` lists them.
fn secret_key_ids(home: &GatewayHome) -> Vec<String> {
    home.pkcs11_tool(&["--list-objects", "--type", "secrkey"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ID:"))
        .map(|id| id.trim().to_ascii_lowercase())
        .collect()
}

/// (a) A key created through KMIP is a token object whose `CKA_ID` is the Unique Identifier and
/// whose `CKA_VALUE` is what Get returns; Destroy removes it from the token.
#[test]
fn a_created_key_is_a_token_object_identified_by_its_uid() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let gw = home.start();
    let tls = tls(&home);
    let rt = runtime();
    let (uid, key) = rt.block_on(async {
        let mut c = connect(&gw, &tls).await;
        let uid = create(&mut c, Some("pkcs11-e2e-key")).await;
        let key = material(&mut c, &uid).await;
        (uid, key)
    });
    assert_eq!(key.len(), 32);
    let id = hex(uid.as_bytes());
    assert!(
        secret_key_ids(&home).contains(&id),
        "no secret key with CKA_ID {id} ({uid}) on the token:\n{}",
        home.pkcs11_tool(&["--list-objects", "--type", "secrkey"])
    );
    let out = home.dir().join("value.bin");
    home.pkcs11_tool(&[
        "--read-object",
        "--type",
        "secrkey",
        "--id",
        &id,
        "--output-file",
        &out.display().to_string(),
    ]);
    let on_token = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    assert!(
        on_token == key,
        "CKA_VALUE on the token differs from what Get returned"
    );

    rt.block_on(async {
        let mut c = connect(&gw, &tls).await;
        ok(&mut c, RequestPayload::Destroy(uid_request(&uid))).await;
    });
    assert!(
        !secret_key_ids(&home).contains(&id),
        "the key of {uid} is still on the token after Destroy"
    );
}

/// The state one object must have after a restart.
struct Expected {
    uid: String,
    attributes: BTreeMap<String, Vec<Value>>,
    material: Option<Vec<u8>>,
}

/// (b) A gateway restarted (stopped with SIGTERM) on the same token finds every object,
/// attribute (custom `x-` ones and Name included) and state, key material included; Fresh
/// cleared by a Get too, which is written in the background and flushed by a graceful stop.
#[test]
fn a_restart_finds_every_object_attribute_and_state() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let tls = tls(&home);
    let rt = runtime();
    let mut gw = home.start();
    let expected: Vec<Expected> = rt.block_on(async {
        let mut c = connect(&gw, &tls).await;
        // Pre-Active key with a name and custom attributes.
        let plain = create(&mut c, Some("restart-plain")).await;
        for (n, v) in [("SASED-Drive", "drive-7"), ("SASED-Slot", "7")] {
            ok(
                &mut c,
                RequestPayload::AddAttribute(AttributeRequest {
                    unique_identifier: Some(plain.clone()),
                    attribute: custom(n, v),
                }),
            )
            .await;
        }
        // Active key.
        let active = create(&mut c, Some("restart-active")).await;
        ok(&mut c, RequestPayload::Activate(uid_request(&active))).await;
        // Compromised key.
        let revoked = create(&mut c, Some("restart-revoked")).await;
        ok(&mut c, RequestPayload::Activate(uid_request(&revoked))).await;
        ok(
            &mut c,
            RequestPayload::Revoke(RevokeRequest {
                unique_identifier: Some(revoked.clone()),
                revocation_reason: RevocationReason {
                    code: RevocationReasonCode::KeyCompromise,
                    message: Some("e2e".into()),
                },
                compromise_occurrence_date: Some(1_700_000_000),
            }),
        )
        .await;
        // Destroyed key: its attributes stay, its material does not.
        let destroyed = create(&mut c, Some("restart-destroyed")).await;
        ok(&mut c, RequestPayload::Destroy(uid_request(&destroyed))).await;
        // Registered Secret Data with a custom attribute.
        let secret = b"correct horse battery staple".to_vec();
        let registered = match ok(
            &mut c,
            RequestPayload::Register(RegisterRequest {
                templates: Vec::new(),
                object_type: ObjectType::SecretData,
                attributes: vec![
                    Attribute::name(&Name::new("restart-secret")),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
                    custom("Owner", "e2e"),
                ],
                object: ManagedObject::SecretData {
                    secret_data_type: SecretDataType::Password,
                    key_block: KeyBlock::raw(SecretBytes::from_slice(&secret), None, None),
                },
            }),
        )
        .await
        {
            Some(ResponsePayload::Register(r)) => r.unique_identifier,
            other => panic!("Register answered {other:?}"),
        };
        let mut expected = Vec::new();
        for uid in [plain, active, revoked, registered] {
            // Get first: it clears Fresh.
            let material = Some(material(&mut c, &uid).await);
            expected.push(Expected {
                attributes: attributes(&mut c, &uid).await,
                material,
                uid,
            });
        }
        expected.push(Expected {
            attributes: attributes(&mut c, &destroyed).await,
            material: None,
            uid: destroyed,
        });
        expected
    });
    let names: Vec<&str> = expected[0].attributes.keys().map(String::as_str).collect();
    for must in ["Name", "State", "x-SASED-Drive", "x-SASED-Slot"] {
        assert!(
            names.contains(&must),
            "{must} missing before restart: {names:?}"
        );
    }
    gw.terminate();
    let status = gw.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful stop: {status:?}\n{}",
        gw.log()
    );
    drop(gw);

    let gw = home.start();
    rt.block_on(async {
        let mut c = connect(&gw, &tls).await;
        for e in &expected {
            let after = attributes(&mut c, &e.uid).await;
            assert_eq!(
                after, e.attributes,
                "attributes of {} changed by the restart",
                e.uid
            );
            match &e.material {
                Some(m) => assert!(
                    material(&mut c, &e.uid).await == *m,
                    "material of {} changed by the restart",
                    e.uid
                ),
                None => {
                    let item = call(&mut c, get(&e.uid)).await;
                    assert_eq!(
                        item.result_status,
                        ResultStatus::OperationFailed,
                        "{item:?}"
                    );
                }
            }
        }
        for (name, e) in ["restart-plain", "restart-active", "restart-revoked"]
            .iter()
            .zip(&expected)
        {
            assert_eq!(
                locate_name(&mut c, name).await,
                vec![e.uid.clone()],
                "Locate {name}"
            );
        }
        assert_eq!(
            locate_name(&mut c, "restart-secret").await,
            [expected[3].uid.clone()]
        );
    });
    assert!(
        gw.log().contains("objects=5"),
        "the restarted gateway did not load 5 objects:\n{}",
        gw.log()
    );
}

/// (c) A wrong PIN stops the start with a non-zero exit and a message naming the problem,
/// never the PIN.
#[test]
fn a_wrong_pin_fails_the_start_clearly_without_showing_it() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let real_pin = std::fs::read_to_string(home.pin_file()).unwrap();
    let wrong_pin = "9182736450918273";
    assert_ne!(real_pin.trim(), wrong_pin);
    let wrong_file = home.dir().join("wrong.pin");
    std::fs::write(&wrong_file, wrong_pin).unwrap();
    // Private, as the gateway requires of a PIN file: the PIN is what is wrong.
    std::fs::set_permissions(
        &wrong_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    home.set_pkcs11(&Pkcs11Settings {
        pin_file: Some(wrong_file),
        ..Pkcs11Settings::default()
    });
    let started = Instant::now();
    let failure = match home.try_start_with(&GatewayOptions::default()) {
        Ok(gw) => panic!("the gateway started with a wrong PIN:\n{}", gw.log()),
        Err(f) => f,
    };
    let status = failure.status.expect("the gateway exits by itself");
    assert!(!status.success(), "exit status {status}");
    let log = failure.log;
    assert!(
        log.contains("login failed") && log.contains("PIN is incorrect"),
        "the message does not name the wrong PIN as the problem:\n{log}"
    );
    assert!(!log.contains(wrong_pin), "the log shows the PIN:\n{log}");
    assert!(
        !log.contains(real_pin.trim()),
        "the log shows the real PIN:\n{log}"
    );
    eprintln!(
        "wrong PIN: exit {status} after {:?}; message: {}",
        started.elapsed(),
        log.lines().last().unwrap_or("")
    );

    // The right PIN starts it.
    home.set_pkcs11(&Pkcs11Settings::default());
    drop(home.start());
}

/// (d) Token files removed under a running gateway: requests fail with a Result Reason on a
/// connection that stays usable, the process stays up, `/readyz` says not ready. SoftHSM reads
/// the token folder only at `C_Initialize`; the gateway's watchdog reloads the module once the
/// files are back, and the same process serves again without a restart.
#[test]
fn token_files_removed_fail_cleanly_and_the_gateway_recovers() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let tls = tls(&home);
    let rt = runtime();
    let admin = GatewayOptions {
        admin: true,
        ..GatewayOptions::default()
    };
    let mut gw = home.start_with(&admin);
    assert_eq!(gw.admin_get("/readyz").0, 200, "{}", gw.log());
    let (uid, key) = rt.block_on(async {
        let mut c = connect(&gw, &tls).await;
        let uid = create(&mut c, Some("survivor")).await;
        let key = material(&mut c, &uid).await;
        (uid, key)
    });

    let tokens = home.token_dir();
    let aside = home.dir().join("tokens-aside");
    std::fs::rename(&tokens, &aside).unwrap();
    std::fs::create_dir(&tokens).unwrap();

    rt.block_on(async {
        let mut c = connect(&gw, &tls).await;
        let failures = [
            ("Get", get(&uid)),
            ("Create", create_aes(Some("during-outage"))),
            (
                "Add Attribute",
                RequestPayload::AddAttribute(AttributeRequest {
                    unique_identifier: Some(uid.clone()),
                    attribute: custom("During", "outage"),
                }),
            ),
            ("Destroy", RequestPayload::Destroy(uid_request(&uid))),
        ];
        for (what, payload) in failures {
            let item = call(&mut c, payload).await;
            assert_eq!(
                item.result_status,
                ResultStatus::OperationFailed,
                "{what} without token files: {item:?}"
            );
            assert!(
                item.result_reason.is_some(),
                "{what}: no Result Reason: {item:?}"
            );
            eprintln!(
                "token gone: {what} -> {:?} {:?}",
                item.result_reason, item.result_message
            );
        }
        // The same connection still answers what needs no token.
        let payload = RequestPayload::Locate(LocateRequest {
            attributes: vec![Attribute::name(&Name::new("survivor"))],
            ..LocateRequest::default()
        });
        let item = call(&mut c, payload).await;
        eprintln!("token gone: Locate -> {:?}", item.result_status);
    });
    assert!(gw.is_running(), "the gateway died:\n{}", gw.log());
    let (code, body) = gw.admin_get("/readyz");
    assert_eq!(code, 503, "readyz without token files: {body}");
    assert!(
        body.contains("restore"),
        "readyz does not say how to recover: {body}"
    );
    eprintln!("token gone: /readyz {code} {}", body.trim());
    assert_eq!(gw.admin_get("/healthz").0, 200);

    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&aside, &tokens).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gw.admin_get("/readyz").0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not reopen the restored token:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(gw.log().contains("PKCS#11 token reopened"), "{}", gw.log());
    rt.block_on(async {
        let mut c = connect(&gw, &tls).await;
        assert!(material(&mut c, &uid).await == key, "key changed");
        let attrs = attributes(&mut c, &uid).await;
        assert!(
            !attrs.contains_key("x-During"),
            "a failed Add Attribute left a trace: {attrs:?}"
        );
        assert_eq!(locate_name(&mut c, "survivor").await, vec![uid.clone()]);
        assert_eq!(
            locate_name(&mut c, "during-outage").await,
            Vec::<String>::new()
        );
        create(&mut c, Some("after-outage")).await;
    });
}

/// Concurrent clients in the pool-exhaustion test, and the requests each sends.
const LOAD_CLIENTS: usize = 32;
const LOAD_REQUESTS: usize = 20;
/// No request may take longer than this: far above the 200 ms acquire timeout plus one key
/// generation on a disk that may stall for seconds, below the client's 30 s response timeout
/// (a hang).
const LOAD_BOUND: Duration = Duration::from_secs(20);

/// (e) One session, a 200 ms acquire timeout and many concurrent clients: every request is
/// answered within a bounded time, with Success or Operation Failed for want of a session, none
/// hangs. Whether a request outwaits the timeout here depends on the disk's speed, so this test
/// does not require one to; `an_exhausted_pool_reports_busy_within_the_timeout` (backends) holds
/// the one session and shows the refusal deterministically, and `ops::error` tests how a busy
/// backend is answered.
#[test]
fn an_exhausted_pool_answers_every_request_in_bounded_time() {
    // On disk, key generation is slow enough that queued requests outwait the timeout.
    let home = GatewayHome::on_disk(Backend::SoftHsm);
    home.set_pkcs11(&Pkcs11Settings {
        pool_size: 1,
        acquire_timeout_ms: 200,
        pin_file: None,
    });
    let gw = home.start();
    let tls = tls(&home);
    let rt = runtime();
    let uids: Vec<String> = rt.block_on(async {
        let mut c = connect(&gw, &tls).await;
        let mut uids = Vec::new();
        for _ in 0..8 {
            uids.push(create(&mut c, None).await);
        }
        uids
    });
    let uids = Arc::new(uids);
    let started = Instant::now();
    let results: Vec<(Duration, ResultStatus, Option<String>)> = rt.block_on(async {
        let tasks: Vec<_> = (0..LOAD_CLIENTS)
            .map(|i| {
                let (addr, tls, uids) = (gw.addr(), tls.clone(), uids.clone());
                tokio::spawn(async move {
                    let mut c = KmipClient::connect(&addr.to_string(), "localhost", &tls)
                        .await
                        .unwrap();
                    let mut seen = Vec::new();
                    for j in 0..LOAD_REQUESTS {
                        // Mostly Gets; every fourth client also creates keys, which hold the
                        // one session far longer than a read.
                        let payload = if i % 4 == 0 && j % 2 == 0 {
                            create_aes(None)
                        } else {
                            get(&uids[(i + j) % uids.len()])
                        };
                        let t = Instant::now();
                        let item = tokio::time::timeout(LOAD_BOUND * 2, call(&mut c, payload))
                            .await
                            .expect("a request hung");
                        seen.push((t.elapsed(), item.result_status, item.result_message));
                    }
                    seen
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let wall = started.elapsed();
    let slowest = results.iter().map(|r| r.0).max().unwrap();
    let succeeded = results
        .iter()
        .filter(|r| r.1 == ResultStatus::Success)
        .count();
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.1 != ResultStatus::Success)
        .collect();
    eprintln!(
        "pool exhaustion: {} requests in {wall:?}, {succeeded} succeeded, {} failed, slowest \
         {slowest:?}; first failure: {:?}",
        results.len(),
        failed.len(),
        failed.first()
    );
    assert_eq!(results.len(), LOAD_CLIENTS * LOAD_REQUESTS);
    assert!(slowest < LOAD_BOUND, "a request took {slowest:?}");
    for f in &failed {
        assert_eq!(f.1, ResultStatus::OperationFailed, "{f:?}");
    }
    assert!(succeeded > 0, "nothing succeeded");
    assert!(
        failed.iter().all(|f| f
            .2
            .as_deref()
            .is_some_and(|m| m.contains("no session available"))),
        "a failure other than pool exhaustion: {failed:?}"
    );
    // The gateway is fine afterwards.
    rt.block_on(async {
        let mut c = connect(&gw, &tls).await;
        material(&mut c, &uids[0]).await;
    });
}
