//! `kmip-gateway migrate`: copies every object of one backend into another (the vault into
//! PostgreSQL), keeping its UID, metadata (attributes, state) and material, and verifies each
//! copy by reading it back. Resumable: an object the target already holds identically is
//! skipped, so an interrupted run is simply run again; an object the target holds differently
//! stops the run (never overwritten). Knows only the [`Backend`] trait.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;

use kmip_backends::{
    Backend, BackendError, CipherMode, CipherRequest, ExportedObject, KeyAlgorithm, KeySpec,
    MacAlgorithm, ObjectKind, ObjectRecord,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A progress line goes to stderr after every this many objects: a sign of life on a big store
/// without a line per key.
pub const PROGRESS_EVERY: usize = 100;
/// The block a copied key encrypts (AES) or MACs (HMAC) on both sides when the target will not
/// hand its copy back (a sensitive key): equal outputs show it holds the same key.
const PROBE: [u8; 16] = *b"kmip-gw migrate.";
/// Length of the stand-in material of a destroyed object whose key facts give none (see
/// [`placeholder`]).
const PLACEHOLDER_LEN: usize = 32;

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Objects the source holds.
    pub total: usize,
    /// Live objects copied by this run.
    pub copied: usize,
    /// Destroyed objects (tombstones) copied, or finished after an interrupted run, by this run.
    pub tombstones: usize,
    /// Objects the target already held identically.
    pub already_there: usize,
    /// Objects not copied or not verified, with why: the run's exit status is then non-zero.
    pub failed: Vec<Failure>,
    /// Objects whose material the source will not let out (a KMIP proxy's non-extractable
    /// keys): left where they are, not copied.
    pub not_extractable: Vec<String>,
}

/// An object the run could not copy or verify.
#[derive(Debug)]
pub struct Failure {
    pub uid: String,
    pub reason: String,
}

impl Summary {
    fn count(&mut self, outcome: Outcome) -> &mut usize {
        match outcome {
            Outcome::Copied => &mut self.copied,
            Outcome::Tombstone => &mut self.tombstones,
            Outcome::AlreadyThere => &mut self.already_there,
        }
    }

    fn done(&self) -> usize {
        self.copied
            + self.tombstones
            + self.already_there
            + self.failed.len()
            + self.not_extractable.len()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} objects: {} copied, {} tombstones, {} already there, {} failed",
            self.done(),
            self.total,
            self.copied,
            self.tombstones,
            self.already_there,
            self.failed.len()
        )?;
        if !self.not_extractable.is_empty() {
            write!(
                f,
                ", {} not extractable (left at the source)",
                self.not_extractable.len()
            )?;
        }
        Ok(())
    }
}

/// Why a run stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("listing the objects of the {side} failed: {source}")]
    List {
        side: &'static str,
        source: BackendError,
    },
    #[error(
        "the target already holds {uid} with a different {what}: refusing to overwrite it. \
         Check that --to names the intended store; migrate into an empty one, or remove that \
         object from the target first"
    )]
    Conflict { uid: String, what: &'static str },
}

/// An object as the target holds it; `None` fields could not be read (a backend without
/// `export`, read back right after a copy: its listing is checked at the end of the run).
struct Held {
    kind: Option<ObjectKind>,
    meta: Option<Vec<u8>>,
    material: Material,
    spec: Option<Option<KeySpec>>,
}

/// The material of a held copy.
enum Material {
    /// None: a tombstone.
    Absent,
    Bytes(Zeroizing<Vec<u8>>),
    /// There, but the target will not return it (sensitive or not extractable there).
    Unreadable,
}

/// How a held copy differs from the source's object.
#[derive(Debug, PartialEq, Eq)]
enum Difference {
    /// Object type, attributes, key facts or material: a different object.
    Other(&'static str),
    /// The same object, destroyed at the source, whose material is still on the target: a run
    /// interrupted between the import and the destroy of a tombstone.
    NotYetDestroyed,
    /// The material cannot be compared: the target keeps it to itself and it is no key the
    /// probe works with.
    Unverifiable,
}

impl Difference {
    fn describe(&self) -> &'static str {
        match self {
            Difference::Other(what) => what,
            Difference::NotYetDestroyed => "its material is not destroyed",
            Difference::Unverifiable => {
                "the target will not return its material, and it is no AES or HMAC key whose use could show it"
            }
        }
    }
}

