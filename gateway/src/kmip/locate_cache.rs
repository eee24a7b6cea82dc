//! The Locate cache: identifier lists keyed by (policy generation, caller, normalised request).
//!
//! Invalidation is by change sequence numbers, per attribute. Every store write takes the next
//! number from one counter and records it against each attribute it changed (and against
//! "membership" when an object is added). A cached result computed at sequence `S` stays valid
//! while none of the attributes it depends on — those in the filter, plus Name, Object Group and
//! State, which decide visibility and tombstone filtering — and no membership change has a
//! number above `S`. Because a write makes its new version visible *before* it takes its number,
//! and a Locate reads `S` *before* it scans, a Locate that starts after a write was acknowledged
//! can never be served a result that misses it.
//!
//! Concurrent misses on one key wait for a single computation (a per-key async lock). Keys are
//! SHA-256 digests, so a key costs 32 bytes whatever the size of the filter. The cache is bounded
//! by entries and by the bytes its results hold (`entry_bytes`); over either bound, stale
//! entries are dropped first, then everything. A result larger than the byte bound is not
//! cached.

use dashmap::DashMap;
use kmip_wire::model::{AttributeName, LocateResponse};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// What [`entry_bytes`] counts for an entry besides its identifiers and dependencies: the key,
/// the slot, the lock and the map's own bookkeeping.
const ENTRY_OVERHEAD: usize = 256;

/// What a cached result can depend on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// Objects were added.
    Membership,
    Attribute(AttributeName),
}

/// Buckets the names of custom attributes are folded into in [`Generations`]: their names are
/// chosen by clients, so one entry per name would grow without bound.
const CUSTOM_NAME_BUCKETS: u64 = 1024;

/// What [`Generations`] records a change against: membership and standard attributes as
/// themselves, custom attribute names by bucket. Names sharing a bucket only invalidate each
/// other's cached results, which costs a recomputation, never a stale answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ChangeKey {
    Membership,
    Tag(kmip_wire::ttlv::Tag),
    Custom(u64),
}

impl From<&Dependency> for ChangeKey {
    fn from(d: &Dependency) -> ChangeKey {
        use std::hash::{Hash, Hasher};
        match d {
            Dependency::Membership => ChangeKey::Membership,
            Dependency::Attribute(AttributeName::Tag(t)) => ChangeKey::Tag(*t),
            Dependency::Attribute(name) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                name.hash(&mut h);
                ChangeKey::Custom(h.finish() % CUSTOM_NAME_BUCKETS)
            }
        }
    }
}

/// Change sequence numbers, shared by the store (which bumps) and the cache (which checks).
#[derive(Default)]
pub struct Generations {
    sequence: AtomicU64,
    last_change: DashMap<ChangeKey, u64>,
}

impl Generations {
    /// The current sequence number: read it before scanning.
    pub fn current(&self) -> u64 {
        self.sequence.load(Ordering::SeqCst)
    }

    /// Records that `changed` changed now. Call after the change is visible to readers.
    pub fn bump(&self, changed: impl IntoIterator<Item = Dependency>) {
        let mut changed = changed.into_iter().peekable();
        if changed.peek().is_none() {
            return;
        }
        let seq = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        for d in changed {
            self.record(&d, seq);
        }
        metrics::counter!("kmip_locate_cache_invalidations_total").increment(1);
    }

    /// Concurrent writes may record out of order: the later number is kept.
    fn record(&self, d: &Dependency, seq: u64) {
        self.last_change
            .entry(ChangeKey::from(d))
            .and_modify(|s| *s = (*s).max(seq))
            .or_insert(seq);
    }

    fn valid(&self, computed_at: u64, deps: &[Dependency]) -> bool {
        deps.iter().all(|d| {
            self.last_change
                .get(&ChangeKey::from(d))
                .is_none_or(|seq| *seq <= computed_at)
        })
    }
}

/// A cache key: the SHA-256 of (policy generation, caller, the request's filter, Maximum/Offset
/// Items and masks in a canonical byte form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn new(policy_generation: u64, user: &str, request: &[u8]) -> CacheKey {
        let mut digest = Sha256::new();
        digest.update(policy_generation.to_be_bytes());
        // Length-prefixed, so that no (user, request) pair reads as another.
        digest.update((user.len() as u64).to_be_bytes());
        digest.update(user.as_bytes());
        digest.update(request);
        CacheKey(digest.finalize().into())
    }
}

struct Entry {
    computed_at: u64,
    deps: Vec<Dependency>,
    result: Arc<LocateResponse>,
    /// [`entry_bytes`] of this entry, counted in [`LocateCache::bytes`].
    bytes: usize,
}

