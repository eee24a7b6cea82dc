//! The gateway as a KMIP proxy (issue 18): [`UpstreamBackend`] implements
//! [`kmip_backends::Backend`] over other KMIP servers, so that every client-facing feature
//! (per-user authentication and policy, Locate cache, audit, metrics) works unchanged in front
//! of an existing key manager.
//!
//! Design:
//! - **What stays here.** Ownership, Names, Object Groups and every other attribute live in the
//!   gateway's metadata blob, as with every backend; the upstream sees one identity (the
//!   gateway's client certificate), so per-user isolation is the gateway's policy, not the
//!   upstream's. The blob and the mapping gateway UID → upstream UID are kept in a **local vault
//!   of its own** (`<data_dir>/upstream-map`, its head `upstream-map.head` beside the master
//!   key): one record per object whose "material" is the upstream identifier (and the
//!   extractability flag, and a Split Key's split group), never key bytes. The vault gives what
//!   the mapping needs for free: durable group-committed writes, tombstones, rollback
//!   detection, `backup`/`restore`; its own folder means it can never be mistaken for a key
//!   vault.
//! - **What stays upstream.** Material and cryptography: generate → Create (+ Activate: the
//!   gateway keeps the real lifecycle state and checks it before forwarding, the upstream key
//!   is simply usable), import → Register, read_material → Get, destroy → Revoke + Destroy,
//!   encrypt/decrypt/MAC → forwarded with the upstream identifier; key pairs, Sign and RSA
//!   Decrypt likewise (`keys.rs`).
//! - **Order of writes.** Upstream first, then the local record: a crash in between leaves an
//!   unreferenced upstream object (no client can reach it), never a record pointing at nothing.
//!   Destroy: upstream first (an upstream Item Not Found counts as done, so a retry finishes),
//!   then the local tombstone.
//! - **Connections.** One bb8 pool per upstream (`pool.rs`); a request tries the upstreams in
//!   priority order until one gives a connection, each within `acquire_timeout`, and the call
//!   itself within `request_timeout`: a dead upstream answers in bounded time with a backend
//!   error (General Failure to the client), never a hang. A call whose connection broke is
//!   sent again, first on a fresh connection to the same upstream (a transport failure evicts
//!   every connection opened before it: the upstream may have restarted), then to the next
//!   upstream. For Create and Register that may leave an unreferenced object upstream (the
//!   first attempt may have been executed), exactly as a crash between the upstream write and
//!   the local record can; it never maps a gateway object to the wrong upstream one.
//!   The upstreams of one list are expected to serve the same objects (nodes of one cluster).
//! - **Adoption** (`adopt.rs`): an object the upstream held before is mapped by the operator
//!   (`kmip-gateway upstream adopt`) under its upstream identifier; nothing is sent upstream
//!   but Locate and Get Attributes. One upstream object is mapped at most once: the upstream
//!   identifiers of the live mappings are kept in memory, read from the mapping vault at start.
//! - **Changes made upstream by others** (`refresh.rs`): every `refresh_interval`, the lifecycle
//!   of each mapped object is read back in batches and a revocation or destruction upstream is
//!   applied through the store.
//! - **Migrate mode** (`migrating.rs`): new objects in a local vault, the rest read through to
//!   the upstream, until `upstream copy` has moved everything.

mod adopt;
mod keys;
mod migrating;
mod pool;
pub mod refresh;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use kmip_backends::asym::{KeyPairSpec, RsaPadding, SignatureScheme};
use kmip_backends::{
    Backend, BackendError, CipherOutput, CipherRequest, ExportedObject, KeySpec, MacAlgorithm,
    ObjectKind, ObjectRecord,
};
use kmip_wire::model::{
    CryptographicParameters, GetRequest, MacRequest, RequestPayload, ResponsePayload,
    RevocationReason, RevocationReasonCode, RevokeRequest, SecretBytes, UidRequest,
};
use zeroize::Zeroizing;

