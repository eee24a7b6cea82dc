//! Compact TTLV: the item encoding of metadata blob format 2. TTLV without its padding and with
//! short lengths: a 3-byte tag and a type byte as in TTLV, then the value: 4 bytes for Integer,
//! Enumeration and Interval, 8 for Long Integer and the date-times, 1 for Boolean, and for
//! strings, big integers and structures a LEB128 length before the bytes (a structure's bytes
//! are its items). An enumeration takes 8 bytes instead of 16, a boolean 5 instead of 16.
//!
//! Items are read twice over: [`check`] walks a stored blob once, building nothing, so that
//! [`read`] of any of its items later cannot fail; [`next_item`] steps over an item from its
//! header alone.

use bytes::{BufMut, Bytes, BytesMut};
use kmip_wire::ttlv::{ItemType, Tag, Ttlv, Value};
use std::ops::Range;

/// Bytes of an item's tag and type.
const HEADER: usize = 4;
/// Structures nested in one attribute value, at most: the bound `kmip-wire` applies to
/// messages, so that a stored value is never deeper than a client could send.
const MAX_DEPTH: usize = kmip_wire::ttlv::DEFAULT_MAX_DEPTH;
/// Bytes of a LEB128 length, at most (a `u32`).
const MAX_LEN_BYTES: usize = 5;

fn put_len(out: &mut BytesMut, mut n: usize) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.put_u8(low);
            return;
        }
        out.put_u8(low | 0x80);
    }
}

/// A length at `*pos`, which moves past it.
fn get_len(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let mut n: usize = 0;
    for i in 0..MAX_LEN_BYTES {
        let b = *buf.get(*pos)?;
        *pos += 1;
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// Appends `item` in compact form. Tags must fit in 24 bits (the caller's are standard tags and
/// the blob's own).
pub(super) fn write(out: &mut BytesMut, item: &Ttlv) {
    let [_, a, b, c] = item.tag.0.to_be_bytes();
    out.put_slice(&[a, b, c, item.value.item_type() as u8]);
    match &item.value {
        Value::Structure(items) => {
            let mut inner = BytesMut::new();
            for i in items {
                write(&mut inner, i);
            }
            put_len(out, inner.len());
            out.put_slice(&inner);
        }
        Value::Integer(v) => out.put_i32(*v),
        Value::Enumeration(v) | Value::Interval(v) => out.put_u32(*v),
        Value::LongInteger(v) | Value::DateTime(v) | Value::DateTimeExtended(v) => out.put_i64(*v),
        Value::Boolean(v) => out.put_u8(u8::from(*v)),
        Value::TextString(s) => {
            put_len(out, s.len());
            out.put_slice(s.as_bytes());
        }
        Value::BigInteger(b) | Value::ByteString(b) => {
            put_len(out, b.len());
            out.put_slice(b);
        }
    }
}

/// One item's place in a buffer: its tag and type, where its value starts, where it ends.
#[derive(Debug, Clone)]
pub(super) struct Extent {
    pub(super) tag: Tag,
    pub(super) item_type: ItemType,
    value: Range<usize>,
}

impl Extent {
    /// Where its value is.
    pub(super) fn value(&self) -> Range<usize> {
        self.value.clone()
    }
}

/// The item at `*pos` (which moves past it), from its header and length alone.
pub(super) fn next_item(buf: &[u8], pos: &mut usize) -> Option<Extent> {
    let h = buf.get(*pos..*pos + HEADER)?;
    let tag = Tag(u32::from_be_bytes([0, h[0], h[1], h[2]]));
    let item_type = ItemType::from_byte(h[3])?;
    *pos += HEADER;
    let len = match item_type {
        ItemType::Integer | ItemType::Enumeration | ItemType::Interval => 4,
        ItemType::LongInteger | ItemType::DateTime | ItemType::DateTimeExtended => 8,
        ItemType::Boolean => 1,
        ItemType::Structure
        | ItemType::TextString
        | ItemType::ByteString
        | ItemType::BigInteger => get_len(buf, pos)?,
    };
    let value = *pos..pos.checked_add(len)?;
    if value.end > buf.len() {
        return None;
    }
    *pos = value.end;
    Some(Extent {
        tag,
        item_type,
        value,
    })
}

/// Checks every item in `range` of `buf`, to `depth` levels of structure: sizes, UTF-8 text,
/// boolean bytes. Builds nothing.
pub(super) fn check(buf: &[u8], range: Range<usize>, depth: usize) -> bool {
    let mut pos = range.start;
    while pos < range.end {
        let Some(e) = next_item(&buf[..range.end], &mut pos) else {
            return false;
        };
        let v = &buf[e.value.clone()];
        let ok = match e.item_type {
            ItemType::Structure => depth < MAX_DEPTH && check(buf, e.value.clone(), depth + 1),
            ItemType::TextString => std::str::from_utf8(v).is_ok(),
            ItemType::Boolean => v[0] <= 1,
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The item `e` of `buf`, decoded; byte strings are slices of `buf`. `None` only for bytes
/// [`check`] refuses.
pub(super) fn read(buf: &Bytes, e: &Extent) -> Option<Ttlv> {
    let v = &buf[e.value.clone()];
    let value = match e.item_type {
        ItemType::Structure => {
            let mut items = Vec::new();
            let mut pos = e.value.start;
            while pos < e.value.end {
                let child = next_item(&buf[..e.value.end], &mut pos)?;
                items.push(read(buf, &child)?);
            }
            Value::Structure(items)
        }
        ItemType::Integer => Value::Integer(i32::from_be_bytes(v.try_into().ok()?)),
        ItemType::Enumeration => Value::Enumeration(u32::from_be_bytes(v.try_into().ok()?)),
        ItemType::Interval => Value::Interval(u32::from_be_bytes(v.try_into().ok()?)),
        ItemType::LongInteger => Value::LongInteger(i64::from_be_bytes(v.try_into().ok()?)),
        ItemType::DateTime => Value::DateTime(i64::from_be_bytes(v.try_into().ok()?)),
        ItemType::DateTimeExtended => {
            Value::DateTimeExtended(i64::from_be_bytes(v.try_into().ok()?))
        }
        ItemType::Boolean => Value::Boolean(v[0] == 1),
        ItemType::TextString => Value::TextString(std::str::from_utf8(v).ok()?.to_owned()),
        ItemType::ByteString => Value::ByteString(buf.slice(e.value.clone())),
        ItemType::BigInteger => Value::BigInteger(buf.slice(e.value.clone())),
    };
    Some(Ttlv { tag: e.tag, value })
}
