//! Per-user access policy against the real binary over real TLS: two arrays isolated by a policy
//! file, a grant added and then revoked by editing that file while connections stay open, an
//! invalid policy refused while the old one stays in force, and `check-config`'s dry run.

use kmip_e2e::{aes256_key_of, binary_path, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_gateway::tooling::pki;
use kmip_wire::model::{
    Attribute, AttributeRequest, CreateRequest, CryptographicAlgorithm, GetAttributesRequest,
    GetRequest, LocateRequest, Name, ObjectType, ProtocolVersion, RequestBatchItem, RequestHeader,
    RequestMessage, RequestPayload, ResponseBatchItem, ResponseMessage, ResponsePayload,
    ResultReason, ResultStatus, UidRequest,
};
use kmip_wire::spec::tags;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const V14: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };
const V21: ProtocolVersion = ProtocolVersion { major: 2, minor: 1 };
/// The primary array and its disaster-recovery twin: one CA, one certificate each.
const PRIMARY: &str = "purefa";
const DR: &str = "purefa-dr";
/// The Object Group the grant opens to the DR array.
const RDL_GROUP: &str = "purefa-rdl";
/// How long a file-change reload (300 ms debounce, then the reload itself) may take to show.
const RELOAD_WAIT: Duration = Duration::from_secs(10);
/// An identifier no object has: the reference answer for a missing object.
const MISSING_UID: &str = "00000000-0000-4000-8000-000000000000";

/// Isolation: each array may connect, create and locate, and manages only the objects it owns.
const ISOLATION: &str = r#"
[[groups]]
name = "storage-arrays"

[[users]]
name = "purefa"
groups = ["storage-arrays"]

[[users]]
name = "purefa-dr"
groups = ["storage-arrays"]

[[rules]]
name = "arrays-connect-and-create"
groups = ["storage-arrays"]
operations = ["DiscoverVersions", "Query", "Locate", "Create", "Register"]

[[rules]]
name = "arrays-own-keys"
groups = ["storage-arrays"]
operations = ["Get", "GetAttributes", "GetAttributeList", "AddAttribute", "ModifyAttribute",
              "DeleteAttribute", "Activate", "Revoke", "Destroy"]
owned = true
"#;

/// The explicit grant: the DR array may read (not destroy) the keys in the RDL Object Group.
const GRANT: &str = r#"
[[rules]]
name = "dr-reads-primary-rdl"
users = ["purefa-dr"]
operations = ["Get", "GetAttributes"]
object_groups = ["purefa-rdl"]
"#;

/// The grant plus a rule naming a group that is not declared: the whole file must be refused.
const BROKEN: &str = r#"
[[rules]]
name = "dr-arrays-read-everything"
groups = ["dr-arrays"]
operations = ["Get"]
all_objects = true
"#;

