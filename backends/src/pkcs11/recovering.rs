//! A PKCS#11 backend that survives losing its token.
//!
//! Some modules (SoftHSM among them) read their token store only at `C_Initialize`, so once the
//! token has gone away, the same module context never sees it again. [`RecoveringPkcs11`] keeps
//! the backend behind a lock; while the backend is unhealthy a watchdog closes it (all sessions,
//! then `C_Finalize`) and opens it afresh (initialise, find the token by label, log in, rescan),
//! at most once per [`RECOVERY_INTERVAL`]. Requests in between fail with `Unavailable`.

use super::{Pkcs11Backend, Pkcs11Config};
use crate::{Backend, BackendError, CipherOutput, CipherRequest, KeySpec, ObjectRecord};
use async_trait::async_trait;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tracing::{info, warn};
use zeroize::Zeroizing;

/// How often an unhealthy backend is checked and reopened: often enough that service resumes
/// within seconds of the token's return, rarely enough not to hammer a failing device.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(2);

pub struct RecoveringPkcs11 {
    config: Pkcs11Config,
    /// `None` while the token cannot be opened.
    current: tokio::sync::RwLock<Option<Arc<Pkcs11Backend>>>,
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
    pub async fn open(config: Pkcs11Config) -> Result<Arc<RecoveringPkcs11>, BackendError> {
        let backend = Pkcs11Backend::open(copy_config(&config)).await?;
        let this = Arc::new(RecoveringPkcs11 {
            config,
            current: tokio::sync::RwLock::new(Some(Arc::new(backend))),
        });
        tokio::spawn(watchdog(Arc::downgrade(&this)));
        Ok(this)
    }

    async fn backend(&self) -> Result<Arc<Pkcs11Backend>, BackendError> {
        self.current.read().await.clone().ok_or_else(|| {
            BackendError::Unavailable("the PKCS#11 token is not available; reopening it".into())
        })
    }

    /// Closes and reopens the backend if it is unhealthy. Gives up for this round when requests
    /// still hold the old backend (they end within the pool's acquire timeout).
    async fn recover(&self) {
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
        let reopened = match Pkcs11Backend::open(copy_config(&self.config)).await {
            // The handle index is built by the scan.
            Ok(b) => b.load_all().await.map(|_| b),
            Err(e) => Err(e),
        };
        match reopened {
            Ok(b) => {
                info!(token = %self.config.token_label, "PKCS#11 token reopened");
                metrics::counter!("kmip_backend_reopens_total", "result" => "success").increment(1);
                *current = Some(Arc::new(b));
            }
            Err(e) => {
                metrics::counter!("kmip_backend_reopens_total", "result" => "failure").increment(1);
                warn!(error = %e, "PKCS#11 token still unavailable");
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

    async fn update_meta(&self, uid: &str, meta: Vec<u8>) -> Result<(), BackendError> {
        self.backend().await?.update_meta(uid, meta).await
    }

    async fn destroy(&self, uid: &str, tombstone: Option<Vec<u8>>) -> Result<(), BackendError> {
        self.backend().await?.destroy(uid, tombstone).await
    }

    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.backend().await?.encrypt(uid, req).await
    }

    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.backend().await?.decrypt(uid, req).await
    }

    async fn mac(&self, uid: &str, data: &[u8]) -> Result<Vec<u8>, BackendError> {
        self.backend().await?.mac(uid, data).await
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.backend().await?.health().await
    }
}
