//! The KMIP XML encoding (KMIP Profiles, "XML Encoding"), as used by the OASIS test vectors.
//!
//! An element is named by the tag's XML name (or `TTLV` with `tag="0x540001"` for a tag without
//! a name); `type=` gives the item type (Structure when absent) and `value=` the value:
//! enumerations by name (or `0x` hex), bit masks as space-separated flag names, byte strings and
//! Big Integers in hex, Date Times in ISO 8601. Test vectors put `$PLACEHOLDERS` where a value is
//! only known at run time (`$UNIQUE_IDENTIFIER_0`, `$NOW-3600`, ...): parsing gives an
//! [`XmlNode`] tree that keeps them, and [`XmlNode::to_ttlv`] fills them from [`Bindings`].
//! [`to_xml_string`] writes a [`Ttlv`] tree directly.//!
//! `element` reads the document into raw elements, `read` turns them into [`XmlNode`]s and
//! `write` writes a [`Ttlv`] tree back.

mod element;
mod read;
mod write;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use thiserror::Error;

use crate::names::{
    enum_names_for_tag, mask_for_tag, tag_by_name, tag_by_spec_name, tag_hex, tag_name, EnumNames,
};
use crate::spec::EnumDef;
use crate::ttlv::{ItemType, Tag, Ttlv, Value};

pub(crate) use element::{message_elements, parse_elements, Element};
pub use read::{big_integer_wire_form, parse_document, parse_node, parse_template};
pub(crate) use read::{node_from, parse_value};
pub use write::to_xml_string;
pub(crate) use write::value_text;

/// Deepest element nesting accepted. Protects the stack of the recursive conversion; KMIP
/// messages nest fewer than 12 levels.
pub const MAX_XML_DEPTH: usize = 64;

/// Largest XML document parsed; callers reading a file check its size against it before reading.
/// Protects memory; the largest OASIS vector file is under 200 KiB.
pub const MAX_XML_SIZE: usize = 16 << 20;

/// Everything that can be wrong with a KMIP XML document.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XmlError {
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
    #[error("XML syntax error near byte {offset}: {message}")]
    Syntax { offset: u64, message: String },
    #[error("{path}: no binding for placeholder ${name}")]
    Unbound { path: String, name: String },
    /// A document could not be read: made by callers that read files (this crate reads none),
    /// so that every failure of a vector file is one error type.
    #[error("cannot read {file}: {message}")]
    Io { file: String, message: String },
}

fn invalid(path: &str, what: impl Into<String>) -> XmlError {
    XmlError::Invalid {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// A `$NAME` placeholder of the test vectors, stored without the `$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placeholder(pub String);

impl Placeholder {
    /// For `$NOW`, `$NOW-3600`, `$NOW+3600`: the offset in seconds from the current time.
    pub fn now_offset(&self) -> Option<i64> {
        let rest = self.0.strip_prefix("NOW")?;
        if rest.is_empty() {
            return Some(0);
        }
        let (sign, digits) = match rest.as_bytes()[0] {
            b'+' => (1, &rest[1..]),
            b'-' => (-1, &rest[1..]),
            _ => return None,
        };
        digits.parse::<i64>().ok().map(|n| sign * n)
    }
}

/// One element of a parsed KMIP XML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlNode {
    pub tag: Tag,
    pub value: XmlValue,
}

/// The content of an [`XmlNode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlValue {
    Structure(Vec<XmlNode>),
    /// A primitive value (never `Value::Structure`).
    Value(Value),
    /// A placeholder standing for a value of `item_type`.
    Placeholder {
        item_type: ItemType,
        placeholder: Placeholder,
    },
}

impl XmlNode {
    pub fn item_type(&self) -> ItemType {
        match &self.value {
            XmlValue::Structure(_) => ItemType::Structure,
            XmlValue::Value(v) => v.item_type(),
            XmlValue::Placeholder { item_type, .. } => *item_type,
        }
    }

    pub fn children(&self) -> &[XmlNode] {
        match &self.value {
            XmlValue::Structure(c) => c,
            _ => &[],
        }
    }

    /// Calls `f` with every placeholder of the tree and its type, in document order.
    pub fn for_each_placeholder(&self, f: &mut impl FnMut(&Placeholder, ItemType)) {
        match &self.value {
            XmlValue::Structure(c) => c.iter().for_each(|n| n.for_each_placeholder(f)),
            XmlValue::Value(_) => {}
            XmlValue::Placeholder {
                item_type,
                placeholder,
            } => f(placeholder, *item_type),
        }
    }

