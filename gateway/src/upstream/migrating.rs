//! `[backend] kind = "kmip"`, `mode = "migrate"` (issue 18): the way off a key manager without
//! downtime. New objects are made on a local side: the local vault (the one a plain vault
//! configuration on the same data folder opens) or PostgreSQL (`[backend.migrate_to]`); every
//! object not there yet is the proxy's, read through to the upstream as in `mode = "proxy"`.
//! `kmip-gateway upstream copy` moves the extractable ones to the local side; once everything
//! is there, the configuration becomes a plain vault's or PostgreSQL's.
//!
//! Which side holds an object is decided by its identifier: the local side's identifiers are
//! kept in memory (read at start, added on each creation and, on PostgreSQL, from the change
//! feed and re-reads); any other is the proxy's. An object both hold (copied, the proxy not
//! yet retired) is served locally: the copy is verified, and the local side is where it is
//! going.
//!
//! On PostgreSQL the composite is itself a [`SharedBackend`], so that the store keeps its
//! shared-backend behaviour (change feed, read-your-writes fence, version conflicts re-run,
//! cluster-wide Name locks) for the database's objects, while the proxy's objects, which only
//! this process's upstream map holds, are never taken for ones the database lost.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use kmip_backends::asym::KeyPairSpec;
use kmip_backends::{
    Backend, BackendError, Change, CipherOutput, CipherRequest, ExportedObject, KeySpec,
    MacAlgorithm, NameLockGuard, ObjectRecord, RngInfo, SharedBackend, StartedStream,
    StreamRequest,
};
use zeroize::Zeroizing;

use super::UpstreamBackend;

/// The local side in front, the proxy behind.
pub struct MigratingBackend {
    local: Arc<dyn Backend>,
    proxy: Arc<UpstreamBackend>,
    /// The proxy's upstream map (its records are the proxy's objects), read directly when the
    /// database's feed must be completed with them.
    map: Arc<dyn Backend>,
    /// Identifiers of the objects the local side holds.
    local_uids: Mutex<HashSet<Arc<str>>>,
}

impl MigratingBackend {
    /// `map` is the vault `proxy` keeps its records in.
    pub fn new(
        local: Arc<dyn Backend>,
        proxy: Arc<UpstreamBackend>,
        map: Arc<dyn Backend>,
    ) -> MigratingBackend {
        MigratingBackend {
            local,
            proxy,
            map,
            local_uids: Mutex::default(),
        }
    }

    fn uids(&self) -> MutexGuard<'_, HashSet<Arc<str>>> {
        // A panic while holding it left a plain set behind: still consistent.
        self.local_uids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the local side holds `uid` (made there, or copied by `upstream copy`).
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

    /// Records that the local side now holds `uid` (after a successful creation).
    fn made_locally(&self, uid: Arc<str>) {
        self.uids().insert(uid);
    }

    /// The local side's coordination interface: `Some` on PostgreSQL.
    fn local_shared(&self) -> Result<&dyn SharedBackend, BackendError> {
        self.local.shared().ok_or_else(|| {
            BackendError::Unavailable("the migrating proxy's local side is not shared".into())
        })
    }

    /// The proxy's records (its map's), or none when the map cannot be read: the feed has
    /// already moved past the change being completed with them, so it is passed on as it is
    /// (the store then re-reads each object it misses, through [`SharedBackend::load`]).
    async fn proxy_records(&self) -> Vec<ObjectRecord> {
        self.map.load_all().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the upstream map to follow the database failed");
            Vec::new()
        })
    }
}

/// The database's side of the composite: its feed and re-reads, with the set of local
/// identifiers kept equal to what it reports, and the proxy's objects kept whatever it says.
#[async_trait]
impl SharedBackend for MigratingBackend {
    async fn changes(&self) -> Result<Vec<Change>, BackendError> {
        let changes = self.local_shared()?.changes().await?;
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            out.push(match change {
                Change::Upsert(record) => {
                    // Another gateway on the database made it, or this one did (an echo).
                    self.made_locally(record.uid.clone());
                    Change::Upsert(record)
                }
                Change::Removed(uid) => {
                    self.uids().remove(uid.as_str());
                    // The database's copy is gone; the proxy's object, if any, is served again.
                    match self
                        .proxy_records()
                        .await
                        .into_iter()
                        .find(|r| *r.uid == *uid)
                    {
                        Some(record) => Change::Upsert(record),
                        None => Change::Removed(uid),
                    }
                }
                Change::Resync(mut records) => {
                    let local: HashSet<Arc<str>> = records.iter().map(|r| r.uid.clone()).collect();
                    // Added to, not replacing, the set: an object made here after the snapshot
                    // is not in it. One the database lost leaves the set when the store re-reads
                    // it (`load`), as it does every object missing from a resync.
                    self.uids().extend(local.iter().cloned());
                    // Every object the store must keep: the proxy's too, or it would take them
                    // for objects the database lost.
                    records.extend(
                        self.proxy_records()
                            .await
                            .into_iter()
                            .filter(|r| !local.contains(&r.uid)),
                    );
                    Change::Resync(records)
                }
            });
        }
        Ok(out)
    }

    async fn wait_for_change(&self, timeout: std::time::Duration) {
        match self.local.shared() {
            Some(shared) => shared.wait_for_change(timeout).await,
            None => tokio::time::sleep(timeout).await,
        }
    }

    async fn load(&self, uid: &str) -> Result<Option<ObjectRecord>, BackendError> {
        match self.local_shared()?.load(uid).await? {
            Some(record) => {
                self.made_locally(record.uid.clone());
                Ok(Some(record))
            }
            None => {
                self.uids().remove(uid);
                // A scan of the map in memory: asked only for an object the database does not
                // have, which a resync's list of the proxy's objects leaves rare.
                Ok(self
                    .map
                    .load_all()
                    .await?
                    .into_iter()
                    .find(|r| &*r.uid == uid))
            }
        }
    }

    /// Names are unique across the database's gateways; the proxy's objects are all in this
    /// process's store, whose own check covers them.
    async fn lock_names(&self, names: &[String]) -> Result<NameLockGuard, BackendError> {
        self.local_shared()?.lock_names(names).await
    }
}

#[async_trait]
impl Backend for MigratingBackend {
    fn name(&self) -> &'static str {
        "kmip (migrate)"
    }

    /// The local side's objects, and the proxy's that the local side does not hold.
    async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError> {
        let mut records = self.local.load_all().await?;
        let local: HashSet<Arc<str>> = records.iter().map(|r| r.uid.clone()).collect();
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

    /// A local key streams as on its backend; the proxy's keys do not (`streams` stays false, as
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

    /// On PostgreSQL: the composite, which routes the database's feed and re-reads (see the
    /// module's documentation).
    fn shared(&self) -> Option<&dyn SharedBackend> {
        self.local.shared()?;
        Some(self)
    }

    async fn readiness_report(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "migrate mode: {} objects on the local side ({})",
            self.uids().len(),
            self.local.name()
        )];
        lines.extend(self.proxy.readiness_report().await);
        lines
    }
}
