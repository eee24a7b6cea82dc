//! The vault's single writer: a dedicated thread that owns the log, key slot and head files,
//! batches concurrent mutations into one frame and one set of fdatasyncs (group commit), applies
//! them to the in-memory state only once durable, and compacts the log when most of it is
//! garbage. A compaction writes the new log on a thread of its own from a copy of the live
//! objects, while the writer goes on committing to the old log; at the switch, the objects
//! written since the copy are appended to the new log, which then replaces the old one. Writes
//! wait only for the copy and the switch, not for the new log to be written (seconds at a
//! million objects).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::files::{io_err, sync_dir};
use super::format::{
    self, FileKeys, FreshLog, FRAME_HEADER_LEN, FRAME_TARGET_BYTES, LOG_FILE, TMP_LOG_FILE,
};
use super::head::{Head, Position};
use super::keyfile::MasterKey;
use super::slots::{self, KeySlots, SLOT_LEN};
use super::{DataKey, Entry, Shared};
use crate::BackendError;

/// Most mutations one group commit takes; bounds the latency a batch adds to its first member.
const MAX_BATCH_OPS: usize = 1024;
/// Compaction is considered only for logs at least this large: small logs cost little to replay.
pub(crate) const COMPACT_MIN_LOG_BYTES: u64 = 16 << 20;
/// Compact once the log is this many times larger than its live content.
const COMPACT_GARBAGE_FACTOR: u64 = 2;

pub(crate) enum Mutation {
    /// Store a new object; fails if the uid exists.
    Create {
        uid: Arc<str>,
        entry: Entry,
    },
    UpdateMeta {
        uid: Arc<str>,
        meta: bytes::Bytes,
    },
    /// Remove the object, or with a tombstone keep only that metadata blob.
    Destroy {
        uid: Arc<str>,
        tombstone: Option<bytes::Bytes>,
    },
    /// Rewrite the log with only live objects now.
    Compact,
    /// Sent by the compaction thread: the new log is written (or failed), the switch is due.
    CompactionWritten,
}

pub(crate) struct Request {
    pub mutation: Mutation,
    pub reply: oneshot::Sender<Result<(), BackendError>>,
}

/// A mutation validated and encoded into the current frame, waiting for the fsync.
struct Pending {
    uid: Arc<str>,
    entry: Option<Entry>,
    reply: oneshot::Sender<Result<(), BackendError>>,
}

/// Key slot work of one group commit.
#[derive(Default)]
struct SlotWork {
    /// New objects' wrapped DEKs: written and synced before the log frame that names them.
    fill: Vec<(u32, [u8; SLOT_LEN])>,
    /// Destroyed or deleted objects' slots: zeroed and synced after the frame, before the reply.
    shred: Vec<u32>,
}

pub(crate) struct Writer {
    pub dir: PathBuf,
    pub master: MasterKey,
    pub file: File,
    pub keys: FileKeys,
    pub next_seq: u64,
    /// Where the log ends: its length and chain MAC, what the head records after each commit.
    pub pos: Position,
    pub live_bytes: u64,
    pub slots: KeySlots,
    pub head: Head,
    /// Empty key slots that no record of the current log names: free to hand out.
    pub free_slots: Vec<u32>,
    /// Zeroed slots that records of the current log still name: free after the next compaction,
    /// so replaying an old record never meets another object's key.
    pub retired_slots: Vec<u32>,
    pub shared: Arc<Shared>,
    pub rx: mpsc::Receiver<Request>,
    /// How the compaction thread wakes the writer; weak, so that the writer still stops once
    /// every vault handle is gone.
    pub wake: mpsc::WeakSender<Request>,
    pub compaction: Option<Compaction>,
    /// After a failed compaction, the log length below which none starts on its own again: a
    /// failing disk is not asked for a rewrite (and a copy of every object) after every batch.
    pub compact_retry_at: u64,
    /// Held for the writer's lifetime: the advisory lock that keeps a second process out.
    pub _lock: File,
}

/// A compaction under way: its thread writes the new log from a copy of the live objects.
pub(crate) struct Compaction {
    thread: JoinHandle<Result<FreshLog, BackendError>>,
    /// Objects written since the copy, each with whether the copy holds it: their current
    /// records go into the new log at the switch (a removal only for an object the copy holds,
    /// since replay refuses to remove what does not exist).
    dirty: HashMap<Arc<str>, bool>,
    /// Slots retired before the copy: no record of the new log names them, so they are free
    /// once it replaces the old one. Slots retired later stay retired until the next compaction.
    freed_at_switch: Vec<u32>,
    /// `Vault::compact` callers, answered at the switch.
    waiters: Vec<oneshot::Sender<Result<(), BackendError>>>,
    started: Instant,
}

