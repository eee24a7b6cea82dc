//! The gateway as a KMIP proxy (`[backend] kind = "kmip"`, issue 18), end to end with real
//! binaries: a proxy gateway whose backend is another kmip-gateway (its own vault) or PyKMIP's
//! server. Clients talk to the proxy with per-user certificates; the upstream sees only the
//! proxy's one identity and holds the key material, the proxy holds ownership and attributes.
//! Objects the upstream held before are adopted by the operator (`upstream adopt`), a
//! proxy's backup holds its upstream map (a migrating one's its local vault too), and keys
//! revoked or destroyed on the upstream by others reach the proxy's view within its refresh
//! interval. In migrate mode, new objects are local (and stream) and older ones are copied;
//! migrating to PostgreSQL, new objects are in the database beside other gateways' (a throwaway
//! cluster, as the non-root service user: skipped without root). Every object kind passes
//! through: key pairs made upstream sign and RSA-decrypt there, registered keys, certificates,
//! Split Keys, PGP Keys and Certificate Requests are stored there, and key pairs and
//! certificates made there are adopted.

use bytes::Bytes;
use kmip_backends::asym;
use kmip_e2e::postgres::PgCluster;
use kmip_e2e::upstream::{
    free_port, kmip_backend_section, wait_listening, GatewayUpstream, ProxyVersion, START_DEADLINE,
};
use kmip_e2e::{
    aes256_key_of, binary_path, workspace_root, Backend, GatewayOptions, GatewayProcess,
};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_gateway::tooling::pki;
use kmip_wire::model::{
    usage_mask, Attribute, BlockCipherMode, CertificateRequestType, CertificateType,
    CreateKeyPairRequest, CreateRequest, CreateSplitKeyRequest, CryptoRequest,
    CryptographicAlgorithm, CryptographicParameters, DiscoverVersionsRequest, GetAttributesRequest,
    GetRequest, HashingAlgorithm, JoinSplitKeyRequest, KeyBlock, KeyFormatType, KeyValue, Link,
    LocateRequest, ManagedObject, Name, ObjectType, PaddingMethod, ProtocolVersion,
    ReKeyKeyPairRequest, RegisterRequest, RequestBatchItem, RequestHeader, RequestMessage,
    RequestPayload, ResponseBatchItem, ResponseMessage, ResponsePayload, ResultReason,
    ResultStatus, RevocationReason, RevocationReasonCode, RevokeRequest, SecretBytes, SignRequest,
    SplitKey, SplitKeyMethod, State, UidRequest, ValidityIndicator,
};
use kmip_wire::spec::tags;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const V14: ProtocolVersion = ProtocolVersion::V1_4;
const OWNER: &str = "tenant-a";
const OTHER: &str = "tenant-b";
/// What the proxy is configured to wait per upstream: a connection, then one request.
const ACQUIRE_MS: u64 = 2_000;
const REQUEST_MS: u64 = 5_000;
/// Generous bound on one request through the proxy while an upstream is dead: a few times the
/// configured waits, far below "hangs".
const BOUNDED: Duration = Duration::from_secs(30);

/// A client of the upstream itself, as the proxy's identity (`purefa`).
async fn direct(upstream: &GatewayUpstream) -> Client {
    direct_at(upstream.addr(), &upstream.pki()).await
}

/// A client of the upstream at `addr` whose development PKI is in `pki`, as the proxy's
/// identity (`purefa`).
async fn direct_at(addr: SocketAddr, pki: &Path) -> Client {
    Client::connect(
        addr,
        &pki.join("ca.pem"),
        &pki.join("client-purefa.pem"),
        &pki.join("client-purefa.key"),
    )
    .await
}

/// The proxy's site: its own server CA and certificate, one CA and client certificate per
/// tenant, and a configuration forwarding to the given upstreams.
struct Proxy {
    dir: tempfile::TempDir,
}

impl Proxy {
    /// `upstream_pki` holds `ca.pem` and `client-purefa.{pem,key}`: what the proxy presents.
    fn new(upstreams: &[SocketAddr], upstream_pki: &Path) -> Proxy {
        Proxy::with_settings(upstreams, upstream_pki, ACQUIRE_MS, "")
    }

    /// [`Proxy::new`] waiting `acquire_ms` for a pooled connection, with `extra` appended to
    /// the configuration: more `[backend]` keys, then other tables.
    fn with_settings(
        upstreams: &[SocketAddr],
        upstream_pki: &Path,
        acquire_ms: u64,
        extra: &str,
    ) -> Proxy {
        let proxy = Proxy {
            dir: tempfile::tempdir().unwrap(),
        };
        let server_ca = pki::init_ca("proxy server CA", 30).unwrap();
        std::fs::write(proxy.path("server-ca.pem"), &server_ca.cert_pem).unwrap();
        let server = pki::issue_server_cert(
            &server_ca,
            &["localhost".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            30,
        )
        .unwrap();
        std::fs::write(proxy.path("server.pem"), &server.cert_pem).unwrap();
        std::fs::write(proxy.path("server.key"), server.key_pem.as_bytes()).unwrap();
        let mut users = String::new();
        for user in [OWNER, OTHER] {
            let ca = pki::init_ca(&format!("{user} CA"), 30).unwrap();
            std::fs::write(proxy.path(&format!("{user}-ca.pem")), &ca.cert_pem).unwrap();
            let c = pki::issue_client_cert(&ca, user, 30).unwrap();
            std::fs::write(proxy.path(&format!("{user}.pem")), &c.cert_pem).unwrap();
            std::fs::write(proxy.path(&format!("{user}.key")), c.key_pem.as_bytes()).unwrap();
            users.push_str(&format!(
                "[[users]]\nname = \"{user}\"\ncas = [{:?}]\n",
                proxy.path(&format!("{user}-ca.pem"))
            ));
        }
        std::fs::write(
            proxy.path("gateway.toml"),
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
                 [tls]\ncert = {cert:?}\nkey = {key:?}\n{users}{backend}\
                 acquire_timeout_ms = {acquire_ms}\nrequest_timeout_ms = {REQUEST_MS}\n{extra}",
                data = proxy.path("data"),
                cert = proxy.path("server.pem"),
                key = proxy.path("server.key"),
                backend = kmip_backend_section(upstreams, upstream_pki, ProxyVersion::Negotiated),
            ),
        )
        .unwrap();
        proxy
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
            ..Default::default()
        })
    }

    async fn client(&self, gw: &GatewayProcess, user: &str) -> Client {
        Client::connect(
            gw.addr(),
            &self.path("server-ca.pem"),
            &self.path(&format!("{user}.pem")),
            &self.path(&format!("{user}.key")),
        )
        .await
    }
}

/// One connection speaking KMIP 1.4, unless told another version.
struct Client {
    conn: KmipClient,
    version: ProtocolVersion,
}

impl Client {
    async fn connect(addr: SocketAddr, ca: &Path, cert: &Path, key: &Path) -> Client {
        let tls = ClientTls::from_files(ca, cert, key).unwrap();
        let mut conn = KmipClient::connect(&addr.to_string(), "localhost", &tls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        // Above the proxy's own bounds: the proxy, not this client, must give up first.
        conn.set_timeout(BOUNDED * 2);
        Client { conn, version: V14 }
    }

    async fn call(&mut self, payload: RequestPayload) -> ResponseBatchItem {
        let request = RequestMessage {
            header: RequestHeader::new(self.version),
            items: vec![RequestBatchItem::new(payload)],
        };
        let reply = self.conn.call(&request.to_ttlv()).await.expect("an answer");
        let mut items = ResponseMessage::from_ttlv(&reply)
            .expect("a Response Message")
            .items;
        assert_eq!(items.len(), 1);
        items.remove(0)
    }

    async fn ok(&mut self, payload: RequestPayload) -> ResponsePayload {
        let item = self.call(payload).await;
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
        item.payload.expect("a payload")
    }

    /// An active AES-256 key named `name`.
    async fn active_key(&mut self, name: &str) -> String {
        let ResponsePayload::Create(c) = self
            .ok(RequestPayload::Create(CreateRequest {
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
                ],
            }))
            .await
        else {
            panic!("Create answered another payload");
        };
        self.ok(RequestPayload::Activate(uid(&c.unique_identifier)))
            .await;
        c.unique_identifier
    }

    async fn key(&mut self, id: &str) -> Vec<u8> {
        let item = self.call(get(id)).await;
        aes256_key_of(&item, id)
    }

    async fn locate(&mut self, filter: Vec<Attribute>) -> Vec<String> {
        let ResponsePayload::Locate(l) = self
            .ok(RequestPayload::Locate(LocateRequest {
                attributes: filter,
                ..LocateRequest::default()
            }))
            .await
        else {
            panic!("Locate answered another payload");
        };
        l.unique_identifiers
    }

    /// Encrypts then decrypts `data` under `id` (AES-CBC, PKCS#5, a fixed IV); returns the
    /// ciphertext after checking the round trip.
    async fn round_trip(&mut self, id: &str, data: &[u8]) -> Vec<u8> {
        let ResponsePayload::Encrypt(e) = self
            .ok(RequestPayload::Encrypt(cbc(id, data.to_vec())))
            .await
        else {
            panic!("Encrypt answered another payload");
        };
        let sealed = e.data.expect("ciphertext").to_vec();
        assert_ne!(sealed, data);
        let ResponsePayload::Decrypt(d) = self
            .ok(RequestPayload::Decrypt(cbc(id, sealed.clone())))
            .await
        else {
            panic!("Decrypt answered another payload");
        };
        assert_eq!(d.data.expect("plaintext").as_slice(), data);
        sealed
    }
}

fn uid(id: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(id.to_owned()),
    }
}

fn get(id: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(id.to_owned()),
        ..GetRequest::default()
    })
}

fn cbc(id: &str, data: Vec<u8>) -> CryptoRequest {
    CryptoRequest {
        unique_identifier: Some(id.to_owned()),
        cryptographic_parameters: Some(CryptographicParameters {
            block_cipher_mode: Some(BlockCipherMode::Cbc),
            padding_method: Some(PaddingMethod::Pkcs5),
            cryptographic_algorithm: Some(CryptographicAlgorithm::Aes),
            ..CryptographicParameters::default()
        }),
        data: Some(SecretBytes::new(data)),
        iv_counter_nonce: Some(vec![7u8; 16].into()),
        ..CryptoRequest::default()
    }
}

fn revoke(id: &str) -> RequestPayload {
    RequestPayload::Revoke(RevokeRequest {
        unique_identifier: Some(id.to_owned()),
        revocation_reason: RevocationReason {
            code: RevocationReasonCode::CessationOfOperation,
            message: None,
        },
        compromise_occurrence_date: None,
    })
}

/// The one object the proxy's identity owns upstream: its identifier.
async fn only_upstream_object(direct: &mut Client) -> String {
    let mut all = direct.locate(Vec::new()).await;
    assert_eq!(all.len(), 1, "upstream objects: {all:?}");
    all.remove(0)
}

#[tokio::test]
async fn keys_live_upstream_and_owners_names_stay_in_the_proxy() {
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::new(&[upstream.addr()], &upstream.pki());
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    let id = owner.active_key("disk-1").await;
    let key = owner.key(&id).await;
    owner.round_trip(&id, b"sixteen byte blk and more").await;
    assert_eq!(
        owner
            .locate(vec![Attribute::name(&Name::new("disk-1"))])
            .await,
        vec![id.clone()]
    );

    // The material is upstream, under another identifier; the Name is not.
    let mut direct = direct(&upstream).await;
    let upstream_id = only_upstream_object(&mut direct).await;
    assert_ne!(upstream_id, id);
    assert_eq!(direct.key(&upstream_id).await, key);
    assert!(direct
        .locate(vec![Attribute::name(&Name::new("disk-1"))])
        .await
        .is_empty());

    // The upstream sees one identity; the proxy keeps the tenants apart.
    let mut other = proxy.client(&gw, OTHER).await;
    let seen = other.call(get(&id)).await;
    assert_eq!(
        seen.result_reason,
        Some(ResultReason::ItemNotFound),
        "{seen:?}"
    );
    assert!(other
        .locate(vec![Attribute::name(&Name::new("disk-1"))])
        .await
        .is_empty());
    assert!(other.locate(Vec::new()).await.is_empty());

    owner.ok(revoke(&id)).await;
    owner.ok(RequestPayload::Destroy(uid(&id))).await;
    let gone = direct.call(get(&upstream_id)).await;
    assert_eq!(
        gone.result_status,
        ResultStatus::OperationFailed,
        "{gone:?}"
    );
    let (status, body) = gw.admin_get("/readyz");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_dead_upstream_fails_requests_in_bounded_time_and_service_resumes() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("u");
    let mut upstream = GatewayUpstream::start(&data);
    let addr = upstream.addr();
    let proxy = Proxy::new(&[addr], &upstream.pki());
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    let id = owner.active_key("k").await;
    let key = owner.key(&id).await;

    upstream.kill();
    for payload in [
        get(&id),
        RequestPayload::Encrypt(cbc(&id, b"data".to_vec())),
    ] {
        let started = Instant::now();
        let item = owner.call(payload).await;
        assert!(started.elapsed() < BOUNDED, "took {:?}", started.elapsed());
        assert_eq!(
            item.result_reason,
            Some(ResultReason::GeneralFailure),
            "{item:?}"
        );
    }
    let (status, body) = gw.admin_get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&addr.to_string()), "{body}");

    upstream.restart();
    assert_eq!(owner.key(&id).await, key);
    owner.round_trip(&id, b"after the restart").await;
    let (status, body) = gw.admin_get("/readyz");
    assert_eq!(status, 200, "{body}");

    // A restart no request saw: the pooled connection is dead, and the next request must not
    // fail on it.
    upstream.kill();
    upstream.restart();
    assert_eq!(owner.key(&id).await, key);
}

