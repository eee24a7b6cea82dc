//! PKCS#11 backend (SoftHSM2 or a hardware HSM) through cryptoki, with a bb8 pool of sessions.
//!
//! All of an object's state lives in the token (see `objects`); the process only caches object
//! handles, found by one scan at start. Every PKCS#11 call runs on a blocking thread with its
//! session moved in and handed back.
//!
//! Here: the backend's state and configuration. `pin` reads the PIN, `open` opens and closes
//! the token, `handles` runs calls on pooled sessions against the cached handles (retrying on a
//! fresh session, rescanning stale handles), `backend` implements the [`crate::Backend`]
//! operations; `rv` classifies return values, `pool` keeps the sessions, `objects` lays
//! objects out on the token and destroys them, `cipher` runs the cipher and MAC mechanisms,
//! and `recovering` reopens a lost token.

mod asym;
mod backend;
mod cipher;
mod des3;
mod handles;
mod objects;
mod open;
mod pin;
mod pool;
mod recovering;
mod rv;
mod stream;

pub(crate) use objects::ZeroizeTemplate;
pub(crate) use open::Token;
pub use pin::{normalize_pin, PinSource};
pub use recovering::{RecoveringPkcs11, RECOVERY_INTERVAL};
pub use rv::classify;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use cryptoki::error::Error as CkError;
use zeroize::Zeroizing;

use crate::error::FailureClass;
use crate::BackendError;
use objects::Entry;
use pool::SessionManager;

/// Upper bound on `pool_size`: SoftHSM gains nothing beyond a few sessions (stack notes), and
/// every session holds token resources.
pub const MAX_POOL_SIZE: u32 = 64;
/// Retries of a call whose session turned out broken, each on a fresh session.
const BROKEN_SESSION_RETRIES: u32 = 1;
/// How long [`Pkcs11Backend::close`] waits for the sessions to close and the module to finalise.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Poll interval of that wait.
const CLOSE_POLL: Duration = Duration::from_millis(5);

/// How to reach the token.
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`).
    pub module_path: PathBuf,
    /// Token label: slot numbers are not stable (SoftHSM generates them).
    pub token_label: String,
    /// User PIN, from [`PinSource::resolve`].
    pub pin: Zeroizing<String>,
    /// Sessions in the pool; capped by the token's maximum session count.
    pub pool_size: u32,
    /// How long a request waits for a free session before failing with `Busy`.
    pub acquire_timeout: Duration,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module_path", &self.module_path)
            .field("token_label", &self.token_label)
            .field("pin", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

/// The interface named in [`BackendError::Call`] errors of this backend.
const API: &str = "PKCS#11";

/// Converts a cryptoki error into the backend error, keeping the CK_RV class for the gateway.
pub(crate) fn p11_error(err: CkError) -> BackendError {
    match err {
        CkError::Pkcs11(rv, function) => BackendError::Call {
            api: API,
            call: format!("C_{function:?}"),
            class: classify(rv),
            code: format!("{rv:?}"),
        },
        CkError::LibraryLoading(e) => {
            BackendError::Unavailable(format!("loading the PKCS#11 module failed: {e}"))
        }
        other => BackendError::Unavailable(format!("PKCS#11 wrapper error: {other}")),
    }
}

fn class_of(err: &BackendError) -> Option<FailureClass> {
    match err {
        BackendError::Call { class, .. } => Some(*class),
        _ => None,
    }
}

/// The handle cache, replaced whole by a rescan.
#[derive(Default)]
struct Index {
    /// Bumped by every rescan, so concurrent callers that saw the same stale handles rescan once.
    generation: u64,
    map: HashMap<String, Entry>,
}

/// Keeps one pooled session out of the pool until dropped. See
/// [`Pkcs11Backend::reserve_session`].
pub struct SessionReservation {
    _conn: bb8::PooledConnection<'static, SessionManager>,
}

/// The PKCS#11 backend.
pub struct Pkcs11Backend {
    token: Token,
    index: RwLock<Index>,
    /// Writers (create, destroy) hold it shared; a rescan holds it exclusively so that it never
    /// drops an entry written while it ran.
    rescan_gate: tokio::sync::RwLock<()>,
    /// Serialises companion replacements (update, destroy), which read then swap a handle.
    meta_writer: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("pool", &self.token.pool.state())
            .finish_non_exhaustive()
    }
}
