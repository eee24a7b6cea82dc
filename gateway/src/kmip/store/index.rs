//! The store's secondary index, so that Locate by the attributes clients filter on (Name,
//! Object Group, State, Object Type, Cryptographic Algorithm and Length, custom attributes,
//! dates) looks at the few objects that can match instead of every object.
//!
//! Every object has a dense slot number; the slot table holds the object's current version, so
//! the index keeps no identifier per entry. Attribute values map to posting lists of slots, and
//! each date attribute to an ordered set of (date, slot) for ranges. The index answers a
//! *superset* of the objects a filter matches; Locate still applies the whole filter to them.

use super::StoredObject;
use hashbrown::{hash_table, HashTable};
use kmip_backends::ObjectKind;
use kmip_wire::model::{Attribute, AttributeName, KmipEnum, ObjectType};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use std::collections::btree_map::Entry;
use std::collections::{hash_map, BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;

/// The standard attributes indexed by value (custom attributes always are): those clients
/// locate by. Others (Usage Mask, a bit subset; structures) are matched on the candidates.
const VALUE_TAGS: &[Tag] = &[
    tags::NAME,
    tags::OBJECT_GROUP,
    tags::STATE,
    tags::OBJECT_TYPE,
    tags::CRYPTOGRAPHIC_ALGORITHM,
    tags::CRYPTOGRAPHIC_LENGTH,
];

/// A posting list stays a sorted vector up to this many slots whatever the number of objects,
/// so that small stores never hold bitmaps.
const SORTED_MIN: usize = 1024;

/// A posting list becomes a bitmap once its sorted form (32 bits a member) would be larger than
/// a bitmap over every slot (1 bit a slot): the memory of a value many objects share stays
/// bounded by the number of objects, and an insertion never moves a long vector.
const BITS_PER_MEMBER: usize = 32;

/// The object type an object of this kind is, whether or not it carries the attribute.
pub fn object_type_of(k: ObjectKind) -> ObjectType {
    match k {
        ObjectKind::SymmetricKey => ObjectType::SymmetricKey,
        ObjectKind::SecretData => ObjectType::SecretData,
        ObjectKind::OpaqueObject => ObjectType::OpaqueObject,
        ObjectKind::Certificate => ObjectType::Certificate,
        ObjectKind::PublicKey => ObjectType::PublicKey,
        ObjectKind::PrivateKey => ObjectType::PrivateKey,
        ObjectKind::Template => ObjectType::Template,
        ObjectKind::SplitKey => ObjectType::SplitKey,
        ObjectKind::PgpKey => ObjectType::PgpKey,
        ObjectKind::CertificateRequest => ObjectType::CertificateRequest,
    }
}

/// An indexed value, before it is hashed into its key. Equal attribute values always give
/// equal keys; unequal ones may share one (an Integer and a Long Integer, or a hash collision):
/// harmless, the whole filter is applied to the candidates.
#[derive(Hash)]
enum Scalar<'a> {
    Text(&'a str),
    Int(i64),
    Enum(u32),
    Bool(bool),
}

impl Scalar<'_> {
    fn of(v: &Value) -> Option<Scalar<'_>> {
        Some(match v {
            Value::TextString(s) => Scalar::Text(s),
            Value::Integer(i) => Scalar::Int(i64::from(*i)),
            Value::LongInteger(i) | Value::DateTime(i) | Value::DateTimeExtended(i) => {
                Scalar::Int(*i)
            }
            Value::Interval(i) => Scalar::Int(i64::from(*i)),
            Value::Enumeration(e) => Scalar::Enum(*e),
            Value::Boolean(b) => Scalar::Bool(*b),
            Value::Structure(_) | Value::BigInteger(_) | Value::ByteString(_) => return None,
        })
    }
}

/// What one attribute (of an object or of a filter) is indexed under, as Locate compares it: a
/// standard attribute with a date bounds a range, a Name is compared by its value, others by
/// equal value.
enum Term<'a> {
    Date(Tag, i64),
    /// The attribute and its value's key: a keyed hash (so a value costs 8 bytes whatever its
    /// length, and no client can choose values that collide).
    Value(&'a AttributeName, u64),
}