/// Client connections held open at once in the pooling test, and the proxy's pool per upstream.
const MANY_CLIENTS: usize = 1_000;
const POOL_SIZE: usize = 4;
/// The pooling test's wait for a pooled connection: a thousand requests queue behind four
/// connections, so the wait must cover the queue, not only a dead upstream's connect (as
/// `docs/proxy.md` tells operators with many clients).
const QUEUED_ACQUIRE_MS: u64 = 120_000;
/// Client handshakes in flight at once, within the proxy's per-source handshake limit.
const CONNECTING_AT_ONCE: usize = 32;

/// Many hosts, few upstream connections: a thousand client connections, all open at once and
/// each encrypting through the proxy, are carried by the four pooled connections, the only
/// ones the upstream ever accepts (it logs each one it accepts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_share_four_upstream_connections() {
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::with_settings(
        &[upstream.addr()],
        &upstream.pki(),
        QUEUED_ACQUIRE_MS,
        &format!(
            "pool_size = {POOL_SIZE}\n[limits]\nmax_connections_per_source = {}\n\
             max_handshakes_per_source = {CONNECTING_AT_ONCE}\n",
            MANY_CLIENTS + 10
        ),
    );
    let gw = proxy.start();
    let id = proxy.client(&gw, OWNER).await.active_key("shared").await;

    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(CONNECTING_AT_ONCE));
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..MANY_CLIENTS {
        let (gate, ca, cert, key, addr) = (
            gate.clone(),
            proxy.path("server-ca.pem"),
            proxy.path(&format!("{OWNER}.pem")),
            proxy.path(&format!("{OWNER}.key")),
            gw.addr(),
        );
        connecting.spawn(async move {
            let _turn = gate.acquire_owned().await.unwrap();
            let mut client = Client::connect(addr, &ca, &cert, &key).await;
            // An answer means the proxy is past the handshake and has freed its slot: the
            // next connection may start without exceeding the per-source handshake limit.
            client
                .ok(RequestPayload::DiscoverVersions(DiscoverVersionsRequest {
                    versions: Vec::new(),
                }))
                .await;
            client
        });
    }
    let clients: Vec<Client> = connecting.join_all().await;
    assert_eq!(clients.len(), MANY_CLIENTS);

    let mut working = tokio::task::JoinSet::new();
    for (n, mut client) in clients.into_iter().enumerate() {
        let id = id.clone();
        working.spawn(async move {
            client
                .round_trip(&id, format!("client {n} of many").as_bytes())
                .await;
            client
        });
    }
    // Every client answered, all still connected while the others worked.
    assert_eq!(working.join_all().await.len(), MANY_CLIENTS);

    let log = upstream.log();
    let accepted = log.matches("client connected").count();
    assert!(
        (1..=POOL_SIZE).contains(&accepted),
        "the upstream accepted {accepted} connections for a pool of {POOL_SIZE}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unseen_restart_no_dead_pooled_connection_is_handed_out() {
    let home = tempfile::tempdir().unwrap();
    let mut upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::new(&[upstream.addr()], &upstream.pki());
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    let id = owner.active_key("k").await;
    let key = owner.key(&id).await;
    // Concurrent clients fill the pool (4 connections) with connections to this upstream.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = proxy.client(&gw, OWNER).await;
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                c.key(&id).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    upstream.kill();
    upstream.restart();
    // The first failure evicts every connection opened before it, so the retry gets a new one.
    for _ in 0..3 {
        assert_eq!(owner.key(&id).await, key);
    }
}

#[tokio::test]
async fn the_next_upstream_takes_over_when_the_first_dies() {
    let home = tempfile::tempdir().unwrap();
    let mut first = GatewayUpstream::start(&home.path().join("u1"));
    // The second upstream trusts the same proxy identity: it starts on a copy of the PKI.
    let second_data = home.path().join("u2");
    std::fs::create_dir_all(second_data.join("pki")).unwrap();
    for entry in std::fs::read_dir(first.pki()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            second_data.join("pki").join(entry.file_name()),
        )
        .unwrap();
    }
    let second = GatewayUpstream::start(&second_data);
    let proxy = Proxy::new(&[first.addr(), second.addr()], &first.pki());
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    owner.active_key("on-the-first").await;
    only_upstream_object(&mut direct(&first).await).await;
    assert!(direct(&second).await.locate(Vec::new()).await.is_empty());

    first.kill();
    let started = Instant::now();
    let id = owner.active_key("on-the-second").await;
    owner.round_trip(&id, b"served by the second").await;
    assert!(started.elapsed() < BOUNDED, "took {:?}", started.elapsed());
    only_upstream_object(&mut direct(&second).await).await;
    let (status, body) = gw.admin_get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("upstream {}: down", first.addr()))
            && body.contains(&format!("upstream {}: up", second.addr())),
        "{body}"
    );
}

/// PyKMIP's server on a free port with a fresh database; killed with its children on drop (it
/// ignores SIGTERM and serves each connection in a child process).
struct PyKmipServer {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl PyKmipServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn start(pki: &Path) -> PyKmipServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        let conf = dir.path().join("server.conf");
        std::fs::write(
            &conf,
            format!(
                "[server]\nhostname=127.0.0.1\nport={port}\n\
                 certificate_path={}\nkey_path={}\nca_path={}\n\
                 auth_suite=TLS1.2\nenable_tls_client_auth=True\n\
                 database_path={}\npolicy_path={}\nlogging_level=WARNING\n",
                pki.join("server.pem").display(),
                pki.join("server.key").display(),
                pki.join("ca.pem").display(),
                dir.path().join("pykmip.db").display(),
                dir.path().join("policies").display(),
            ),
        )
        .unwrap();
        let server = std::env::var_os("KMIP_PYTHON")
            .map(PathBuf::from)
            .and_then(|p| p.parent().map(|d| d.join("pykmip-server")))
            .unwrap_or_else(|| workspace_root().join(".venv/bin/pykmip-server"));
        assert!(
            server.is_file(),
            "no pykmip-server at {}: set KMIP_PYTHON to the venv's python",
            server.display()
        );
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&server)
                .arg("-f")
                .arg(&conf)
                .arg("-l")
                .arg(dir.path().join("server.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group: the drop kills it and its connection children by id.
                .process_group(0)
                .spawn()
                .expect("start pykmip-server")
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        wait_listening(addr, "pykmip-server");
        PyKmipServer {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for PyKmipServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-9", "--", &group]).status();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn pykmip_server_as_the_upstream() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki::dev_pki(pki_dir.path()).unwrap();
    let upstream = PyKmipServer::start(pki_dir.path());
    let proxy = Proxy::new(&[upstream.addr()], pki_dir.path());
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    let id = owner.active_key("py-1").await;
    owner.key(&id).await;
    owner.round_trip(&id, b"through PyKMIP's server").await;
    assert_eq!(
        owner
            .locate(vec![Attribute::name(&Name::new("py-1"))])
            .await,
        vec![id.clone()]
    );
    let mut other = proxy.client(&gw, OTHER).await;
    let seen = other.call(get(&id)).await;
    assert_eq!(
        seen.result_reason,
        Some(ResultReason::ItemNotFound),
        "{seen:?}"
    );
    owner.ok(revoke(&id)).await;
    owner.ok(RequestPayload::Destroy(uid(&id))).await;
    let gone = owner.call(get(&id)).await;
    assert_eq!(
        gone.result_status,
        ResultStatus::OperationFailed,
        "{gone:?}"
    );
}

/// Runs one flow of `tests/python/flows.py` (the PyKMIP client) against the proxy as `OWNER`
/// and returns its JSON report; panics with the report and the proxy's log unless it ran through.
fn pykmip_flow(proxy: &Proxy, gw: &GatewayProcess, version: &str, flow: &str) -> serde_json::Value {
    let python = std::env::var_os("KMIP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    // PyKMIP insists on a configuration file that exists; every setting is passed explicitly.
    let conf = proxy.path("pykmip.conf");
    std::fs::write(&conf, "").unwrap();
    let out = Command::new(python)
        .arg(workspace_root().join("tests/python/flows.py"))
        .args(["--port", &gw.addr().port().to_string()])
        .arg("--ca")
        .arg(proxy.path("server-ca.pem"))
        .arg("--cert")
        .arg(proxy.path(&format!("{OWNER}.pem")))
        .arg("--key")
        .arg(proxy.path(&format!("{OWNER}.key")))
        .args(["--version", version, "--flow", flow, "--tag", version])
        .arg("--config-file")
        .arg(&conf)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run flows.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        Some(r) if out.status.success() && r.get("error").is_none() => r,
        _ => panic!(
            "flow {flow} at KMIP {version} through the proxy failed.\nreport: {stdout}\n\
             python stderr:\n{}\nproxy log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        ),
    }
}

/// The FlashArray flow (Locate, Create, Activate, Get, Revoke, Destroy) and the SASED flow
/// (Secret Data with Object Group and custom attributes) of the PyKMIP client, at each version
/// PyKMIP speaks, through the proxy. (In front of another gateway, every PyKMIP flow and the
/// SKLC, SASED and BL vectors run through the proxy in `pykmip.rs` and `conformance.rs`.)
fn pykmip_client_flows(proxy: &Proxy) {
    let gw = proxy.start();
    for v in ["1.2", "1.4", "2.0"] {
        let r = pykmip_flow(proxy, &gw, v, "flasharray");
        let id = r["uid"].as_str().expect("a uid");
        assert_eq!(r["locate_after"], serde_json::json!([id]), "{r}");
        assert_eq!(r["get"]["length_bytes"], 32, "{r}");
        assert_eq!(r["get_after_destroy"]["status"], "OPERATION_FAILED", "{r}");
        assert_eq!(r["locate_after_destroy"], serde_json::json!([]), "{r}");
        let r = pykmip_flow(proxy, &gw, v, "sased");
        let id = r["uid"].as_str().expect("a uid");
        assert_eq!(r["locate_group"], serde_json::json!([id]), "{r}");
    }
}

#[test]
fn pykmip_client_through_the_proxy_to_pykmip_server() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki::dev_pki(pki_dir.path()).unwrap();
    let upstream = PyKmipServer::start(pki_dir.path());
    pykmip_client_flows(&Proxy::new(&[upstream.addr()], pki_dir.path()));
}

/// A 1.4 client in front of an upstream pinned to KMIP 1.2: what 1.2 cannot carry (an
/// authenticated encryption's additional data, and the tag its answer needs) is refused with
/// Feature Not Supported and never sent; the rest works.
#[tokio::test]
async fn what_the_upstreams_version_cannot_carry_is_refused_as_not_supported() {
    let gw = GatewayProcess::start_backend(Backend::Proxy(ProxyVersion::V1_2));
    let mut client = Client::connect(
        gw.addr(),
        &gw.ca_cert(),
        &gw.client_cert(),
        &gw.client_key(),
    )
    .await;
    let id = client.active_key("behind-1.2").await;
    client.round_trip(&id, b"CBC is in KMIP 1.2").await;
    assert!(
        gw.log().contains("upstream connection opened") && gw.log().contains("version=1.2"),
        "{}",
        gw.log()
    );
    for aad in [Some(Bytes::from_static(b"header")), None] {
        let gcm = CryptoRequest {
            cryptographic_parameters: Some(CryptographicParameters {
                block_cipher_mode: Some(BlockCipherMode::Gcm),
                cryptographic_algorithm: Some(CryptographicAlgorithm::Aes),
                tag_length: Some(16),
                ..CryptographicParameters::default()
            }),
            iv_counter_nonce: Some(vec![7u8; 12].into()),
            authenticated_encryption_additional_data: aad.clone(),
            ..cbc(&id, b"GCM needs 1.4".to_vec())
        };
        let item = client.call(RequestPayload::Encrypt(gcm)).await;
        assert_eq!(
            (item.result_status, item.result_reason),
            (
                ResultStatus::OperationFailed,
                Some(ResultReason::FeatureNotSupported)
            ),
            "GCM (additional data: {aad:?}) through a 1.2 upstream: {item:?}\n{}",
            gw.log()
        );
    }
}

/// The mapping vault is the proxy's key store as far as clients see: `serve --config` refuses
/// a data folder without it, as it refuses one without a key vault, and `init` makes it.
#[test]
fn serve_refuses_a_data_folder_without_the_mapping_vault_and_init_makes_it() {
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::new(&[upstream.addr()], &upstream.pki());
    // Not empty, so only the missing mapping vault can be the reason.
    std::fs::create_dir_all(proxy.path("data/pki")).unwrap();
    let log = proxy.path("serve.log");
    let mut child = Command::new(binary_path("kmip-gateway"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--config",
        ])
        .arg(proxy.path("gateway.toml"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run kmip-gateway serve");
    // A gateway that wrongly starts must not hang the test: it is killed at the deadline.
    let deadline = Instant::now() + START_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{stderr}");
    assert!(
        stderr.contains("upstream-map") && stderr.contains("kmip-gateway init --config"),
        "{stderr}"
    );
    let gw = proxy.start();
    assert!(
        proxy.path("data/upstream-map/vault.log").is_file(),
        "{}",
        gw.log()
    );
}

/// `proxy` with an `[admin]` token file (`admin.token`), for `upstream adopt`.
fn with_admin(proxy: Proxy) -> Proxy {
    let config = proxy.path("gateway.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[admin]\ntoken_file = {:?}\n",
        proxy.path("admin.token")
    ));
    std::fs::write(&config, text).unwrap();
    proxy
}

/// `kmip-gateway upstream adopt --user USER WHICH…` against the proxy `gw`.
fn adopt(proxy: &Proxy, gw: &GatewayProcess, user: &str, which: &[&str]) -> (bool, String) {
    let addr = gw.admin_addr().expect("admin listener").to_string();
    let token = proxy.path("admin.token").display().to_string();
    let mut args = vec![
        "upstream",
        "adopt",
        "--user",
        user,
        "--admin",
        &addr,
        "--token-file",
        &token,
        "--operator",
        "carol",
    ];
    args.extend_from_slice(which);
    kmip_e2e::gateway_cli(&args)
}

/// Objects made on the upstream directly (before the proxy) are adopted for one tenant, by
/// identifier and by Name; that tenant then uses them through the proxy under the upstream's
/// identifiers, the other tenant cannot see them, and every wrong adoption is refused.
#[tokio::test]
async fn objects_made_upstream_before_are_adopted_for_one_user() {
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let mut direct = direct(&upstream).await;
    let by_uid = direct.active_key("legacy-1").await;
    let by_name = direct.active_key("legacy-2").await;
    let proxy = with_admin(Proxy::new(&[upstream.addr()], &upstream.pki()));
    let gw = proxy.start();

    let (ok, out) = adopt(&proxy, &gw, OWNER, &["--uid", &by_uid]);
    assert!(ok, "{out}\n{}", gw.log());
    assert!(
        out.contains(&format!(
            "adopted {by_uid} for {OWNER}: Active SymmetricKey"
        )) && out.contains("legacy-1"),
        "{out}"
    );
    let (ok, out) = adopt(&proxy, &gw, OWNER, &["--name", "legacy-2"]);
    assert!(ok && out.contains(&format!("adopted {by_name} ")), "{out}");

    // The owner uses them under the upstream's identifiers, with the upstream's material.
    let mut owner = proxy.client(&gw, OWNER).await;
    for (id, name) in [(&by_uid, "legacy-1"), (&by_name, "legacy-2")] {
        assert_eq!(owner.key(id).await, direct.key(id).await);
        let sealed = owner.round_trip(id, b"adopted keys encrypt").await;
        let ResponsePayload::Decrypt(d) = direct.ok(RequestPayload::Decrypt(cbc(id, sealed))).await
        else {
            panic!("Decrypt answered another payload");
        };
        assert_eq!(d.data.unwrap().as_slice(), b"adopted keys encrypt");
        assert_eq!(
            owner.locate(vec![Attribute::name(&Name::new(name))]).await,
            vec![id.clone()]
        );
    }
    // The other tenant sees nothing of them.
    let mut other = proxy.client(&gw, OTHER).await;
    let seen = other.call(get(&by_uid)).await;
    assert_eq!(
        seen.result_reason,
        Some(ResultReason::ItemNotFound),
        "{seen:?}"
    );
    assert!(other.locate(Vec::new()).await.is_empty());

    // Refused: a second mapping (by identifier or Name), a user not configured, a Name or an
    // identifier the upstream does not have.
    for (user, which, why) in [
        (OTHER, vec!["--uid", by_uid.as_str()], "mapped already"),
        (OWNER, vec!["--name", "legacy-2"], "mapped already"),
        ("mallory", vec!["--uid", by_uid.as_str()], "not a user"),
        (OWNER, vec!["--name", "no-such-name"], "404"),
        (OWNER, vec!["--uid", "no-such-object"], "404"),
    ] {
        let (ok, out) = adopt(&proxy, &gw, user, &which);
        assert!(!ok && out.contains(why), "{user} {which:?}: {out}");
    }
    // An object made through the proxy is mapped already, under its gateway identifier.
    let made = owner.active_key("via-proxy").await;
    let mut behind: Vec<String> = direct
        .locate(Vec::new())
        .await
        .into_iter()
        .filter(|u| *u != by_uid && *u != by_name)
        .collect();
    assert_eq!(behind.len(), 1, "{behind:?}");
    let behind = behind.remove(0);
    let (ok, out) = adopt(&proxy, &gw, OTHER, &["--uid", &behind]);
    assert!(
        !ok && out.contains(&format!("mapped already, to the gateway's object {made}")),
        "{out}"
    );
    // Without the admin token, nothing.
    let (status, body) = gw.admin_request(
        "POST",
        &format!("/upstream/adopt?user={OWNER}&uid={by_uid}"),
        Some("not-the-admin-token-not-the-admin-token"),
    );
    assert_eq!(status, 401, "{body}");

    // Destroy through the proxy destroys upstream.
    owner.ok(revoke(&by_name)).await;
    owner.ok(RequestPayload::Destroy(uid(&by_name))).await;
    let gone = direct.call(get(&by_name)).await;
    assert_eq!(
        gone.result_status,
        ResultStatus::OperationFailed,
        "{gone:?}"
    );

    // The audit trail names the operator's adoptions.
    drop((owner, other));
    let mut gw = gw;
    gw.terminate();
    assert!(gw.wait_exit(BOUNDED).is_some_and(|s| s.success()));
    let trail = std::fs::read_to_string(proxy.path("data/audit/audit.log")).unwrap();
    let adoptions: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["operation"] == "Adopt" && r["user"] == "admin:carol")
        .collect();
    assert!(
        adoptions
            .iter()
            .any(|r| r["unique_identifiers"][0] == by_uid.as_str()
                && r["result_status"] == "Success"),
        "{trail}"
    );
    assert!(
        adoptions
            .iter()
            .any(|r| r["result_status"] == "OperationFailed"),
        "{trail}"
    );
}

/// `kmip-gateway backup` of a proxy takes its upstream map (and says the keys are not in it);
/// restored into a new data folder, the map serves the same objects: a key made through the
/// proxy and an adopted one, to their owner only, and the adopted one is still mapped.
#[tokio::test]
async fn backup_and_restore_keep_the_proxys_upstream_map() {
    use std::os::unix::fs::OpenOptionsExt;
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let mut direct = direct(&upstream).await;
    let adopted = direct.active_key("legacy").await;
    let proxy = with_admin(Proxy::new(&[upstream.addr()], &upstream.pki()));
    let gw = proxy.start();
    let (ok, out) = adopt(&proxy, &gw, OWNER, &["--uid", &adopted]);
    assert!(ok, "{out}");
    let mut owner = proxy.client(&gw, OWNER).await;
    let made = owner.active_key("made").await;
    let keys = [
        (made.clone(), owner.key(&made).await),
        (adopted.clone(), owner.key(&adopted).await),
    ];

    let pass = proxy.path("backup.pass");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pass)
        .unwrap();
    std::io::Write::write_all(&mut f, b"a long passphrase for the proxy's map\n").unwrap();
    let archive = proxy.path("proxy.backup");
    let config = proxy.path("gateway.toml");
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "backup".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        archive.as_os_str(),
        "--passphrase-file".as_ref(),
        pass.as_os_str(),
    ]);
    assert!(
        ok && out.contains("upstream map") && out.contains("no key material"),
        "{out}"
    );
    drop(owner);
    drop(gw);

    let restored = proxy.path("restored");
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "restore".as_ref(),
        "--in".as_ref(),
        archive.as_os_str(),
        "--passphrase-file".as_ref(),
        pass.as_os_str(),
        "--data-dir".as_ref(),
        restored.as_os_str(),
    ]);
    assert!(ok && out.contains("2 objects"), "{out}");
    assert!(restored.join("upstream-map/vault.log").is_file(), "{out}");
    // The same site on the restored data folder (its master key and head in
    // `<data_dir>-secrets`, where restore put them).
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("data_dir = {:?}", proxy.path("data")),
        &format!("data_dir = {restored:?}"),
    );
    assert!(text.contains(&format!("{restored:?}")), "{text}");
    std::fs::write(&config, text).unwrap();
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    for (id, key) in &keys {
        assert_eq!(&owner.key(id).await, key, "{id}\n{}", gw.log());
        owner.round_trip(id, b"served after restore").await;
    }
    assert_eq!(
        owner
            .locate(vec![Attribute::name(&Name::new("legacy"))])
            .await,
        vec![adopted.clone()]
    );
    let mut other = proxy.client(&gw, OTHER).await;
    assert!(other.locate(Vec::new()).await.is_empty());
    let (ok, out) = adopt(&proxy, &gw, OTHER, &["--uid", &adopted]);
    assert!(!ok && out.contains("mapped already"), "{out}");
}