/// A CA, the listener's certificate, one client certificate per array, a configuration naming
/// both arrays and a policy file in its own (watched) folder.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        let ca = pki::init_ca("Pure Storage FlashArray", 30).unwrap();
        std::fs::write(site.path("ca.pem"), &ca.cert_pem).unwrap();
        let server = pki::issue_server_cert(
            &ca,
            &["localhost".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            30,
        )
        .unwrap();
        std::fs::write(site.path("server.pem"), &server.cert_pem).unwrap();
        std::fs::write(site.path("server.key"), server.key_pem.as_bytes()).unwrap();
        for user in [PRIMARY, DR] {
            let c = pki::issue_client_cert(&ca, user, 30).unwrap();
            std::fs::write(site.path(&format!("{user}.pem")), &c.cert_pem).unwrap();
            std::fs::write(site.path(&format!("{user}.key")), c.key_pem.as_bytes()).unwrap();
        }
        std::fs::create_dir(site.path("policy")).unwrap();
        std::fs::write(site.policy(), ISOLATION).unwrap();
        std::fs::write(
            site.config(),
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\npolicy_file = {policy:?}\n\
                 [tls]\ncert = {cert:?}\nkey = {key:?}\n\
                 [[users]]\nname = \"{PRIMARY}\"\ncas = [{ca:?}]\n\
                 [[users]]\nname = \"{DR}\"\ncas = [{ca:?}]\n\
                 [admin]\ntoken_file = {token:?}\n",
                data = site.path("data"),
                token = site.path("admin.token"),
                policy = site.policy(),
                cert = site.path("server.pem"),
                key = site.path("server.key"),
                ca = site.path("ca.pem"),
            ),
        )
        .unwrap();
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("gateway.toml")
    }

    fn policy(&self) -> PathBuf {
        self.path("policy").join("policy.toml")
    }

    fn start(&self) -> GatewayProcess {
        GatewayProcess::start_with(&GatewayOptions {
            admin: true,
            extra_args: vec!["--config".into(), self.config().display().to_string()],
            env: Vec::new(),
            ..Default::default()
        })
    }

    async fn connect(&self, gw: &GatewayProcess, user: &str, version: ProtocolVersion) -> Client {
        let tls = ClientTls::from_files(
            &self.path("ca.pem"),
            &self.path(&format!("{user}.pem")),
            &self.path(&format!("{user}.key")),
        )
        .unwrap();
        let mut conn = KmipClient::connect(&gw.addr().to_string(), "localhost", &tls)
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect: {e}\n{}", gw.log()));
        conn.set_timeout(Duration::from_secs(10));
        Client { conn, version }
    }
}

/// Replaces a file the way editors and deployment tools do: write beside it, rename over it.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One open connection speaking one protocol version.
struct Client {
    conn: KmipClient,
    version: ProtocolVersion,
}

impl Client {
    async fn call(&mut self, payload: RequestPayload) -> ResponseBatchItem {
        let request = RequestMessage {
            header: RequestHeader::new(self.version),
            items: vec![RequestBatchItem::new(payload)],
        };
        let reply = self
            .conn
            .call(&request.to_ttlv())
            .await
            .expect("the connection stays open and answers");
        let mut msg = ResponseMessage::from_ttlv(&reply).expect("a Response Message");
        assert_eq!(msg.items.len(), 1);
        msg.items.remove(0)
    }

    /// Creates an AES-256 key with a Name and an Object Group; returns its identifier.
    async fn create(&mut self, name: &str, group: &str) -> String {
        let item = self
            .call(RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
                    Attribute::name(&Name::new(name)),
                    Attribute::text(tags::OBJECT_GROUP, group),
                ],
            }))
            .await;
        match item.payload {
            Some(ResponsePayload::Create(c)) => c.unique_identifier,
            _ => panic!("Create {name}: {item:?}"),
        }
    }

    /// The 32 key bytes of `uid`; fails the test if the Get does not succeed.
    async fn key(&mut self, uid: &str) -> Vec<u8> {
        let item = self.call(get(uid)).await;
        aes256_key_of(&item, uid)
    }

    async fn locate(&mut self, filter: Vec<Attribute>) -> BTreeSet<String> {
        let item = self
            .call(RequestPayload::Locate(LocateRequest {
                attributes: filter,
                ..LocateRequest::default()
            }))
            .await;
        match item.payload {
            Some(ResponsePayload::Locate(l)) => l.unique_identifiers.into_iter().collect(),
            _ => panic!("Locate: {item:?}"),
        }
    }

    async fn locate_group(&mut self, group: &str) -> BTreeSet<String> {
        self.locate(vec![Attribute::text(tags::OBJECT_GROUP, group)])
            .await
    }

    async fn locate_name(&mut self, name: &str) -> BTreeSet<String> {
        self.locate(vec![Attribute::name(&Name::new(name))]).await
    }

    /// Asserts that `payload`, aimed at `uid`, is answered exactly as the same request aimed at
    /// an identifier no object has, and that this answer is the version's "not found".
    async fn assert_hidden(&mut self, what: &str, uid: &str, payload: Probe) {
        let on_hidden = self.call(payload(uid)).await;
        let on_missing = self.call(payload(MISSING_UID)).await;
        let not_found = if self.version.major >= 2 {
            ResultReason::ObjectNotFound
        } else {
            ResultReason::ItemNotFound
        };
        assert_eq!(
            (on_hidden.result_status, on_hidden.result_reason),
            (ResultStatus::OperationFailed, Some(not_found)),
            "{what} on hidden {uid} at {:?}: {on_hidden:?}",
            self.version
        );
        assert_eq!(
            on_hidden, on_missing,
            "{what}: a hidden object must answer exactly as a missing one"
        );
    }
}

