//! The [`Backend`] operations on the token: key generation and import templates, reads,
//! companion updates, destroy and the cipher and MAC calls.

use async_trait::async_trait;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use std::sync::{Arc, PoisonError};
use zeroize::Zeroizing;

use super::asym;
use super::cipher::{self, CipherJob};
use super::des3;
use super::handles::token_usable;
use super::objects::{
    self, destroy_objects, Entry, ZeroizeTemplate, FLAG_NOT_EXTRACTABLE, MATERIAL_APP,
};
use super::{p11_error, Pkcs11Backend};
use crate::asym::{KeyPairSpec, RsaPadding, SignatureScheme};
use crate::{
    Backend, BackendError, CipherOutput, CipherRequest, KeyAlgorithm, KeySpec, MacAlgorithm,
    ObjectKind, ObjectRecord, RngInfo, StartedStream, StreamRequest,
};

/// Longest uid stored as `CKA_ID`.
const MAX_UID_BYTES: usize = 1024;
/// Longest label stored as `CKA_LABEL`.
const MAX_LABEL_BYTES: usize = 1024;
/// Largest imported object (certificates, blobs): each lives whole in token memory.
const MAX_MATERIAL_BYTES: usize = 1024 * 1024;
/// Largest HMAC key generated, in bits.
const MAX_HMAC_KEY_BITS: u32 = 4096;

impl Pkcs11Backend {
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
            match (des3::is_des3(s, key)?, decrypt) {
                (true, true) => des3::decrypt(s, key, &job),
                (true, false) => des3::encrypt(s, key, &job),
                (false, true) => cipher::decrypt(s, key, &job),
                (false, false) => cipher::encrypt(s, key, &job),
            }
        })
        .await
    }
}

fn material(uid: &str, entry: &Entry) -> Result<ObjectHandle, BackendError> {
    entry
        .material
        .ok_or_else(|| BackendError::NotFound(uid.to_owned()))
}

