//! A PKCS#11 backend that survives losing its token.
//!
//! Some modules (SoftHSM among them) read their token store only at `C_Initialize`, so once the
//! token has gone away, the same module context never sees it again. [`RecoveringPkcs11`] keeps
//! the backend behind a lock; while the backend is unhealthy a watchdog closes it (all sessions,
//! then `C_Finalize`) and opens it afresh (initialise, find the token by label, log in, rescan),
//! at most once per [`RECOVERY_INTERVAL`]. Requests in between fail with `Unavailable`.
//!
//! A reopen whose login the token refuses for the PIN (incorrect, locked, expired) is not
//! repeated with the same PIN: each wrong attempt counts down the HSM user's retry counter, and
//! a PIN changed on the HSM would otherwise lock the user out within minutes. The watchdog then
//! re-reads the PIN file each round and tries again only once it holds a different PIN; `health`
//! (and so `/readyz`) says why meanwhile.

use super::pool::is_login_refused;
use super::{PinSource, Pkcs11Backend, Pkcs11Config};
use crate::{
    Backend, BackendError, CipherOutput, CipherRequest, KeySpec, MacAlgorithm, ObjectRecord,
    RngInfo,
};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tracing::{error, info, warn};
use zeroize::Zeroizing;

/// How often an unhealthy backend is checked and reopened: often enough that service resumes
/// within seconds of the token's return, rarely enough not to hammer a failing device.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(2);

pub struct RecoveringPkcs11 {
    /// Its PIN is replaced when the PIN file changes after a refused login.
    config: Mutex<Pkcs11Config>,
    /// Where the PIN came from, if a file: re-read after a refused login. `None`: the PIN cannot
    /// change without a restart.
    pin_file: Option<PathBuf>,
    /// `None` while the token cannot be opened.
    current: tokio::sync::RwLock<Option<Arc<Pkcs11Backend>>>,
    /// Why the token refused the login with the PIN in `config`, while it does: that PIN is not
    /// tried again.
    refused: Mutex<Option<String>>,
}

fn copy_config(c: &Pkcs11Config) -> Pkcs11Config {
    Pkcs11Config {
        module_path: c.module_path.clone(),
        token_label: c.token_label.clone(),
        pin: Zeroizing::new(c.pin.as_str().to_owned()),
        pool_size: c.pool_size,
        acquire_timeout: c.acquire_timeout,
    }
}

impl RecoveringPkcs11 {
    /// Opens the backend (any problem at start is fatal, as for [`Pkcs11Backend::open`]) and
    /// starts the watchdog, which ends when the backend is dropped.
    /// `pin_file`: the file `config.pin` was read from, if any (re-read after a refused login).
    pub async fn open(
        config: Pkcs11Config,
        pin_file: Option<PathBuf>,
    ) -> Result<Arc<RecoveringPkcs11>, BackendError> {
        let backend = Pkcs11Backend::open(copy_config(&config)).await?;
        let this = Arc::new(RecoveringPkcs11 {
            config: Mutex::new(config),
            pin_file,
            current: tokio::sync::RwLock::new(Some(Arc::new(backend))),
            refused: Mutex::new(None),
        });
        tokio::spawn(watchdog(Arc::downgrade(&this)));
        Ok(this)
    }

    async fn backend(&self) -> Result<Arc<Pkcs11Backend>, BackendError> {
        if let Some(why) = self.refusal() {
            return Err(BackendError::Unavailable(why));
        }
        self.current.read().await.clone().ok_or_else(|| {
            BackendError::Unavailable("the PKCS#11 token is not available; reopening it".into())
        })
    }