fn term<'a>(a: &'a Attribute, hasher: &RandomState) -> Option<Term<'a>> {
    if let (Some(tag), Some(d)) = (a.tag(), a.as_datetime()) {
        return Some(Term::Date(tag, d));
    }
    let indexed = match &a.name {
        AttributeName::Tag(t) => VALUE_TAGS.contains(t),
        AttributeName::Vendor { .. } => true,
        AttributeName::Unknown(_) => false,
    };
    // Locate takes an Object Type that is not an enumeration to match every object without
    // the attribute (the model never reads one): not a value the index can narrow by.
    if !indexed || (a.is(tags::OBJECT_TYPE) && !matches!(a.value, Value::Enumeration(_))) {
        return None;
    }
    let key = if a.is(tags::NAME) {
        hasher.hash_one(Scalar::Text(name_value(a)?))
    } else {
        hasher.hash_one(Scalar::of(&a.value)?)
    };
    Some(Term::Value(&a.name, key))
}

/// A Name's Name Value, read in place (`Attribute::as_name` copies the structure to decode it:
/// four allocations an object when the index of a million is built at start). Locate compares
/// the value `as_name` reads, the same first Name Value field.
fn name_value(a: &Attribute) -> Option<&str> {
    match &a.value {
        Value::Structure(fields) => fields
            .iter()
            .find(|f| f.tag == tags::NAME_VALUE)
            .and_then(Ttlv::as_text),
        _ => None,
    }
}

/// Object Type's name, for the type implied by an object's kind.
const OBJECT_TYPE: AttributeName = AttributeName::Tag(tags::OBJECT_TYPE);

/// Passes a value key through as its own hash: a key is already a keyed hash of the value
/// ([`Term::Value`]), uniformly spread and unknown to clients, so hashing it again (once per
/// attribute of each of a million objects at start) would only cost time.
#[derive(Default)]
struct ValueKeyHasher(u64);

impl Hasher for ValueKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

/// Value key → the objects that carry that value of one attribute.
type ByValue = HashMap<u64, Posting, BuildHasherDefault<ValueKeyHasher>>;

/// Fewest objects for which [`Index::build`] uses two threads: below, starting one costs more
/// than it saves.
const PARALLEL_BUILD_MIN: usize = 10_000;

/// An object's indexed values: (attribute, value key) pairs.
type Values = Vec<(AttributeName, u64)>;

/// Every attribute of `obj`: custom attributes have names no list knows, so the index walks
/// them all (the one place outside `object.rs` and `changed_attributes` that does).
fn attributes_of(obj: &StoredObject) -> impl Iterator<Item = Attribute> + '_ {
    obj.attributes()
}

/// Everything `obj` is indexed under, each once: its indexed values (and the Object Type its
/// kind implies) and its dates.
fn terms(obj: &StoredObject, hasher: &RandomState) -> (Values, Vec<(Tag, i64)>) {
    let implied = Scalar::Enum(object_type_of(obj.kind).to_u32());
    let mut values: Values = vec![(OBJECT_TYPE, hasher.hash_one(implied))];
    let mut dates = Vec::new();
    for a in attributes_of(obj) {
        match term(&a, hasher) {
            Some(Term::Value(name, s)) if !values.iter().any(|(n, v)| n == name && *v == s) => {
                values.push((name.clone(), s));
            }
            Some(Term::Date(t, d)) => dates.push((t, d)),
            Some(Term::Value(..)) | None => {}
        }
    }
    dates.sort_unstable();
    dates.dedup();
    (values, dates)
}

/// The largest posting list kept sorted when the index has `slots` slots.
fn sorted_max(slots: usize) -> usize {
    SORTED_MIN.max(slots / BITS_PER_MEMBER)
}