pub(super) fn key_handle(uid: &str, entry: &Entry) -> Result<ObjectHandle, BackendError> {
    if entry.kind != ObjectKind::SymmetricKey {
        return Err(BackendError::InvalidInput(format!(
            "object {uid} is not a symmetric key"
        )));
    }
    material(uid, entry)
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

/// A three-key Triple DES key with its parity bits.
const TRIPLE_DES_BITS: u32 = 192;

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
        KeyAlgorithm::TripleDes if spec.bits == TRIPLE_DES_BITS => {
            Ok((Mechanism::Des3KeyGen, KeyType::DES3))
        }
        // Stored as a generic secret: the token keeps it, but has no ChaCha20 to use it with.
        KeyAlgorithm::ChaCha20 if spec.bits == 256 => {
            Ok((Mechanism::GenericSecretKeyGen, KeyType::GENERIC_SECRET))
        }
        KeyAlgorithm::ChaCha20 => Err(BackendError::InvalidInput(format!(
            "ChaCha20 keys are 256 bits, not {}",
            spec.bits
        ))),
        KeyAlgorithm::TripleDes => Err(BackendError::InvalidInput(format!(
            "Triple DES keys are {TRIPLE_DES_BITS} bits with parity, not {}",
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
        let uid = record.uid.to_string();
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
                // A Triple DES key's length is fixed: PKCS#11 forbids CKA_VALUE_LEN for it.
                if key_type != KeyType::DES3 {
                    template.push(Attribute::ValueLen((u64::from(spec.bits) / 8).into()));
                }
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
                    Some(KeyAlgorithm::HmacSha256 | KeyAlgorithm::ChaCha20) => {
                        KeyType::GENERIC_SECRET
                    }
                    Some(KeyAlgorithm::TripleDes)
                        if material.len() * 8 == TRIPLE_DES_BITS as usize =>
                    {
                        KeyType::DES3
                    }
                    Some(KeyAlgorithm::TripleDes) => {
                        return Err(BackendError::InvalidInput(format!(
                            "a Triple DES key is 24 bytes, not {}",
                            material.len()
                        )))
                    }
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
            // An RSA private key becomes a token key, never readable unless extractable.
            ObjectKind::PrivateKey => {
                if let Some(t) =
                    asym::rsa_import_template(&record.uid, label.as_deref(), &material, extractable)
                {
                    return self.import_key_object(record, t).await;
                }
                data_template(&record.uid)
            }
            _ => data_template(&record.uid),
        };
        let flags = if record.kind != ObjectKind::SymmetricKey && (!extractable || sensitive) {
            FLAG_NOT_EXTRACTABLE
        } else {
            0
        };
        let _gate = self.rescan_gate.read().await;
        self.ensure_absent(&record.uid)?;
        let uid = record.uid.to_string();
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
            if e.kind == ObjectKind::PrivateKey {
                if let Some(pkcs8) = asym::export_rsa_private(s, handle) {
                    return Ok(pkcs8);
                }
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

    async fn update_meta(
        &self,
        uid: &str,
        meta: bytes::Bytes,
        _expected_version: u64,
    ) -> Result<(), BackendError> {
        let uid_owned = uid.to_owned();
        self.replace_object(uid, move |s, e| {
            objects::replace_meta(s, &uid_owned, e, e.flags, &meta).map(Some)
        })
        .await
    }

    async fn destroy(
        &self,
        uid: &str,
        tombstone: Option<bytes::Bytes>,
        _expected_version: u64,
    ) -> Result<(), BackendError> {
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

    async fn wrap_key(
        &self,
        wrapping: &str,
        wrapped: &str,
        pad: bool,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let (wrapping_uid, wrapped_uid) = (wrapping.to_owned(), wrapped.to_owned());
        self.with_objects([wrapping, wrapped], move |s, [kek, key]| {
            let kek = key_handle(&wrapping_uid, kek)?;
            cipher::wrap_key(s, kek, material(&wrapped_uid, key)?, pad, &wrapped_uid)
        })
        .await
    }

    fn streams(&self) -> bool {
        true
    }

    async fn start_stream(
        &self,
        uid: &str,
        req: StreamRequest,
    ) -> Result<StartedStream, BackendError> {
        self.start_token_stream(uid, req).await
    }

    async fn mac(
        &self,
        uid: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        if data.len() > cipher::MAX_CIPHER_DATA {
            return Err(BackendError::InvalidInput(format!(
                "data longer than {} bytes",
                cipher::MAX_CIPHER_DATA
            )));
        }
        let data = Zeroizing::new(data.to_vec());
        let uid_owned = uid.to_owned();
        self.with_object(uid, move |s, e| {
            cipher::mac(s, key_handle(&uid_owned, e)?, algorithm, &data)
        })
        .await
    }

    async fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.with_session(move |s| cipher::random(s, len)).await
    }

    async fn seed_random(&self, seed: &[u8]) -> Result<usize, BackendError> {
        let seed = Zeroizing::new(seed.to_vec());
        self.with_session(move |s| {
            s.seed_random(&seed).map_err(p11_error)?;
            Ok(seed.len())
        })
        .await
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
        spec: KeyPairSpec,
    ) -> Result<(), BackendError> {
        validate_record(&private, spec.label.as_deref())?;
        validate_record(&public, None)?;
        if private.kind != ObjectKind::PrivateKey || public.kind != ObjectKind::PublicKey {
            return Err(BackendError::InvalidInput(
                "a key pair is one Private Key and one Public Key object".into(),
            ));
        }
        let _gate = self.rescan_gate.read().await;
        self.ensure_absent(&private.uid)?;
        self.ensure_absent(&public.uid)?;
        let (private_uid, public_uid) = (private.uid.to_string(), public.uid.to_string());
        let (private_entry, public_entry) = self
            .with_session(move |s| asym::create_pair(s, &private, &public, &spec))
            .await?;
        self.publish(private_uid, private_entry).await?;
        self.publish(public_uid, public_entry).await
    }

    async fn sign(
        &self,
        uid: &str,
        scheme: SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let data = Zeroizing::new(data.to_vec());
        let uid_owned = uid.to_owned();
        self.with_object(uid, move |s, e| {
            asym::sign(s, asym::private_key(s, &uid_owned, e)?, scheme, &data)
        })
        .await
    }

    async fn rsa_decrypt(
        &self,
        uid: &str,
        padding: RsaPadding,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let data = data.to_vec();
        let uid_owned = uid.to_owned();
        self.with_object(uid, move |s, e| {
            asym::decrypt(s, asym::private_key(s, &uid_owned, e)?, &padding, &data)
        })
        .await
    }

    async fn health(&self) -> Result<(), BackendError> {
        let module = Arc::clone(&self.token.module);
        let slot = self.token.slot;
        self.with_session(move |s| {
            s.get_session_info().map_err(p11_error)?;
            token_usable(&module, slot)
        })
        .await
    }
}

/// The data object holding non-key material (certificates, public keys, opaque objects...).
fn data_template(uid: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Application(MATERIAL_APP.to_vec()),
        Attribute::Label(uid.as_bytes().to_vec()),
    ]
}

impl Pkcs11Backend {
    /// Stores a key object built from imported material (`template`, wiped after use).
    async fn import_key_object(
        &self,
        record: ObjectRecord,
        template: ZeroizeTemplate,
    ) -> Result<(), BackendError> {
        let _gate = self.rescan_gate.read().await;
        self.ensure_absent(&record.uid)?;
        let uid = record.uid.to_string();
        let entry = self
            .with_session(move |s| {
                objects::create_with_meta(s, &record.uid, record.kind, 0, &record.meta, |s| {
                    s.create_object(&template.0).map_err(p11_error)
                })
            })
            .await?;
        self.publish(uid, entry).await
    }
}
