//! The store's tests on the vault (a backend only this process opens). Following a shared
//! backend is tested on real PostgreSQL in `tests/tests/store_shared.rs`.

use super::*;
use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_backends::{KeyAlgorithm, ObjectKind};
use kmip_wire::model::{Attribute, ObjectType};
use kmip_wire::ttlv::Value;

async fn open(dir: &std::path::Path) -> Arc<Store> {
    let vault = Vault::open(dir, MasterKeySource::VaultDir).unwrap();
    Arc::new(Store::open(Arc::new(vault)).await.unwrap())
}

/// A graceful stop waits for the background writes: what they wrote is there after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_background_writes_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let uids: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    for uid in &uids {
        let obj = ObjectDraft {
            uid: uid.clone(),
            kind: ObjectKind::SymmetricKey,
            owner: "purefa".into(),
            attributes: vec![Attribute::boolean(tags::FRESH, true)],
            version: 1,
        };
        let spec = KeySpec {
            algorithm: KeyAlgorithm::Aes,
            bits: 256,
            extractable: true,
            sensitive: false,
            label: None,
        };
        store.create(obj, spec, usize::MAX).await.unwrap();
    }
    for uid in &uids {
        store
            .update_lazily(uid, |o| o.set(tags::FRESH, Value::Boolean(false)))
            .await;
    }
    assert!(store.flush_background(Duration::from_secs(10)).await);
    assert_eq!(store.write_locks.len(), 0, "no lock outlives its writes");
    drop(store);
    let store = open(dir.path()).await;
    for uid in &uids {
        let fresh = store.get(uid).and_then(|o| o.first(tags::FRESH));
        assert_eq!(fresh.and_then(|a| a.as_bool()), Some(false), "{uid}");
    }
}

/// On a backend only this process opens, a fence is free: no catch-up, nothing awaited.
#[tokio::test]
async fn a_fence_on_the_vault_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.fence().await.unwrap();
    assert!(store.follow(tokio::sync::watch::channel(false).1).is_none());
    assert!(store.feed_trouble().is_none());
}

/// An adopted object is written by its caller's closure, counted against its owner, and never
/// takes an identifier in use; a failed write releases the owner's reserved slot.
#[tokio::test]
async fn adoption_writes_through_its_closure_and_never_over_an_identifier_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let object = |uid: &str| ObjectDraft {
        uid: uid.into(),
        kind: ObjectKind::SecretData,
        owner: "tenant-a".into(),
        attributes: Vec::new(),
        version: 1,
    };
    let backend = store.backend().clone();
    let write = |record: ObjectRecord| {
        let backend = backend.clone();
        async move {
            backend
                .import(record, Zeroizing::new(b"upstream-42".to_vec()), None)
                .await
        }
    };
    store.adopt(object("42"), 1, write).await.unwrap();
    assert_eq!(store.live_objects("tenant-a"), 1);
    let taken = store.adopt(object("42"), 10, write).await.unwrap_err();
    assert!(
        matches!(taken, StoreError::Backend(BackendError::AlreadyExists(ref u)) if u == "42"),
        "{taken:?}"
    );
    let full = store.adopt(object("43"), 1, write).await.unwrap_err();
    assert!(
        matches!(full, StoreError::ObjectLimit { limit: 1 }),
        "{full:?}"
    );
    let failed = store
        .adopt(object("44"), 10, |_| async {
            Err(BackendError::Unavailable("upstream down".into()))
        })
        .await
        .unwrap_err();
    assert!(matches!(
        failed,
        StoreError::Backend(BackendError::Unavailable(_))
    ));
    assert_eq!(store.live_objects("tenant-a"), 1);
    assert!(store.get("44").is_none());
}

fn state(s: State) -> Attribute {
    Attribute::enumeration(tags::STATE, s)
}

fn found(store: &Store, filter: &[Attribute]) -> Vec<String> {
    let objects = store.candidates(filter).expect("an indexed filter");
    objects.iter().map(|o| o.uid.to_string()).collect()
}