fn get(uid: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

fn get_attributes(uid: &str) -> RequestPayload {
    RequestPayload::GetAttributes(GetAttributesRequest {
        unique_identifier: Some(uid.to_owned()),
        names: Vec::new(),
    })
}

fn get_attribute_list(uid: &str) -> RequestPayload {
    RequestPayload::GetAttributeList(uid_request(uid))
}

fn destroy(uid: &str) -> RequestPayload {
    RequestPayload::Destroy(uid_request(uid))
}

fn activate(uid: &str) -> RequestPayload {
    RequestPayload::Activate(uid_request(uid))
}

fn add_object_group(uid: &str) -> RequestPayload {
    RequestPayload::AddAttribute(AttributeRequest {
        unique_identifier: Some(uid.to_owned()),
        attribute: Attribute::text(tags::OBJECT_GROUP, "taken-over"),
    })
}

fn uid_request(uid: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(uid.to_owned()),
    }
}

/// Builds a request aimed at one object.
type Probe = fn(&str) -> RequestPayload;

/// Every object operation a client could aim at another array's key.
const PROBES: [(&str, Probe); 6] = [
    ("Get", get),
    ("GetAttributes", get_attributes),
    ("GetAttributeList", get_attribute_list),
    ("Destroy", destroy),
    ("Activate", activate),
    ("AddAttribute", add_object_group),
];

