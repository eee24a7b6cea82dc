//! PKCS#11 backend (SoftHSM2 or a hardware HSM) through cryptoki, with a bb8 pool of sessions.
//!
//! All of an object's state lives in the token (see [`objects`]); the process only caches object
//! handles, found by one scan at start. Every PKCS#11 call runs on a blocking thread with its
//! session moved in and handed back.

mod cipher;
mod objects;
mod pool;
mod recovering;
mod rv;

pub use recovering::{RecoveringPkcs11, RECOVERY_INTERVAL};

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::{Limit, Slot};
use tracing::warn;
use zeroize::Zeroizing;

use crate::{
    Backend, BackendError, CipherOutput, CipherRequest, KeyAlgorithm, KeySpec, ObjectKind,
    ObjectRecord,
};
use cipher::CipherJob;
use objects::{Entry, FLAG_NOT_EXTRACTABLE, FLAG_TOMBSTONE, MATERIAL_APP};
use pool::{Module, OwnedSession, PoolShared, PooledSession, SessionManager};

pub use rv::{classify, RvClass};

/// Largest PIN file read: a PIN is short; this only stops a wrong path from loading a big file.
const MAX_PIN_FILE_BYTES: u64 = 4096;
/// Permission bits a PIN file must not have: any access for group or other (as the vault's
/// master key file).
const FORBIDDEN_PIN_MODE_BITS: u32 = 0o077;
/// Upper bound on `pool_size`: SoftHSM gains nothing beyond a few sessions (stack notes), and
/// every session holds token resources.
pub const MAX_POOL_SIZE: u32 = 64;
/// Longest uid stored as `CKA_ID`.
const MAX_UID_BYTES: usize = 1024;
/// Longest label stored as `CKA_LABEL`.
const MAX_LABEL_BYTES: usize = 1024;
/// Largest imported object (certificates, blobs): each lives whole in token memory.
const MAX_MATERIAL_BYTES: usize = 1024 * 1024;
/// Retries of a call whose session turned out broken, each on a fresh session.
const BROKEN_SESSION_RETRIES: u32 = 1;
/// Largest HMAC key generated, in bits.
const MAX_HMAC_KEY_BITS: u32 = 4096;
/// How long [`Pkcs11Backend::close`] waits for the sessions to close and the module to finalise.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Poll interval of that wait.
const CLOSE_POLL: Duration = Duration::from_millis(5);

/// Where the user PIN comes from. It is never taken from the command line or a config value.
#[derive(Debug, Clone)]
pub enum PinSource {
    /// A file holding the PIN; one trailing newline is ignored.
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
}

impl PinSource {
    /// Reads the PIN. Errors name the source, never its content.
    pub fn resolve(&self) -> Result<Zeroizing<String>, BackendError> {
        let pin = match self {
            PinSource::File(path) => read_pin_file(path)?,
            PinSource::Env(name) => Zeroizing::new(std::env::var(name).map_err(|_| {
                BackendError::InvalidInput(format!(
                    "environment variable {name} (PKCS#11 PIN) is not set or not UTF-8"
                ))
            })?),
        };
        normalize_pin(pin)
    }
}