/// The slots of the objects that carry one value.
#[derive(Debug)]
enum Posting {
    One(u32),
    /// Ascending, no duplicates, at most [`sorted_max`] long. Boxed, as the bitmap, so that a
    /// list is 16 bytes: most values (Names) have one object, and a bare `Vec` would make
    /// every list 24.
    #[allow(clippy::box_collection)]
    Sorted(Box<Vec<u32>>),
    /// Boxed: few lists are this long, and every list is then one pointer smaller.
    Bits(Box<Bitmap>),
}

/// A set of slots as one bit per slot.
#[derive(Debug, Default)]
struct Bitmap {
    words: Vec<u64>,
    len: usize,
}

impl Bitmap {
    fn place(slot: u32) -> (usize, u64) {
        (slot as usize / 64, 1 << (slot % 64))
    }

    fn contains(&self, slot: u32) -> bool {
        let (word, bit) = Self::place(slot);
        self.words.get(word).is_some_and(|w| w & bit != 0)
    }

    fn insert(&mut self, slot: u32) {
        let (word, bit) = Self::place(slot);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & bit == 0 {
            self.words[word] |= bit;
            self.len += 1;
        }
    }

    fn remove(&mut self, slot: u32) {
        let (word, bit) = Self::place(slot);
        if let Some(w) = self.words.get_mut(word) {
            if *w & bit != 0 {
                *w &= !bit;
                self.len -= 1;
            }
        }
    }

    fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            // Each step takes the lowest set bit off: as many steps as members.
            std::iter::successors(Some(w).filter(|w| *w != 0), |w| {
                Some(w & (w - 1)).filter(|w| *w != 0)
            })
            .map(move |w| i as u32 * 64 + w.trailing_zeros())
        })
    }
}

impl Posting {
    fn len(&self) -> usize {
        match self {
            Posting::One(_) => 1,
            Posting::Sorted(v) => v.len(),
            Posting::Bits(b) => b.len,
        }
    }

    fn contains(&self, slot: u32) -> bool {
        match self {
            Posting::One(s) => *s == slot,
            Posting::Sorted(v) => v.binary_search(&slot).is_ok(),
            Posting::Bits(b) => b.contains(slot),
        }
    }

    fn slots(&self) -> Vec<u32> {
        match self {
            Posting::One(s) => vec![*s],
            Posting::Sorted(v) => v.to_vec(),
            Posting::Bits(b) => b.slots().collect(),
        }
    }

    fn insert(&mut self, slot: u32, slots: usize) {
        match self {
            Posting::One(s) if *s == slot => {}
            Posting::One(s) => {
                *self = Posting::Sorted(Box::new(vec![slot.min(*s), slot.max(*s)]));
            }
            Posting::Sorted(v) => {
                if let Err(at) = v.binary_search(&slot) {
                    v.insert(at, slot);
                }
                if v.len() > sorted_max(slots) {
                    let mut b = Box::<Bitmap>::default();
                    v.iter().for_each(|s| b.insert(*s));
                    *self = Posting::Bits(b);
                }
            }
            Posting::Bits(b) => b.insert(slot),
        }
    }

    /// Adds every slot of `later`'s (an index built after this one's slots).
    fn append(&mut self, later: &Posting, slots: usize) {
        for slot in later.slots() {
            self.insert(slot, slots);
        }
    }

    /// Takes `slot` out; whether the list is empty now.
    fn remove(&mut self, slot: u32, slots: usize) -> bool {
        match self {
            Posting::One(s) => return *s == slot,
            Posting::Sorted(v) => {
                if let Ok(at) = v.binary_search(&slot) {
                    v.remove(at);
                }
                if let [only] = v.as_slice() {
                    *self = Posting::One(*only);
                }
            }
            Posting::Bits(b) => {
                b.remove(slot);
                // Half the limit, so that a list at the limit does not flip at every change.
                if b.len < sorted_max(slots) / 2 {
                    *self = Posting::Sorted(Box::new(b.slots().collect()));
                }
            }
        }
        self.len() == 0
    }
}

