//! The KMIP XML encoding (KMIP Profiles, "XML Encoding"), as used by the OASIS test vectors.
//!
//! An element is named by the tag's XML name (or `TTLV` with `tag="0x540001"` for a tag without
//! a name); `type=` gives the item type (Structure when absent) and `value=` the value:
//! enumerations by name (or `0x` hex), bit masks as space-separated flag names, byte strings and
//! Big Integers in hex, Date Times in ISO 8601. Test vectors put `$PLACEHOLDERS` where a value is
//! only known at run time (`$UNIQUE_IDENTIFIER_0`, `$NOW-3600`, ...): parsing gives an
//! [`XmlNode`] tree that keeps them, and [`XmlNode::to_ttlv`] fills them from [`Bindings`].
//! [`to_xml_string`] writes a [`Ttlv`] tree directly.

use std::collections::HashMap;
use std::fmt::Write as _;

use bytes::Bytes;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::names::{
    enum_names_for_tag, mask_flags, mask_for_tag, parse_tag_hex, tag_by_name, tag_by_spec_name,
    tag_hex, tag_name, EnumNames,
};
use crate::spec::{tags, EnumDef};
use crate::ttlv::{ItemType, Tag, Ttlv, Value};

/// Deepest element nesting accepted. Protects the stack of the recursive conversion; KMIP
/// messages nest fewer than 12 levels.
pub const MAX_XML_DEPTH: usize = 64;

/// Largest XML document parsed; callers reading a file check its size against it before reading.
/// Protects memory; the largest OASIS vector file is under 200 KiB.
pub const MAX_XML_SIZE: usize = 16 << 20;

/// Element name for a tag the specifications do not name.
const UNNAMED_ELEMENT: &str = "TTLV";

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

/// A raw XML element: its name, attributes and child elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn start_element(e: &BytesStart<'_>, offset: u64) -> Result<Element, XmlError> {
    let syntax = |message: String| XmlError::Syntax { offset, message };
    let name = std::str::from_utf8(e.name().as_ref())
        .map_err(|err| syntax(err.to_string()))?
        .to_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| syntax(err.to_string()))?;
        let key = std::str::from_utf8(a.key.as_ref())
            .map_err(|err| syntax(err.to_string()))?
            .to_owned();
        let value = a
            .unescape_value()
            .map_err(|err| syntax(err.to_string()))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
    })
}

/// Parses XML text into its top-level elements (comments, declarations and whitespace ignored).
pub(crate) fn parse_elements(text: &str) -> Result<Vec<Element>, XmlError> {
    if text.len() > MAX_XML_SIZE {
        return Err(invalid(
            "/",
            format!("document of {} bytes exceeds {MAX_XML_SIZE}", text.len()),
        ));
    }
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut top = Vec::new();
    loop {
        let offset = reader.buffer_position();
        let event = reader.read_event().map_err(|e| XmlError::Syntax {
            offset,
            message: e.to_string(),
        })?;
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(XmlError::Syntax {
                        offset,
                        message: format!("elements nested deeper than {MAX_XML_DEPTH}"),
                    });
                }
                stack.push(start_element(&e, offset)?);
            }
            Event::Empty(e) => {
                let el = start_element(&e, offset)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => top.push(el),
                }
            }
            Event::End(_) => {
                // quick-xml has checked that the end tag matches the open element.
                let Some(el) = stack.pop() else {
                    return Err(XmlError::Syntax {
                        offset,
                        message: "unbalanced end tag".into(),
                    });
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => top.push(el),
                }
            }
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
            Event::Text(_) | Event::CData(_) => {
                return Err(XmlError::Syntax {
                    offset,
                    message: "KMIP XML carries values in attributes, not in text".into(),
                })
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Syntax {
            offset: reader.buffer_position(),
            message: "unclosed element".into(),
        });
    }
    Ok(top)
}

/// The message elements of a document: the children of a `<KMIP>` root (as in the OASIS vector
/// files), or the root element itself.
pub(crate) fn message_elements(text: &str) -> Result<Vec<Element>, XmlError> {
    let mut top = parse_elements(text)?;
    if top.len() == 1 && top[0].name == "KMIP" {
        return Ok(top.remove(0).children);
    }
    Ok(top)
}

/// Whether `$NAME` values are placeholders (test vectors) or plain text (KMIP XML proper, where a
/// Text String may well start with `$`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    Recognised,
    Literal,
}

