//! `kmip-bench cryptoki-read`: the raw PKCS#11 baseline of the `get` scenario on a PKCS#11
//! backend. Plain threads, one session each, read `CKA_VALUE` of AES keys by cached handle in a
//! loop: what the token itself can serve, with no KMIP, TLS or async runtime in the way.

use crate::run::{Limit, Rng};
use crate::stats::Stats;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use zeroize::Zeroizing;

/// `CKA_LABEL` of the keys this baseline creates and reuses, so repeated runs on one token do
/// not pile up keys (and never touch the gateway's objects).
pub(crate) const KEY_LABEL: &str = "kmip-bench-cryptoki-read";
/// AES-256, the key size of the `get` scenario's preloaded keys.
const KEY_BYTES: usize = 32;
/// Worker threads (one session each): SoftHSM gains nothing past a few, and a typo must not
/// spawn a million threads.
pub(crate) const MAX_CONCURRENCY: usize = 1024;
/// Keys to read from: bounds the keygen phase (SoftHSM keygen is 10–650/s on this disk).
pub(crate) const MAX_KEYS: usize = 100_000;
/// Longest PIN file accepted: a PIN is a few dozen bytes; anything bigger is the wrong file.
const MAX_PIN_FILE_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RawError {
    #[error("--{0} must be 1..={1}")]
    Range(&'static str, usize),
    #[error("read PIN file {path}: {problem}")]
    Pin { path: String, problem: String },
    #[error("PKCS#11 {op}: {source}")]
    Pkcs11 { op: &'static str, source: CkError },
    #[error("no token labelled {label:?} (tokens present: {seen:?})")]
    NoToken { label: String, seen: Vec<String> },
    #[error("{0} tokens are labelled {1:?}; labels must be unique")]
    AmbiguousToken(usize, String),
    #[error("worker thread: {0}")]
    Thread(String),
}

fn p11(op: &'static str) -> impl FnOnce(CkError) -> RawError {
    move |source| RawError::Pkcs11 { op, source }
}

/// What `cryptoki-read` measures.
pub(crate) struct RawSpec {
    pub module: PathBuf,
    pub token_label: String,
    pub pin_file: PathBuf,
    pub keys: usize,
    pub concurrency: usize,
    pub limit: Limit,
}

/// Reads the PIN (first line of the file), never echoing it.
fn read_pin(path: &Path) -> Result<Zeroizing<String>, RawError> {
    let fail = |problem: String| RawError::Pin {
        path: path.display().to_string(),
        problem,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > MAX_PIN_FILE_BYTES {
        return Err(fail(format!("longer than {MAX_PIN_FILE_BYTES} bytes")));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
    let pin = Zeroizing::new(text.lines().next().unwrap_or("").trim().to_owned());
    if pin.is_empty() {
        return Err(fail("empty".into()));
    }
    Ok(pin)
}

fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot, RawError> {
    let mut seen = Vec::new();
    let mut matches = Vec::new();
    for slot in ctx.get_slots_with_token().map_err(p11("list slots"))? {
        let info = ctx.get_token_info(slot).map_err(p11("token info"))?;
        let this = info.label().trim_end().to_owned();
        if this == label {
            matches.push(slot);
        }
        seen.push(this);
    }
    match matches.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(RawError::NoToken {
            label: label.to_owned(),
            seen,
        }),
        _ => Err(RawError::AmbiguousToken(matches.len(), label.to_owned())),
    }
}

/// Finds the bench's keys on the token and generates the missing ones (token objects, so they
/// outlive the session and later runs reuse them). Returns the handles and how many were made.
fn prepare_keys(session: &Session, keys: usize) -> Result<(Vec<ObjectHandle>, usize), RawError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Label(KEY_LABEL.as_bytes().to_vec()),
    ];
    // One search: find is linear in the token's objects, so never one search per key.
    let mut handles = session.find_objects(&template).map_err(p11("find keys"))?;
    handles.truncate(keys);
    let missing = keys - handles.len();
    let mut generate = template.to_vec();
    generate.extend([
        Attribute::Private(true),
        // Readable, like the keys a KMIP Get returns.
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::ValueLen((KEY_BYTES as u64).into()),
    ]);
    for _ in 0..missing {
        let handle = session
            .generate_key(&Mechanism::AesKeyGen, &generate)
            .map_err(p11("generate key"))?;
        handles.push(handle);
    }
    Ok((handles, missing))
}

/// One worker: its own session, reads until the round's limit.
fn worker(
    ctx: &Pkcs11,
    slot: Slot,
    handles: &[ObjectHandle],
    seed: u64,
    limit: Limit,
    start: Instant,
    issued: &AtomicU64,
) -> Result<Stats, RawError> {
    let session = ctx.open_ro_session(slot).map_err(p11("open session"))?;
    let mut stats = Stats::default();
    let mut rng = Rng(seed ^ 0x5EED);
    loop {
        match limit {
            Limit::Duration(d) if start.elapsed() >= d => break,
            Limit::Count(n) if issued.fetch_add(1, Ordering::Relaxed) >= n => break,
            _ => {}
        }
        let handle = handles[rng.below(handles.len())];
        let t0 = Instant::now();
        let result = session.get_attributes(handle, &[AttributeType::Value]);
        let latency = t0.elapsed();
        match result {
            Ok(attrs) => {
                let value = attrs.into_iter().find_map(|a| match a {
                    Attribute::Value(v) => Some(Zeroizing::new(v)),
                    _ => None,
                });
                // SoftHSM leaves a sensitive value out of the result instead of failing.
                match value {
                    Some(v) if v.len() == KEY_BYTES => {
                        stats.record(latency);
                        stats.tick(start.elapsed());
                    }
                    Some(_) => stats.error("value of unexpected length".into()),
                    None => stats.error("value missing (sensitive key?)".into()),
                }
            }
            Err(CkError::Pkcs11(rv, _)) => stats.error(format!("{rv:?}")),
            Err(other) => stats.error(other.to_string()),
        }
    }
    Ok(stats)
}

/// Runs the baseline: prepares the keys once, then `concurrency` threads read for the round.
pub(crate) fn run(spec: &RawSpec) -> Result<Stats, RawError> {
    if spec.keys == 0 || spec.keys > MAX_KEYS {
        return Err(RawError::Range("keys", MAX_KEYS));
    }
    if spec.concurrency == 0 || spec.concurrency > MAX_CONCURRENCY {
        return Err(RawError::Range("concurrency", MAX_CONCURRENCY));
    }
    let pin = read_pin(&spec.pin_file)?;
    let ctx = Pkcs11::new(&spec.module).map_err(p11("load module"))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(p11("initialize"))?;
    let result = measure(&ctx, spec, &pin);
    // Pkcs11 has no finalize on drop; every session is closed by now.
    let _ = ctx.finalize();
    result
}

fn measure(ctx: &Pkcs11, spec: &RawSpec, pin: &Zeroizing<String>) -> Result<Stats, RawError> {
    let slot = find_token(ctx, &spec.token_label)?;
    // This session holds the login (per application) while the workers run.
    let setup = ctx.open_rw_session(slot).map_err(p11("open session"))?;
    match setup.login(UserType::User, Some(&AuthPin::from(pin.as_str()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => return Err(p11("login")(e)),
    }
    let t0 = Instant::now();
    let (handles, generated) = prepare_keys(&setup, spec.keys)?;
    let prepare = t0.elapsed();

    let issued = AtomicU64::new(0);
    let start = Instant::now();
    let results: Vec<Result<Stats, RawError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..spec.concurrency)
            .map(|t| {
                let (handles, issued) = (&handles, &issued);
                scope.spawn(move || worker(ctx, slot, handles, t as u64, spec.limit, start, issued))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(RawError::Thread("panicked".into())))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut total = Stats::default();
    for r in results {
        total.merge(&r?);
    }
    total.elapsed = elapsed;
    total.close_round();
    total.extra.insert("keys".into(), json!(handles.len()));
    total
        .extra
        .insert("keys_generated".into(), json!(generated));
    total
        .extra
        .insert("key_setup_s".into(), json!(prepare.as_secs_f64()));
    drop(setup);
    Ok(total)
}
