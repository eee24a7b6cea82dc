//! The index as a data structure: what each attribute kind is found by, and that changes and
//! removals leave nothing behind. Its agreement with Locate's full scan is tested in
//! `ops/tests/locate_index.rs`, over the store.

use super::*;
use crate::kmip::store::ObjectDraft;
use kmip_wire::model::{CryptographicAlgorithm, Name, State};

fn object(uid: &str, kind: ObjectKind, attributes: Vec<Attribute>) -> Arc<StoredObject> {
    Arc::new(
        ObjectDraft {
            uid: uid.to_owned(),
            kind,
            owner: "purefa".into(),
            attributes,
            version: 1,
        }
        .finish_with(|o| o.into()),
    )
}

fn key(uid: &str, attributes: Vec<Attribute>) -> Arc<StoredObject> {
    object(uid, ObjectKind::SymmetricKey, attributes)
}

fn uids(found: Option<Vec<Arc<StoredObject>>>) -> Vec<String> {
    let mut uids: Vec<String> = found
        .expect("the filter is indexed")
        .iter()
        .map(|o| o.uid.to_string())
        .collect();
    uids.sort();
    uids
}

fn x(name: &str, value: Value) -> Attribute {
    Attribute {
        name: AttributeName::from_v1_name(&format!("x-{name}")),
        index: None,
        value,
    }
}

fn state(s: State) -> Attribute {
    Attribute::enumeration(tags::STATE, s)
}

#[test]
fn every_indexed_attribute_kind_finds_exactly_its_objects() {
    let mut index = Index::default();
    let a = key(
        "a",
        vec![
            Attribute::name(&Name::new("disk-1")),
            Attribute::name(&Name::new("disk-1-alias")),
            Attribute::text(tags::OBJECT_GROUP, "array-1"),
            state(State::Active),
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            x("tier", Value::TextString("gold".into())),
            x("shelf", Value::Integer(7)),
            Attribute::vendor("purestorage", "mode", Value::Enumeration(2)),
            Attribute::datetime(tags::ACTIVATION_DATE, 1_000),
        ],
    );
    let b = object(
        "b",
        ObjectKind::SecretData,
        vec![
            Attribute::name(&Name::new("disk-2")),
            Attribute::text(tags::OBJECT_GROUP, "array-1"),
            state(State::PreActive),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
            x("tier", Value::TextString("silver".into())),
            x("shelf", Value::Integer(7)),
            Attribute::datetime(tags::ACTIVATION_DATE, 2_000),
        ],
    );
    index.set("a", Some(&a));
    index.set("b", Some(&b));
    let find = |f: Vec<Attribute>| uids(index.candidates(&f));
    assert_eq!(
        find(vec![Attribute::name(&Name::new("disk-1-alias"))]),
        ["a"]
    );
    assert_eq!(index.named("disk-2").map(|v| v.len()), Some(1));
    assert_eq!(
        find(vec![Attribute::text(tags::OBJECT_GROUP, "array-1")]),
        ["a", "b"]
    );
    assert_eq!(find(vec![state(State::PreActive)]), ["b"]);
    assert_eq!(
        find(vec![Attribute::enumeration(
            tags::CRYPTOGRAPHIC_ALGORITHM,
            CryptographicAlgorithm::Aes
        )]),
        ["a"]
    );
    assert_eq!(
        find(vec![Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128)]),
        ["b"]
    );
    assert_eq!(
        find(vec![x("tier", Value::TextString("gold".into()))]),
        ["a"]
    );
    assert_eq!(find(vec![x("shelf", Value::Integer(7))]), ["a", "b"]);
    assert_eq!(
        find(vec![Attribute::vendor(
            "purestorage",
            "mode",
            Value::Enumeration(2)
        )]),
        ["a"]
    );
    // Neither carries an Object Type attribute: the type their kinds imply finds them.
    assert_eq!(
        find(vec![Attribute::enumeration(
            tags::OBJECT_TYPE,
            ObjectType::SecretData
        )]),
        ["b"]
    );
    // One date is that date; two instances bound a range.
    let activation = |d| Attribute::datetime(tags::ACTIVATION_DATE, d);
    assert_eq!(find(vec![activation(2_000)]), ["b"]);
    assert_eq!(find(vec![activation(500), activation(1_500)]), ["a"]);
    assert_eq!(find(vec![activation(2_500), activation(500)]), ["a", "b"]);
    assert!(find(vec![activation(1_001), activation(1_999)]).is_empty());
    assert!(find(vec![Attribute::datetime(tags::DEACTIVATION_DATE, 1_000)]).is_empty());
    // Several indexed attributes: what all of them hold.
    assert_eq!(
        find(vec![
            Attribute::text(tags::OBJECT_GROUP, "array-1"),
            x("shelf", Value::Integer(7)),
            activation(1_500),
            activation(3_000),
        ]),
        ["b"]
    );
    // A value nobody has, whatever else the filter holds, finds nothing.
    assert!(find(vec![
        Attribute::text(tags::OBJECT_GROUP, "array-1"),
        x("tier", Value::TextString("bronze".into())),
    ])
    .is_empty());
    // Usage Mask is a bit subset, not a value: alone it is not indexed, so Locate scans.
    assert!(index
        .candidates(&[Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 4)])
        .is_none());
    assert!(index.candidates(&[]).is_none());
    // Nor is an Object Type that is not an enumeration (Locate compares it differently).
    assert!(index
        .candidates(&[Attribute::new(tags::OBJECT_TYPE, Value::Integer(2))])
        .is_none());
}

