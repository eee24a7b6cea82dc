//! Which attribute an [`Attribute`](super::Attribute) is: a standard tag, a custom (vendor) name, or a 1.x
//! name that is neither.

use crate::model::codec::{self, Node};
use crate::model::error::ModelError;
use crate::model::version::{tag_defined, ProtocolVersion};
use crate::spec::{tags, ATTRIBUTE_TAGS, TAGS};
use crate::ttlv::{Tag, Ttlv, Value};

/// Which attribute an [`Attribute`](super::Attribute) is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttributeName {
    /// A standard attribute, identified by its tag (`tags::CRYPTOGRAPHIC_ALGORITHM`).
    Tag(Tag),
    /// A custom attribute: 1.x `x-Name` / `y-Name`, 2.x Vendor Attribute.
    Vendor { vendor: String, name: String },
    /// A 1.x attribute name that is neither a standard attribute nor custom. Kept so the server
    /// can answer precisely; it has no 2.x encoding.
    Unknown(String),
}

impl AttributeName {
    /// Maps a 1.x Attribute Name ("Cryptographic Algorithm", "x-Product_Version").
    pub fn from_v1_name(name: &str) -> AttributeName {
        for prefix in ["x", "y"] {
            if let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) {
                return AttributeName::Vendor {
                    vendor: prefix.to_owned(),
                    name: rest.to_owned(),
                };
            }
        }
        match TAGS.iter().find(|t| t.v1 && t.spec_name == name) {
            Some(info) => AttributeName::Tag(info.tag),
            None => AttributeName::Unknown(name.to_owned()),
        }
    }

    /// The 1.x Attribute Name, if this attribute has one.
    pub fn v1_name(&self) -> Option<String> {
        match self {
            AttributeName::Tag(tag) => TAGS
                .iter()
                .find(|t| t.tag == *tag)
                .map(|t| t.spec_name.to_owned()),
            AttributeName::Vendor { vendor, name } if vendor == "x" || vendor == "y" => {
                Some(format!("{vendor}-{name}"))
            }
            AttributeName::Vendor { .. } => None,
            AttributeName::Unknown(name) => Some(name.clone()),
        }
    }

    /// Whether this names an attribute at all: a tag with an attribute section in KMIP 1.4 or
    /// 2.1, or a custom attribute (`x-`/`y-` name, Vendor Attribute). Not a 1.x name that is
    /// neither, nor a tag of something else (Batch Count, or a tag no table knows).
    pub fn is_attribute(&self) -> bool {
        match self {
            AttributeName::Tag(tag) => ATTRIBUTE_TAGS.binary_search(tag).is_ok(),
            AttributeName::Vendor { .. } => true,
            AttributeName::Unknown(_) => false,
        }
    }

    /// Whether a message of `version` can carry this attribute.
    pub fn defined_in(&self, version: ProtocolVersion) -> bool {
        match self {
            AttributeName::Tag(tag) => tag_defined(*tag, version),
            AttributeName::Vendor { vendor, .. } => {
                version.is_v2() || vendor == "x" || vendor == "y"
            }
            AttributeName::Unknown(_) => !version.is_v2(),
        }
    }

    /// Reads a 1.x `Attribute Name` text or a 2.x `Attribute Reference` (Enumeration holding a
    /// tag, or Structure {Vendor Identification, Attribute Name}).
    pub(crate) fn read_reference(node: &Node<'_>) -> Result<AttributeName, ModelError> {
        match &node.ttlv.value {
            Value::TextString(name) => Ok(AttributeName::from_v1_name(name)),
            Value::Enumeration(tag) => Ok(AttributeName::Tag(Tag(*tag))),
            Value::Structure(_) => Ok(AttributeName::Vendor {
                vendor: node.req_text(tags::VENDOR_IDENTIFICATION)?,
                name: node.req_text(tags::ATTRIBUTE_NAME)?,
            }),
            _ => Err(node.wrong("TextString, Enumeration or Structure")),
        }
    }

    /// The reference a request carries: unlike [`Self::to_reference`] it never drops a name
    /// (the server, not the writer, decides what an unknown or undefined one means), and it
    /// reads back as the same name. A name with no text form in `version` is written the way
    /// [`Self::read_reference`] accepts it.
    pub(crate) fn to_request_reference(&self, version: ProtocolVersion) -> Ttlv {
        let enumeration =
            |tag: Tag| Ttlv::new(tags::ATTRIBUTE_REFERENCE, Value::Enumeration(tag.0));
        match self {
            AttributeName::Tag(tag) if !version.is_v2() => match v1_tag_info(*tag) {
                Some(info) => codec::text(tags::ATTRIBUTE_NAME, info.spec_name),
                None => enumeration(*tag),
            },
            AttributeName::Tag(tag) => enumeration(*tag),
            AttributeName::Vendor { vendor, name }
                if !version.is_v2() && (vendor == "x" || vendor == "y") =>
            {
                codec::text(tags::ATTRIBUTE_NAME, &format!("{vendor}-{name}"))
            }
            AttributeName::Vendor { vendor, name } => codec::structure(
                tags::ATTRIBUTE_REFERENCE,
                vec![
                    codec::text(tags::VENDOR_IDENTIFICATION, vendor),
                    codec::text(tags::ATTRIBUTE_NAME, name),
                ],
            ),
            AttributeName::Unknown(name) => codec::text(tags::ATTRIBUTE_NAME, name),
        }
    }

    /// 1.x `Attribute Name` or 2.x `Attribute Reference`; `None` when `version` cannot name it.
    pub(crate) fn to_reference(&self, version: ProtocolVersion) -> Option<Ttlv> {
        if !self.defined_in(version) {
            return None;
        }
        if !version.is_v2() {
            return self
                .v1_name()
                .map(|name| codec::text(tags::ATTRIBUTE_NAME, &name));
        }
        match self {
            AttributeName::Tag(tag) => Some(Ttlv::new(
                tags::ATTRIBUTE_REFERENCE,
                Value::Enumeration(tag.0),
            )),
            AttributeName::Vendor { vendor, name } => Some(codec::structure(
                tags::ATTRIBUTE_REFERENCE,
                vec![
                    codec::text(tags::VENDOR_IDENTIFICATION, vendor),
                    codec::text(tags::ATTRIBUTE_NAME, name),
                ],
            )),
            AttributeName::Unknown(_) => None,
        }
    }
}

/// The table entry of a standard attribute 1.x names (by its Attribute Name text).
pub(super) fn v1_tag_info(tag: Tag) -> Option<&'static crate::spec::TagInfo> {
    TAGS.iter().find(|t| t.v1 && t.tag == tag)
}