    fn config(&self) -> Pkcs11Config {
        copy_config(&self.config.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// While a login is refused: what to tell `/readyz`.
    fn refusal(&self) -> Option<String> {
        let refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        let why = refused.as_ref()?;
        Some(match &self.pin_file {
            Some(f) => format!(
                "{why}; not retrying with the same PIN (a locked HSM user): put the right PIN in {}",
                f.display()
            ),
            None => format!(
                "{why}; not retrying with the same PIN (a locked HSM user): restart with the right PIN"
            ),
        })
    }

    /// After a refused login: whether the PIN file now holds another PIN (then taken).
    async fn pin_changed(&self) -> bool {
        let Some(path) = self.pin_file.clone() else {
            return false;
        };
        let read = tokio::task::spawn_blocking(move || PinSource::File(path).resolve()).await;
        let Ok(Ok(pin)) = read else { return false };
        let mut config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        if pin == config.pin {
            return false;
        }
        config.pin = pin;
        true
    }

    /// Closes and reopens the backend if it is unhealthy. Gives up for this round when requests
    /// still hold the old backend (they end within the pool's acquire timeout).
    async fn recover(&self) {
        if self.refusal().is_some() {
            if !self.pin_changed().await {
                return;
            }
            info!(token = %self.config().token_label, "the PIN file changed: logging in again");
            *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        let mut current = self.current.write().await;
        if let Some(b) = current.as_ref() {
            if b.health().await.is_ok() {
                return;
            }
        }
        if let Some(old) = current.take() {
            match Arc::try_unwrap(old) {
                Ok(old) => old.close().await,
                Err(still_used) => {
                    *current = Some(still_used);
                    return;
                }
            }
        }
        let config = self.config();
        let label = config.token_label.clone();
        let reopened = match Pkcs11Backend::open(config).await {
            // The handle index is built by the scan.
            Ok(b) => b.load_all().await.map(|_| b),
            Err(e) => Err(e),
        };
        match reopened {
            Ok(b) => {
                info!(token = %label, "PKCS#11 token reopened");
                metrics::counter!("kmip_backend_reopens_total", "result" => "success").increment(1);
                *current = Some(Arc::new(b));
            }
            Err(e) => {
                metrics::counter!("kmip_backend_reopens_total", "result" => "failure").increment(1);
                if is_login_refused(&e) {
                    error!(error = %e, token = %label, "PKCS#11 login refused: not retrying with the same PIN, so the HSM user is not locked out; waiting for the PIN file to change");
                    *self.refused.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(e.to_string());
                } else {
                    warn!(error = %e, "PKCS#11 token still unavailable");
                }
            }
        }
    }
}

async fn watchdog(this: Weak<RecoveringPkcs11>) {
    loop {
        tokio::time::sleep(RECOVERY_INTERVAL).await;
        let Some(this) = this.upgrade() else { return };
        let healthy = match this.backend().await {
            Ok(b) => b.health().await.is_ok(),
            Err(_) => false,
        };
        if !healthy {
            this.recover().await;
        }
    }
}

#[async_trait]
impl Backend for RecoveringPkcs11 {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError> {
        self.backend().await?.load_all().await
    }

    async fn generate(&self, record: ObjectRecord, spec: KeySpec) -> Result<(), BackendError> {
        self.backend().await?.generate(record, spec).await
    }

    async fn import(
        &self,
        record: ObjectRecord,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
    ) -> Result<(), BackendError> {
        self.backend().await?.import(record, material, spec).await
    }

    async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.backend().await?.read_material(uid).await
    }

    async fn update_meta(
        &self,
        uid: &str,
        meta: bytes::Bytes,
        expected_version: u64,
    ) -> Result<(), BackendError> {
        self.backend()
            .await?
            .update_meta(uid, meta, expected_version)
            .await
    }

    async fn destroy(
        &self,
        uid: &str,
        tombstone: Option<bytes::Bytes>,
        expected_version: u64,
    ) -> Result<(), BackendError> {
        self.backend()
            .await?
            .destroy(uid, tombstone, expected_version)
            .await
    }

    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.backend().await?.encrypt(uid, req).await
    }

    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.backend().await?.decrypt(uid, req).await
    }

    async fn wrap_key(
        &self,
        wrapping: &str,
        wrapped: &str,
        pad: bool,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.backend().await?.wrap_key(wrapping, wrapped, pad).await
    }

    fn streams(&self) -> bool {
        true
    }

    async fn start_stream(
        &self,
        uid: &str,
        req: crate::StreamRequest,
    ) -> Result<crate::StartedStream, BackendError> {
        self.backend().await?.start_stream(uid, req).await
    }

    async fn mac(
        &self,
        uid: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        self.backend().await?.mac(uid, algorithm, data).await
    }

    async fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.backend().await?.random(len).await
    }

    async fn seed_random(&self, seed: &[u8]) -> Result<usize, BackendError> {
        self.backend().await?.seed_random(seed).await
    }

    fn rng(&self) -> RngInfo {
        RngInfo::Token
    }

    fn keeps_material_in_hardware(&self) -> bool {
        true
    }

    async fn generate_key_pair(
        &self,
        private: ObjectRecord,
        public: ObjectRecord,
        spec: crate::asym::KeyPairSpec,
    ) -> Result<(), BackendError> {
        self.backend()
            .await?
            .generate_key_pair(private, public, spec)
            .await
    }

    async fn sign(
        &self,
        uid: &str,
        scheme: crate::asym::SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        self.backend().await?.sign(uid, scheme, data).await
    }

    async fn rsa_decrypt(
        &self,
        uid: &str,
        padding: crate::asym::RsaPadding,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.backend().await?.rsa_decrypt(uid, padding, data).await
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.backend().await?.health().await
    }
}
