//! Attributes in both encodings.
//!
//! KMIP 1.x sends an attribute as `Attribute { Attribute Name (text), Attribute Index?, Attribute
//! Value }`, grouped in a `Template-Attribute` (or its Common/Private/Public variants) or bare in
//! a payload. KMIP 2.x sends the attribute as an item tagged with the attribute's own tag inside an
//! `Attributes` structure; custom attributes become `Attribute { Vendor Identification, Attribute
//! Name, Attribute Value }` (a Vendor Attribute). The model keeps one [`Attribute`] for both and
//! writes the form of the negotiated version. 1.x custom names `x-Foo` / `y-Foo` map to Vendor
//! Attributes with Vendor Identification `x` / `y` and name `Foo`, verbatim.
//!
//! `attribute_name` says which attribute (tag, vendor name or unknown 1.x name), `group` where a
//! list of them sits in a payload, `list` gives typed access to a list, `values` holds the
//! structured values (Name, Link, Digest, Revocation Reason).

mod attribute_name;
mod group;
mod list;
mod values;

use super::codec::{self, Node};
use super::enums::KmipEnum;
use super::error::ModelError;
use super::version::ProtocolVersion;
use crate::spec::tags;
use crate::ttlv::{ItemType, Tag, Ttlv, Value};

use attribute_name::v1_tag_info;
pub use attribute_name::AttributeName;
pub use group::AttributeGroup;
pub(crate) use group::{needs_v2_shape, read_wrapped, write_bare_response, write_wrapped};
pub use list::AttributeList;
pub use values::{usage_mask, Digest, Link, Name, RevocationReason};

/// One attribute instance: which attribute, its 1.x index, and its value (the value's item, tag
/// aside: a Name is a Structure of Name Value and Name Type in both encodings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: AttributeName,
    /// KMIP 1.x Attribute Index of multi-instance attributes; 2.x has none.
    pub index: Option<i32>,
    pub value: Value,
}

/// Item types of the well-known single-value attributes, checked when parsing so that typed
/// accessors can rely on them.
const ATTRIBUTE_TYPES: &[(Tag, ItemType)] = &[
    (tags::UNIQUE_IDENTIFIER, ItemType::TextString),
    (tags::OBJECT_TYPE, ItemType::Enumeration),
    (tags::CRYPTOGRAPHIC_ALGORITHM, ItemType::Enumeration),
    (tags::CRYPTOGRAPHIC_LENGTH, ItemType::Integer),
    (tags::CRYPTOGRAPHIC_USAGE_MASK, ItemType::Integer),
    (tags::CRYPTOGRAPHIC_PARAMETERS, ItemType::Structure),
    (tags::STATE, ItemType::Enumeration),
    (tags::OBJECT_GROUP, ItemType::TextString),
    (tags::OPERATION_POLICY_NAME, ItemType::TextString),
    (tags::CONTACT_INFORMATION, ItemType::TextString),
    (tags::DESCRIPTION, ItemType::TextString),
    (tags::COMMENT, ItemType::TextString),
    (tags::SENSITIVE, ItemType::Boolean),
    (tags::ALWAYS_SENSITIVE, ItemType::Boolean),
    (tags::EXTRACTABLE, ItemType::Boolean),
    (tags::NEVER_EXTRACTABLE, ItemType::Boolean),
    (tags::FRESH, ItemType::Boolean),
    (tags::KEY_VALUE_PRESENT, ItemType::Boolean),
    (tags::LEASE_TIME, ItemType::Interval),
];

/// Date attributes: Date Time (Date Time Extended is accepted too).
const DATE_ATTRIBUTES: &[Tag] = &[
    tags::INITIAL_DATE,
    tags::ACTIVATION_DATE,
    tags::PROCESS_START_DATE,
    tags::PROTECT_STOP_DATE,
    tags::DEACTIVATION_DATE,
    tags::DESTROY_DATE,
    tags::COMPROMISE_OCCURRENCE_DATE,
    tags::COMPROMISE_DATE,
    tags::ARCHIVE_DATE,
    tags::LAST_CHANGE_DATE,
    tags::ORIGINAL_CREATION_DATE,
];

impl Attribute {
    pub fn new(tag: Tag, value: Value) -> Attribute {
        Attribute {
            name: AttributeName::Tag(tag),
            index: None,
            value,
        }
    }

    pub fn text(tag: Tag, text: &str) -> Attribute {
        Attribute::new(tag, Value::TextString(text.to_owned()))
    }

    pub fn integer(tag: Tag, i: i32) -> Attribute {
        Attribute::new(tag, Value::Integer(i))
    }

