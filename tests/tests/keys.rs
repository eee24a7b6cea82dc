//! Key administration from the server side, against the real binary: two users create keys over
//! real mutual TLS; the operator lists them (`kmip-gateway keys list` and its filters, pages and
//! limits), shows one (every attribute, no key material), revokes and destroys through the admin
//! listener with the admin token; the owner's KMIP Get then fails as for any destroyed key and
//! the audit trail names the operator. Without the token every `/keys` endpoint is refused.

use kmip_e2e::{aes256_key_of, gateway_cli, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_gateway::tooling::pki;
use kmip_wire::model::{
    Attribute, CreateRequest, CryptographicAlgorithm, GetRequest, Name, ObjectType,
    ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
    ResponseBatchItem, ResponseMessage, ResponsePayload, ResultReason, ResultStatus, UidRequest,
};
use kmip_wire::spec::tags;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

const V14: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };
const V21: ProtocolVersion = ProtocolVersion { major: 2, minor: 1 };
const ALICE: &str = "alice";
const BOB: &str = "bob";
/// Time a stopping gateway gets to flush its audit trail.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A server certificate, one CA and client certificate per user, an admin token file, and the
/// audit trail on (the default).
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site::with_token_file(true)
    }

    /// A site whose `[admin]` names a token file, or none.
    fn with_token_file(token_file: bool) -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        let server_ca = pki::init_ca("kmip-gateway server CA", 30).unwrap();
        std::fs::write(site.path("server-ca.pem"), &server_ca.cert_pem).unwrap();
        let server = pki::issue_server_cert(
            &server_ca,
            &["localhost".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            30,
        )
        .unwrap();
        std::fs::write(site.path("server.pem"), &server.cert_pem).unwrap();
        std::fs::write(site.path("server.key"), server.key_pem.as_bytes()).unwrap();
        let mut users = String::new();
        for user in [ALICE, BOB] {
            let ca = pki::init_ca(&format!("{user} CA"), 30).unwrap();
            std::fs::write(site.path(&format!("{user}-ca.pem")), &ca.cert_pem).unwrap();
            let c = pki::issue_client_cert(&ca, user, 30).unwrap();
            std::fs::write(site.path(&format!("{user}.pem")), &c.cert_pem).unwrap();
            std::fs::write(site.path(&format!("{user}.key")), c.key_pem.as_bytes()).unwrap();
            users.push_str(&format!(
                "[[users]]\nname = \"{user}\"\ncas = [{:?}]\n",
                site.path(&format!("{user}-ca.pem"))
            ));
        }
        std::fs::write(
            site.path("gateway.toml"),
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
                 [tls]\ncert = {cert:?}\nkey = {key:?}\n\
                 [admin]\n{token}\n{users}",
                data = site.path("data"),
                cert = site.path("server.pem"),
                key = site.path("server.key"),
                token = if token_file {
                    format!("token_file = {:?}", site.path("admin.token"))
                } else {
                    String::new()
                },
            ),
        )
        .unwrap();
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&self) -> GatewayProcess {
        GatewayProcess::start_with(&GatewayOptions {
            admin: true,
            extra_args: vec![
                "--config".into(),
                self.path("gateway.toml").display().to_string(),
            ],
            env: Vec::new(),
            ..Default::default()
        })
    }

    async fn connect(&self, gw: &GatewayProcess, user: &str) -> KmipClient {
        let tls = ClientTls::from_files(
            &self.path("server-ca.pem"),
            &self.path(&format!("{user}.pem")),
            &self.path(&format!("{user}.key")),
        )
        .unwrap();
        let mut conn = KmipClient::connect(&gw.addr().to_string(), "localhost", &tls)
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect: {e}\n{}", gw.log()));
        conn.set_timeout(Duration::from_secs(10));
        conn
    }

    /// `kmip-gateway keys ARGS` against `gw` with the admin token file.
    fn keys(&self, gw: &GatewayProcess, args: &[&str]) -> (bool, String) {
        let addr = gw.admin_addr().unwrap().to_string();
        let token = self.path("admin.token").display().to_string();
        let mut all = vec!["keys"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--admin", &addr, "--token-file", &token]);
        gateway_cli(&all)
    }
}