/// Parses every message of a test vector document: the `RequestMessage`/`ResponseMessage`
/// elements inside its `<KMIP>` root (as in the OASIS vector files), in document order,
/// placeholders recognised. Reading the file is the caller's: this crate does no I/O.
pub fn parse_document(text: &str) -> Result<Vec<XmlNode>, XmlError> {
    message_elements(text)?
        .iter()
        .map(|e| node_from_element(e, &mut String::new(), None, Placeholders::Recognised))
        .collect()
}

/// Parses a single element of KMIP XML (e.g. one `RequestMessage`); `$` has no special meaning.
pub fn parse_node(text: &str) -> Result<XmlNode, XmlError> {
    node_from_single(text, Placeholders::Literal)
}

/// Parses a single element written like a test vector message: `$NAME` values are placeholders.
pub fn parse_template(text: &str) -> Result<XmlNode, XmlError> {
    node_from_single(text, Placeholders::Recognised)
}

fn node_from_single(text: &str, placeholders: Placeholders) -> Result<XmlNode, XmlError> {
    let mut top = parse_elements(text)?;
    if top.len() != 1 {
        return Err(invalid(
            "/",
            format!("expected one element, found {}", top.len()),
        ));
    }
    node_from_element(&top.remove(0), &mut String::new(), None, placeholders)
}

/// The placeholder a vector value stands for: `$` then upper-case letters, digits and `_`,
/// optionally `+n`/`-n` (`$NOW-3600`).
fn placeholder_of(text: &str) -> Option<Placeholder> {
    let name = text.strip_prefix('$')?;
    let (word, offset) = match name.find(['+', '-']) {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (name, "0"),
    };
    let word_ok = word.starts_with(|c: char| c.is_ascii_uppercase())
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    let offset_ok = !offset.is_empty() && offset.chars().all(|c| c.is_ascii_digit());
    (word_ok && offset_ok).then(|| Placeholder(name.to_owned()))
}

/// How the values of an element are named, from its tag or (for a 1.x `AttributeValue`) from the
/// `AttributeName` next to it.
#[derive(Debug, Clone, Copy, Default)]
struct Naming {
    enums: Option<EnumNames>,
    mask: Option<&'static EnumDef>,
}

impl Naming {
    fn of_tag(tag: Tag) -> Naming {
        Naming {
            enums: enum_names_for_tag(tag),
            mask: mask_for_tag(tag),
        }
    }

    /// For an `AttributeValue`: the attribute named by the `AttributeName` sibling (spec name,
    /// as 1.x writes it, or XML name).
    fn of_attribute(name: Option<&str>) -> Naming {
        match name.and_then(|n| tag_by_spec_name(n).or_else(|| tag_by_name(n))) {
            Some(tag) => Naming::of_tag(tag),
            None => Naming::default(),
        }
    }
}

/// Converts a raw element (a message of a vector file) into its node.
pub(crate) fn node_from(e: &Element) -> Result<XmlNode, XmlError> {
    node_from_element(e, &mut String::new(), None, Placeholders::Recognised)
}

fn element_tag(e: &Element, path: &str) -> Result<Tag, XmlError> {
    if let Some(hex) = e.attr("tag") {
        return parse_tag_hex(hex)
            .ok_or_else(|| invalid(path, format!("tag=\"{hex}\" is not a 0x hex tag")));
    }
    tag_by_name(&e.name).ok_or_else(|| invalid(path, format!("unknown element <{}>", e.name)))
}

fn node_from_element(
    e: &Element,
    path: &mut String,
    attribute_name: Option<&str>,
    placeholders: Placeholders,
) -> Result<XmlNode, XmlError> {
    let len = path.len();
    path.push('/');
    path.push_str(&e.name);
    let tag = element_tag(e, path)?;
    let item_type = match e.attr("type") {
        None => ItemType::Structure,
        Some(t) => ItemType::from_xml_name(t)
            .ok_or_else(|| invalid(path, format!("unknown type \"{t}\"")))?,
    };
    let value = if item_type == ItemType::Structure {
        if e.attr("value").is_some() {
            return Err(invalid(path, "a Structure has no value attribute"));
        }
        // A 1.x Attribute names its value in a sibling: the AttributeValue needs it.
        let attr_name = if tag == tags::ATTRIBUTE {
            e.children
                .iter()
                .find(|c| c.name == "AttributeName")
                .and_then(|c| c.attr("value"))
        } else {
            None
        };
        let mut children = Vec::with_capacity(e.children.len());
        for c in &e.children {
            children.push(node_from_element(c, path, attr_name, placeholders)?);
        }
        XmlValue::Structure(children)
    } else {
        if !e.children.is_empty() {
            return Err(invalid(
                path,
                format!("a {item_type:?} has no child elements"),
            ));
        }
        let text = e
            .attr("value")
            .ok_or_else(|| invalid(path, "missing value attribute"))?;
        let placeholder = match placeholders {
            Placeholders::Recognised => placeholder_of(text),
            Placeholders::Literal => None,
        };
        if let Some(placeholder) = placeholder {
            XmlValue::Placeholder {
                item_type,
                placeholder,
            }
        } else {
            let naming = if tag == tags::ATTRIBUTE_VALUE {
                Naming::of_attribute(attribute_name)
            } else {
                Naming::of_tag(tag)
            };
            XmlValue::Value(
                parse_value(item_type, text, naming).map_err(|what| invalid(path, what))?,
            )
        }
    };
    path.truncate(len);
    Ok(XmlNode { tag, value })
}

