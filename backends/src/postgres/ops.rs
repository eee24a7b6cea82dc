//! The PostgreSQL backend as a [`Backend`]: writes as compare-and-set on the object's version,
//! each in one transaction with its change-log row; reads of material through the cache.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::error::SqlState;
use zeroize::Zeroizing;

use super::cache::CachedObject;
use super::connect::unavailable;
use super::rows::{self, log_change, Stored, STORED_COLUMNS};
use super::{seal, PostgresBackend};
use crate::asym;
use crate::stream::SoftwareStream;
use crate::vault::{check_label, check_meta, check_record, MAX_MATERIAL_BYTES};
use crate::{
    cipher, Backend, BackendError, CipherOutput, CipherRequest, ExportedObject, KeyAlgorithm,
    KeySpec, MacAlgorithm, ObjectKind, ObjectRecord, SharedBackend, StartedStream, StreamRequest,
};

/// How long `/readyz`'s probe waits for the database: a readiness check must answer quickly
/// even when the pool is exhausted or the server hangs.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

fn version_param(uid: &str, v: u64) -> Result<i64, BackendError> {
    i64::try_from(v).map_err(|_| BackendError::Conflict(uid.to_owned()))
}

impl PostgresBackend {
    /// Stores a new object (version 1), its material sealed.
    async fn insert(
        &self,
        record: ObjectRecord,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
    ) -> Result<(), BackendError> {
        let keks = &self.inner.keks;
        let sealed = seal::seal(keks, &record.uid, record.kind, spec.as_ref(), &material).await?;
        let epoch = self.inner.cache.epoch();
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(unavailable)?;
        let kind = i16::from(record.kind.code());
        let algorithm = spec.as_ref().map(|s| seal::algorithm_code(s.algorithm));
        let bits = spec
            .as_ref()
            .map(|s| i32::try_from(s.bits))
            .transpose()
            .map_err(|_| BackendError::InvalidInput("key length out of range".into()))?;
        let extractable = spec.as_ref().map(|s| s.extractable);
        let sensitive = spec.as_ref().map(|s| s.sensitive);
        let label = spec.as_ref().and_then(|s| s.label.clone());
        let inserted = tx
            .execute(
                "INSERT INTO kmip_objects (uid, kind, version, meta, algorithm, bits, extractable, \
                 sensitive, label, sealed, wrapped_key, kek_id) \
                 VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &&*record.uid,
                    &kind,
                    &record.meta.as_ref(),
                    &algorithm,
                    &bits,
                    &extractable,
                    &sensitive,
                    &label,
                    &sealed.sealed,
                    &sealed.wrapped_key,
                    &sealed.kek_id,
                ],
            )
            .await;
        match inserted {
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(BackendError::AlreadyExists(record.uid.to_string()))
            }
            other => other.map_err(unavailable)?,
        };
        log_change(&tx, &record.uid).await?;
        tx.commit().await.map_err(unavailable)?;
        let cached = CachedObject {
            kind: record.kind,
            spec,
            material,
        };
        self.inner.cache.fill(&record.uid, epoch, Arc::new(cached));
        Ok(())
    }

    /// Everything stored of `uid`, if it exists.
    pub(crate) async fn stored(&self, uid: &str) -> Result<Option<Stored>, BackendError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {STORED_COLUMNS} FROM kmip_objects WHERE uid = $1"),
                &[&uid],
            )
            .await
            .map_err(unavailable)?;
        row.as_ref().map(rows::stored).transpose()
    }

    /// A live object's material and facts: from the cache, else unsealed from the database
    /// (and cached). A destroyed or missing object is `NotFound`.
    async fn live(&self, uid: &str) -> Result<Arc<CachedObject>, BackendError> {
        if let Some(hit) = self.inner.cache.get(uid) {
            return Ok(hit);
        }
        let epoch = self.inner.cache.epoch();
        let stored = self
            .stored(uid)
            .await?
            .ok_or_else(|| BackendError::NotFound(uid.to_owned()))?;
        let material = self.unseal(&stored).await?;
        let object = Arc::new(CachedObject {
            kind: stored.record.kind,
            spec: stored.spec,
            material,
        });
        self.inner.cache.fill(uid, epoch, object.clone());
        Ok(object)
    }

    /// The material of a stored object; a tombstone's is gone (`NotFound`).
    async fn unseal(&self, stored: &Stored) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let r = &stored.record;
        let env = stored
            .envelope
            .as_ref()
            .ok_or_else(|| BackendError::NotFound(r.uid.to_string()))?;
        let key = seal::unwrap_key(&self.inner.keks, &r.uid, &env.wrapped_key, &env.kek_id).await?;
        seal::open(&key, &r.uid, r.kind, stored.spec.as_ref(), &env.sealed)
    }

    /// Key bytes of `uid` if it may be used for `algorithm` (the vault's rule).
    /// The private key `uid`, unsealed.
    async fn private_key(&self, uid: &str) -> Result<Arc<CachedObject>, BackendError> {
        let o = self.live(uid).await?;
        if o.kind != ObjectKind::PrivateKey {
            return Err(BackendError::InvalidInput(format!(
                "object {uid} is not a private key"
            )));
        }
        Ok(o)
    }

    async fn usable_key(
        &self,
        uid: &str,
        algorithms: &[KeyAlgorithm],
    ) -> Result<Arc<CachedObject>, BackendError> {
        let algorithm = algorithms.first().copied().unwrap_or(KeyAlgorithm::Aes);
        let o = self.live(uid).await?;
        let declared = o.spec.as_ref().map(|s| s.algorithm);
        if o.kind != ObjectKind::SymmetricKey || declared.is_some_and(|a| !algorithms.contains(&a))
        {
            return Err(BackendError::InvalidInput(format!(
                "object {uid} is not a {} key",
                match algorithm {
                    KeyAlgorithm::Aes => "AES",
                    KeyAlgorithm::HmacSha256 => "HMAC-SHA256",
                    KeyAlgorithm::TripleDes => "Triple DES",
                    KeyAlgorithm::ChaCha20 => "ChaCha20",
                }
            )));
        }
        Ok(o)
    }

    /// Runs a compare-and-set write of `uid` at `expected` (`sql` takes `$1` uid, `$2`
    /// expected version, then `params`), with its change-log row, in one transaction.
    async fn write_at_version(
        &self,
        uid: &str,
        expected: u64,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), BackendError> {
        let expected = version_param(uid, expected)?;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(unavailable)?;
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&uid, &expected];
        all.extend_from_slice(params);
        let n = tx.execute(sql, &all).await.map_err(unavailable)?;
        if n == 0 {
            let exists = tx
                .query_opt("SELECT 1 FROM kmip_objects WHERE uid = $1", &[&uid])
                .await
                .map_err(unavailable)?
                .is_some();
            return Err(if exists {
                BackendError::Conflict(uid.to_owned())
            } else {
                BackendError::NotFound(uid.to_owned())
            });
        }
        log_change(&tx, uid).await?;
        tx.commit().await.map_err(unavailable)
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError> {
        self.load_all_and_mark().await
    }

    async fn generate(&self, record: ObjectRecord, spec: KeySpec) -> Result<(), BackendError> {
        check_record(&record)?;
        check_label(&spec)?;
        if record.kind != ObjectKind::SymmetricKey {
            return Err(BackendError::InvalidInput(format!(
                "the postgres backend generates symmetric keys only, not {:?}",
                record.kind
            )));
        }
        let mut material = Zeroizing::new(vec![0u8; cipher::key_len(&spec)?]);
        aws_lc_rs::rand::fill(&mut material[..])
            .map_err(|_| BackendError::Crypto("random generator failed".into()))?;
        self.insert(record, material, Some(spec)).await
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
        self.insert(record, material, spec).await
    }

    async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let o = match self.live(uid).await {
            Ok(o) => o,
            // A tombstone of a non-extractable key answers as the vault's does.
            Err(BackendError::NotFound(_)) => match self.stored(uid).await? {
                Some(s)
                    if s.spec
                        .as_ref()
                        .is_some_and(|s| !s.extractable || s.sensitive) =>
                {
                    return Err(BackendError::NotExtractable(uid.to_owned()))
                }
                _ => return Err(BackendError::NotFound(uid.to_owned())),
            },
            Err(e) => return Err(e),
        };
        match &o.spec {
            Some(s) if !s.extractable || s.sensitive => {
                Err(BackendError::NotExtractable(uid.to_owned()))
            }
            _ => Ok(o.material.clone()),
        }
    }

    async fn update_meta(
        &self,
        uid: &str,
        meta: bytes::Bytes,
        expected_version: u64,
    ) -> Result<(), BackendError> {
        check_meta(&meta)?;
        self.write_at_version(
            uid,
            expected_version,
            "UPDATE kmip_objects SET meta = $3, version = version + 1 \
             WHERE uid = $1 AND version = $2",
            &[&meta.as_ref()],
        )
        .await
    }

    async fn destroy(
        &self,
        uid: &str,
        tombstone: Option<bytes::Bytes>,
        expected_version: u64,
    ) -> Result<(), BackendError> {
        let result = match &tombstone {
            // Crypto-shredding: the sealed material and its wrapped data key leave the row in
            // the transaction that makes the tombstone; no replica or later backup has them.
            Some(meta) => {
                check_meta(meta)?;
                self.write_at_version(
                    uid,
                    expected_version,
                    "UPDATE kmip_objects SET meta = $3, version = version + 1, sealed = NULL, \
                     wrapped_key = NULL, kek_id = NULL WHERE uid = $1 AND version = $2",
                    &[&meta.as_ref()],
                )
                .await
            }
            None => {
                self.write_at_version(
                    uid,
                    expected_version,
                    "DELETE FROM kmip_objects WHERE uid = $1 AND version = $2",
                    &[],
                )
                .await
            }
        };
        // Even after a failed commit (its outcome unknown) the material must not be served.
        self.inner.cache.invalidate(uid);
        result
    }

    // AES and HMAC over request-sized data take microseconds, cheaper than a hop to a
    // blocking thread, so they run inline.
    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        let o = self.usable_key(uid, &cipher::CIPHER_KEYS).await?;
        cipher::encrypt_with(o.spec.as_ref().map(|s| s.algorithm), &o.material, req)
    }

    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        let o = self.usable_key(uid, &cipher::CIPHER_KEYS).await?;
        cipher::decrypt_with(o.spec.as_ref().map(|s| s.algorithm), &o.material, req)
    }

    fn streams(&self) -> bool {
        true
    }

    async fn start_stream(
        &self,
        uid: &str,
        req: StreamRequest,
    ) -> Result<StartedStream, BackendError> {
        let o = self.usable_key(uid, &cipher::CIPHER_KEYS).await?;
        let key = Zeroizing::new(o.material.to_vec());
        SoftwareStream::start(o.spec.as_ref().map(|s| s.algorithm), key, req)
    }

    async fn mac(
        &self,
        uid: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let o = self.usable_key(uid, &cipher::MAC_KEYS).await?;
        Ok(cipher::hmac(algorithm, &o.material, data))
    }

    async fn generate_key_pair(
        &self,
        private: ObjectRecord,
        public: ObjectRecord,
        spec: asym::KeyPairSpec,
    ) -> Result<(), BackendError> {
        asym::store_generated_pair(self, private, public, spec).await
    }

    async fn sign(
        &self,
        uid: &str,
        scheme: asym::SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        asym::sign(&self.private_key(uid).await?.material, scheme, data)
    }

    async fn rsa_decrypt(
        &self,
        uid: &str,
        padding: asym::RsaPadding,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        asym::decrypt(&self.private_key(uid).await?.material, &padding, data)
    }

    async fn health(&self) -> Result<(), BackendError> {
        let probe = async {
            let conn = self.conn().await?;
            conn.simple_query("SELECT 1").await.map_err(unavailable)?;
            Ok(())
        };
        tokio::time::timeout(HEALTH_TIMEOUT, probe)
            .await
            .map_err(|_| {
                BackendError::Unavailable(format!(
                    "PostgreSQL did not answer within {HEALTH_TIMEOUT:?}"
                ))
            })?
    }

    fn shared(&self) -> Option<&dyn SharedBackend> {
        Some(self)
    }

    async fn export(&self, uid: &str) -> Result<ExportedObject, BackendError> {
        let stored = self
            .stored(uid)
            .await?
            .ok_or_else(|| BackendError::NotFound(uid.to_owned()))?;
        let material = match stored.envelope {
            Some(_) => Some(self.unseal(&stored).await?),
            None => None,
        };
        Ok(ExportedObject {
            record: stored.record,
            material,
            spec: stored.spec,
        })
    }
}