async fn call(
    conn: &mut KmipClient,
    version: ProtocolVersion,
    p: RequestPayload,
) -> ResponseBatchItem {
    let request = RequestMessage {
        header: RequestHeader::new(version),
        items: vec![RequestBatchItem::new(p)],
    };
    let reply = conn.call(&request.to_ttlv()).await.expect("an answer");
    ResponseMessage::from_ttlv(&reply)
        .expect("a response")
        .items
        .remove(0)
}

/// An AES-256 key named `name` in Object Group `group`, activated when `active`.
async fn key(conn: &mut KmipClient, name: &str, group: &str, active: bool) -> String {
    let created = call(
        conn,
        V21,
        RequestPayload::Create(CreateRequest {
            templates: Vec::new(),
            object_type: ObjectType::SymmetricKey,
            attributes: vec![
                Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
                Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
                Attribute::name(&Name::new(name)),
                Attribute::text(tags::OBJECT_GROUP, group),
            ],
        }),
    )
    .await;
    let Some(ResponsePayload::Create(c)) = created.payload else {
        panic!("Create {name}: {created:?}");
    };
    if active {
        let a = call(
            conn,
            V21,
            RequestPayload::Activate(uid(&c.unique_identifier)),
        )
        .await;
        assert_eq!(a.result_status, ResultStatus::Success, "{a:?}");
    }
    c.unique_identifier
}

fn uid(u: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(u.to_owned()),
    }
}

fn get(u: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(u.to_owned()),
        ..GetRequest::default()
    })
}

fn listed(out: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    v["objects"].as_array().unwrap().clone()
}