fn parse_hex_u64(s: &str) -> Option<u64> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn parse_hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("\"{s}\" is not hex: {e}"))
}

/// Two's complement big-endian bytes sign-extended to a non-zero multiple of 8, as TTLV carries
/// them, so that a value read from XML equals the same value decoded from TTLV.
pub fn big_integer_wire_form(b: &[u8]) -> Bytes {
    let width = b.len().max(1).div_ceil(8) * 8;
    let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
        0xFF
    } else {
        0
    };
    let mut v = vec![fill; width - b.len()];
    v.extend_from_slice(b);
    Bytes::from(v)
}

fn parse_u32(text: &str, what: &str) -> Result<u32, String> {
    if let Some(v) = parse_hex_u64(text) {
        return u32::try_from(v).map_err(|_| format!("{what} \"{text}\" exceeds 32 bits"));
    }
    text.parse::<u32>()
        .map_err(|_| format!("{what} \"{text}\" is not a number"))
}

fn parse_value(item_type: ItemType, text: &str, naming: Naming) -> Result<Value, String> {
    Ok(match item_type {
        ItemType::Structure => return Err("a Structure has no value".into()),
        ItemType::Integer => {
            if let Ok(i) = text.parse::<i32>() {
                Value::Integer(i)
            } else if let Some(v) = parse_hex_u64(text) {
                // A hex Integer is its 32-bit pattern.
                Value::Integer(
                    u32::try_from(v).map_err(|_| format!("Integer \"{text}\" exceeds 32 bits"))?
                        as i32,
                )
            } else {
                let mask = naming
                    .mask
                    .ok_or_else(|| format!("Integer \"{text}\" is not a number"))?;
                let mut bits = 0u32;
                for flag in text.split_whitespace() {
                    bits |= match mask.values.iter().find(|(n, _)| *n == flag) {
                        Some((_, v)) => *v,
                        None => parse_u32(flag, mask.name)?,
                    };
                }
                Value::Integer(bits as i32)
            }
        }
        ItemType::LongInteger => match parse_hex_u64(text) {
            Some(v) => Value::LongInteger(v as i64),
            None => Value::LongInteger(
                text.parse()
                    .map_err(|_| format!("LongInteger \"{text}\" is not a number"))?,
            ),
        },
        ItemType::BigInteger => {
            let hex = text
                .strip_prefix("0x")
                .or_else(|| text.strip_prefix("0X"))
                .unwrap_or(text);
            Value::BigInteger(big_integer_wire_form(&parse_hex_bytes(hex)?))
        }
        ItemType::Enumeration => {
            let named = naming.enums.and_then(|n| n.value_of(text));
            match named {
                Some(v) => Value::Enumeration(v),
                None => Value::Enumeration(parse_u32(text, "Enumeration").map_err(|_| {
                    format!("Enumeration \"{text}\" is neither a known name nor a number")
                })?),
            }
        }
        ItemType::Boolean => match text {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => match parse_hex_u64(text) {
                Some(0) => Value::Boolean(false),
                Some(1) => Value::Boolean(true),
                _ => return Err(format!("Boolean \"{text}\" is neither true nor false")),
            },
        },
        ItemType::TextString => Value::TextString(text.to_owned()),
        ItemType::ByteString => Value::ByteString(Bytes::from(parse_hex_bytes(text)?)),
        ItemType::DateTime => match parse_hex_u64(text) {
            Some(v) => Value::DateTime(v as i64),
            None => Value::DateTime(parse_datetime(text)?.unix_timestamp()),
        },
        ItemType::DateTimeExtended => match parse_hex_u64(text) {
            Some(v) => Value::DateTimeExtended(v as i64),
            None => {
                let nanos = parse_datetime(text)?.unix_timestamp_nanos();
                Value::DateTimeExtended(
                    i64::try_from(nanos.div_euclid(1000))
                        .map_err(|_| format!("DateTimeExtended \"{text}\" out of range"))?,
                )
            }
        },
        ItemType::Interval => Value::Interval(parse_u32(text, "Interval")?),
    })
}

