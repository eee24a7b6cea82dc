//! Adoption (issue 18): an object that a KMIP proxy's upstream held before the gateway fronted
//! it becomes a gateway object owned by one user, by the operator's explicit mapping
//! (`kmip-gateway upstream adopt`, the admin listener's `POST /upstream/adopt`). The object is
//! made through the store like a Register (owner quota, Name uniqueness among what the owner
//! sees, indexes, the Locate cache), except that nothing is sent upstream: the backend only
//! records the mapping.
//!
//! Its gateway identifier **is the upstream identifier**: clients that stored it before keep
//! using it. An identifier the gateway already has (a live object or a tombstone) is refused.

use super::unique_names::name_values;
use super::{OpContext, OpError, Ops};
use crate::kmip::store::{ObjectDraft, StoredObject};
use async_trait::async_trait;
use bytes::Bytes;
use kmip_backends::{BackendError, ObjectRecord};
use kmip_wire::model::{
    Attribute, CertificateType, CryptographicAlgorithm, KeyFormatType, KmipEnum, Link, ObjectType,
    ProtocolVersion, State,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Value};
use std::sync::Arc;

/// The version adoption runs its checks in (it decides nothing for them).
const ADOPT_VERSION: ProtocolVersion = ProtocolVersion { major: 2, minor: 1 };

/// Attributes of the upstream object taken as a Register's client would supply them (checked
/// alike: Names unique among what the owner sees).
const SUPPLIED: &[Tag] = &[
    tags::CRYPTOGRAPHIC_ALGORITHM,
    tags::CRYPTOGRAPHIC_LENGTH,
    tags::CRYPTOGRAPHIC_USAGE_MASK,
    tags::CRYPTOGRAPHIC_PARAMETERS,
    tags::NAME,
    tags::OBJECT_GROUP,
    tags::ACTIVATION_DATE,
    tags::DEACTIVATION_DATE,
    tags::PROCESS_START_DATE,
    tags::PROTECT_STOP_DATE,
    tags::CONTACT_INFORMATION,
    tags::SENSITIVE,
    tags::EXTRACTABLE,
    tags::FRESH,
];

/// Attributes only a server sets that the upstream's values are kept for: the object's history
/// is the upstream's, not the moment of adoption.
const KEPT_FROM_UPSTREAM: &[Tag] = &[
    tags::STATE,
    tags::INITIAL_DATE,
    tags::ORIGINAL_CREATION_DATE,
    tags::COMPROMISE_DATE,
    tags::COMPROMISE_OCCURRENCE_DATE,
    tags::REVOCATION_REASON,
    tags::ALWAYS_SENSITIVE,
    tags::NEVER_EXTRACTABLE,
];

/// Which upstream object the operator names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdoptTarget {
    /// The upstream's Unique Identifier.
    Uid(String),
    /// A Name exactly one upstream object carries.
    Name(String),
}

/// An upstream object as found: its identifier and every attribute the upstream reports.
#[derive(Debug, Clone)]
pub struct UpstreamObject {
    pub upstream_uid: String,
    pub attributes: Vec<Attribute>,
    /// A Certificate's DER, read upstream: the attributes the gateway derives from it (Subject,
    /// Issuer, …) are its own, as for a registered certificate.
    pub certificate: Option<Bytes>,
}

/// What a backend in front of another key manager offers for adoption (the KMIP proxy's,
/// `crate::upstream`). The gateway's operation layer decides everything else.
#[async_trait]
pub trait Adoption: Send + Sync {
    /// The upstream object `target` names, with its attributes. A Name that no upstream object
    /// or more than one carries is an error naming the count.
    async fn find(&self, target: &AdoptTarget) -> Result<UpstreamObject, BackendError>;

    /// The gateway identifier already mapped to `upstream_uid`, if any.
    fn mapped_to(&self, upstream_uid: &str) -> Option<String>;

    /// Records `record` as the gateway's object for `upstream_uid` (its material may be read
    /// back when `extractable`), refusing an upstream object already mapped. Nothing is sent
    /// upstream.
    async fn map(
        &self,
        record: ObjectRecord,
        upstream_uid: &str,
        extractable: bool,
    ) -> Result<(), BackendError>;
}

/// The object types adoption makes: those the proxy forwards the operations of.
fn adoptable(object_type: ObjectType) -> bool {
    matches!(
        object_type,
        ObjectType::SymmetricKey
            | ObjectType::SecretData
            | ObjectType::OpaqueObject
            | ObjectType::PrivateKey
            | ObjectType::PublicKey
            | ObjectType::Certificate
    )
}