/// Adoption from PyKMIP's server: by Name, then used through the proxy; a Name that two
/// upstream objects carry (PyKMIP allows it) is refused, naming the way out.
#[tokio::test]
async fn pykmip_server_objects_are_adopted_by_name() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki::dev_pki(pki_dir.path()).unwrap();
    let upstream = PyKmipServer::start(pki_dir.path());
    let mut direct = direct_at(upstream.addr(), pki_dir.path()).await;
    let legacy = direct.active_key("py-legacy").await;
    direct.active_key("py-twice").await;
    direct.active_key("py-twice").await;
    let proxy = with_admin(Proxy::new(&[upstream.addr()], pki_dir.path()));
    let gw = proxy.start();

    let (ok, out) = adopt(&proxy, &gw, OWNER, &["--name", "py-legacy"]);
    assert!(
        ok && out.contains(&format!("adopted {legacy} ")),
        "{out}\n{}",
        gw.log()
    );
    let mut owner = proxy.client(&gw, OWNER).await;
    assert_eq!(owner.key(&legacy).await, direct.key(&legacy).await);
    owner.round_trip(&legacy, b"adopted from PyKMIP").await;
    let (ok, out) = adopt(&proxy, &gw, OWNER, &["--name", "py-twice"]);
    assert!(
        !ok && out.contains("more than one") && out.contains("--uid"),
        "{out}"
    );
}

/// Adoption is a KMIP proxy's: a gateway on its own vault says so.
#[test]
fn adoption_needs_the_kmip_backend() {
    let gw = GatewayProcess::start_with(&GatewayOptions {
        admin: true,
        ..Default::default()
    });
    let addr = gw.admin_addr().expect("admin listener").to_string();
    let token = gw.admin_token_file().display().to_string();
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "upstream",
        "adopt",
        "--user",
        "purefa",
        "--uid",
        "42",
        "--admin",
        &addr,
        "--token-file",
        &token,
    ]);
    assert!(
        !ok && out.contains("409") && out.contains("kind = \"kmip\""),
        "{out}"
    );
}

/// The proxy's refresh interval in the freshness tests: short, so the bounded waits are short.
const REFRESH_MS: u64 = 200;

impl Client {
    /// The object's State as Get Attributes reports it; `None` when it answers a failure.
    async fn state(&mut self, id: &str) -> Option<State> {
        let item = self
            .call(RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(id.to_owned()),
                names: Vec::new(),
            }))
            .await;
        let Some(ResponsePayload::GetAttributes(r)) = item.payload else {
            return None;
        };
        r.attributes
            .iter()
            .find(|a| a.is(tags::STATE))
            .and_then(|a| a.as_enum::<State>())
    }

    async fn locate_state(&mut self, state: State) -> Vec<String> {
        self.locate(vec![Attribute::enumeration(tags::STATE, state)])
            .await
    }
}

/// The value of the counter `series` (name and labels) on `gw`'s `/metrics`; 0 before its first
/// increment.
fn counter(gw: &GatewayProcess, series: &str) -> u64 {
    let (_, metrics) = gw.admin_get("/metrics");
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// PyKMIP's server answers the refresher's batched Get Attributes: passes run without a failed
/// read or item, and an Active key stays Active.
#[tokio::test]
async fn pykmip_server_answers_the_refreshers_reads() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki::dev_pki(pki_dir.path()).unwrap();
    let upstream = PyKmipServer::start(pki_dir.path());
    let proxy = Proxy::with_settings(
        &[upstream.addr()],
        pki_dir.path(),
        ACQUIRE_MS,
        &format!("refresh_interval_ms = {REFRESH_MS}\n"),
    );
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    let id = owner.active_key("py-fresh").await;
    let deadline = Instant::now() + BOUNDED;
    while counter(&gw, "kmip_upstream_refresh_passes_total") < 3 {
        assert!(Instant::now() < deadline, "no refresh pass: {}", gw.log());
        tokio::time::sleep(Duration::from_millis(REFRESH_MS / 2)).await;
    }
    for stage in ["read", "item", "apply"] {
        assert_eq!(
            counter(
                &gw,
                &format!("kmip_upstream_refresh_failures_total{{stage=\"{stage}\"}}")
            ),
            0,
            "{stage}: {}",
            gw.log()
        );
    }
    assert_eq!(owner.state(&id).await, Some(State::Active));
}

/// The upstream identifier of the proxy's key `id`: the upstream object with the same material.
async fn upstream_twin(proxy: &mut Client, direct: &mut Client, id: &str) -> String {
    let key = proxy.key(id).await;
    for candidate in direct.locate(Vec::new()).await {
        if direct.key(&candidate).await == key {
            return candidate;
        }
    }
    panic!("no upstream object holds the material of {id}");
}

/// Revokes `upstream_id` on the upstream, directly: as another client of the key manager would.
async fn revoke_upstream(direct: &mut Client, upstream_id: &str) {
    direct.ok(revoke(upstream_id)).await;
}

/// Revokes and destroys `upstream_id` on the upstream, directly.
async fn destroy_upstream(direct: &mut Client, upstream_id: &str) {
    direct.ok(revoke(upstream_id)).await;
    direct.ok(RequestPayload::Destroy(uid(upstream_id))).await;
}

