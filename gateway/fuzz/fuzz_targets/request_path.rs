//! Request-path fuzz target: arbitrary bytes go through the gateway's dispatcher (decode, model,
//! access control, operations, store) onto a real file vault in a temporary folder, as one
//! authenticated client's message. The gateway must never panic, and every answer it gives must
//! be a KMIP Response Message.
#![no_main]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_gateway::config::{LimitsConfig, LocateCacheConfig};
use kmip_gateway::identity::Identity;
use kmip_gateway::kmip::access::{owner_only, Access};
use kmip_gateway::kmip::dispatch::{ConnContext, Dispatcher, Outcome};
use kmip_gateway::kmip::ops::Ops;
use kmip_gateway::kmip::store::Store;
use kmip_wire::model::ResponseMessage;
use kmip_wire::ttlv::{decode, Limits};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

/// Objects the vault may hold before it is replaced by an empty one: keeps memory, replay time
/// and per-request scans (Locate) from growing without bound over a long run.
const MAX_OBJECTS: usize = 10_000;
/// Size of the vault log at which the vault is replaced: modifications append to the log too,
/// and the log lives in RAM when /dev/shm exists.
const MAX_LOG_BYTES: u64 = 256 << 20;
/// Entries of the Locate cache, as the operation tests use.
const LOCATE_CACHE_ENTRIES: usize = 100;

/// One vault and the dispatcher over it. Field order is drop order: the vault closes before
/// its folder is removed.
struct Harness {
    dispatcher: Dispatcher,
    store: Arc<Store>,
    conn: ConnContext,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A folder in RAM if there is one: every vault write is fsynced, and on a disk that would
/// dominate the run.
fn temp_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

fn harness(rt: &Runtime) -> Harness {
    let dir = tempfile::Builder::new()
        .prefix("kmip-fuzz-request-path-")
        .tempdir_in(temp_base())
        .expect("temporary folder");
    let vault_dir = dir.path().join("vault");
    let vault = Vault::open(&vault_dir, MasterKeySource::VaultDir).expect("new vault opens");
    let store = Arc::new(
        rt.block_on(Store::open(Arc::new(vault)))
            .expect("new store opens"),
    );
    let policy = owner_only(["purefa".to_owned()].into_iter()).expect("owner-only policy");
    let ops = Ops::new(
        store.clone(),
        Arc::new(Access::new(policy)),
        LocateCacheConfig {
            max_entries: LOCATE_CACHE_ENTRIES,
            ..LocateCacheConfig::default()
        },
    );
    Harness {
        dispatcher: Dispatcher::new(ops, LimitsConfig::default(), None),
        store,
        conn: ConnContext::new(
            1,
            "127.0.0.1:1".parse().expect("socket address"),
            Identity {
                user: "purefa".into(),
                subject: "CN=purefa".into(),
                serial_hex: "01".into(),
                fingerprint: "00".into(),
            },
        ),
        log: vault_dir.join("vault.log"),
        _dir: dir,
    }
}

impl Harness {
    fn too_big(&self) -> bool {
        self.store.len() > MAX_OBJECTS
            || std::fs::metadata(&self.log).is_ok_and(|m| m.len() > MAX_LOG_BYTES)
    }
}

thread_local! {
    // libFuzzer calls the target from one thread; the runtime is current-thread.
    static STATE: RefCell<Option<(Runtime, Harness)>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    STATE.with(|cell| {
        let mut state = cell.borrow_mut();
        let (rt, h) = state.get_or_insert_with(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let h = harness(&rt);
            (rt, h)
        });
        let out = rt.block_on(h.dispatcher.handle(&h.conn, Bytes::copy_from_slice(data)));
        let (Outcome::Respond(bytes) | Outcome::RespondAndClose(bytes)) = out;
        let ttlv = decode(&bytes, &Limits::default())
            .unwrap_or_else(|e| panic!("the gateway's answer is not TTLV: {e}"));
        if let Err(e) = ResponseMessage::from_ttlv(&ttlv) {
            panic!("the gateway's answer is not a Response Message: {e}\n{ttlv:?}");
        }
        if h.too_big() {
            *h = harness(rt);
        }
    });
});