/// The Key Format Type Get serves an adopted Private or Public Key in by default: the
/// upstream's when it reports a DER one, else what the gateway gives a pair it makes (PKCS#1
/// for RSA, PKCS#8 and X.509 for the others). The material itself is read upstream and kept
/// as PKCS#8 / SubjectPublicKeyInfo whatever format the upstream answers in.
fn adopted_key_format(object_type: ObjectType, attributes: &[Attribute]) -> Option<KeyFormatType> {
    let reported = attributes
        .iter()
        .find(|a| a.is(tags::KEY_FORMAT_TYPE))
        .and_then(|a| a.as_enum::<KeyFormatType>())
        .filter(|f| super::asym::is_der_format(*f));
    let rsa = attributes
        .iter()
        .find(|a| a.is(tags::CRYPTOGRAPHIC_ALGORITHM))
        .and_then(|a| a.as_enum::<CryptographicAlgorithm>())
        == Some(CryptographicAlgorithm::Rsa);
    match object_type {
        ObjectType::PrivateKey | ObjectType::PublicKey if reported.is_some() => reported,
        ObjectType::PrivateKey | ObjectType::PublicKey if rsa => Some(KeyFormatType::Pkcs1),
        ObjectType::PrivateKey => Some(KeyFormatType::Pkcs8),
        ObjectType::PublicKey => Some(KeyFormatType::X509),
        _ => None,
    }
}

/// Splits the upstream's attributes into those supplied as a Register's client would and
/// those kept as the server's; the rest (identifier, digest, upstream-only attributes) is
/// dropped. Refuses an object that adoption cannot make usable.
fn adopted_attributes(
    upstream_uid: &str,
    attributes: &[Attribute],
) -> Result<(ObjectType, Vec<Attribute>, Vec<Attribute>), OpError> {
    let object_type = attributes
        .iter()
        .find(|a| a.is(tags::OBJECT_TYPE))
        .and_then(|a| a.as_enum::<ObjectType>())
        .ok_or_else(|| {
            OpError::MissingData(format!(
                "Object Type: the upstream reported none for {upstream_uid}"
            ))
        })?;
    if !adoptable(object_type) {
        return Err(OpError::FeatureNotSupported(format!(
            "{upstream_uid} is a {object_type:?}: the proxy adopts Symmetric Keys, Secret Data, \
             Opaque Objects, Private and Public Keys and Certificates"
        )));
    }
    let state = attributes
        .iter()
        .find(|a| a.is(tags::STATE))
        .and_then(|a| a.as_enum::<State>())
        .unwrap_or(State::PreActive);
    // A Public Key or a Certificate is only read upstream (the gateway verifies and encrypts
    // with public keys itself): its state upstream does not matter, the gateway's will.
    let read_only = matches!(object_type, ObjectType::PublicKey | ObjectType::Certificate);
    match state {
        State::Active | State::Deactivated | State::Compromised => {}
        State::PreActive if read_only => {}
        State::PreActive => {
            return Err(OpError::WrongState(
                "Pre-Active upstream: activate it on the key manager first (the proxy keeps \
                 the lifecycle state and does not forward Activate)",
            ))
        }
        _ => return Err(OpError::Destroyed),
    }
    let pick = |list: &[Tag]| -> Vec<Attribute> {
        attributes
            .iter()
            .filter(|a| a.tag().is_some_and(|t| list.contains(&t)))
            .map(|a| Attribute {
                index: None,
                ..a.clone()
            })
            .collect()
    };
    let mut supplied = pick(SUPPLIED);
    if !supplied.iter().any(|a| a.is(tags::FRESH)) {
        // Used upstream already, for all the gateway knows.
        supplied.push(Attribute::boolean(tags::FRESH, false));
    }
    Ok((object_type, supplied, pick(KEPT_FROM_UPSTREAM)))
}

/// Whether the upstream lets its material out: neither Sensitive nor non-Extractable.
fn extractable(obj: &ObjectDraft) -> bool {
    let flag = |tag: Tag| obj.first(tag).and_then(Attribute::as_bool);
    !flag(tags::SENSITIVE).unwrap_or(false) && flag(tags::EXTRACTABLE).unwrap_or(true)
}

impl Ops {
    /// Gives this operation layer the backend's adoption (a KMIP proxy's).
    pub fn with_adoption(mut self, adoption: Arc<dyn Adoption>) -> Ops {
        self.adoption = Some(adoption);
        self
    }