fn compare(source: &ExportedObject, held: &Held) -> Result<(), Difference> {
    if held.kind.is_some_and(|k| k != source.record.kind) {
        return Err(Difference::Other("object type"));
    }
    if held.meta.as_ref().is_some_and(|m| *m != source.record.meta) {
        return Err(Difference::Other("attributes or state"));
    }
    if held.spec.as_ref().is_some_and(|s| *s != source.spec) {
        return Err(Difference::Other(
            "key facts (algorithm, length, extractability)",
        ));
    }
    match (&source.material, &held.material) {
        (Some(a), Material::Bytes(b)) if a[..] == b[..] => Ok(()),
        (None, Material::Absent) => Ok(()),
        (None, _) => Err(Difference::NotYetDestroyed),
        (Some(_), Material::Absent) => Err(Difference::Other("material (it is destroyed there)")),
        (Some(_), Material::Bytes(_)) => Err(Difference::Other("key material")),
        // Settled by `same_key`.
        (Some(_), Material::Unreadable) => Err(Difference::Unverifiable),
    }
}

/// What the source key `material` of `spec` makes of [`PROBE`]: an AES block encryption or an
/// HMAC-SHA256. `None` for anything else.
fn probe_locally(spec: &KeySpec, material: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::cipher::{EncryptingKey, UnboundCipherKey, AES_128, AES_192, AES_256};
    match spec.algorithm {
        KeyAlgorithm::Aes => {
            let algorithm = match material.len() {
                16 => &AES_128,
                24 => &AES_192,
                32 => &AES_256,
                _ => return None,
            };
            let key = EncryptingKey::ecb(UnboundCipherKey::new(algorithm, material).ok()?).ok()?;
            let mut block = PROBE.to_vec();
            key.encrypt(&mut block).ok()?;
            Some(block)
        }
        KeyAlgorithm::HmacSha256 => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, material);
            Some(aws_lc_rs::hmac::sign(&key, &PROBE).as_ref().to_vec())
        }
        // No DES here to compute it with: such a copy is unverifiable unless readable.
        KeyAlgorithm::TripleDes | KeyAlgorithm::ChaCha20 => None,
    }
}

/// [`compare`], and for a copy the target will not return, whether it holds the same key: it
/// encrypts (or MACs) [`PROBE`] where it lives and the result must equal the source key's.
async fn same_key(
    target: &dyn Backend,
    uid: &str,
    source: &ExportedObject,
    held: &Held,
) -> Result<Result<(), Difference>, BackendError> {
    let unverifiable = match compare(source, held) {
        Err(Difference::Unverifiable) => Difference::Unverifiable,
        other => return Ok(other),
    };
    let (Some(spec), Some(material)) = (&source.spec, &source.material) else {
        return Ok(Err(unverifiable));
    };
    let Some(expected) = probe_locally(spec, material) else {
        return Ok(Err(unverifiable));
    };
    let theirs = match spec.algorithm {
        KeyAlgorithm::Aes | KeyAlgorithm::TripleDes | KeyAlgorithm::ChaCha20 => {
            let request = CipherRequest {
                mode: CipherMode::Ecb { pad: false },
                data: Zeroizing::new(PROBE.to_vec()),
                iv: None,
                aad: None,
                tag: None,
            };
            target.encrypt(uid, request).await?.data.to_vec()
        }
        KeyAlgorithm::HmacSha256 => target.mac(uid, MacAlgorithm::HmacSha256, &PROBE).await?,
    };
    Ok(if theirs == expected {
        Ok(())
    } else {
        Err(Difference::Other("key material"))
    })
}