/// A change a shared backend's feed delivers moves the index as a local write does; an older
/// version changes nothing, and a removal takes the object out. (The feed itself runs on
/// PostgreSQL in `tests/tests/store_shared.rs`; these are the calls it makes.)
#[tokio::test]
async fn feed_changes_move_the_index_like_local_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let obj = ObjectDraft {
        uid: "k".into(),
        kind: ObjectKind::SecretData,
        owner: "purefa".into(),
        attributes: vec![state(State::PreActive)],
        version: 1,
    };
    let material = Zeroizing::new(vec![1u8; 16]);
    let created = store
        .register(obj, material, None, usize::MAX)
        .await
        .unwrap();
    assert_eq!(found(&store, &[state(State::PreActive)]), ["k"]);

    let mut newer = created.draft();
    newer.set(tags::STATE, Value::Enumeration(State::Active.to_u32()));
    newer.version = 3;
    store
        .install(newer.finish_with(|o| o.into()).record(), false)
        .unwrap();
    assert!(found(&store, &[state(State::PreActive)]).is_empty());
    assert_eq!(found(&store, &[state(State::Active)]), ["k"]);

    let mut older = created.draft();
    older.set(tags::STATE, Value::Enumeration(State::Compromised.to_u32()));
    older.version = 2;
    store
        .install(older.finish_with(|o| o.into()).record(), false)
        .unwrap();
    assert!(found(&store, &[state(State::Compromised)]).is_empty());
    assert_eq!(found(&store, &[state(State::Active)]), ["k"]);

    store.uninstall("k");
    assert!(found(&store, &[state(State::Active)]).is_empty());
    let secret = Attribute::enumeration(tags::OBJECT_TYPE, ObjectType::SecretData);
    assert!(found(&store, &[secret]).is_empty());
}

/// One attribute of every kind the blob stores: standard ones of each item type, structures
/// (Name, Digest), 1.x Attribute Indexes on standard and custom attributes, a vendor attribute,
/// an unknown 1.x name and an attribute under an extension tag.
fn every_kind_of_attribute() -> Vec<Attribute> {
    use kmip_wire::model::{AttributeName, CryptographicAlgorithm, Name};
    use kmip_wire::ttlv::Ttlv;
    let digest = Value::Structure(vec![
        Ttlv::new(tags::HASHING_ALGORITHM, Value::Enumeration(4)),
        Ttlv::new(
            tags::DIGEST_VALUE,
            Value::ByteString(bytes::Bytes::from_static(&[7; 32])),
        ),
    ]);
    vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
        Attribute::text(tags::UNIQUE_IDENTIFIER, "k"),
        Attribute::name(&Name::new("first")),
        Attribute {
            index: Some(1),
            ..Attribute::name(&Name::new("second"))
        },
        Attribute::new(tags::DIGEST, digest),
        Attribute::boolean(tags::FRESH, true),
        Attribute::datetime(tags::INITIAL_DATE, 1_700_000_000),
        Attribute::new(tags::LEASE_TIME, Value::Interval(3600)),
        Attribute::new(tags::USAGE_LIMITS_TOTAL, Value::LongInteger(1 << 40)),
        Attribute::text(tags::OBJECT_GROUP, "g"),
        Attribute::vendor("x", "Product", Value::TextString("array".into())),
        Attribute {
            index: Some(2),
            ..Attribute::vendor("acme", "Slot", Value::Integer(9))
        },
        Attribute::vendor(
            "y",
            "Big",
            Value::BigInteger(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 1, 0])),
        ),
        Attribute::vendor("y", "When", Value::DateTimeExtended(1_700_000_000_123_456)),
        Attribute::vendor("y", "Long", Value::TextString("é".repeat(200))),
        Attribute {
            name: AttributeName::Unknown("Not An Attribute".into()),
            index: None,
            value: Value::ByteString(bytes::Bytes::from_static(b"opaque")),
        },
        Attribute {
            name: AttributeName::Tag(kmip_wire::ttlv::Tag(0x54_0001)),
            index: None,
            value: Value::Boolean(false),
        },
    ]
}

fn draft_of(attributes: Vec<Attribute>) -> ObjectDraft {
    ObjectDraft {
        uid: "k".into(),
        kind: ObjectKind::SymmetricKey,
        owner: "purefa".into(),
        attributes,
        version: 3,
    }
}

