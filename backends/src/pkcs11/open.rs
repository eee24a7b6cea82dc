//! Opening the token (module, slot by label, login, session pool) and closing it again, and
//! taking sessions out of the pool: [`Token`], which the backend and the PKCS#11 KEK
//! (`crate::envelope::Pkcs11Kek`) both hold.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use cryptoki::slot::{Limit, Slot};
use tracing::warn;
use zeroize::Zeroizing;

use super::pool::{self, Module, OwnedSession, PoolShared, PooledSession, SessionManager};
use super::{
    p11_error, Index, Pkcs11Backend, Pkcs11Config, SessionReservation, CLOSE_POLL, CLOSE_WAIT,
    MAX_POOL_SIZE,
};
use crate::BackendError;

/// What `open` prepares on a blocking thread.
struct Opened {
    module: Arc<Module>,
    slot: Slot,
    first: OwnedSession,
    max_sessions: Limit,
}

fn find_token(module: &Module, label: &str) -> Result<Slot, BackendError> {
    let slots = module.ctx.get_slots_with_token().map_err(p11_error)?;
    let mut seen = Vec::new();
    let mut matches = Vec::new();
    for slot in slots {
        let info = module.ctx.get_token_info(slot).map_err(p11_error)?;
        let this = info.label().trim_end();
        if this == label {
            matches.push(slot);
        }
        seen.push(this.to_owned());
    }
    match matches.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(BackendError::Unavailable(format!(
            "no PKCS#11 token labelled {label:?} (tokens present: {seen:?})"
        ))),
        _ => Err(BackendError::Unavailable(format!(
            "{} PKCS#11 tokens are labelled {label:?}; labels must be unique",
            matches.len()
        ))),
    }
}

fn open_blocking(
    path: &std::path::Path,
    owner: &Arc<()>,
    label: &str,
    pin: &Zeroizing<String>,
) -> Result<Opened, BackendError> {
    let module = Module::acquire(path)?;
    let slot = find_token(&module, label)?;
    let max_sessions = module
        .ctx
        .get_token_info(slot)
        .map_err(p11_error)?
        .max_session_count();
    let first = pool::open_session(&module, owner, slot, pin)?;
    Ok(Opened {
        module,
        slot,
        first,
        max_sessions,
    })
}

/// A logged-in session pool over one token, found by its label.
pub(crate) struct Token {
    pub(crate) pool: bb8::Pool<SessionManager>,
    pub(super) shared: Arc<PoolShared>,
    acquire_timeout: Duration,
    /// Held by every session of this pool: gone when they are all closed.
    owner: Weak<()>,
    pub(super) module: Arc<Module>,
    pub(super) slot: Slot,
    /// Sessions multi-part operations may hold out of the pool: one fewer than the pool, so a
    /// stream never takes the last session single requests need.
    pub(super) stream_permits: Arc<tokio::sync::Semaphore>,
}