/// Tests: holds the next compaction's thread after the copy until the test lets it go, so
/// that writes land between the copy and the switch.
#[cfg(test)]
pub(crate) struct CompactionHold {
    pub copied: std::sync::mpsc::Sender<()>,
    pub go: std::sync::mpsc::Receiver<()>,
}

/// Why a compaction failed, and whether the writer can carry on with the old log.
enum CompactError {
    /// Nothing changed on disk that matters: the old log is still the log.
    Recoverable(BackendError),
    /// The new log was renamed into place but the rename may not be durable.
    Fatal(BackendError),
}

impl Writer {
    /// Serves requests until every sender is gone or the log can no longer be trusted.
    pub(crate) fn run(mut self) {
        let mut buf = Vec::with_capacity(FRAME_TARGET_BYTES);
        while let Some(first) = self.rx.blocking_recv() {
            if let Err(e) = self.batch(first, &mut buf) {
                // After a failed write or fsync the file's state is unknown (and Linux may have
                // dropped the dirty pages): stop, so that a restart replays what is durable.
                tracing::error!(error = %e, "vault writer stopped; restart to recover");
                self.shared.failed.store(true, Ordering::SeqCst);
                break;
            }
        }
        self.abandon_compaction();
    }

    /// One group commit: takes every request already queued (within the batch limits), makes
    /// their records durable as one frame (see [`Writer::commit`]), applies them and answers
    /// them all.
    fn batch(&mut self, first: Request, buf: &mut Vec<u8>) -> Result<(), BackendError> {
        buf.clear();
        let frame = format::begin_frame(buf);
        let mut pending: Vec<Pending> = Vec::new();
        let mut slot_work = SlotWork::default();
        let mut compact_replies = Vec::new();
        let mut written = false;
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(req) = next.take() {
            taken += 1;
            match req.mutation {
                Mutation::Compact => compact_replies.push(req.reply),
                Mutation::CompactionWritten => written = true,
                m => match self.stage(m, buf, &pending, &mut slot_work) {
                    Ok((uid, entry)) => pending.push(Pending {
                        uid,
                        entry,
                        reply: req.reply,
                    }),
                    Err(e) => {
                        let _ = req.reply.send(Err(e));
                    }
                },
            }
            if taken < MAX_BATCH_OPS && buf.len() - frame - FRAME_HEADER_LEN < FRAME_TARGET_BYTES {
                next = self.rx.try_recv().ok();
            }
        }
        if !pending.is_empty() {
            if let Err(e) = self.commit(buf, frame, &slot_work) {
                // Stopped before anyone hears of the failure: a caller that saw it also sees
                // `health()` fail.
                self.shared.failed.store(true, Ordering::SeqCst);
                for reply in pending.into_iter().map(|p| p.reply).chain(compact_replies) {
                    let _ = reply.send(Err(copy_error(&e)));
                }
                return Err(e);
            }
            self.retired_slots.extend(slot_work.shred);
            self.apply(pending);
        }
        if written {
            self.switch_logs()?;
        }
        if let Some(c) = &mut self.compaction {
            c.waiters.append(&mut compact_replies);
        } else if !compact_replies.is_empty() || self.should_compact() {
            self.start_compaction(compact_replies);
        }
        Ok(())
    }

