//! Memory per object and start-up time of the object store, measured on a real file vault.
//!
//! `cargo run --release -p kmip-gateway --example store_memory -- [N] [DIR]` creates N
//! (default 100,000) AES-256 keys the way `kmip-bench --preload` does (Create with a Name and
//! an Object Group, then one Get), through the dispatcher, the operations and the store, in a
//! vault in DIR (default: a temporary folder). It prints the resident memory growth per object,
//! then re-runs itself on the same folder to time a cold start (vault replay and the store's
//! indexes) and the memory the reopened store holds per object.
//!
//! Not a test: the figures depend on the machine, and nothing here asserts them.

use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_gateway::config::{LimitsConfig, LocateCacheConfig};
use kmip_gateway::identity::Identity;
use kmip_gateway::kmip::access::{owner_only, Access};
use kmip_gateway::kmip::dispatch::{ConnContext, Dispatcher, Outcome};
use kmip_gateway::kmip::ops::Ops;
use kmip_gateway::kmip::store::Store;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Objects created when no count is given: the figure issue 17 reported.
const DEFAULT_OBJECTS: usize = 100_000;
/// Requests in flight while creating: enough for the vault's group commit to batch writes.
const PARALLELISM: usize = 64;
/// Keys per Object Group, as `kmip-bench` preloads them.
const GROUP_SIZE: usize = 100;
const USER: &str = "bench";

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Resident set size of this process, from `/proc/self/statm` (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // The page size of every platform this runs on (x86-64 and aarch64 Linux defaults).
    pages * 4096
}

async fn open_store(dir: &Path) -> Result<Arc<Store>, Failure> {
    let vault = Vault::open(dir, MasterKeySource::VaultDir)?;
    Ok(Arc::new(Store::open(Arc::new(vault)).await?))
}

fn dispatcher(store: Arc<Store>) -> Result<Dispatcher, Failure> {
    let policy = owner_only([USER.to_owned()].into_iter())?;
    let limits = LimitsConfig {
        max_objects_per_user: usize::MAX,
        ..LimitsConfig::default()
    };
    let ops = Ops::new(
        store,
        Arc::new(Access::new(policy)),
        LocateCacheConfig::default(),
    )
    .with_limits(&limits);
    Ok(Dispatcher::new(ops, limits, None))
}

async fn call(
    d: &Dispatcher,
    conn: &ConnContext,
    payload: RequestPayload,
) -> Result<ResponsePayload, Failure> {
    let msg = RequestMessage {
        header: RequestHeader::new(ProtocolVersion::V2_1),
        items: vec![RequestBatchItem::new(payload)],
    };
    let Outcome::Respond(out) = d.handle(conn, msg.to_ttlv().to_bytes()?).await else {
        return Err("the dispatcher closed the connection".into());
    };
    let mut response = ResponseMessage::from_ttlv(&decode(&out, &Limits::default())?)?;
    let item = response.items.pop().ok_or("empty response")?;
    match item.payload {
        Some(p) if item.result_status == ResultStatus::Success => Ok(p),
        _ => Err(format!("operation failed: {:?}", item.result_reason).into()),
    }
}

async fn create_one(d: &Dispatcher, conn: &ConnContext, i: usize) -> Result<(), Failure> {
    let attributes = vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
        Attribute::integer(
            tags::CRYPTOGRAPHIC_USAGE_MASK,
            usage_mask::ENCRYPT | usage_mask::DECRYPT,
        ),
        Attribute::name(&Name::new(&format!("memory-k{i}"))),
        Attribute::text(tags::OBJECT_GROUP, &format!("memory-g{}", i / GROUP_SIZE)),
    ];
    let created = call(
        d,
        conn,
        RequestPayload::Create(CreateRequest {
            templates: Vec::new(),
            object_type: ObjectType::SymmetricKey,
            attributes,
        }),
    )
    .await?;
    let ResponsePayload::Create(created) = created else {
        return Err("Create answered with another payload".into());
    };
    // The first Get is a write too (Fresh becomes false), as in a preloaded benchmark.
    call(
        d,
        conn,
        RequestPayload::Get(GetRequest {
            unique_identifier: Some(created.unique_identifier),
            ..GetRequest::default()
        }),
    )
    .await?;
    Ok(())
}

async fn create(dir: &Path, n: usize) -> Result<(), Failure> {
    let store = open_store(dir).await?;
    let d = Arc::new(dispatcher(store.clone())?);
    let before = rss_bytes();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..PARALLELISM {
        let (d, next) = (d.clone(), next.clone());
        tasks.spawn(async move {
            let conn = ConnContext::new(
                worker as u64,
                "127.0.0.1:1".parse()?,
                Identity {
                    user: USER.into(),
                    subject: format!("CN={USER}"),
                    serial_hex: "01".into(),
                    fingerprint: "00".into(),
                },
            );
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), Failure>(());
                }
                create_one(&d, &conn, i).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    store
        .flush_background(std::time::Duration::from_secs(60))
        .await;
    let after = rss_bytes();
    println!(
        "created {n} objects in {:.1} s; RSS {} MB -> {} MB: {} bytes/object (store and vault)",
        started.elapsed().as_secs_f64(),
        before >> 20,
        after >> 20,
        after.saturating_sub(before) / n.max(1) as u64
    );
    Ok(())
}

async fn reopen(dir: &Path) -> Result<(), Failure> {
    let before = rss_bytes();
    let started = Instant::now();
    let vault = Vault::open(dir, MasterKeySource::VaultDir)?;
    let vault_open = started.elapsed();
    let with_vault = rss_bytes();
    let store = Store::open(Arc::new(vault)).await?;
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let objects = store.snapshot();
    let n = objects.len();
    let blob_bytes: usize = objects.iter().map(|o| o.to_meta().len()).sum();
    let per_object = |bytes: u64| bytes / n.max(1) as u64;
    println!(
        "reopened {n} objects in {:.2} s (vault {:.2} s); RSS {} MB -> {} MB: {} bytes/object \
         (vault {}, then store {}), the metadata blob {} of them",
        elapsed.as_secs_f64(),
        vault_open.as_secs_f64(),
        before >> 20,
        after >> 20,
        per_object(after.saturating_sub(before)),
        per_object(with_vault.saturating_sub(before)),
        per_object(after.saturating_sub(with_vault)),
        blob_bytes / n.max(1)
    );
    // Ends here: freeing a million objects one by one would only make the run longer.
    std::process::exit(0)
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--reopen") {
        let dir = args.get(1).ok_or("--reopen DIR")?;
        return reopen(Path::new(dir)).await;
    }
    let n = match args.first() {
        Some(n) => n.parse()?,
        None => DEFAULT_OBJECTS,
    };
    let temp;
    let dir: PathBuf = match args.get(1) {
        Some(d) => PathBuf::from(d),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("vault")
        }
    };
    create(&dir, n).await?;
    // A fresh process, so that the reopened store's memory is not mixed with this one's.
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--reopen")
        .arg(&dir)
        .status()?;
    if !status.success() {
        return Err(format!("the reopening run failed: {status}").into());
    }
    Ok(())
}
