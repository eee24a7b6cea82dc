//! Envelope encryption for backends that keep key material where operators replicate and back
//! it up (PostgreSQL): each object's material is sealed under its own random data key, and only
//! the data key, wrapped by a key encryption key (KEK) that never enters the database, is
//! stored beside it. Deleting the wrapped data key shreds the material in every replica and
//! every later backup. The KEK comes from a file or the environment ([`FileKek`]) or stays in
//! an HSM ([`Pkcs11Kek`]).

use crate::BackendError;
use async_trait::async_trait;
use std::sync::Arc;
use zeroize::Zeroizing;

mod file;
mod pkcs11;
pub use file::FileKek;
pub use pkcs11::Pkcs11Kek;

/// Length of a KEK and of every data key: AES-256.
pub const KEY_LEN: usize = 32;

/// A key encryption key: wraps and unwraps data keys (AES key wrap with padding, RFC 5649).
#[async_trait]
pub trait Kek: Send + Sync {
    /// A stable name of this KEK, stored with every data key it wraps: it picks the KEK that
    /// unwraps a data key, and finds the data keys still under an old KEK after a rotation.
    /// It says which key, never anything of its value that helps an attacker.
    fn id(&self) -> &str;

    async fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, BackendError>;

    async fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError>;
}

/// The KEK new data keys are wrapped with, and the older ones still accepted to unwrap until
/// `kmip-gateway kek rotate` has rewrapped every data key under the current one.
#[derive(Clone)]
pub struct KekRing {
    current: Arc<dyn Kek>,
    previous: Vec<Arc<dyn Kek>>,
}

impl KekRing {
    /// Fails if two KEKs share an id: a data key's id must name exactly one KEK.
    pub fn new(
        current: Arc<dyn Kek>,
        previous: Vec<Arc<dyn Kek>>,
    ) -> Result<KekRing, BackendError> {
        let mut ids: Vec<&str> = previous.iter().map(|k| k.id()).collect();
        ids.push(current.id());
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(BackendError::InvalidInput(format!(
                "the key encryption key {} is configured twice",
                w[0]
            )));
        }
        Ok(KekRing { current, previous })
    }

    pub fn current(&self) -> &Arc<dyn Kek> {
        &self.current
    }

    /// The older KEKs, accepted to unwrap only.
    pub fn previous(&self) -> &[Arc<dyn Kek>] {
        &self.previous
    }

    /// The KEK with this id, current or previous.
    pub fn by_id(&self, id: &str) -> Option<&Arc<dyn Kek>> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.id() == id)
    }
}