    /// Validates one mutation against committed plus staged state and appends its record to the
    /// frame.
    fn stage(
        &mut self,
        mutation: Mutation,
        buf: &mut Vec<u8>,
        pending: &[Pending],
        slot_work: &mut SlotWork,
    ) -> Result<(Arc<str>, Option<Entry>), BackendError> {
        // A new object's key slot, and the slot of a destroyed object's material.
        let mut filled = None;
        let mut shredded = None;
        let shared = Arc::clone(&self.shared);
        let (uid, entry) = {
            let state = shared.read_objects();
            // The object as it will be once the mutations staged before this one commit.
            let current = |uid: &str| match pending.iter().rev().find(|p| &*p.uid == uid) {
                Some(p) => p.entry.as_ref(),
                None => state.get(uid).map(|e| &**e),
            };
            match mutation {
                Mutation::Create { uid, mut entry } => match current(&uid) {
                    Some(_) => return Err(BackendError::AlreadyExists(uid.to_string())),
                    None => {
                        if entry.material.is_some() {
                            let slot = self.alloc_slot()?;
                            let dek = slots::new_dek();
                            match dek.and_then(|dek| Ok((self.slots.seal(slot, &uid, &dek)?, dek)))
                            {
                                Ok((sealed, dek)) => {
                                    filled = Some((slot, sealed));
                                    entry.key = Some(DataKey { slot, dek });
                                }
                                Err(e) => {
                                    self.free_slots.push(slot);
                                    return Err(e);
                                }
                            }
                        }
                        (uid, Some(entry))
                    }
                },
                Mutation::UpdateMeta { uid, meta } => match current(&uid) {
                    None => return Err(BackendError::NotFound(uid.to_string())),
                    Some(old) => {
                        let entry = Entry {
                            kind: old.kind,
                            spec: old.spec.clone(),
                            meta,
                            material: old.material.clone(),
                            key: old.key.clone(),
                        };
                        (uid, Some(entry))
                    }
                },
                Mutation::Destroy { uid, tombstone } => match (current(&uid), tombstone) {
                    (None, _) => return Err(BackendError::NotFound(uid.to_string())),
                    (Some(old), tombstone) => {
                        shredded = old.key.as_ref().map(|k| k.slot);
                        let entry = tombstone.map(|meta| Entry {
                            kind: old.kind,
                            spec: old.spec.clone(),
                            meta,
                            material: None,
                            key: None,
                        });
                        (uid, entry)
                    }
                },
                Mutation::Compact | Mutation::CompactionWritten => {
                    return Err(BackendError::InvalidInput(
                        "compaction is not a record".into(),
                    ))
                }
            }
        };
        if let Err(e) = format::seal_record(&self.keys, self.next_seq, &uid, entry.as_ref(), buf) {
            self.free_slots.extend(filled.map(|(slot, _)| slot));
            return Err(e);
        }
        self.next_seq += 1;
        slot_work.fill.extend(filled);
        slot_work.shred.extend(shredded);
        Ok((uid, entry))
    }

    /// The next key slot for a new object: a free one, else a new one at the end of the file.
    fn alloc_slot(&mut self) -> Result<u32, BackendError> {
        if let Some(slot) = self.free_slots.pop() {
            return Ok(slot);
        }
        // Slots handed out in this batch are not written yet: count past them too.
        let next = self.slots.len;
        if next >= slots::MAX_SLOTS {
            return Err(BackendError::Unavailable(format!(
                "the vault holds its maximum of {} key slots",
                slots::MAX_SLOTS
            )));
        }
        self.slots.len = next + 1;
        Ok(next)
    }

    /// Makes a batch durable in the order that keeps every acknowledged object readable and
    /// every destroyed one unrecoverable: new key slots (synced), the frame (synced), the head
    /// written, the zeroing of destroyed objects' slots, then both synced before anyone is
    /// answered.
    fn commit(
        &mut self,
        buf: &mut Vec<u8>,
        frame: usize,
        slot_work: &SlotWork,
    ) -> Result<(), BackendError> {
        if !slot_work.fill.is_empty() {
            for (slot, sealed) in &slot_work.fill {
                self.slots.write(*slot, sealed)?;
            }
            self.slots.sync()?;
        }
        let mut pos = self.pos;
        format::finish_frame(buf, frame, &self.keys, &mut pos);
        let path = self.dir.join(LOG_FILE);
        self.file.write_all(buf).map_err(|e| io_err(&path, e))?;
        // fdatasync also persists the grown file size, which is all the metadata an append needs.
        self.file.sync_data().map_err(|e| io_err(&path, e))?;
        self.pos = pos;
        if slot_work.shred.is_empty() {
            return self.head.store(Some(pos), None);
        }
        // The head is written before any slot is zeroed, so that whoever reads a zeroed slot
        // then reads a head naming the frame that destroyed it: a backup (`snapshot`) relies
        // on that to copy no live object without its key. The two syncs need no order (the
        // frame is durable; a crash before either leaves slots the next open zeroes again):
        // side by side, one fdatasync's wait instead of two.
        let written = self.head.write(Some(pos), None)?;
        for slot in &slot_work.shred {
            self.slots.zero(*slot)?;
        }
        let (head, slots) = (&mut self.head, &self.slots);
        let (stored, synced) = std::thread::scope(|s| {
            let syncing = s.spawn(|| slots.sync());
            (head.sync(written), syncing.join())
        });
        stored?;
        synced.unwrap_or_else(|panicked| std::panic::resume_unwind(panicked))
    }