#[tokio::test]
async fn keys_revoked_or_destroyed_upstream_by_others_reach_the_proxy_within_the_interval() {
    let home = tempfile::tempdir().unwrap();
    let mut upstream = GatewayUpstream::start(&home.path().join("u"));
    let fresh = Proxy::with_settings(
        &[upstream.addr()],
        &upstream.pki(),
        ACQUIRE_MS,
        &format!("refresh_interval_ms = {REFRESH_MS}\n"),
    );
    // The same upstream behind a proxy whose refresher is off.
    let frozen = Proxy::with_settings(
        &[upstream.addr()],
        &upstream.pki(),
        ACQUIRE_MS,
        "refresh_interval_ms = 0\n",
    );
    for (proxy, says) in [
        (&fresh, format!("upstream refresh: every {REFRESH_MS} ms")),
        (&frozen, "upstream refresh: off".to_owned()),
    ] {
        let config = proxy.path("gateway.toml");
        let (ok, out) = kmip_e2e::gateway_cli(&[
            "check-config".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ]);
        assert!(ok && out.contains(&says), "{out}");
    }
    let gw = fresh.start();
    let gw_frozen = frozen.start();
    let mut owner = fresh.client(&gw, OWNER).await;
    let mut owner_frozen = frozen.client(&gw_frozen, OWNER).await;
    let revoked = owner.active_key("revoked-upstream").await;
    let destroyed = owner.active_key("destroyed-upstream").await;
    let kept = owner.active_key("kept").await;
    let frozen_key = owner_frozen.active_key("frozen").await;

    let mut direct = direct(&upstream).await;
    let revoked_up = upstream_twin(&mut owner, &mut direct, &revoked).await;
    let destroyed_up = upstream_twin(&mut owner, &mut direct, &destroyed).await;
    let frozen_up = upstream_twin(&mut owner_frozen, &mut direct, &frozen_key).await;
    revoke_upstream(&mut direct, &revoked_up).await;
    destroy_upstream(&mut direct, &destroyed_up).await;
    destroy_upstream(&mut direct, &frozen_up).await;

    // Polled with a deadline: the bound is one interval plus one pass, far below it.
    let deadline = Instant::now() + BOUNDED;
    loop {
        let deactivated = owner.locate_state(State::Deactivated).await;
        let gone = owner.locate_state(State::Destroyed).await;
        if deactivated == [revoked.clone()] && gone == [destroyed.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {BOUNDED:?}: Deactivated {deactivated:?}, Destroyed {gone:?}"
        );
        tokio::time::sleep(Duration::from_millis(REFRESH_MS / 2)).await;
    }
    assert_eq!(owner.state(&revoked).await, Some(State::Deactivated));
    assert_eq!(owner.state(&destroyed).await, Some(State::Destroyed));
    assert_eq!(owner.state(&kept).await, Some(State::Active));
    // Destroyed in the proxy's view: no material, not found without a State filter.
    let get = owner.call(get(&destroyed)).await;
    assert_eq!(get.result_status, ResultStatus::OperationFailed, "{get:?}");
    let mut live = owner.locate(Vec::new()).await;
    live.sort();
    let mut expected = vec![revoked.clone(), kept.clone()];
    expected.sort();
    assert_eq!(live, expected);
    let (status, metrics) = gw.admin_get("/metrics");
    assert_eq!(status, 200);
    for change in ["revoked", "destroyed"] {
        assert!(
            metrics.contains(&format!(
                "kmip_upstream_refresh_changes_total{{change=\"{change}\"}} 1"
            )),
            "{change}: {metrics}"
        );
    }

    // The refresher above ran at least one pass after the upstream changed; the proxy without
    // one still shows its key as it was.
    assert_eq!(owner_frozen.state(&frozen_key).await, Some(State::Active));
    assert_eq!(
        owner_frozen.locate(Vec::new()).await,
        vec![frozen_key.clone()]
    );

    // The upstream goes down: passes fail (counted) and change nothing.
    drop(direct);
    upstream.kill();
    let deadline = Instant::now() + BOUNDED;
    while counter(&gw, "kmip_upstream_refresh_failures_total{stage=\"read\"}") < 2 {
        assert!(
            Instant::now() < deadline,
            "no failed pass counted: {}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(REFRESH_MS / 2)).await;
    }
    assert_eq!(owner.state(&kept).await, Some(State::Active));
    assert_eq!(owner.state(&revoked).await, Some(State::Deactivated));

    // The changes are durable in the upstream map: a restart without the refresher keeps them.
    drop(owner);
    drop(gw);
    let config = std::fs::read_to_string(fresh.path("gateway.toml")).unwrap();
    std::fs::write(
        fresh.path("gateway.toml"),
        config.replace(
            &format!("refresh_interval_ms = {REFRESH_MS}"),
            "refresh_interval_ms = 0",
        ),
    )
    .unwrap();
    let gw = fresh.start();
    let mut owner = fresh.client(&gw, OWNER).await;
    assert_eq!(owner.state(&revoked).await, Some(State::Deactivated));
    assert_eq!(owner.state(&destroyed).await, Some(State::Destroyed));
    assert_eq!(owner.state(&kept).await, Some(State::Active));
}

/// A local vault installation for the proxy's users: the proxy's configuration up to its
/// `[backend]`, on the data folder `local`; initialised.
fn local_installation(proxy: &Proxy) -> PathBuf {
    let text = std::fs::read_to_string(proxy.path("gateway.toml")).unwrap();
    let (common, _) = text.split_once("[backend]").unwrap();
    let local = proxy.path("local.toml");
    std::fs::write(
        &local,
        common.replace(
            &format!("data_dir = {:?}", proxy.path("data")),
            &format!("data_dir = {:?}", proxy.path("local")),
        ),
    )
    .unwrap();
    let (ok, out) =
        kmip_e2e::gateway_cli(&["init".as_ref(), "--config".as_ref(), local.as_os_str()]);
    assert!(ok, "{out}");
    local
}

/// Objects made upstream (adopted, and made through the proxy) are copied by `upstream copy`
/// into a local vault, verified, and served by a gateway on it after the upstream is switched
/// off; a non-extractable key stays upstream; a re-run finds everything there.
#[tokio::test]
async fn objects_made_upstream_are_copied_and_served_locally_after_the_upstream_is_switched_off() {
    let home = tempfile::tempdir().unwrap();
    let mut upstream = GatewayUpstream::start(&home.path().join("u"));
    let mut direct = direct(&upstream).await;
    let legacy = direct.active_key("legacy").await;
    let proxy = with_admin(Proxy::new(&[upstream.addr()], &upstream.pki()));
    let gw = proxy.start();
    let (ok, out) = adopt(&proxy, &gw, OWNER, &["--uid", &legacy]);
    assert!(ok, "{out}");
    let mut owner = proxy.client(&gw, OWNER).await;
    let made = owner.active_key("made").await;
    let ResponsePayload::Create(sealed) = owner
        .ok(RequestPayload::Create(CreateRequest {
            templates: Vec::new(),
            object_type: ObjectType::SymmetricKey,
            attributes: vec![
                Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
                Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
                Attribute::boolean(tags::EXTRACTABLE, false),
            ],
        }))
        .await
    else {
        panic!("Create answered another payload");
    };
    let sealed = sealed.unique_identifier;
    let gone = owner.active_key("gone").await;
    owner.ok(revoke(&gone)).await;
    owner.ok(RequestPayload::Destroy(uid(&gone))).await;
    let legacy_key = owner.key(&legacy).await;
    let made_key = owner.key(&made).await;
    let ciphertext = owner.round_trip(&made, b"sealed through the proxy").await;
    drop(owner);
    drop(gw);

    let local = local_installation(&proxy);
    let config = proxy.path("gateway.toml");
    let copy = |what: &str| {
        let (ok, out) = kmip_e2e::gateway_cli(&[
            "upstream".as_ref(),
            "copy".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--to".as_ref(),
            local.as_os_str(),
        ]);
        assert!(ok, "{what}: {out}");
        out
    };
    let out = copy("first run");
    assert!(
        out.contains(
            "4 of 4 objects: 2 copied, 1 tombstones, 0 already there, 0 failed, 1 not extractable"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!("not extractable, left at the source: {sealed}")),
        "{out}"
    );
    let out = copy("second run");
    assert!(
        out.contains("0 copied, 0 tombstones, 3 already there, 0 failed, 1 not extractable"),
        "{out}"
    );
    // `migrate` does not take a proxy, nor `upstream copy` a local installation as its source.
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "migrate".as_ref(),
        "--from".as_ref(),
        config.as_os_str(),
        "--to".as_ref(),
        local.as_os_str(),
    ]);
    assert!(!ok && out.contains("upstream copy"), "{out}");
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "upstream".as_ref(),
        "copy".as_ref(),
        "--config".as_ref(),
        local.as_os_str(),
        "--to".as_ref(),
        config.as_os_str(),
    ]);
    assert!(!ok && out.contains("not a KMIP proxy"), "{out}");

    // The key manager is switched off: the local gateway serves the copies.
    drop(direct);
    upstream.kill();
    let served = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), local.display().to_string()],
        ..Default::default()
    });
    let mut owner = proxy.client(&served, OWNER).await;
    assert_eq!(owner.key(&legacy).await, legacy_key);
    assert_eq!(owner.key(&made).await, made_key);
    let ResponsePayload::Decrypt(d) = owner
        .ok(RequestPayload::Decrypt(cbc(&made, ciphertext)))
        .await
    else {
        panic!("Decrypt answered another payload");
    };
    assert_eq!(d.data.unwrap().as_slice(), b"sealed through the proxy");
    assert_eq!(
        owner
            .locate(vec![Attribute::name(&Name::new("legacy"))])
            .await,
        vec![legacy.clone()]
    );
    assert_eq!(owner.state(&gone).await, Some(State::Destroyed));
    let missing = owner.call(get(&sealed)).await;
    assert_eq!(
        missing.result_reason,
        Some(ResultReason::ItemNotFound),
        "{missing:?}"
    );
    let mut other = proxy.client(&served, OTHER).await;
    assert!(other.locate(Vec::new()).await.is_empty());
}

/// `mode = "migrate"`: a proxy's new objects go to a local vault while the older ones are read
/// through to the upstream; `upstream copy` moves those into the same vault; then the gateway
/// serves everything with the upstream switched off, in migrate mode and as a plain vault.
#[tokio::test]
async fn migrate_mode_makes_new_objects_locally_and_reads_older_ones_through() {
    let home = tempfile::tempdir().unwrap();
    let mut upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::new(&[upstream.addr()], &upstream.pki());
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    let older = owner.active_key("older").await;
    let older_key = owner.key(&older).await;
    drop(owner);
    drop(gw);

    let config = proxy.path("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("kind = \"kmip\"\n", "kind = \"kmip\"\nmode = \"migrate\"\n"),
    )
    .unwrap();
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "check-config".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(
        ok && out.contains("mode migrate: new objects in the local vault"),
        "{out}"
    );
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    assert_eq!(owner.key(&older).await, older_key, "read through upstream");
    let newer = owner.active_key("newer").await;
    let newer_key = owner.key(&newer).await;
    let sealed = owner.round_trip(&newer, b"made in the local vault").await;
    let mut names = Vec::new();
    for name in ["older", "newer"] {
        names.extend(owner.locate(vec![Attribute::name(&Name::new(name))]).await);
    }
    assert_eq!(names, [older.clone(), newer.clone()]);
    // The upstream holds the older key only (exactly one object, asserted there).
    let mut direct = direct(&upstream).await;
    only_upstream_object(&mut direct).await;
    drop(owner);
    drop(gw);

    // The older objects into the local vault: the one a plain vault configuration names.
    let text = std::fs::read_to_string(&config).unwrap();
    let (common, _) = text.split_once("[backend]").unwrap();
    let local = proxy.path("local.toml");
    std::fs::write(&local, common).unwrap();
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "upstream".as_ref(),
        "copy".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--to".as_ref(),
        local.as_os_str(),
    ]);
    assert!(
        ok && out.contains("1 of 1 objects: 1 copied, 0 tombstones, 0 already there, 0 failed"),
        "{out}"
    );

    // The key manager is switched off: the migrating proxy serves both from its vault.
    drop(direct);
    upstream.kill();
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    assert_eq!(owner.key(&older).await, older_key);
    assert_eq!(owner.key(&newer).await, newer_key);
    drop(owner);
    drop(gw);
    // And so does a plain vault configuration on the same data folder: the move is done.
    served_after_migration(
        &proxy,
        &local,
        &[(&older, &older_key), (&newer, &newer_key)],
        (&newer, sealed, b"made in the local vault"),
    )
    .await;
}

/// A plain gateway on `config`, once a migration is done and the key manager switched off: it
/// serves every key of `keys` (identifier, value) to its owner as before, and decrypts `sealed`
/// (key, ciphertext, the plaintext it was made from). Returned running, with the owner's client.
async fn served_after_migration(
    proxy: &Proxy,
    config: &Path,
    keys: &[(&String, &Vec<u8>)],
    (key, ciphertext, plaintext): (&str, Vec<u8>, &[u8]),
) -> (GatewayProcess, Client) {
    let served = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let mut owner = proxy.client(&served, OWNER).await;
    for (id, value) in keys {
        assert_eq!(&owner.key(id).await, *value, "{id}");
    }
    let ResponsePayload::Decrypt(d) = owner
        .ok(RequestPayload::Decrypt(cbc(key, ciphertext)))
        .await
    else {
        panic!("Decrypt answered another payload");
    };
    assert_eq!(d.data.unwrap().as_slice(), plaintext);
    (served, owner)
}