    /// Adopts the upstream object `target` names as an object of `owner` (a configured user:
    /// the caller checks). Its gateway identifier is the upstream's.
    pub(crate) async fn operator_adopt(
        &self,
        owner: &str,
        now: i64,
        target: &AdoptTarget,
    ) -> Result<Arc<StoredObject>, OpError> {
        let adoption = self.adoption.as_ref().ok_or_else(|| {
            OpError::FeatureNotSupported(format!(
                "adoption maps objects of a KMIP upstream: it needs [backend] kind = \"kmip\", \
                 and this gateway's backend is {}",
                self.store.backend().name()
            ))
        })?;
        let found = adoption.find(target).await?;
        let upstream_uid = found.upstream_uid;
        if let Some(mapped) = adoption.mapped_to(&upstream_uid) {
            return Err(OpError::InvalidField(format!(
                "the upstream object {upstream_uid} is mapped already, to the gateway's object \
                 {mapped}"
            )));
        }
        if self.store.get(&upstream_uid).is_some() {
            return Err(OpError::InvalidField(format!(
                "the gateway has an object {upstream_uid} already (the adopted object would \
                 keep the upstream identifier)"
            )));
        }
        let (object_type, supplied, kept) = adopted_attributes(&upstream_uid, &found.attributes)?;
        let ctx = OpContext::new(owner, ADOPT_VERSION, now);
        let _names = self.lock_names(name_values(&supplied)).await?;
        let attrs = self.client_attributes(&ctx, supplied, true)?;
        let mut obj = self.new_object(&ctx, object_type, attrs)?;
        obj.uid = upstream_uid.clone();
        obj.set(
            tags::UNIQUE_IDENTIFIER,
            Value::TextString(upstream_uid.clone()),
        );
        for a in kept {
            if let Some(tag) = a.tag() {
                obj.set(tag, a.value);
            }
        }
        let extractable = extractable(&obj);
        if obj.first(tags::ALWAYS_SENSITIVE).is_none() {
            obj.set(tags::ALWAYS_SENSITIVE, Value::Boolean(!extractable));
        }
        if obj.first(tags::NEVER_EXTRACTABLE).is_none() {
            obj.set(tags::NEVER_EXTRACTABLE, Value::Boolean(!extractable));
        }
        self.adopt_kind_attributes(
            owner,
            &mut obj,
            object_type,
            &found.attributes,
            found.certificate,
        )?;
        let adopted = self
            .store
            .adopt(obj, self.max_objects_per_user, |record| async move {
                adoption.map(record, &upstream_uid, extractable).await
            })
            .await?;
        Ok(adopted)
    }
}

impl Ops {
    /// What an adopted key or certificate needs beyond the upstream's attributes: the Key
    /// Format Type Get serves it in, a certificate's type and derived attributes, and the
    /// upstream's Links where they name an object of the same owner (or one not mapped yet,
    /// which keeps the upstream identifier when it is adopted: a key pair's two halves adopted
    /// one after the other are linked both ways).
    fn adopt_kind_attributes(
        &self,
        owner: &str,
        obj: &mut ObjectDraft,
        object_type: ObjectType,
        attributes: &[Attribute],
        certificate: Option<Bytes>,
    ) -> Result<(), OpError> {
        if let Some(format) = adopted_key_format(object_type, attributes) {
            obj.set(tags::KEY_FORMAT_TYPE, Value::Enumeration(format.to_u32()));
        }
        if object_type == ObjectType::Certificate {
            let certificate_type = attributes
                .iter()
                .find(|a| a.is(tags::CERTIFICATE_TYPE))
                .and_then(|a| a.as_enum::<CertificateType>())
                .unwrap_or(CertificateType::X509);
            obj.set(
                tags::CERTIFICATE_TYPE,
                Value::Enumeration(certificate_type.to_u32()),
            );
            if let (CertificateType::X509, Some(der)) = (certificate_type, certificate) {
                obj.attributes
                    .extend(super::certificate::derived_attributes(&der)?);
            }
        }
        let links = attributes
            .iter()
            .filter(|a| a.is(tags::LINK))
            .filter_map(Attribute::as_link)
            .filter_map(|link| self.adopted_link(owner, link))
            .collect::<Vec<_>>();
        for link in links {
            obj.attributes.push(Attribute::link(&link));
        }
        Ok(())
    }