use crate::client::ClientTls;
use crate::config::UpstreamConfig;
use crate::kmip::ops::{symmetric_key_spec, SplitGroup};
use crate::kmip::store::StoredObject;
pub use migrating::MigratingBackend;
use pool::{CallError, Connector, Upstream};

/// Tries of one call on one upstream before the next is asked: a stale pooled connection, then
/// a fresh one. Bounds a call's time to upstreams × attempts × (acquire + request timeout).
const ATTEMPTS_PER_UPSTREAM: usize = 2;

/// Flags, the first byte of a mapping record's material. The object may be read back
/// (`read_material`):
const EXTRACTABLE: u8 = 1;
/// The 16 bytes of a Split Key's split group follow the flags:
const SPLIT_GROUP: u8 = 2;

/// The proxy backend: a local vault of mapping records plus the upstream pools.
pub struct UpstreamBackend {
    map: Arc<dyn Backend>,
    upstreams: Vec<Upstream>,
    /// Which upstream objects are mapped, and to which gateway object.
    mapped: adopt::MappedIndex,
}

impl UpstreamBackend {
    /// Builds the pools (no connection is opened yet) over `map`, the local mapping vault.
    pub fn new(cfg: &UpstreamConfig, map: Arc<dyn Backend>) -> Result<Self, BackendError> {
        let tls = ClientTls::from_files(&cfg.ca, &cfg.cert, &cfg.key)
            .map_err(|e| BackendError::Unavailable(format!("upstream client TLS settings: {e}")))?;
        let upstreams = cfg
            .upstreams
            .iter()
            .map(|addr| {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let connector = Connector {
                    addr: addr.clone(),
                    server_name: cfg.server_name.clone().unwrap_or_else(|| host.to_owned()),
                    tls: tls.clone(),
                    version: cfg.version,
                    connect_timeout: cfg.acquire_timeout,
                    request_timeout: cfg.request_timeout,
                    epoch: Arc::default(),
                };
                Upstream::new(
                    connector,
                    cfg.pool_size,
                    cfg.acquire_timeout,
                    cfg.idle_timeout,
                )
            })
            .collect();
        Ok(UpstreamBackend {
            map,
            upstreams,
            mapped: adopt::MappedIndex::default(),
        })
    }

    /// Sends `payload` to the first upstream that gives a connection, in priority order.
    async fn call(
        &self,
        name: &str,
        uid: &str,
        payload: RequestPayload,
    ) -> Result<ResponsePayload, BackendError> {
        self.call_batch(name, &[uid], vec![payload])
            .await?
            .pop()
            .unwrap_or_else(|| Err(unexpected(name)))
    }