/// A draft finished into the compact form and drafted again holds the same attributes, in the
/// same order, with their indexes; the owner and version survive too.
#[test]
fn every_kind_of_attribute_survives_a_draft_round_trip() {
    let attributes = every_kind_of_attribute();
    let obj = draft_of(attributes.clone()).finish();
    assert_eq!(obj.attributes().collect::<Vec<_>>(), attributes);
    let again = obj.draft();
    assert_eq!(again.attributes, attributes);
    assert_eq!((&*again.owner, again.version), ("purefa", 3));
    assert_eq!(&*again.uid, "k");
}

/// The accessors read single attributes out of the blob: the first instance, all instances
/// (indexes kept), by name for custom ones, enumerations, and nothing for what is absent.
#[test]
fn accessors_read_single_attributes_from_the_blob() {
    use kmip_wire::model::{AttributeName, CryptographicAlgorithm};
    let obj = draft_of(every_kind_of_attribute()).finish();
    let names: Vec<(Option<i32>, String)> = obj
        .all(tags::NAME)
        .map(|a| (a.index, a.as_name().unwrap().value))
        .collect();
    assert_eq!(
        names,
        vec![(None, "first".into()), (Some(1), "second".into())]
    );
    assert_eq!(
        obj.first(tags::NAME)
            .and_then(|a| a.as_name())
            .unwrap()
            .value,
        "first"
    );
    assert_eq!(
        obj.enum_of(tags::CRYPTOGRAPHIC_ALGORITHM),
        Some(CryptographicAlgorithm::Aes.to_u32())
    );
    assert_eq!(
        obj.enum_of(tags::CRYPTOGRAPHIC_LENGTH),
        None,
        "not an enumeration"
    );
    assert_eq!(
        obj.first(tags::CRYPTOGRAPHIC_LENGTH)
            .and_then(|a| a.as_int()),
        Some(256)
    );
    assert!(obj.first(tags::STATE).is_none());
    assert!(obj.first(tags::DIGEST).is_some());
    let slot = AttributeName::Vendor {
        vendor: "acme".into(),
        name: "Slot".into(),
    };
    let found: Vec<Attribute> = obj.find(&slot).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].index, &found[0].value),
        (Some(2), &Value::Integer(9))
    );
    let extension = kmip_wire::ttlv::Tag(0x54_0001);
    assert_eq!(
        obj.first(extension).map(|a| a.value),
        Some(Value::Boolean(false))
    );
    assert_eq!(obj.find(&AttributeName::Unknown("other".into())).count(), 0);
    // The Unique Identifier equal to the object's is stored as a marker and read back as text;
    // any other value is stored as it is.
    let uid_of = |o: &StoredObject| {
        o.first(tags::UNIQUE_IDENTIFIER)
            .and_then(|a| a.as_text().map(str::to_owned))
    };
    assert_eq!(uid_of(&obj).as_deref(), Some("k"));
    let odd = draft_of(vec![Attribute::text(tags::UNIQUE_IDENTIFIER, "not-k")]).finish();
    assert_eq!(uid_of(&odd).as_deref(), Some("not-k"));
    assert_eq!(obj.all(tags::OBJECT_GROUP).count(), 1);
}

/// The error of a test's write: the store's, or the object is missing.
#[derive(Debug)]
#[allow(dead_code)] // Only printed when a test fails.
enum WriteError {
    Store(StoreError),
    Missing,
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> WriteError {
        WriteError::Store(e)
    }
}

impl From<NoSuchObject> for WriteError {
    fn from(_: NoSuchObject) -> WriteError {
        WriteError::Missing
    }
}