/// The secondary index of every object in the store.
#[derive(Default)]
pub(super) struct Index {
    /// Slot → the object's current version; `None` for a free slot.
    slots: Vec<Option<Arc<StoredObject>>>,
    /// Slots of removed objects, used again first.
    free: Vec<u32>,
    /// Unique identifier → slot, hashed by the identifier of the object in the slot (no copy).
    by_uid: HashTable<u32>,
    hasher: RandomState,
    /// Attribute → value key → the objects that carry it.
    values: HashMap<AttributeName, ByValue>,
    /// Date attribute → date → the objects that carry it, in date order. Objects created or
    /// changed in the same second share one entry.
    dates: HashMap<Tag, BTreeMap<i64, Posting>>,
    /// Set once every u32 slot is taken (never, in memory we have): from then on the index
    /// answers nothing and every Locate scans, which is slow but right.
    exhausted: bool,
}

impl Index {
    fn slot_of(&self, uid: &str) -> Option<u32> {
        let slots = &self.slots;
        self.by_uid
            .find(self.hasher.hash_one(uid), |s| {
                slots[*s as usize].as_ref().is_some_and(|o| &*o.uid == uid)
            })
            .copied()
    }

    /// Room for `additional` more objects at once (at open, the number loaded), so that the
    /// identifier table is not rebuilt as it grows: each rebuild reads every object's
    /// identifier again.
    fn reserve(&mut self, additional: usize) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_uid.reserve(additional, |s| {
            hasher.hash_one(slots[*s as usize].as_ref().map_or("", |o| &*o.uid))
        });
        self.slots.reserve(additional);
    }

    /// The index of `objects`, as [`Index::set`] on each in turn makes it.
    pub(super) fn build(objects: &[Arc<StoredObject>]) -> Index {
        if objects.len() < PARALLEL_BUILD_MIN {
            return Index::build_here(objects, Index::default());
        }
        // In two halves on two threads, the second with slots numbered after the first's, so
        // that its postings join the first's at their ends.
        let (first, second) = objects.split_at(objects.len() / 2);
        let hasher = RandomState::new();
        let (index, later) = std::thread::scope(|s| {
            let later = s.spawn(|| {
                Index::build_here(
                    second,
                    Index {
                        slots: vec![None; first.len()],
                        hasher: hasher.clone(),
                        ..Index::default()
                    },
                )
            });
            let mut index = Index {
                hasher: hasher.clone(),
                ..Index::default()
            };
            // Room for both halves, so that joining them rebuilds no table.
            index.reserve(objects.len());
            let index = Index::build_here(first, index);
            (index, later.join())
        });
        let later = later.unwrap_or_else(|panicked| std::panic::resume_unwind(panicked));
        // An object in both halves (a backend never loads one twice) is entered in order.
        index
            .absorb(later, first.len())
            .unwrap_or_else(|| Index::build_here(objects, Index::default()))
    }

    /// `index` with `objects` entered one by one.
    fn build_here(objects: &[Arc<StoredObject>], mut index: Index) -> Index {
        index.reserve(objects.len());
        for obj in objects {
            index.set(&obj.uid, Some(obj));
        }
        index
    }

    /// This index joined with `later`, built with the same hasher over the objects after this
    /// one's `own` slots. `None` if an object is in both.
    fn absorb(mut self, later: Index, own: usize) -> Option<Index> {
        if self.exhausted || later.exhausted || !self.free.is_empty() || !later.free.is_empty() {
            return None;
        }
        let Index {
            slots,
            values,
            dates,
            ..
        } = later;
        self.slots.extend(slots.into_iter().skip(own));
        let (slots, hasher) = (&self.slots, &self.hasher);
        for (slot, obj) in slots.iter().enumerate().skip(own) {
            let uid = obj.as_ref().map_or("", |o| &*o.uid);
            let entry = self.by_uid.entry(
                hasher.hash_one(uid),
                |s| slots[*s as usize].as_ref().is_some_and(|o| &*o.uid == uid),
                |s| hasher.hash_one(slots[*s as usize].as_ref().map_or("", |o| &*o.uid)),
            );
            match entry {
                hash_table::Entry::Occupied(_) => return None,
                // Slots are below u32::MAX: `later` allocated them.
                hash_table::Entry::Vacant(v) => {
                    v.insert(slot as u32);
                }
            }
        }
        let count = self.slots.len();
        for (name, by_value) in values {
            match self.values.entry(name) {
                hash_map::Entry::Vacant(v) => {
                    v.insert(by_value);
                }
                hash_map::Entry::Occupied(mut mine) => {
                    let mine = mine.get_mut();
                    mine.reserve(by_value.len());
                    for (key, posting) in by_value {
                        match mine.entry(key) {
                            hash_map::Entry::Vacant(v) => {
                                v.insert(posting);
                            }
                            hash_map::Entry::Occupied(mut p) => p.get_mut().append(&posting, count),
                        }
                    }
                }
            }
        }
        for (tag, by_date) in dates {
            let mine = self.dates.entry(tag).or_default();
            for (date, posting) in by_date {
                match mine.entry(date) {
                    Entry::Vacant(v) => {
                        v.insert(posting);
                    }
                    Entry::Occupied(mut p) => p.get_mut().append(&posting, count),
                }
            }
        }
        Some(self)
    }

    /// Makes `new` the indexed version of object `uid`, or forgets the object (`None`).
    pub(super) fn set(&mut self, uid: &str, new: Option<&Arc<StoredObject>>) {
        if self.exhausted {
            return;
        }
        let known = self.slot_of(uid);
        let slot = match (known, new) {
            (Some(slot), _) => slot,
            (None, Some(_)) => match self.allocate() {
                Some(slot) => slot,
                None => {
                    *self = Index {
                        exhausted: true,
                        ..Index::default()
                    };
                    return;
                }
            },
            (None, None) => return,
        };
        let (old_values, old_dates) = self.slots[slot as usize]
            .as_deref()
            .map(|o| terms(o, &self.hasher))
            .unwrap_or_default();
        let (new_values, new_dates) = new.map(|o| terms(o, &self.hasher)).unwrap_or_default();
        let count = self.slots.len();
        for (name, value) in old_values.iter().filter(|v| !new_values.contains(v)) {
            if let Some(by_value) = self.values.get_mut(name) {
                if by_value
                    .get_mut(value)
                    .is_some_and(|p| p.remove(slot, count))
                {
                    by_value.remove(value);
                }
                if by_value.is_empty() {
                    self.values.remove(name);
                }
            }
        }
        for (name, value) in new_values.into_iter().filter(|v| !old_values.contains(v)) {
            match self.values.entry(name).or_default().entry(value) {
                hash_map::Entry::Occupied(mut p) => p.get_mut().insert(slot, count),
                hash_map::Entry::Vacant(v) => {
                    v.insert(Posting::One(slot));
                }
            }
        }
        for (tag, date) in old_dates.iter().filter(|d| !new_dates.contains(d)) {
            if let Some(by_date) = self.dates.get_mut(tag) {
                if by_date.get_mut(date).is_some_and(|p| p.remove(slot, count)) {
                    by_date.remove(date);
                }
                if by_date.is_empty() {
                    self.dates.remove(tag);
                }
            }
        }
        for (tag, date) in new_dates.into_iter().filter(|d| !old_dates.contains(d)) {
            match self.dates.entry(tag).or_default().entry(date) {
                Entry::Occupied(mut p) => p.get_mut().insert(slot, count),
                Entry::Vacant(v) => {
                    v.insert(Posting::One(slot));
                }
            }
        }
        match new {
            Some(obj) => {
                self.slots[slot as usize] = Some(obj.clone());
                if known.is_none() {
                    let (slots, hasher) = (&self.slots, &self.hasher);
                    self.by_uid.insert_unique(hasher.hash_one(uid), slot, |s| {
                        hasher.hash_one(slots[*s as usize].as_ref().map_or("", |o| &*o.uid))
                    });
                }
            }
            None => {
                let slots = &self.slots;
                if let Ok(entry) = self.by_uid.find_entry(self.hasher.hash_one(uid), |s| {
                    slots[*s as usize].as_ref().is_some_and(|o| &*o.uid == uid)
                }) {
                    entry.remove();
                }
                self.slots[slot as usize] = None;
                self.free.push(slot);
            }
        }
    }

    /// The objects with this Name value; `None` if the index is out of service.
    pub(super) fn named(&self, value: &str) -> Option<Vec<Arc<StoredObject>>> {
        if self.exhausted {
            return None;
        }
        let name = AttributeName::Tag(tags::NAME);
        let key = self.hasher.hash_one(Scalar::Text(value));
        let found = self.values.get(&name).and_then(|by_key| by_key.get(&key));
        let mut objects = found.map_or_else(Vec::new, |p| self.objects(p.slots()));
        // Exactly this Name: another value with the same key is not one.
        objects.retain(|o| {
            o.all(tags::NAME)
                .any(|a| a.as_name().is_some_and(|n| n.value == value))
        });
        Some(objects)
    }

    /// A superset of the objects that satisfy every attribute of a Locate filter, as Locate
    /// compares them (see [`term`]), from the smallest of the filter's indexed sets; `None` when
    /// the filter has no indexed attribute (or the index is out of service): only a scan can
    /// answer it.
    pub(super) fn candidates(&self, filter: &[Attribute]) -> Option<Vec<Arc<StoredObject>>> {
        if self.exhausted {
            return None;
        }
        let mut postings: Vec<&Posting> = Vec::new();
        // Two instances of one date attribute bound a range; one is a range of one date.
        let mut ranges: Vec<(Tag, i64, i64)> = Vec::new();
        for f in filter {
            match term(f, &self.hasher) {
                Some(Term::Date(tag, d)) => match ranges.iter_mut().find(|r| r.0 == tag) {
                    Some(r) => (r.1, r.2) = (r.1.min(d), r.2.max(d)),
                    None => ranges.push((tag, d, d)),
                },
                Some(Term::Value(name, value)) => {
                    match self
                        .values
                        .get(name)
                        .and_then(|by_value| by_value.get(&value))
                    {
                        Some(p) => postings.push(p),
                        // No object carries it, so none matches.
                        None => return Some(Vec::new()),
                    }
                }
                None => {}
            }
        }
        if postings.is_empty() && ranges.is_empty() {
            return None;
        }
        postings.sort_by_key(|p| p.len());
        // A range is counted only up to the smallest set found so far: a wide range costs no
        // more than the set that beats it.
        let mut best: Option<Vec<u32>> = None;
        let mut best_len = postings.first().map_or(usize::MAX, |p| p.len());
        for (tag, lo, hi) in ranges {
            let Some(by_date) = self.dates.get(&tag) else {
                return Some(Vec::new());
            };
            let mut within = Vec::new();
            for (_, p) in by_date.range(lo..=hi) {
                if within.len() >= best_len {
                    break;
                }
                within.extend(p.slots());
            }
            if within.len() < best_len {
                within.sort_unstable();
                within.dedup();
                best_len = within.len();
                best = Some(within);
            }
        }
        let (source, others) = match best {
            Some(slots) => (slots, &postings[..]),
            None => match postings.split_first() {
                Some((smallest, others)) => (smallest.slots(), others),
                None => return Some(Vec::new()),
            },
        };
        let slots = source
            .into_iter()
            .filter(|s| others.iter().all(|p| p.contains(*s)));
        Some(self.objects(slots))
    }

    fn objects(&self, slots: impl IntoIterator<Item = u32>) -> Vec<Arc<StoredObject>> {
        slots
            .into_iter()
            .filter_map(|s| self.slots.get(s as usize).and_then(Clone::clone))
            .collect()
    }

    /// A slot for a new object, entered under `uid` once its object is in the slot table.
    fn allocate(&mut self) -> Option<u32> {
        if let Some(slot) = self.free.pop() {
            return Some(slot);
        }
        let slot = u32::try_from(self.slots.len()).ok()?;
        self.slots.push(None);
        Some(slot)
    }
}

#[cfg(test)]
mod tests;