fn parse_datetime(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("\"{text}\" is not ISO 8601: {e}"))
}

/// Writes a TTLV tree in the KMIP XML encoding, indented by two spaces per level.
pub fn to_xml_string(t: &Ttlv) -> String {
    let mut out = String::with_capacity(t.encoded_len() * 2);
    write_item(&mut out, t, 0, Naming::of_tag(t.tag));
    out
}

fn write_item(out: &mut String, t: &Ttlv, depth: usize, naming: Naming) {
    for _ in 0..depth {
        out.push_str("  ");
    }
    out.push('<');
    let name = tag_name(t.tag);
    match name {
        Some(n) => out.push_str(n),
        None => {
            out.push_str(UNNAMED_ELEMENT);
            let _ = write!(out, " tag=\"{}\"", tag_hex(t.tag));
        }
    }
    if let Value::Structure(items) = &t.value {
        if items.is_empty() {
            out.push_str("/>\n");
            return;
        }
        out.push_str(">\n");
        let attr_name = if t.tag == tags::ATTRIBUTE {
            items
                .iter()
                .find(|c| c.tag == tags::ATTRIBUTE_NAME)
                .and_then(Ttlv::as_text)
        } else {
            None
        };
        for c in items {
            let naming = if c.tag == tags::ATTRIBUTE_VALUE {
                Naming::of_attribute(attr_name)
            } else {
                Naming::of_tag(c.tag)
            };
            write_item(out, c, depth + 1, naming);
        }
        for _ in 0..depth {
            out.push_str("  ");
        }
        out.push_str("</");
        out.push_str(name.unwrap_or(UNNAMED_ELEMENT));
        out.push_str(">\n");
        return;
    }
    let _ = write!(out, " type=\"{}\" value=\"", t.value.item_type().xml_name());
    out.push_str(&quick_xml::escape::escape(value_text(&t.value, naming)));
    out.push_str("\"/>\n");
}

/// The `value=` text of a primitive value.
fn value_text(v: &Value, naming: Naming) -> String {
    match v {
        Value::Structure(_) => String::new(),
        Value::Integer(i) => match naming.mask {
            Some(mask) if *i != 0 => {
                let (mut flags, rest) = mask_flags(mask, *i as u32);
                let rest_hex = format!("0x{rest:08x}");
                if rest != 0 {
                    flags.push(&rest_hex);
                }
                flags.join(" ")
            }
            _ => i.to_string(),
        },
        Value::LongInteger(i) => i.to_string(),
        Value::BigInteger(b) => hex::encode(b),
        Value::Enumeration(e) => match naming.enums.and_then(|n| n.name_of(*e)) {
            Some(name) => name.to_owned(),
            None => format!("0x{e:08x}"),
        },
        Value::Boolean(b) => b.to_string(),
        Value::TextString(s) => s.clone(),
        Value::ByteString(b) => hex::encode(b),
        Value::DateTime(d) => format_datetime(*d, 0).unwrap_or_else(|| format!("0x{:016x}", *d)),
        Value::DateTimeExtended(us) => {
            format_datetime(us.div_euclid(1_000_000), us.rem_euclid(1_000_000))
                .unwrap_or_else(|| format!("0x{:016x}", *us))
        }
        Value::Interval(i) => i.to_string(),
    }
}