    /// Sends `payloads` (about `uids`, one each) in one message to the first upstream that
    /// gives a connection and answers, in priority order; each item's outcome in order.
    async fn call_batch(
        &self,
        name: &str,
        uids: &[&str],
        payloads: Vec<RequestPayload>,
    ) -> Result<Vec<Result<ResponsePayload, BackendError>>, BackendError> {
        let mut failures = Vec::new();
        for upstream in &self.upstreams {
            // A second attempt on the same upstream: the first may have failed on a connection
            // the upstream dropped (a restart), and that failure evicts the others.
            for _ in 0..ATTEMPTS_PER_UPSTREAM {
                let mut conn = match upstream.pool.get().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(upstream = %upstream.addr, error = %describe(&e), "upstream unavailable");
                        failures.push(format!("{}: {}", upstream.addr, describe(&e)));
                        break;
                    }
                };
                match conn.call_batch(payloads.clone()).await {
                    Ok(items) => {
                        return Ok(items
                            .into_iter()
                            .zip(uids.iter().chain(std::iter::repeat(&"")))
                            .map(|(item, uid)| {
                                item.map_err(|e| {
                                    if let CallError::Refused { message, .. } = &e {
                                        tracing::debug!(upstream = %upstream.addr, call = name, message = ?message, "upstream refused");
                                    }
                                    wire::backend_error(&upstream.addr, name, uid, e)
                                })
                            })
                            .collect())
                    }
                    Err(why) => {
                        tracing::warn!(upstream = %upstream.addr, call = name, error = %why, "upstream call failed; trying again");
                        failures.push(format!("{}: {why}", upstream.addr));
                    }
                }
            }
        }
        Err(BackendError::Unavailable(format!(
            "no KMIP upstream answered {name}: {}",
            failures.join("; ")
        )))
    }

    /// The mapping of `uid`: its upstream identifier, whether its material may be read.
    async fn target(&self, uid: &str) -> Result<Mapping, BackendError> {
        link_of(uid, &self.map.read_material(uid).await?)
    }

    /// The material of the upstream object `mapping` names (the gateway's `uid`).
    async fn get_material(
        &self,
        uid: &str,
        mapping: Mapping,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let get = RequestPayload::Get(GetRequest {
            unique_identifier: Some(mapping.upstream),
            ..GetRequest::default()
        });
        match self.call("Get", uid, get).await? {
            ResponsePayload::Get(r) => wire::material(uid, r.object, mapping.group.as_ref()),
            _ => Err(unexpected("Get")),
        }
    }

    /// Stores the mapping record of a new object made upstream.
    async fn record(
        &self,
        record: ObjectRecord,
        upstream_uid: &str,
        extractable: bool,
        group: Option<&SplitGroup>,
    ) -> Result<(), BackendError> {
        let gateway_uid = record.uid.clone();
        self.write_record(record, upstream_uid, extractable, group)
            .await?;
        self.mapped.insert(upstream_uid, &gateway_uid);
        Ok(())
    }

    /// Writes a mapping record: `record`'s metadata, and the upstream identifier (with a Split
    /// Key's group) as material.
    async fn write_record(
        &self,
        record: ObjectRecord,
        upstream_uid: &str,
        extractable: bool,
        group: Option<&SplitGroup>,
    ) -> Result<(), BackendError> {
        let material = mapping_material(upstream_uid, extractable, group);
        self.map.import(record, material, None).await
    }

    async fn activate(&self, upstream_uid: &str) -> Result<(), BackendError> {
        let activate = RequestPayload::Activate(UidRequest {
            unique_identifier: Some(upstream_uid.to_owned()),
        });
        self.call("Activate", upstream_uid, activate)
            .await
            .map(|_| ())
    }

    async fn cipher(
        &self,
        name: &str,
        uid: &str,
        req: CipherRequest,
    ) -> Result<CipherOutput, BackendError> {
        let target = self.target(uid).await?.upstream;
        let asked_iv = req.iv.is_some();
        let body = wire::crypto(&target, req);
        let payload = if name == "Encrypt" {
            RequestPayload::Encrypt(body)
        } else {
            RequestPayload::Decrypt(body)
        };
        match self.call(name, uid, payload).await? {
            ResponsePayload::Encrypt(r) => Ok(CipherOutput {
                data: Zeroizing::new(r.data.map(|d| d.to_vec()).unwrap_or_default()),
                generated_iv: r.iv_counter_nonce.filter(|_| !asked_iv).map(|v| v.to_vec()),
                tag: r.authenticated_encryption_tag.map(|t| t.to_vec()),
            }),
            ResponsePayload::Decrypt(r) => Ok(CipherOutput {
                data: Zeroizing::new(r.data.map(|d| d.as_slice().to_vec()).unwrap_or_default()),
                generated_iv: None,
                tag: None,
            }),
            _ => Err(unexpected(name)),
        }
    }
}

/// What a mapping record's material says of one gateway object.
struct Mapping {
    /// The upstream identifier.
    upstream: String,
    /// Whether its material may be read.
    extractable: bool,
    /// A Split Key's split group (the gateway's, not the upstream's: Join Split Key compares it).
    group: Option<SplitGroup>,
}

