//! From raw elements to [`XmlNode`] trees: tags by name, types and values as the vectors write
//! them, and `$PLACEHOLDERS` where the vectors put them.

use bytes::Bytes;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::element::{message_elements, parse_elements, Element};
use super::{invalid, Naming, Placeholder, XmlError, XmlNode, XmlValue};
use crate::names::{parse_tag_hex, tag_by_name};
use crate::spec::tags;
use crate::ttlv::{ItemType, Tag, Value};

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

pub(crate) fn parse_value(
    item_type: ItemType,
    text: &str,
    naming: Naming,
) -> Result<Value, String> {
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