/// ISO 8601 in UTC, as the vectors write it (`2008-03-14T11:56:40+00:00`); microseconds only
/// when `micros` is set. `None` outside the years the `time` crate formats (then hex is written).
fn format_datetime(secs: i64, micros: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .to_offset(UtcOffset::UTC);
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if micros != 0 {
        let _ = write!(s, ".{micros:06}");
    }
    s.push_str("+00:00");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(t: &Ttlv) -> Ttlv {
        let text = to_xml_string(t);
        parse_node(&text)
            .unwrap()
            .to_ttlv(&Bindings::new())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn values_are_written_as_the_vectors_write_them() {
        let t = Ttlv::structure(
            tags::ATTRIBUTE,
            vec![
                Ttlv::new(
                    tags::ATTRIBUTE_NAME,
                    Value::TextString("Cryptographic Usage Mask".into()),
                ),
                Ttlv::new(tags::ATTRIBUTE_VALUE, Value::Integer(0x0C)),
            ],
        );
        let text = to_xml_string(&t);
        assert!(text.contains(r#"<AttributeValue type="Integer" value="Encrypt Decrypt"/>"#));
        assert_eq!(roundtrip(&t), t);
        let d = Ttlv::new(tags::ACTIVATION_DATE, Value::DateTime(0x47DA_67F8));
        assert!(to_xml_string(&d).contains(r#"value="2008-03-14T11:56:40+00:00""#));
    }

    #[test]
    fn unknown_tags_and_values_round_trip_in_hex() {
        let t = Ttlv::structure(
            Tag(0x54_0001),
            vec![
                Ttlv::new(Tag(0x42_ffff), Value::Enumeration(7)),
                Ttlv::new(tags::OBJECT_TYPE, Value::Enumeration(0x8000_0001)),
                Ttlv::new(tags::CRYPTOGRAPHIC_USAGE_MASK, Value::Integer(-0x7fff_fffc)),
                Ttlv::new(tags::ACTIVATION_DATE, Value::DateTime(i64::MIN)),
                Ttlv::new(tags::ACTIVATION_DATE, Value::DateTimeExtended(-1)),
                Ttlv::new(tags::NAME_VALUE, Value::TextString("<a & \"b\">".into())),
                Ttlv::new(tags::MODULUS, Value::BigInteger(Bytes::from(vec![0xff; 8]))),
            ],
        );
        let text = to_xml_string(&t);
        assert!(text.contains(r#"<TTLV tag="0x540001">"#), "{text}");
        assert!(text.contains(r#"<TTLV tag="0x42ffff" type="Enumeration" value="0x00000007"/>"#));
        assert_eq!(roundtrip(&t), t);
    }

    #[test]
    fn attribute_values_are_named_by_their_attribute_name() {
        let xml = r#"<Attribute>
            <AttributeName type="TextString" value="Cryptographic Algorithm"/>
            <AttributeValue type="Enumeration" value="AES"/>
        </Attribute>"#;
        let t = parse_node(xml).unwrap().to_ttlv(&Bindings::new()).unwrap();
        assert_eq!(t.items()[1].value, Value::Enumeration(3));
    }

    #[test]
    fn placeholders_are_kept_and_resolved() {
        let xml = r#"<ResponseHeader>
            <TimeStamp type="DateTime" value="$NOW-3600"/>
            <UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>
        </ResponseHeader>"#;
        let node = parse_template(xml).unwrap();
        let mut b = Bindings::new();
        assert!(matches!(
            node.to_ttlv(&b),
            Err(XmlError::Unbound { ref name, .. }) if name == "NOW-3600"
        ));
        b.now = Some(10_000);
        b.bind("UNIQUE_IDENTIFIER_0", Value::TextString("id-1".into()));
        let t = node.to_ttlv(&b).unwrap();
        assert_eq!(t.items()[0].value, Value::DateTime(6_400));
        assert_eq!(t.items()[1].as_text(), Some("id-1"));
    }

    /// Fuzzing found this: a Text String starting with `$` came back from XML as a placeholder.
    #[test]
    fn dollar_text_is_text_outside_templates() {
        let t = Ttlv::new(
            tags::UNIQUE_IDENTIFIER,
            Value::TextString("$ummy UNIQUE_IDENTIFIER_0".into()),
        );
        assert_eq!(roundtrip(&t), t);
        let t = Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString("$NOW".into()));
        assert_eq!(roundtrip(&t), t);
        let xml = r#"<UniqueIdentifier type="TextString" value="$ummy"/>"#;
        assert!(matches!(
            parse_template(xml).unwrap().value,
            XmlValue::Value(_)
        ));
        let xml = r#"<UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_2"/>"#;
        assert!(matches!(
            parse_template(xml).unwrap().value,
            XmlValue::Placeholder { .. }
        ));
    }

    #[test]
    fn errors_name_the_element_path() {
        let err = parse_node(
            r#"<RequestMessage><BatchItem><Operation type="Enumeration" value="Fly"/></BatchItem></RequestMessage>"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/RequestMessage/BatchItem/Operation"), "{err}");
        assert!(parse_node(r#"<Nope/>"#).is_err());
        assert!(parse_node(r#"<BatchCount type="Integer" value="x"/>"#).is_err());
        assert!(parse_node(r#"<BatchCount type="Integer">1</BatchCount>"#).is_err());
        assert!(parse_node(r#"<BatchCount type="Bogus" value="1"/>"#).is_err());
        let n = MAX_XML_DEPTH + 1;
        let deep = "<Attribute>".repeat(n) + &"</Attribute>".repeat(n);
        let err = parse_node(&deep).unwrap_err().to_string();
        assert!(err.contains("deeper"), "{err}");
    }
}