/// A mapping record's material: flags, a Split Key's group, the upstream identifier.
fn mapping_material(
    upstream_uid: &str,
    extractable: bool,
    group: Option<&SplitGroup>,
) -> Zeroizing<Vec<u8>> {
    let mut material = Zeroizing::new(Vec::with_capacity(1 + 16 + upstream_uid.len()));
    let flags = if extractable { EXTRACTABLE } else { 0 };
    match group {
        Some(group) => {
            material.push(flags | SPLIT_GROUP);
            material.extend_from_slice(group);
        }
        None => material.push(flags),
    }
    material.extend_from_slice(upstream_uid.as_bytes());
    material
}

/// What [`mapping_material`] wrote (and records written before Split Keys were mapped: flags
/// and identifier only, read alike).
fn link_of(uid: &str, record: &[u8]) -> Result<Mapping, BackendError> {
    let corrupt = || BackendError::Corrupt(format!("mapping record of {uid}"));
    let (flags, rest) = record.split_first().ok_or_else(corrupt)?;
    let (group, id) = if flags & SPLIT_GROUP != 0 {
        let (group, id) = rest.split_first_chunk::<16>().ok_or_else(corrupt)?;
        (Some(*group), id)
    } else {
        (None, rest)
    };
    Ok(Mapping {
        upstream: String::from_utf8(id.to_vec()).map_err(|_| corrupt())?,
        extractable: flags & EXTRACTABLE != 0,
        group,
    })
}

fn describe(e: &bb8::RunError<CallError>) -> String {
    match e {
        bb8::RunError::User(e) => e.to_string(),
        bb8::RunError::TimedOut => "no pooled connection free within the acquire timeout".into(),
    }
}

fn unexpected(name: &str) -> BackendError {
    BackendError::Unavailable(format!("the upstream answered {name} with another payload"))
}

