//! TTLV: the KMIP binary encoding (Tag, Type, Length, Value), KMIP 1.4 section 9.1.
//!
//! Decoding works on a received `Bytes` buffer: byte strings are zero-copy slices of it. Every
//! length is checked against the buffer and the limits *before* anything is allocated, and every
//! malformed input is a typed [`TtlvError`], never a panic.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Size of the tag + type + length prefix of every item.
pub const HEADER_LEN: usize = 8;

/// Default largest message accepted (1 MiB). Protects memory: a length claimed by a peer is checked
/// against this before a body buffer is allocated.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Default deepest Structure nesting accepted. Protects the stack of the recursive decoder and of
/// everything that walks the tree; real KMIP messages nest fewer than 12 levels.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// Limits applied while decoding untrusted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// A KMIP tag (3 bytes on the wire, `0x42xxxx` for standard tags, `0x54xxxx` for extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u32);

/// Item type byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ItemType {
    Structure = 0x01,
    Integer = 0x02,
    LongInteger = 0x03,
    BigInteger = 0x04,
    Enumeration = 0x05,
    Boolean = 0x06,
    TextString = 0x07,
    ByteString = 0x08,
    DateTime = 0x09,
    Interval = 0x0A,
    DateTimeExtended = 0x0B,
}

impl ItemType {
    pub fn from_byte(b: u8) -> Option<ItemType> {
        Some(match b {
            0x01 => ItemType::Structure,
            0x02 => ItemType::Integer,
            0x03 => ItemType::LongInteger,
            0x04 => ItemType::BigInteger,
            0x05 => ItemType::Enumeration,
            0x06 => ItemType::Boolean,
            0x07 => ItemType::TextString,
            0x08 => ItemType::ByteString,
            0x09 => ItemType::DateTime,
            0x0A => ItemType::Interval,
            0x0B => ItemType::DateTimeExtended,
            _ => return None,
        })
    }

    /// Name used by the KMIP XML encoding (`type="..."`).
    pub fn xml_name(self) -> &'static str {
        match self {
            ItemType::Structure => "Structure",
            ItemType::Integer => "Integer",
            ItemType::LongInteger => "LongInteger",
            ItemType::BigInteger => "BigInteger",
            ItemType::Enumeration => "Enumeration",
            ItemType::Boolean => "Boolean",
            ItemType::TextString => "TextString",
            ItemType::ByteString => "ByteString",
            ItemType::DateTime => "DateTime",
            ItemType::Interval => "Interval",
            ItemType::DateTimeExtended => "DateTimeExtended",
        }
    }

    pub fn from_xml_name(name: &str) -> Option<ItemType> {
        Some(match name {
            "Structure" => ItemType::Structure,
            "Integer" => ItemType::Integer,
            "LongInteger" => ItemType::LongInteger,
            "BigInteger" => ItemType::BigInteger,
            "Enumeration" => ItemType::Enumeration,
            "Boolean" => ItemType::Boolean,
            "TextString" => ItemType::TextString,
            "ByteString" => ItemType::ByteString,
            "DateTime" => ItemType::DateTime,
            "Interval" => ItemType::Interval,
            "DateTimeExtended" => ItemType::DateTimeExtended,
            _ => return None,
        })
    }
}

/// A value of one of the KMIP item types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Structure(Vec<Ttlv>),
    Integer(i32),
    LongInteger(i64),
    /// Two's complement, big-endian, length a multiple of 8 on the wire.
    BigInteger(Bytes),
    Enumeration(u32),
    Boolean(bool),
    TextString(String),
    ByteString(Bytes),
    /// Seconds since the Unix epoch.
    DateTime(i64),
    /// Seconds.
    Interval(u32),
    /// Microseconds since the Unix epoch (KMIP 2.x).
    DateTimeExtended(i64),
}

