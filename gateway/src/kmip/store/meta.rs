//! The metadata blob: the opaque bytes the backend stores for an object (its owner and
//! attributes), one TTLV structure of private extension tags.
//!
//! Format 2, written since issue 17, is compact TTLV (`compact.rs`: no padding, short lengths)
//! under its own root tag: each attribute is one item under its own tag when its name is a
//! standard tag (`0x42xxxx`), preceded by an `INDEX` item when it carries a KMIP 1.x Attribute
//! Index; any other name (custom, vendor, unknown, extension tag) is wrapped as in format 1. The
//! gateway holds the blob itself as an object's only copy of its attributes, and reads one
//! attribute by stepping over item headers, decoding only that item.
//!
//! Format 1 wrapped every attribute (`ATTRIBUTE { NAME_KEY "t:42000a", INDEX?, VALUE }`); it is
//! still read, and an object read in it is written in format 2 on its next write.

use super::compact::{self, Extent};
use bytes::{Bytes, BytesMut};
use kmip_wire::model::{Attribute, AttributeName};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Tag, Ttlv, Value};

/// Private extension tags of the metadata blob (KMIP reserves 0x54xxxx for extensions).
/// The root of a format-1 blob (TTLV).
const META_RECORD: Tag = Tag(0x54_FF00);
/// The root of a format-2 blob (compact TTLV): another tag, since both encodings begin alike.
const META_RECORD_2: Tag = Tag(0x54_FF07);
const META_VERSION: Tag = Tag(0x54_FF01);
const META_OWNER: Tag = Tag(0x54_FF02);
const META_ATTRIBUTE: Tag = Tag(0x54_FF03);
pub(super) const META_NAME_KEY: Tag = Tag(0x54_FF04);
const META_INDEX: Tag = Tag(0x54_FF05);
pub(super) const META_VALUE: Tag = Tag(0x54_FF06);
/// Stands for the Unique Identifier attribute when it is the object's own identifier (always,
/// but for a 1.x index on it), which the object holds anyway: 5 bytes instead of 41.
const META_UID: Tag = Tag(0x54_FF08);
/// The format written; a blob of a format not listed in [`parse`] is refused, not guessed at.
const META_FORMAT: i32 = 2;
/// The first format, wrapping every attribute with a text name key; still read.
const META_FORMAT_1: i32 = 1;

/// Tags whose attributes are stored bare: the standard ones. Anything else (an extension tag
/// could collide with the blob's own) goes in a wrapper.
fn is_standard(tag: Tag) -> bool {
    tag.0 >> 16 == 0x42
}

/// The decoding limits of a blob the gateway wrote itself: its size was bounded by the
/// backend's `MAX_META_BYTES` when written, so only the depth limit matters.
fn limits() -> Limits {
    Limits {
        max_message_size: usize::MAX,
        ..Limits::default()
    }
}

/// The text key that names a non-standard attribute in a wrapper (and every one in format 1).
pub(super) fn name_key(name: &AttributeName) -> String {
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

/// The format-2 blob of the object `uid` owned by `owner` with `attributes`, in their order.
pub(super) fn encode(owner: &str, uid: &str, attributes: &[Attribute]) -> Bytes {
    let mut items = Vec::with_capacity(attributes.len() + 2);
    items.push(Ttlv::new(META_VERSION, Value::Integer(META_FORMAT)));
    items.push(Ttlv::new(META_OWNER, Value::TextString(owner.to_owned())));
    for a in attributes {
        match &a.name {
            AttributeName::Tag(tags::UNIQUE_IDENTIFIER)
                if a.index.is_none() && a.as_text() == Some(uid) =>
            {
                items.push(Ttlv::new(META_UID, Value::Boolean(true)));
            }
            AttributeName::Tag(t) if is_standard(*t) => {
                if let Some(i) = a.index {
                    items.push(Ttlv::new(META_INDEX, Value::Integer(i)));
                }
                items.push(Ttlv::new(*t, a.value.clone()));
            }
            name => {
                let mut fields = vec![Ttlv::new(META_NAME_KEY, Value::TextString(name_key(name)))];
                if let Some(i) = a.index {
                    fields.push(Ttlv::new(META_INDEX, Value::Integer(i)));
                }
                fields.push(Ttlv::new(META_VALUE, a.value.clone()));
                items.push(Ttlv::structure(META_ATTRIBUTE, fields));
            }
        }
    }
    let mut out = BytesMut::new();
    // Every tag is a blob constant or a standard one (`is_standard`): all fit in 24 bits.
    compact::write(&mut out, &Ttlv::structure(META_RECORD_2, items));
    // Its own exact-size buffer: the object keeps it for its life.
    Bytes::copy_from_slice(&out)
}

/// What a stored blob holds.
pub(super) enum Parsed {
    /// A format-2 blob, kept as it is.
    Compact { owner: String },
    /// A format-1 blob, decoded: the caller re-encodes it.
    Legacy {
        owner: String,
        attributes: Vec<Attribute>,
    },
}

const UNKNOWN: &str = "not a kmip-gateway metadata record of a known format";

/// The root item of a format-2 blob, if `meta` is one whole.
fn root(meta: &[u8]) -> Option<Extent> {
    let mut end = 0;
    let root = compact::next_item(meta, &mut end)?;
    (root.tag == META_RECORD_2 && end == meta.len()).then_some(root)
}

/// Checks a stored blob completely (every item decodes), so that reading it later cannot fail.
pub(super) fn parse(meta: &Bytes) -> Result<Parsed, String> {
    if let Some(root) = root(meta) {
        if !compact::check(meta, root.value(), 0) {
            return Err("damaged metadata record".into());
        }
        let mut owner = None;
        let mut format = None;
        let mut items = Items::new(meta);
        for item in items.by_ref() {
            if item.tag == META_VERSION {
                format = compact::read(meta, &item.extent).and_then(|t| t.as_i32());
            } else if item.tag == META_OWNER {
                owner =
                    compact::read(meta, &item.extent).and_then(|t| t.as_text().map(str::to_owned));
            } else if item.tag == META_ATTRIBUTE {
                item.decode(meta, "")
                    .ok_or("attribute without a valid name or value")?;
            }
        }
        if format != Some(META_FORMAT) {
            return Err(UNKNOWN.into());
        }
        // The walk stops early only at an `INDEX` item that is not followed by an attribute.
        if items.pos != items.meta.len() {
            return Err("attribute index without its attribute".into());
        }
        return Ok(Parsed::Compact {
            owner: owner.ok_or("no owner")?,
        });
    }
    let root = decode(meta, &limits()).map_err(|e| e.to_string())?;
    let format = root.child(META_VERSION).and_then(Ttlv::as_i32);
    if root.tag != META_RECORD || format != Some(META_FORMAT_1) {
        return Err(UNKNOWN.into());
    }
    let owner = root
        .child(META_OWNER)
        .and_then(Ttlv::as_text)
        .ok_or("no owner")?
        .to_owned();
    let attributes = root
        .children(META_ATTRIBUTE)
        .map(|a| unwrap_attribute(a, None).ok_or("attribute without a valid name or value"))
        .collect::<Result<_, _>>()?;
    Ok(Parsed::Legacy { owner, attributes })
}

/// The attribute a wrapper holds; `index` is one given before it (format 2 puts it inside).
fn unwrap_attribute(a: &Ttlv, index: Option<i32>) -> Option<Attribute> {
    let name = a
        .child(META_NAME_KEY)
        .and_then(Ttlv::as_text)
        .and_then(parse_name_key)?;
    let value = a.child(META_VALUE)?.value.clone();
    Some(Attribute {
        name,
        index: a.child(META_INDEX).and_then(Ttlv::as_i32).or(index),
        value,
    })
}

/// One top-level item of a format-2 blob: an attribute (bare or wrapped), or the blob's own.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) tag: Tag,
    /// The Attribute Index an `INDEX` item gave a bare attribute.
    pub(super) index: Option<i32>,
    extent: Extent,
}