/// Reads a PIN file: a regular file with no group/other permission bits.
fn read_pin_file(path: &std::path::Path) -> Result<Zeroizing<String>, BackendError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let cannot = |e: std::io::Error| {
        BackendError::InvalidInput(format!("cannot read PIN file {}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    // fstat on the open descriptor, so the checked file is the one read.
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(BackendError::InvalidInput(format!(
            "PIN file {} is not a regular file",
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & FORBIDDEN_PIN_MODE_BITS != 0 {
        return Err(BackendError::InvalidInput(format!(
            "refusing PIN file {}: mode {mode:04o} gives group/other access; run chmod 600 on it",
            path.display()
        )));
    }
    if meta.len() > MAX_PIN_FILE_BYTES {
        return Err(BackendError::InvalidInput(format!(
            "PIN file {} is larger than {MAX_PIN_FILE_BYTES} bytes",
            path.display()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PIN_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        BackendError::InvalidInput(format!("PIN file {} is not UTF-8", path.display()))
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// A PIN as read: one trailing newline dropped; empty is refused.
pub fn normalize_pin(mut pin: Zeroizing<String>) -> Result<Zeroizing<String>, BackendError> {
    if pin.ends_with('\n') {
        pin.pop();
        if pin.ends_with('\r') {
            pin.pop();
        }
    }
    if pin.is_empty() {
        return Err(BackendError::InvalidInput(
            "the PKCS#11 PIN is empty".into(),
        ));
    }
    Ok(pin)
}

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

/// Converts a cryptoki error into the backend error, keeping the CK_RV class for the gateway.
pub(crate) fn p11_error(err: CkError) -> BackendError {
    match err {
        CkError::Pkcs11(rv, function) => BackendError::Pkcs11 {
            call: format!("C_{function:?}"),
            class: classify(rv),
            rv: format!("{rv:?}"),
        },
        CkError::LibraryLoading(e) => {
            BackendError::Unavailable(format!("loading the PKCS#11 module failed: {e}"))
        }
        other => BackendError::Unavailable(format!("PKCS#11 wrapper error: {other}")),
    }
}

fn class_of(err: &BackendError) -> Option<RvClass> {
    match err {
        BackendError::Pkcs11 { class, .. } => Some(*class),
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
    pool: bb8::Pool<SessionManager>,
    shared: Arc<PoolShared>,
    index: RwLock<Index>,
    /// Writers (create, destroy) hold it shared; a rescan holds it exclusively so that it never
    /// drops an entry written while it ran.
    rescan_gate: tokio::sync::RwLock<()>,
    /// Serialises companion replacements (update, destroy), which read then swap a handle.
    meta_writer: tokio::sync::Mutex<()>,
    acquire_timeout: Duration,
    /// Held by every session of this backend: gone when they are all closed.
    owner: Weak<()>,
    module: Arc<Module>,
    slot: Slot,
}

impl fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("pool", &self.pool.state())
            .finish_non_exhaustive()
    }
}

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

impl Pkcs11Backend {
    /// Loads the module, finds the token by label, logs in and builds the session pool.
    pub async fn open(config: Pkcs11Config) -> Result<Self, BackendError> {
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
        Ok(Pkcs11Backend {
            pool,
            shared,
            index: RwLock::new(Index::default()),
            rescan_gate: tokio::sync::RwLock::new(()),
            meta_writer: tokio::sync::Mutex::new(()),
            acquire_timeout: config.acquire_timeout,
            owner: Arc::downgrade(&owner),
            module,
            slot: opened.slot,
        })
    }

    /// Drops the backend and waits (bounded) until its sessions are closed and, if it was the
    /// module's last user, `C_Finalize` has returned, so the module can be opened afresh. A plain
    /// drop does the same in the background.
    pub async fn close(self) {
        let owner = self.owner.clone();
        drop(self);
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        while owner.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                warn!("PKCS#11 sessions still open after {CLOSE_WAIT:?}; not waiting longer");
                return;
            }
            tokio::time::sleep(CLOSE_POLL).await;
        }
    }

    /// Takes one session out of the pool until the reservation is dropped: drains the pool on
    /// purpose (tests of exhaustion, exclusive maintenance). Waits like any request.
    pub async fn reserve_session(&self) -> Result<SessionReservation, BackendError> {
        Ok(SessionReservation {
            _conn: self.checkout().await?,
        })
    }

    async fn checkout(
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

    /// Runs `op` on a pooled session on a blocking thread. A broken session is discarded (with
    /// every session opened before it) and the call retried on a fresh one.
    async fn with_session<T, F>(&self, op: F) -> Result<T, BackendError>
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
                Err(e) if class_of(&e) == Some(RvClass::BrokenSession) => {
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

    /// Scans the token, refusing a result from a token in an error state: SoftHSM answers finds
    /// on a token whose files vanished with an empty list, which must not empty the index.
    async fn scan(&self) -> Result<objects::Scan, BackendError> {
        let module = Arc::clone(&self.module);
        let slot = self.slot;
        self.with_session(move |s| {
            token_usable(&module, slot)?;
            logged_in(s)?;
            let scan = objects::scan(s)?;
            token_usable(&module, slot)?;
            Ok(scan)
        })
        .await
    }

    fn lookup(&self, uid: &str) -> Result<(Entry, u64), BackendError> {
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
    async fn with_object<T, F>(&self, uid: &str, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&Session, &Entry) -> Result<T, BackendError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let (entry, generation) = self.lookup(uid)?;
        let first = Arc::clone(&op);
        match self.with_session(move |s| first(s, &entry)).await {
            Err(e) if class_of(&e) == Some(RvClass::NotFound) => {
                self.rescan(generation).await?;
                let (entry, _) = self.lookup(uid)?;
                match self.with_session(move |s| op(s, &entry)).await {
                    Err(e) if class_of(&e) == Some(RvClass::NotFound) => {
                        Err(BackendError::NotFound(uid.to_owned()))
                    }
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
    async fn replace_object<F>(&self, uid: &str, op: F) -> Result<(), BackendError>
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
                Err(e) if class_of(&e) == Some(RvClass::NotFound) => {
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
    async fn publish(&self, uid: String, entry: Entry) -> Result<(), BackendError> {
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

    fn ensure_absent(&self, uid: &str) -> Result<(), BackendError> {
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

    async fn cipher(
        &self,
        uid: &str,
        req: CipherRequest,
        decrypt: bool,
    ) -> Result<CipherOutput, BackendError> {
        let job = CipherJob {
            mode: req.mode,
            data: req.data,
            iv: req.iv,
            aad: req.aad.unwrap_or_default(),
            tag: req.tag,
        };
        job.validate(decrypt)?;
        let uid_owned = uid.to_owned();
        self.with_object(uid, move |s, e| {
            let key = key_handle(&uid_owned, e)?;
            if decrypt {
                cipher::decrypt(s, key, &job)
            } else {
                cipher::encrypt(s, key, &job)
            }
        })
        .await
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
    Err(BackendError::Pkcs11 {
        call: "C_GetSessionInfo".into(),
        class: RvClass::BrokenSession,
        rv: format!("{:?}", cryptoki::error::RvError::UserNotLoggedIn),
    })
}

/// `C_GetTokenInfo` succeeds on a usable token; SoftHSM fails it once the token's files are gone.
fn token_usable(module: &Module, slot: Slot) -> Result<(), BackendError> {
    module.ctx.get_token_info(slot).map(|_| ()).map_err(|e| {
        BackendError::Unavailable(format!(
            "PKCS#11 token is not usable ({e}); if it was removed, restore it: the module is reloaded and the token reopened automatically"
        ))
    })
}

fn material(uid: &str, entry: &Entry) -> Result<ObjectHandle, BackendError> {
    entry
        .material
        .ok_or_else(|| BackendError::NotFound(uid.to_owned()))
}

fn key_handle(uid: &str, entry: &Entry) -> Result<ObjectHandle, BackendError> {
    if entry.kind != ObjectKind::SymmetricKey {
        return Err(BackendError::InvalidInput(format!(
            "object {uid} is not a symmetric key"
        )));
    }
    material(uid, entry)
}

/// Destroys the material, then removes the companion or turns it into a tombstone holding
/// `tombstone`. Material first: an interruption leaves metadata without material (ignored by
/// the scan), never key material the gateway no longer knows about.
fn destroy_objects(
    session: &Session,
    uid: &str,
    entry: &Entry,
    tombstone: Option<&[u8]>,
) -> Result<Option<Entry>, BackendError> {
    match tombstone {
        None => {
            if let Some(handle) = entry.material {
                session.destroy_object(handle).map_err(p11_error)?;
            }
            session.destroy_object(entry.meta).map_err(p11_error)?;
            Ok(None)
        }
        Some(meta) => {
            // The tombstone is written first: a crash before the material goes leaves a
            // Destroyed object whose leftover material the next scan destroys, never an object
            // that is neither live nor destroyed.
            let kept = Entry {
                material: None,
                ..*entry
            };
            let kept =
                objects::replace_meta(session, uid, &kept, entry.flags | FLAG_TOMBSTONE, meta)?;
            if let Some(handle) = entry.material {
                session.destroy_object(handle).map_err(p11_error)?;
            }
            Ok(Some(kept))
        }
    }
}

fn validate_record(record: &ObjectRecord, label: Option<&str>) -> Result<(), BackendError> {
    if record.uid.is_empty() || record.uid.len() > MAX_UID_BYTES {
        return Err(BackendError::InvalidInput(format!(
            "uid must be 1..={MAX_UID_BYTES} bytes"
        )));
    }
    if label.is_some_and(|l| l.len() > MAX_LABEL_BYTES) {
        return Err(BackendError::InvalidInput(format!(
            "label longer than {MAX_LABEL_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Attributes common to every secret key the backend creates.
fn secret_key_template(
    uid: &str,
    label: Option<&str>,
    key_type: KeyType,
    extractable: bool,
    sensitive: bool,
) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Id(uid.as_bytes().to_vec()),
        Attribute::Label(label.unwrap_or(uid).as_bytes().to_vec()),
        Attribute::Extractable(extractable),
        Attribute::Sensitive(sensitive),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Sign(true),
        Attribute::Verify(true),
    ]
}

fn keygen_params(spec: &KeySpec) -> Result<(Mechanism<'static>, KeyType), BackendError> {
    match spec.algorithm {
        KeyAlgorithm::Aes if matches!(spec.bits, 128 | 192 | 256) => {
            Ok((Mechanism::AesKeyGen, KeyType::AES))
        }
        KeyAlgorithm::Aes => Err(BackendError::InvalidInput(format!(
            "AES keys are 128, 192 or 256 bits, not {}",
            spec.bits
        ))),
        KeyAlgorithm::HmacSha256
            if spec.bits >= 8 && spec.bits <= MAX_HMAC_KEY_BITS && spec.bits.is_multiple_of(8) =>
        {
            Ok((Mechanism::GenericSecretKeyGen, KeyType::GENERIC_SECRET))
        }
        KeyAlgorithm::HmacSha256 => Err(BackendError::InvalidInput(format!(
            "HMAC keys are a whole number of bytes up to {MAX_HMAC_KEY_BITS} bits, not {}",
            spec.bits
        ))),
    }
}

#[async_trait]
impl Backend for Pkcs11Backend {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError> {
        let _gate = self.rescan_gate.write().await;
        let scan = self.scan().await?;
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        index.map = scan.index;
        index.generation += 1;
        Ok(scan.records)
    }

    async fn generate(&self, record: ObjectRecord, spec: KeySpec) -> Result<(), BackendError> {
        validate_record(&record, spec.label.as_deref())?;
        if record.kind != ObjectKind::SymmetricKey {
            return Err(BackendError::Unsupported(format!(
                "generating {:?} objects",
                record.kind
            )));
        }
        // Validated here, before taking a session; the blocking job rebuilds the mechanism.
        let (_, key_type) = keygen_params(&spec)?;
        let _gate = self.rescan_gate.read().await;
        self.ensure_absent(&record.uid)?;
        let uid = record.uid.clone();
        let entry = self
            .with_session(move |s| {
                let (mechanism, _) = keygen_params(&spec)?;
                let mut template = secret_key_template(
                    &record.uid,
                    spec.label.as_deref(),
                    key_type,
                    spec.extractable,
                    spec.sensitive,
                );
                template.push(Attribute::ValueLen((u64::from(spec.bits) / 8).into()));
                objects::create_with_meta(s, &record.uid, record.kind, 0, &record.meta, |s| {
                    s.generate_key(&mechanism, &template).map_err(p11_error)
                })
            })
            .await?;
        self.publish(uid, entry).await
    }

    async fn import(
        &self,
        record: ObjectRecord,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
    ) -> Result<(), BackendError> {
        let label = spec.as_ref().and_then(|s| s.label.clone());
        validate_record(&record, label.as_deref())?;
        if material.is_empty() || material.len() > MAX_MATERIAL_BYTES {
            return Err(BackendError::InvalidInput(format!(
                "object material must be 1..={MAX_MATERIAL_BYTES} bytes"
            )));
        }
        let extractable = spec.as_ref().is_none_or(|s| s.extractable);
        let sensitive = spec.as_ref().is_some_and(|s| s.sensitive);
        let mut template = match record.kind {
            ObjectKind::SymmetricKey => {
                let key_type = match spec.as_ref().map(|s| s.algorithm) {
                    Some(KeyAlgorithm::Aes) if matches!(material.len(), 16 | 24 | 32) => {
                        KeyType::AES
                    }
                    Some(KeyAlgorithm::Aes) => {
                        return Err(BackendError::InvalidInput(format!(
                            "an AES key is 16, 24 or 32 bytes, not {}",
                            material.len()
                        )))
                    }
                    Some(KeyAlgorithm::HmacSha256) => KeyType::GENERIC_SECRET,
                    None if matches!(material.len(), 16 | 24 | 32) => KeyType::AES,
                    None => KeyType::GENERIC_SECRET,
                };
                secret_key_template(
                    &record.uid,
                    label.as_deref(),
                    key_type,
                    extractable,
                    sensitive,
                )
            }
            _ => vec![
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Application(MATERIAL_APP.to_vec()),
                Attribute::Label(record.uid.as_bytes().to_vec()),
            ],
        };
        let flags = if record.kind != ObjectKind::SymmetricKey && (!extractable || sensitive) {
            FLAG_NOT_EXTRACTABLE
        } else {
            0
        };
        let _gate = self.rescan_gate.read().await;
        self.ensure_absent(&record.uid)?;
        let uid = record.uid.clone();
        // The template owns a copy of the material: wipe it when the job is done.
        template.push(Attribute::Value(material.to_vec()));
        let job = ZeroizeTemplate(template);
        let entry = self
            .with_session(move |s| {
                objects::create_with_meta(s, &record.uid, record.kind, flags, &record.meta, |s| {
                    s.create_object(&job.0).map_err(p11_error)
                })
            })
            .await?;
        self.publish(uid, entry).await
    }

    async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let uid_owned = uid.to_owned();
        self.with_object(uid, move |s, e| {
            let handle = material(&uid_owned, e)?;
            if e.flags & FLAG_NOT_EXTRACTABLE != 0 {
                return Err(BackendError::NotExtractable(uid_owned.clone()));
            }
            let attrs = match s.get_attributes(handle, &[AttributeType::Value]) {
                Ok(attrs) => attrs,
                Err(CkError::Pkcs11(
                    cryptoki::error::RvError::AttributeSensitive
                    | cryptoki::error::RvError::KeyUnextractable,
                    _,
                )) => return Err(BackendError::NotExtractable(uid_owned.clone())),
                Err(other) => return Err(p11_error(other)),
            };
            // A sensitive or unextractable value is silently left out of the result (SoftHSM).
            attrs
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Value(v) => Some(Zeroizing::new(v)),
                    _ => None,
                })
                .filter(|v| !v.is_empty())
                .ok_or_else(|| BackendError::NotExtractable(uid_owned.clone()))
        })
        .await
    }

    async fn update_meta(&self, uid: &str, meta: Vec<u8>) -> Result<(), BackendError> {
        let uid_owned = uid.to_owned();
        self.replace_object(uid, move |s, e| {
            objects::replace_meta(s, &uid_owned, e, e.flags, &meta).map(Some)
        })
        .await
    }

    async fn destroy(&self, uid: &str, tombstone: Option<Vec<u8>>) -> Result<(), BackendError> {
        let uid_owned = uid.to_owned();
        self.replace_object(uid, move |s, e| {
            destroy_objects(s, &uid_owned, e, tombstone.as_deref())
        })
        .await
    }

    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.cipher(uid, req, false).await
    }

    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.cipher(uid, req, true).await
    }

    async fn mac(&self, uid: &str, data: &[u8]) -> Result<Vec<u8>, BackendError> {
        if data.len() > cipher::MAX_CIPHER_DATA {
            return Err(BackendError::InvalidInput(format!(
                "data longer than {} bytes",
                cipher::MAX_CIPHER_DATA
            )));
        }
        let data = Zeroizing::new(data.to_vec());
        let uid_owned = uid.to_owned();
        self.with_object(uid, move |s, e| {
            cipher::mac(s, key_handle(&uid_owned, e)?, &data)
        })
        .await
    }

    async fn health(&self) -> Result<(), BackendError> {
        let module = Arc::clone(&self.module);
        let slot = self.slot;
        self.with_session(move |s| {
            s.get_session_info().map_err(p11_error)?;
            token_usable(&module, slot)
        })
        .await
    }
}

/// A creation template holding secret material, wiped on drop.
struct ZeroizeTemplate(Vec<Attribute>);

impl Drop for ZeroizeTemplate {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for attr in &mut self.0 {
            if let Attribute::Value(v) = attr {
                v.zeroize();
            }
        }
    }
}
