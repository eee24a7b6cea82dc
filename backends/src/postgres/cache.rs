//! Unsealed material kept in memory, so Get and the key operations cost no database round trip
//! and no unwrap. Filled on first read; an entry goes on this instance's Destroy and on every
//! change the feed reports for its uid.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use zeroize::Zeroizing;

use crate::{KeySpec, ObjectKind};

/// Objects whose material is kept unsealed at most: bounds the memory of secrets held (a
/// symmetric key costs about 200 bytes with its uid); beyond it an arbitrary entry makes room.
pub(crate) const MATERIAL_CACHE_ENTRIES: usize = 100_000;

/// A live object's material and the facts that decide who may use it.
pub(crate) struct CachedObject {
    pub(crate) kind: ObjectKind,
    pub(crate) spec: Option<KeySpec>,
    pub(crate) material: Zeroizing<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct MaterialCache {
    map: Mutex<HashMap<String, Arc<CachedObject>>>,
    /// Bumped by every invalidation: a read that started before one may not fill the cache
    /// with what it read (it may be a destroyed key's material).
    epoch: AtomicU64,
}

impl MaterialCache {
    pub(crate) fn get(&self, uid: &str) -> Option<Arc<CachedObject>> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            .cloned()
    }

    /// The epoch to pass to [`MaterialCache::fill`], read before the database is.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Keeps `object` unless something was invalidated since `epoch` was read.
    pub(crate) fn fill(&self, uid: &str, epoch: u64, object: Arc<CachedObject>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if map.len() >= MATERIAL_CACHE_ENTRIES && !map.contains_key(uid) {
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(uid.to_owned(), object);
    }

    pub(crate) fn invalidate(&self, uid: &str) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.remove(uid);
    }

    pub(crate) fn clear(&self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(byte: u8) -> Arc<CachedObject> {
        Arc::new(CachedObject {
            kind: ObjectKind::SecretData,
            spec: None,
            material: Zeroizing::new(vec![byte]),
        })
    }

    #[test]
    fn a_read_from_before_an_invalidation_is_not_kept() {
        let cache = MaterialCache::default();
        let before = cache.epoch();
        cache.invalidate("a");
        cache.fill("a", before, object(1));
        assert!(cache.get("a").is_none());
        cache.fill("a", cache.epoch(), object(2));
        assert_eq!(cache.get("a").map(|o| o.material[0]), Some(2));
        cache.invalidate("a");
        assert!(cache.get("a").is_none());
        cache.fill("b", cache.epoch(), object(3));
        cache.clear();
        assert!(cache.get("b").is_none());
    }

    #[test]
    fn the_cache_holds_at_most_its_bound() {
        let cache = MaterialCache::default();
        let epoch = cache.epoch();
        let one = object(0);
        for i in 0..MATERIAL_CACHE_ENTRIES + 10 {
            cache.fill(&i.to_string(), epoch, one.clone());
        }
        let len = cache
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert_eq!(len, MATERIAL_CACHE_ENTRIES);
        let last = (MATERIAL_CACHE_ENTRIES + 9).to_string();
        assert!(cache.get(&last).is_some());
    }
}
