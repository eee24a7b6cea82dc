//! `kmip-gateway migrate` end to end with the real binary: objects created through a gateway on
//! the vault (AES keys, a sensitive one, a secret data, a destroyed key, Names, custom
//! attributes) are copied
//! into another backend, and a gateway on that backend serves them as they were. Then: a second
//! run finds everything there, a target holding another object under one uid is refused, a
//! source that is being served is refused, and what cannot leave a backend fails by uid.
//!
//! Needs `softhsm2` and `opensc`; the PostgreSQL test needs PostgreSQL 15 (`tests/src/postgres.rs`).

use kmip_e2e::postgres::PgCluster;
use kmip_e2e::{binary_path, gateway_cli, Backend, GatewayHome, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, AttributeRequest, BlockCipherMode, CreateRequest, CryptoRequest,
    CryptographicAlgorithm, CryptographicParameters, GetAttributesRequest, GetRequest, KeyBlock,
    LocateRequest, ManagedObject, Name, ObjectType, PaddingMethod, ProtocolVersion,
    RegisterRequest, RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
    ResponseBatchItem, ResponseMessage, ResponsePayload, ResultStatus, SecretBytes, SecretDataType,
    UidRequest,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// KMIP 1.4: custom attributes are plain `x-` names.
const VERSION: ProtocolVersion = ProtocolVersion::V1_4;
/// KMIP State: Destroyed.
const STATE_DESTROYED: u32 = 5;
/// How long a gateway may take to stop gracefully.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The client credentials of a development PKI folder.
fn tls(pki: &Path) -> ClientTls {
    ClientTls::from_files(
        &pki.join("ca.pem"),
        &pki.join("client-purefa.pem"),
        &pki.join("client-purefa.key"),
    )
    .unwrap()
}

async fn connect(gw: &GatewayProcess, tls: &ClientTls) -> KmipClient {
    KmipClient::connect(&gw.addr().to_string(), gw.server_name(), tls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", gw.log()))
}

async fn call(c: &mut KmipClient, payload: RequestPayload) -> ResponseBatchItem {
    let request = RequestMessage {
        header: RequestHeader::new(VERSION),
        items: vec![RequestBatchItem::new(payload)],
    };
    let reply = c.call(&request.to_ttlv()).await.expect("an answer");
    let mut msg = ResponseMessage::from_ttlv(&reply).expect("a Response Message");
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

fn uid_request(uid: &str) -> UidRequest {
    UidRequest {
        unique_identifier: Some(uid.to_owned()),
    }
}

fn custom(name: &str, value: &str) -> Attribute {
    Attribute::vendor("x", name, Value::TextString(value.to_owned()))
}

async fn create_aes(c: &mut KmipClient, name: &str) -> String {
    create_aes_with(c, name, vec![]).await
}

async fn create_aes_with(c: &mut KmipClient, name: &str, extra: Vec<Attribute>) -> String {
    let mut attributes = vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
        Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
        Attribute::name(&Name::new(name)),
    ];
    attributes.extend(extra);
    let payload = RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes,
    });
    match ok(c, payload).await {
        Some(ResponsePayload::Create(r)) => r.unique_identifier,
        other => panic!("Create answered {other:?}"),
    }
}

async fn add_attribute(c: &mut KmipClient, uid: &str, attribute: Attribute) {
    let payload = RequestPayload::AddAttribute(AttributeRequest {
        unique_identifier: Some(uid.to_owned()),
        attribute,
    });
    ok(c, payload).await;
}

