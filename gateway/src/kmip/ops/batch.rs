//! Batch Error Continuation Option *Undo*: the journal of an Undo batch's writes, and taking
//! them back when a later item fails.

use super::{OpContext, OpError, Ops};
use crate::kmip::store::Written;
use kmip_wire::model::{RequestPayload, ResponsePayload};

/// What a batch with Batch Error Continuation Option *Undo* must take back if an item fails:
/// every write its items made, with the index of the item that made it. Only writes are
/// journaled, after authorization: an object the batch did not change is never touched.
#[derive(Default)]
pub struct UndoJournal {
    /// Items run so far (the next item's index).
    items: usize,
    writes: Vec<(usize, Written)>,
}

/// The items of an Undo batch whose changes were not all taken back: someone changed the object
/// since (it is left as it is) or the backend failed.
#[derive(Debug)]
pub struct UndoIncomplete {
    pub items: Vec<usize>,
}

impl Ops {
    /// Runs one item of an Undo batch, journaling the writes it makes (also those of an item
    /// that then fails). Authorization comes first: an item the caller may not run journals
    /// nothing. Destroy cannot be undone (its material is gone at once), so an Undo batch may
    /// not contain it.
    pub async fn execute_undoable(
        &self,
        ctx: &mut OpContext<'_>,
        payload: RequestPayload,
        journal: &mut UndoJournal,
    ) -> Result<ResponsePayload, OpError> {
        let item = journal.items;
        journal.items += 1;
        if matches!(payload, RequestPayload::Destroy(_)) {
            return Err(OpError::FeatureNotSupported(
                "Destroy cannot be undone: send it outside an Undo batch".into(),
            ));
        }
        self.authorize(ctx, &payload)?;
        ctx.written.clear();
        let response = self.run(ctx, payload).await;
        journal
            .writes
            .extend(ctx.written.drain(..).map(|w| (item, w)));
        response
    }

    /// Takes back an Undo batch's writes, newest first, each only if the object is still at the
    /// version that write made: a change made since by anyone else is never overwritten, and the
    /// items whose writes stay are reported.
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