/// Reads `uid` from the target: `export` where the backend has it, else its material
/// (`read_material`; a destroyed object has none) with the type and metadata of `listed`, its
/// `load_all` record when known. `Ok(None)`: the target does not hold it.
async fn held(
    target: &dyn Backend,
    uid: &str,
    listed: Option<&ObjectRecord>,
) -> Result<Option<Held>, BackendError> {
    match target.export(uid).await {
        Ok(e) => Ok(Some(Held {
            kind: Some(e.record.kind),
            meta: Some(e.record.meta.to_vec()),
            material: e.material.map_or(Material::Absent, Material::Bytes),
            spec: Some(e.spec),
        })),
        Err(BackendError::NotFound(_)) => Ok(None),
        Err(BackendError::Unsupported(_)) => {
            let material = match target.read_material(uid).await {
                Ok(m) => Material::Bytes(m),
                Err(BackendError::NotFound(_)) => Material::Absent,
                Err(BackendError::NotExtractable(_)) => Material::Unreadable,
                Err(e) => return Err(e),
            };
            Ok(Some(Held {
                kind: listed.map(|r| r.kind),
                meta: listed.map(|r| r.meta.to_vec()),
                material,
                spec: None,
            }))
        }
        Err(e) => Err(e),
    }
}

/// Material for importing a destroyed object, destroyed again right after: random bytes of the
/// length its key facts name (backends check it), never the real key, which is gone.
fn placeholder(spec: Option<&KeySpec>) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let len = spec.map_or(PLACEHOLDER_LEN, |s| (s.bits as usize).div_ceil(8).max(1));
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    aws_lc_rs::rand::fill(&mut bytes[..])
        .map_err(|_| BackendError::Crypto("random generator failed".into()))?;
    Ok(bytes)
}

/// Destroys the copy of a destroyed object, leaving its tombstone metadata.
async fn shred(target: &dyn Backend, uid: &str, meta: &[u8]) -> Result<(), BackendError> {
    // A shared backend compares versions: destroy from the version stored now.
    let version = match target.shared() {
        Some(shared) => shared.load(uid).await?.map_or(0, |r| r.version),
        None => 0,
    };
    target
        .destroy(uid, Some(bytes::Bytes::copy_from_slice(meta)), version)
        .await
}

/// What happened to one object.
#[derive(Clone, Copy)]
enum Outcome {
    Copied,
    Tombstone,
    AlreadyThere,
}

/// Why one object was not copied: a failure (counted, the run goes on), a conflict (the run
/// stops), or material the source keeps to itself (listed, the run goes on).
enum Stop {
    Failed(String),
    Conflict(&'static str),
    /// The source will not let the material out: the object stays there.
    NotExtractable,
}

fn failed(what: &str) -> impl Fn(BackendError) -> Stop + '_ {
    move |e| Stop::Failed(format!("{what}: {e}"))
}

