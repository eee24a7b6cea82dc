//! The KMIP JSON encoding (KMIP Profiles, "JSON Encoding", the MSGENC-JSON profile).
//!
//! Every item is an object `{"tag": .., "type": .., "value": ..}`: `tag` is the tag's XML name
//! (or `0x` and six hex digits for a tag without one), `type` the item type's XML name (absent
//! for a Structure), `value` an array of items for a Structure, else the value: Integer and
//! Interval as numbers (bit masks as flag names joined by `|`), Long Integer as a number when a
//! JSON double carries it exactly (within ±2^52) and as `0x` hex otherwise, Big Integer as `0x`
//! hex, Enumeration by name (or `0x` hex), Boolean as `true`/`false`, Text String as a string,
//! Byte String as hex, Date Time (Extended) in ISO 8601. The reader also takes the other forms the
//! profile allows: numbers as `0x` hex strings, enumerations as numbers.
//!
//! Value texts are the XML encoding's (`crate::xml`), so both encodings name enumerations, masks
//! and 1.x Attribute Values (by their sibling Attribute Name) the same way.

use serde_json::{Map, Number, Value as Json};
use thiserror::Error;

use crate::names::{parse_tag_hex, tag_by_name, tag_hex, tag_name};
use crate::spec::tags;
use crate::ttlv::{ItemType, Tag, Ttlv, Value};
use crate::xml::{parse_value, value_text, Naming};

/// Largest Long Integer written as a JSON number: a double carries integers up to 2^53 exactly,
/// and the profile writes larger ones as hex so no reader rounds them.
const MAX_JSON_SAFE_INTEGER: i64 = 1 << 52;

/// Everything that can be wrong with a KMIP JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JsonError {
    #[error("JSON syntax error: {0}")]
    Syntax(String),
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
}

fn invalid(path: &str, what: impl Into<String>) -> JsonError {
    JsonError::Invalid {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// Writes a TTLV tree in the KMIP JSON encoding (compact, one line).
pub fn to_json_string(t: &Ttlv) -> String {
    to_json(t, Naming::of_tag(t.tag)).to_string()
}

fn to_json(t: &Ttlv, naming: Naming) -> Json {
    let mut obj = Map::new();
    let tag = tag_name(t.tag).map_or_else(|| tag_hex(t.tag), str::to_owned);
    obj.insert("tag".into(), Json::String(tag));
    let value = match &t.value {
        Value::Structure(items) => {
            let attr_name = attribute_name_of(t.tag, items.iter().map(|c| (c.tag, c.as_text())));
            Json::Array(
                items
                    .iter()
                    .map(|c| to_json(c, child_naming(c.tag, attr_name)))
                    .collect(),
            )
        }
        v => {
            obj.insert(
                "type".into(),
                Json::String(v.item_type().xml_name().to_owned()),
            );
            primitive_to_json(v, naming)
        }
    };
    obj.insert("value".into(), value);
    Json::Object(obj)
}

fn primitive_to_json(v: &Value, naming: Naming) -> Json {
    match v {
        Value::Integer(i) => {
            let text = value_text(v, naming);
            if text.parse::<i32>().is_ok() {
                Json::Number(Number::from(*i))
            } else {
                // Mask flags: the XML encoding separates them by spaces, JSON by `|`.
                Json::String(text.replace(' ', "|"))
            }
        }
        Value::LongInteger(l) if l.unsigned_abs() <= MAX_JSON_SAFE_INTEGER as u64 => {
            Json::Number(Number::from(*l))
        }
        Value::LongInteger(l) => Json::String(format!("0x{l:016x}")),
        Value::BigInteger(_) => Json::String(format!("0x{}", value_text(v, naming))),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Interval(i) => Json::Number(Number::from(*i)),
        _ => Json::String(value_text(v, naming)),
    }
}

/// The Attribute Name a 1.x `Attribute` structure gives its `AttributeValue`.
fn attribute_name_of<'a>(
    tag: Tag,
    mut children: impl Iterator<Item = (Tag, Option<&'a str>)>,
) -> Option<&'a str> {
    if tag != tags::ATTRIBUTE {
        return None;
    }
    children
        .find(|(t, _)| *t == tags::ATTRIBUTE_NAME)
        .and_then(|(_, name)| name)
}

fn child_naming(tag: Tag, attribute_name: Option<&str>) -> Naming {
    if tag == tags::ATTRIBUTE_VALUE {
        Naming::of_attribute(attribute_name)
    } else {
        Naming::of_tag(tag)
    }
}

/// Parses one KMIP JSON item (e.g. a whole `RequestMessage`) into its TTLV tree.
pub fn from_json_str(text: &str) -> Result<Ttlv, JsonError> {
    let json: Json = serde_json::from_str(text).map_err(|e| JsonError::Syntax(e.to_string()))?;
    let top = Naming::of_tag(tag_of(&json, "")?);
    from_json(&json, &mut String::new(), top)
}

fn tag_of(json: &Json, path: &str) -> Result<Tag, JsonError> {
    let Some(obj) = json.as_object() else {
        return Err(invalid(path, "an item is a JSON object"));
    };
    let Some(tag) = obj.get("tag").and_then(Json::as_str) else {
        return Err(invalid(path, "an item needs a \"tag\" string"));
    };
    tag_by_name(tag)
        .or_else(|| parse_tag_hex(tag))
        .ok_or_else(|| invalid(path, format!("unknown tag \"{tag}\"")))
}

/// Recursive over the parsed document, whose depth serde_json bounds (128 arrays and objects,
/// 64 items): a hostile nesting is a syntax error before it reaches this stack.
fn from_json(json: &Json, path: &mut String, naming: Naming) -> Result<Ttlv, JsonError> {
    let tag = tag_of(json, path)?;
    let len = path.len();
    path.push('/');
    path.push_str(&tag_name(tag).map_or_else(|| tag_hex(tag), str::to_owned));
    // `tag_of` checked that this is an object.
    let obj = json.as_object().cloned().unwrap_or_default();
    if let Some(key) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "tag" | "type" | "value"))
    {
        return Err(invalid(path, format!("unknown member \"{key}\"")));
    }
    let item_type = match obj.get("type") {
        None => ItemType::Structure,
        Some(Json::String(t)) => ItemType::from_xml_name(t)
            .ok_or_else(|| invalid(path, format!("unknown type \"{t}\"")))?,
        Some(_) => return Err(invalid(path, "\"type\" is a string")),
    };
    let Some(value) = obj.get("value") else {
        return Err(invalid(path, "missing \"value\""));
    };
    let value = if item_type == ItemType::Structure {
        let Json::Array(items) = value else {
            return Err(invalid(path, "a Structure's value is an array"));
        };
        let attr_name = attribute_name_of(
            tag,
            items.iter().map(|c| {
                let name = c.get("value").and_then(Json::as_str);
                (tag_of(c, "").unwrap_or(Tag(0)), name)
            }),
        );
        let mut children = Vec::with_capacity(items.len());
        for c in items {
            let child_tag = tag_of(c, path)?;
            children.push(from_json(c, path, child_naming(child_tag, attr_name))?);
        }
        Value::Structure(children)
    } else {
        primitive_from_json(item_type, value, naming).map_err(|what| invalid(path, what))?
    };
    path.truncate(len);
    Ok(Ttlv::new(tag, value))
}

