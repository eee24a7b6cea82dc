//! Issue 17: a Locate the store's index narrows answers exactly what a scan of every object
//! answers, over random objects, filters and changes (create, update, destroy, and both undos)
//! on a real vault.

use super::*;
use crate::kmip::ops::locate::matches_filter;
use crate::kmip::ops::OpError;
use crate::kmip::store::{ObjectDraft, StoredObject, Written};
use kmip_backends::{KeyAlgorithm, KeySpec, ObjectKind};
use std::collections::BTreeSet;
use zeroize::Zeroizing;

/// splitmix64: reproducible, so a failure names its seed's case again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

const NAMES: &[&str] = &["disk-a", "disk-b", "disk-c", "disk-d", "never"];
const GROUPS: &[&str] = &["array-1", "array-2", "none"];
const STATES: &[State] = &[
    State::PreActive,
    State::Active,
    State::Deactivated,
    State::Compromised,
    State::Destroyed,
];
const ALGORITHMS: &[CryptographicAlgorithm] = &[
    CryptographicAlgorithm::Aes,
    CryptographicAlgorithm::Des3,
    CryptographicAlgorithm::HmacSha256,
];
const LENGTHS: &[i32] = &[128, 256, 512];
const TIERS: &[&str] = &["gold", "silver", "bronze"];
const DATES: &[i64] = &[1_000, 2_000, 3_000, 4_000, 5_000];
const DATE_TAGS: &[Tag] = &[
    tags::INITIAL_DATE,
    tags::ACTIVATION_DATE,
    tags::LAST_CHANGE_DATE,
];
const KINDS: &[ObjectKind] = &[
    ObjectKind::SymmetricKey,
    ObjectKind::SecretData,
    ObjectKind::OpaqueObject,
];
const TYPES: &[ObjectType] = &[
    ObjectType::SymmetricKey,
    ObjectType::SecretData,
    ObjectType::OpaqueObject,
    ObjectType::Certificate,
];

fn custom(name: &str, value: Value) -> Attribute {
    Attribute {
        name: AttributeName::from_v1_name(name),
        index: None,
        value,
    }
}

/// One random filter or object attribute of each kind Locate compares.
fn random_attribute(rng: &mut Rng) -> Vec<Attribute> {
    match rng.below(12) {
        0 => vec![Attribute::name(&Name::new(rng.pick(NAMES)))],
        1 => vec![Attribute::text(tags::OBJECT_GROUP, rng.pick(GROUPS))],
        2 => vec![Attribute::enumeration(tags::STATE, rng.pick(STATES))],
        3 => vec![Attribute::enumeration(
            tags::CRYPTOGRAPHIC_ALGORITHM,
            rng.pick(ALGORITHMS),
        )],
        4 => vec![Attribute::integer(
            tags::CRYPTOGRAPHIC_LENGTH,
            rng.pick(LENGTHS),
        )],
        5 => vec![Attribute::integer(
            tags::CRYPTOGRAPHIC_USAGE_MASK,
            rng.below(16) as i32,
        )],
        6 => vec![custom(
            "x-tier",
            Value::TextString(rng.pick(TIERS).to_owned()),
        )],
        7 => vec![custom("x-shelf", Value::Integer(rng.below(4) as i32))],
        8 => vec![Attribute::vendor(
            "purestorage",
            "mode",
            Value::Enumeration(rng.below(3) as u32),
        )],
        9 => vec![Attribute::enumeration(tags::OBJECT_TYPE, rng.pick(TYPES))],
        10 => vec![Attribute::datetime(rng.pick(DATE_TAGS), rng.pick(DATES))],
        _ => {
            let tag = rng.pick(DATE_TAGS);
            vec![
                Attribute::datetime(tag, rng.pick(DATES) - 500),
                Attribute::datetime(tag, rng.pick(DATES) + 500),
            ]
        }
    }
}

/// Random attributes of an object; a single-valued attribute drawn twice keeps the last.
fn random_object(rng: &mut Rng, uid: &str, kind: ObjectKind) -> ObjectDraft {
    let mut obj = ObjectDraft {
        uid: uid.to_owned(),
        kind,
        owner: "purefa".into(),
        attributes: Vec::new(),
        version: 1,
    };
    for _ in 0..rng.below(9) {
        change(rng, &mut obj);
    }
    obj
}

/// One random change of an object's attributes.
fn change(rng: &mut Rng, obj: &mut ObjectDraft) {
    let drawn = random_attribute(rng);
    let Some(first) = drawn.first() else { return };
    if rng.chance(15) {
        if let Some(tag) = first.tag() {
            obj.remove(tag);
            return;
        }
    }
    match first.tag() {
        Some(tag) => obj.set(tag, first.value.clone()),
        None => obj.attributes.push(first.clone()),
    }
}

fn random_filter(rng: &mut Rng) -> Vec<Attribute> {
    (0..rng.below(4))
        .flat_map(|_| random_attribute(rng))
        .collect()
}

/// Whether the index narrows this filter: all but Usage Mask are indexed.
fn is_indexed(filter: &[Attribute]) -> bool {
    filter.iter().any(|a| !a.is(tags::CRYPTOGRAPHIC_USAGE_MASK))
}

fn matching(objects: Vec<Arc<StoredObject>>, filter: &[Attribute]) -> Vec<String> {
    let mut uids: Vec<String> = objects
        .into_iter()
        .filter(|o| matches_filter(o, filter))
        .map(|o| o.uid.to_string())
        .collect();
    uids.sort();
    uids
}

