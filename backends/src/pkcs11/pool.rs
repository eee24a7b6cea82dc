//! The loaded PKCS#11 module (initialised once per process, finalised when its last user goes)
//! and the bb8 session pool over one token.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use tracing::warn;
use zeroize::Zeroizing;

use super::p11_error;
use crate::BackendError;

/// How long `open` waits for a previous instance of the same module to finish `C_Finalize`
/// (a dropped backend whose last session is still being closed) before giving up.
const FINALIZE_WAIT: Duration = Duration::from_secs(5);
/// Poll interval while waiting for that finalisation.
const FINALIZE_POLL: Duration = Duration::from_millis(10);

/// Modules initialised by this process, by path. PKCS#11 state is per process: a second
/// `C_Initialize` fails, and one `C_Finalize` ends it for every user, so backends share one
/// [`Module`] per path and the last one to go finalises it.
static MODULES: Mutex<Vec<(PathBuf, Weak<Module>)>> = Mutex::new(Vec::new());

/// An initialised PKCS#11 library. Dropping the last reference calls `C_Finalize`.
pub(crate) struct Module {
    pub(crate) ctx: Pkcs11,
    path: PathBuf,
}

impl Module {
    /// Loads and initialises the module at `path`, or shares the instance already live in this
    /// process.
    pub(crate) fn acquire(path: &Path) -> Result<Arc<Module>, BackendError> {
        if !path.is_file() {
            return Err(BackendError::Unavailable(format!(
                "PKCS#11 module {} does not exist or is not a file",
                path.display()
            )));
        }
        let deadline = Instant::now() + FINALIZE_WAIT;
        loop {
            {
                let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
                match modules.iter().find(|(p, _)| p == path) {
                    Some((_, weak)) => {
                        if let Some(module) = weak.upgrade() {
                            return Ok(module);
                        }
                        // The last user is inside `Drop`, waiting for this lock to finalise.
                    }
                    None => {
                        let module = Arc::new(Module::initialize(path)?);
                        modules.push((path.to_path_buf(), Arc::downgrade(&module)));
                        return Ok(module);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Unavailable(format!(
                    "PKCS#11 module {} is still being finalised by a previous user",
                    path.display()
                )));
            }
            std::thread::sleep(FINALIZE_POLL);
        }
    }

    fn initialize(path: &Path) -> Result<Module, BackendError> {
        let ctx = Pkcs11::new(path).map_err(|e| {
            BackendError::Unavailable(format!(
                "cannot load PKCS#11 module {}: {e}",
                path.display()
            ))
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                return Err(BackendError::Unavailable(format!(
                    "PKCS#11 module {} was initialised by another component of this process",
                    path.display()
                )))
            }
            Err(e) => return Err(p11_error(e)),
        }
        Ok(Module {
            ctx,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // Held while finalising so that a concurrent `acquire` cannot initialise in between.
        let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = self.ctx.clone().finalize() {
            warn!(module = %self.path.display(), error = %e, "C_Finalize failed");
        }
        modules.retain(|(p, weak)| !(p == &self.path && weak.strong_count() == 0));
    }
}

/// A session together with the module it belongs to. Fields drop in order: the session is
/// closed before the module can be finalised (so a late close never hits a re-initialised
/// library), and the owner count drops last, once any finalisation has returned.
pub(crate) struct OwnedSession {
    pub(crate) session: Session,
    _module: Arc<Module>,
    /// Counts the sessions of one backend, so that closing it can wait for them.
    _owner: Arc<()>,
}

/// Start of the error of a login the token refused for the PIN (incorrect, locked, expired):
/// trying the same PIN again can only count down the token's retry counter.
const LOGIN_REFUSED: &str = "PKCS#11 login failed: ";

/// Whether `err` is a login the token refused for the PIN (see [`LOGIN_REFUSED`]).
pub(crate) fn is_login_refused(err: &BackendError) -> bool {
    matches!(err, BackendError::Unavailable(m) if m.starts_with(LOGIN_REFUSED))
}

/// Opens a read/write session on `slot` and logs the user in. Blocking.
pub(crate) fn open_session(
    module: &Arc<Module>,
    owner: &Arc<()>,
    slot: Slot,
    pin: &Zeroizing<String>,
) -> Result<OwnedSession, BackendError> {
    let session = module.ctx.open_rw_session(slot).map_err(p11_error)?;
    let auth = AuthPin::from(pin.as_str());
    let login = session.login(UserType::User, Some(&auth));
    let result = match &login {
        Ok(()) => "success",
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => "already_logged_in",
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => "pin_incorrect",
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => "pin_locked",
        Err(CkError::Pkcs11(RvError::PinExpired, _)) => "pin_expired",
        Err(_) => "error",
    };
    // Every C_Login, so that repeated wrong-PIN attempts (which can lock an HSM user) show.
    metrics::counter!("kmip_pkcs11_logins_total", "result" => result).increment(1);
    match login {
        // Login is per application, not per session: later sessions find it done.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(CkError::Pkcs11(
            rv @ (RvError::PinIncorrect | RvError::PinLocked | RvError::PinExpired),
            _,
        )) => {
            let why = match rv {
                RvError::PinIncorrect => "the PIN is incorrect",
                RvError::PinLocked => "the PIN is locked",
                _ => "the PIN has expired",
            };
            return Err(BackendError::Unavailable(format!(
                "{LOGIN_REFUSED}{why} ({rv:?})"
            )));
        }
        Err(e) => return Err(p11_error(e)),
    }
    Ok(OwnedSession {
        session,
        _module: Arc::clone(module),
        _owner: Arc::clone(owner),
    })
}

/// State shared by the pool manager and the backend.
#[derive(Default)]
pub(crate) struct PoolShared {
    /// Sessions opened before the current epoch are discarded: bumped when a call reports a
    /// broken session, since the cause (token removed, login lost) usually breaks them all.
    epoch: AtomicU64,
    /// Why the last attempt to open a session failed, cleared by the next success: tells a pool
    /// timeout caused by an absent token from one caused by load.
    last_connect_error: Mutex<Option<String>>,
}

impl PoolShared {
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Marks every session of `epoch` (and older) broken; a no-op if someone already did.
    pub(crate) fn invalidate(&self, epoch: u64) {
        let _ = self.epoch.compare_exchange(
            epoch,
            epoch.wrapping_add(1),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub(crate) fn last_connect_error(&self) -> Option<String> {
        self.last_connect_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_connect_error(&self, error: Option<String>) {
        *self
            .last_connect_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }
}

/// A pooled connection. The session is taken out while a blocking call runs and put back after;
/// a connection without its session (the call panicked or was abandoned) is discarded.
pub(crate) struct PooledSession {
    pub(crate) session: Option<OwnedSession>,
    pub(crate) epoch: u64,
}

impl PooledSession {
    pub(crate) fn new(session: OwnedSession, epoch: u64) -> Self {
        PooledSession {
            session: Some(session),
            epoch,
        }
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(owned) = self.session.take() {
            // C_CloseSession can block on a real HSM: keep it off the async workers.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(owned))),
                Err(_) => drop(owned),
            }
        }
    }
}

/// bb8 manager: opens logged-in sessions on one slot.
pub(crate) struct SessionManager {
    pub(crate) module: Arc<Module>,
    pub(crate) owner: Arc<()>,
    pub(crate) slot: Slot,
    pub(crate) pin: Arc<Zeroizing<String>>,
    pub(crate) shared: Arc<PoolShared>,
}

impl SessionManager {
    fn usable(&self, conn: &PooledSession) -> bool {
        conn.session.is_some() && conn.epoch == self.shared.epoch()
    }
}

impl bb8::ManageConnection for SessionManager {
    type Connection = PooledSession;
    type Error = BackendError;

    async fn connect(&self) -> Result<PooledSession, BackendError> {
        let module = Arc::clone(&self.module);
        let owner = Arc::clone(&self.owner);
        let slot = self.slot;
        let pin = Arc::clone(&self.pin);
        let epoch = self.shared.epoch();
        let opened = tokio::task::spawn_blocking(move || open_session(&module, &owner, slot, &pin))
            .await
            .map_err(|e| BackendError::Unavailable(format!("PKCS#11 worker failed: {e}")))
            .and_then(|r| r);
        match opened {
            Ok(session) => {
                self.shared.set_connect_error(None);
                Ok(PooledSession::new(session, epoch))
            }
            Err(e) => {
                warn!(error = %e, "opening a PKCS#11 session failed");
                self.shared.set_connect_error(Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// No PKCS#11 call: failures are seen by the calls themselves and mark the session broken.
    async fn is_valid(&self, conn: &mut PooledSession) -> Result<(), BackendError> {
        if self.usable(conn) {
            Ok(())
        } else {
            Err(BackendError::Unavailable("stale PKCS#11 session".into()))
        }
    }

    fn has_broken(&self, conn: &mut PooledSession) -> bool {
        !self.usable(conn)
    }
}
