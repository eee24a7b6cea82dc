//! Rendering (pure): a redacted message as the indented text tree of the `.txt` file and as the
//! KMIP XML of the `.xml` file, plus the names and stamps the files use.

use kmip_wire::names::{
    enum_names_for_tag, mask_flags, mask_for_tag, tag_by_name, tag_by_spec_name, tag_hex, tag_name,
    EnumNames,
};
use kmip_wire::spec::{tags, EnumDef};
use kmip_wire::ttlv::{ItemType, Tag, Value};
use kmip_wire::xml::to_xml_string;
use std::fmt::Write as _;
use std::time::SystemTime;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::redact::Shown;

/// Characters of the user name kept in a file name.
pub(super) const MAX_USER_IN_FILE_NAME: usize = 64;

fn element_name(tag: Tag) -> String {
    tag_name(tag).map_or_else(|| tag_hex(tag), str::to_owned)
}

/// The Attribute Name among an Attribute's items: it names the values of its Attribute Value.
fn attribute_name<'a>(items: &[Shown<'a>]) -> Option<&'a str> {
    items.iter().find_map(|s| match s {
        Shown::Plain(t) if t.tag == tags::ATTRIBUTE_NAME => t.as_text(),
        _ => None,
    })
}

/// How an item's values are named: by its tag, or for an Attribute Value by its Attribute Name.
fn naming(tag: Tag, attr_name: Option<&str>) -> (Option<EnumNames>, Option<&'static EnumDef>) {
    let tag = if tag == tags::ATTRIBUTE_VALUE {
        match attr_name.and_then(|n| tag_by_spec_name(n).or_else(|| tag_by_name(n))) {
            Some(t) => t,
            None => return (None, None),
        }
    } else {
        tag
    };
    (enum_names_for_tag(tag), mask_for_tag(tag))
}

fn datetime_text(secs: i64, micros: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.replace_microsecond(micros.clamp(0, 999_999) as u32).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
    {
        Some(s) => s,
        None => format!("0x{secs:016x}"),
    }
}

/// The text of a primitive value.
fn value_text(v: &Value, tag: Tag, attr_name: Option<&str>) -> String {
    let (enums, mask) = naming(tag, attr_name);
    match v {
        Value::Structure(_) => String::new(),
        Value::Integer(i) => match mask {
            Some(mask) if *i != 0 => {
                let (mut flags, rest) = mask_flags(mask, *i as u32);
                let rest_hex = format!("0x{rest:08x}");
                if rest != 0 {
                    flags.push(&rest_hex);
                }
                format!("{} ({i})", flags.join(" | "))
            }
            _ => i.to_string(),
        },
        Value::LongInteger(i) => i.to_string(),
        Value::BigInteger(b) | Value::ByteString(b) => hex::encode(b),
        Value::Enumeration(e) => match enums.and_then(|n| n.name_of(*e)) {
            Some(name) => name.to_owned(),
            None => format!("0x{e:08x}"),
        },
        Value::Boolean(b) => b.to_string(),
        // Debug quoting: control characters a client sent cannot reach a terminal raw.
        Value::TextString(s) => format!("{s:?}"),
        Value::DateTime(d) => datetime_text(*d, 0),
        Value::DateTimeExtended(us) => {
            datetime_text(us.div_euclid(1_000_000), us.rem_euclid(1_000_000))
        }
        Value::Interval(i) => format!("{i} s"),
    }
}

