//! Batch Error Continuation Option *Undo*: the journal of an Undo batch's writes, taking them
//! back when a later item fails, and the Destroys the batch defers to its end.

use super::table::target_uid;
use super::{OpContext, OpError, Ops};
use crate::kmip::store::Written;
use kmip_wire::model::{RequestPayload, ResponsePayload, UidRequest, UidResponse};

/// What a batch with Batch Error Continuation Option *Undo* must take back if an item fails:
/// every write its items made, with the index of the item that made it. Only writes are
/// journaled, after authorization: an object the batch did not change is never touched.
///
/// A Destroy cannot be taken back (its material is shredded at once), so an Undo batch answers
/// it after the checks Destroy makes and destroys the object only once every item has
/// succeeded ([`Ops::commit_destroys`]): until then the material is kept, and undoing the
/// Destroy is forgetting it.
#[derive(Default)]
pub struct UndoJournal {
    /// Items run so far (the next item's index).
    items: usize,
    writes: Vec<(usize, Written)>,
    /// The Destroys answered but not yet done: (item, uid), in batch order.
    destroys: Vec<(usize, String)>,
}

/// The items of an Undo batch whose changes were not all taken back: someone changed the object
/// since (it is left as it is) or the backend failed.
#[derive(Debug)]
pub struct UndoIncomplete {
    pub items: Vec<usize>,
}

/// A deferred Destroy that failed when the batch ended: its item, why, and the journal of what
/// the batch wrote (to undo). The Destroys done before it stay done.
pub struct DestroyFailed {
    pub item: usize,
    pub error: OpError,
    pub journal: UndoJournal,
    /// The items whose Destroy was done before the failure (they keep Success).
    pub done: Vec<usize>,
}

impl Ops {
    /// Runs one item of an Undo batch, journaling the writes it makes (also those of an item
    /// that then fails). Authorization comes first: an item the caller may not run journals
    /// nothing. A Destroy is checked and deferred to the batch's end; a later item naming an
    /// object the batch destroys finds it destroyed.
    pub async fn execute_undoable(
        &self,
        ctx: &mut OpContext<'_>,
        payload: RequestPayload,
        journal: &mut UndoJournal,
    ) -> Result<ResponsePayload, OpError> {
        let item = journal.items;
        journal.items += 1;
        self.authorize(ctx, &payload)?;
        if let Some(target) = target_uid(&payload) {
            let named = target.as_ref().or(ctx.id_placeholder.as_ref());
            if named.is_some_and(|uid| journal.destroys.iter().any(|(_, d)| d == uid)) {
                return Err(OpError::Destroyed);
            }
        }
        if let RequestPayload::Destroy(r) = payload {
            let uid = ctx.uid(r.unique_identifier)?;
            self.check_destroyable(&uid)?;
            journal.destroys.push((item, uid.clone()));
            ctx.id_placeholder = Some(uid.clone());
            return Ok(ResponsePayload::Destroy(UidResponse {
                unique_identifier: uid,
            }));
        }
        ctx.written.clear();
        let response = self.run(ctx, payload).await;
        journal
            .writes
            .extend(ctx.written.drain(..).map(|w| (item, w)));
        response
    }

    /// Ends an Undo batch whose items all succeeded: does its deferred Destroys, in order. On a
    /// failure the rest are not done, and the caller undoes the batch's writes.
    pub async fn commit_destroys(
        &self,
        ctx: &mut OpContext<'_>,
        mut journal: UndoJournal,
    ) -> Result<(), Box<DestroyFailed>> {
        let destroys = std::mem::take(&mut journal.destroys);
        let mut done = Vec::with_capacity(destroys.len());
        for (item, uid) in destroys {
            let request = UidRequest {
                unique_identifier: Some(uid),
            };
            if let Err(error) = self.destroy(ctx, request).await {
                return Err(Box::new(DestroyFailed {
                    item,
                    error,
                    journal,
                    done,
                }));
            }
            done.push(item);
        }
        Ok(())
    }

    /// Takes back an Undo batch's writes, newest first, each only if the object is still at the
    /// version that write made: a change made since by anyone else is never overwritten, and the
    /// items whose writes stay are reported. Deferred Destroys not yet done are dropped.
    pub async fn undo(&self, journal: UndoJournal) -> Result<(), UndoIncomplete> {
        let mut incomplete: Vec<usize> = Vec::new();
        for (item, w) in journal.writes.into_iter().rev() {
            let uid = w.after.uid.clone();
            let undone = match w.before {
                Some(before) => self.store.restore(&w.after, before).await,
                None => self.store.remove(&w.after).await,
            };
            match undone {
                Ok(true) => continue,
                Ok(false) => {
                    tracing::warn!(uid = %uid, item, "not undone: the object changed since");
                }
                Err(e) => tracing::error!(uid = %uid, item, error = %e, "undo write failed"),
            }
            if !incomplete.contains(&item) {
                incomplete.push(item);
            }
        }
        if incomplete.is_empty() {
            Ok(())
        } else {
            Err(UndoIncomplete { items: incomplete })
        }
    }
}