    /// An upstream Link as the adopted object keeps it: to the gateway object mapped to its
    /// target when `owner` owns that one, to the upstream identifier when nothing is mapped
    /// to it yet (its adoption keeps that identifier); dropped when it would name another
    /// user's object.
    fn adopted_link(&self, owner: &str, link: Link) -> Option<Link> {
        let target = &link.linked_object_identifier;
        let gateway_uid = match self.adoption.as_ref()?.mapped_to(target) {
            Some(mapped) => mapped,
            None => target.clone(),
        };
        match self.store.get(&gateway_uid) {
            Some(o) if o.owner.as_ref() != owner => None,
            Some(_) => Some(Link {
                linked_object_identifier: gateway_uid,
                ..link
            }),
            None if gateway_uid == *target => Some(link),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_wire::model::Name;

    fn upstream(state: State, object_type: ObjectType) -> Vec<Attribute> {
        vec![
            Attribute::text(tags::UNIQUE_IDENTIFIER, "42"),
            Attribute::enumeration(tags::OBJECT_TYPE, object_type),
            Attribute::enumeration(tags::STATE, state),
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            Attribute::name(&Name::new("disk-1")),
            Attribute::datetime(tags::INITIAL_DATE, 1_000),
            Attribute::text(tags::OBJECT_GROUP, "g"),
        ]
    }

    #[test]
    fn the_upstreams_attributes_are_split_into_supplied_and_kept() {
        let (t, supplied, kept) =
            adopted_attributes("42", &upstream(State::Active, ObjectType::SymmetricKey)).unwrap();
        assert_eq!(t, ObjectType::SymmetricKey);
        let tags_of = |v: &[Attribute]| v.iter().filter_map(Attribute::tag).collect::<Vec<_>>();
        assert_eq!(
            tags_of(&supplied),
            vec![
                tags::CRYPTOGRAPHIC_ALGORITHM,
                tags::CRYPTOGRAPHIC_LENGTH,
                tags::NAME,
                tags::OBJECT_GROUP,
                tags::FRESH
            ]
        );
        assert_eq!(tags_of(&kept), vec![tags::STATE, tags::INITIAL_DATE]);
        assert!(!tags_of(&supplied).contains(&tags::UNIQUE_IDENTIFIER));
    }

    #[test]
    fn unusable_upstream_objects_are_refused() {
        for (state, ty) in [
            (State::PreActive, ObjectType::SymmetricKey),
            (State::PreActive, ObjectType::PrivateKey),
            (State::Destroyed, ObjectType::SymmetricKey),
            (State::Destroyed, ObjectType::Certificate),
            (State::Active, ObjectType::SplitKey),
            (State::Active, ObjectType::PgpKey),
        ] {
            assert!(
                adopted_attributes("42", &upstream(state, ty)).is_err(),
                "{state:?} {ty:?}"
            );
        }
        let mut no_type = upstream(State::Active, ObjectType::SymmetricKey);
        no_type.retain(|a| !a.is(tags::OBJECT_TYPE));
        assert!(matches!(
            adopted_attributes("42", &no_type),
            Err(OpError::MissingData(_))
        ));
        for (state, ty) in [
            (State::Deactivated, ObjectType::SecretData),
            (State::Compromised, ObjectType::OpaqueObject),
            (State::Active, ObjectType::PrivateKey),
            (State::Active, ObjectType::PublicKey),
            (State::Active, ObjectType::Certificate),
            (State::PreActive, ObjectType::Certificate),
            (State::PreActive, ObjectType::PublicKey),
        ] {
            assert!(adopted_attributes("42", &upstream(state, ty)).is_ok());
        }
    }

    #[test]
    fn adopted_keys_are_served_in_the_upstreams_der_format_or_the_gateways_default() {
        let with = |alg: CryptographicAlgorithm, format: Option<KeyFormatType>| {
            let mut v = vec![Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, alg)];
            v.extend(format.map(|f| Attribute::enumeration(tags::KEY_FORMAT_TYPE, f)));
            v
        };
        let rsa = with(CryptographicAlgorithm::Rsa, None);
        let ec = with(CryptographicAlgorithm::Ec, None);
        assert_eq!(
            adopted_key_format(ObjectType::PrivateKey, &rsa),
            Some(KeyFormatType::Pkcs1)
        );
        assert_eq!(
            adopted_key_format(ObjectType::PrivateKey, &ec),
            Some(KeyFormatType::Pkcs8)
        );
        assert_eq!(
            adopted_key_format(ObjectType::PublicKey, &ec),
            Some(KeyFormatType::X509)
        );
        let reported = with(CryptographicAlgorithm::Rsa, Some(KeyFormatType::Pkcs8));
        assert_eq!(
            adopted_key_format(ObjectType::PrivateKey, &reported),
            Some(KeyFormatType::Pkcs8)
        );
        // A format the gateway does not serve from DER is not taken.
        let raw = with(CryptographicAlgorithm::Ec, Some(KeyFormatType::Raw));
        assert_eq!(
            adopted_key_format(ObjectType::PublicKey, &raw),
            Some(KeyFormatType::X509)
        );
        assert_eq!(adopted_key_format(ObjectType::Certificate, &rsa), None);
    }
}