/// `backup` of a migrating proxy, taken while it serves, holds both its vaults (the local one
/// with its key material, the upstream map) and their one master key; `restore` puts each back
/// in its place in a fresh data folder, and the restored proxy serves the key read through the
/// upstream and the local one to their owner, and neither to another user.
#[tokio::test]
async fn backup_and_restore_keep_both_vaults_of_a_migrating_proxy() {
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::with_settings(
        &[upstream.addr()],
        &upstream.pki(),
        ACQUIRE_MS,
        "mode = \"migrate\"\n",
    );
    // The older key, made upstream while the proxy was a plain one.
    let config = proxy.path("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("mode = \"migrate\"\n", "")).unwrap();
    let gw = proxy.start();
    let older = proxy.client(&gw, OWNER).await.active_key("older").await;
    drop(gw);
    std::fs::write(&config, &text).unwrap();

    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    let older_key = owner.key(&older).await;
    let newer = owner.active_key("newer").await;
    let newer_key = owner.key(&newer).await;
    let sealed = owner.round_trip(&newer, b"sealed before the backup").await;
    let mut direct = direct(&upstream).await;
    // The upstream holds the older key only: the newer one is local.
    let twin = only_upstream_object(&mut direct).await;
    assert_eq!(direct.key(&twin).await, older_key);

    let pass = proxy.path("backup.pass");
    std::fs::write(&pass, "a passphrase long enough\n").unwrap();
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let archive = proxy.path("migrating.kgb");
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "backup".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        archive.as_os_str(),
        "--passphrase-file".as_ref(),
        pass.as_os_str(),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("migrate mode: both vaults as of one moment")
            && out.contains(&format!(
                "local vault {}",
                proxy.path("data/vault").display()
            ))
            && out.contains(&format!(
                "upstream map {}",
                proxy.path("data/upstream-map").display()
            )),
        "{out}"
    );
    drop(owner);
    drop(gw);

    let restored = proxy.path("restored");
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "restore".as_ref(),
        "--in".as_ref(),
        archive.as_os_str(),
        "--passphrase-file".as_ref(),
        pass.as_os_str(),
        "--data-dir".as_ref(),
        restored.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let secrets = proxy.path("restored-secrets");
    for (what, folder, head) in [
        ("local vault", "vault", "vault.head"),
        ("upstream map", "upstream-map", "upstream-map.head"),
    ] {
        assert!(
            out.contains(&format!("restored the {what}"))
                && out.contains(&format!(
                    "into {}: 1 objects",
                    restored.join(folder).display()
                )),
            "{out}"
        );
        assert!(restored.join(folder).join("vault.log").is_file(), "{out}");
        assert!(secrets.join(head).is_file(), "{out}");
    }
    assert!(secrets.join("master.key").is_file(), "{out}");

    let text = text.replace(
        &format!("data_dir = {:?}", proxy.path("data")),
        &format!("data_dir = {restored:?}"),
    );
    assert!(text.contains(&format!("{restored:?}")), "{text}");
    std::fs::write(&config, text).unwrap();
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    assert_eq!(owner.key(&older).await, older_key, "{}", gw.log());
    assert_eq!(owner.key(&newer).await, newer_key, "{}", gw.log());
    owner
        .round_trip(&older, b"read through after restore")
        .await;
    let ResponsePayload::Decrypt(d) = owner.ok(RequestPayload::Decrypt(cbc(&newer, sealed))).await
    else {
        panic!("Decrypt answered another payload");
    };
    assert_eq!(d.data.unwrap().as_slice(), b"sealed before the backup");
    // Still one object upstream: the local key was not sent there by the restore.
    only_upstream_object(&mut direct).await;
    let mut other = proxy.client(&gw, OTHER).await;
    assert!(other.locate(Vec::new()).await.is_empty());
    for id in [&older, &newer] {
        let refused = other.call(get(id)).await;
        assert_eq!(
            refused.result_reason,
            Some(ResultReason::ItemNotFound),
            "{refused:?}"
        );
    }
}

/// Part `data` of a multi-part CBC Encrypt under `id`: the first (`cv` None, with the IV), a
/// middle one, or the last.
fn part(id: &str, data: &[u8], cv: Option<&Bytes>, last: bool) -> RequestPayload {
    let mut r = cbc(id, data.to_vec());
    if let Some(cv) = cv {
        r.iv_counter_nonce = None;
        r.correlation_value = Some(cv.clone());
    } else {
        r.init_indicator = Some(true);
    }
    r.final_indicator = last.then_some(true);
    RequestPayload::Encrypt(r)
}

/// In migrate mode a local key streams as in a vault: a multi-part Encrypt, its middle part on
/// another connection, equals the one-shot ciphertext. A key still on the upstream does not
/// stream (the proxy forwards one-shot operations only): Feature Not Supported, and its
/// one-shot Encrypt still works.
#[tokio::test]
async fn migrate_mode_streams_encrypt_with_a_local_key() {
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::new(&[upstream.addr()], &upstream.pki());
    let gw = proxy.start();
    let older = proxy.client(&gw, OWNER).await.active_key("older").await;
    drop(gw);
    let config = proxy.path("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("kind = \"kmip\"\n", "kind = \"kmip\"\nmode = \"migrate\"\n"),
    )
    .unwrap();

    let gw = proxy.start();
    let mut conns = [
        proxy.client(&gw, OWNER).await,
        proxy.client(&gw, OWNER).await,
    ];
    let local = conns[0].active_key("local").await;
    let plain: Vec<u8> = (0u8..=200).collect();
    let whole = conns[0].round_trip(&local, &plain).await;
    let mut joined = Vec::new();
    let mut cv = None;
    for (conn, range, last) in [
        (0, 0..33, false),
        (1, 33..120, false),
        (0, 120..plain.len(), true),
    ] {
        let ResponsePayload::Encrypt(e) = conns[conn]
            .ok(part(&local, &plain[range], cv.as_ref(), last))
            .await
        else {
            panic!("Encrypt answered another payload");
        };
        if cv.is_none() {
            cv = Some(e.correlation_value.clone().expect("a Correlation Value"));
        }
        joined.extend_from_slice(e.data.as_deref().unwrap_or_default());
    }
    assert_eq!(joined, whole);

    let [mut owner, _] = conns;
    let refused = owner.call(part(&older, &plain, None, false)).await;
    assert_eq!(
        refused.result_reason,
        Some(ResultReason::FeatureNotSupported),
        "{refused:?}"
    );
    owner.round_trip(&older, &plain).await;
}

/// The `[backend.migrate_to]` table of a proxy migrating to `pg` (also the `[backend]` of the
/// plain configuration it becomes, under that name): its URL, password file and file KEK,
/// written into `proxy`'s folder.
fn database_table(proxy: &Proxy, pg: &PgCluster, table: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let password = proxy.path("pg.password");
    pg.write_password_file(&password);
    let kek = proxy.path("kek.hex");
    std::fs::write(
        &kek,
        "5b1e0f3c7a9d2e4f6b8c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a",
    )
    .unwrap();
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "[{table}]\nkind = \"postgres\"\nurl = {url:?}\npassword_file = {password:?}\n\
         [{table}.kek]\nkind = \"file\"\nfile = {kek:?}\n",
        url = pg.url(),
    )
}

/// `serve --config CONFIG`, which must exit (within [`START_DEADLINE`], else it is killed and
/// the test fails) unsuccessfully: its output.
fn refused_start(config: &Path) -> String {
    let mut child = Command::new(binary_path("kmip-gateway"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kmip-gateway");
    let deadline = Instant::now() + START_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kmip-gateway serve --config {} kept running",
                config.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success(), "{text}");
    text
}

/// The identifiers of the objects the database holds.
fn database_uids(pg: &PgCluster) -> Vec<String> {
    let out = pg.psql("SELECT uid FROM kmip_objects ORDER BY uid");
    out.lines().map(str::to_owned).collect()
}

/// `mode = "migrate"` with `[backend.migrate_to]` on PostgreSQL: the proxy makes new objects in
/// the database and reads the older ones through to the upstream; an object another gateway
/// makes in the database meanwhile reaches the proxy through the change feed and is served from
/// the database; its backup holds the upstream map only; `upstream copy` into the database's
/// configuration (and no other) moves the older ones; with the upstream switched off, a plain
/// postgres gateway serves every object to its owner and none to another user.
#[tokio::test]
async fn migrate_mode_on_postgres_makes_new_objects_in_the_database() {
    if !kmip_e2e::accounts::is_root() {
        eprintln!("skipped: needs root to run PostgreSQL as the service user");
        return;
    }
    let pg = PgCluster::start();
    let home = tempfile::tempdir().unwrap();
    let mut upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::new(&[upstream.addr()], &upstream.pki());
    let gw = proxy.start();
    let older = proxy.client(&gw, OWNER).await.active_key("older").await;
    drop(gw);

    // The database's plain installation (its own data folder), and the proxy migrating to it.
    let config = proxy.path("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let (common, _) = text.split_once("[backend]").unwrap();
    let local = proxy.path("local.toml");
    std::fs::write(
        &local,
        format!(
            "{}{}",
            common.replace(
                &format!("data_dir = {:?}", proxy.path("data")),
                &format!("data_dir = {:?}", proxy.path("local")),
            ),
            database_table(&proxy, &pg, "backend")
        ),
    )
    .unwrap();
    let (ok, out) =
        kmip_e2e::gateway_cli(&["init".as_ref(), "--config".as_ref(), local.as_os_str()]);
    assert!(ok, "{out}");
    std::fs::write(
        &config,
        format!(
            "{text}mode = \"migrate\"\n{}",
            database_table(&proxy, &pg, "backend.migrate_to")
        ),
    )
    .unwrap();
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "check-config".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(
        ok && out.contains("mode migrate: new objects in PostgreSQL"),
        "{out}"
    );

    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    let older_key = owner.key(&older).await;
    let newer = owner.active_key("newer").await;
    let newer_key = owner.key(&newer).await;
    let sealed = owner.round_trip(&newer, b"made in the database").await;
    // A second proxy migrating to the same database is refused while this one runs.
    let second = proxy.path("second.toml");
    std::fs::write(
        &second,
        std::fs::read_to_string(&config).unwrap().replace(
            &format!("data_dir = {:?}", proxy.path("data")),
            &format!("data_dir = {:?}", proxy.path("second")),
        ),
    )
    .unwrap();
    let (ok, out) =
        kmip_e2e::gateway_cli(&["init".as_ref(), "--config".as_ref(), second.as_os_str()]);
    assert!(ok, "{out}");
    let refused = refused_start(&second);
    assert!(
        refused.contains("another KMIP proxy is migrating to the database"),
        "{refused}"
    );
    assert_eq!(
        database_uids(&pg),
        std::slice::from_ref(&newer),
        "{}",
        gw.log()
    );
    let mut direct = direct(&upstream).await;
    let twin = only_upstream_object(&mut direct).await;
    assert_eq!(direct.key(&twin).await, older_key);
    // Another gateway on the database: what it makes reaches the proxy through the feed, and
    // is served from the database (the upstream never had it).
    let beside_gw = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), local.display().to_string()],
        ..Default::default()
    });
    let mut beside = proxy.client(&beside_gw, OWNER).await;
    let made_beside = beside.active_key("beside").await;
    let beside_key = beside.key(&made_beside).await;
    assert_eq!(owner.key(&made_beside).await, beside_key, "{}", gw.log());
    let mut names = Vec::new();
    for name in ["older", "newer", "beside"] {
        names.extend(owner.locate(vec![Attribute::name(&Name::new(name))]).await);
    }
    assert_eq!(names, [older.clone(), newer.clone(), made_beside.clone()]);
    only_upstream_object(&mut direct).await;
    // The proxy changes the other gateway's object in the database, which sees the change.
    owner.ok(revoke(&made_beside)).await;
    assert_eq!(beside.state(&made_beside).await, Some(State::Deactivated));
    // The change log is pruned past every gateway's place: the proxy re-reads the database
    // whole, keeps the objects still on the key manager, and follows the feed on from there.
    pg.psql("UPDATE kmip_changes_pruned SET through = nextval('kmip_changes_seq_seq')");
    let after = beside.active_key("after the resync").await;
    let after_key = beside.key(&after).await;
    assert_eq!(owner.key(&after).await, after_key, "{}", gw.log());
    assert_eq!(owner.key(&older).await, older_key, "{}", gw.log());
    assert_eq!(
        owner
            .locate(vec![Attribute::name(&Name::new("older"))])
            .await,
        std::slice::from_ref(&older)
    );
    let mut other = proxy.client(&gw, OTHER).await;
    assert!(other.locate(Vec::new()).await.is_empty());

    // The proxy's backup: its upstream map only; the database is PostgreSQL's to back up.
    let pass = proxy.path("backup.pass");
    std::fs::write(&pass, "a passphrase long enough\n").unwrap();
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let archive = proxy.path("migrating.kgb");
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "backup".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        archive.as_os_str(),
        "--passphrase-file".as_ref(),
        pass.as_os_str(),
    ]);
    assert!(
        ok && out.contains("migrate mode on PostgreSQL")
            && out.contains("pg_basebackup")
            && out.contains(&format!(
                "upstream map {}",
                proxy.path("data/upstream-map").display()
            ))
            && !out.contains("local vault"),
        "{out}"
    );
    let restored = proxy.path("restored");
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "restore".as_ref(),
        "--in".as_ref(),
        archive.as_os_str(),
        "--passphrase-file".as_ref(),
        pass.as_os_str(),
        "--data-dir".as_ref(),
        restored.as_os_str(),
    ]);
    assert!(
        ok && out.contains(&format!(
            "restored the upstream map (no key material: the keys are on the upstream) into {}: 1 objects",
            restored.join("upstream-map").display()
        )) && !restored.join("vault").exists(),
        "{out}"
    );
    drop(owner);
    drop(other);
    drop(gw);

    // The older objects into the database: only its configuration is accepted as --to.
    let copy = |to: &Path| {
        kmip_e2e::gateway_cli(&[
            "upstream".as_ref(),
            "copy".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--to".as_ref(),
            to.as_os_str(),
        ])
    };
    let vault = proxy.path("vault.toml");
    std::fs::write(
        &vault,
        common.replace(
            &format!("data_dir = {:?}", proxy.path("data")),
            &format!("data_dir = {:?}", proxy.path("other")),
        ),
    )
    .unwrap();
    let (ok, out) =
        kmip_e2e::gateway_cli(&["init".as_ref(), "--config".as_ref(), vault.as_os_str()]);
    assert!(ok, "{out}");
    let (ok, out) = copy(&vault);
    assert!(
        !ok && out.contains("--to must be that database's configuration"),
        "{out}"
    );
    let (ok, out) = copy(&local);
    assert!(
        ok && out.contains("1 of 1 objects: 1 copied, 0 tombstones, 0 already there, 0 failed"),
        "{out}"
    );
    let mut held = database_uids(&pg);
    let mut all = vec![
        older.clone(),
        newer.clone(),
        made_beside.clone(),
        after.clone(),
    ];
    held.sort();
    all.sort();
    assert_eq!(held, all);

    // The key manager is switched off: the plain postgres gateway serves everything.
    drop(direct);
    upstream.kill();
    drop(beside);
    drop(beside_gw);
    let (served, _owner) = served_after_migration(
        &proxy,
        &local,
        &[
            (&older, &older_key),
            (&newer, &newer_key),
            (&made_beside, &beside_key),
            (&after, &after_key),
        ],
        (&newer, sealed, b"made in the database"),
    )
    .await;
    let mut other = proxy.client(&served, OTHER).await;
    assert!(other.locate(Vec::new()).await.is_empty());
    for id in [&older, &newer, &made_beside, &after] {
        let refused = other.call(get(id)).await;
        assert_eq!(
            refused.result_reason,
            Some(ResultReason::ItemNotFound),
            "{refused:?}"
        );
    }
}

