//! Per-object write locks that exist only while someone holds or awaits them.
//!
//! A lock per object ever written, kept forever, cost about 170 bytes per object at a million
//! objects. An entry is made when a writer asks for it and removed when the last holder or
//! waiter lets go, so the map holds only the objects being written now. One mutex per object
//! (not striped), so a path holding two objects' locks (a key pair's creation) cannot deadlock
//! with a writer of an unrelated object.

use dashmap::DashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

type LockMap = DashMap<Arc<str>, Arc<Mutex<()>>>;

#[derive(Default)]
pub(super) struct WriteLocks(Arc<LockMap>);

impl WriteLocks {
    /// Waits for `uid`'s lock. The guard may be moved into a task (a background write).
    pub(super) async fn lock(&self, uid: &str) -> WriteGuard {
        let mutex = match self.0.get(uid) {
            Some(m) => m.clone(),
            None => self.0.entry(uid.into()).or_default().clone(),
        };
        // Made before waiting, so that a waiter dropped while it waits (its request was
        // cancelled) still removes an entry nobody else uses.
        let mut guard = WriteGuard {
            locks: self.0.clone(),
            uid: uid.into(),
            mutex: Some(mutex.clone()),
            held: None,
        };
        guard.held = Some(mutex.lock_owned().await);
        guard
    }

    /// Objects whose lock is held or awaited now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// One object's write lock, held until dropped.
pub(super) struct WriteGuard {
    locks: Arc<LockMap>,
    uid: Box<str>,
    /// The waiter's reference to the mutex (the held guard has its own).
    mutex: Option<Arc<Mutex<()>>>,
    held: Option<OwnedMutexGuard<()>>,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.held.take();
        self.mutex.take();
        // Only the map's reference left: nobody holds or awaits it. The count is read under
        // the map's shard lock, which `lock` also takes to clone a reference, so a new waiter
        // either got this mutex first (the entry stays) or makes a new one after.
        self.locks
            .remove_if(&*self.uid, |_, m| Arc::strong_count(m) == 1);
    }
}
