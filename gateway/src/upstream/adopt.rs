//! The proxy's side of adoption (`kmip-gateway upstream adopt`): finding an upstream object
//! (by identifier, or Locate by Name: exactly one), reading its attributes, and recording the
//! mapping without sending anything upstream. Which upstream objects are mapped is kept in
//! memory ([`MappedIndex`]), rebuilt from the mapping vault at start, so that one upstream
//! object is never mapped twice.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use kmip_backends::{BackendError, ObjectRecord};
use kmip_wire::model::{
    Attribute, GetAttributesRequest, GetRequest, GetResponse, LocateRequest, ManagedObject, Name,
    ObjectType, RequestPayload, ResponsePayload,
};
use kmip_wire::spec::tags;

use super::{unexpected, UpstreamBackend};
use crate::kmip::ops::{AdoptTarget, Adoption, UpstreamObject};

/// Identifiers a Locate by Name asks the upstream for: two tell "exactly one" from "several".
const NAME_MATCHES_ASKED: i32 = 2;

/// Upstream identifier → the gateway identifier mapped to it, for every live mapping.
#[derive(Default)]
pub(super) struct MappedIndex(Mutex<HashMap<String, String>>);

impl MappedIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding it left a plain map behind: still consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the whole index.
    pub(super) fn reset(&self, pairs: HashMap<String, String>) {
        *self.lock() = pairs;
    }

    /// Records a mapping that is durable.
    pub(super) fn insert(&self, upstream_uid: &str, gateway_uid: &str) {
        self.lock()
            .insert(upstream_uid.to_owned(), gateway_uid.to_owned());
    }

    /// Takes `upstream_uid` for `gateway_uid` unless it is mapped (or being mapped) already;
    /// returns the gateway identifier holding it otherwise.
    pub(super) fn reserve(&self, upstream_uid: &str, gateway_uid: &str) -> Result<(), String> {
        let mut map = self.lock();
        if let Some(held) = map.get(upstream_uid) {
            return Err(held.clone());
        }
        map.insert(upstream_uid.to_owned(), gateway_uid.to_owned());
        Ok(())
    }

    /// Forgets the mapping of `upstream_uid` if it is `gateway_uid`'s.
    pub(super) fn remove(&self, upstream_uid: &str, gateway_uid: &str) {
        let mut map = self.lock();
        if map.get(upstream_uid).is_some_and(|g| g == gateway_uid) {
            map.remove(upstream_uid);
        }
    }

    pub(super) fn get(&self, upstream_uid: &str) -> Option<String> {
        self.lock().get(upstream_uid).cloned()
    }

    /// Up to `limit` mappings (gateway, upstream identifier) in gateway-identifier order,
    /// those after `after` only: the refresher's walk over them, pass after pass.
    pub(super) fn after(&self, after: Option<&str>, limit: usize) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .lock()
            .iter()
            .filter(|(_, gateway)| after.is_none_or(|a| gateway.as_str() > a))
            .map(|(upstream, gateway)| (gateway.clone(), upstream.clone()))
            .collect();
        pairs.sort_unstable();
        pairs.truncate(limit);
        pairs
    }
}

impl UpstreamBackend {
    /// Every attribute the upstream reports for `upstream_uid`.
    async fn attributes_of(&self, upstream_uid: &str) -> Result<Vec<Attribute>, BackendError> {
        let ask = RequestPayload::GetAttributes(GetAttributesRequest {
            unique_identifier: Some(upstream_uid.to_owned()),
            names: Vec::new(),
        });
        match self.call("Get Attributes", upstream_uid, ask).await {
            Ok(ResponsePayload::GetAttributes(r)) => Ok(r.attributes),
            Ok(_) => Err(unexpected("Get Attributes")),
            Err(BackendError::NotFound(_)) => Err(BackendError::NotFound(format!(
                "{upstream_uid} on the upstream"
            ))),
            Err(e) => Err(e),
        }
    }

