//! The file vault against a rolled-back data folder, through the real binary: the master key and
//! chain head live outside the data folder, an older copy of the vault is refused at start, and
//! `kmip-gateway vault accept-restore` takes it deliberately.

use kmip_e2e::{binary_path, Backend, GatewayHome, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, CreateRequest, CryptographicAlgorithm, LocateRequest, ObjectType, ProtocolVersion,
    RequestBatchItem, RequestHeader, RequestMessage, RequestPayload, ResponseMessage,
    ResponsePayload,
};
use kmip_wire::spec::tags;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn call(home: &GatewayHome, gw: &GatewayProcess, payload: RequestPayload) -> ResponsePayload {
    let tls =
        ClientTls::from_files(&home.ca_cert(), &home.client_cert(), &home.client_key()).unwrap();
    let mut c = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
        .await
        .unwrap();
    c.set_timeout(Duration::from_secs(10));
    let request = RequestMessage {
        header: RequestHeader::new(ProtocolVersion::V2_0),
        items: vec![RequestBatchItem::new(payload)],
    };
    let reply = c.call(&request.to_ttlv()).await.unwrap();
    let mut msg = ResponseMessage::from_ttlv(&reply).unwrap();
    msg.items
        .remove(0)
        .payload
        .unwrap_or_else(|| panic!("no payload"))
}

async fn create(home: &GatewayHome, gw: &GatewayProcess) -> String {
    let payload = RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes: vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
        ],
    });
    match call(home, gw, payload).await {
        ResponsePayload::Create(c) => c.unique_identifier,
        other => panic!("Create: {other:?}"),
    }
}

async fn locate_all(home: &GatewayHome, gw: &GatewayProcess) -> Vec<String> {
    match call(home, gw, RequestPayload::Locate(LocateRequest::default())).await {
        ResponsePayload::Locate(l) => l.unique_identifiers,
        other => panic!("Locate: {other:?}"),
    }
}

fn stop(mut gw: GatewayProcess) {
    gw.terminate();
    let status = gw.wait_exit(SHUTDOWN_GRACE).expect("exit after SIGTERM");
    assert!(status.success(), "exit {status:?}\n{}", gw.log());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn an_older_copy_of_the_vault_is_refused_until_accept_restore() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = GatewayHome::new(Backend::Vault);
    let vault = home.data_dir().join("vault");
    let backup = home.dir().join("backup");

    let gw = home.start();
    let first = rt.block_on(create(&home, &gw));
    stop(gw);
    // The key and the head are not in the data folder, so not in its backups.
    assert!(home.secrets_dir().join("master.key").is_file());
    assert!(home.secrets_dir().join("vault.head").is_file());
    assert!(!vault.join("master.key").exists());
    copy_dir(&vault, &backup);

    let gw = home.start();
    rt.block_on(create(&home, &gw));
    stop(gw);

    copy_dir(&backup, &vault);
    let refused = home
        .try_start_with(&GatewayOptions::default())
        .err()
        .expect("a rolled-back vault must not start");
    assert!(
        refused.log.contains("accept-restore") && refused.log.contains("vault.log"),
        "{}",
        refused.log
    );

    let out = Command::new(binary_path("kmip-gateway"))
        .args(["vault", "accept-restore", "--data-dir"])
        .arg(home.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted the restored vault"));

    let gw = home.start();
    assert_eq!(rt.block_on(locate_all(&home, &gw)), vec![first]);
    stop(gw);
}

#[test]
fn a_master_key_left_in_the_data_folder_is_used_with_a_warning() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = GatewayHome::new(Backend::Vault);
    let gw = home.start();
    let uid = rt.block_on(create(&home, &gw));
    stop(gw);
    // The layout of an install from before the key moved out: key and head in data/vault.
    let vault = home.data_dir().join("vault");
    for name in ["master.key", "vault.head"] {
        std::fs::rename(home.secrets_dir().join(name), vault.join(name)).unwrap();
    }
    let gw = home.start();
    assert_eq!(rt.block_on(locate_all(&home, &gw)), vec![uid]);
    let log = gw.log();
    assert!(
        log.contains("is inside the data folder") && log.contains("mv "),
        "no warning about the key's place:\n{log}"
    );
    stop(gw);
    assert!(!home.secrets_dir().join("master.key").exists());
}
