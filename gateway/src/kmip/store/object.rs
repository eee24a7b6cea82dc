//! One managed object as the gateway holds it: its metadata blob (`meta.rs`), read in place,
//! and the draft a write edits.
//!
//! A million objects must fit in memory, so an object keeps its attributes only as the blob the
//! backend stores (the vault holds the same buffer, not a copy). Readers decode the attributes
//! they ask for; a write decodes them all into an [`ObjectDraft`], edits it, and encodes a new
//! object ([`ObjectDraft::finish`]), which fits the store's copy-on-write updates.

use super::meta::{self, Items, Parsed};
use super::StoreError;
use bytes::Bytes;
use kmip_backends::{ObjectKind, ObjectRecord};
use kmip_wire::model::{Attribute, AttributeName};
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use std::sync::Arc;

/// One managed object as the gateway knows it: immutable, replaced whole by every write.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub uid: Arc<str>,
    pub kind: ObjectKind,
    /// The user who created or registered it (one shared string per user, `Store::intern`).
    pub owner: Arc<str>,
    /// Its attributes, as the format-2 blob the backend stores.
    meta: Bytes,
    /// The backend's write counter of this version ([`ObjectRecord::version`]): 1 once created,
    /// one more per durable write.
    pub version: u64,
}

fn of_tag(tag: Tag) -> AttributeName {
    AttributeName::Tag(tag)
}

impl StoredObject {
    /// Every attribute, decoded, in stored order.
    pub fn attributes(&self) -> impl Iterator<Item = Attribute> + '_ {
        Items::new(&self.meta).filter_map(|i| i.decode(&self.meta, &self.uid))
    }

    /// The instances of the attribute `name`, decoded; other items are skipped by their header.
    pub fn find<'a>(&'a self, name: &'a AttributeName) -> impl Iterator<Item = Attribute> + 'a {
        Items::new(&self.meta)
            .filter(move |i| !i.cannot_be(name))
            .filter_map(|i| i.decode(&self.meta, &self.uid))
            .filter(move |a| &a.name == name)
    }

    pub fn first(&self, tag: Tag) -> Option<Attribute> {
        self.find(&of_tag(tag)).next()
    }

    pub fn all(&self, tag: Tag) -> impl Iterator<Item = Attribute> + '_ {
        let name = of_tag(tag);
        Items::new(&self.meta)
            .filter(move |i| !i.cannot_be(&name))
            .filter_map(|i| i.decode(&self.meta, &self.uid))
            .filter(move |a| a.is(tag))
    }

    pub fn enum_of(&self, tag: Tag) -> Option<u32> {
        self.first(tag).and_then(|a| match a.value {
            Value::Enumeration(e) => Some(e),
            _ => None,
        })
    }

    /// A decoded, editable copy, for a write.
    pub fn draft(&self) -> ObjectDraft {
        ObjectDraft {
            uid: self.uid.to_string(),
            kind: self.kind,
            owner: self.owner.to_string(),
            attributes: self.attributes().collect(),
            version: self.version,
        }
    }

    /// A canonical byte form of an attribute (name and value), for cache keys.
    pub fn attribute_key(a: &Attribute) -> Vec<u8> {
        let fields = vec![
            Ttlv::new(
                meta::META_NAME_KEY,
                Value::TextString(meta::name_key(&a.name)),
            ),
            Ttlv::new(meta::META_VALUE, a.value.clone()),
        ];
        Ttlv::structure(meta::META_VALUE, fields)
            .to_bytes()
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    /// The metadata blob handed to the backend (the object's own buffer, shared).
    pub fn to_meta(&self) -> Bytes {
        self.meta.clone()
    }

    /// The object a stored record holds; a format-1 blob is converted (and written in format 2
    /// on the object's next write). `owner` gives the owner's shared string.
    pub fn from_record(
        record: ObjectRecord,
        owner: impl FnOnce(&str) -> Arc<str>,
    ) -> Result<StoredObject, StoreError> {
        let parsed = meta::parse(&record.meta)
            .map_err(|why| StoreError::BadMeta(record.uid.to_string(), why))?;
        let (owner, meta) = match parsed {
            Parsed::Compact { owner: o } => (owner(&o), record.meta),
            Parsed::Legacy {
                owner: o,
                attributes,
            } => (owner(&o), meta::encode(&o, &record.uid, &attributes)),
        };
        Ok(StoredObject {
            uid: record.uid,
            kind: record.kind,
            owner,
            meta,
            version: record.version,
        })
    }

    pub(super) fn record(&self) -> ObjectRecord {
        ObjectRecord {
            uid: self.uid.clone(),
            kind: self.kind,
            meta: self.to_meta(),
            version: self.version,
        }
    }
}

/// An object being made or changed: its attributes decoded and editable. A write's `change`
/// edits one; [`ObjectDraft::finish`] makes the object the store keeps.
#[derive(Debug, Clone)]
pub struct ObjectDraft {
    pub uid: String,
    pub kind: ObjectKind,
    pub owner: String,
    pub attributes: Vec<Attribute>,
    pub version: u64,
}

impl ObjectDraft {
    pub fn first(&self, tag: Tag) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.is(tag))
    }

    pub fn all(&self, tag: Tag) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(move |a| a.is(tag))
    }

    pub fn find<'a>(&'a self, name: &'a AttributeName) -> impl Iterator<Item = &'a Attribute> {
        self.attributes.iter().filter(move |a| &a.name == name)
    }

    pub fn enum_of(&self, tag: Tag) -> Option<u32> {
        self.first(tag).and_then(|a| match a.value {
            Value::Enumeration(e) => Some(e),
            _ => None,
        })
    }

    /// Replaces every instance of a single-valued attribute.
    pub fn set(&mut self, tag: Tag, value: Value) {
        self.attributes.retain(|a| !a.is(tag));
        self.attributes.push(Attribute::new(tag, value));
    }

    pub fn remove(&mut self, tag: Tag) {
        self.attributes.retain(|a| !a.is(tag));
    }

    /// The object with these attributes. `owner` gives the owner's shared string.
    pub fn finish_with(self, owner: impl FnOnce(&str) -> Arc<str>) -> StoredObject {
        StoredObject {
            meta: meta::encode(&self.owner, &self.uid, &self.attributes),
            owner: owner(&self.owner),
            uid: self.uid.into(),
            kind: self.kind,
            version: self.version,
        }
    }

    /// The object with these attributes, its owner's string not shared with other objects'
    /// (the store shares it when it keeps the object).
    pub fn finish(self) -> StoredObject {
        self.finish_with(|o| Arc::from(o))
    }
}

/// What both a stored object and a draft answer, for helpers that read either (a write's
/// `change` sees a draft, a read the stored object).
pub trait AttributeView {
    /// The first instance of the attribute `tag`, decoded.
    fn first_of(&self, tag: Tag) -> Option<Attribute>;

    fn enum_of(&self, tag: Tag) -> Option<u32> {
        self.first_of(tag).and_then(|a| match a.value {
            Value::Enumeration(e) => Some(e),
            _ => None,
        })
    }
}

impl AttributeView for StoredObject {
    fn first_of(&self, tag: Tag) -> Option<Attribute> {
        self.first(tag)
    }
}

impl AttributeView for ObjectDraft {
    fn first_of(&self, tag: Tag) -> Option<Attribute> {
        self.first(tag).cloned()
    }
}

impl<T: AttributeView> AttributeView for Arc<T> {
    fn first_of(&self, tag: Tag) -> Option<Attribute> {
        (**self).first_of(tag)
    }
}
