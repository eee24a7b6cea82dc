//! Attributes in both encodings.
//!
//! KMIP 1.x sends an attribute as `Attribute { Attribute Name (text), Attribute Index?, Attribute
//! Value }`, grouped in a `Template-Attribute` (or its Common/Private/Public variants) or bare in
//! a payload. KMIP 2.x sends the attribute as an item tagged with the attribute's own tag inside an
//! `Attributes` structure; custom attributes become `Attribute { Vendor Identification, Attribute
//! Name, Attribute Value }` (a Vendor Attribute). The model keeps one [`Attribute`] for both and
//! writes the form of the negotiated version. 1.x custom names `x-Foo` / `y-Foo` map to Vendor
//! Attributes with Vendor Identification `x` / `y` and name `Foo`, verbatim.

use bytes::Bytes;

use super::codec::{self, Node};
use super::enums::{
    CryptographicAlgorithm, HashingAlgorithm, KeyFormatType, KmipEnum, LinkType, NameType,
    ObjectType, RevocationReasonCode, State,
};
use super::error::ModelError;
use super::version::{tag_defined, ProtocolVersion};
use crate::spec::{tags, ATTRIBUTE_TAGS, TAGS};
use crate::ttlv::{ItemType, Tag, Ttlv, Value};

/// Which attribute an [`Attribute`] is.
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
fn v1_tag_info(tag: Tag) -> Option<&'static crate::spec::TagInfo> {
    TAGS.iter().find(|t| t.v1 && t.tag == tag)
}

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

/// Where a group of attributes sits: the wrapper tags of 1.x and 2.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeGroup {
    /// `Template-Attribute` / `Attributes`.
    Plain,
    /// `Common Template-Attribute` / `Common Attributes` (Create Key Pair).
    Common,
    /// `Private Key Template-Attribute` / `Private Key Attributes`.
    PrivateKey,
    /// `Public Key Template-Attribute` / `Public Key Attributes`.
    PublicKey,
}

impl AttributeGroup {
    fn tags(self) -> (Tag, Tag) {
        match self {
            AttributeGroup::Plain => (tags::TEMPLATE_ATTRIBUTE, tags::ATTRIBUTES),
            AttributeGroup::Common => (tags::COMMON_TEMPLATE_ATTRIBUTE, tags::COMMON_ATTRIBUTES),
            AttributeGroup::PrivateKey => (
                tags::PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
                tags::PRIVATE_KEY_ATTRIBUTES,
            ),
            AttributeGroup::PublicKey => (
                tags::PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
                tags::PUBLIC_KEY_ATTRIBUTES,
            ),
        }
    }

    /// Reads the group from a payload, whichever encoding it uses. With `Plain`, bare 1.x
    /// `Attribute` items of the payload are read too (Locate, Get Attributes response). A 2.x-style
    /// tagged attribute inside a 1.x `Template-Attribute` is read as that attribute: clients mix
    /// the shapes, and ignoring it would make a Locate match more than asked.
    pub(crate) fn read(self, payload: &Node<'_>) -> Result<Vec<Attribute>, ModelError> {
        let (v1_tag, v2_tag) = self.tags();
        let mut out = Vec::new();
        if let Some(group) = payload.opt(v2_tag) {
            group.structure()?;
            for item in group.items() {
                out.push(Attribute::read_tagged(&item)?);
            }
        }
        if let Some(group) = payload.opt(v1_tag) {
            group.structure()?;
            if let Some(template) = group.opt(tags::NAME) {
                // Templates were deprecated in 1.3 and this server keeps none.
                return Err(template.unsupported("a Template reference"));
            }
            for item in group.items() {
                out.push(Attribute::read_tagged(&item)?);
            }
        }
        if self == AttributeGroup::Plain {
            for item in payload.all(tags::ATTRIBUTE) {
                out.push(Attribute::read_v1(&item)?);
            }
        }
        Ok(out)
    }

    /// Writes a request's group, keeping every attribute ([`Attribute::to_request_ttlv`]), in
    /// the 2.x shape when [`needs_v2_shape`].
    pub(crate) fn write_request(self, attributes: &[Attribute], version: ProtocolVersion) -> Ttlv {
        let (v1_tag, v2_tag) = self.tags();
        let tag = if needs_v2_shape(attributes, version) {
            v2_tag
        } else {
            v1_tag
        };
        let items = attributes
            .iter()
            .map(|a| a.to_request_ttlv(version))
            .collect();
        codec::structure(tag, items)
    }