fn uids_of(objects: &[serde_json::Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["uid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_lists_shows_revokes_and_destroys_keys_of_any_user() {
    let site = Site::new();
    let gw = site.start();
    let mut alice = site.connect(&gw, ALICE).await;
    let mut bob = site.connect(&gw, BOB).await;
    let a_active = key(&mut alice, "alice-volume", "array-1", true).await;
    let a_pre = key(&mut alice, "alice-spare", "array-1", false).await;
    let b_active = key(&mut bob, "bob-volume", "array-2", true).await;
    let a_material = aes256_key_of(&call(&mut alice, V21, get(&a_active)).await, &a_active);

    // list: every user's objects, then filtered by owner, Name, Object Group, State, type.
    let (ok, out) = site.keys(&gw, &["list", "--json"]);
    assert!(ok, "{out}");
    let mut all = vec![a_active.clone(), a_pre.clone(), b_active.clone()];
    all.sort();
    assert_eq!(uids_of(&listed(&out)), all);
    let (ok, out) = site.keys(&gw, &["list", "--json", "--user", ALICE]);
    assert!(ok, "{out}");
    let alices = listed(&out);
    let mut expected = vec![a_active.clone(), a_pre.clone()];
    expected.sort();
    assert_eq!(uids_of(&alices), expected);
    assert!(alices.iter().all(|o| o["owner"] == ALICE), "{out}");
    for (filter, value, want) in [
        ("--name", "bob-volume", vec![b_active.clone()]),
        ("--group", "array-1", expected.clone()),
        ("--state", "PreActive", vec![a_pre.clone()]),
        ("--type", "SymmetricKey", all.clone()),
        ("--type", "Certificate", vec![]),
    ] {
        let (ok, out) = site.keys(&gw, &["list", "--json", filter, value]);
        assert!(ok, "{filter} {value}: {out}");
        assert_eq!(uids_of(&listed(&out)), want, "{filter} {value}");
    }
    // The table: one line per object, and a misspelt State is an error, not "everything".
    let (ok, out) = site.keys(&gw, &["list", "--user", BOB]);
    assert!(ok, "{out}");
    let row = out.lines().find(|l| l.starts_with(&b_active)).expect(&out);
    for field in [BOB, "SymmetricKey", "Active", "bob-volume", "array-2"] {
        assert!(row.contains(field), "{field} missing: {row}");
    }
    let (ok, out) = site.keys(&gw, &["list", "--state", "Actve"]);
    assert!(!ok && out.contains("not a State"), "{out}");

    // Pages: at most --limit rows, and a marker naming where to go on.
    let (ok, out) = site.keys(&gw, &["list", "--limit", "2"]);
    assert!(ok, "{out}");
    let marker = format!("--after {}", all[1]);
    assert!(out.contains(&marker), "{out}");
    let (ok, out) = site.keys(&gw, &["list", "--json", "--after", &all[1]]);
    assert!(ok, "{out}");
    assert_eq!(uids_of(&listed(&out)), vec![all[2].clone()]);
    let token = gw.admin_token();
    for bad in ["/keys?limit=0", "/keys?limit=1001", "/keys?owner=alice"] {
        let (code, body) = gw.admin_request("GET", bad, Some(&token));
        assert_eq!(code, 400, "{bad}: {body}");
    }

    // show: every attribute, never the key material.
    let (ok, out) = site.keys(&gw, &["show", &a_active]);
    assert!(ok, "{out}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = shown["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for n in [
        "Unique Identifier",
        "Name",
        "Object Group",
        "State",
        "Cryptographic Length",
    ] {
        assert!(names.contains(&n), "{n} missing: {out}");
    }
    let hex: String = a_material.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        !out.to_lowercase().contains(&hex),
        "show revealed the key: {out}"
    );

    // revoke: the reason as KMIP names it; a compromise needs its date.
    let (ok, out) = site.keys(&gw, &["revoke", &b_active, "--reason", "KeyCompromise"]);
    assert!(!ok && out.contains("compromise_date"), "{out}");
    let (ok, out) = site.keys(
        &gw,
        &[
            "revoke",
            &b_active,
            "--reason",
            "KeyCompromise",
            "--compromise-date",
            "2026-11-30T08:00:00Z",
            "--operator",
            "carol",
        ],
    );
    assert!(ok && out.contains("Compromised"), "{out}");

    // destroy: never without --yes (no terminal to ask on); Active is revoked first.
    let (ok, out) = site.keys(&gw, &["destroy", &a_active, "--operator", "carol"]);
    assert!(!ok && out.contains("--yes"), "{out}");
    let still = call(&mut alice, V21, get(&a_active)).await;
    assert_eq!(still.result_status, ResultStatus::Success, "{still:?}");
    let (ok, out) = site.keys(&gw, &["destroy", &a_active, "--yes", "--operator", "carol"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Revoke, then Destroy") && out.contains("Destroyed"),
        "{out}"
    );
    let (ok, out) = site.keys(&gw, &["destroy", &a_active, "--yes", "--operator", "carol"]);
    assert!(!ok && out.contains("409"), "a second destroy: {out}");

    // The owner's Get now fails, in each version's words.
    let gone = call(&mut alice, V21, get(&a_active)).await;
    assert_eq!(
        gone.result_reason,
        Some(ResultReason::ObjectDestroyed),
        "{gone:?}"
    );
    let mut alice14 = site.connect(&gw, ALICE).await;
    let gone = call(&mut alice14, V14, get(&a_active)).await;
    assert_eq!(
        gone.result_reason,
        Some(ResultReason::ItemNotFound),
        "{gone:?}"
    );

    // export-meta: the selected objects' attributes, no material.
    let export = site.path("alice-meta.json");
    let out_arg = export.display().to_string();
    let (ok, out) = site.keys(&gw, &["export-meta", "--user", ALICE, "--out", &out_arg]);
    assert!(ok && out.contains("2 objects"), "{out}");
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(
        !text.to_lowercase().contains(&hex),
        "the export holds the key"
    );
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(uids_of(doc["objects"].as_array().unwrap()), expected);
    assert!(
        doc["objects"][0]["attributes"].as_array().is_some(),
        "{text}"
    );

    // The audit trail: who (operator, token id), from where, what, on which object.
    drop((alice, alice14, bob));
    let mut gw = gw;
    gw.terminate();
    assert!(gw.wait_exit(STOP_TIMEOUT).is_some_and(|s| s.success()));
    let trail = std::fs::read_to_string(site.path("data/audit/audit.log")).unwrap();
    let records: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_carol = |op: &str, u: &str, status: &str| {
        records.iter().any(|r| {
            r["user"] == "admin:carol"
                && r["operation"] == op
                && r["unique_identifiers"][0] == u
                && r["result_status"] == status
                && r["peer"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("127.0.0.1:"))
                && r["cert_fingerprint"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("admin-token:"))
        })
    };
    assert!(by_carol("Revoke", &b_active, "Success"), "{trail}");
    assert!(by_carol("Revoke", &a_active, "Success"), "{trail}");
    assert!(by_carol("Destroy", &a_active, "Success"), "{trail}");
    assert!(by_carol("Destroy", &a_active, "OperationFailed"), "{trail}");
    assert!(!trail.contains(&token), "the trail holds the token");
    let (ok, out) = gateway_cli(&[
        "audit",
        "verify",
        &site.path("data/audit").display().to_string(),
    ]);
    assert!(ok, "{out}");
}

#[test]
fn every_keys_endpoint_needs_the_token_and_actions_a_named_operator() {
    let gw = GatewayProcess::start_with(&GatewayOptions {
        admin: true,
        ..GatewayOptions::default()
    });
    let token = gw.admin_token();
    let missing = "00000000-0000-4000-8000-000000000000";
    let endpoints = [
        ("GET", "/keys".to_owned()),
        ("GET", "/keys?user=purefa".to_owned()),
        ("GET", format!("/keys/{missing}")),
        ("POST", format!("/keys/{missing}/revoke?reason=Unspecified")),
        ("POST", format!("/keys/{missing}/destroy")),
    ];
    for (method, path) in &endpoints {
        let (code, body) = gw.admin_request(method, path, None);
        assert_eq!(code, 401, "{method} {path} without a token: {body}");
        let (code, body) =
            gw.admin_request(method, path, Some("a-wrong-token-that-is-long-enough"));
        assert_eq!(code, 401, "{method} {path} with a wrong token: {body}");
    }
    // With the token: the reads answer; an action without an operator's name is refused.
    assert_eq!(gw.admin_request("GET", "/keys", Some(&token)).0, 200);
    assert_eq!(
        gw.admin_request("GET", &endpoints[2].1, Some(&token)).0,
        404
    );
    for (method, path) in &endpoints[3..] {
        let (code, body) = gw.admin_request(method, path, Some(&token));
        assert!(
            code == 400 && body.contains("x-kmip-operator"),
            "{path}: {code} {body}"
        );
    }
    assert_eq!(gw.admin_request("DELETE", "/keys", Some(&token)).0, 405);
}

#[test]
fn without_a_token_file_every_keys_endpoint_is_refused() {
    let site = Site::with_token_file(false);
    let gw = site.start();
    for (method, path) in [
        ("GET", "/keys"),
        ("GET", "/keys/00000000-0000-4000-8000-000000000000"),
        ("POST", "/keys/00000000-0000-4000-8000-000000000000/destroy"),
    ] {
        let (code, body) = gw.admin_request(method, path, Some("anything-at-all-long-enough-0123"));
        assert_eq!(code, 403, "{method} {path}: {body}");
        assert!(body.contains("token_file"), "{body}");
    }
    let (ok, out) = gateway_cli(&[
        "keys",
        "list",
        "--config",
        &site.path("gateway.toml").display().to_string(),
    ]);
    assert!(!ok && out.contains("token_file"), "{out}");
}
