//! Several gateways on one PostgreSQL database (issue 14), shared by `tests/ha.rs` and
//! `tests/ha_failover.rs`: a [`Site`] (the database, maybe its synchronous standby, one PKI and
//! KEK, two gateways each with its own data folder) and a KMIP 2.1 [`Client`] whose every
//! request is answered, or fails, within [`REQUEST_BOUND`].

use crate::postgres::PgCluster;
use crate::{GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientError, ClientTls, KmipClient};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a condition that depends on another process (the follower, a restarted
/// database) may take to hold: generous, for a loaded CI machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The longest a request may go unanswered: far above the gateway's own bounds on a database
/// that does not answer (pool acquire and connect timeouts, 5 s each by default), so only a
/// hang runs into it.
pub const REQUEST_BOUND: Duration = Duration::from_secs(30);

/// A key encryption key for the tests (64 hex digits).
const KEK_HEX: &str = "8f6a1c0e4b2d9a7753e1f0c4d8b6a2e19c3f5d7b0a4e6c8d2f1b3a5c7e9d0f2a";

/// The database (and its standby, if any), the shared PKI and KEK, and two gateways on them.
pub struct Site {
    pub pg: PgCluster,
    pub standby: Option<PgCluster>,
    dir: tempfile::TempDir,
    pub a: GatewayProcess,
    pub b: GatewayProcess,
}

impl Site {
    /// A new database and both gateways on it with `read_your_writes` = `mode`.
    pub fn start(mode: &str) -> Site {
        let pg = PgCluster::start();
        let url = pg.url();
        Site::on(pg, None, &url, mode)
    }

    /// A primary with a synchronous standby; both gateways take `url` listing both hosts.
    pub fn start_with_standby(mode: &str) -> Site {
        let pg = PgCluster::start();
        let standby = pg.start_sync_standby();
        let url = format!(
            "postgresql://{}@{},{}/{}?sslmode=disable",
            crate::postgres::PG_USER,
            pg.host_port(),
            standby.host_port(),
            crate::postgres::PG_DATABASE
        );
        Site::on(pg, Some(standby), &url, mode)
    }

    fn on(pg: PgCluster, standby: Option<PgCluster>, url: &str, mode: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        kmip_gateway::tooling::pki::dev_pki(&dir.path().join("pki")).unwrap();
        pg.write_password_file(&dir.path().join("pg.password"));
        let kek = dir.path().join("kek.hex");
        std::fs::write(&kek, KEK_HEX).unwrap();
        std::fs::set_permissions(
            &kek,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        let a = start_gateway(url, dir.path(), "a", mode);
        let b = start_gateway(url, dir.path(), "b", mode);
        Site {
            pg,
            standby,
            dir,
            a,
            b,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The client certificate the gateways accept.
    pub fn tls(&self) -> ClientTls {
        ClientTls::from_files(
            &self.path("pki/ca.pem"),
            &self.path("pki/client-purefa.pem"),
            &self.path("pki/client-purefa.key"),
        )
        .unwrap()
    }

    /// A new connection to `gw`; panics if there is none.
    pub async fn connect(&self, gw: &GatewayProcess) -> Client {
        Client::connect(gw, &self.tls())
            .await
            .unwrap_or_else(|e| panic!("cannot connect: {e}\n{}", gw.log()))
    }

    pub fn logs(&self) -> String {
        let standby = self
            .standby
            .as_ref()
            .map(|s| format!("\n--- standby:\n{}", s.log()))
            .unwrap_or_default();
        format!(
            "--- gateway a:\n{}\n--- gateway b:\n{}\n--- postgres:\n{}{standby}",
            self.a.log(),
            self.b.log(),
            self.pg.log()
        )
    }
}

/// One gateway on the database at `url`, its configuration `<dir>/<name>.toml` and data
/// folder `<dir>/<name>`.
fn start_gateway(url: &str, dir: &Path, name: &str, mode: &str) -> GatewayProcess {
    let pki = dir.join("pki");
    let config = dir.join(format!("{name}.toml"));
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n\
         [backend]\nkind = \"postgres\"\nurl = {url:?}\npassword_file = {pw:?}\n\
         read_your_writes = {mode:?}\n\
         [backend.kek]\nkind = \"file\"\nfile = {kek:?}\n\
         [admin]\ntoken_file = {token:?}\n",
        data = dir.join(name).display().to_string(),
        cert = pki.join("server.pem").display().to_string(),
        key = pki.join("server.key").display().to_string(),
        ca = pki.join("ca.pem").display().to_string(),
        pw = dir.join("pg.password").display().to_string(),
        kek = dir.join("kek.hex").display().to_string(),
        token = dir.join(format!("{name}.token")).display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    GatewayProcess::start_with(&GatewayOptions {
        admin: true,
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..GatewayOptions::default()
    })
}

/// One open connection, speaking KMIP 2.1.
pub struct Client {
    conn: KmipClient,
}

impl Client {
    /// Connects to `gw` within [`REQUEST_BOUND`].
    pub async fn connect(gw: &GatewayProcess, tls: &ClientTls) -> Result<Client, String> {
        let addr = gw.addr().to_string();
        let connecting = KmipClient::connect(&addr, gw.server_name(), tls);
        let mut conn = tokio::time::timeout(REQUEST_BOUND, connecting)
            .await
            .map_err(|_| format!("no TLS connection within {REQUEST_BOUND:?}"))?
            .map_err(|e| e.to_string())?;
        conn.set_timeout(REQUEST_BOUND);
        Ok(Client { conn })
    }

    /// Sends one request. `Err` = the connection failed; a request left unanswered for
    /// [`REQUEST_BOUND`] fails the test (a hang).
    pub async fn try_call(&mut self, payload: RequestPayload) -> Result<ResponseBatchItem, String> {
        let request = RequestMessage {
            header: RequestHeader::new(ProtocolVersion::V2_1),
            items: vec![RequestBatchItem::new(payload)],
        };
        match self.conn.call(&request.to_ttlv()).await {
            Ok(reply) => Ok(ResponseMessage::from_ttlv(&reply)
                .expect("a Response Message")
                .items
                .remove(0)),
            Err(ClientError::Timeout(bound)) => {
                panic!("the gateway left a request hanging for {bound:?}")
            }
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn call(&mut self, payload: RequestPayload) -> ResponseBatchItem {
        self.try_call(payload)
            .await
            .expect("the connection stays open and answers")
    }

    pub async fn ok(&mut self, payload: RequestPayload) -> ResponsePayload {
        let item = self.call(payload).await;
        assert_eq!(item.result_status, ResultStatus::Success, "{item:?}");
        item.payload.expect("a payload")
    }

    pub async fn create(&mut self, name: &str, extra: Vec<Attribute>) -> ResponseBatchItem {
        self.call(create_aes256(Some(name), extra)).await
    }

    pub async fn created(&mut self, name: &str, extra: Vec<Attribute>) -> String {
        let item = self.create(name, extra).await;
        match item.payload {
            Some(ResponsePayload::Create(c)) if item.result_status == ResultStatus::Success => {
                c.unique_identifier
            }
            _ => panic!("create failed: {item:?}"),
        }
    }

    pub async fn locate(&mut self, filter: Attribute) -> Vec<String> {
        match self
            .ok(RequestPayload::Locate(LocateRequest {
                maximum_items: None,
                offset_items: None,
                storage_status_mask: None,
                object_group_member: None,
                attributes: vec![filter],
            }))
            .await
        {
            ResponsePayload::Locate(l) => l.unique_identifiers,
            other => panic!("{other:?}"),
        }
    }

    pub async fn by_name(&mut self, name: &str) -> Vec<String> {
        self.locate(Attribute::name(&Name::new(name))).await
    }

    pub async fn by_group(&mut self, group: &str) -> Vec<String> {
        self.locate(Attribute::text(tags::OBJECT_GROUP, group))
            .await
    }
}

/// A Create of a 256-bit AES key for Encrypt and Decrypt, named `name` if given.
pub fn create_aes256(name: Option<&str>, extra: Vec<Attribute>) -> RequestPayload {
    let mut attributes = vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
        Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
    ];
    attributes.extend(name.map(|n| Attribute::name(&Name::new(n))));
    attributes.extend(extra);
    RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes,
    })
}

pub fn uid(uid: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(uid.to_owned()),
    }
}

/// Waits (up to [`DEADLINE`]) for `condition`, checked every 50 ms.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    mut condition: impl FnMut() -> F,
) -> bool {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