/// Body of `GET /metrics` on the admin listener.
fn metrics(gw: &GatewayProcess) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.admin_addr().unwrap()).unwrap();
    s.write_all(
        format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            gw.admin_addr().unwrap()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `kmip_reloads_total{result="RESULT"}`; 0 before the first such reload.
fn reloads(gw: &GatewayProcess, result: &str) -> f64 {
    let prefix = format!("kmip_reloads_total{{result=\"{result}\"}} ");
    metrics(gw)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `kmip_reloads_total{result}` exceeds `before` (the file watch fired and the
/// reload finished, so its outcome is in force).
async fn wait_reload(gw: &GatewayProcess, result: &str, before: f64) {
    let deadline = Instant::now() + RELOAD_WAIT;
    while reloads(gw, result) <= before {
        assert!(
            Instant::now() < deadline,
            "no {result} reload after the policy file changed\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `kmip-gateway ARGS`; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary_path("kmip-gateway"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kmip-gateway");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_array_sees_and_touches_only_its_own_objects() {
    let site = Site::new();
    let gw = site.start();
    let (mut own_primary, mut own_dr) = (BTreeSet::new(), BTreeSet::new());
    for version in [V14, V21] {
        let tag = format!("{}.{}", version.major, version.minor);
        let mut primary = site.connect(&gw, PRIMARY, version).await;
        let mut dr = site.connect(&gw, DR, version).await;
        let p_name = format!("purefa-key-{tag}");
        let d_name = format!("purefa-dr-key-{tag}");
        let p_key = primary.create(&p_name, RDL_GROUP).await;
        let d_key = dr.create(&d_name, "purefa-dr-rdl").await;
        own_primary.insert(p_key.clone());
        own_dr.insert(d_key.clone());

        // Locate without a filter lists exactly the caller's own objects.
        assert_eq!(primary.locate(Vec::new()).await, own_primary, "{tag}");
        assert_eq!(dr.locate(Vec::new()).await, own_dr, "{tag}");
        // The other's Name and Object Group find nothing, as for values no object has.
        assert!(dr.locate_name(&p_name).await.is_empty(), "{tag}");
        assert!(dr.locate_group(RDL_GROUP).await.is_empty(), "{tag}");
        assert!(primary.locate_name(&d_name).await.is_empty(), "{tag}");
        assert_eq!(
            primary.locate_name(&p_name).await,
            BTreeSet::from([p_key.clone()])
        );

        for (what, payload) in PROBES {
            dr.assert_hidden(what, &p_key, payload).await;
            primary.assert_hidden(what, &d_key, payload).await;
        }
        // The probes changed nothing: each owner still reads and manages its key.
        let p_bytes = primary.key(&p_key).await;
        assert_ne!(p_bytes, dr.key(&d_key).await);
        assert_eq!(
            primary.locate_group(RDL_GROUP).await.len(),
            own_primary.len()
        );
        let doomed = dr
            .create(&format!("purefa-dr-doomed-{tag}"), "scratch")
            .await;
        let item = dr.call(destroy(&doomed)).await;
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_added_then_revoked_in_the_policy_file_applies_to_open_connections() {
    let site = Site::new();
    let gw = site.start();
    let mut primary = site.connect(&gw, PRIMARY, V14).await;
    let shared = primary.create("purefa-rdl-secondary", RDL_GROUP).await;
    let private = primary.create("purefa-private", "purefa-private").await;
    let shared_bytes = primary.key(&shared).await;

    // Opened before the change, used after it: no reconnect anywhere below.
    let mut dr = site.connect(&gw, DR, V14).await;
    dr.assert_hidden("Get", &shared, get).await;
    // Cached under the old policy: the reload must not let this answer be served again.
    assert!(dr.locate_group(RDL_GROUP).await.is_empty());

    let before = reloads(&gw, "success");
    replace(&site.policy(), &format!("{ISOLATION}{GRANT}"));
    wait_reload(&gw, "success", before).await;

    assert_eq!(dr.key(&shared).await, shared_bytes, "the same key bytes");
    assert_eq!(
        dr.locate_group(RDL_GROUP).await,
        BTreeSet::from([shared.clone()])
    );
    assert_eq!(
        dr.locate_name("purefa-rdl-secondary").await,
        BTreeSet::from([shared.clone()])
    );
    let attrs = dr.call(get_attributes(&shared)).await;
    assert_eq!(attrs.result_status, ResultStatus::Success, "{attrs:?}");
    // Visible now, but the grant does not include Destroy: Permission Denied, not Not Found.
    let item = dr.call(destroy(&shared)).await;
    assert_eq!(
        (item.result_status, item.result_reason),
        (
            ResultStatus::OperationFailed,
            Some(ResultReason::PermissionDenied)
        ),
        "{item:?}"
    );
    // Outside the granted Object Group nothing changed.
    dr.assert_hidden("Get", &private, get).await;
    assert!(dr.locate_name("purefa-private").await.is_empty());
    // A connection opened after the change sees the same, and the owner is unaffected.
    let mut dr_new = site.connect(&gw, DR, V21).await;
    assert_eq!(dr_new.key(&shared).await, shared_bytes);
    assert_eq!(primary.key(&shared).await, shared_bytes);

    let before = reloads(&gw, "success");
    replace(&site.policy(), ISOLATION);
    wait_reload(&gw, "success", before).await;

    for (what, payload) in PROBES {
        dr.assert_hidden(what, &shared, payload).await;
    }
    assert!(dr.locate_group(RDL_GROUP).await.is_empty());
    assert!(dr.locate_name("purefa-rdl-secondary").await.is_empty());
    dr_new.assert_hidden("Get", &shared, get).await;
    assert_eq!(primary.key(&shared).await, shared_bytes);
    assert_eq!(reloads(&gw, "failure"), 0.0, "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_is_refused_and_the_old_one_stays_in_force() {
    let site = Site::new();
    let gw = site.start();
    let mut primary = site.connect(&gw, PRIMARY, V14).await;
    let shared = primary.create("purefa-rdl-secondary", RDL_GROUP).await;
    let mut dr = site.connect(&gw, DR, V14).await;

    // The grant, next to a rule naming an undeclared group: the file as a whole is refused.
    let failures = reloads(&gw, "failure");
    replace(&site.policy(), &format!("{ISOLATION}{GRANT}{BROKEN}"));
    wait_reload(&gw, "failure", failures).await;
    dr.assert_hidden("Get", &shared, get).await;
    assert!(dr.locate_group(RDL_GROUP).await.is_empty());

    let admin = gw.admin_addr().unwrap().to_string();
    let token = gw.admin_token_file().display().to_string();
    let (ok, out, err) = cli(&["reload", "--admin", &admin, "--token-file", &token]);
    assert!(!ok, "reload of a broken policy succeeded: {out}{err}");
    assert!(err.contains("unknown group 'dr-arrays'"), "{out}{err}");
    assert!(reloads(&gw, "failure") >= failures + 2.0);
    let config = site.config().display().to_string();
    let (ok, out, err) = cli(&["check-config", "--config", &config]);
    assert!(
        !ok && err.contains("unknown group 'dr-arrays'"),
        "{out}{err}"
    );
    dr.assert_hidden("Get", &shared, get).await;
    assert!(gw.log().contains("reload failed"), "{}", gw.log());

    // Fixed, the same file reloads and the grant applies on the same connection.
    let before = reloads(&gw, "success");
    replace(&site.policy(), &format!("{ISOLATION}{GRANT}"));
    wait_reload(&gw, "success", before).await;
    assert_eq!(dr.key(&shared).await, primary.key(&shared).await);
}

#[test]
fn check_config_explains_each_decision_with_its_rule() {
    let site = Site::new();
    replace(&site.policy(), &format!("{ISOLATION}{GRANT}"));
    let config = site.config().display().to_string();
    let ask = |user: &str, op: &str, owner: &str, group: &str| {
        let (ok, out, err) = cli(&[
            "check-config",
            "--config",
            &config,
            "--user",
            user,
            "--operation",
            op,
            "--owner",
            owner,
            "--group",
            group,
        ]);
        assert!(ok, "{out}{err}");
        out.lines()
            .find(|l| l.starts_with("ALLOW") || l.starts_with("DENY"))
            .unwrap_or_else(|| panic!("no decision printed: {out}"))
            .to_owned()
    };

    let line = ask(DR, "Get", PRIMARY, RDL_GROUP);
    assert!(
        line.starts_with("ALLOW Get") && line.contains("rule 'dr-reads-primary-rdl'"),
        "{line}"
    );
    let line = ask(PRIMARY, "Destroy", PRIMARY, "anything");
    assert!(
        line.starts_with("ALLOW Destroy") && line.contains("rule 'arrays-own-keys'"),
        "{line}"
    );
    let line = ask(DR, "Destroy", PRIMARY, RDL_GROUP);
    assert!(
        line.starts_with("DENY (Permission Denied) Destroy")
            && line.contains("rule 'dr-reads-primary-rdl'"),
        "{line}"
    );
    let line = ask(DR, "Get", PRIMARY, "purefa-private");
    assert!(
        line.starts_with("DENY (Item Not Found: object hidden) Get")
            && line.contains("'dr-reads-primary-rdl'"),
        "{line}"
    );

    // Without the grant the DR array's Get of the same object is hidden.
    replace(&site.policy(), ISOLATION);
    let line = ask(DR, "Get", PRIMARY, RDL_GROUP);
    assert!(
        line.starts_with("DENY (Item Not Found: object hidden) Get"),
        "{line}"
    );
}