#[test]
fn changes_and_removals_move_objects_between_values_and_leave_nothing_behind() {
    let mut index = Index::default();
    let v1 = key(
        "k",
        vec![
            state(State::PreActive),
            x("tier", Value::TextString("gold".into())),
            Attribute::datetime(tags::LAST_CHANGE_DATE, 10),
        ],
    );
    index.set("k", Some(&v1));
    let v2 = key(
        "k",
        vec![
            state(State::Active),
            Attribute::name(&Name::new("renamed")),
            Attribute::datetime(tags::LAST_CHANGE_DATE, 20),
        ],
    );
    index.set("k", Some(&v2));
    let find = |index: &Index, f: Attribute| uids(index.candidates(&[f]));
    assert!(find(&index, state(State::PreActive)).is_empty());
    assert_eq!(find(&index, state(State::Active)), ["k"]);
    assert!(find(&index, x("tier", Value::TextString("gold".into()))).is_empty());
    assert!(find(&index, Attribute::datetime(tags::LAST_CHANGE_DATE, 10)).is_empty());
    assert_eq!(
        find(&index, Attribute::datetime(tags::LAST_CHANGE_DATE, 20)),
        ["k"]
    );
    // The candidates are the version the index holds, the latest.
    let found = index.candidates(&[state(State::Active)]).unwrap();
    assert!(Arc::ptr_eq(&found[0], &v2));

    index.set("k", None);
    assert!(index.values.is_empty(), "{:?}", index.values.keys());
    assert!(index.dates.is_empty());
    assert!(index.by_uid.is_empty());
    assert_eq!(index.named("renamed").map(|v| v.len()), Some(0));
    // Forgetting an unknown object is nothing; the freed slot is taken again.
    index.set("unknown", None);
    index.set("next", Some(&key("next", vec![state(State::Active)])));
    assert_eq!(index.slots.len(), 1);
    assert_eq!(find(&index, state(State::Active)), ["next"]);
}

#[test]
fn a_shared_value_turns_into_a_bitmap_and_back_without_losing_a_slot() {
    let mut index = Index::default();
    let n = SORTED_MIN * 3;
    let objects: Vec<Arc<StoredObject>> = (0..n)
        .map(|i| key(&format!("k{i}"), vec![state(State::Active)]))
        .collect();
    for o in &objects {
        index.set(&o.uid, Some(o));
    }
    let active = |index: &Index| {
        index
            .values
            .get(&AttributeName::Tag(tags::STATE))
            .and_then(|v| v.get(&index.hasher.hash_one(Scalar::Enum(State::Active.to_u32()))))
            .map(|p| (matches!(p, Posting::Bits(_)), p.len()))
    };
    assert_eq!(active(&index), Some((true, n)));
    // Deactivating most of them brings the list back to a sorted vector, with the rest in it.
    for o in &objects[..n - 10] {
        index.set(&o.uid, Some(&key(&o.uid, vec![state(State::Deactivated)])));
    }
    assert_eq!(active(&index), Some((false, 10)));
    let mut left = uids(index.candidates(&[state(State::Active)]));
    let mut want: Vec<String> = objects[n - 10..]
        .iter()
        .map(|o| o.uid.to_string())
        .collect();
    left.sort();
    want.sort();
    assert_eq!(left, want);
    // The smallest set leads: one Name among thousands of Deactivated objects.
    index.set(
        "k0",
        Some(&key(
            "k0",
            vec![
                state(State::Deactivated),
                Attribute::name(&Name::new("one")),
            ],
        )),
    );
    assert_eq!(
        uids(index.candidates(&[
            state(State::Deactivated),
            Attribute::name(&Name::new("one"))
        ])),
        ["k0"]
    );
}