// --- Issue 18: every object kind through the proxy -----------------------------------------

/// The data the key pair tests sign and encrypt.
const SIGNED: &[u8] = b"signed where the key lives";

fn rsa(padding: PaddingMethod, hash: HashingAlgorithm) -> CryptographicParameters {
    CryptographicParameters {
        cryptographic_algorithm: Some(CryptographicAlgorithm::Rsa),
        padding_method: Some(padding),
        hashing_algorithm: Some(hash),
        ..CryptographicParameters::default()
    }
}

fn with_params(id: &str, params: &CryptographicParameters, data: &[u8]) -> SignRequest {
    SignRequest {
        unique_identifier: Some(id.to_owned()),
        cryptographic_parameters: Some(params.clone()),
        data: Some(SecretBytes::from_slice(data)),
        ..SignRequest::default()
    }
}

impl Client {
    /// Create Key Pair of `alg`/`bits`, the halves named `name-private` and `name-public`
    /// (usable to sign and decrypt, verify and encrypt): the answer, success or not.
    async fn create_pair(
        &mut self,
        alg: CryptographicAlgorithm,
        bits: i32,
        name: &str,
    ) -> ResponseBatchItem {
        self.create_pair_with(alg, bits, name, Vec::new()).await
    }

    /// [`Client::create_pair`] with `private_extra` attributes for the private key.
    async fn create_pair_with(
        &mut self,
        alg: CryptographicAlgorithm,
        bits: i32,
        name: &str,
        private_extra: Vec<Attribute>,
    ) -> ResponseBatchItem {
        let half = |suffix: &str, mask: i32| {
            vec![
                Attribute::name(&Name::new(&format!("{name}-{suffix}"))),
                Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, mask),
            ]
        };
        let mut private = half("private", usage_mask::SIGN | usage_mask::DECRYPT);
        private.extend(private_extra);
        self.call(RequestPayload::CreateKeyPair(CreateKeyPairRequest {
            common_attributes: vec![
                Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, alg),
                Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, bits),
            ],
            private_key_attributes: private,
            public_key_attributes: half("public", usage_mask::VERIFY | usage_mask::ENCRYPT),
            common_templates: Vec::new(),
            private_key_templates: Vec::new(),
            public_key_templates: Vec::new(),
        }))
        .await
    }

    /// An active key pair: (private, public).
    async fn active_pair(
        &mut self,
        alg: CryptographicAlgorithm,
        bits: i32,
        name: &str,
    ) -> (String, String) {
        let item = self.create_pair(alg, bits, name).await;
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
        let Some(ResponsePayload::CreateKeyPair(r)) = item.payload else {
            panic!("Create Key Pair answered another payload");
        };
        for id in [
            &r.private_key_unique_identifier,
            &r.public_key_unique_identifier,
        ] {
            self.ok(RequestPayload::Activate(uid(id))).await;
        }
        (
            r.private_key_unique_identifier,
            r.public_key_unique_identifier,
        )
    }

    /// The object `id` as Get serves it, in `format` when given.
    async fn object(&mut self, id: &str, format: Option<KeyFormatType>) -> ManagedObject {
        let ResponsePayload::Get(g) = self
            .ok(RequestPayload::Get(GetRequest {
                unique_identifier: Some(id.to_owned()),
                key_format_type: format,
                ..GetRequest::default()
            }))
            .await
        else {
            panic!("Get answered another payload");
        };
        g.object
    }

    /// The DER of the key `id` in its default format, as PKCS#8 or SubjectPublicKeyInfo: the
    /// form to compare keys by, whichever format a server answers in.
    async fn key_der(&mut self, id: &str) -> Vec<u8> {
        let block_bytes = |b: KeyBlock| match b.key_value {
            KeyValue::Material(m) => m.as_slice().to_vec(),
            other => panic!("{id}: not a DER key: {other:?}"),
        };
        match self.object(id, None).await {
            ManagedObject::PrivateKey(b) => {
                asym::private_to_pkcs8(&block_bytes(b)).unwrap().to_vec()
            }
            ManagedObject::PublicKey(b) => asym::public_to_spki(&block_bytes(b)).unwrap(),
            ManagedObject::Certificate { value, .. } => value.to_vec(),
            other => panic!("{id}: {other:?}"),
        }
    }

    async fn sign(&mut self, id: &str, params: &CryptographicParameters, data: &[u8]) -> Vec<u8> {
        let ResponsePayload::Sign(s) = self
            .ok(RequestPayload::Sign(with_params(id, params, data)))
            .await
        else {
            panic!("Sign answered another payload");
        };
        s.signature_data.expect("a signature").to_vec()
    }

    async fn verify(
        &mut self,
        id: &str,
        params: &CryptographicParameters,
        data: &[u8],
        signature: &[u8],
    ) -> ValidityIndicator {
        let ResponsePayload::SignatureVerify(v) = self
            .ok(RequestPayload::SignatureVerify(SignRequest {
                signature_data: Some(Bytes::copy_from_slice(signature)),
                ..with_params(id, params, data)
            }))
            .await
        else {
            panic!("Signature Verify answered another payload");
        };
        v.validity_indicator
    }

    /// RSA-encrypts `data` to the public key `public` and decrypts it with `private`, both
    /// through this client, under `params`; checks the round trip.
    async fn rsa_round_trip(
        &mut self,
        public: &str,
        private: &str,
        params: &CryptographicParameters,
        data: &[u8],
    ) {
        let decrypted = self.rsa_try_round_trip(public, private, params, data).await;
        assert_eq!(
            decrypted.result_status,
            ResultStatus::Success,
            "{decrypted:?}"
        );
        let Some(ResponsePayload::Decrypt(d)) = decrypted.payload else {
            panic!("Decrypt answered another payload");
        };
        assert_eq!(d.data.expect("plaintext").as_slice(), data);
    }

    /// [`Client::rsa_round_trip`]'s Encrypt, then its Decrypt's answer, success or not.
    async fn rsa_try_round_trip(
        &mut self,
        public: &str,
        private: &str,
        params: &CryptographicParameters,
        data: &[u8],
    ) -> ResponseBatchItem {
        let request = |id: &str, data: &[u8]| CryptoRequest {
            unique_identifier: Some(id.to_owned()),
            cryptographic_parameters: Some(params.clone()),
            data: Some(SecretBytes::from_slice(data)),
            ..CryptoRequest::default()
        };
        let ResponsePayload::Encrypt(e) = self
            .ok(RequestPayload::Encrypt(request(public, data)))
            .await
        else {
            panic!("Encrypt answered another payload");
        };
        let sealed = e.data.expect("ciphertext");
        self.call(RequestPayload::Decrypt(request(private, &sealed)))
            .await
    }

    /// Registers `object` (with `attributes`) and activates it when it is a key.
    async fn register(&mut self, object: ManagedObject, attributes: Vec<Attribute>) -> String {
        let key = matches!(
            object,
            ManagedObject::PrivateKey(_) | ManagedObject::PublicKey(_)
        );
        let ResponsePayload::Register(r) = self
            .ok(RequestPayload::Register(RegisterRequest {
                templates: Vec::new(),
                object_type: object.object_type(),
                attributes,
                object,
            }))
            .await
        else {
            panic!("Register answered another payload");
        };
        if key {
            self.ok(RequestPayload::Activate(uid(&r.unique_identifier)))
                .await;
        }
        r.unique_identifier
    }

    /// The upstream object of `object_type` made since `before` (the identifiers seen then).
    async fn new_upstream(&mut self, object_type: ObjectType, before: &[String]) -> String {
        let mut made: Vec<String> = self
            .locate(vec![Attribute::enumeration(tags::OBJECT_TYPE, object_type)])
            .await
            .into_iter()
            .filter(|u| !before.contains(u))
            .collect();
        assert_eq!(made.len(), 1, "new upstream {object_type:?}: {made:?}");
        made.remove(0)
    }

    async fn links(&mut self, id: &str) -> Vec<Link> {
        let ResponsePayload::GetAttributes(r) = self
            .ok(RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(id.to_owned()),
                names: Vec::new(),
            }))
            .await
        else {
            panic!("Get Attributes answered another payload");
        };
        r.attributes.iter().filter_map(Attribute::as_link).collect()
    }
}

/// A key block of DER `material` in `format`.
fn der_block(
    format: KeyFormatType,
    material: &[u8],
    alg: CryptographicAlgorithm,
    bits: i32,
) -> KeyBlock {
    KeyBlock {
        key_format_type: format,
        ..KeyBlock::raw(SecretBytes::from_slice(material), Some(alg), Some(bits))
    }
}

/// A new RSA-2048 key pair made here: (PKCS#8, SubjectPublicKeyInfo).
fn rsa_pair_here() -> (Vec<u8>, Vec<u8>) {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let private = AsDer::<Pkcs8V1Der>::as_der(&kp).unwrap();
    let public =
        AsDer::<PublicKeyX509Der>::as_der(aws_lc_rs::signature::KeyPair::public_key(&kp)).unwrap();
    (private.as_ref().to_vec(), public.as_ref().to_vec())
}

/// The DER of the PEM certificate `path`.
fn certificate_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

/// What the other tenant gets for each of `ids`: nothing.
async fn hidden_from_the_other_tenant(proxy: &Proxy, gw: &GatewayProcess, ids: &[&String]) {
    let mut other = proxy.client(gw, OTHER).await;
    for id in ids {
        let seen = other.call(get(id)).await;
        assert_eq!(
            seen.result_reason,
            Some(ResultReason::ItemNotFound),
            "{id}: {seen:?}"
        );
    }
    assert!(other.locate(Vec::new()).await.is_empty());
}

/// What an upstream server can do with key pairs.
struct PairSupport {
    /// Makes EC and Ed25519 pairs (PyKMIP's server makes RSA pairs only).
    ec: bool,
    /// Decrypts with an RSA private key (PyKMIP's server decrypts with symmetric keys only,
    /// and answers Permission Denied).
    rsa_decrypt: bool,
    /// Links a pair's halves (Get Attributes reports them; PyKMIP's server does not).
    links: bool,
}

