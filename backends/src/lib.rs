//! Key storage backends for kmip-gateway.
//!
//! A backend persists managed objects and performs the key operations that must happen where the
//! key lives (generation, encryption, MAC). It knows nothing of TTLV or KMIP messages: the gateway
//! hands it an opaque, already-serialised metadata blob per object and gets it back unchanged.
// `deny`, not `forbid`: the one FFI module (`asym/oaep_ffi.rs`) allows `unsafe` for itself.
#![deny(unsafe_code)]

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use zeroize::Zeroizing;

pub mod asym;
mod chacha;
mod cipher;
mod ctr;
mod des3;
pub mod envelope;
pub mod error;
mod gcm;
mod key_wrap;
pub mod pkcs11;
pub mod postgres;
mod random;
pub mod stream;
pub mod vault;
pub use error::BackendError;
pub use random::{MacAlgorithm, RngInfo};
pub use stream::{CipherStream, StartedStream, StreamRequest};

/// The kinds of managed object a backend stores. The gateway maps KMIP Object Types onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    SymmetricKey,
    SecretData,
    OpaqueObject,
    Certificate,
    PublicKey,
    PrivateKey,
    /// A KMIP 1.x Template; its material is the encoded Template structure.
    Template,
    /// One part of a split key; its material is the gateway's encoding of the part.
    SplitKey,
    /// A PGP Key; its material is the gateway's encoding of the key and its version.
    PgpKey,
    /// A Certificate Request (KMIP 2.x); its material is the gateway's encoding of the request.
    CertificateRequest,
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
            ObjectKind::Template => 7,
            ObjectKind::SplitKey => 8,
            ObjectKind::PgpKey => 9,
            ObjectKind::CertificateRequest => 10,
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
            7 => ObjectKind::Template,
            8 => ObjectKind::SplitKey,
            9 => ObjectKind::PgpKey,
            10 => ObjectKind::CertificateRequest,
            _ => return None,
        })
    }
}

