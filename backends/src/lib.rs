//! Key storage backends for kmip-gateway.
//!
//! A backend persists managed objects and performs the key operations that must happen where the
//! key lives (generation, encryption, MAC). It knows nothing of TTLV or KMIP messages: the gateway
//! hands it an opaque, already-serialised metadata blob per object and gets it back unchanged.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use zeroize::Zeroizing;

pub mod error;
pub mod pkcs11;
pub mod vault;
pub use error::BackendError;

/// The kinds of managed object a backend stores. The gateway maps KMIP Object Types onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    SymmetricKey,
    SecretData,
    OpaqueObject,
    Certificate,
    PublicKey,
    PrivateKey,
}

impl ObjectKind {
    /// The byte both backends store for the kind. Part of their on-disk and on-token formats:
    /// never renumber.
    pub fn code(self) -> u8 {
        match self {
            ObjectKind::SymmetricKey => 1,
            ObjectKind::SecretData => 2,
            ObjectKind::OpaqueObject => 3,
            ObjectKind::Certificate => 4,
            ObjectKind::PublicKey => 5,
            ObjectKind::PrivateKey => 6,
        }
    }

    pub fn from_code(code: u8) -> Option<ObjectKind> {
        Some(match code {
            1 => ObjectKind::SymmetricKey,
            2 => ObjectKind::SecretData,
            3 => ObjectKind::OpaqueObject,
            4 => ObjectKind::Certificate,
            5 => ObjectKind::PublicKey,
            6 => ObjectKind::PrivateKey,
            _ => return None,
        })
    }
}

/// Key algorithms a backend can generate and use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Aes,
    HmacSha256,
}

/// What to generate for a Create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub algorithm: KeyAlgorithm,
    /// Key length in bits.
    pub bits: u32,
    /// Whether the key value may ever be read back (KMIP `Extractable`, default true).
    pub extractable: bool,
    /// KMIP `Sensitive` (default false): a sensitive key is never returned in clear.
    pub sensitive: bool,
    /// Human-readable label (KMIP Name), if any; stored where the backend can show it.
    pub label: Option<String>,
}

/// One stored object as the gateway sees it.
pub struct ObjectRecord {
    /// KMIP Unique Identifier, chosen by the gateway, stable forever.
    pub uid: String,
    pub kind: ObjectKind,
    /// Opaque, gateway-serialised attributes and state. Backends store it verbatim.
    pub meta: Vec<u8>,
}

/// Block cipher modes for server-side Encrypt/Decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherMode {
    /// AES-GCM; `tag_len` bytes of tag.
    Gcm { tag_len: usize },
    /// AES-CBC with PKCS#5 padding when `pad` is true.
    Cbc { pad: bool },
    /// AES-ECB with PKCS#5 padding when `pad` is true.
    Ecb { pad: bool },
}

/// A server-side Encrypt or Decrypt request.
pub struct CipherRequest {
    pub mode: CipherMode,
    pub data: Zeroizing<Vec<u8>>,
    /// IV or nonce; for Encrypt, `None` lets the backend generate one.
    pub iv: Option<Vec<u8>>,
    pub aad: Option<Vec<u8>>,
    /// For GCM Decrypt: the tag to verify.
    pub tag: Option<Vec<u8>>,
}

/// Result of a server-side Encrypt or Decrypt.
pub struct CipherOutput {
    pub data: Zeroizing<Vec<u8>>,
    /// The IV/nonce used when the backend generated it.
    pub generated_iv: Option<Vec<u8>>,
    /// For GCM Encrypt: the tag.
    pub tag: Option<Vec<u8>>,
}

/// Persistence and key operations behind the gateway.
///
/// Every write is durable when the future resolves: the gateway acknowledges the client only then.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and metrics ("vault", "pkcs11").
    fn name(&self) -> &'static str;

    /// Every stored object, to rebuild the gateway's indexes at start.
    async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError>;

    /// Generates a key inside the backend and stores it with its metadata.
    async fn generate(&self, record: ObjectRecord, spec: KeySpec) -> Result<(), BackendError>;

    /// Stores a client-supplied object (Register).
    async fn import(
        &self,
        record: ObjectRecord,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
    ) -> Result<(), BackendError>;

    /// Reads an object's material (key bytes, secret, certificate DER...).
    /// Fails with [`BackendError::NotExtractable`] rather than returning an empty value.
    async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError>;

    /// Replaces an object's metadata blob.
    async fn update_meta(&self, uid: &str, meta: Vec<u8>) -> Result<(), BackendError>;

    /// Destroys an object's material for good (KMIP Destroy). With `tombstone` = `Some(meta)`,
    /// the object stays as a metadata-only record holding that blob (KMIP keeps a destroyed
    /// object's attributes; `read_material` then fails with `NotFound`); with `None` it is removed
    /// entirely.
    async fn destroy(&self, uid: &str, tombstone: Option<Vec<u8>>) -> Result<(), BackendError>;

    /// Encrypts with the key `uid`, where it lives.
    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError>;

    /// Decrypts with the key `uid`, where it lives.
    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError>;

    /// HMAC-SHA256 over `data` with the key `uid`.
    async fn mac(&self, uid: &str, data: &[u8]) -> Result<Vec<u8>, BackendError>;

    /// Cheap liveness probe for `/readyz`.
    async fn health(&self) -> Result<(), BackendError>;
}