fn get(uid: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

async fn material(c: &mut KmipClient, uid: &str) -> Vec<u8> {
    match ok(c, get(uid)).await {
        Some(ResponsePayload::Get(g)) => g
            .object
            .key_block()
            .and_then(|kb| kb.key_bytes())
            .map(|b| b.as_slice().to_vec())
            .unwrap_or_else(|| panic!("Get {uid}: no key bytes")),
        other => panic!("Get answered {other:?}"),
    }
}

/// AES-ECB of one block with the key `uid`, where it lives.
async fn encrypt_block(c: &mut KmipClient, uid: &str) -> Vec<u8> {
    let payload = RequestPayload::Encrypt(CryptoRequest {
        unique_identifier: Some(uid.to_owned()),
        cryptographic_parameters: Some(CryptographicParameters {
            block_cipher_mode: Some(BlockCipherMode::Ecb),
            padding_method: Some(PaddingMethod::None),
            cryptographic_algorithm: Some(CryptographicAlgorithm::Aes),
            ..CryptographicParameters::default()
        }),
        data: Some(SecretBytes::from_slice(b"sixteen byte blk")),
        ..CryptoRequest::default()
    });
    match ok(c, payload).await {
        Some(ResponsePayload::Encrypt(r)) => r.data.expect("ciphertext").to_vec(),
        other => panic!("Encrypt answered {other:?}"),
    }
}

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

/// One object as a client sees it, before and after the move.
struct Seen {
    uid: String,
    name: String,
    attributes: BTreeMap<String, Vec<Value>>,
    material: Material,
}

enum Material {
    /// What Get returns.
    Readable(Vec<u8>),
    /// A sensitive key (Get refuses it): what it makes of one block.
    Sensitive {
        encrypted: Vec<u8>,
    },
    Destroyed,
}

/// Creates the objects on a fresh vault gateway and reads them back; stops the gateway.
fn fill_vault(home: &GatewayHome) -> Vec<Seen> {
    let mut gw = home.start();
    let seen = runtime().block_on(async {
        let mut c = connect(&gw, &tls(&home.pki_dir())).await;
        let plain = create_aes(&mut c, "mig-plain").await;
        add_attribute(&mut c, &plain, custom("SASED-Drive", "drive-7")).await;
        let active = create_aes(&mut c, "mig-active").await;
        ok(&mut c, RequestPayload::Activate(uid_request(&active))).await;
        let sensitive = create_aes_with(
            &mut c,
            "mig-sensitive",
            vec![Attribute::boolean(tags::SENSITIVE, true)],
        )
        .await;
        ok(&mut c, RequestPayload::Activate(uid_request(&sensitive))).await;
        let encrypted = encrypt_block(&mut c, &sensitive).await;
        let destroyed = create_aes(&mut c, "mig-destroyed").await;
        ok(&mut c, RequestPayload::Destroy(uid_request(&destroyed))).await;
        let secret = match ok(
            &mut c,
            RequestPayload::Register(RegisterRequest {
                templates: Vec::new(),
                object_type: ObjectType::SecretData,
                attributes: vec![
                    Attribute::name(&Name::new("mig-secret")),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
                    custom("Owner", "e2e"),
                ],
                object: ManagedObject::SecretData {
                    secret_data_type: SecretDataType::Password,
                    key_block: KeyBlock::raw(
                        SecretBytes::from_slice(b"correct horse battery staple"),
                        None,
                        None,
                    ),
                },
            }),
        )
        .await
        {
            Some(ResponsePayload::Register(r)) => r.unique_identifier,
            other => panic!("Register answered {other:?}"),
        };
        let mut seen = Vec::new();
        for (uid, name) in [
            (plain, "mig-plain"),
            (active, "mig-active"),
            (secret, "mig-secret"),
        ] {
            // Get first: it clears Fresh, which is then part of what must move.
            let material = Material::Readable(material(&mut c, &uid).await);
            seen.push(Seen {
                attributes: attributes(&mut c, &uid).await,
                material,
                uid,
                name: name.into(),
            });
        }
        seen.push(Seen {
            attributes: attributes(&mut c, &sensitive).await,
            material: Material::Sensitive { encrypted },
            uid: sensitive,
            name: "mig-sensitive".into(),
        });
        seen.push(Seen {
            attributes: attributes(&mut c, &destroyed).await,
            material: Material::Destroyed,
            uid: destroyed,
            name: "mig-destroyed".into(),
        });
        seen
    });
    assert!(seen[0].attributes.contains_key("x-SASED-Drive"));
    stop(&mut gw);
    seen
}

fn stop(gw: &mut GatewayProcess) {
    gw.terminate();
    let status = gw.wait_exit(STOP_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful stop: {status:?}\n{}",
        gw.log()
    );
}

/// The configuration file of a vault home (what its embedded default runs with).
fn vault_config(home: &GatewayHome) -> PathBuf {
    let path = home.dir().join("vault.toml");
    let pki = home.pki_dir();
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n\
         [audit]\nenabled = true\n[backend]\nkind = \"vault\"\n",
        data = home.data_dir().display().to_string(),
        cert = pki.join("server.pem").display().to_string(),
        key = pki.join("server.key").display().to_string(),
        ca = home.ca_cert().display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes `to`: the configuration `from` of `home` with its data folder moved to `data`, and
/// initialises it (an empty vault).
fn copy_config(from: &Path, home: &GatewayHome, to: &Path, data: &Path) {
    let text = std::fs::read_to_string(from).unwrap().replace(
        &home.data_dir().display().to_string(),
        &data.display().to_string(),
    );
    std::fs::write(to, text).unwrap();
    let (success, out) = gateway_cli(&["init", "--config", to.to_str().unwrap()]);
    assert!(success, "{out}");
}

/// Runs `kmip-gateway migrate --from FROM --to TO` with `env`; (success, stdout + stderr).
fn migrate(from: &Path, to: &Path, env: &[(&str, &Path)]) -> (bool, String) {
    let mut cmd = Command::new(binary_path("kmip-gateway"));
    cmd.arg("migrate")
        .arg("--from")
        .arg(from)
        .arg("--to")
        .arg(to)
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run kmip-gateway migrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A gateway on the target serves every object as the vault did: the same bytes from Get, the
/// same attributes and state, Locate by Name finds each, the destroyed key stays destroyed.
fn assert_served(gw: &GatewayProcess, pki: &Path, seen: &[Seen]) {
    runtime().block_on(async {
        let mut c = connect(gw, &tls(pki)).await;
        for s in seen {
            assert_eq!(
                attributes(&mut c, &s.uid).await,
                s.attributes,
                "attributes of {}",
                s.name
            );
            let located = locate_name(&mut c, &s.name).await;
            match &s.material {
                Material::Readable(m) => {
                    assert_eq!(located, vec![s.uid.clone()]);
                    assert_eq!(&material(&mut c, &s.uid).await, m, "{}", s.name);
                }
                Material::Sensitive { encrypted } => {
                    assert_eq!(located, vec![s.uid.clone()]);
                    let item = call(&mut c, get(&s.uid)).await;
                    assert_ne!(item.result_status, ResultStatus::Success);
                    assert_eq!(
                        &encrypt_block(&mut c, &s.uid).await,
                        encrypted,
                        "{}",
                        s.name
                    );
                }
                Material::Destroyed => {
                    // Locate leaves destroyed objects out unless the filter names a State.
                    assert!(located.is_empty());
                    assert_eq!(
                        s.attributes.get("State"),
                        Some(&vec![Value::Enumeration(STATE_DESTROYED)])
                    );
                    let item = call(&mut c, get(&s.uid)).await;
                    assert_ne!(item.result_status, ResultStatus::Success);
                }
            }
        }
    });
}

#[test]
fn vault_to_softhsm_moves_every_object_resumably_and_never_overwrites() {
    let vault = GatewayHome::new(Backend::Vault);
    let seen = fill_vault(&vault);
    let from = vault_config(&vault);
    let hsm = GatewayHome::new(Backend::SoftHsm);
    let conf = hsm.softhsm_conf().unwrap().to_path_buf();
    let env = [("SOFTHSM2_CONF", conf.as_path())];

    let (success, out) = migrate(&from, &hsm.config_path(), &env);
    assert!(success, "{out}");
    assert!(
        out.contains("5 of 5 objects: 4 copied, 1 tombstones, 0 already there, 0 failed"),
        "{out}"
    );
    for s in &seen {
        if let Material::Readable(m) = &s.material {
            let hex: String = m.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!out.contains(&hex), "key material in the output");
        }
    }
    let mut gw = hsm.start();
    assert_served(&gw, &hsm.pki_dir(), &seen);
    stop(&mut gw);

    // Run again: everything is there already.
    let (success, out) = migrate(&from, &hsm.config_path(), &env);
    assert!(success, "{out}");
    assert!(
        out.contains("0 copied, 0 tombstones, 5 already there, 0 failed"),
        "{out}"
    );

    // The vault changed after the move: the target's object of that uid is another now.
    let mut gw = vault.start();
    runtime().block_on(async {
        let mut c = connect(&gw, &tls(&vault.pki_dir())).await;
        add_attribute(&mut c, &seen[1].uid, custom("Changed", "after")).await;
    });
    stop(&mut gw);
    let (success, out) = migrate(&from, &hsm.config_path(), &env);
    assert!(!success, "{out}");
    assert!(
        out.contains(&seen[1].uid) && out.contains("refusing to overwrite"),
        "{out}"
    );
    let gw = hsm.start();
    runtime().block_on(async {
        let mut c = connect(&gw, &tls(&hsm.pki_dir())).await;
        assert_eq!(attributes(&mut c, &seen[1].uid).await, seen[1].attributes);
    });
    drop(gw);

    // The PKCS#11 backend cannot hand its keys over: each object fails by uid, exit non-zero.
    let empty = tempfile::tempdir().unwrap();
    let to = empty.path().join("vault.toml");
    copy_config(&from, &vault, &to, &empty.path().join("data"));
    let (success, out) = migrate(&hsm.config_path(), &to, &env);
    assert!(!success, "{out}");
    for s in &seen {
        assert!(
            out.contains(&format!(
                "failed: {}: cannot export it from the source",
                s.uid
            )),
            "{out}"
        );
    }
}

#[test]
fn a_served_vault_is_refused_with_what_to_do() {
    let vault = GatewayHome::new(Backend::Vault);
    let gw = vault.start_with(&GatewayOptions::default());
    let target = tempfile::tempdir().unwrap();
    let to = target.path().join("vault.toml");
    let from = vault_config(&vault);
    copy_config(&from, &vault, &to, &target.path().join("data"));
    let (success, out) = migrate(&from, &to, &[]);
    assert!(!success, "{out}");
    assert!(
        out.contains("in use by another process") && out.contains("stop the gateway first"),
        "{out}"
    );
    drop(gw);
}

/// Vault → PostgreSQL with a file KEK. Needs the postgres backend (`[backend] kind =
/// "postgres"`), built in parallel with this command.
#[test]
fn vault_to_postgres_moves_every_object_resumably() {
    let vault = GatewayHome::new(Backend::Vault);
    let seen = fill_vault(&vault);
    let from = vault_config(&vault);
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pg.password");
    cluster.write_password_file(&password);
    let kek = dir.path().join("kek.hex");
    std::fs::write(&kek, format!("{}\n", "5a".repeat(32))).unwrap();
    std::fs::set_permissions(
        &kek,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let pki = vault.pki_dir();
    let to = dir.path().join("postgres.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n\
         [backend]\nkind = \"postgres\"\nurl = {url:?}\npassword_file = {pw:?}\n\
         [backend.kek]\nkind = \"file\"\nfile = {kek:?}\n",
        data = dir.path().join("data").display().to_string(),
        cert = pki.join("server.pem").display().to_string(),
        key = pki.join("server.key").display().to_string(),
        ca = vault.ca_cert().display().to_string(),
        url = cluster.url(),
        pw = password.display().to_string(),
        kek = kek.display().to_string(),
    );
    std::fs::write(&to, text).unwrap();
    let (success, out) = gateway_cli(&["init", "--config", to.to_str().unwrap()]);
    assert!(success, "{out}");

    let (success, out) = migrate(&from, &to, &[]);
    assert!(success, "{out}");
    assert!(
        out.contains("5 of 5 objects: 4 copied, 1 tombstones, 0 already there, 0 failed"),
        "{out}"
    );
    let mut gw = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), to.display().to_string()],
        ..GatewayOptions::default()
    });
    assert_served(&gw, &pki, &seen);
    stop(&mut gw);
    let (success, out) = migrate(&from, &to, &[]);
    assert!(success, "{out}");
    assert!(
        out.contains("0 copied, 0 tombstones, 5 already there, 0 failed"),
        "{out}"
    );
}