    /// Makes committed mutations visible to readers, then answers their callers.
    fn apply(&mut self, pending: Vec<Pending>) {
        let records = pending.len() as u64;
        let mut replies = Vec::with_capacity(pending.len());
        {
            let mut state = self.shared.write_objects();
            for p in pending {
                if let Some(c) = &mut self.compaction {
                    if !c.dirty.contains_key(&p.uid) {
                        c.dirty.insert(p.uid.clone(), state.contains_key(&p.uid));
                    }
                }
                if let Some(old) = state.get(&p.uid) {
                    self.live_bytes = self
                        .live_bytes
                        .saturating_sub(format::record_disk_len(&p.uid, Some(old)));
                }
                match p.entry {
                    Some(entry) => {
                        self.live_bytes += format::record_disk_len(&p.uid, Some(&entry));
                        state.insert(p.uid, Arc::new(entry));
                    }
                    None => {
                        state.remove(&p.uid);
                    }
                }
                replies.push(p.reply);
            }
        }
        self.publish_sizes();
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        self.shared.records.fetch_add(records, Ordering::Relaxed);
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
    }

    fn publish_sizes(&self) {
        self.shared
            .log_bytes
            .store(self.pos.log_len, Ordering::Relaxed);
        self.shared
            .live_bytes
            .store(self.live_bytes, Ordering::Relaxed);
    }

    fn should_compact(&self) -> bool {
        self.pos.log_len >= COMPACT_MIN_LOG_BYTES.max(self.compact_retry_at)
            && self.pos.log_len >= COMPACT_GARBAGE_FACTOR.saturating_mul(self.live_bytes)
    }

    /// Starts rewriting the log with only the live objects (under a new salt, so fresh keys):
    /// copies them, under the read lock, and hands the copy to a thread that writes and fsyncs
    /// the new log beside the old one. On failure to start, the old log stays and the waiters
    /// hear why.
    fn start_compaction(&mut self, waiters: Vec<oneshot::Sender<Result<(), BackendError>>>) {
        let started = Instant::now();
        let copy: Vec<(Arc<str>, Arc<Entry>)> = {
            let state = self.shared.read_objects();
            let mut copy = Vec::with_capacity(state.len());
            copy.extend(
                state
                    .iter()
                    .map(|(uid, entry)| (uid.clone(), entry.clone())),
            );
            copy
        };
        let tmp = self.dir.join(TMP_LOG_FILE);
        let master = self.master.clone();
        let wake = self.wake.clone();
        #[cfg(test)]
        let hold = self
            .shared
            .compaction_hold
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let spawned = std::thread::Builder::new()
            .name("vault-compact".into())
            .spawn(move || {
                #[cfg(test)]
                if let Some(hold) = hold {
                    let _ = hold.copied.send(());
                    let _ = hold.go.recv();
                }
                let written = format::write_log_file(
                    &tmp,
                    &master,
                    copy.iter().map(|(uid, entry)| (&**uid, &**entry)),
                );
                if written.is_err() {
                    // Best effort: a leftover is removed at the next open too.
                    let _ = std::fs::remove_file(&tmp);
                }
                // Gone only when the vault is closing: the writer then joins this thread.
                if let Some(tx) = wake.upgrade() {
                    let (reply, _) = oneshot::channel();
                    let _ = tx.blocking_send(Request {
                        mutation: Mutation::CompactionWritten,
                        reply,
                    });
                }
                written
            });
        match spawned {
            Ok(thread) => {
                self.compaction = Some(Compaction {
                    thread,
                    dirty: HashMap::new(),
                    freed_at_switch: std::mem::take(&mut self.retired_slots),
                    waiters,
                    started,
                });
            }
            Err(e) => {
                self.compact_retry_at = self.pos.log_len.saturating_add(COMPACT_MIN_LOG_BYTES);
                let e = BackendError::Unavailable(format!("cannot start a vault compaction: {e}"));
                tracing::warn!(error = %e, "vault compaction failed; the old log stays in use");
                for reply in waiters {
                    let _ = reply.send(Err(copy_error(&e)));
                }
            }
        }
    }