async fn migrate_one(
    source: &dyn Backend,
    target: &dyn Backend,
    uid: &str,
    listed: Option<&ObjectRecord>,
) -> Result<Outcome, Stop> {
    let object = match source.export(uid).await {
        Ok(object) => object,
        Err(BackendError::NotExtractable(_)) => return Err(Stop::NotExtractable),
        Err(e) => return Err(failed("cannot export it from the source")(e)),
    };
    let tombstone = object.material.is_none();
    if listed.is_some() {
        let held = held(target, uid, listed)
            .await
            .map_err(failed("cannot read the target's object of that uid"))?
            .ok_or_else(|| Stop::Failed("listed by the target but not found there".into()))?;
        match same_key(target, uid, &object, &held)
            .await
            .map_err(failed("cannot test the target's object of that uid"))?
        {
            Ok(()) => return Ok(Outcome::AlreadyThere),
            Err(Difference::NotYetDestroyed) => {}
            Err(Difference::Other(what)) => return Err(Stop::Conflict(what)),
            Err(d @ Difference::Unverifiable) => {
                return Err(Stop::Failed(format!(
                    "the target holds it already, but cannot show it is the same: {}",
                    d.describe()
                )))
            }
        }
    } else {
        let material = match &object.material {
            Some(m) => m.clone(),
            None => placeholder(object.spec.as_ref()).map_err(failed("cannot import it"))?,
        };
        let record = ObjectRecord {
            uid: uid.into(),
            kind: object.record.kind,
            meta: object.record.meta.clone(),
            version: object.record.version,
        };
        target
            .import(record, material, object.spec.clone())
            .await
            .map_err(failed("importing it into the target failed"))?;
    }
    if tombstone {
        shred(target, uid, &object.record.meta)
            .await
            .map_err(failed(
                "destroying the copy of this destroyed object failed",
            ))?;
    }
    let held = held(target, uid, None)
        .await
        .map_err(failed(
            "copied, but reading the copy back to verify it failed",
        ))?
        .ok_or_else(|| Stop::Failed("copied, but the target does not find the copy".into()))?;
    same_key(target, uid, &object, &held)
        .await
        .map_err(failed("copied, but testing the copy failed"))?
        .map_err(|d| Stop::Failed(format!("copied, but not verified: {}", d.describe())))?;
    Ok(if tombstone {
        Outcome::Tombstone
    } else {
        Outcome::Copied
    })
}

/// The digest of what `load_all` lists of an object, so the final check holds no metadata.
fn listing_digest(record: &ObjectRecord) -> [u8; 32] {
    Sha256::new()
        .chain_update([record.kind.code()])
        .chain_update(&record.meta)
        .finalize()
        .into()
}

/// Copies every object of `source` into `target` (see the module's documentation), writing a
/// progress line to `progress` every [`PROGRESS_EVERY`] objects. Neither `progress` nor any
/// error ever holds key material or metadata, only UIDs and counts.
pub async fn migrate(
    source: &dyn Backend,
    target: &dyn Backend,
    progress: &mut dyn Write,
) -> Result<Summary, MigrateError> {
    let list = |side| move |source| MigrateError::List { side, source };
    let mut records = source.load_all().await.map_err(list("source"))?;
    records.sort_unstable_by(|a, b| a.uid.cmp(&b.uid));
    let listed: HashMap<Arc<str>, ObjectRecord> = target
        .load_all()
        .await
        .map_err(list("target"))?
        .into_iter()
        .map(|r| (r.uid.clone(), r))
        .collect();
    let mut summary = Summary {
        total: records.len(),
        ..Summary::default()
    };
    // Every object found or put there, with the digest of its source listing, checked at the
    // end against the target's own listing (a target without `export` is verified this way).
    let mut written = Vec::new();
    for record in &records {
        let uid = &record.uid;
        match migrate_one(source, target, uid, listed.get(uid)).await {
            Ok(outcome) => {
                *summary.count(outcome) += 1;
                written.push((uid.clone(), listing_digest(record), outcome));
            }
            Err(Stop::Failed(reason)) => summary.failed.push(Failure {
                uid: uid.to_string(),
                reason,
            }),
            Err(Stop::NotExtractable) => summary.not_extractable.push(uid.to_string()),
            Err(Stop::Conflict(what)) => {
                return Err(MigrateError::Conflict {
                    uid: uid.to_string(),
                    what,
                })
            }
        }
        if summary.done().is_multiple_of(PROGRESS_EVERY) {
            // Progress is best effort: a closed stderr must not stop the copy.
            let _ = writeln!(progress, "migrate: {summary}");
        }
    }
    let now: HashMap<Arc<str>, [u8; 32]> = target
        .load_all()
        .await
        .map_err(list("target"))?
        .iter()
        .map(|r| (r.uid.clone(), listing_digest(r)))
        .collect();
    for (uid, digest, outcome) in written {
        let reason = match now.get(&uid) {
            Some(d) if *d == digest => continue,
            Some(_) => "the target lists it with other attributes, state or type",
            None => "the target does not list it",
        };
        *summary.count(outcome) -= 1;
        summary.failed.push(Failure {
            uid: uid.to_string(),
            reason: reason.into(),
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