impl Item {
    /// Whether this item is certainly not the attribute `name` (only headers are read).
    pub(super) fn cannot_be(&self, name: &AttributeName) -> bool {
        match name {
            AttributeName::Tag(tags::UNIQUE_IDENTIFIER) => {
                self.tag != tags::UNIQUE_IDENTIFIER && self.tag != META_UID
            }
            AttributeName::Tag(t) if is_standard(*t) => self.tag != *t,
            _ => self.tag != META_ATTRIBUTE,
        }
    }

    /// The attribute this item holds, decoded; `None` for the blob's own items. `uid` is the
    /// object's identifier.
    pub(super) fn decode(&self, meta: &Bytes, uid: &str) -> Option<Attribute> {
        if self.tag == META_VERSION || self.tag == META_OWNER {
            return None;
        }
        if self.tag == META_UID {
            return Some(Attribute::text(tags::UNIQUE_IDENTIFIER, uid));
        }
        // The blob was checked whole when it was read or written (`parse`, `encode`), so an
        // item of it decodes.
        let ttlv = compact::read(meta, &self.extent)?;
        if self.tag == META_ATTRIBUTE {
            return unwrap_attribute(&ttlv, self.index);
        }
        Some(Attribute {
            name: AttributeName::Tag(ttlv.tag),
            index: self.index,
            value: ttlv.value,
        })
    }
}

/// The top-level items of a format-2 blob, read from their headers alone; `INDEX` items are
/// folded into the item they precede.
pub(super) struct Items<'a> {
    meta: &'a [u8],
    pos: usize,
}

impl<'a> Items<'a> {
    pub(super) fn new(meta: &'a [u8]) -> Items<'a> {
        // An empty walk for anything but a format-2 blob (objects hold only those).
        let (meta, pos) = match root(meta) {
            Some(r) => (&meta[..r.value().end], r.value().start),
            None => (&meta[..0], 0),
        };
        Items { meta, pos }
    }

    fn next_raw(&mut self) -> Option<Item> {
        let extent = compact::next_item(self.meta, &mut self.pos)?;
        Some(Item {
            tag: extent.tag,
            index: None,
            extent,
        })
    }
}

impl Iterator for Items<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let item = self.next_raw()?;
        if item.tag != META_INDEX {
            return Some(item);
        }
        let index = compact::read_i32(self.meta, &item.extent)?;
        let mut next = self.next_raw()?;
        next.index = Some(index);
        Some(next)
    }
}

/// The format-1 blob of `attributes`, as the gateway wrote it before format 2 (for tests of
/// reading old vaults).
#[cfg(test)]
pub(super) fn encode_format_1(owner: &str, attributes: &[Attribute]) -> Bytes {
    let mut items = vec![
        Ttlv::new(META_VERSION, Value::Integer(META_FORMAT_1)),
        Ttlv::new(META_OWNER, Value::TextString(owner.to_owned())),
    ];
    for a in attributes {
        let mut fields = vec![Ttlv::new(
            META_NAME_KEY,
            Value::TextString(name_key(&a.name)),
        )];
        if let Some(i) = a.index {
            fields.push(Ttlv::new(META_INDEX, Value::Integer(i)));
        }
        fields.push(Ttlv::new(META_VALUE, a.value.clone()));
        items.push(Ttlv::structure(META_ATTRIBUTE, fields));
    }
    let mut out = BytesMut::new();
    let _ = Ttlv::structure(META_RECORD, items).encode(&mut out);
    out.freeze()
}
