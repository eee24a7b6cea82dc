//! The TTLV encoding examples of KMIP 1.4 section 9.1.2, byte-exact both ways, and every class of
//! malformed input the decoder must refuse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use kmip_wire::ttlv::{message_length, ItemType, DEFAULT_MAX_DEPTH, HEADER_LEN};
use kmip_wire::{decode, Limits, Tag, Ttlv, TtlvError, Value};

/// The tag the specification's examples use.
const T: Tag = Tag(0x42_0020);

fn hex(s: &str) -> Bytes {
    Bytes::from(hex::decode(s.replace([' ', '|'], "")).unwrap())
}

fn check_example(item: Ttlv, bytes: &str) {
    let b = hex(bytes);
    assert_eq!(item.to_bytes().unwrap(), b, "encoding of {item:?}");
    assert_eq!(item.encoded_len(), b.len());
    assert_eq!(decode(&b, &Limits::default()).unwrap(), item);
}

#[test]
fn spec_1_4_section_9_1_2_examples() {
    check_example(
        Ttlv::new(T, Value::Integer(8)),
        "42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00",
    );
    check_example(
        Ttlv::new(T, Value::LongInteger(123_456_789_000_000_000)),
        "42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00",
    );
    check_example(
        Ttlv::new(
            T,
            Value::BigInteger(hex("00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00")),
        ),
        "42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00",
    );
    check_example(
        Ttlv::new(T, Value::Enumeration(255)),
        "42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00",
    );
    check_example(
        Ttlv::new(T, Value::Boolean(true)),
        "42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01",
    );
    check_example(
        Ttlv::new(T, Value::TextString("Hello World".into())),
        "42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00",
    );
    check_example(
        Ttlv::new(T, Value::ByteString(Bytes::from_static(&[1, 2, 3]))),
        "42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00",
    );
    // Friday, March 14, 2008, 11:56:40 GMT.
    check_example(
        Ttlv::new(T, Value::DateTime(1_205_495_800)),
        "42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8",
    );
    // 10 days.
    check_example(
        Ttlv::new(T, Value::Interval(864_000)),
        "42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00",
    );
    check_example(
        Ttlv::structure(
            T,
            vec![
                Ttlv::new(Tag(0x42_0004), Value::Enumeration(254)),
                Ttlv::new(Tag(0x42_0005), Value::Integer(255)),
            ],
        ),
        "42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00 | \
         42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00",
    );
}

#[test]
fn big_integers_are_sign_extended_to_eight_bytes() {
    let t = Ttlv::new(T, Value::BigInteger(Bytes::from_static(&[0xFF, 0x01])));
    assert_eq!(
        t.to_bytes().unwrap(),
        hex("420020 04 00000008 FFFFFFFFFFFFFF01")
    );
}

fn err(bytes: &str) -> TtlvError {
    decode(&hex(bytes), &Limits::default()).unwrap_err()
}

#[test]
fn wrong_fixed_lengths() {
    for (ty, len) in [
        ("02", "00000008"),
        ("05", "00000008"),
        ("0A", "00000002"),
        ("03", "00000004"),
        ("06", "00000004"),
        ("09", "00000010"),
        ("0B", "00000004"),
    ] {
        let e = err(&format!(
            "420020 {ty} {len} 0000000000000000 0000000000000000"
        ));
        assert!(
            matches!(e, TtlvError::BadLength { offset: 0, .. }),
            "{ty}: {e:?}"
        );
    }
    assert!(matches!(
        err("420020 04 00000004 0000000100000000"),
        TtlvError::BadLength {
            item_type: ItemType::BigInteger,
            ..
        }
    ));
    assert!(matches!(
        err("420020 04 00000000"),
        TtlvError::BadLength {
            item_type: ItemType::BigInteger,
            ..
        }
    ));
    assert!(matches!(
        err("420020 01 0000000C 420020 08 00000000 00000000"),
        TtlvError::BadLength {
            item_type: ItemType::Structure,
            ..
        }
    ));
}

#[test]
fn invalid_utf8() {
    assert_eq!(
        err("420020 07 00000002 C328000000000000"),
        TtlvError::InvalidUtf8 { offset: 0 }
    );
}

