//! The vault as a [`Backend`]: input limits checked before anything is queued, key generation,
//! and the key operations, which run inline on the caller's task.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::writer::Mutation;
use super::{material, Entry, Vault};
use super::{MAX_LABEL_BYTES, MAX_MATERIAL_BYTES, MAX_META_BYTES, MAX_UID_BYTES};
use crate::asym::{self, KeyPairSpec, RsaPadding, SignatureScheme};
use crate::cipher::{self, key_len};
use crate::stream::SoftwareStream;
use crate::{
    Backend, BackendError, CipherOutput, CipherRequest, ExportedObject, KeySpec, MacAlgorithm,
    ObjectKind, ObjectRecord, StartedStream, StreamRequest,
};

pub(crate) fn check_record(record: &ObjectRecord) -> Result<(), BackendError> {
    if record.uid.is_empty() || record.uid.len() > MAX_UID_BYTES {
        return Err(BackendError::InvalidInput(format!(
            "uid must be 1 to {MAX_UID_BYTES} bytes"
        )));
    }
    check_meta(&record.meta)
}

pub(crate) fn check_meta(meta: &[u8]) -> Result<(), BackendError> {
    if meta.len() > MAX_META_BYTES {
        return Err(BackendError::InvalidInput(format!(
            "metadata of {} bytes exceeds {MAX_META_BYTES}",
            meta.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_label(spec: &KeySpec) -> Result<(), BackendError> {
    match &spec.label {
        Some(l) if l.len() > MAX_LABEL_BYTES => Err(BackendError::InvalidInput(format!(
            "label of {} bytes exceeds {MAX_LABEL_BYTES}",
            l.len()
        ))),
        _ => Ok(()),
    }
}

#[async_trait]
impl Backend for Vault {
    fn name(&self) -> &'static str {
        "vault"
    }

    async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError> {
        Ok(self
            .shared
            .read_objects()
            .iter()
            .map(|(uid, e)| ObjectRecord {
                uid: uid.clone(),
                kind: e.kind,
                meta: e.meta.clone(),
                version: 0,
            })
            .collect())
    }

    async fn generate(&self, record: ObjectRecord, spec: KeySpec) -> Result<(), BackendError> {
        check_record(&record)?;
        check_label(&spec)?;
        if record.kind != ObjectKind::SymmetricKey {
            return Err(BackendError::InvalidInput(format!(
                "the vault generates symmetric keys only, not {:?}",
                record.kind
            )));
        }
        let mut material = Zeroizing::new(vec![0u8; key_len(&spec)?]);
        aws_lc_rs::rand::fill(&mut material[..])
            .map_err(|_| BackendError::Crypto("random generator failed".into()))?;
        self.submit(Mutation::Create {
            uid: record.uid,
            entry: Entry {
                kind: record.kind,
                spec: Some(spec),
                meta: record.meta,
                material: Some(material),
                key: None,
            },
        })
        .await
    }

    async fn import(
        &self,
        record: ObjectRecord,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
    ) -> Result<(), BackendError> {
        check_record(&record)?;
        if material.len() > MAX_MATERIAL_BYTES {
            return Err(BackendError::InvalidInput(format!(
                "object material of {} bytes exceeds {MAX_MATERIAL_BYTES}",
                material.len()
            )));
        }
        if let Some(spec) = &spec {
            check_label(spec)?;
            cipher::check_import(&material, spec)?;
        }
        self.submit(Mutation::Create {
            uid: record.uid,
            entry: Entry {
                kind: record.kind,
                spec,
                meta: record.meta,
                material: Some(material),
                key: None,
            },
        })
        .await
    }

    async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.with_entry(uid, |e| match &e.spec {
            Some(s) if !s.extractable || s.sensitive => {
                Err(BackendError::NotExtractable(uid.to_owned()))
            }
            _ => material(uid, e),
        })
    }

    async fn export(&self, uid: &str) -> Result<ExportedObject, BackendError> {
        self.with_entry(uid, |e| {
            Ok(ExportedObject {
                record: ObjectRecord {
                    uid: uid.into(),
                    kind: e.kind,
                    meta: e.meta.clone(),
                    version: 0,
                },
                material: e.material.clone(),
                spec: e.spec.clone(),
            })
        })
    }

    async fn update_meta(
        &self,
        uid: &str,
        meta: bytes::Bytes,
        _expected_version: u64,
    ) -> Result<(), BackendError> {
        check_meta(&meta)?;
        self.submit(Mutation::UpdateMeta {
            uid: uid.into(),
            meta,
        })
        .await
    }

    async fn destroy(
        &self,
        uid: &str,
        tombstone: Option<bytes::Bytes>,
        _expected_version: u64,
    ) -> Result<(), BackendError> {
        if let Some(meta) = &tombstone {
            check_meta(meta)?;
        }
        self.submit(Mutation::Destroy {
            uid: uid.into(),
            tombstone,
        })
        .await
    }

    // AES and HMAC over request-sized data take microseconds, cheaper than a hop to a
    // blocking thread, so they run inline.
    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        let algorithm = self.declared_algorithm(uid)?;
        let key = self.usable_key(uid, &cipher::CIPHER_KEYS)?;
        cipher::encrypt_with(algorithm, &key, req)
    }

    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        let algorithm = self.declared_algorithm(uid)?;
        let key = self.usable_key(uid, &cipher::CIPHER_KEYS)?;
        cipher::decrypt_with(algorithm, &key, req)
    }

    fn streams(&self) -> bool {
        true
    }

    async fn start_stream(
        &self,
        uid: &str,
        req: StreamRequest,
    ) -> Result<StartedStream, BackendError> {
        let algorithm = self.declared_algorithm(uid)?;
        let key = self.usable_key(uid, &cipher::CIPHER_KEYS)?;
        SoftwareStream::start(algorithm, key, req)
    }

    async fn mac(
        &self,
        uid: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let key = self.usable_key(uid, &cipher::MAC_KEYS)?;
        Ok(cipher::hmac(algorithm, &key, data))
    }

    async fn generate_key_pair(
        &self,
        private: ObjectRecord,
        public: ObjectRecord,
        spec: KeyPairSpec,
    ) -> Result<(), BackendError> {
        asym::store_generated_pair(self, private, public, spec).await
    }

    // One private-key operation is a millisecond or two: inline, like AES.
    async fn sign(
        &self,
        uid: &str,
        scheme: SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        asym::sign(&self.private_key(uid)?, scheme, data)
    }

    async fn rsa_decrypt(
        &self,
        uid: &str,
        padding: RsaPadding,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        asym::decrypt(&self.private_key(uid)?, &padding, data)
    }

    async fn health(&self) -> Result<(), BackendError> {
        let stopped = self.shared.failed.load(Ordering::SeqCst)
            || self.tx.as_ref().is_none_or(|tx| tx.is_closed());
        if stopped {
            return Err(BackendError::Unavailable(
                "the vault writer has stopped after an I/O failure; restart to recover".into(),
            ));
        }
        Ok(())
    }
}

impl Vault {
    /// The PKCS#8 material of the private key `uid`.
    fn private_key(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.with_entry(uid, |e| {
            if e.kind != ObjectKind::PrivateKey {
                return Err(BackendError::InvalidInput(format!(
                    "object {uid} is not a private key"
                )));
            }
            material(uid, e)
        })
    }
}