/// Key algorithms a backend can generate and use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Aes,
    HmacSha256,
    /// Three-key Triple DES: 192 bits of key material (KMIP's Cryptographic Length 168).
    TripleDes,
    /// A 256-bit ChaCha20 key (for ChaCha20 and ChaCha20-Poly1305).
    ChaCha20,
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
    /// KMIP Unique Identifier, chosen by the gateway, stable forever. Shared, not copied: a
    /// backend that keeps it in memory keeps this string, the one the gateway's store holds.
    pub uid: Arc<str>,
    pub kind: ObjectKind,
    /// Opaque, gateway-serialised attributes and state. Backends store it verbatim; a backend
    /// that keeps it in memory keeps this buffer (shared, not copied) so that the gateway's copy
    /// and its own are one.
    pub meta: Bytes,
    /// How many durable writes made this version of the object: 1 when created, one more per
    /// `update_meta` or `destroy`. A [`SharedBackend`] stores and compares it to refuse a write
    /// made from a stale copy; backends only one process opens ignore it on input and report 0.
    pub version: u64,
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
    /// AES-CTR; the IV is the whole 16-byte initial counter block, incremented as one 128-bit
    /// number.
    Ctr,
    /// The ChaCha20 stream cipher (8- or 12-byte nonce, block counter from 0).
    ChaCha20,
    /// ChaCha20-Poly1305 (RFC 8439); `tag_len` bytes of tag (16 is the only length).
    ChaCha20Poly1305 { tag_len: usize },
    /// AES Key Wrap (RFC 3394), or with padding (RFC 5649) when `pad` is true: Get with a Key
    /// Wrapping Specification encrypts the served key this way.
    AesKeyWrap { pad: bool },
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

    /// Replaces an object's metadata blob. `expected_version` is the version the caller read; a
    /// [`SharedBackend`] refuses the write with [`BackendError::Conflict`] if the stored
    /// version differs (another instance wrote since), and stores `expected_version + 1`.
    async fn update_meta(
        &self,
        uid: &str,
        meta: Bytes,
        expected_version: u64,
    ) -> Result<(), BackendError>;

    /// Destroys an object's material for good (KMIP Destroy). With `tombstone` = `Some(meta)`,
    /// the object stays as a metadata-only record holding that blob (KMIP keeps a destroyed
    /// object's attributes; `read_material` then fails with `NotFound`); with `None` it is removed
    /// entirely. `expected_version` is compared like `update_meta`'s.
    async fn destroy(
        &self,
        uid: &str,
        tombstone: Option<Bytes>,
        expected_version: u64,
    ) -> Result<(), BackendError>;

    /// Encrypts with the key `uid`, where it lives.
    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError>;

    /// Decrypts with the key `uid`, where it lives.
    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError>;

    /// Whether [`Backend::start_stream`] can start multi-part operations here (Query's Streaming
    /// Capability says so).
    fn streams(&self) -> bool {
        false
    }

    /// Starts a multi-part Encrypt or Decrypt with the key `uid`, where it lives. The stream
    /// holds what it needs of the key (bytes in memory, or a token session) until it is
    /// finished or dropped.
    async fn start_stream(
        &self,
        uid: &str,
        req: StreamRequest,
    ) -> Result<StartedStream, BackendError> {
        let _ = req;
        Err(BackendError::Unsupported(format!(
            "the {} backend does not stream Encrypt or Decrypt with {uid}",
            self.name()
        )))
    }

    /// The HMAC of `data` under `algorithm` with the key `uid` (an HMAC or AES key: any
    /// secret bytes are an HMAC key; the gateway decides whether the key may be used so).
    async fn mac(
        &self,
        uid: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError>;

    /// `len` random bytes from the generator the backend makes keys with (RNG Retrieve).
    async fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        random::software_bytes(len)
    }

    /// Mixes `seed` into that generator where it takes seed, and says how many bytes it took:
    /// 0 where it does not (aws-lc-rs seeds itself from the operating system only).
    async fn seed_random(&self, _seed: &[u8]) -> Result<usize, BackendError> {
        Ok(0)
    }

    /// What that generator is (the KMIP Random Number Generator attribute of generated keys).
    fn rng(&self) -> RngInfo {
        random::SOFTWARE_RNG
    }

    /// Whether object material is kept in a hardware token rather than in software (the KMIP
    /// Protection Storage Mask the server reports for its objects).
    fn keeps_material_in_hardware(&self) -> bool {
        false
    }

    /// Generates a key pair where keys live and stores it as two objects: `private` (material:
    /// PKCS#8) and `public` (material: SubjectPublicKeyInfo). Both are stored or neither.
    async fn generate_key_pair(
        &self,
        private: ObjectRecord,
        public: ObjectRecord,
        spec: asym::KeyPairSpec,
    ) -> Result<(), BackendError> {
        let _ = (private, public, spec);
        Err(BackendError::Unsupported(format!(
            "the {} backend does not generate key pairs",
            self.name()
        )))
    }

    /// Signs `data` with the private key `uid`, where it lives.
    async fn sign(
        &self,
        uid: &str,
        scheme: asym::SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let _ = (scheme, data);
        Err(BackendError::Unsupported(format!(
            "the {} backend cannot sign with {uid}",
            self.name()
        )))
    }

    /// RSA-decrypts `data` with the private key `uid`, where it lives.
    async fn rsa_decrypt(
        &self,
        uid: &str,
        padding: asym::RsaPadding,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let _ = (padding, data);
        Err(BackendError::Unsupported(format!(
            "the {} backend cannot RSA-decrypt with {uid}",
            self.name()
        )))
    }

    /// Cheap liveness probe for `/readyz`.
    async fn health(&self) -> Result<(), BackendError>;

    /// One line per part of the backend that can fail on its own (a proxy's upstreams), for the
    /// body of a ready `/readyz`; empty for a backend that is one thing.
    async fn readiness_report(&self) -> Vec<String> {
        Vec::new()
    }

    /// The coordination interface of a backend that several gateway processes open at once
    /// (PostgreSQL); `None` for a backend only one process may open (vault, PKCS#11).
    fn shared(&self) -> Option<&dyn SharedBackend> {
        None
    }

    /// The key `wrapped` encrypted with the AES key `wrapping` by AES Key Wrap (RFC 3394; RFC
    /// 5649 with `pad`): the wrapped key's stored material (raw bytes, PKCS#8, SPKI), as KMIP
    /// Get with a Key Wrapping Specification serves it. By default the wrapped key's material
    /// is read and the wrapping key encrypts it where it lives; a backend whose keys never
    /// leave it (a PKCS#11 token) wraps inside, and its refusal (a key the token will not
    /// release even wrapped) answers [`BackendError::NotExtractable`].
    async fn wrap_key(
        &self,
        wrapping: &str,
        wrapped: &str,
        pad: bool,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let material = self.read_material(wrapped).await?;
        let out = self
            .encrypt(
                wrapping,
                CipherRequest {
                    mode: CipherMode::AesKeyWrap { pad },
                    data: material,
                    iv: None,
                    aad: None,
                    tag: None,
                },
            )
            .await?;
        Ok(out.data)
    }

    /// An object with its material and key facts, to copy it into another backend
    /// (`kmip-gateway migrate`), whether or not clients may extract it. Backends whose
    /// material cannot leave (a non-extractable key on a token) answer `Unsupported`.
    async fn export(&self, uid: &str) -> Result<ExportedObject, BackendError> {
        Err(BackendError::Unsupported(format!(
            "the {} backend cannot export {uid}",
            self.name()
        )))
    }
}