    pub fn boolean(tag: Tag, b: bool) -> Attribute {
        Attribute::new(tag, Value::Boolean(b))
    }

    pub fn enumeration<E: KmipEnum>(tag: Tag, e: E) -> Attribute {
        Attribute::new(tag, Value::Enumeration(e.to_u32()))
    }

    pub fn datetime(tag: Tag, seconds: i64) -> Attribute {
        Attribute::new(tag, Value::DateTime(seconds))
    }

    pub fn vendor(vendor: &str, name: &str, value: Value) -> Attribute {
        Attribute {
            name: AttributeName::Vendor {
                vendor: vendor.to_owned(),
                name: name.to_owned(),
            },
            index: None,
            value,
        }
    }

    pub fn name(name: &Name) -> Attribute {
        Attribute::new(tags::NAME, name.to_value())
    }

    pub fn link(link: &Link) -> Attribute {
        Attribute::new(tags::LINK, link.to_value())
    }

    /// The tag of a standard attribute.
    pub fn tag(&self) -> Option<Tag> {
        match self.name {
            AttributeName::Tag(tag) => Some(tag),
            _ => None,
        }
    }

    pub fn is(&self, tag: Tag) -> bool {
        self.tag() == Some(tag)
    }

    /// Reads a 1.x `Attribute` structure (or a 2.x Vendor Attribute, which shares its tag).
    pub(crate) fn read_v1(node: &Node<'_>) -> Result<Attribute, ModelError> {
        node.structure()?;
        if node.opt(tags::VENDOR_IDENTIFICATION).is_some() {
            return Attribute::read_vendor(node);
        }
        let name = AttributeName::from_v1_name(&node.req_text(tags::ATTRIBUTE_NAME)?);
        let index = node.opt_int(tags::ATTRIBUTE_INDEX)?;
        let value_node = node.req(tags::ATTRIBUTE_VALUE)?;
        Attribute::checked(name, index, &value_node)
    }

    fn read_vendor(node: &Node<'_>) -> Result<Attribute, ModelError> {
        let name = AttributeName::Vendor {
            vendor: node.req_text(tags::VENDOR_IDENTIFICATION)?,
            name: node.req_text(tags::ATTRIBUTE_NAME)?,
        };
        let value_node = node.req(tags::ATTRIBUTE_VALUE)?;
        Attribute::checked(name, None, &value_node)
    }

    /// Reads one item of a 2.x `Attributes` / `New Attribute` / `Current Attribute` structure.
    pub(crate) fn read_tagged(node: &Node<'_>) -> Result<Attribute, ModelError> {
        if node.ttlv.tag == tags::ATTRIBUTE {
            return Attribute::read_v1(node);
        }
        Attribute::checked(AttributeName::Tag(node.ttlv.tag), None, node)
    }

    /// An attribute of `name` with `value`, checked as a received one is (Adjust Attribute's
    /// result).
    pub fn from_value(name: AttributeName, value: Value) -> Result<Attribute, ModelError> {
        let ttlv = Ttlv::new(tags::ATTRIBUTE_VALUE, value);
        Attribute::checked(name, None, &Node::new(&ttlv, "AttributeValue"))
    }

    fn checked(
        name: AttributeName,
        index: Option<i32>,
        value: &Node<'_>,
    ) -> Result<Attribute, ModelError> {
        if let AttributeName::Tag(tag) = name {
            check_value(tag, value)?;
        }
        Ok(Attribute {
            name,
            index,
            value: value.ttlv.value.clone(),
        })
    }

    /// The attribute in the encoding of `version`, or `None` if that version cannot carry it.
    pub fn to_ttlv(&self, version: ProtocolVersion) -> Option<Ttlv> {
        if !self.name.defined_in(version) {
            return None;
        }
        if version.is_v2() {
            return match &self.name {
                AttributeName::Tag(tag) => Some(Ttlv::new(*tag, self.value.clone())),
                AttributeName::Vendor { vendor, name } => Some(codec::structure(
                    tags::ATTRIBUTE,
                    vec![
                        codec::text(tags::VENDOR_IDENTIFICATION, vendor),
                        codec::text(tags::ATTRIBUTE_NAME, name),
                        Ttlv::new(tags::ATTRIBUTE_VALUE, self.value.clone()),
                    ],
                )),
                AttributeName::Unknown(_) => None,
            };
        }
        let name = self.name.v1_name()?;
        let mut items = vec![codec::text(tags::ATTRIBUTE_NAME, &name)];
        items.extend(self.index.map(|i| codec::int(tags::ATTRIBUTE_INDEX, i)));
        items.push(Ttlv::new(tags::ATTRIBUTE_VALUE, self.value.clone()));
        Some(codec::structure(tags::ATTRIBUTE, items))
    }