/// Key pairs, Sign, RSA Decrypt and registered keys and certificates through the proxy in front
/// of `direct`'s server: the upstream makes and holds the keys and does the private-key
/// cryptography, the material read through the proxy is the upstream's, and the other tenant
/// sees nothing. What the upstream cannot do, the proxy answers with the upstream's refusal
/// (and a refused Create Key Pair leaves neither half).
async fn key_pairs_and_certificates_through(
    proxy: &Proxy,
    gw: &GatewayProcess,
    direct: &mut Client,
    can: PairSupport,
) {
    let mut owner = proxy.client(gw, OWNER).await;
    let before = direct.locate(Vec::new()).await;
    let (private, public) = owner
        .active_pair(CryptographicAlgorithm::Rsa, 2048, "pair")
        .await;
    let up_private = direct.new_upstream(ObjectType::PrivateKey, &before).await;
    let up_public = direct.new_upstream(ObjectType::PublicKey, &before).await;
    assert_eq!(
        owner.key_der(&private).await,
        direct.key_der(&up_private).await
    );
    assert_eq!(
        owner.key_der(&public).await,
        direct.key_der(&up_public).await
    );
    // Any format the gateway converts to, whatever the upstream answers in.
    let ManagedObject::PrivateKey(b) = owner.object(&private, Some(KeyFormatType::Pkcs8)).await
    else {
        panic!("not a private key");
    };
    assert_eq!(b.key_format_type, KeyFormatType::Pkcs8);

    for params in [
        rsa(PaddingMethod::Pss, HashingAlgorithm::Sha256),
        rsa(PaddingMethod::Pkcs1V15, HashingAlgorithm::Sha256),
    ] {
        let signature = owner.sign(&private, &params, SIGNED).await;
        assert_eq!(
            owner.verify(&public, &params, SIGNED, &signature).await,
            ValidityIndicator::Valid
        );
        assert_eq!(
            owner
                .verify(&public, &params, b"other data", &signature)
                .await,
            ValidityIndicator::Invalid
        );
        // The upstream itself agrees: the signature is its private key's.
        assert_eq!(
            direct.verify(&up_public, &params, SIGNED, &signature).await,
            ValidityIndicator::Valid
        );
    }
    for params in [
        rsa(PaddingMethod::Oaep, HashingAlgorithm::Sha256),
        rsa(PaddingMethod::Pkcs1V15, HashingAlgorithm::Sha256),
    ] {
        let decrypted = owner
            .rsa_try_round_trip(&public, &private, &params, b"RSA through the proxy")
            .await;
        if can.rsa_decrypt {
            assert_eq!(
                decrypted.result_status,
                ResultStatus::Success,
                "{decrypted:?}"
            );
        } else {
            assert_eq!(
                decrypted.result_reason,
                Some(ResultReason::PermissionDenied),
                "{decrypted:?}"
            );
        }
    }

    let ecdsa = CryptographicParameters {
        cryptographic_algorithm: Some(CryptographicAlgorithm::Ecdsa),
        hashing_algorithm: Some(HashingAlgorithm::Sha256),
        ..CryptographicParameters::default()
    };
    let eddsa = CryptographicParameters {
        cryptographic_algorithm: Some(CryptographicAlgorithm::Ed25519),
        ..CryptographicParameters::default()
    };
    for (alg, name, params) in [
        (CryptographicAlgorithm::Ec, "ec-pair", &ecdsa),
        (CryptographicAlgorithm::Ed25519, "ed-pair", &eddsa),
    ] {
        let pair = owner.create_pair(alg, 256, name).await;
        if !can.ec {
            // The upstream's refusal, and neither half exists in the gateway.
            assert_eq!(
                pair.result_status,
                ResultStatus::OperationFailed,
                "{pair:?}"
            );
            for half in ["private", "public"] {
                assert!(owner
                    .locate(vec![Attribute::name(&Name::new(&format!("{name}-{half}")))])
                    .await
                    .is_empty());
            }
            continue;
        }
        let Some(ResponsePayload::CreateKeyPair(r)) = pair.payload else {
            panic!("Create Key Pair of {alg:?}: {pair:?}");
        };
        let (private, public) = (
            r.private_key_unique_identifier,
            r.public_key_unique_identifier,
        );
        for id in [&private, &public] {
            owner.ok(RequestPayload::Activate(uid(id))).await;
        }
        let signature = owner.sign(&private, params, SIGNED).await;
        assert_eq!(
            owner.verify(&public, params, SIGNED, &signature).await,
            ValidityIndicator::Valid,
            "{alg:?}"
        );
    }

    // Registered keys and a certificate: stored upstream, read back as registered, usable.
    let (pkcs8, spki) = rsa_pair_here();
    let before = direct.locate(Vec::new()).await;
    let reg_private = owner
        .register(
            ManagedObject::PrivateKey(der_block(
                KeyFormatType::Pkcs8,
                &pkcs8,
                CryptographicAlgorithm::Rsa,
                2048,
            )),
            vec![Attribute::integer(
                tags::CRYPTOGRAPHIC_USAGE_MASK,
                usage_mask::SIGN | usage_mask::DECRYPT,
            )],
        )
        .await;
    let reg_public = owner
        .register(
            ManagedObject::PublicKey(der_block(
                KeyFormatType::X509,
                &spki,
                CryptographicAlgorithm::Rsa,
                2048,
            )),
            vec![Attribute::integer(
                tags::CRYPTOGRAPHIC_USAGE_MASK,
                usage_mask::VERIFY | usage_mask::ENCRYPT,
            )],
        )
        .await;
    let cert = certificate_der(&proxy.path(&format!("{OWNER}.pem")));
    let reg_cert = owner
        .register(
            ManagedObject::Certificate {
                certificate_type: CertificateType::X509,
                value: Bytes::from(cert.clone()),
            },
            vec![Attribute::name(&Name::new("owner-cert"))],
        )
        .await;
    assert_eq!(owner.key_der(&reg_private).await, pkcs8);
    assert_eq!(owner.key_der(&reg_public).await, spki);
    assert_eq!(owner.key_der(&reg_cert).await, cert);
    for (object_type, expected) in [
        (ObjectType::PrivateKey, &pkcs8),
        (ObjectType::PublicKey, &spki),
        (ObjectType::Certificate, &cert),
    ] {
        let up = direct.new_upstream(object_type, &before).await;
        assert_eq!(&direct.key_der(&up).await, expected, "{object_type:?}");
    }
    let params = rsa(PaddingMethod::Pss, HashingAlgorithm::Sha256);
    let signature = owner.sign(&reg_private, &params, SIGNED).await;
    assert_eq!(
        owner.verify(&reg_public, &params, SIGNED, &signature).await,
        ValidityIndicator::Valid
    );
    if can.rsa_decrypt {
        owner
            .rsa_round_trip(
                &reg_public,
                &reg_private,
                &rsa(PaddingMethod::Oaep, HashingAlgorithm::Sha1),
                b"registered keys",
            )
            .await;
    }
    assert_eq!(
        owner
            .locate(vec![Attribute::name(&Name::new("owner-cert"))])
            .await,
        vec![reg_cert.clone()]
    );
    hidden_from_the_other_tenant(
        proxy,
        gw,
        &[&private, &public, &reg_private, &reg_public, &reg_cert],
    )
    .await;
}

#[tokio::test]
async fn key_pairs_and_certificates_pass_through_to_another_gateway() {
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::new(&[upstream.addr()], &upstream.pki());
    let gw = proxy.start();
    let mut direct = direct(&upstream).await;
    let can = PairSupport {
        ec: true,
        rsa_decrypt: true,
        links: true,
    };
    key_pairs_and_certificates_through(&proxy, &gw, &mut direct, can).await;
}

#[tokio::test]
async fn key_pairs_and_certificates_pass_through_to_pykmip_server() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki::dev_pki(pki_dir.path()).unwrap();
    let upstream = PyKmipServer::start(pki_dir.path());
    let proxy = Proxy::new(&[upstream.addr()], pki_dir.path());
    let gw = proxy.start();
    let mut direct = direct_at(upstream.addr(), pki_dir.path()).await;
    let can = PairSupport {
        ec: false,
        rsa_decrypt: false,
        links: false,
    };
    key_pairs_and_certificates_through(&proxy, &gw, &mut direct, can).await;
}

/// A key pair and a certificate made on the upstream directly are adopted for one tenant (the
/// private key by identifier, the public key by Name, the certificate by identifier): the
/// tenant reads the upstream's material through the proxy, signs with the private key there,
/// verifies with the public key, finds the certificate by Name, and (where the upstream links
/// the halves) the two adopted halves are linked to each other; the other tenant sees none.
async fn key_pair_and_certificate_adopted(
    proxy: &Proxy,
    gw: &GatewayProcess,
    direct: &mut Client,
    can: PairSupport,
) {
    let (private, public) = direct
        .active_pair(CryptographicAlgorithm::Rsa, 2048, "legacy-pair")
        .await;
    let cert = certificate_der(&proxy.path(&format!("{OWNER}.pem")));
    let certificate = direct
        .register(
            ManagedObject::Certificate {
                certificate_type: CertificateType::X509,
                value: Bytes::from(cert.clone()),
            },
            vec![Attribute::name(&Name::new("legacy-cert"))],
        )
        .await;
    for which in [
        ["--uid", private.as_str()],
        ["--name", "legacy-pair-public"],
        ["--uid", certificate.as_str()],
    ] {
        let (ok, out) = adopt(proxy, gw, OWNER, &which);
        assert!(ok, "{which:?}: {out}\n{}", gw.log());
    }
    let mut owner = proxy.client(gw, OWNER).await;
    for id in [&private, &public, &certificate] {
        assert_eq!(owner.key_der(id).await, direct.key_der(id).await, "{id}");
    }
    let params = rsa(PaddingMethod::Pkcs1V15, HashingAlgorithm::Sha256);
    let signature = owner.sign(&private, &params, SIGNED).await;
    assert_eq!(
        owner.verify(&public, &params, SIGNED, &signature).await,
        ValidityIndicator::Valid
    );
    if can.rsa_decrypt {
        owner
            .rsa_round_trip(
                &public,
                &private,
                &rsa(PaddingMethod::Oaep, HashingAlgorithm::Sha256),
                b"adopted pair",
            )
            .await;
    }
    let linked =
        |links: Vec<Link>, to: &str| links.iter().any(|l| l.linked_object_identifier == to);
    assert_eq!(linked(owner.links(&private).await, &public), can.links);
    assert_eq!(linked(owner.links(&public).await, &private), can.links);
    // ReKey Key Pair finds the public key by the private key's Link: the kept Links make an
    // adopted pair re-keyable, a new pair made upstream.
    let rekeyed = owner
        .call(RequestPayload::ReKeyKeyPair(ReKeyKeyPairRequest {
            unique_identifier: Some(private.clone()),
            ..ReKeyKeyPairRequest::default()
        }))
        .await;
    if can.links {
        let Some(ResponsePayload::ReKeyKeyPair(pair)) = rekeyed.payload else {
            panic!("ReKey Key Pair: {rekeyed:?}");
        };
        for id in [
            &pair.private_key_unique_identifier,
            &pair.public_key_unique_identifier,
        ] {
            if owner.state(id).await == Some(State::PreActive) {
                owner.ok(RequestPayload::Activate(uid(id))).await;
            }
        }
        let signature = owner
            .sign(&pair.private_key_unique_identifier, &params, SIGNED)
            .await;
        assert_eq!(
            owner
                .verify(
                    &pair.public_key_unique_identifier,
                    &params,
                    SIGNED,
                    &signature
                )
                .await,
            ValidityIndicator::Valid
        );
    } else {
        assert_eq!(
            rekeyed.result_reason,
            Some(ResultReason::InvalidField),
            "{rekeyed:?}"
        );
    }
    assert_eq!(
        owner
            .locate(vec![Attribute::name(&Name::new("legacy-cert"))])
            .await,
        vec![certificate.clone()]
    );
    hidden_from_the_other_tenant(proxy, gw, &[&private, &public, &certificate]).await;
}

#[tokio::test]
async fn key_pairs_and_certificates_made_on_another_gateway_are_adopted() {
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = with_admin(Proxy::new(&[upstream.addr()], &upstream.pki()));
    let gw = proxy.start();
    let mut direct = direct(&upstream).await;
    let can = PairSupport {
        ec: true,
        rsa_decrypt: true,
        links: true,
    };
    key_pair_and_certificate_adopted(&proxy, &gw, &mut direct, can).await;
}

#[tokio::test]
async fn key_pairs_and_certificates_made_on_pykmip_server_are_adopted() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki::dev_pki(pki_dir.path()).unwrap();
    let upstream = PyKmipServer::start(pki_dir.path());
    let proxy = with_admin(Proxy::new(&[upstream.addr()], pki_dir.path()));
    let gw = proxy.start();
    let mut direct = direct_at(upstream.addr(), pki_dir.path()).await;
    let can = PairSupport {
        ec: false,
        rsa_decrypt: false,
        links: false,
    };
    key_pair_and_certificate_adopted(&proxy, &gw, &mut direct, can).await;
}

/// Split Keys (registered, and made by Create Split Key and joined again), PGP Keys and
/// Certificate Requests through the proxy, at KMIP 2.1: registered upstream as those objects and
/// read back as registered; the parts of one Create Split Key still join (their split's group
/// is the gateway's, kept in the mapping). With `all` false the upstream (PyKMIP's server)
/// keeps Split Keys only: it refuses the others, the proxy answers that refusal and keeps
/// nothing of them.
async fn other_kinds_through(proxy: &Proxy, gw: &GatewayProcess, direct: &mut Client, all: bool) {
    let mut owner = proxy.client(gw, OWNER).await;
    owner.version = ProtocolVersion::V2_1;
    let csr = pki::server_csr(&["array-9.example".to_owned()], &[]).unwrap();
    let pgp = ManagedObject::PgpKey {
        pgp_key_version: 4,
        key_block: KeyBlock {
            key_format_type: KeyFormatType::Opaque,
            ..KeyBlock::raw(
                SecretBytes::from_slice(b"\x99\x01\x0d\x04 an OpenPGP public key packet"),
                None,
                None,
            )
        },
    };
    let request = ManagedObject::CertificateRequest {
        certificate_request_type: CertificateRequestType::Pem,
        value: Bytes::from(csr.csr_pem.into_bytes()),
    };
    let part = ManagedObject::SplitKey(SplitKey {
        split_key_parts: 3,
        key_part_identifier: 2,
        split_key_threshold: 2,
        split_key_method: SplitKeyMethod::PolynomialSharingGf28,
        prime_field_size: None,
        key_block: KeyBlock::raw(
            SecretBytes::from_slice(&[7u8; 16]),
            Some(CryptographicAlgorithm::Aes),
            Some(128),
        ),
    });
    let mut mine = Vec::new();
    for (object, kept) in [(&part, true), (&pgp, all), (&request, all)] {
        let before = direct.locate(Vec::new()).await;
        let item = owner
            .call(RequestPayload::Register(RegisterRequest {
                templates: Vec::new(),
                object_type: object.object_type(),
                attributes: Vec::new(),
                object: object.clone(),
            }))
            .await;
        let of_type = vec![Attribute::enumeration(
            tags::OBJECT_TYPE,
            object.object_type(),
        )];
        if !kept {
            assert_eq!(
                item.result_status,
                ResultStatus::OperationFailed,
                "{item:?}"
            );
            assert!(owner.locate(of_type).await.is_empty());
            assert_eq!(direct.locate(Vec::new()).await, before);
            continue;
        }
        let Some(ResponsePayload::Register(r)) = item.payload else {
            panic!("Register of a {:?}: {item:?}", object.object_type());
        };
        assert_eq!(&owner.object(&r.unique_identifier, None).await, object);
        assert_eq!(
            owner.locate(of_type).await,
            vec![r.unique_identifier.clone()]
        );
        direct.new_upstream(object.object_type(), &before).await;
        mine.push(r.unique_identifier);
    }
    let item = owner
        .call(RequestPayload::CreateSplitKey(CreateSplitKeyRequest {
            object_type: ObjectType::SplitKey,
            unique_identifier: None,
            split_key_parts: 3,
            split_key_threshold: 2,
            split_key_method: SplitKeyMethod::PolynomialSharingGf28,
            prime_field_size: None,
            attributes: vec![
                Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
                Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
            ],
        }))
        .await;
    let Some(ResponsePayload::CreateSplitKey(made)) = item.payload else {
        panic!("Create Split Key: {item:?}\n{}", gw.log());
    };
    let item = owner
        .call(RequestPayload::JoinSplitKey(JoinSplitKeyRequest {
            object_type: ObjectType::SymmetricKey,
            unique_identifiers: made.unique_identifiers[1..].to_vec(),
            secret_data_type: None,
            attributes: vec![Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c)],
        }))
        .await;
    let Some(ResponsePayload::JoinSplitKey(joined)) = item.payload else {
        panic!("Join Split Key: {item:?}\n{}", gw.log());
    };
    assert_eq!(owner.key(&joined.unique_identifier).await.len(), 32);
    // A registered part is of no split those parts belong to.
    let item = owner
        .call(RequestPayload::JoinSplitKey(JoinSplitKeyRequest {
            object_type: ObjectType::SymmetricKey,
            unique_identifiers: vec![made.unique_identifiers[0].clone(), mine[0].clone()],
            secret_data_type: None,
            attributes: Vec::new(),
        }))
        .await;
    assert_eq!(
        item.result_status,
        ResultStatus::OperationFailed,
        "{item:?}"
    );
    mine.extend(made.unique_identifiers);
    hidden_from_the_other_tenant(proxy, gw, &mine.iter().collect::<Vec<_>>()).await;
}