/// A vault written before format 2 holds format-1 blobs: they are read with every attribute,
/// written in format 2 on the object's next write, and read the same after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_1_blobs_are_read_and_rewritten_in_format_2() {
    let dir = tempfile::tempdir().unwrap();
    let attributes = every_kind_of_attribute();
    let old_blob = meta::encode_format_1("purefa", &attributes);
    {
        let vault = Vault::open(dir.path(), MasterKeySource::VaultDir).unwrap();
        let record = ObjectRecord {
            uid: "k".into(),
            kind: ObjectKind::SymmetricKey,
            meta: old_blob.clone(),
            version: 0,
        };
        vault
            .import(record, Zeroizing::new(vec![1; 32]), None)
            .await
            .unwrap();
    }
    let store = open(dir.path()).await;
    let obj = store.get("k").unwrap();
    assert_eq!(obj.attributes().collect::<Vec<_>>(), attributes);
    assert_eq!(&*obj.owner, "purefa");
    let stored = || async {
        let all = store.backend().load_all().await.unwrap();
        all.into_iter().find(|r| &*r.uid == "k").unwrap().meta
    };
    assert_eq!(stored().await, old_blob, "reading alone rewrites nothing");
    store
        .update("k", |o| {
            o.set(tags::FRESH, Value::Boolean(false));
            Ok::<(), WriteError>(())
        })
        .await
        .unwrap();
    let new_blob = stored().await;
    assert!(matches!(
        meta::parse(&new_blob),
        Ok(meta::Parsed::Compact { .. })
    ));
    assert!(new_blob.len() < old_blob.len(), "format 2 is the smaller");
    drop(store);
    let store = open(dir.path()).await;
    let mut expected = attributes;
    expected.retain(|a| !a.is(tags::FRESH));
    expected.push(Attribute::boolean(tags::FRESH, false));
    let obj = store.get("k").unwrap();
    assert_eq!(obj.attributes().collect::<Vec<_>>(), expected);
}

/// A blob that is not a metadata record of a known format is refused, naming the object.
#[test]
fn unknown_formats_are_refused() {
    let record = |meta: bytes::Bytes| ObjectRecord {
        uid: "k".into(),
        kind: ObjectKind::SymmetricKey,
        meta,
        version: 1,
    };
    let garbage =
        StoredObject::from_record(record(bytes::Bytes::from_static(b"nonsense")), |o| o.into());
    assert!(matches!(garbage, Err(StoreError::BadMeta(uid, _)) if uid == "k"));
    let future = meta::encode("purefa", "k", &[]).to_vec();
    // The format number is the first item's value (after the root's type, tag and one-byte
    // length, and its own type and tag): 2 → 3.
    let mut future = future;
    assert_eq!(future[9], 4, "2, zigzagged");
    future[9] = 6;
    let refused = StoredObject::from_record(record(future.into()), |o| o.into());
    assert!(matches!(refused, Err(StoreError::BadMeta(..))));
    // A format-2 blob cut short, or with a byte that is no boolean, is damaged.
    let whole = meta::encode("purefa", "k", &every_kind_of_attribute());
    let cut = whole.slice(..whole.len() - 1);
    assert!(StoredObject::from_record(record(cut), |o| o.into()).is_err());
    let lone = meta::encode("purefa", "k", &[Attribute::boolean(tags::FRESH, true)]);
    let mut bad = lone.to_vec();
    *bad.last_mut().unwrap() = 2;
    assert!(StoredObject::from_record(record(bad.into()), |o| o.into()).is_err());
}

/// Concurrent writes to one object are still serialised (none is lost) though the lock exists
/// only while it is wanted, and none is left once they are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_object_are_serialised_and_leave_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let spec = KeySpec {
        algorithm: KeyAlgorithm::Aes,
        bits: 256,
        extractable: true,
        sensitive: false,
        label: None,
    };
    let draft = draft_of(vec![Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 0)]);
    let created = store.create(draft, spec, usize::MAX).await.unwrap();
    const WRITERS: i32 = 24;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .update("k", |o| {
                    let n = o
                        .first(tags::CRYPTOGRAPHIC_LENGTH)
                        .and_then(Attribute::as_int)
                        .unwrap_or(-1);
                    o.set(tags::CRYPTOGRAPHIC_LENGTH, Value::Integer(n + 1));
                    Ok::<(), WriteError>(())
                })
                .await
                .unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let obj = store.get("k").unwrap();
    assert_eq!(
        obj.first(tags::CRYPTOGRAPHIC_LENGTH)
            .and_then(|a| a.as_int()),
        Some(WRITERS)
    );
    assert_eq!(obj.version, created.version + WRITERS as u64);
    assert_eq!(store.write_locks.len(), 0);
    // Every version shares the first one's identifier string with the map's key: one copy.
    let key = store.objects.get("k").unwrap().key().clone();
    assert!(Arc::ptr_eq(&key, &obj.uid));
    assert!(Arc::ptr_eq(&created.uid, &obj.uid));
}