impl Token {
    /// Loads the module, finds the token by label, logs in and builds the session pool.
    pub(crate) async fn open(config: Pkcs11Config) -> Result<Token, BackendError> {
        if config.pool_size == 0 || config.pool_size > MAX_POOL_SIZE {
            return Err(BackendError::InvalidInput(format!(
                "PKCS#11 pool size must be 1..={MAX_POOL_SIZE}"
            )));
        }
        if config.acquire_timeout.is_zero() {
            return Err(BackendError::InvalidInput(
                "PKCS#11 acquire timeout must be positive".into(),
            ));
        }
        if config.token_label.is_empty() {
            return Err(BackendError::InvalidInput(
                "PKCS#11 token label is empty".into(),
            ));
        }
        let pin = Arc::new(config.pin);
        let path = config.module_path.clone();
        let label = config.token_label.clone();
        let open_pin = Arc::clone(&pin);
        let owner = Arc::new(());
        let open_owner = Arc::clone(&owner);
        let opened = tokio::task::spawn_blocking(move || {
            open_blocking(&path, &open_owner, &label, &open_pin)
        })
        .await
        .map_err(|e| BackendError::Unavailable(format!("PKCS#11 worker failed: {e}")))??;

        let pool_size = match opened.max_sessions {
            Limit::Max(max) => {
                let capped = u32::try_from(max)
                    .unwrap_or(u32::MAX)
                    .clamp(1, config.pool_size);
                if capped < config.pool_size {
                    warn!(
                        requested = config.pool_size,
                        used = capped,
                        "token allows fewer sessions than the configured pool size"
                    );
                }
                capped
            }
            Limit::Unavailable | Limit::Infinite => config.pool_size,
        };
        let shared = Arc::new(PoolShared::default());
        let first = PooledSession::new(opened.first, shared.epoch());
        let module = Arc::clone(&opened.module);
        let manager = SessionManager {
            owner: Arc::clone(&owner),
            module: opened.module,
            slot: opened.slot,
            pin,
            shared: Arc::clone(&shared),
        };
        let pool = bb8::Pool::builder()
            .max_size(pool_size)
            .min_idle(None)
            // Sessions do not age, and closing the last one would drop the login.
            .max_lifetime(None)
            .idle_timeout(None)
            .connection_timeout(config.acquire_timeout)
            .build_unchecked(manager);
        if pool.add(first).is_err() {
            return Err(BackendError::Unavailable(
                "could not place the first PKCS#11 session in the pool".into(),
            ));
        }
        Ok(Token {
            pool,
            shared,
            acquire_timeout: config.acquire_timeout,
            owner: Arc::downgrade(&owner),
            module,
            slot: opened.slot,
            stream_permits: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(pool_size.saturating_sub(1)).unwrap_or(0),
            )),
        })
    }

    /// What [`Token::closed`] waits on; take it before dropping the token.
    pub(crate) fn owner(&self) -> Weak<()> {
        self.owner.clone()
    }

    /// Waits (bounded) until every session of a dropped token is closed and, if it was the
    /// module's last user, `C_Finalize` has returned, so the module can be opened afresh.
    pub(crate) async fn closed(owner: Weak<()>) {
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        while owner.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                warn!("PKCS#11 sessions still open after {CLOSE_WAIT:?}; not waiting longer");
                return;
            }
            tokio::time::sleep(CLOSE_POLL).await;
        }
    }

    pub(crate) async fn checkout(
        &self,
    ) -> Result<bb8::PooledConnection<'static, SessionManager>, BackendError> {
        match self.pool.get_owned().await {
            Ok(conn) => Ok(conn),
            Err(bb8::RunError::User(e)) => Err(e),
            Err(bb8::RunError::TimedOut) => match self.shared.last_connect_error() {
                // No session could be opened at all: the token is gone, not merely busy.
                Some(why) => Err(BackendError::Unavailable(why)),
                None => Err(BackendError::Busy(self.acquire_timeout)),
            },
        }
    }
}

impl Pkcs11Backend {
    /// Loads the module, finds the token by label, logs in and builds the session pool.
    pub async fn open(config: Pkcs11Config) -> Result<Self, BackendError> {
        Ok(Pkcs11Backend {
            token: Token::open(config).await?,
            index: RwLock::new(Index::default()),
            rescan_gate: tokio::sync::RwLock::new(()),
            meta_writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Drops the backend and waits (bounded) until its sessions are closed and, if it was the
    /// module's last user, `C_Finalize` has returned, so the module can be opened afresh. A plain
    /// drop does the same in the background.
    pub async fn close(self) {
        let owner = self.token.owner();
        drop(self);
        Token::closed(owner).await;
    }

    /// Takes one session out of the pool until the reservation is dropped: drains the pool on
    /// purpose (tests of exhaustion, exclusive maintenance). Waits like any request.
    pub async fn reserve_session(&self) -> Result<SessionReservation, BackendError> {
        Ok(SessionReservation {
            _conn: self.token.checkout().await?,
        })
    }
}