#[async_trait]
impl Backend for UpstreamBackend {
    fn name(&self) -> &'static str {
        "kmip"
    }

    /// The mapping records; reads the upstream identifier of each live one into the index of
    /// mapped upstream objects (a tombstone has none: its upstream object was destroyed).
    async fn load_all(&self) -> Result<Vec<ObjectRecord>, BackendError> {
        let records = self.map.load_all().await?;
        let mut mapped = std::collections::HashMap::with_capacity(records.len());
        for record in &records {
            match self.target(&record.uid).await {
                Ok(mapping) => {
                    mapped.insert(mapping.upstream, record.uid.to_string());
                }
                Err(BackendError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.mapped.reset(mapped);
        Ok(records)
    }

    async fn generate(&self, record: ObjectRecord, spec: KeySpec) -> Result<(), BackendError> {
        let uid = record.uid.clone();
        let created = match self.call("Create", &uid, wire::create(&spec)?).await? {
            ResponsePayload::Create(r) => r.unique_identifier,
            _ => return Err(unexpected("Create")),
        };
        self.activate(&created).await?;
        self.record(record, &created, spec.extractable && !spec.sensitive, None)
            .await
    }

    async fn import(
        &self,
        record: ObjectRecord,
        material: Zeroizing<Vec<u8>>,
        spec: Option<KeySpec>,
    ) -> Result<(), BackendError> {
        let uid = record.uid.clone();
        let (facts, key_extractable) = keys::key_facts(&record)?;
        let (payload, group) = wire::register(&uid, record.kind, &material, spec.as_ref(), facts)?;
        let registered = match self.call("Register", &uid, payload).await? {
            ResponsePayload::Register(r) => r.unique_identifier,
            _ => return Err(unexpected("Register")),
        };
        // Keys are used upstream (encrypt, sign, decrypt): usable there from the start, the
        // gateway keeping the real state.
        if matches!(
            record.kind,
            ObjectKind::SymmetricKey | ObjectKind::PrivateKey | ObjectKind::PublicKey
        ) {
            self.activate(&registered).await?;
        }
        let extractable = match (&spec, record.kind) {
            (Some(s), _) => s.extractable && !s.sensitive,
            (None, ObjectKind::PrivateKey) => key_extractable,
            (None, _) => true,
        };
        self.record(record, &registered, extractable, group.as_ref())
            .await
    }

    async fn read_material(&self, uid: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let mapping = self.target(uid).await?;
        if !mapping.extractable {
            return Err(BackendError::NotExtractable(uid.to_owned()));
        }
        self.get_material(uid, mapping).await
    }

    /// Wrapped where both keys live: one Get of `wrapped` upstream with a Key Wrapping
    /// Specification naming `wrapping`'s upstream twin, in the format the gateway stores keys in.
    /// Neither key crosses the proxy in the clear; whether a key that may not be read may be
    /// wrapped is the upstream's decision, as a token's is on PKCS#11.
    async fn wrap_key(
        &self,
        wrapping: &str,
        wrapped: &str,
        pad: bool,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let key = self.target(wrapping).await?;
        let mapped = self.map.export(wrapped).await?;
        let link = mapped
            .material
            .ok_or_else(|| BackendError::NotFound(wrapped.to_owned()))?;
        let target = link_of(wrapped, &link)?;
        let format = wire::wrap_format(wrapped, mapped.record.kind)?;
        let get = wire::wrapped_get(&target.upstream, format, &key.upstream, pad);
        match self.call("Get", wrapped, get).await? {
            ResponsePayload::Get(r) => wire::wrapped_bytes(wrapped, r.object),
            _ => Err(unexpected("Get")),
        }
    }

    /// The object as `migrate` and `upstream copy` take it: the gateway's record from the map,
    /// the material from the upstream (Get), the key facts from the stored attributes. A
    /// non-extractable object stays upstream ([`BackendError::NotExtractable`]); a tombstone
    /// has no material.
    async fn export(&self, uid: &str) -> Result<ExportedObject, BackendError> {
        let mapped = self.map.export(uid).await?;
        let Some(link) = mapped.material else {
            return Ok(ExportedObject {
                record: mapped.record,
                material: None,
                spec: None,
            });
        };
        let mapping = link_of(uid, &link)?;
        if !mapping.extractable {
            return Err(BackendError::NotExtractable(uid.to_owned()));
        }
        let material = self.get_material(uid, mapping).await?;
        let spec = if mapped.record.kind == ObjectKind::SymmetricKey {
            let stored = StoredObject::from_record(
                ObjectRecord {
                    uid: mapped.record.uid.clone(),
                    kind: mapped.record.kind,
                    meta: mapped.record.meta.clone(),
                    version: mapped.record.version,
                },
                |owner| Arc::from(owner),
            )
            .map_err(|e| BackendError::Corrupt(format!("metadata of {uid}: {e}")))?;
            symmetric_key_spec(&stored.attributes().collect::<Vec<_>>(), material.len())
        } else {
            None
        };
        Ok(ExportedObject {
            record: mapped.record,
            material: Some(material),
            spec,
        })
    }

    async fn update_meta(
        &self,
        uid: &str,
        meta: bytes::Bytes,
        expected_version: u64,
    ) -> Result<(), BackendError> {
        self.map.update_meta(uid, meta, expected_version).await
    }

    async fn destroy(
        &self,
        uid: &str,
        tombstone: Option<bytes::Bytes>,
        expected_version: u64,
    ) -> Result<(), BackendError> {
        let target = self.target(uid).await?.upstream;
        let revoke = RequestPayload::Revoke(RevokeRequest {
            unique_identifier: Some(target.clone()),
            revocation_reason: RevocationReason {
                code: RevocationReasonCode::CessationOfOperation,
                message: None,
            },
            compromise_occurrence_date: None,
        });
        // A key that is not Active upstream (never activated, revoked before) refuses Revoke,
        // and so may a server that does not do Revoke; only Destroy's answer decides.
        match self.call("Revoke", uid, revoke).await {
            Ok(_)
            | Err(
                BackendError::Call { .. }
                | BackendError::NotFound(_)
                | BackendError::Unsupported(_),
            ) => {}
            Err(e) => return Err(e),
        }
        let destroy = RequestPayload::Destroy(UidRequest {
            unique_identifier: Some(target.clone()),
        });
        match self.call("Destroy", uid, destroy).await {
            Ok(_) | Err(BackendError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.map.destroy(uid, tombstone, expected_version).await?;
        self.mapped.remove(&target, uid);
        Ok(())
    }

    async fn encrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.cipher("Encrypt", uid, req).await
    }

    async fn generate_key_pair(
        &self,
        private: ObjectRecord,
        public: ObjectRecord,
        spec: KeyPairSpec,
    ) -> Result<(), BackendError> {
        self.create_pair(private, public, spec).await
    }

    async fn sign(
        &self,
        uid: &str,
        scheme: SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        self.sign_upstream(uid, scheme, data).await
    }

    async fn rsa_decrypt(
        &self,
        uid: &str,
        padding: RsaPadding,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.rsa_decrypt_upstream(uid, padding, data).await
    }

    async fn decrypt(&self, uid: &str, req: CipherRequest) -> Result<CipherOutput, BackendError> {
        self.cipher("Decrypt", uid, req).await
    }

    async fn mac(
        &self,
        uid: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let target = self.target(uid).await?.upstream;
        let mac = RequestPayload::Mac(MacRequest {
            unique_identifier: Some(target),
            cryptographic_parameters: Some(CryptographicParameters {
                cryptographic_algorithm: Some(wire::mac_algorithm(algorithm)),
                ..CryptographicParameters::default()
            }),
            data: Some(SecretBytes::from_slice(data)),
            ..MacRequest::default()
        });
        match self.call("MAC", uid, mac).await? {
            ResponsePayload::Mac(r) => Ok(r.mac_data.map(|m| m.to_vec()).unwrap_or_default()),
            _ => Err(unexpected("MAC")),
        }
    }

    /// Ready while the mapping vault answers and at least one upstream gives a connection; the
    /// error names every upstream and why it failed.
    async fn health(&self) -> Result<(), BackendError> {
        self.map.health().await?;
        let mut failures = Vec::new();
        for upstream in &self.upstreams {
            match upstream.pool.get().await {
                Ok(_) => return Ok(()),
                Err(e) => failures.push(format!("{}: {}", upstream.addr, describe(&e))),
            }
        }
        Err(BackendError::Unavailable(format!(
            "no KMIP upstream reachable: {}",
            failures.join("; ")
        )))
    }

    /// Each upstream, in priority order: `up`, or `down` and why.
    async fn readiness_report(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.upstreams.len());
        for upstream in &self.upstreams {
            lines.push(match upstream.pool.get().await {
                Ok(_) => format!("upstream {}: up", upstream.addr),
                Err(e) => format!("upstream {}: down ({})", upstream.addr, describe(&e)),
            });
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_records_keep_the_identifier_the_flag_and_a_split_group() {
        let group = [9u8; 16];
        let m = link_of("g", &mapping_material("up-1", true, Some(&group))).unwrap();
        assert_eq!(
            (m.upstream.as_str(), m.extractable, m.group),
            ("up-1", true, Some(group))
        );
        let m = link_of("g", &mapping_material("up-2", false, None)).unwrap();
        assert_eq!(
            (m.upstream.as_str(), m.extractable, m.group),
            ("up-2", false, None)
        );
        // A record written before split groups: flags, then the identifier.
        let m = link_of("g", b"\x01legacy-7").unwrap();
        assert_eq!(
            (m.upstream.as_str(), m.extractable, m.group),
            ("legacy-7", true, None)
        );
        for corrupt in [&b""[..], &[SPLIT_GROUP, 1, 2][..]] {
            assert!(matches!(
                link_of("g", corrupt),
                Err(BackendError::Corrupt(_))
            ));
        }
    }
}