    /// The TTLV tree, with placeholders replaced from `bindings`.
    pub fn to_ttlv(&self, bindings: &Bindings) -> Result<Ttlv, XmlError> {
        let mut path = String::new();
        self.to_ttlv_at(bindings, &mut path)
    }

    fn to_ttlv_at(&self, bindings: &Bindings, path: &mut String) -> Result<Ttlv, XmlError> {
        let len = path.len();
        push_path(path, self.tag);
        let value = match &self.value {
            XmlValue::Structure(children) => Value::Structure(
                children
                    .iter()
                    .map(|c| c.to_ttlv_at(bindings, path))
                    .collect::<Result<_, _>>()?,
            ),
            XmlValue::Value(v) => v.clone(),
            XmlValue::Placeholder {
                item_type,
                placeholder,
            } => bindings
                .resolve(placeholder, *item_type)
                .ok_or_else(|| XmlError::Unbound {
                    path: path.clone(),
                    name: placeholder.0.clone(),
                })?,
        };
        path.truncate(len);
        Ok(Ttlv::new(self.tag, value))
    }
}

fn push_path(path: &mut String, tag: Tag) {
    path.push('/');
    match tag_name(tag) {
        Some(n) => path.push_str(n),
        None => path.push_str(&tag_hex(tag)),
    }
}

/// Values for placeholders: named ones (`UNIQUE_IDENTIFIER_0` → a Text String) and the current
/// time for `$NOW±n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    /// Seconds since the Unix epoch that `$NOW` stands for.
    pub now: Option<i64>,
    values: HashMap<String, Value>,
}

impl Bindings {
    pub fn new() -> Bindings {
        Bindings::default()
    }

    /// Fixed stand-ins for every placeholder of `node` (text, bytes, integers, enumerations; a
    /// fixed `$NOW`), for tools that need the message without a server to fill it in: seeding
    /// the fuzz corpora, scanning the vectors.
    pub fn dummies(node: &XmlNode) -> Bindings {
        let mut b = Bindings::new();
        b.now = Some(1_600_000_000);
        node.for_each_placeholder(&mut |p, t| {
            let v = match t {
                ItemType::TextString => Value::TextString(format!("dummy {}", p.0)),
                ItemType::ByteString => Value::ByteString(p.0.clone().into_bytes().into()),
                ItemType::Integer => Value::Integer(1),
                ItemType::Enumeration => Value::Enumeration(1),
                _ => return,
            };
            b.bind(&p.0, v);
        });
        b
    }

    /// Binds `name` (without `$`) to `value`, replacing an earlier binding.
    pub fn bind(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_owned(), value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// The value a placeholder of type `item_type` stands for, if bound and of that type.
    pub fn resolve(&self, p: &Placeholder, item_type: ItemType) -> Option<Value> {
        if let Some(offset) = p.now_offset() {
            let t = self.now?.checked_add(offset)?;
            return match item_type {
                ItemType::DateTime => Some(Value::DateTime(t)),
                ItemType::DateTimeExtended => {
                    Some(Value::DateTimeExtended(t.checked_mul(1_000_000)?))
                }
                _ => None,
            };
        }
        self.values
            .get(&p.0)
            .filter(|v| v.item_type() == item_type)
            .cloned()
    }
}

/// How the values of an element are named, from its tag or (for a 1.x `AttributeValue`) from the
/// `AttributeName` next to it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Naming {
    enums: Option<EnumNames>,
    mask: Option<&'static EnumDef>,
}

impl Naming {
    pub(crate) fn of_tag(tag: Tag) -> Naming {
        Naming {
            enums: enum_names_for_tag(tag),
            mask: mask_for_tag(tag),
        }
    }

    /// For an `AttributeValue`: the attribute named by the `AttributeName` sibling (spec name,
    /// as 1.x writes it, or XML name).
    pub(crate) fn of_attribute(name: Option<&str>) -> Naming {
        match name.and_then(|n| tag_by_spec_name(n).or_else(|| tag_by_name(n))) {
            Some(tag) => Naming::of_tag(tag),
            None => Naming::default(),
        }
    }
}
