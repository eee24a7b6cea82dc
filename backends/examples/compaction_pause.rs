//! How long writes wait while the vault compacts its log, measured on a real file vault.
//!
//! `cargo run --release -p kmip-backends --example compaction_pause -- [N] [DIR]` creates N
//! (default 1,000,000) AES-256 keys with a 150-byte metadata blob (the size of the gateway's
//! compact blob) in a vault in DIR (default: a temporary folder), then asks for a compaction
//! while one task keeps updating a key's metadata, one write at a time. It prints how long the
//! compaction took and the slowest and median write during it: before compactions ran on their
//! own thread, every write waited for the whole rewrite.
//!
//! Not a test: the figures depend on the machine, and nothing here asserts them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_backends::{Backend, KeyAlgorithm, KeySpec, ObjectKind, ObjectRecord};

/// Keys created when no count is given: the size at which issue 17 saw writes stall.
const DEFAULT_OBJECTS: usize = 1_000_000;
/// Creations in flight: enough for the vault's group commit to batch them.
const PARALLELISM: usize = 256;
/// The gateway's compact metadata blob is about this large.
const META_BYTES: usize = 150;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn record(uid: String) -> ObjectRecord {
    ObjectRecord {
        uid: uid.into(),
        kind: ObjectKind::SymmetricKey,
        meta: vec![0x5a; META_BYTES].into(),
        version: 0,
    }
}

fn aes256() -> KeySpec {
    KeySpec {
        algorithm: KeyAlgorithm::Aes,
        bits: 256,
        extractable: true,
        sensitive: false,
        label: None,
    }
}

async fn fill(vault: &Arc<Vault>, objects: usize) -> Result<(), Failure> {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..PARALLELISM {
        let vault = Arc::clone(vault);
        tasks.spawn(async move {
            for i in (worker..objects).step_by(PARALLELISM) {
                vault.generate(record(format!("k{i}")), aes256()).await?;
            }
            Ok::<(), kmip_backends::BackendError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let objects = match args.next() {
        Some(n) => n.parse()?,
        None => DEFAULT_OBJECTS,
    };
    let tmp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let vault = Arc::new(Vault::open(&dir, MasterKeySource::VaultDir)?);
    let started = Instant::now();
    fill(&vault, objects).await?;
    println!(
        "{objects} keys created in {:.1} s; log {} MB",
        started.elapsed().as_secs_f64(),
        vault.stats().log_bytes >> 20
    );

    let compacting = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let vault = Arc::clone(&vault);
        let compacting = Arc::clone(&compacting);
        async move {
            let mut waits = Vec::new();
            let mut n = 0u32;
            while compacting.load(Ordering::Acquire) {
                n += 1;
                let meta = format!("update {n}").into_bytes().into();
                let one = Instant::now();
                vault.update_meta("k0", meta, 0).await?;
                waits.push(one.elapsed());
            }
            Ok::<_, kmip_backends::BackendError>(waits)
        }
    });
    // Let the writer reach its steady state before the compaction starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    vault.compact().await?;
    let took = began.elapsed();
    compacting.store(false, Ordering::Release);
    let mut waits = writer.await??;
    waits.sort();
    let median = waits.get(waits.len() / 2).copied().unwrap_or_default();
    let slowest = waits.last().copied().unwrap_or_default();
    println!(
        "compaction {:.0} ms; log now {} MB; {} writes meanwhile: median {:.2} ms, slowest {:.0} ms",
        took.as_secs_f64() * 1e3,
        vault.stats().log_bytes >> 20,
        waits.len(),
        median.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3
    );
    Ok(())
}
