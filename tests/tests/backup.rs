//! The operator's safety nets around the data folder, through the real binary: `serve --config`
//! refuses a missing or empty data folder (it would serve an empty vault) and says what to run;
//! `init` creates it; `backup` copies a serving gateway and `restore` brings it back elsewhere.

use kmip_e2e::{
    aes256_key_of, bin_dir, binary_path, gateway_cli, workspace_root, GatewayOptions,
    GatewayProcess,
};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, CreateRequest, CryptographicAlgorithm, GetRequest, LocateRequest, ObjectType,
    ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
    ResponseBatchItem, ResponseMessage, ResponsePayload,
};
use kmip_wire::spec::tags;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A vault site in `dir`: a development PKI in `dir/pki` and `dir/gateway.toml` naming
/// `dir/data` as its data folder (not created). Returns the configuration file.
fn vault_site(dir: &Path) -> PathBuf {
    let pki = dir.join("pki");
    kmip_gateway::tooling::pki::dev_pki(&pki).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n",
            data = dir.join("data").display().to_string(),
            cert = pki.join("server.pem").display().to_string(),
            key = pki.join("server.key").display().to_string(),
            ca = pki.join("ca.pem").display().to_string(),
        ),
    )
    .unwrap();
    config
}

/// How long a refusal may take: it comes before anything is opened, so far less; a gateway
/// that starts instead is killed then and fails the test.
const REFUSAL_WITHIN: Duration = Duration::from_secs(60);

/// Runs `kmip-gateway serve --config F`, which must refuse to start: exit code and stderr.
fn serve_refused(config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(binary_path("kmip-gateway"))
        .args(["serve", "--admin-listen", "off", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + REFUSAL_WITHIN;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kmip-gateway serve started on an uninitialised data folder");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

fn stop(mut gw: GatewayProcess) {
    gw.terminate();
    let status = gw.wait_exit(SHUTDOWN_GRACE).expect("exit after SIGTERM");
    assert!(status.success(), "exit {status:?}\n{}", gw.log());
}

#[test]
fn serve_refuses_a_missing_or_empty_data_folder_until_init() {
    let dir = tempfile::tempdir().unwrap();
    let config = vault_site(dir.path());
    let data = dir.path().join("data");
    let init_command = format!("kmip-gateway init --config {}", config.display());

    let (code, err) = serve_refused(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the data folder {} does not exist",
            data.display()
        )) && err.contains(&init_command)
            && err.contains("kmip-gateway restore"),
        "{err}"
    );
    assert!(!data.exists(), "a refused start must not create the folder");
    let (ok, out) = gateway_cli(&["check-config", "--config", config.to_str().unwrap()]);
    assert!(
        ok && out.contains("warning: the data folder") && out.contains(&init_command),
        "{out}"
    );

    std::fs::create_dir(&data).unwrap();
    let (code, err) = serve_refused(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("is empty") && err.contains(&init_command),
        "{err}"
    );

    // A folder with other things in it but no vault (its vault lost or elsewhere).
    std::fs::create_dir(data.join("audit")).unwrap();
    let (code, err) = serve_refused(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("holds no vault") && err.contains(&init_command),
        "{err}"
    );

    let (ok, out) = gateway_cli(&["init", "--config", config.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("created an empty vault"), "{out}");
    let (ok, again) = gateway_cli(&["init", "--config", config.to_str().unwrap()]);
    assert!(
        ok && again.contains("already initialised: nothing changed"),
        "{again}"
    );

    let gw = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), config.display().to_string()],
        no_init: true,
        ..GatewayOptions::default()
    });
    stop(gw);
}

#[test]
fn the_embedded_default_initialises_its_first_run_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let options = GatewayOptions {
        extra_args: vec![
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
        ],
        ..GatewayOptions::default()
    };
    let first = GatewayProcess::start_with(&options);
    let said = "does not exist: initialising it (embedded default";
    assert!(first.log().contains(said), "{}", first.log());
    stop(first);
    let second = GatewayProcess::start_with(&options);
    assert!(
        !second.log().contains("initialising it"),
        "{}",
        second.log()
    );
    stop(second);
}

async fn connect(pki: &Path, gw: &GatewayProcess) -> KmipClient {
    let tls = ClientTls::from_files(
        &pki.join("ca.pem"),
        &pki.join("client-purefa.pem"),
        &pki.join("client-purefa.key"),
    )
    .unwrap();
    let mut c = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
        .await
        .unwrap();
    c.set_timeout(Duration::from_secs(30));
    c
}

async fn call(c: &mut KmipClient, payload: RequestPayload) -> ResponseBatchItem {
    let request = RequestMessage {
        header: RequestHeader::new(ProtocolVersion::V2_0),
        items: vec![RequestBatchItem::new(payload)],
    };
    let reply = c.call(&request.to_ttlv()).await.unwrap();
    ResponseMessage::from_ttlv(&reply).unwrap().items.remove(0)
}

/// Creates an AES-256 key and returns its uid and bytes (as Get answers them).
async fn create_key(c: &mut KmipClient) -> (String, Vec<u8>) {
    let created = call(
        c,
        RequestPayload::Create(CreateRequest {
            templates: Vec::new(),
            object_type: ObjectType::SymmetricKey,
            attributes: vec![
                Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
                Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
            ],
        }),
    )
    .await;
    let Some(ResponsePayload::Create(created)) = created.payload else {
        panic!("Create: {created:?}");
    };
    let uid = created.unique_identifier;
    let bytes = get_key(c, &uid).await;
    (uid, bytes)
}