/// An object as [`Backend::export`] hands it over.
pub struct ExportedObject {
    pub record: ObjectRecord,
    /// `None` for an object whose material was destroyed (a tombstone).
    pub material: Option<Zeroizing<Vec<u8>>>,
    /// The key facts stored with the material, when the object is a key.
    pub spec: Option<KeySpec>,
}

/// A change another instance (or this one) committed, as [`SharedBackend::changes`] reports it.
pub enum Change {
    /// The object's current record: created, or written since.
    Upsert(ObjectRecord),
    /// The object is gone entirely (an undone creation).
    Removed(String),
    /// The feed lost its place (its log was pruned past this instance's last change): every
    /// object as stored now. Any object not in it is gone.
    Resync(Vec<ObjectRecord>),
}

/// Held Name locks of a [`SharedBackend`]; dropping it releases them.
pub type NameLockGuard = Box<dyn std::any::Any + Send + Sync>;

/// What several gateway processes on one backend need to stay exact: a change feed that never
/// misses a committed write, a way to re-read one object after a [`BackendError::Conflict`],
/// and cluster-wide Name locks.
#[async_trait]
pub trait SharedBackend: Send + Sync {
    /// Every change committed since the previous call (the first call: since `load_all`),
    /// whichever instance made it, at least once; a change is reported only once committed.
    /// Lost notifications and reconnections lose nothing: the feed catches up from the last
    /// change it reported. Calls must not overlap (the caller serialises them).
    async fn changes(&self) -> Result<Vec<Change>, BackendError>;

    /// Resolves when a change may be waiting (a notification, a reconnection) or after
    /// `timeout`, whichever comes first; the caller then calls [`SharedBackend::changes`].
    async fn wait_for_change(&self, timeout: std::time::Duration);

    /// The stored record of one object, `None` if it does not exist.
    async fn load(&self, uid: &str) -> Result<Option<ObjectRecord>, BackendError>;

    /// Holds these Name values exclusively across every instance until the guard drops, so a
    /// uniqueness check and the write that follows it cannot interleave with another
    /// instance's. Names are taken in a fixed order (no deadlock between two holders).
    async fn lock_names(&self, names: &[String]) -> Result<NameLockGuard, BackendError>;
}