#[test]
fn a_posting_list_is_two_words() {
    assert_eq!(std::mem::size_of::<Posting>(), 16);
}

#[test]
fn posting_lists_keep_set_semantics_in_every_form() {
    for limit in [0usize, 1 << 20] {
        let mut p = Posting::One(5);
        let mut model = std::collections::BTreeSet::from([5u32]);
        // A pseudo-random walk of inserts and removals, mirrored in a BTreeSet.
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let slot = seed % 3_000;
            if seed & 1 == 0 || model.len() <= 1 {
                p.insert(slot, limit);
                model.insert(slot);
            } else if model.contains(&slot) {
                assert_eq!(p.remove(slot, limit), model.len() == 1);
                model.remove(&slot);
            }
            assert_eq!(p.len(), model.len());
            assert!(p.contains(slot) == model.contains(&slot));
        }
        assert_eq!(p.slots(), model.iter().copied().collect::<Vec<_>>());
    }
}

/// Every value's slots, every date's slots and every slot's identifier, in a fixed order.
type Contents = (
    Vec<(String, u64, Vec<u32>)>,
    Vec<(String, i64, Vec<u32>)>,
    Vec<Option<String>>,
);

fn contents(index: &Index) -> Contents {
    let sorted = |p: &Posting| {
        let mut slots = p.slots();
        slots.sort_unstable();
        slots
    };
    let mut values: Vec<_> = index
        .values
        .iter()
        .flat_map(|(name, by)| {
            by.iter()
                .map(move |(k, p)| (format!("{name:?}"), *k, sorted(p)))
        })
        .collect();
    values.sort();
    let mut dates: Vec<_> = index
        .dates
        .iter()
        .flat_map(|(tag, by)| {
            by.iter()
                .map(move |(d, p)| (format!("{tag:?}"), *d, sorted(p)))
        })
        .collect();
    dates.sort();
    let slots = index
        .slots
        .iter()
        .map(|o| o.as_ref().map(|o| o.uid.to_string()))
        .collect();
    (values, dates, slots)
}

#[test]
fn a_build_in_two_halves_equals_entering_every_object_in_turn() {
    let n = PARALLEL_BUILD_MIN + 2_345;
    let objects: Vec<Arc<StoredObject>> = (0..n)
        .map(|i| {
            key(
                &format!("k{i}"),
                vec![
                    Attribute::name(&Name::new(&format!("disk-{i}"))),
                    // Groups with members in both halves, and some in one only.
                    Attribute::text(tags::OBJECT_GROUP, &format!("group-{}", i % 7)),
                    Attribute::text(tags::OBJECT_GROUP, &format!("half-{}", i * 2 / n)),
                    x("bucket", Value::TextString(format!("b{}", i % 3_000))),
                    state(if i % 5 == 0 {
                        State::Deactivated
                    } else {
                        State::Active
                    }),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128 << (i % 2)),
                    Attribute::datetime(tags::INITIAL_DATE, 1_700_000_000 + (i / 1_000) as i64),
                ],
            )
        })
        .collect();
    let built = Index::build(&objects);
    let mut one_by_one = Index {
        hasher: built.hasher.clone(),
        ..Index::default()
    };
    for o in &objects {
        one_by_one.set(&o.uid, Some(o));
    }
    assert_eq!(contents(&built), contents(&one_by_one));
    for (slot, o) in objects.iter().enumerate() {
        assert_eq!(built.slot_of(&o.uid), Some(slot as u32));
    }
    assert_eq!(
        uids(built.candidates(&[Attribute::text(tags::OBJECT_GROUP, "group-3")])).len(),
        objects.len().div_ceil(7) - usize::from(n % 7 <= 3)
    );

    // An object loaded twice (no backend does) is entered as an update, as one by one would.
    let mut twice = objects.clone();
    twice.push(key("k0", vec![state(State::Compromised)]));
    let built = Index::build(&twice);
    assert_eq!(built.slot_of("k0"), Some(0));
    assert_eq!(uids(built.candidates(&[state(State::Compromised)])), ["k0"]);
}
