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