/// The memory an entry holds, as counted against `max_bytes`: its identifiers, its dependencies
/// (filter attribute names are chosen by the client) and [`ENTRY_OVERHEAD`].
fn entry_bytes(deps: &[Dependency], result: &LocateResponse) -> usize {
    let ids: usize = result
        .unique_identifiers
        .iter()
        .map(|u| std::mem::size_of::<String>() + u.capacity())
        .sum();
    let deps: usize = deps
        .iter()
        .map(|d| {
            std::mem::size_of::<Dependency>()
                + match d {
                    Dependency::Attribute(AttributeName::Vendor { vendor, name }) => {
                        vendor.capacity() + name.capacity()
                    }
                    Dependency::Attribute(AttributeName::Unknown(name)) => name.capacity(),
                    Dependency::Attribute(AttributeName::Tag(_)) | Dependency::Membership => 0,
                }
        })
        .sum();
    ENTRY_OVERHEAD + ids + deps
}

struct Slot {
    entry: tokio::sync::Mutex<Option<Entry>>,
    /// The cache's byte count, which this slot's entry is part of until the slot is dropped
    /// (a slot evicted while a request still uses it keeps its memory until then).
    bytes: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(e) = self.entry.get_mut() {
            self.bytes.fetch_sub(e.bytes, Ordering::Relaxed);
        }
    }
}

pub struct LocateCache {
    max_entries: usize,
    max_bytes: usize,
    /// The sum of [`entry_bytes`] over the entries of all live slots.
    bytes: Arc<AtomicUsize>,
    slots: DashMap<CacheKey, Arc<Slot>>,
    generations: Arc<Generations>,
}

impl LocateCache {
    /// A cache of at most `max_entries` results holding at most `max_bytes`; 0 in either
    /// disables it.
    pub fn new(max_entries: usize, max_bytes: usize, generations: Arc<Generations>) -> LocateCache {
        LocateCache {
            max_entries,
            max_bytes,
            bytes: Arc::new(AtomicUsize::new(0)),
            slots: DashMap::new(),
            generations,
        }
    }

    /// The cached result for `key`, or `compute()`'s, cached when it succeeds and fits.
    pub async fn get_or_compute<E>(
        &self,
        key: CacheKey,
        deps: Vec<Dependency>,
        compute: impl FnOnce() -> Result<LocateResponse, E>,
    ) -> Result<Arc<LocateResponse>, E> {
        if self.max_entries == 0 || self.max_bytes == 0 {
            return compute().map(Arc::new);
        }
        let slot = self.slot(key);
        let mut entry = slot.entry.lock().await;
        if let Some(e) = entry.as_ref() {
            if self.generations.valid(e.computed_at, &e.deps) {
                metrics::counter!("kmip_locate_cache_hits_total").increment(1);
                return Ok(e.result.clone());
            }
        }
        metrics::counter!("kmip_locate_cache_misses_total").increment(1);
        let computed_at = self.generations.current();
        let result = Arc::new(compute()?);
        let bytes = entry_bytes(&deps, &result);
        if let Some(old) = entry.take() {
            self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
        }
        if bytes > self.max_bytes {
            metrics::counter!("kmip_locate_cache_uncached_total").increment(1);
            return Ok(result);
        }
        *entry = Some(Entry {
            computed_at,
            deps,
            result: result.clone(),
            bytes,
        });
        if self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > self.max_bytes {
            self.evict();
        }
        metrics::gauge!("kmip_locate_cache_bytes").set(self.bytes() as f64);
        Ok(result)
    }