async fn get_key(c: &mut KmipClient, uid: &str) -> Vec<u8> {
    let item = call(
        c,
        RequestPayload::Get(GetRequest {
            unique_identifier: Some(uid.to_owned()),
            ..GetRequest::default()
        }),
    )
    .await;
    aes256_key_of(&item, uid)
}

async fn locate_all(c: &mut KmipClient) -> Vec<String> {
    match call(c, RequestPayload::Locate(LocateRequest::default()))
        .await
        .payload
    {
        Some(ResponsePayload::Locate(l)) => l.unique_identifiers,
        other => panic!("Locate: {other:?}"),
    }
}

/// A passphrase file (mode 0600) in `dir`.
fn passphrase_file(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{passphrase}\n").as_bytes()).unwrap();
    path
}

/// Keys made before the backup starts, in the archive for certain.
const KEYS_BEFORE: usize = 20;
/// Creates the concurrent writer has made before the backup starts, so that it is writing.
const WRITES_BEFORE_BACKUP: usize = 3;

#[test]
fn a_backup_taken_while_serving_restores_every_key() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = tempfile::tempdir().unwrap();
    let config = vault_site(a.path());
    let pki = a.path().join("pki");
    let gw = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..GatewayOptions::default()
    });
    let before: HashMap<String, Vec<u8>> = rt.block_on(async {
        let mut c = connect(&pki, &gw).await;
        let mut keys = HashMap::new();
        for _ in 0..KEYS_BEFORE {
            let (uid, bytes) = create_key(&mut c).await;
            keys.insert(uid, bytes);
        }
        keys
    });

    // A client keeps creating keys for the whole backup.
    let stop_writer = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let writer = {
        let (stop, pki) = (stop_writer.clone(), pki.clone());
        let mut c = rt.block_on(connect(&pki, &gw));
        rt.spawn(async move {
            let mut made = HashMap::new();
            while !stop.load(Ordering::SeqCst) {
                let (uid, bytes) = create_key(&mut c).await;
                made.insert(uid, bytes);
                if made.len() == WRITES_BEFORE_BACKUP {
                    let _ = started_tx.send(());
                }
            }
            made
        })
    };
    started_rx.recv().unwrap();
    let pass = passphrase_file(a.path(), "pass", "a long backup passphrase for the drill");
    let archive = a.path().join("gateway.kgb");
    let s = |p: &Path| p.display().to_string();
    let b = tempfile::tempdir().unwrap();
    let data = b.path().join("data");
    // docs/operations.md's drill, as written: backup while serving, restore, configure, check.
    let drill = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &restore_drill()])
        .env("CONFIG", &config)
        .env("CA_DIR", &pki)
        .env("ARCHIVE", &archive)
        .env("PASS", &pass)
        .env("NEW", b.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                s(&bin_dir()),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&drill.stdout),
        String::from_utf8_lossy(&drill.stderr)
    );
    let ok = drill.status.success();
    stop_writer.store(true, Ordering::SeqCst);
    let during = rt.block_on(writer).unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("ca/ca.key") && out.contains("MAC chain verified") && out.contains(": OK"),
        "{out}"
    );
    assert!(b.path().join("data-restored/ca/ca.key").is_file(), "{out}");
    assert!(b.path().join("data-secrets/master.key").is_file(), "{out}");
    stop(gw);

    let elsewhere = b.path().join("elsewhere");
    let wrong = passphrase_file(b.path(), "wrong", "not the passphrase of this backup");
    let (ok, out) = gateway_cli(&[
        "restore",
        "--in",
        &s(&archive),
        "--passphrase-file",
        &s(&wrong),
        "--data-dir",
        &s(&elsewhere),
    ]);
    assert!(!ok && out.contains("wrong passphrase"), "{out}");
    assert!(!elsewhere.exists(), "a refused restore writes nothing");

    let restore = [
        "restore",
        "--in",
        &s(&archive),
        "--passphrase-file",
        &s(&pass),
        "--data-dir",
        &s(&data),
    ];
    // Again onto the now non-empty folder: refused, nothing touched.
    let log = std::fs::read(data.join("vault/vault.log")).unwrap();
    let (ok, out) = gateway_cli(&restore);
    assert!(
        !ok && out.contains("is not empty: restore never overwrites"),
        "{out}"
    );
    assert_eq!(std::fs::read(data.join("vault/vault.log")).unwrap(), log);

    // The restored site the drill configured: the same PKI, the restored folder, no init.
    let config_b = b.path().join("gateway.toml");
    let gw = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), s(&config_b)],
        no_init: true,
        ..GatewayOptions::default()
    });
    rt.block_on(async {
        let mut c = connect(&pki, &gw).await;
        for (uid, bytes) in &before {
            assert_eq!(&get_key(&mut c, uid).await, bytes, "key {uid}");
        }
        // Keys made during the backup may or may not be in it; those that are, are whole.
        for uid in locate_all(&mut c).await {
            let expected = before.get(&uid).or_else(|| during.get(&uid));
            let expected = expected.unwrap_or_else(|| panic!("{uid} was never created"));
            assert_eq!(&get_key(&mut c, &uid).await, expected, "key {uid}");
        }
    });
    stop(gw);
}

/// The shell block under "### Restore drill" in docs/operations.md.
fn restore_drill() -> String {
    let doc = std::fs::read_to_string(workspace_root().join("docs/operations.md")).unwrap();
    let section = &doc[doc
        .find("### Restore drill")
        .expect("a Restore drill section")..];
    let block = &section[section.find("```sh\n").expect("a sh block in the drill") + 6..];
    block[..block.find("```").expect("the block's end")].to_owned()
}