impl Value {
    pub fn item_type(&self) -> ItemType {
        match self {
            Value::Structure(_) => ItemType::Structure,
            Value::Integer(_) => ItemType::Integer,
            Value::LongInteger(_) => ItemType::LongInteger,
            Value::BigInteger(_) => ItemType::BigInteger,
            Value::Enumeration(_) => ItemType::Enumeration,
            Value::Boolean(_) => ItemType::Boolean,
            Value::TextString(_) => ItemType::TextString,
            Value::ByteString(_) => ItemType::ByteString,
            Value::DateTime(_) => ItemType::DateTime,
            Value::Interval(_) => ItemType::Interval,
            Value::DateTimeExtended(_) => ItemType::DateTimeExtended,
        }
    }
}

/// One TTLV item: a tag and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ttlv {
    pub tag: Tag,
    pub value: Value,
}

/// Everything that can be wrong with TTLV bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TtlvError {
    #[error("message of {claimed} bytes exceeds the limit of {limit} bytes")]
    TooLarge { claimed: u64, limit: usize },
    #[error("structure nesting deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("truncated at offset {offset}: need {needed} more bytes")]
    Truncated { offset: usize, needed: usize },
    #[error("unknown item type 0x{type_byte:02x} at offset {offset}")]
    UnknownType { type_byte: u8, offset: usize },
    #[error("{item_type:?} at offset {offset} has length {length}, expected {expected}")]
    BadLength {
        item_type: ItemType,
        offset: usize,
        length: u32,
        expected: &'static str,
    },
    #[error("text string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("boolean at offset {offset} is neither 0 nor 1")]
    InvalidBoolean { offset: usize },
    #[error("non-zero padding at offset {offset}")]
    NonZeroPadding { offset: usize },
    #[error("{count} trailing bytes after the message")]
    TrailingBytes { count: usize },
    #[error("tag 0x{0:06x} is not a valid 3-byte tag")]
    InvalidTag(u32),
}

fn padded(len: usize) -> usize {
    len.div_ceil(8) * 8
}

/// Reads the total message length (header + value) from the first 8 bytes of a message, checking
/// it against `limits` so a reader can refuse before allocating the body. The outer item must be
/// a Structure.
pub fn message_length(header: &[u8; HEADER_LEN], limits: &Limits) -> Result<usize, TtlvError> {
    if header[3] != ItemType::Structure as u8 {
        return match ItemType::from_byte(header[3]) {
            Some(t) => Err(TtlvError::BadLength {
                item_type: t,
                offset: 0,
                length: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
                expected: "a Structure as the outer item",
            }),
            None => Err(TtlvError::UnknownType {
                type_byte: header[3],
                offset: 0,
            }),
        };
    }
    let body = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as u64;
    let total = body + HEADER_LEN as u64;
    if total > limits.max_message_size as u64 {
        return Err(TtlvError::TooLarge {
            claimed: total,
            limit: limits.max_message_size,
        });
    }
    if !body.is_multiple_of(8) {
        return Err(TtlvError::BadLength {
            item_type: ItemType::Structure,
            offset: 0,
            length: body as u32,
            expected: "a multiple of 8",
        });
    }
    Ok(total as usize)
}

/// Decodes exactly one item from `buf`; bytes left over are an error.
pub fn decode(buf: &Bytes, limits: &Limits) -> Result<Ttlv, TtlvError> {
    if buf.len() > limits.max_message_size {
        return Err(TtlvError::TooLarge {
            claimed: buf.len() as u64,
            limit: limits.max_message_size,
        });
    }
    let mut pos = 0;
    let item = decode_item(buf, &mut pos, buf.len(), 0, limits)?;
    if pos != buf.len() {
        return Err(TtlvError::TrailingBytes {
            count: buf.len() - pos,
        });
    }
    Ok(item)
}

fn need(pos: usize, n: usize, end: usize) -> Result<(), TtlvError> {
    if end.saturating_sub(pos) < n {
        return Err(TtlvError::Truncated {
            offset: pos,
            needed: n - end.saturating_sub(pos),
        });
    }
    Ok(())
}

fn check_padding(buf: &[u8], from: usize, to: usize) -> Result<(), TtlvError> {
    match buf[from..to].iter().position(|&b| b != 0) {
        Some(i) => Err(TtlvError::NonZeroPadding { offset: from + i }),
        None => Ok(()),
    }
}