    /// The value of the upstream Certificate `upstream_uid` (public: read whatever its flags).
    async fn certificate_of(&self, upstream_uid: &str) -> Result<Bytes, BackendError> {
        let get = RequestPayload::Get(GetRequest {
            unique_identifier: Some(upstream_uid.to_owned()),
            ..GetRequest::default()
        });
        match self.call("Get", upstream_uid, get).await? {
            ResponsePayload::Get(GetResponse {
                object: ManagedObject::Certificate { value, .. },
                ..
            }) => Ok(value),
            _ => Err(unexpected("Get")),
        }
    }

    /// The one upstream object named `name`.
    async fn named(&self, name: &str) -> Result<String, BackendError> {
        let locate = RequestPayload::Locate(LocateRequest {
            maximum_items: Some(NAME_MATCHES_ASKED),
            attributes: vec![Attribute::name(&Name::new(name))],
            ..LocateRequest::default()
        });
        let mut found = match self.call("Locate", name, locate).await? {
            ResponsePayload::Locate(r) => r.unique_identifiers,
            _ => return Err(unexpected("Locate")),
        };
        match found.len() {
            0 => Err(BackendError::NotFound(format!(
                "named {name:?} on the upstream (as far as the gateway's identity there sees)"
            ))),
            1 => Ok(found.remove(0)),
            _ => Err(BackendError::InvalidInput(format!(
                "more than one upstream object is named {name:?} ({}, …): adopt one by its \
                 identifier (--uid)",
                found.join(", ")
            ))),
        }
    }
}

#[async_trait]
impl Adoption for UpstreamBackend {
    async fn find(&self, target: &AdoptTarget) -> Result<UpstreamObject, BackendError> {
        let upstream_uid = match target {
            AdoptTarget::Uid(uid) => uid.clone(),
            AdoptTarget::Name(name) => self.named(name).await?,
        };
        let attributes = self.attributes_of(&upstream_uid).await?;
        let is_certificate = attributes
            .iter()
            .find(|a| a.is(tags::OBJECT_TYPE))
            .and_then(|a| a.as_enum::<ObjectType>())
            == Some(ObjectType::Certificate);
        let certificate = if is_certificate {
            Some(self.certificate_of(&upstream_uid).await?)
        } else {
            None
        };
        Ok(UpstreamObject {
            upstream_uid,
            attributes,
            certificate,
        })
    }

    fn mapped_to(&self, upstream_uid: &str) -> Option<String> {
        self.mapped.get(upstream_uid)
    }

    async fn map(
        &self,
        record: ObjectRecord,
        upstream_uid: &str,
        extractable: bool,
    ) -> Result<(), BackendError> {
        let gateway_uid = record.uid.clone();
        self.mapped
            .reserve(upstream_uid, &gateway_uid)
            .map_err(|held| {
                BackendError::AlreadyExists(format!(
                    "{upstream_uid} (upstream; mapped to the gateway's {held})"
                ))
            })?;
        let written = self
            .write_record(record, upstream_uid, extractable, None)
            .await;
        if written.is_err() {
            self.mapped.remove(upstream_uid, &gateway_uid);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_object_is_mapped_once() {
        let index = MappedIndex::default();
        index.reserve("42", "42").unwrap();
        assert_eq!(index.reserve("42", "other"), Err("42".to_owned()));
        assert_eq!(index.get("42").as_deref(), Some("42"));
        // Only its own mapping is forgotten.
        index.remove("42", "other");
        assert_eq!(index.get("42").as_deref(), Some("42"));
        index.remove("42", "42");
        assert_eq!(index.get("42"), None);
        index.insert("7", "g-7");
        index.insert("8", "g-8");
        index.insert("9", "g-9");
        assert_eq!(
            index.after(None, 2),
            [("g-7".into(), "7".into()), ("g-8".into(), "8".into())]
        );
        assert_eq!(index.after(Some("g-8"), 10), [("g-9".into(), "9".into())]);
        assert!(index.after(Some("g-9"), 10).is_empty());
        index.reset(HashMap::new());
        assert_eq!(index.get("7"), None);
    }
}
