//! `[backend] kind = "kmip"`, `mode = "migrate"` (issue 18): the way off a key manager without
//! downtime. New objects are made in a local vault (the one a plain vault configuration on the
//! same data folder opens); every object not there yet is the proxy's, read through to the
//! upstream as in `mode = "proxy"`. `kmip-gateway upstream copy` moves the extractable ones into
//! that vault; once everything is there, the configuration becomes a plain vault's.
//!
//! Which side holds an object is decided by its identifier: the local vault's identifiers are
//! kept in memory (read at start, added on each creation); any other is the proxy's. An object
//! both hold (copied, the proxy not yet retired) is served locally: the copy is verified, and
//! the local side is where it is going.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use kmip_backends::asym::KeyPairSpec;
use kmip_backends::{
    Backend, BackendError, CipherOutput, CipherRequest, ExportedObject, KeySpec, MacAlgorithm,
    ObjectRecord, RngInfo, StartedStream, StreamRequest,
};
use zeroize::Zeroizing;

use super::UpstreamBackend;

/// The local vault in front, the proxy behind.
pub struct MigratingBackend {
    local: Arc<dyn Backend>,
    proxy: Arc<UpstreamBackend>,
    /// Identifiers of the objects the local vault holds.
    local_uids: Mutex<HashSet<String>>,
}

impl MigratingBackend {
    pub fn new(local: Arc<dyn Backend>, proxy: Arc<UpstreamBackend>) -> MigratingBackend {
        MigratingBackend {
            local,
            proxy,
            local_uids: Mutex::default(),
        }
    }

    fn uids(&self) -> MutexGuard<'_, HashSet<String>> {
        // A panic while holding it left a plain set behind: still consistent.
        self.local_uids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the local vault holds `uid` (made there, or copied by `upstream copy`).
    pub fn is_local(&self, uid: &str) -> bool {
        self.uids().contains(uid)
    }

    /// The backend holding `uid`.
    fn side(&self, uid: &str) -> &dyn Backend {
        if self.is_local(uid) {
            self.local.as_ref()
        } else {
            self.proxy.as_ref()
        }
    }

    /// Records that the local vault now holds `uid` (after a successful creation).
    fn made_locally(&self, uid: String) {
        self.uids().insert(uid);
    }
}

#[async_trait]
impl Backend for MigratingBackend {
    fn name(&self) -> &'static str {
        "kmip (migrate)"
    }

    /// The local vault's objects, and the proxy's that the vault does not hold.
    async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError> {
        let mut records = self.local.load_all().await?;
        let local: HashSet<String> = records.iter().map(|r| r.uid.clone()).collect();
        records.extend(
            self.proxy
                .load_all()
                .await?
                .into_iter()
                .filter(|r| !local.contains(&r.uid)),
        );
        *self.uids() = local;
        Ok(records)
    }

    async fn generate(&self, record: ObjectRecord, spec: KeySpec) -> Result<(), BackendError> {
        let uid = record.uid.clone();
        self.local.generate(record, spec).await?;
        self.made_locally(uid);
        Ok(())
    }

    async fn import(
        &self,
        record: ObjectRecord,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
    ) -> Result<(), BackendError> {
        let uid = record.uid.clone();
        self.local.import(record, material, spec).await?;
        self.made_locally(uid);
        Ok(())
    }

    async fn generate_key_pair(
        &self,
        private: ObjectRecord,
        public: ObjectRecord,
        spec: KeyPairSpec,
    ) -> Result<(), BackendError> {
        let uids = (private.uid.clone(), public.uid.clone());
        self.local.generate_key_pair(private, public, spec).await?;
        self.made_locally(uids.0);
        self.made_locally(uids.1);
        Ok(())
    }

    async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.side(uid).read_material(uid).await
    }

    async fn update_meta(
        &self,
        uid: &str,
        meta: bytes::Bytes,
        expected_version: u64,
    ) -> Result<(), BackendError> {
        self.side(uid)
            .update_meta(uid, meta, expected_version)
            .await
    }

    /// A copied object is destroyed on both sides, upstream first (as the proxy writes): a
    /// failure there leaves the local copy as it was, and no key outlives its Destroy upstream.
    async fn destroy(
        &self,
        uid: &str,
        tombstone: Option<bytes::Bytes>,
        expected_version: u64,
    ) -> Result<(), BackendError> {
        if !self.is_local(uid) {
            return self.proxy.destroy(uid, tombstone, expected_version).await;
        }
        match self
            .proxy
            .destroy(uid, tombstone.clone(), expected_version)
            .await
        {
            // Made locally: the upstream never had it.
            Ok(()) | Err(BackendError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.local.destroy(uid, tombstone, expected_version).await
    }

    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.side(uid).encrypt(uid, req).await
    }

    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.side(uid).decrypt(uid, req).await
    }

    /// A local key streams as in a vault; the proxy's keys do not (`streams` stays false, as
    /// not every key can).
    async fn start_stream(
        &self,
        uid: &str,
        req: StreamRequest,
    ) -> Result<StartedStream, BackendError> {
        self.side(uid).start_stream(uid, req).await
    }

    async fn mac(
        &self,
        uid: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        self.side(uid).mac(uid, algorithm, data).await
    }

    async fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.local.random(len).await
    }

    async fn seed_random(&self, seed: &[u8]) -> Result<usize, BackendError> {
        self.local.seed_random(seed).await
    }

    fn rng(&self) -> RngInfo {
        self.local.rng()
    }

    async fn sign(
        &self,
        uid: &str,
        scheme: kmip_backends::asym::SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        self.side(uid).sign(uid, scheme, data).await
    }

    async fn rsa_decrypt(
        &self,
        uid: &str,
        padding: kmip_backends::asym::RsaPadding,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.side(uid).rsa_decrypt(uid, padding, data).await
    }

    async fn export(&self, uid: &str) -> Result<ExportedObject, BackendError> {
        self.side(uid).export(uid).await
    }

    /// Ready when both sides are.
    async fn health(&self) -> Result<(), BackendError> {
        self.local.health().await?;
        self.proxy.health().await
    }

    async fn readiness_report(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "migrate mode: {} objects in the local vault",
            self.uids().len()
        )];
        lines.extend(self.proxy.readiness_report().await);
        lines
    }
}