fn decode_item(
    buf: &Bytes,
    pos: &mut usize,
    end: usize,
    depth: usize,
    limits: &Limits,
) -> Result<Ttlv, TtlvError> {
    let start = *pos;
    need(start, HEADER_LEN, end)?;
    let b = &buf[start..start + HEADER_LEN];
    let tag = Tag(u32::from_be_bytes([0, b[0], b[1], b[2]]));
    let item_type = ItemType::from_byte(b[3]).ok_or(TtlvError::UnknownType {
        type_byte: b[3],
        offset: start,
    })?;
    let length = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let vstart = start + HEADER_LEN;
    let len = length as usize;
    let fixed = |expected_len: usize, expected: &'static str| -> Result<(), TtlvError> {
        if len != expected_len {
            return Err(TtlvError::BadLength {
                item_type,
                offset: start,
                length,
                expected,
            });
        }
        Ok(())
    };
    match item_type {
        ItemType::Integer | ItemType::Enumeration | ItemType::Interval => fixed(4, "4")?,
        ItemType::LongInteger
        | ItemType::Boolean
        | ItemType::DateTime
        | ItemType::DateTimeExtended => fixed(8, "8")?,
        ItemType::BigInteger if !len.is_multiple_of(8) || len == 0 => {
            return Err(TtlvError::BadLength {
                item_type,
                offset: start,
                length,
                expected: "a non-zero multiple of 8",
            })
        }
        // Children are padded to 8 bytes, so a Structure's length is a multiple of 8.
        ItemType::Structure if !len.is_multiple_of(8) => {
            return Err(TtlvError::BadLength {
                item_type,
                offset: start,
                length,
                expected: "a multiple of 8",
            })
        }
        _ => {}
    }
    let padded_len = padded(len);
    need(vstart, padded_len, end)?;
    let vend = vstart + len;
    check_padding(buf, vend, vstart + padded_len)?;
    *pos = vstart + padded_len;
    let v = &buf[vstart..vend];
    let be4 = || [v[0], v[1], v[2], v[3]];
    let be8 = || [v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]];
    let value = match item_type {
        ItemType::Structure => {
            if depth >= limits.max_depth {
                return Err(TtlvError::TooDeep {
                    limit: limits.max_depth,
                });
            }
            let mut children = Vec::new();
            let mut p = vstart;
            while p < vend {
                children.push(decode_item(buf, &mut p, vend, depth + 1, limits)?);
            }
            Value::Structure(children)
        }
        ItemType::Integer => Value::Integer(i32::from_be_bytes(be4())),
        ItemType::Enumeration => Value::Enumeration(u32::from_be_bytes(be4())),
        ItemType::Interval => Value::Interval(u32::from_be_bytes(be4())),
        ItemType::LongInteger => Value::LongInteger(i64::from_be_bytes(be8())),
        ItemType::DateTime => Value::DateTime(i64::from_be_bytes(be8())),
        ItemType::DateTimeExtended => Value::DateTimeExtended(i64::from_be_bytes(be8())),
        ItemType::Boolean => match u64::from_be_bytes(be8()) {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            _ => return Err(TtlvError::InvalidBoolean { offset: start }),
        },
        ItemType::BigInteger => Value::BigInteger(buf.slice(vstart..vend)),
        ItemType::ByteString => Value::ByteString(buf.slice(vstart..vend)),
        ItemType::TextString => match std::str::from_utf8(v) {
            Ok(s) => Value::TextString(s.to_owned()),
            Err(_) => return Err(TtlvError::InvalidUtf8 { offset: start }),
        },
    };
    Ok(Ttlv { tag, value })
}

impl Ttlv {
    pub fn new(tag: Tag, value: Value) -> Ttlv {
        Ttlv { tag, value }
    }