    /// Finishes the compaction whose new log is written: appends the objects written since the
    /// copy, then replaces the old log. The head names both files meanwhile, so a crash at any
    /// point leaves a log the head accepts. An error here that leaves the head's state unknown
    /// stops the writer; any other leaves the old log in use.
    fn switch_logs(&mut self) -> Result<(), BackendError> {
        let Some(c) = self.compaction.take() else {
            return Ok(());
        };
        let before = self.pos.log_len;
        let written = c.thread.join().unwrap_or_else(|_| {
            Err(BackendError::Unavailable(
                "the vault compaction thread panicked".into(),
            ))
        });
        let result = written
            .map_err(CompactError::Recoverable)
            .and_then(|fresh| self.replace_log(fresh, &c.dirty));
        let answer = |e: &BackendError| Err(copy_error(e));
        match &result {
            Ok(()) => {
                self.free_slots.extend(c.freed_at_switch);
                self.shared.compactions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    before,
                    after = self.pos.log_len,
                    written_since_copy = c.dirty.len(),
                    elapsed_ms = c.started.elapsed().as_millis() as u64,
                    "compacted the vault log"
                );
            }
            Err(CompactError::Recoverable(e)) => {
                self.retired_slots.extend(c.freed_at_switch);
                self.compact_retry_at = self.pos.log_len.saturating_add(COMPACT_MIN_LOG_BYTES);
                let _ = std::fs::remove_file(self.dir.join(TMP_LOG_FILE));
                tracing::warn!(error = %e, "vault compaction failed; the old log stays in use");
            }
            Err(CompactError::Fatal(_)) => self.shared.failed.store(true, Ordering::SeqCst),
        }
        for reply in c.waiters {
            let _ = reply.send(match &result {
                Ok(()) => Ok(()),
                Err(CompactError::Recoverable(e) | CompactError::Fatal(e)) => answer(e),
            });
        }
        match result {
            Err(CompactError::Fatal(e)) => Err(e),
            Ok(()) | Err(CompactError::Recoverable(_)) => Ok(()),
        }
    }

    /// Appends the objects written since the copy to `fresh`, then puts it in the old log's
    /// place.
    fn replace_log(
        &mut self,
        mut fresh: FreshLog,
        dirty: &HashMap<Arc<str>, bool>,
    ) -> Result<(), CompactError> {
        let tmp = self.dir.join(TMP_LOG_FILE);
        let path = self.dir.join(LOG_FILE);
        {
            let state = self.shared.read_objects();
            let since = dirty
                .iter()
                .filter_map(|(uid, in_copy)| match (state.get(uid), in_copy) {
                    (Some(entry), _) => Some((&**uid, Some(&**entry))),
                    (None, true) => Some((&**uid, None)),
                    (None, false) => None,
                });
            fresh
                .append(&tmp, since)
                .map_err(CompactError::Recoverable)?;
        }
        fresh
            .file
            .sync_data()
            .map_err(|e| CompactError::Recoverable(io_err(&tmp, e)))?;
        // A failed head write leaves the head's state unknown: the writer cannot go on.
        self.head
            .store(Some(self.pos), Some(fresh.end))
            .map_err(CompactError::Fatal)?;
        if let Err(e) = std::fs::rename(&tmp, &path) {
            return Err(CompactError::Recoverable(io_err(&path, e)));
        }
        let old = std::mem::replace(&mut self.file, fresh.file);
        self.keys = fresh.keys;
        self.next_seq = fresh.next_seq;
        self.pos = fresh.end;
        self.publish_sizes();
        // Until the directory entry is durable a crash could bring back the old log, losing
        // what is appended to the new one: without this fsync the writer cannot go on.
        sync_dir(&self.dir).map_err(CompactError::Fatal)?;
        self.head
            .store(Some(self.pos), None)
            .map_err(CompactError::Fatal)?;
        // Closing the unlinked old log frees its blocks: about 0.1 s for a few hundred MB,
        // which writes need not wait for.
        let freeing = std::thread::Builder::new()
            .name("vault-free-log".into())
            .spawn(move || drop(old));
        if let Err(e) = freeing {
            tracing::debug!(error = %e, "freeing the old vault log on the writer thread");
        }
        Ok(())
    }

    /// On the way out: waits for a compaction's thread, whose new log is then dropped (the
    /// old one is still the log).
    fn abandon_compaction(&mut self) {
        if let Some(c) = self.compaction.take() {
            // After a failed commit the queue may be full: closed, the thread's wake-up fails
            // at once instead of waiting for room that would never come.
            self.rx.close();
            let _ = c.thread.join();
            // Best effort: a leftover is removed at the next open too.
            let _ = std::fs::remove_file(self.dir.join(TMP_LOG_FILE));
            for reply in c.waiters {
                let _ = reply.send(Err(BackendError::Unavailable(
                    "the vault writer stopped before its compaction finished".into(),
                )));
            }
        }
    }
}

/// A copy of a batch's error for each of its waiters (io::Error is not Clone).
fn copy_error(e: &BackendError) -> BackendError {
    BackendError::Io(std::io::Error::other(e.to_string()))
}