fn primitive_from_json(item_type: ItemType, json: &Json, naming: Naming) -> Result<Value, String> {
    match (item_type, json) {
        (ItemType::TextString, Json::String(s)) => Ok(Value::TextString(s.clone())),
        (ItemType::TextString, _) => Err("a TextString's value is a string".into()),
        (ItemType::Boolean, Json::Bool(b)) => Ok(Value::Boolean(*b)),
        (ItemType::Integer, Json::String(s)) => {
            // Mask flags are joined by `|` in JSON, by spaces in the XML reader's syntax.
            parse_value(item_type, &s.replace('|', " "), naming)
        }
        (_, Json::String(s)) => parse_value(item_type, s, naming),
        (_, Json::Number(n)) => number_value(item_type, n),
        _ => Err(format!(
            "a {item_type:?}'s value is not {}",
            match json {
                Json::Null => "null",
                Json::Bool(_) => "a boolean",
                Json::Array(_) => "an array",
                _ => "an object",
            }
        )),
    }
}

fn number_value(item_type: ItemType, n: &Number) -> Result<Value, String> {
    let whole = n
        .as_i64()
        .ok_or_else(|| format!("{n} is not a whole number a {item_type:?} can hold"))?;
    let out_of_range = || format!("{n} is out of range for a {item_type:?}");
    Ok(match item_type {
        ItemType::Integer => Value::Integer(i32::try_from(whole).map_err(|_| out_of_range())?),
        ItemType::LongInteger => Value::LongInteger(whole),
        ItemType::Enumeration => {
            Value::Enumeration(u32::try_from(whole).map_err(|_| out_of_range())?)
        }
        ItemType::Interval => Value::Interval(u32::try_from(whole).map_err(|_| out_of_range())?),
        ItemType::DateTime => Value::DateTime(whole),
        _ => return Err(format!("a {item_type:?}'s value is not a number")),
    })
}

#[cfg(test)]
mod tests;