    /// Writes a response's group in the encoding of `version`, leaving out what that version
    /// cannot carry: a server must not send tags the client's version lacks.
    pub(crate) fn write_response(self, attributes: &[Attribute], version: ProtocolVersion) -> Ttlv {
        let (v1_tag, v2_tag) = self.tags();
        let tag = if version.is_v2() { v2_tag } else { v1_tag };
        codec::structure(tag, write_bare_response(attributes, version))
    }
}

/// Whether a request must use the 2.x shape (`Attributes`, `New Attribute`): in 2.x, and in 1.x
/// when an attribute has no 1.x form. The reader accepts either shape in any version; a 1.x
/// server rejects the 2.x one rather than act on less than the caller asked.
pub(crate) fn needs_v2_shape<'a>(
    attributes: impl IntoIterator<Item = &'a Attribute>,
    version: ProtocolVersion,
) -> bool {
    version.is_v2() || attributes.into_iter().any(|a| !a.has_v1_form())
}

/// A response's attributes as bare items of `version`'s encoding, leaving out what it cannot
/// carry.
pub(crate) fn write_bare_response(attributes: &[Attribute], version: ProtocolVersion) -> Vec<Ttlv> {
    attributes
        .iter()
        .filter_map(|a| a.to_ttlv(version))
        .collect()
}

/// Reads the single attribute of a 2.x `New Attribute` / `Current Attribute` wrapper.
pub(crate) fn read_wrapped(wrapper: &Node<'_>) -> Result<Attribute, ModelError> {
    wrapper.structure()?;
    let mut items = wrapper.items();
    match (items.next(), items.next()) {
        (Some(item), None) => Attribute::read_tagged(&item),
        _ => Err(wrapper.invalid("must hold exactly one attribute")),
    }
}

/// Writes a request's 2.x `New Attribute` / `Current Attribute` wrapper.
pub(crate) fn write_wrapped(tag: Tag, attribute: &Attribute, version: ProtocolVersion) -> Ttlv {
    codec::structure(tag, vec![attribute.to_request_ttlv(version)])
}

/// Typed access to the well-known attributes of a list.
pub trait AttributeList {
    fn attributes(&self) -> &[Attribute];

    fn get(&self, tag: Tag) -> Option<&Attribute> {
        self.attributes().iter().find(|a| a.is(tag))
    }

    fn get_all(&self, tag: Tag) -> impl Iterator<Item = &Attribute> {
        self.attributes().iter().filter(move |a| a.is(tag))
    }

    fn object_type(&self) -> Option<ObjectType> {
        self.get(tags::OBJECT_TYPE)?.as_enum()
    }

    fn cryptographic_algorithm(&self) -> Option<CryptographicAlgorithm> {
        self.get(tags::CRYPTOGRAPHIC_ALGORITHM)?.as_enum()
    }

    fn cryptographic_length(&self) -> Option<i32> {
        self.get(tags::CRYPTOGRAPHIC_LENGTH)?.as_int()
    }

    fn cryptographic_usage_mask(&self) -> Option<i32> {
        self.get(tags::CRYPTOGRAPHIC_USAGE_MASK)?.as_int()
    }

    fn state(&self) -> Option<State> {
        self.get(tags::STATE)?.as_enum()
    }

    fn names(&self) -> Vec<Name> {
        self.get_all(tags::NAME)
            .filter_map(Attribute::as_name)
            .collect()
    }

    fn object_groups(&self) -> Vec<&str> {
        self.get_all(tags::OBJECT_GROUP)
            .filter_map(Attribute::as_text)
            .collect()
    }

    fn links(&self) -> Vec<Link> {
        self.get_all(tags::LINK)
            .filter_map(Attribute::as_link)
            .collect()
    }

    fn operation_policy_name(&self) -> Option<&str> {
        self.get(tags::OPERATION_POLICY_NAME)?.as_text()
    }

    fn sensitive(&self) -> Option<bool> {
        self.get(tags::SENSITIVE)?.as_bool()
    }

    fn extractable(&self) -> Option<bool> {
        self.get(tags::EXTRACTABLE)?.as_bool()
    }

    fn activation_date(&self) -> Option<i64> {
        self.get(tags::ACTIVATION_DATE)?.as_datetime()
    }

    fn deactivation_date(&self) -> Option<i64> {
        self.get(tags::DEACTIVATION_DATE)?.as_datetime()
    }

