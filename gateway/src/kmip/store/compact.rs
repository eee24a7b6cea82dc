//! Compact TTLV: the item encoding of metadata blob format 2. TTLV's items without padding or
//! fixed widths: a type byte (its top bit set when the tag is a standard `0x42xxxx` one, whose
//! first byte is then left out), the tag's other two or three bytes, then the value: numbers as
//! LEB128 (signed ones zigzagged), a Boolean as one byte, and for strings, big integers and
//! structures a LEB128 length before the bytes (a structure's bytes are its items). An
//! enumeration takes 4 bytes instead of TTLV's 16, a date-time 8 instead of 16.
//!
//! Items are read twice over: [`check`] walks a stored blob once, building nothing, so that
//! [`read`] of any of its items later cannot fail; [`next_item`] steps over an item from its
//! header alone.

use bytes::{BufMut, Bytes, BytesMut};
use kmip_wire::ttlv::{ItemType, Tag, Ttlv, Value};
use std::ops::Range;

/// The type byte's flag for a standard tag (`0x42xxxx`), stored in two bytes.
const STANDARD: u8 = 0x80;
/// The first byte of every standard tag.
const STANDARD_PREFIX: u8 = 0x42;
/// Structures nested in one attribute value, at most: the bound `kmip-wire` applies to
/// messages, so that a stored value is never deeper than a client could send.
const MAX_DEPTH: usize = kmip_wire::ttlv::DEFAULT_MAX_DEPTH;
/// Bytes of a LEB128 number, at most (a `u64`).
const MAX_LEB_BYTES: usize = 10;

fn put_leb(out: &mut BytesMut, mut n: u64) {
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

/// A LEB128 number at `*pos`, which moves past it.
fn get_leb(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut n: u64 = 0;
    for i in 0..MAX_LEB_BYTES {
        let b = *buf.get(*pos)?;
        *pos += 1;
        n |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// The LEB128 number that is all of `v`.
fn number(v: &[u8]) -> Option<u64> {
    let mut pos = 0;
    let n = get_leb(v, &mut pos)?;
    (pos == v.len()).then_some(n)
}

/// Small negative numbers stay short: 0, -1, 1, -2... become 0, 1, 2, 3...
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Appends `item` in compact form. Tags must fit in 24 bits (the caller's are standard tags and
/// the blob's own).
pub(super) fn write(out: &mut BytesMut, item: &Ttlv) {
    let [_, a, b, c] = item.tag.0.to_be_bytes();
    let item_type = item.value.item_type() as u8;
    if a == STANDARD_PREFIX {
        out.put_slice(&[item_type | STANDARD, b, c]);
    } else {
        out.put_slice(&[item_type, a, b, c]);
    }
    match &item.value {
        Value::Structure(items) => {
            let mut inner = BytesMut::new();
            for i in items {
                write(&mut inner, i);
            }
            put_leb(out, inner.len() as u64);
            out.put_slice(&inner);
        }
        Value::Integer(v) => put_leb(out, zigzag(i64::from(*v))),
        Value::Enumeration(v) | Value::Interval(v) => put_leb(out, u64::from(*v)),
        Value::LongInteger(v) | Value::DateTime(v) | Value::DateTimeExtended(v) => {
            put_leb(out, zigzag(*v))
        }
        Value::Boolean(v) => out.put_u8(u8::from(*v)),
        Value::TextString(s) => {
            put_leb(out, s.len() as u64);
            out.put_slice(s.as_bytes());
        }
        Value::BigInteger(b) | Value::ByteString(b) => {
            put_leb(out, b.len() as u64);
            out.put_slice(b);
        }
    }
}

/// One item's place in a buffer: its tag and type, and where its value is.
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
    let first = *buf.get(*pos)?;
    let item_type = ItemType::from_byte(first & !STANDARD)?;
    let tag = if first & STANDARD != 0 {
        let t = buf.get(*pos + 1..*pos + 3)?;
        *pos += 3;
        Tag(u32::from_be_bytes([0, STANDARD_PREFIX, t[0], t[1]]))
    } else {
        let t = buf.get(*pos + 1..*pos + 4)?;
        *pos += 4;
        Tag(u32::from_be_bytes([0, t[0], t[1], t[2]]))
    };
    let len = match item_type {
        // A number is its LEB128 bytes: up to the first without a continuation bit.
        ItemType::Integer
        | ItemType::Enumeration
        | ItemType::Interval
        | ItemType::LongInteger
        | ItemType::DateTime
        | ItemType::DateTimeExtended => {
            let mut end = *pos;
            get_leb(buf, &mut end)?;
            end - *pos
        }
        ItemType::Boolean => 1,
        ItemType::Structure
        | ItemType::TextString
        | ItemType::ByteString
        | ItemType::BigInteger => usize::try_from(get_leb(buf, pos)?).ok()?,
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

/// Checks every item in `range` of `buf`, to `depth` levels of structure: sizes, numbers that
/// fit their type, UTF-8 text, boolean bytes. Builds nothing.
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
            ItemType::Integer => number(v).is_some_and(|n| i32::try_from(unzigzag(n)).is_ok()),
            ItemType::Enumeration | ItemType::Interval => {
                number(v).is_some_and(|n| u32::try_from(n).is_ok())
            }
            ItemType::LongInteger | ItemType::DateTime | ItemType::DateTimeExtended => {
                number(v).is_some()
            }
            ItemType::ByteString | ItemType::BigInteger => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The value of the Integer item `e` of `buf`, decoding nothing else.
pub(super) fn read_i32(buf: &[u8], e: &Extent) -> Option<i32> {
    if e.item_type != ItemType::Integer {
        return None;
    }
    i32::try_from(unzigzag(number(&buf[e.value.clone()])?)).ok()
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
        ItemType::Integer => Value::Integer(i32::try_from(unzigzag(number(v)?)).ok()?),
        ItemType::Enumeration => Value::Enumeration(u32::try_from(number(v)?).ok()?),
        ItemType::Interval => Value::Interval(u32::try_from(number(v)?).ok()?),
        ItemType::LongInteger => Value::LongInteger(unzigzag(number(v)?)),
        ItemType::DateTime => Value::DateTime(unzigzag(number(v)?)),
        ItemType::DateTimeExtended => Value::DateTimeExtended(unzigzag(number(v)?)),
        ItemType::Boolean => Value::Boolean(v[0] == 1),
        ItemType::TextString => Value::TextString(std::str::from_utf8(v).ok()?.to_owned()),
        ItemType::ByteString => Value::ByteString(buf.slice(e.value.clone())),
        ItemType::BigInteger => Value::BigInteger(buf.slice(e.value.clone())),
    };
    Some(Ttlv { tag: e.tag, value })
}