    fn slot(&self, key: CacheKey) -> Arc<Slot> {
        if let Some(s) = self.slots.get(&key) {
            return s.clone();
        }
        if self.slots.len() >= self.max_entries {
            self.evict();
        }
        self.slots
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Slot {
                    entry: tokio::sync::Mutex::new(None),
                    bytes: self.bytes.clone(),
                })
            })
            .clone()
    }

    fn over_bounds(&self) -> bool {
        self.slots.len() >= self.max_entries || self.bytes() > self.max_bytes
    }

    fn evict(&self) {
        let before = self.slots.len();
        self.slots.retain(|_, slot| match slot.entry.try_lock() {
            Ok(e) => e
                .as_ref()
                .is_some_and(|e| self.generations.valid(e.computed_at, &e.deps)),
            // Being computed right now: keep it.
            Err(_) => true,
        });
        if self.over_bounds() {
            self.slots.clear();
        }
        metrics::counter!("kmip_locate_cache_evictions_total")
            .increment(before.saturating_sub(self.slots.len()) as u64);
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The bytes the cached results hold (see `entry_bytes`).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_wire::spec::tags;

    fn ids(n: usize) -> LocateResponse {
        LocateResponse {
            located_items: None,
            unique_identifiers: (0..n).map(|i| format!("{i:036}")).collect(),
        }
    }

    fn deps() -> Vec<Dependency> {
        vec![Dependency::Membership]
    }

    #[test]
    fn keys_are_fixed_size_digests_of_every_part() {
        assert_eq!(std::mem::size_of::<CacheKey>(), 32);
        let big = vec![7u8; 1 << 20];
        let key = CacheKey::new(1, "purefa", &big);
        assert_eq!(key, CacheKey::new(1, "purefa", &big));
        assert_ne!(key, CacheKey::new(2, "purefa", &big));
        assert_ne!(key, CacheKey::new(1, "other", &big));
        assert_ne!(key, CacheKey::new(1, "purefa", &big[1..]));
        // The user's length is part of the digest: ("ab", "c…") is not ("a", "bc…").
        assert_ne!(CacheKey::new(1, "ab", b"c"), CacheKey::new(1, "a", b"bc"));
    }

    #[tokio::test]
    async fn results_are_bounded_by_bytes_as_well_as_entries() {
        let one = entry_bytes(&deps(), &ids(100));
        let max_bytes = 10 * one;
        let cache = LocateCache::new(1_000, max_bytes, Arc::new(Generations::default()));
        for i in 0..100u64 {
            let key = CacheKey::new(0, "u", &i.to_be_bytes());
            let r = cache
                .get_or_compute(key, deps(), || Ok::<_, ()>(ids(100)))
                .await
                .unwrap();
            assert_eq!(r.unique_identifiers.len(), 100);
            assert!(
                cache.bytes() <= max_bytes,
                "{} bytes after {i}",
                cache.bytes()
            );
            assert!(cache.len() <= 11, "{} entries after {i}", cache.len());
        }
        assert!(!cache.is_empty());
        cache.slots.clear();
        assert_eq!(cache.bytes(), 0, "dropped slots give their bytes back");
    }

    #[tokio::test]
    async fn client_chosen_attribute_names_are_counted() {
        let name = "x".repeat(100_000);
        let long = vec![Dependency::Attribute(AttributeName::Unknown(name))];
        assert!(entry_bytes(&long, &ids(0)) > 100_000);
        assert!(
            entry_bytes(
                &[Dependency::Attribute(AttributeName::Tag(tags::NAME))],
                &ids(0)
            ) < 1_000
        );
        let cache = LocateCache::new(1_000, 50_000, Arc::new(Generations::default()));
        let key = CacheKey::new(0, "u", b"long");
        let mut computed = 0;
        for _ in 0..2 {
            cache
                .get_or_compute(key, long.clone(), || {
                    computed += 1;
                    Ok::<_, ()>(ids(1))
                })
                .await
                .unwrap();
        }
        assert_eq!(computed, 2, "a result over the byte bound is not cached");
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn custom_attribute_names_take_a_bounded_number_of_change_records() {
        let g = Generations::default();
        let custom = |i: usize| {
            Dependency::Attribute(AttributeName::Vendor {
                vendor: "x".into(),
                name: format!("name-{i}"),
            })
        };
        for i in 0..5_000 {
            g.bump([custom(i)]);
        }
        assert!(g.last_change.len() <= CUSTOM_NAME_BUCKETS as usize);
        let at = g.current();
        let deps = [
            custom(7),
            Dependency::Attribute(AttributeName::Tag(tags::NAME)),
        ];
        assert!(g.valid(at, &deps));
        g.bump([Dependency::Attribute(AttributeName::Tag(tags::STATE))]);
        assert!(g.valid(at, &deps), "an unrelated standard attribute");
        g.bump([custom(7)]);
        assert!(
            !g.valid(at, &deps),
            "a change to the filter's custom attribute"
        );
    }

    #[test]
    fn a_change_recorded_late_keeps_the_later_number() {
        let g = Generations::default();
        let d = Dependency::Attribute(AttributeName::Tag(tags::NAME));
        // The write that took number 1 records it after the write that took number 2.
        g.record(&d, 2);
        g.record(&d, 1);
        assert!(!g.valid(1, std::slice::from_ref(&d)));
    }

    #[tokio::test]
    async fn stale_entries_go_first() {
        let generations = Arc::new(Generations::default());
        let one = entry_bytes(&deps(), &ids(10));
        let cache = LocateCache::new(1_000, 4 * one, generations.clone());
        let get = |i: u8| {
            let cache = &cache;
            async move {
                cache
                    .get_or_compute(CacheKey::new(0, "u", &[i]), deps(), || Ok::<_, ()>(ids(10)))
                    .await
                    .unwrap()
            }
        };
        for i in 0..3 {
            get(i).await;
        }
        generations.bump([Dependency::Membership]);
        for i in 3..7 {
            get(i).await;
        }
        assert_eq!(
            cache.len(),
            4,
            "the three stale entries made room for four fresh ones"
        );
        assert_eq!(cache.bytes(), 4 * one);
    }
}