#[test]
fn truncation() {
    assert!(matches!(
        err("420020 02 000000"),
        TtlvError::Truncated { .. }
    ));
    assert!(matches!(
        err("420020 02 00000004 00000008"),
        TtlvError::Truncated { .. }
    ));
    assert!(matches!(
        err("420020 07 00000010 4142"),
        TtlvError::Truncated { .. }
    ));
    // A child claiming more than its parent holds.
    assert!(matches!(
        err("420020 01 00000010 420020 07 00000010 4142434445464748"),
        TtlvError::Truncated { .. }
    ));
    assert!(matches!(
        decode(&Bytes::new(), &Limits::default()),
        Err(TtlvError::Truncated {
            offset: 0,
            needed: 8
        })
    ));
}

#[test]
fn trailing_bytes() {
    assert_eq!(
        err("420020 02 00000004 0000000800000000 00"),
        TtlvError::TrailingBytes { count: 1 }
    );
}

fn nested(depth: usize) -> Ttlv {
    let mut t = Ttlv::new(T, Value::Integer(1));
    for _ in 0..depth {
        t = Ttlv::structure(T, vec![t]);
    }
    t
}

#[test]
fn depth_limit() {
    let ok = nested(DEFAULT_MAX_DEPTH).to_bytes().unwrap();
    assert!(decode(&ok, &Limits::default()).is_ok());
    let deep = nested(DEFAULT_MAX_DEPTH + 1).to_bytes().unwrap();
    assert_eq!(
        decode(&deep, &Limits::default()).unwrap_err(),
        TtlvError::TooDeep {
            limit: DEFAULT_MAX_DEPTH
        }
    );
    let limits = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    assert!(decode(&nested(2).to_bytes().unwrap(), &limits).is_ok());
    assert!(decode(&nested(3).to_bytes().unwrap(), &limits).is_err());
}

#[test]
fn size_limit() {
    let t = Ttlv::new(T, Value::ByteString(Bytes::from(vec![0u8; 100])));
    let b = t.to_bytes().unwrap();
    let limits = Limits {
        max_message_size: b.len() - 1,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&b, &limits),
        Err(TtlvError::TooLarge { .. })
    ));
    assert!(decode(
        &b,
        &Limits {
            max_message_size: b.len(),
            ..limits
        }
    )
    .is_ok());

    let header: [u8; HEADER_LEN] = [0x42, 0, 0x78, 0x01, 0x7f, 0xff, 0xff, 0xf8];
    assert!(matches!(
        message_length(&header, &Limits::default()),
        Err(TtlvError::TooLarge { claimed, .. }) if claimed == 0x7fff_fff8 + 8
    ));
    let header: [u8; HEADER_LEN] = [0x42, 0, 0x78, 0x01, 0, 0, 0, 0x10];
    assert_eq!(message_length(&header, &Limits::default()), Ok(0x18));
    let header: [u8; HEADER_LEN] = [0x42, 0, 0x78, 0x01, 0, 0, 0, 0x0c];
    assert!(message_length(&header, &Limits::default()).is_err());
    let header: [u8; HEADER_LEN] = [0x42, 0, 0x78, 0x02, 0, 0, 0, 0x04];
    assert!(message_length(&header, &Limits::default()).is_err());
}

#[test]
fn bad_padding() {
    assert_eq!(
        err("420020 02 00000004 0000000800000001"),
        TtlvError::NonZeroPadding { offset: 15 }
    );
    assert_eq!(
        err("420020 08 00000003 010203000000FF00"),
        TtlvError::NonZeroPadding { offset: 14 }
    );
}

#[test]
fn unknown_type() {
    assert_eq!(
        err("420020 0C 00000004 0000000800000000"),
        TtlvError::UnknownType {
            type_byte: 0x0C,
            offset: 0
        }
    );
    assert!(matches!(
        err("420020 00 00000000"),
        TtlvError::UnknownType { .. }
    ));
}

#[test]
fn boolean_other_than_0_or_1() {
    assert_eq!(
        err("420020 06 00000008 0000000000000002"),
        TtlvError::InvalidBoolean { offset: 0 }
    );
    assert_eq!(
        err("420020 06 00000008 0100000000000000"),
        TtlvError::InvalidBoolean { offset: 0 }
    );
}

#[test]
fn tags_wider_than_three_bytes_are_refused_on_encode() {
    let t = Ttlv::new(Tag(0x0100_0000), Value::Integer(1));
    assert_eq!(t.to_bytes(), Err(TtlvError::InvalidTag(0x0100_0000)));
}