    /// Whether 1.x has a form for this attribute: every one but a standard attribute that 1.x
    /// does not name.
    pub fn has_v1_form(&self) -> bool {
        match self.name {
            AttributeName::Tag(tag) => v1_tag_info(tag).is_some(),
            _ => true,
        }
    }

    /// The attribute as a request carries it. Unlike [`Self::to_ttlv`] it is never dropped and
    /// it reads back as the same attribute: a form `version` does not define (an attribute of a
    /// later 1.x minor version, a 2.x item with a tag no table knows, a 1.x-style name or an
    /// Attribute Index in 2.x, a 2.x-only attribute in 1.x) is written the way the reader accepts
    /// it, and the server, not the writer, decides what it means. (One thing has no form at all:
    /// an index on a vendor attribute other than `x`/`y`, which the reader never produces.)
    pub fn to_request_ttlv(&self, version: ProtocolVersion) -> Ttlv {
        let v2_form = version.is_v2() || !self.has_v1_form();
        let named = |name: &str| {
            let mut items = vec![codec::text(tags::ATTRIBUTE_NAME, name)];
            items.extend(self.index.map(|i| codec::int(tags::ATTRIBUTE_INDEX, i)));
            items.push(self.value_node());
            codec::structure(tags::ATTRIBUTE, items)
        };
        // A 2.x item has no index, and the `Attribute` tag itself is read as a 1.x Attribute.
        let needs_name = !v2_form || self.index.is_some();
        match &self.name {
            AttributeName::Tag(tag) => match v1_tag_info(*tag) {
                Some(info) if needs_name || *tag == tags::ATTRIBUTE => named(info.spec_name),
                _ => Ttlv::new(*tag, self.value.clone()),
            },
            AttributeName::Vendor { vendor, name }
                if needs_name && (vendor == "x" || vendor == "y") =>
            {
                named(&format!("{vendor}-{name}"))
            }
            AttributeName::Vendor { vendor, name } => codec::structure(
                tags::ATTRIBUTE,
                vec![
                    codec::text(tags::VENDOR_IDENTIFICATION, vendor),
                    codec::text(tags::ATTRIBUTE_NAME, name),
                    self.value_node(),
                ],
            ),
            AttributeName::Unknown(name) => named(name),
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::TextString(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i32> {
        match self.value {
            Value::Integer(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Boolean(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_enum<E: KmipEnum>(&self) -> Option<E> {
        match self.value {
            Value::Enumeration(e) => Some(E::from_u32(e)),
            _ => None,
        }
    }

    /// Date Time (or Date Time Extended) in seconds.
    pub fn as_datetime(&self) -> Option<i64> {
        match self.value {
            Value::DateTime(d) => Some(d),
            Value::DateTimeExtended(us) => Some(us.div_euclid(1_000_000)),
            _ => None,
        }
    }

    fn value_node(&self) -> Ttlv {
        Ttlv::new(tags::ATTRIBUTE_VALUE, self.value.clone())
    }

    pub fn as_name(&self) -> Option<Name> {
        Name::read(&Node::new(&self.value_node(), "")).ok()
    }

    pub fn as_link(&self) -> Option<Link> {
        Link::read(&Node::new(&self.value_node(), "")).ok()
    }

    pub fn as_digest(&self) -> Option<Digest> {
        Digest::read(&Node::new(&self.value_node(), "")).ok()
    }

    pub fn as_revocation_reason(&self) -> Option<RevocationReason> {
        RevocationReason::read(&Node::new(&self.value_node(), "")).ok()
    }
}

/// Checks the value of a well-known attribute, so a malformed one fails its batch item with
/// Invalid Field instead of reaching the server logic.
fn check_value(tag: Tag, value: &Node<'_>) -> Result<(), ModelError> {
    if let Some((_, expected)) = ATTRIBUTE_TYPES.iter().find(|(t, _)| *t == tag) {
        if value.ttlv.value.item_type() != *expected {
            return Err(value.wrong(expected.xml_name()));
        }
    } else if DATE_ATTRIBUTES.contains(&tag) {
        value.datetime()?;
    } else if tag == tags::NAME {
        Name::read(value)?;
    } else if tag == tags::LINK {
        Link::read(value)?;
    } else if tag == tags::DIGEST {
        Digest::read(value)?;
    } else if tag == tags::REVOCATION_REASON {
        RevocationReason::read(value)?;
    }
    Ok(())
}