    fn vendor(&self, vendor: &str, name: &str) -> Option<&Attribute> {
        self.attributes().iter().find(|a| {
            matches!(&a.name, AttributeName::Vendor { vendor: v, name: n } if v == vendor && n == name)
        })
    }
}

impl AttributeList for [Attribute] {
    fn attributes(&self) -> &[Attribute] {
        self
    }
}

impl AttributeList for Vec<Attribute> {
    fn attributes(&self) -> &[Attribute] {
        self
    }
}

/// Bits of the Cryptographic Usage Mask attribute used by the model's clients.
pub mod usage_mask {
    pub const SIGN: i32 = 0x0000_0001;
    pub const VERIFY: i32 = 0x0000_0002;
    pub const ENCRYPT: i32 = 0x0000_0004;
    pub const DECRYPT: i32 = 0x0000_0008;
    pub const WRAP_KEY: i32 = 0x0000_0010;
    pub const UNWRAP_KEY: i32 = 0x0000_0020;
    pub const EXPORT: i32 = 0x0000_0040;
    pub const MAC_GENERATE: i32 = 0x0000_0080;
    pub const MAC_VERIFY: i32 = 0x0000_0100;
}

/// The Name attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub value: String,
    pub name_type: NameType,
}

impl Name {
    pub fn new(value: &str) -> Name {
        Name {
            value: value.to_owned(),
            name_type: NameType::UninterpretedTextString,
        }
    }

    pub(crate) fn read(node: &Node<'_>) -> Result<Name, ModelError> {
        node.structure()?;
        Ok(Name {
            value: node.req_text(tags::NAME_VALUE)?,
            name_type: node.req_enum(tags::NAME_TYPE)?,
        })
    }

    pub fn to_value(&self) -> Value {
        Value::Structure(vec![
            codec::text(tags::NAME_VALUE, &self.value),
            codec::enumeration(tags::NAME_TYPE, self.name_type),
        ])
    }
}

/// The Link attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub link_type: LinkType,
    pub linked_object_identifier: String,
}

impl Link {
    pub(crate) fn read(node: &Node<'_>) -> Result<Link, ModelError> {
        node.structure()?;
        Ok(Link {
            link_type: node.req_enum(tags::LINK_TYPE)?,
            linked_object_identifier: node.req_text(tags::LINKED_OBJECT_IDENTIFIER)?,
        })
    }

    pub fn to_value(&self) -> Value {
        Value::Structure(vec![
            codec::enumeration(tags::LINK_TYPE, self.link_type),
            codec::text(
                tags::LINKED_OBJECT_IDENTIFIER,
                &self.linked_object_identifier,
            ),
        ])
    }
}

/// The Digest attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub hashing_algorithm: HashingAlgorithm,
    pub digest_value: Bytes,
    pub key_format_type: Option<KeyFormatType>,
}

impl Digest {
    pub(crate) fn read(node: &Node<'_>) -> Result<Digest, ModelError> {
        node.structure()?;
        Ok(Digest {
            hashing_algorithm: node.req_enum(tags::HASHING_ALGORITHM)?,
            digest_value: node.opt_bytes(tags::DIGEST_VALUE)?.unwrap_or_default(),
            key_format_type: node.opt_enum(tags::KEY_FORMAT_TYPE)?,
        })
    }

    pub fn to_value(&self) -> Value {
        let mut items = vec![
            codec::enumeration(tags::HASHING_ALGORITHM, self.hashing_algorithm),
            codec::bytes(tags::DIGEST_VALUE, &self.digest_value),
        ];
        items.extend(
            self.key_format_type
                .map(|k| codec::enumeration(tags::KEY_FORMAT_TYPE, k)),
        );
        Value::Structure(items)
    }
}

/// The Revocation Reason attribute (also the reason of a Revoke request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationReason {
    pub code: RevocationReasonCode,
    pub message: Option<String>,
}

impl RevocationReason {
    pub(crate) fn read(node: &Node<'_>) -> Result<RevocationReason, ModelError> {
        node.structure()?;
        Ok(RevocationReason {
            code: node.req_enum(tags::REVOCATION_REASON_CODE)?,
            message: node.opt_text(tags::REVOCATION_MESSAGE)?,
        })
    }

    pub fn to_value(&self) -> Value {
        let mut items = vec![codec::enumeration(tags::REVOCATION_REASON_CODE, self.code)];
        items.extend(
            self.message
                .as_deref()
                .map(|m| codec::text(tags::REVOCATION_MESSAGE, m)),
        );
        Value::Structure(items)
    }
}
