//! Key pairs through the proxy: Create Key Pair upstream (both halves activated, one mapping
//! record each, both or neither), Sign and RSA Decrypt forwarded with the private key's
//! upstream identifier, and the facts of a registered key its upstream Key Block needs.

use std::sync::Arc;

use kmip_backends::asym::{KeyPairSpec, RsaPadding, SignatureScheme};
use kmip_backends::{BackendError, ObjectKind, ObjectRecord};
use kmip_wire::model::{
    Attribute, KeyFormatType, KmipEnum, RequestPayload, ResponsePayload, RevocationReason,
    RevocationReasonCode, RevokeRequest, UidRequest,
};
use kmip_wire::spec::tags;
use zeroize::Zeroizing;

use super::wire::{self, KeyFacts};
use super::{unexpected, UpstreamBackend};
use crate::kmip::store::StoredObject;

/// What the gateway recorded of a key about to be registered upstream: its Key Block's
/// algorithm, length and format, and whether a private key may be read back.
pub(super) fn key_facts(record: &ObjectRecord) -> Result<(KeyFacts, bool), BackendError> {
    if !matches!(record.kind, ObjectKind::PrivateKey | ObjectKind::PublicKey) {
        return Ok((KeyFacts::default(), true));
    }
    let stored = StoredObject::from_record(
        ObjectRecord {
            uid: record.uid.clone(),
            kind: record.kind,
            meta: record.meta.clone(),
            version: record.version,
        },
        |owner| Arc::from(owner),
    )
    .map_err(|e| BackendError::Corrupt(format!("metadata of {}: {e}", record.uid)))?;
    let flag = |tag| stored.first(tag).and_then(|a: Attribute| a.as_bool());
    let facts = KeyFacts {
        algorithm: stored
            .first(tags::CRYPTOGRAPHIC_ALGORITHM)
            .and_then(|a| a.as_enum()),
        length: stored
            .first(tags::CRYPTOGRAPHIC_LENGTH)
            .and_then(|a| a.as_int()),
        format: stored
            .enum_of(tags::KEY_FORMAT_TYPE)
            .map(KeyFormatType::from_u32),
    };
    let extractable =
        !flag(tags::SENSITIVE).unwrap_or(false) && flag(tags::EXTRACTABLE).unwrap_or(true);
    Ok((facts, extractable))
}

impl UpstreamBackend {
    /// Create Key Pair upstream, both halves activated (the gateway keeps the real state), then
    /// the two mapping records. A failure after the upstream made the pair takes back what was
    /// written: the first record, and the upstream pair (revoked and destroyed there, best
    /// effort: what remains is an unreferenced upstream object, as after a crash).
    pub(super) async fn create_pair(
        &self,
        private: ObjectRecord,
        public: ObjectRecord,
        spec: KeyPairSpec,
    ) -> Result<(), BackendError> {
        if private.kind != ObjectKind::PrivateKey || public.kind != ObjectKind::PublicKey {
            return Err(BackendError::InvalidInput(
                "a key pair is one Private Key and one Public Key object".into(),
            ));
        }
        // Sensitive is in the record only: a Sensitive private key never leaves the upstream
        // either (`upstream copy` leaves it there), as a Sensitive symmetric key.
        let (_, extractable) = key_facts(&private)?;
        let extractable = extractable && spec.private_extractable;
        let uid = private.uid.clone();
        let (up_private, up_public) = match self
            .call("Create Key Pair", &uid, wire::create_key_pair(&spec)?)
            .await?
        {
            ResponsePayload::CreateKeyPair(r) => (
                r.private_key_unique_identifier,
                r.public_key_unique_identifier,
            ),
            _ => return Err(unexpected("Create Key Pair")),
        };
        let written = self
            .record_pair(private, public, extractable, &up_private, &up_public)
            .await;
        if written.is_err() {
            self.discard(&[&up_private, &up_public]).await;
        }
        written
    }

    async fn record_pair(
        &self,
        private: ObjectRecord,
        public: ObjectRecord,
        private_extractable: bool,
        up_private: &str,
        up_public: &str,
    ) -> Result<(), BackendError> {
        self.activate(up_private).await?;
        self.activate(up_public).await?;
        let private_uid = private.uid.clone();
        self.record(private, up_private, private_extractable, None)
            .await?;
        if let Err(e) = self.record(public, up_public, true, None).await {
            self.mapped.remove(up_private, &private_uid);
            if let Err(undo) = self.map.destroy(&private_uid, None, 1).await {
                tracing::error!(uid = %private_uid, error = %undo,
                    "the mapping of a private key whose public key could not be recorded was not removed");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Revokes and destroys upstream objects the gateway will not map; failures are logged.
    async fn discard(&self, upstream_uids: &[&str]) {
        for id in upstream_uids {
            let revoke = RequestPayload::Revoke(RevokeRequest {
                unique_identifier: Some((*id).to_owned()),
                revocation_reason: RevocationReason {
                    code: RevocationReasonCode::CessationOfOperation,
                    message: None,
                },
                compromise_occurrence_date: None,
            });
            // Not Active (the activation failed): only Destroy's answer counts.
            let _ = self.call("Revoke", id, revoke).await;
            let destroy = RequestPayload::Destroy(UidRequest {
                unique_identifier: Some((*id).to_owned()),
            });
            if let Err(e) = self.call("Destroy", id, destroy).await {
                tracing::warn!(upstream_uid = %id, error = %e,
                    "an upstream object made for a failed Create Key Pair stays upstream, unmapped");
            }
        }
    }

    /// Sign with the private key `uid`, upstream.
    pub(super) async fn sign_upstream(
        &self,
        uid: &str,
        scheme: SignatureScheme,
        data: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let target = self.target(uid).await?.upstream;
        let sign = RequestPayload::Sign(wire::sign(&target, scheme, data));
        match self.call("Sign", uid, sign).await? {
            ResponsePayload::Sign(r) => r
                .signature_data
                .map(|s| s.to_vec())
                .ok_or_else(|| unexpected("Sign")),
            _ => Err(unexpected("Sign")),
        }
    }

    /// RSA Decrypt with the private key `uid`, upstream.
    pub(super) async fn rsa_decrypt_upstream(
        &self,
        uid: &str,
        padding: RsaPadding,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let target = self.target(uid).await?.upstream;
        let decrypt = RequestPayload::Decrypt(wire::rsa_decrypt(&target, &padding, data));
        match self.call("Decrypt", uid, decrypt).await? {
            ResponsePayload::Decrypt(r) => Ok(Zeroizing::new(
                r.data.map(|d| d.as_slice().to_vec()).unwrap_or_default(),
            )),
            _ => Err(unexpected("Decrypt")),
        }
    }
}
