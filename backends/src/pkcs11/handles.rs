//! Running calls on pooled sessions against the cached object handles: a broken session is
//! replaced and the call retried, stale handles are rescanned once, and index updates never
//! lose a concurrent write.

use std::sync::{Arc, PoisonError};

use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;
use tracing::warn;

use super::objects::{self, destroy_objects, Entry};
use super::pool::Module;
use super::{class_of, p11_error, Pkcs11Backend, Token, API, BROKEN_SESSION_RETRIES};
use crate::error::FailureClass;
use crate::BackendError;

impl Token {
    /// Runs `op` on a pooled session on a blocking thread. A broken session is discarded (with
    /// every session opened before it) and the call retried on a fresh one.
    pub(crate) async fn with_session<T, F>(&self, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&Session) -> Result<T, BackendError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let mut attempt = 0;
        loop {
            let mut conn = self.checkout().await?;
            let epoch = conn.epoch;
            let owned = conn
                .session
                .take()
                .ok_or_else(|| BackendError::Unavailable("pooled session is missing".into()))?;
            let job = Arc::clone(&op);
            let (owned, result) = tokio::task::spawn_blocking(move || {
                let result = job(&owned.session);
                (owned, result)
            })
            .await
            .map_err(|e| BackendError::Unavailable(format!("PKCS#11 worker failed: {e}")))?;
            conn.session = Some(owned);
            match result {
                Err(e) if class_of(&e) == Some(FailureClass::BrokenSession) => {
                    self.shared.invalidate(epoch);
                    drop(conn);
                    if attempt >= BROKEN_SESSION_RETRIES {
                        return Err(BackendError::Unavailable(format!(
                            "PKCS#11 session broken: {e}"
                        )));
                    }
                    warn!(error = %e, "PKCS#11 session broken; retrying on a fresh session");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

impl Pkcs11Backend {
    /// [`Token::with_session`] on this backend's token.
    pub(super) async fn with_session<T, F>(&self, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&Session) -> Result<T, BackendError> + Send + Sync + 'static,
    {
        self.token.with_session(op).await
    }

    /// Scans the token, refusing a result from a token in an error state: SoftHSM answers finds
    /// on a token whose files vanished with an empty list, which must not empty the index.
    pub(super) async fn scan(&self) -> Result<objects::Scan, BackendError> {
        let module = Arc::clone(&self.token.module);
        let slot = self.token.slot;
        self.with_session(move |s| {
            token_usable(&module, slot)?;
            logged_in(s)?;
            let scan = objects::scan(s)?;
            token_usable(&module, slot)?;
            Ok(scan)
        })
        .await
    }

    pub(super) fn lookup(&self, uid: &str) -> Result<(Entry, u64), BackendError> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index
            .map
            .get(uid)
            .map(|e| (*e, index.generation))
            .ok_or_else(|| BackendError::NotFound(uid.to_owned()))
    }

    /// Rescans the token unless another caller already did since `seen_generation`.
    async fn rescan(&self, seen_generation: u64) -> Result<(), BackendError> {
        let _gate = self.rescan_gate.write().await;
        if self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
            != seen_generation
        {
            return Ok(());
        }
        warn!("PKCS#11 object handles are stale; rescanning the token");
        let scan = self.scan().await?;
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        index.map = scan.index;
        index.generation += 1;
        Ok(())
    }

    /// Runs `op` against the cached handles of `uid`. If the token says a handle is invalid
    /// (token re-inserted, objects reloaded), rescans once and retries.
    pub(super) async fn with_object<T, F>(&self, uid: &str, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&Session, &Entry) -> Result<T, BackendError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let (entry, generation) = self.lookup(uid)?;
        let first = Arc::clone(&op);
        match self.with_session(move |s| first(s, &entry)).await {
            Err(e) if class_of(&e) == Some(FailureClass::NotFound) => {
                self.rescan(generation).await?;
                let (entry, _) = self.lookup(uid)?;
                match self.with_session(move |s| op(s, &entry)).await {
                    Err(e) if class_of(&e) == Some(FailureClass::NotFound) => {
                        Err(BackendError::NotFound(uid.to_owned()))
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Like [`Self::with_object`], for an operation on two objects of the token at once (a key
    /// wrapped by another).
    pub(super) async fn with_objects<T, F>(&self, uids: [&str; 2], op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&Session, [&Entry; 2]) -> Result<T, BackendError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let (first, generation) = self.lookup(uids[0])?;
        let (second, _) = self.lookup(uids[1])?;
        let run = Arc::clone(&op);
        match self.with_session(move |s| run(s, [&first, &second])).await {
            Err(e) if class_of(&e) == Some(FailureClass::NotFound) => {
                self.rescan(generation).await?;
                let (first, _) = self.lookup(uids[0])?;
                let (second, _) = self.lookup(uids[1])?;
                match self.with_session(move |s| op(s, [&first, &second])).await {
                    Err(e) if class_of(&e) == Some(FailureClass::NotFound) => Err(
                        BackendError::NotFound(format!("{} or {}", uids[0], uids[1])),
                    ),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Runs a companion replacement (update, destroy) against the cached handles of `uid` and
    /// stores its outcome in the index: `Some(entry)` replaces the entry, `None` removes it.
    /// Each attempt holds the rescan gate shared (a rescan must not resurrect what it removes)
    /// and the writer lock; on stale handles it lets both go before rescanning, which takes the
    /// gate exclusively, then retries once.
    pub(super) async fn replace_object<F>(&self, uid: &str, op: F) -> Result<(), BackendError>
    where
        F: Fn(&Session, &Entry) -> Result<Option<Entry>, BackendError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let mut rescanned = false;
        loop {
            let gate = self.rescan_gate.read().await;
            let writer = self.meta_writer.lock().await;
            let (entry, generation) = self.lookup(uid)?;
            let job = Arc::clone(&op);
            match self.with_session(move |s| job(s, &entry)).await {
                Err(e) if class_of(&e) == Some(FailureClass::NotFound) => {
                    if rescanned {
                        return Err(BackendError::NotFound(uid.to_owned()));
                    }
                    drop(writer);
                    drop(gate);
                    self.rescan(generation).await?;
                    rescanned = true;
                }
                Err(e) => return Err(e),
                Ok(kept) => {
                    let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
                    match kept {
                        Some(entry) => index.map.insert(uid.to_owned(), entry),
                        None => index.map.remove(uid),
                    };
                    return Ok(());
                }
            }
        }
    }

    /// Adds a freshly written object to the index. A concurrent writer of the same uid loses:
    /// its token objects are removed again.
    pub(super) async fn publish(&self, uid: String, entry: Entry) -> Result<(), BackendError> {
        let clash = {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            if index.map.contains_key(&uid) {
                true
            } else {
                index.map.insert(uid.clone(), entry);
                false
            }
        };
        if clash {
            let uid_owned = uid.clone();
            self.with_session(move |s| destroy_objects(s, &uid_owned, &entry, None))
                .await?;
            return Err(BackendError::AlreadyExists(uid));
        }
        Ok(())
    }

    pub(super) fn ensure_absent(&self, uid: &str) -> Result<(), BackendError> {
        if self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .contains_key(uid)
        {
            return Err(BackendError::AlreadyExists(uid.to_owned()));
        }
        Ok(())
    }
}

/// Private objects are invisible without a login, so a scan on a logged-out session would find
/// nothing: report it as the broken session it is (retried on a fresh session, which logs in).
fn logged_in(session: &Session) -> Result<(), BackendError> {
    let state = session
        .get_session_info()
        .map_err(p11_error)?
        .session_state();
    if state == SessionState::RwUser {
        return Ok(());
    }
    Err(BackendError::Call {
        api: API,
        call: "C_GetSessionInfo".into(),
        class: FailureClass::BrokenSession,
        code: format!("{:?}", cryptoki::error::RvError::UserNotLoggedIn),
    })
}

/// `C_GetTokenInfo` succeeds on a usable token; SoftHSM fails it once the token's files are gone.
pub(super) fn token_usable(module: &Module, slot: Slot) -> Result<(), BackendError> {
    module.ctx.get_token_info(slot).map(|_| ()).map_err(|e| {
        BackendError::Unavailable(format!(
            "PKCS#11 token is not usable ({e}); if it was removed, restore it: the module is reloaded and the token reopened automatically"
        ))
    })
}