/// The indented text tree of a message: `Name [Type] value`, two spaces per level.
pub fn text_tree(shown: &Shown<'_>) -> String {
    let mut out = String::new();
    text_item(&mut out, shown, 0, None);
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn text_item(out: &mut String, shown: &Shown<'_>, depth: usize, attr_name: Option<&str>) {
    indent(out, depth);
    match shown {
        Shown::Plain(t) => match &t.value {
            Value::Structure(items) => {
                let _ = writeln!(out, "{} [Structure]", element_name(t.tag));
                let children: Vec<Shown<'_>> = items.iter().map(Shown::Plain).collect();
                text_children(out, t.tag, &children, depth);
            }
            v => {
                let _ = writeln!(
                    out,
                    "{} [{}] {}",
                    element_name(t.tag),
                    v.item_type().xml_name(),
                    value_text(v, t.tag, attr_name)
                );
            }
        },
        Shown::Structure { tag, items } => {
            let _ = writeln!(out, "{} [Structure]", element_name(*tag));
            text_children(out, *tag, items, depth);
        }
        Shown::Redacted {
            tag,
            item_type,
            len,
        } => {
            let _ = writeln!(
                out,
                "{} [{}] <redacted {len} bytes>",
                element_name(*tag),
                item_type.xml_name()
            );
        }
        Shown::Named {
            tag,
            item_type,
            name,
        } => {
            let _ = writeln!(
                out,
                "{} [{}] {name}",
                element_name(*tag),
                item_type.xml_name()
            );
        }
    }
}

fn text_children(out: &mut String, tag: Tag, items: &[Shown<'_>], depth: usize) {
    let attr_name = if tag == tags::ATTRIBUTE {
        attribute_name(items)
    } else {
        None
    };
    for c in items {
        text_item(out, c, depth + 1, attr_name);
    }
}

/// The XML placeholder of the `n`-th redacted value of a file (unique, so a replay binds each
/// one separately).
pub fn placeholder(len: usize, n: usize) -> String {
    format!("$REDACTED_{len}_BYTES_{n}")
}

/// The KMIP XML of a message, redacted values written as placeholders numbered from `*counter`.
pub fn xml_tree(shown: &Shown<'_>, counter: &mut usize) -> String {
    let mut out = String::new();
    xml_item(&mut out, shown, 0, counter);
    out
}

fn xml_open(out: &mut String, tag: Tag) {
    out.push('<');
    match tag_name(tag) {
        Some(n) => out.push_str(n),
        None => {
            let _ = write!(out, "TTLV tag=\"{}\"", tag_hex(tag));
        }
    }
}

/// One `<Tag type=".." value=".."/>` line.
fn xml_leaf(out: &mut String, depth: usize, tag: Tag, item_type: ItemType, value: &str) {
    indent(out, depth);
    xml_open(out, tag);
    let _ = writeln!(
        out,
        " type=\"{}\" value=\"{value}\"/>",
        item_type.xml_name()
    );
}

fn xml_item(out: &mut String, shown: &Shown<'_>, depth: usize, counter: &mut usize) {
    match shown {
        Shown::Plain(t) => {
            // The wire crate's writer, re-indented: exactly what the XML reader expects.
            for line in to_xml_string(t).lines() {
                indent(out, depth);
                out.push_str(line);
                out.push('\n');
            }
        }
        Shown::Structure { tag, items } => {
            indent(out, depth);
            xml_open(out, *tag);
            out.push_str(">\n");
            for c in items {
                xml_item(out, c, depth + 1, counter);
            }
            indent(out, depth);
            out.push_str("</");
            out.push_str(tag_name(*tag).unwrap_or("TTLV"));
            out.push_str(">\n");
        }
        Shown::Redacted {
            tag,
            item_type,
            len,
        } => {
            xml_leaf(out, depth, *tag, *item_type, &placeholder(*len, *counter));
            *counter += 1;
        }
        Shown::Named {
            tag,
            item_type,
            name,
        } => xml_leaf(out, depth, *tag, *item_type, name),
    }
}

/// Text fit for an XML comment (which may not contain `--`).
pub(super) fn xml_comment(text: &str) -> String {
    let mut t = text.replace("--", "- -");
    while t.contains("--") {
        t = t.replace("--", "- -");
    }
    format!("<!-- {t} -->\n")
}

/// A user name as a file name part: ASCII letters, digits, `.`, `_`, `-`; the rest `_`.
pub(super) fn file_name_part(user: &str) -> String {
    let s: String = user
        .chars()
        .take(MAX_USER_IN_FILE_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

pub(super) fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

/// `20250601T101500.123Z`: sorts by time, no characters file systems dislike.
pub(super) fn file_stamp(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