/// Every random filter finds through the index exactly what the scan finds, and each object
/// once.
fn check(store: &Store, rng: &mut Rng, round: usize) {
    for i in 0..300 {
        let filter = random_filter(rng);
        let scan = matching(store.snapshot(), &filter);
        let candidates = store.candidates(&filter);
        assert_eq!(candidates.is_some(), is_indexed(&filter), "{filter:?}");
        if let Some(c) = &candidates {
            let distinct: BTreeSet<&str> = c.iter().map(|o| &*o.uid).collect();
            assert_eq!(distinct.len(), c.len(), "a candidate twice: {filter:?}");
            // One indexed attribute (or one date range) is answered exactly: nothing stale
            // stays in the index.
            let one_term = filter.iter().all(|a| a.name == filter[0].name);
            if one_term && is_indexed(&filter) {
                let exact: Vec<String> = distinct.into_iter().map(str::to_owned).collect();
                assert_eq!(exact, scan, "round {round}, filter {i}: {filter:?}");
            }
        }
        let indexed = matching(candidates.unwrap_or_else(|| store.snapshot()), &filter);
        assert_eq!(indexed, scan, "round {round}, filter {i}: {filter:?}");
    }
}

async fn add(store: &Store, rng: &mut Rng, n: usize) -> Arc<StoredObject> {
    let kind = rng.pick(KINDS);
    let obj = random_object(rng, &format!("obj-{n}"), kind);
    if kind == ObjectKind::SymmetricKey {
        let spec = KeySpec {
            algorithm: KeyAlgorithm::Aes,
            bits: 128,
            extractable: true,
            sensitive: false,
            label: None,
        };
        store.create(obj, spec, usize::MAX).await.unwrap()
    } else {
        let material = Zeroizing::new(vec![7u8; 16]);
        store
            .register(obj, material, None, usize::MAX)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_locate_finds_exactly_what_a_scan_finds() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("vault"), MasterKeySource::VaultDir).unwrap();
    let store = Store::open(Arc::new(vault)).await.unwrap();
    let mut rng = Rng(17);
    let mut uids = Vec::new();
    for n in 0..200 {
        uids.push(add(&store, &mut rng, n).await.uid.clone());
    }
    check(&store, &mut rng, 0);
    for round in 1..=4 {
        let mut undo: Vec<Written> = Vec::new();
        for _ in 0..60 {
            let uid = uids[rng.below(uids.len())].clone();
            let seed = rng.next();
            match rng.below(10) {
                0 => {
                    store
                        .destroy(&uid, |o| {
                            o.set(tags::STATE, Value::Enumeration(State::Destroyed.to_u32()));
                            Ok::<_, OpError>(())
                        })
                        .await
                        .unwrap();
                }
                1 => {
                    // A creation undone leaves no trace.
                    let created = add(&store, &mut rng, uids.len() + 1_000).await;
                    assert!(store.remove(&created).await.unwrap());
                }
                _ => {
                    let (written, ()) = store
                        .update(&uid, |o| {
                            let mut rng = Rng(seed);
                            for _ in 0..1 + rng.below(3) {
                                change(&mut rng, o);
                            }
                            Ok::<_, OpError>(())
                        })
                        .await
                        .unwrap();
                    undo.push(written);
                }
            }
        }
        // Undo takes back the writes still at the version they made, newest first.
        for w in undo.into_iter().rev().take(20) {
            if let Some(before) = w.before {
                store.restore(&w.after, before).await.unwrap();
            }
        }
        check(&store, &mut rng, round);
    }
    // A reopened store rebuilds the same index from the vault.
    drop(store);
    let vault = Vault::open(&dir.path().join("vault"), MasterKeySource::VaultDir).unwrap();
    let store = Store::open(Arc::new(vault)).await.unwrap();
    check(&store, &mut rng, 99);
}

fn locate(attributes: Vec<Attribute>) -> RequestPayload {
    RequestPayload::Locate(LocateRequest {
        attributes,
        ..Default::default()
    })
}

/// Through the dispatcher, a Locate the index serves keeps Locate's rules: a destroyed object
/// only when the filter asks for a State, and the other user's objects never.
#[tokio::test]
async fn indexed_locates_keep_the_tombstone_and_visibility_rules() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let live = h.create(v, Some("live")).await;
    let gone = h.create(v, Some("gone")).await;
    let item = h.one(v, RequestPayload::Destroy(uid_req(&gone))).await;
    assert_eq!(item.result_status, ResultStatus::Success);
    let theirs = ConnContext::new(
        2,
        "127.0.0.1:2".parse().unwrap(),
        crate::identity::Identity {
            user: "other".into(),
            subject: "CN=other".into(),
            serial_hex: "02".into(),
            fingerprint: "01".into(),
        },
    );
    let found = |item: ResponseBatchItem| match item.payload {
        Some(ResponsePayload::Locate(l)) => l.unique_identifiers,
        other => panic!("{other:?}"),
    };
    let key_type = Attribute::enumeration(tags::OBJECT_TYPE, ObjectType::SymmetricKey);
    let aes = Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes);
    let destroyed = Attribute::enumeration(tags::STATE, State::Destroyed);
    assert_eq!(
        found(h.one(v, locate(vec![key_type.clone()])).await),
        [live.as_str()]
    );
    assert_eq!(
        found(h.one(v, locate(vec![aes.clone()])).await),
        [live.as_str()]
    );
    assert_eq!(
        found(h.one(v, locate(vec![destroyed.clone(), aes])).await),
        [gone.as_str()]
    );
    let msg = RequestMessage {
        header: RequestHeader::new(v),
        items: vec![RequestBatchItem::new(locate(vec![key_type, destroyed]))],
    };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(&theirs, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("connection closed");
    };
    let mut r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    assert!(found(r.items.remove(0)).is_empty());
}
