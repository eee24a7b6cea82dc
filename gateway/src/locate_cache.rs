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
//! Concurrent misses on one key wait for a single computation (a per-key async lock). The number
//! of entries is bounded; stale entries are dropped first, then everything.

use dashmap::DashMap;
use kmip_wire::model::{AttributeName, LocateResponse};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a cached result can depend on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// Objects were added.
    Membership,
    Attribute(AttributeName),
}

/// Change sequence numbers, shared by the store (which bumps) and the cache (which checks).
#[derive(Default)]
pub struct Generations {
    sequence: AtomicU64,
    last_change: DashMap<Dependency, u64>,
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
            self.last_change.insert(d, seq);
        }
        metrics::counter!("kmip_locate_cache_invalidations_total").increment(1);
    }

    fn valid(&self, computed_at: u64, deps: &[Dependency]) -> bool {
        deps.iter().all(|d| {
            self.last_change
                .get(d)
                .is_none_or(|seq| *seq <= computed_at)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub policy_generation: u64,
    pub user: String,
    /// The request's filter, Maximum/Offset Items and masks, in a canonical byte form.
    pub request: Vec<u8>,
}

struct Entry {
    computed_at: u64,
    deps: Vec<Dependency>,
    result: Arc<LocateResponse>,
}

#[derive(Default)]
struct Slot {
    entry: tokio::sync::Mutex<Option<Entry>>,
}

pub struct LocateCache {
    max_entries: usize,
    slots: DashMap<CacheKey, Arc<Slot>>,
    generations: Arc<Generations>,
}

impl LocateCache {
    pub fn new(max_entries: usize, generations: Arc<Generations>) -> LocateCache {
        LocateCache {
            max_entries,
            slots: DashMap::new(),
            generations,
        }
    }

    /// The cached result for `key`, or `compute()`'s, cached when it succeeds.
    pub async fn get_or_compute<E>(
        &self,
        key: CacheKey,
        deps: Vec<Dependency>,
        compute: impl FnOnce() -> Result<LocateResponse, E>,
    ) -> Result<Arc<LocateResponse>, E> {
        if self.max_entries == 0 {
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
        *entry = Some(Entry {
            computed_at,
            deps,
            result: result.clone(),
        });
        Ok(result)
    }

    fn slot(&self, key: CacheKey) -> Arc<Slot> {
        if let Some(s) = self.slots.get(&key) {
            return s.clone();
        }
        if self.slots.len() >= self.max_entries {
            self.evict();
        }
        self.slots.entry(key).or_default().clone()
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
        if self.slots.len() >= self.max_entries {
            self.slots.clear();
        }
        metrics::counter!("kmip_locate_cache_evictions_total")
            .increment((before - self.slots.len()) as u64);
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}
