//! Power loss under load. The gateway's data folder lives on its own ext4 file system (an image
//! on a loop device). While clients create keys and set attributes, the file system is shut
//! down without flushing its journal (`EXT4_IOC_SHUTDOWN` with `EXT4_GOING_FLAGS_NOLOGFLUSH`):
//! from that instant nothing more reaches the device, and every write that was not yet made
//! durable — page cache, uncommitted journal — is lost, as in a power cut. The gateway is then
//! killed, the file system mounted again (journal recovery) and a new gateway started on it:
//! every key whose Create was acknowledged must come back with the same bytes, and every
//! acknowledged attribute with it.
//!
//! Without the vault's fdatasync before the acknowledgement this test fails: with the call
//! removed from the vault's writer, the keys created before the cut were missing after it
//! (Item Not Found, in two runs out of two).
//!
//! Needs root (mount, loop devices), `mkfs.ext4` and `python3` (for the ioctl); CI runs as root.

use kmip_e2e::{aes256_key_of, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, AttributeRequest, CreateRequest, CryptographicAlgorithm, GetAttributesRequest,
    GetRequest, Name, ObjectType, ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage,
    RequestPayload, ResponseBatchItem, ResponseMessage, ResponsePayload, ResultStatus,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const VERSION: ProtocolVersion = ProtocolVersion::V1_4;
/// Size of the file system image (sparse): room for the vault, PKI and audit trail.
const IMAGE_BYTES: u64 = 256 << 20;
/// Concurrent clients writing when the power goes.
const CLIENTS: usize = 4;
/// Acknowledged Creates before the power goes: enough that several group commits are durable
/// and more are in flight.
const ACKED_BEFORE_CUT: usize = 60;
/// A client answer after the cut may take this long (the gateway answers failures, it must not
/// hang); far below the client's own 30 s timeout.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An ext4 file system on a loop device, mounted at `mnt`; unmounted on drop.
struct LoopFs {
    image: PathBuf,
    mnt: PathBuf,
    mounted: bool,
}

impl LoopFs {
    fn create(dir: &Path) -> LoopFs {
        let uid = run(Command::new("id").arg("-u"));
        assert_eq!(
            uid.trim(),
            "0",
            "the power-loss test mounts a file system: run the suite as root (CI does)"
        );
        let image = dir.join("fs.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(IMAGE_BYTES))
            .expect("create the image");
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        let mnt = dir.join("mnt");
        std::fs::create_dir(&mnt).expect("create the mount point");
        let mut fs = LoopFs {
            image,
            mnt,
            mounted: false,
        };
        fs.mount();
        fs
    }

    fn mount(&mut self) {
        run(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop"])
            .arg(&self.image)
            .arg(&self.mnt));
        self.mounted = true;
    }

    fn unmount(&mut self) {
        run(Command::new("umount").arg(&self.mnt));
        self.mounted = false;
    }

    /// Makes everything written so far durable (the development PKI made at first start).
    fn sync(&self) {
        run(Command::new("sync").arg("-f").arg(&self.mnt));
    }

    /// Cuts the power: the file system stops at once, its journal not flushed.
    fn shut_down(&self) {
        // EXT4_IOC_SHUTDOWN = _IOR('X', 125, __u32); EXT4_GOING_FLAGS_NOLOGFLUSH = 2.
        let script = "import fcntl, os, struct, sys\n\
                      fd = os.open(sys.argv[1], os.O_RDONLY)\n\
                      fcntl.ioctl(fd, (2 << 30) | (4 << 16) | (ord('X') << 8) | 125, \
                      struct.pack('I', 2))\n";
        run(Command::new("python3").args(["-c", script]).arg(&self.mnt));
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

async fn batch(
    c: &mut KmipClient,
    payloads: Vec<RequestPayload>,
) -> Option<Vec<ResponseBatchItem>> {
    let request = RequestMessage {
        header: RequestHeader::new(VERSION),
        items: payloads.into_iter().map(RequestBatchItem::new).collect(),
    };
    let reply = tokio::time::timeout(ANSWER_TIMEOUT, c.call(&request.to_ttlv()))
        .await
        .expect("the gateway must answer, even when its disk is gone")
        .ok()?;
    ResponseMessage::from_ttlv(&reply).ok().map(|m| m.items)
}

async fn one(c: &mut KmipClient, payload: RequestPayload) -> Option<ResponseBatchItem> {
    batch(c, vec![payload]).await?.pop()
}

fn create(name: &str) -> RequestPayload {
    RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes: vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
            Attribute::name(&Name::new(name)),
        ],
    })
}

fn get(uid: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

fn marker(value: &str) -> Attribute {
    Attribute::vendor("x", "written", Value::TextString(value.to_owned()))
}

/// What the clients were told is durable.
#[derive(Default)]
struct Acked {
    /// (uid, Name, key bytes) of every acknowledged Create (bytes read back before the cut).
    keys: Vec<(String, String, Vec<u8>)>,
    /// (uid, value) of every acknowledged Add Attribute of `x-written`.
    markers: Vec<(String, String)>,
}

#[test]
fn every_acknowledged_key_survives_a_power_cut_under_load() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut fs = LoopFs::create(dir.path());
    let data_dir = fs.mnt.join("data");
    let options = GatewayOptions {
        extra_args: vec!["--data-dir".into(), data_dir.display().to_string()],
        ..GatewayOptions::default()
    };
    let mut gw = GatewayProcess::start_with(&options);
    fs.sync();
    let pki = data_dir.join("pki");
    let tls = ClientTls::from_files(
        &pki.join("ca.pem"),
        &pki.join("client-purefa.pem"),
        &pki.join("client-purefa.key"),
    )
    .expect("client TLS");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let created = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let (addr, tls) = (gw.addr().to_string(), tls.clone());
                let (acked, created, cut) = (acked.clone(), created.clone(), cut.clone());
                tokio::spawn(async move {
                    let mut c = KmipClient::connect(&addr, "localhost", &tls)
                        .await
                        .expect("connect");
                    // Writes until the first one fails after the cut; every success before
                    // that is recorded as acknowledged.
                    for i in 0.. {
                        let name = format!("pl-{n}-{i}");
                        let Some(item) = one(&mut c, create(&name)).await else {
                            break;
                        };
                        let uid = match (&item.result_status, &item.payload) {
                            (ResultStatus::Success, Some(ResponsePayload::Create(r))) => {
                                r.unique_identifier.clone()
                            }
                            _ if cut.load(Ordering::SeqCst) => break,
                            _ => panic!("Create failed before the cut: {item:?}"),
                        };
                        // The key's bytes as the client saw them: reads are served from
                        // memory, so they still work after the cut.
                        let got = one(&mut c, get(&uid)).await.expect("Get answered");
                        let key = aes256_key_of(&got, &uid);
                        acked
                            .lock()
                            .expect("acked")
                            .keys
                            .push((uid.clone(), name, key));
                        created.fetch_add(1, Ordering::SeqCst);
                        let value = format!("{n}-{i}");
                        let added = one(
                            &mut c,
                            RequestPayload::AddAttribute(AttributeRequest {
                                unique_identifier: Some(uid.clone()),
                                attribute: marker(&value),
                            }),
                        )
                        .await;
                        match added {
                            Some(a) if a.result_status == ResultStatus::Success => {
                                acked.lock().expect("acked").markers.push((uid, value));
                            }
                            _ if cut.load(Ordering::SeqCst) => break,
                            other => panic!("Add Attribute failed before the cut: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        while created.load(Ordering::SeqCst) < ACKED_BEFORE_CUT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cut.store(true, Ordering::SeqCst);
        fs.shut_down();
        for c in clients {
            c.await.expect("a client task");
        }
    });
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    assert!(acked.keys.len() >= ACKED_BEFORE_CUT);
    let before = gw.log();
    // The process dies with the machine.
    drop(gw);
    fs.unmount();
    fs.mount();

    gw = GatewayProcess::start_with(&options);
    rt.block_on(async {
        let mut c = KmipClient::connect(&gw.addr().to_string(), "localhost", &tls)
            .await
            .expect("connect after the restart");
        for (uid, name, key) in &acked.keys {
            let got = one(&mut c, get(uid)).await.expect("Get answered");
            assert_eq!(
                got.result_status,
                ResultStatus::Success,
                "acknowledged key {uid} ({name}) lost in the power cut: {got:?}\n\
                 log before:\n{before}\nlog after:\n{}",
                gw.log()
            );
            assert!(
                aes256_key_of(&got, uid) == *key,
                "acknowledged key {uid} ({name}) came back with other bytes"
            );
        }
        for (uid, value) in &acked.markers {
            let attrs = one(
                &mut c,
                RequestPayload::GetAttributes(GetAttributesRequest {
                    unique_identifier: Some(uid.clone()),
                    ..GetAttributesRequest::default()
                }),
            )
            .await
            .expect("Get Attributes answered");
            let Some(ResponsePayload::GetAttributes(r)) = &attrs.payload else {
                panic!("Get Attributes {uid}: {attrs:?}");
            };
            let want = marker(value);
            assert!(
                r.attributes
                    .iter()
                    .any(|a| a.name == want.name && a.value == want.value),
                "acknowledged attribute x-written={value} of {uid} lost: {:?}",
                r.attributes
            );
        }
    });
    eprintln!(
        "power cut: {} acknowledged keys and {} attributes all back",
        acked.keys.len(),
        acked.markers.len()
    );
    drop(gw);
    fs.unmount();
}