#[tokio::test]
async fn split_keys_pgp_keys_and_certificate_requests_pass_through_to_another_gateway() {
    let home = tempfile::tempdir().unwrap();
    let upstream = GatewayUpstream::start(&home.path().join("u"));
    let proxy = Proxy::new(&[upstream.addr()], &upstream.pki());
    let gw = proxy.start();
    let mut direct = direct(&upstream).await;
    other_kinds_through(&proxy, &gw, &mut direct, true).await;
}

#[tokio::test]
async fn split_keys_pass_through_to_pykmip_server_and_its_refusals_of_the_others_too() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki::dev_pki(pki_dir.path()).unwrap();
    let upstream = PyKmipServer::start(pki_dir.path());
    let proxy = Proxy::new(&[upstream.addr()], pki_dir.path());
    let gw = proxy.start();
    let mut direct = direct_at(upstream.addr(), pki_dir.path()).await;
    other_kinds_through(&proxy, &gw, &mut direct, false).await;
}

/// PyKMIP's client flows of key pairs (Create Key Pair, Sign, Signature Verify, Get), certificates
/// (Register, Get, derived attributes) and split keys (Register and Get of an XOR split's
/// parts) at each version PyKMIP speaks, through the proxy (in front of another gateway:
/// `tests/tests/pykmip.rs`, `with_proxy`).
fn pykmip_kind_flows(proxy: &Proxy) {
    let gw = proxy.start();
    for v in ["1.2", "1.4", "2.0"] {
        let r = pykmip_flow(proxy, &gw, v, "keypair");
        let ctx = format!("KMIP {v}: {r}");
        assert_eq!(r["signature_bytes"], 256, "{ctx}");
        assert_eq!(r["verify"], "VALID", "{ctx}");
        assert_eq!(r["verify_other_data"], "INVALID", "{ctx}");
        assert_eq!(r["sign_with_public"]["status"], "OPERATION_FAILED", "{ctx}");
        assert_eq!(
            r["public"],
            serde_json::json!({"object_type": "PublicKey", "format": "PKCS_1",
                               "algorithm": "RSA", "length": 2048}),
            "{ctx}"
        );
        assert_eq!(
            r["locate_private"],
            serde_json::json!([r["private_uid"]]),
            "{ctx}"
        );

        let r = pykmip_flow(proxy, &gw, v, "certificate");
        let ctx = format!("KMIP {v}: {r}");
        assert_eq!(
            r["certificate"],
            serde_json::json!({"object_type": "X509Certificate", "certificate_type": "X_509",
                               "same_der": true}),
            "{ctx}"
        );
        assert_eq!(r["locate"], serde_json::json!([r["uid"]]), "{ctx}");
        assert_eq!(
            r["get_after_destroy"]["status"], "OPERATION_FAILED",
            "{ctx}"
        );

        let r = pykmip_flow(proxy, &gw, v, "splitkey");
        let ctx = format!("KMIP {v}: {r}");
        for (i, part) in r["parts"].as_array().expect("parts").iter().enumerate() {
            assert_eq!(
                part,
                &serde_json::json!({"object_type": "SplitKey", "identifier": i + 1, "parts": 2,
                                    "threshold": 2, "method": "XOR", "algorithm": "AES",
                                    "length": 128}),
                "{ctx}"
            );
        }
        assert_eq!(r["joins_to_secret"], true, "{ctx}");
        assert_eq!(r["located"], true, "{ctx}");
    }
}

#[test]
fn pykmip_client_key_pairs_certificates_and_split_keys_through_the_proxy_to_pykmip_server() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki::dev_pki(pki_dir.path()).unwrap();
    let upstream = PyKmipServer::start(pki_dir.path());
    pykmip_kind_flows(&Proxy::new(&[upstream.addr()], pki_dir.path()));
}

/// `upstream copy` of every kind the proxy made or adopted: a key pair made through the proxy, an
/// adopted one, a certificate and the parts of a Create Split Key are copied with their material
/// (keys as PKCS#8 / SPKI, the parts with their split) and work on the local gateway with the
/// upstream switched off: the copied private keys sign, the parts join. A pair whose private
/// key was made Sensitive leaves that key at the source.
#[tokio::test]
async fn key_pairs_certificates_and_split_keys_are_copied_off_the_upstream() {
    let home = tempfile::tempdir().unwrap();
    let mut upstream = GatewayUpstream::start(&home.path().join("u"));
    let mut direct = direct(&upstream).await;
    let (legacy_private, legacy_public) = direct
        .active_pair(CryptographicAlgorithm::Rsa, 2048, "legacy")
        .await;
    let proxy = with_admin(Proxy::new(&[upstream.addr()], &upstream.pki()));
    let gw = proxy.start();
    for id in [&legacy_private, &legacy_public] {
        let (ok, out) = adopt(&proxy, &gw, OWNER, &["--uid", id]);
        assert!(ok, "{out}");
    }
    let mut owner = proxy.client(&gw, OWNER).await;
    owner.version = ProtocolVersion::V2_1;
    let (private, public) = owner
        .active_pair(CryptographicAlgorithm::Ec, 384, "made")
        .await;
    let item = owner
        .create_pair_with(
            CryptographicAlgorithm::Rsa,
            2048,
            "sealed",
            vec![Attribute::boolean(tags::SENSITIVE, true)],
        )
        .await;
    let Some(ResponsePayload::CreateKeyPair(sealed)) = item.payload else {
        panic!("Create Key Pair: {item:?}");
    };
    let cert = certificate_der(&proxy.path(&format!("{OWNER}.pem")));
    let certificate = owner
        .register(
            ManagedObject::Certificate {
                certificate_type: CertificateType::X509,
                value: Bytes::from(cert.clone()),
            },
            Vec::new(),
        )
        .await;
    let ResponsePayload::CreateSplitKey(parts) = owner
        .ok(RequestPayload::CreateSplitKey(CreateSplitKeyRequest {
            object_type: ObjectType::SplitKey,
            unique_identifier: None,
            split_key_parts: 3,
            split_key_threshold: 2,
            split_key_method: SplitKeyMethod::PolynomialSharingGf28,
            prime_field_size: None,
            attributes: vec![
                Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
                Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
            ],
        }))
        .await
    else {
        panic!("Create Split Key answered another payload");
    };
    let mut before = Vec::new();
    for id in [
        &legacy_private,
        &legacy_public,
        &private,
        &public,
        &certificate,
    ] {
        before.push(owner.key_der(id).await);
    }
    let objects = owner.locate(Vec::new()).await.len();
    drop(owner);
    drop(gw);

    let local = local_installation(&proxy);
    let (ok, out) = kmip_e2e::gateway_cli(&[
        "upstream".as_ref(),
        "copy".as_ref(),
        "--config".as_ref(),
        proxy.path("gateway.toml").as_os_str(),
        "--to".as_ref(),
        local.as_os_str(),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "{objects} of {objects} objects: {} copied, 0 tombstones, 0 already there, 0 failed, \
             1 not extractable",
            objects - 1
        )) && out.contains(&format!(
            "not extractable, left at the source: {}",
            sealed.private_key_unique_identifier
        )),
        "{out}"
    );

    drop(direct);
    upstream.kill();
    let served = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), local.display().to_string()],
        ..Default::default()
    });
    let mut owner = proxy.client(&served, OWNER).await;
    owner.version = ProtocolVersion::V2_1;
    for (id, der) in [
        &legacy_private,
        &legacy_public,
        &private,
        &public,
        &certificate,
    ]
    .into_iter()
    .zip(&before)
    {
        assert_eq!(&owner.key_der(id).await, der, "{id}");
    }
    let ecdsa = CryptographicParameters {
        cryptographic_algorithm: Some(CryptographicAlgorithm::Ecdsa),
        hashing_algorithm: Some(HashingAlgorithm::Sha384),
        ..CryptographicParameters::default()
    };
    let rsa_pss = rsa(PaddingMethod::Pss, HashingAlgorithm::Sha256);
    for (private, public, params) in [
        (&private, &public, &ecdsa),
        (&legacy_private, &legacy_public, &rsa_pss),
    ] {
        let signature = owner.sign(private, params, SIGNED).await;
        assert_eq!(
            owner.verify(public, params, SIGNED, &signature).await,
            ValidityIndicator::Valid
        );
    }
    let item = owner
        .call(RequestPayload::JoinSplitKey(JoinSplitKeyRequest {
            object_type: ObjectType::SymmetricKey,
            unique_identifiers: parts.unique_identifiers[..2].to_vec(),
            secret_data_type: None,
            attributes: vec![Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c)],
        }))
        .await;
    assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
}

/// An upstream kmip-gateway whose policy lets the proxy's identity (`purefa`) make, read,
/// revoke and destroy its objects but not activate them: files in `dir` (its CA, server and
/// `client-purefa` certificates, configuration, policy).
fn upstream_that_never_activates(dir: &Path) -> GatewayProcess {
    let ca = pki::init_ca("upstream CA", 30).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    let server = pki::issue_server_cert(
        &ca,
        &["localhost".to_owned()],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        30,
    )
    .unwrap();
    std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), server.key_pem.as_bytes()).unwrap();
    let client = pki::issue_client_cert(&ca, "purefa", 30).unwrap();
    std::fs::write(dir.join("client-purefa.pem"), &client.cert_pem).unwrap();
    std::fs::write(dir.join("client-purefa.key"), client.key_pem.as_bytes()).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        "[[users]]\nname = \"purefa\"\n\
         [[rules]]\nname = \"make\"\nusers = [\"purefa\"]\n\
         operations = [\"DiscoverVersions\", \"Query\", \"Locate\", \"Create\", \
         \"CreateKeyPair\", \"Register\"]\n\
         [[rules]]\nname = \"own-but-never-activate\"\nusers = [\"purefa\"]\n\
         operations = [\"Get\", \"GetAttributes\", \"Revoke\", \"Destroy\"]\nowned = true\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("upstream.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\npolicy_file = {policy:?}\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n",
            data = dir.join("data"),
            policy = dir.join("policy.toml"),
            cert = dir.join("server.pem"),
            key = dir.join("server.key"),
            ca = dir.join("ca.pem"),
        ),
    )
    .unwrap();
    GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec![
            "--config".into(),
            dir.join("upstream.toml").display().to_string(),
        ],
        ..Default::default()
    })
}

/// Create Key Pair is both keys or neither: when the upstream made the pair but then refuses to
/// activate it, the client gets the refusal, the proxy records neither half, and the pair is
/// destroyed upstream rather than left there unmapped.
#[tokio::test]
async fn a_key_pair_the_upstream_cannot_activate_is_neither_kept_nor_left_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = upstream_that_never_activates(dir.path());
    let proxy = Proxy::new(&[upstream.addr()], dir.path());
    let gw = proxy.start();
    let mut owner = proxy.client(&gw, OWNER).await;
    let item = owner
        .create_pair(CryptographicAlgorithm::Rsa, 2048, "half")
        .await;
    assert_eq!(
        item.result_reason,
        Some(ResultReason::PermissionDenied),
        "{item:?}\n{}",
        gw.log()
    );
    assert!(owner.locate(Vec::new()).await.is_empty());
    // The upstream's audit trail: the pair it made, then both keys destroyed.
    let mut upstream = upstream;
    upstream.terminate();
    assert!(upstream.wait_exit(BOUNDED).is_some_and(|s| s.success()));
    let trail: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("data/audit/audit.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let succeeded = |operation: &str| {
        trail
            .iter()
            .filter(|r| r["operation"] == operation && r["result_status"] == "Success")
            .flat_map(|r| {
                r["unique_identifiers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|u| u.to_string())
            .collect::<BTreeSet<_>>()
    };
    let made = succeeded("CreateKeyPair");
    assert_eq!(made.len(), 2, "{trail:?}");
    assert_eq!(succeeded("Destroy"), made, "{trail:?}");
}
