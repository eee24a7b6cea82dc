//! Locate timings over a large store (issue 17: "p99 ≤ 10 ms at one million objects for a
//! filter matching ≤ 100"). Builds N objects through the real `Store` on a vault in a temporary
//! folder, then times Locate (the operation layer's `locate_filtered`, without the Locate
//! cache), on the store reopened from the vault, by State, Cryptographic Algorithm, an `x-` attribute, an Initial Date range and a
//! Name, each matching at most 100 objects, and once by a filter no index serves (a scan).
//!
//! `cargo run --release -p kmip-gateway --example locate_timing -- [N]` (default 100000).
//! It measures; it asserts nothing about time.

use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_backends::{KeyAlgorithm, KeySpec, ObjectKind};
use kmip_gateway::config::LocateCacheConfig;
use kmip_gateway::kmip::access::{owner_only, Access};
use kmip_gateway::kmip::ops::{OpContext, Ops};
use kmip_gateway::kmip::store::{ObjectDraft, Store};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Objects per value of the attributes the timed filters name: the filters match this many.
const MATCHES: usize = 100;
/// Locates timed per filter kind.
const ROUNDS: usize = 1_000;
/// Concurrent writers while building the store, so that the vault's group commit batches.
const WRITERS: usize = 64;
/// Initial Date of object 0; object i was created i seconds later.
const EPOCH: i64 = 1_700_000_000;

fn x_batch(i: usize) -> Attribute {
    Attribute {
        name: AttributeName::from_v1_name("x-batch"),
        index: None,
        value: Value::TextString(format!("b{}", i / MATCHES)),
    }
}

/// Object `i` of `n`: one in every n/100 is Deactivated and one (another) is 3DES, so that
/// State and Algorithm filters each match 100; 100 objects share each `x-batch` value.
fn object(i: usize, n: usize) -> ObjectDraft {
    let stride = (n / MATCHES).max(1);
    let state = if i.is_multiple_of(stride) {
        State::Deactivated
    } else {
        State::Active
    };
    let algorithm = if i % stride == 1 {
        CryptographicAlgorithm::Des3
    } else {
        CryptographicAlgorithm::Aes
    };
    ObjectDraft {
        uid: format!("{i:08}-0000-4000-8000-000000000000"),
        kind: ObjectKind::SymmetricKey,
        owner: "purefa".into(),
        attributes: vec![
            Attribute::name(&Name::new(&format!("volume-{i}"))),
            Attribute::enumeration(tags::OBJECT_TYPE, ObjectType::SymmetricKey),
            Attribute::enumeration(tags::STATE, state),
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, algorithm),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
            Attribute::datetime(tags::INITIAL_DATE, EPOCH + i as i64),
            Attribute::datetime(tags::LAST_CHANGE_DATE, EPOCH + i as i64),
            x_batch(i),
        ],
        version: 1,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(n))
}

async fn run(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let vault = Vault::open(dir.path(), MasterKeySource::VaultDir)?;
    let store = Arc::new(Store::open(Arc::new(vault)).await?);
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.spawn(async move {
            for i in (w..n).step_by(WRITERS) {
                let spec = KeySpec {
                    algorithm: KeyAlgorithm::Aes,
                    bits: 256,
                    extractable: true,
                    sensitive: false,
                    label: None,
                };
                store.create(object(i, n), spec, usize::MAX).await?;
            }
            Ok::<(), kmip_gateway::kmip::store::StoreError>(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    println!(
        "built {n} objects in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Timed on a reopened store: its index is the one `Store::open` builds from the vault.
    drop(store);
    let started = Instant::now();
    let vault = Vault::open(dir.path(), MasterKeySource::VaultDir)?;
    let store = Arc::new(Store::open(Arc::new(vault)).await?);
    println!(
        "reopened (vault replay and index) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let policy = owner_only(["purefa".to_owned()].into_iter())?;
    let ops = Ops::new(
        store.clone(),
        Arc::new(Access::new(policy)),
        LocateCacheConfig::default(),
    );
    let ctx = OpContext::new("purefa", ProtocolVersion::V2_1, 0);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    };
    type Filter = Box<dyn FnMut(&mut dyn FnMut(usize) -> usize) -> Vec<Attribute>>;
    let kinds: Vec<(&str, usize, Filter)> = vec![
        (
            "State = Deactivated",
            ROUNDS,
            Box::new(|_| vec![Attribute::enumeration(tags::STATE, State::Deactivated)]),
        ),
        (
            "Cryptographic Algorithm = 3DES",
            ROUNDS,
            Box::new(|_| {
                vec![Attribute::enumeration(
                    tags::CRYPTOGRAPHIC_ALGORITHM,
                    CryptographicAlgorithm::Des3,
                )]
            }),
        ),
        (
            "x-batch = one value",
            ROUNDS,
            Box::new(move |r| vec![x_batch(r(n))]),
        ),
        (
            "Initial Date in a 100-second range",
            ROUNDS,
            Box::new(move |r| {
                let from = EPOCH + r(n.saturating_sub(MATCHES).max(1)) as i64;
                vec![
                    Attribute::datetime(tags::INITIAL_DATE, from),
                    Attribute::datetime(tags::INITIAL_DATE, from + MATCHES as i64 - 1),
                ]
            }),
        ),
        (
            "State = Active and x-batch = one value",
            ROUNDS,
            Box::new(move |r| {
                vec![
                    Attribute::enumeration(tags::STATE, State::Active),
                    x_batch(r(n)),
                ]
            }),
        ),
        (
            "Name = one value",
            ROUNDS,
            Box::new(move |r| vec![Attribute::name(&Name::new(&format!("volume-{}", r(n))))]),
        ),
        (
            "Usage Mask only (no index: a scan)",
            5,
            Box::new(|_| vec![Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x04)]),
        ),
    ];
    for (what, rounds, mut filter) in kinds {
        let mut times = Vec::with_capacity(rounds);
        let mut located = 0;
        for _ in 0..rounds {
            let r = LocateRequest {
                attributes: filter(&mut random),
                maximum_items: Some(1_000),
                ..Default::default()
            };
            let t = Instant::now();
            let answer = ops.locate_filtered(&ctx, &r, |_| true)?;
            times.push(t.elapsed());
            located = answer.located_items.unwrap_or(0);
        }
        times.sort();
        println!(
            "{what:<40} located {located:>7}  p50 {:>9.3} ms  p99 {:>9.3} ms  max {:>9.3} ms",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            percentile(&times, 1.0).as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
