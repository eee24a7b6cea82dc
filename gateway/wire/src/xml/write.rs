//! Writes a [`Ttlv`] tree in the KMIP XML encoding, as the vectors write it.

use std::fmt::Write as _;

use time::{OffsetDateTime, UtcOffset};

use super::Naming;
use crate::names::{mask_flags, tag_hex, tag_name};
use crate::spec::tags;
use crate::ttlv::{Ttlv, Value};

/// Element name for a tag the specifications do not name.
const UNNAMED_ELEMENT: &str = "TTLV";

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
    push_attribute_value(out, &value_text(&t.value, naming));
    out.push_str("\"/>\n");
}

/// An attribute value escaped so that a reader gets it back unchanged: markup characters as
/// entities, and tab, line feed and carriage return as character references, since XML
/// attribute-value normalisation turns the literal characters into spaces.
fn push_attribute_value(out: &mut String, value: &str) {
    for c in quick_xml::escape::escape(value).chars() {
        match c {
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// The `value=` text of a primitive value.
pub(crate) fn value_text(v: &Value, naming: Naming) -> String {
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
