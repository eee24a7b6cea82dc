//! Name uniqueness: the uniqueness check, and the per-Name serialisation of the operations that
//! give an object a Name.
//!
//! A Name must be unique among the live objects the caller can see, but the check reads the
//! store's Name index and the object only joins that index after its durable write: two
//! concurrent Creates with one new Name would both pass the check. Holding the Name's lock from
//! the check to the end of the write closes that window. Waiting, rather than refusing a Name
//! that is merely in flight, keeps the answer exact and reveals nothing about other users'
//! objects: the second operation sees the first one's object, or its absence, like any other.
//!
//! On a backend several gateways share, the stripes only order this process's operations: the
//! backend's cluster-wide Name locks are taken after them, and then the store catches up with
//! every write committed before (a fence), so the check sees another gateway's object with the
//! Name, or that gateway waits for this one's write.

use super::object::is_destroyed;
use super::{OpContext, OpError, Ops};
use crate::kmip::access::facts;
use kmip_backends::NameLockGuard;
use kmip_wire::model::Attribute;
use kmip_wire::spec::tags;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use tokio::sync::{Mutex, MutexGuard};

/// Number of lock stripes. The table is fixed-size whatever names clients send; two different
/// Names share a stripe with probability 1/256, and then wait only for each other's write.
const NAME_LOCK_STRIPES: usize = 256;

pub(crate) struct NameLocks {
    stripes: Box<[Mutex<()>]>,
    /// Keyed per process, so clients cannot choose Names that all fall in one stripe.
    hasher: RandomState,
}

impl NameLocks {
    pub(crate) fn new() -> NameLocks {
        NameLocks {
            stripes: (0..NAME_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Locks the stripes of `names`. Stripes are taken in ascending order, so two operations
    /// never wait for each other in a cycle; the locks are released when the guards drop.
    pub(crate) async fn lock(
        &self,
        names: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = names
            .into_iter()
            .map(|name| self.hasher.hash_one(name.as_ref()) as usize % NAME_LOCK_STRIPES)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        guards
    }
}

/// The Name values among `attributes`, for [`NameLocks::lock`].
pub(super) fn name_values<'a>(attributes: impl IntoIterator<Item = &'a Attribute>) -> Vec<String> {
    attributes
        .into_iter()
        .filter(|a| a.is(tags::NAME))
        .filter_map(|a| a.as_name().map(|n| n.value))
        .collect()
}

/// Held Name locks, released when dropped: the cluster-wide ones (on a shared backend) first,
/// then this process's stripes.
pub(super) struct HeldNames<'a> {
    _shared: Option<NameLockGuard>,
    _local: Vec<MutexGuard<'a, ()>>,
}

impl Ops {
    /// Locks `names` for an operation that gives an object one of them, from its uniqueness
    /// check to the end of its durable write. On a shared backend this also takes the Names
    /// across every gateway and then catches up with the others' writes, so the check that
    /// follows sees every object that has one of these Names.
    pub(super) async fn lock_names(
        &self,
        mut names: Vec<String>,
    ) -> Result<HeldNames<'_>, OpError> {
        let local = self.name_locks.lock(&names).await;
        let shared = match self.store.backend().shared() {
            Some(shared) if !names.is_empty() => {
                names.sort_unstable();
                names.dedup();
                let guard = shared.lock_names(&names).await?;
                self.store.fence().await?;
                Some(guard)
            }
            _ => None,
        };
        Ok(HeldNames {
            _shared: shared,
            _local: local,
        })
    }

    /// Names are unique among the live objects the caller can see: checking others' objects
    /// would tell the caller that a hidden object has this Name.
    pub(super) fn check_name_unique(
        &self,
        ctx: &OpContext<'_>,
        name: &Attribute,
        except: Option<&str>,
    ) -> Result<(), OpError> {
        let Some(n) = name.as_name() else {
            return Ok(());
        };
        let current = self.access.current();
        let id = current.1.identity(ctx.user);
        let clash = self.store.by_name(&n.value).iter().any(|o| {
            Some(&*o.uid) != except && !is_destroyed(o) && current.1.may_see(&id, &facts(o))
        });
        if clash {
            return Err(OpError::NonUniqueName(n.value));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn one_name_is_held_by_one_operation_at_a_time() {
        let locks = Arc::new(NameLocks::new());
        let held = locks.lock(["k"]).await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _guards = locks.lock(["other", "k"]).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a second holder of 'k' got in");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released, the waiter gets the lock")
            .expect("waiter");
    }

    #[tokio::test]
    async fn repeated_names_do_not_deadlock_their_own_operation() {
        let locks = NameLocks::new();
        let guards = tokio::time::timeout(Duration::from_secs(5), locks.lock(["a", "a", "b"]))
            .await
            .expect("no self-deadlock");
        assert!(guards.len() <= 2);
    }
}
