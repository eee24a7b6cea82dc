//! One managed object as the gateway holds it, and its metadata blob: the opaque bytes the
//! backend stores (a TTLV structure of private extension tags).

use super::StoreError;
use bytes::{Bytes, BytesMut};
use kmip_backends::{ObjectKind, ObjectRecord};
use kmip_wire::model::{Attribute, AttributeName};
use kmip_wire::ttlv::{decode, Limits, Tag, Ttlv, Value};

/// Private extension tags of the metadata blob (KMIP reserves 0x54xxxx for extensions).
const META_RECORD: Tag = Tag(0x54_FF00);
const META_VERSION: Tag = Tag(0x54_FF01);
const META_OWNER: Tag = Tag(0x54_FF02);
const META_ATTRIBUTE: Tag = Tag(0x54_FF03);
const META_NAME_KEY: Tag = Tag(0x54_FF04);
const META_INDEX: Tag = Tag(0x54_FF05);
const META_VALUE: Tag = Tag(0x54_FF06);
/// Format version of the metadata blob; a blob of another version is refused, not guessed at.
const META_FORMAT: i32 = 1;

/// One managed object as the gateway knows it.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub uid: String,
    pub kind: ObjectKind,
    /// The user who created or registered it.
    pub owner: String,
    pub attributes: Vec<Attribute>,
    /// The backend's write counter of this version ([`ObjectRecord::version`]): 1 once created,
    /// one more per durable write.
    pub version: u64,
}

impl StoredObject {
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

    /// A canonical byte form of an attribute (name and value), for cache keys.
    pub fn attribute_key(a: &Attribute) -> Vec<u8> {
        let mut fields = vec![Ttlv::new(
            META_NAME_KEY,
            Value::TextString(Self::name_key(&a.name)),
        )];
        fields.push(Ttlv::new(META_VALUE, a.value.clone()));
        Ttlv::structure(META_ATTRIBUTE, fields)
            .to_bytes()
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    fn name_key(name: &AttributeName) -> String {
        match name {
            AttributeName::Tag(t) => format!("t:{:06x}", t.0),
            AttributeName::Vendor { vendor, name } => format!("v:{vendor}:{name}"),
            AttributeName::Unknown(n) => format!("u:{n}"),
        }
    }

    fn parse_name_key(key: &str) -> Option<AttributeName> {
        let (kind, rest) = key.split_once(':')?;
        match kind {
            "t" => u32::from_str_radix(rest, 16)
                .ok()
                .map(|t| AttributeName::Tag(Tag(t))),
            "v" => rest.split_once(':').map(|(v, n)| AttributeName::Vendor {
                vendor: v.to_owned(),
                name: n.to_owned(),
            }),
            "u" => Some(AttributeName::Unknown(rest.to_owned())),
            _ => None,
        }
    }

    /// The metadata blob handed to the backend.
    pub fn to_meta(&self) -> Bytes {
        let mut items = vec![
            Ttlv::new(META_VERSION, Value::Integer(META_FORMAT)),
            Ttlv::new(META_OWNER, Value::TextString(self.owner.clone())),
        ];
        for a in &self.attributes {
            let mut fields = vec![Ttlv::new(
                META_NAME_KEY,
                Value::TextString(Self::name_key(&a.name)),
            )];
            if let Some(i) = a.index {
                fields.push(Ttlv::new(META_INDEX, Value::Integer(i)));
            }
            fields.push(Ttlv::new(META_VALUE, a.value.clone()));
            items.push(Ttlv::structure(META_ATTRIBUTE, fields));
        }
        let record = Ttlv::structure(META_RECORD, items);
        let mut out = BytesMut::with_capacity(record.encoded_len());
        // Encoding only fails for tags over 24 bits, and every tag here is a constant below that.
        let _ = record.encode(&mut out);
        out.freeze()
    }

    pub(super) fn from_record(record: ObjectRecord) -> Result<StoredObject, StoreError> {
        let bad = |why: &str| StoreError::BadMeta(record.uid.clone(), why.to_owned());
        let limits = Limits {
            max_message_size: usize::MAX,
            ..Limits::default()
        };
        let root = decode(&record.meta, &limits).map_err(|e| bad(&e.to_string()))?;
        if root.tag != META_RECORD
            || root.child(META_VERSION).and_then(Ttlv::as_i32) != Some(META_FORMAT)
        {
            return Err(bad("not a kmip-gateway metadata record of a known format"));
        }
        let owner = root
            .child(META_OWNER)
            .and_then(Ttlv::as_text)
            .ok_or_else(|| bad("no owner"))?
            .to_owned();
        let mut attributes = Vec::new();
        for a in root.children(META_ATTRIBUTE) {
            let name = a
                .child(META_NAME_KEY)
                .and_then(Ttlv::as_text)
                .and_then(Self::parse_name_key)
                .ok_or_else(|| bad("attribute without a valid name"))?;
            let value = a
                .child(META_VALUE)
                .ok_or_else(|| bad("attribute without a value"))?
                .value
                .clone();
            attributes.push(Attribute {
                name,
                index: a.child(META_INDEX).and_then(Ttlv::as_i32),
                value,
            });
        }
        Ok(StoredObject {
            uid: record.uid,
            kind: record.kind,
            owner,
            attributes,
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