    /// Number of bytes this item takes on the wire, padding included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match &self.value {
                Value::Structure(items) => items.iter().map(Ttlv::encoded_len).sum(),
                Value::Integer(_) | Value::Enumeration(_) | Value::Interval(_) => 8,
                Value::LongInteger(_)
                | Value::Boolean(_)
                | Value::DateTime(_)
                | Value::DateTimeExtended(_) => 8,
                Value::BigInteger(b) => padded(b.len().max(1)),
                Value::TextString(s) => padded(s.len()),
                Value::ByteString(b) => padded(b.len()),
            }
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Result<Bytes, TtlvError> {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out.freeze())
    }

    /// Appends the encoding of this item to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), TtlvError> {
        if self.tag.0 > 0x00FF_FFFF {
            return Err(TtlvError::InvalidTag(self.tag.0));
        }
        let t = self.tag.0.to_be_bytes();
        out.put_slice(&t[1..4]);
        out.put_u8(self.value.item_type() as u8);
        let len_at = out.len();
        out.put_u32(0);
        let value_len = match &self.value {
            Value::Structure(items) => {
                let before = out.len();
                for item in items {
                    item.encode(out)?;
                }
                out.len() - before
            }
            Value::Integer(i) => put_padded4(out, i.to_be_bytes()),
            Value::Enumeration(e) => put_padded4(out, e.to_be_bytes()),
            Value::Interval(i) => put_padded4(out, i.to_be_bytes()),
            Value::LongInteger(i) => put8(out, i.to_be_bytes()),
            Value::DateTime(d) => put8(out, d.to_be_bytes()),
            Value::DateTimeExtended(d) => put8(out, d.to_be_bytes()),
            Value::Boolean(b) => put8(out, u64::from(*b).to_be_bytes()),
            Value::BigInteger(b) => put_var(out, sign_extend_to_8(b).as_ref()),
            Value::TextString(s) => put_var(out, s.as_bytes()),
            Value::ByteString(b) => put_var(out, b),
        };
        let len = u32::try_from(value_len).map_err(|_| TtlvError::TooLarge {
            claimed: value_len as u64,
            limit: u32::MAX as usize,
        })?;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

fn put_padded4(out: &mut BytesMut, b: [u8; 4]) -> usize {
    out.put_slice(&b);
    out.put_u32(0);
    4
}

fn put8(out: &mut BytesMut, b: [u8; 8]) -> usize {
    out.put_slice(&b);
    8
}

fn put_var(out: &mut BytesMut, b: &[u8]) -> usize {
    out.put_slice(b);
    out.put_bytes(0, padded(b.len()) - b.len());
    b.len()
}

/// Big Integers must be a multiple of 8 bytes on the wire: sign-extend on the left.
fn sign_extend_to_8(b: &Bytes) -> Bytes {
    if b.len().is_multiple_of(8) && !b.is_empty() {
        return b.clone();
    }
    let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
        0xFF
    } else {
        0
    };
    let mut v = vec![fill; padded(b.len().max(1)) - b.len()];
    v.extend_from_slice(b);
    Bytes::from(v)
}

/// Accessors used by the typed model to read a decoded tree.
impl Ttlv {
    pub fn structure(tag: Tag, items: Vec<Ttlv>) -> Ttlv {
        Ttlv::new(tag, Value::Structure(items))
    }

    /// Children of a Structure; empty for any other type.
    pub fn items(&self) -> &[Ttlv] {
        match &self.value {
            Value::Structure(items) => items,
            _ => &[],
        }
    }

    /// First child with `tag`.
    pub fn child(&self, tag: Tag) -> Option<&Ttlv> {
        self.items().iter().find(|t| t.tag == tag)
    }

    /// All children with `tag`, in order.
    pub fn children(&self, tag: Tag) -> impl Iterator<Item = &Ttlv> {
        self.items().iter().filter(move |t| t.tag == tag)
    }

    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::TextString(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.value {
            Value::ByteString(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_i32(&self) -> Option<i32> {
        match self.value {
            Value::Integer(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_enum(&self) -> Option<u32> {
        match self.value {
            Value::Enumeration(e) => Some(e),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Boolean(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_long(&self) -> Option<i64> {
        match self.value {
            Value::LongInteger(i) => Some(i),
            _ => None,
        }
    }

    /// Date Time or Date Time Extended, in seconds.
    pub fn as_datetime(&self) -> Option<i64> {
        match self.value {
            Value::DateTime(d) => Some(d),
            Value::DateTimeExtended(us) => Some(us.div_euclid(1_000_000)),
            _ => None,
        }
    }
}
