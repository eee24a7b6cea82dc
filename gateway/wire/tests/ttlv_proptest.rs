//! Property tests: random TTLV trees survive encode → decode and the KMIP XML and JSON
//! writers and readers; random and mutated bytes never panic the decoder, and what decodes re-encodes byte-exact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use kmip_wire::xml::{big_integer_wire_form, parse_node, to_xml_string, Bindings};
use kmip_wire::{decode, Limits, Tag, Ttlv, Value};
use proptest::prelude::*;

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        // Named tags (so enumeration and mask names are exercised) and unnamed ones.
        (0x42_0001u32..0x42_0170).prop_map(Tag),
        (0x54_0000u32..0x54_0010).prop_map(Tag),
        (0u32..0x100_0000).prop_map(Tag),
    ]
}

fn primitive() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(Value::Integer),
        any::<i64>().prop_map(Value::LongInteger),
        proptest::collection::vec(any::<u8>(), 1..40)
            .prop_map(|b| Value::BigInteger(big_integer_wire_form(&b))),
        any::<u32>().prop_map(Value::Enumeration),
        any::<bool>().prop_map(Value::Boolean),
        ".{0,40}".prop_map(Value::TextString),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::ByteString(b.into())),
        any::<i64>().prop_map(Value::DateTime),
        any::<u32>().prop_map(Value::Interval),
        any::<i64>().prop_map(Value::DateTimeExtended),
    ]
}

fn tree() -> impl Strategy<Value = Ttlv> {
    let leaf = (tag(), primitive()).prop_map(|(t, v)| Ttlv::new(t, v));
    leaf.prop_recursive(6, 64, 8, |inner| {
        (tag(), proptest::collection::vec(inner, 0..8)).prop_map(|(t, c)| Ttlv::structure(t, c))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(t in tree()) {
        let b = t.to_bytes().unwrap();
        prop_assert_eq!(b.len(), t.encoded_len());
        prop_assert_eq!(b.len() % 8, 0);
        prop_assert_eq!(decode(&b, &Limits::default()).unwrap(), t);
    }

    #[test]
    fn xml_write_then_read_is_identity(t in tree()) {
        let text = to_xml_string(&t);
        let back = parse_node(&text).and_then(|n| n.to_ttlv(&Bindings::new()));
        prop_assert_eq!(back, Ok(t), "{}", text);
    }

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let buf = Bytes::from(b);
        if let Ok(t) = decode(&buf, &Limits::default()) {
            prop_assert_eq!(t.to_bytes().unwrap(), buf);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        t in tree(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = t.to_bytes().unwrap().to_vec();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        let limits = Limits { max_message_size: 4096, max_depth: 4 };
        let whole = Bytes::from(b.clone());
        if let Ok(d) = decode(&whole, &limits) {
            prop_assert_eq!(d.to_bytes().unwrap(), whole);
        }
        b.truncate(cut.index(b.len() + 1));
        let _ = decode(&Bytes::from(b), &limits);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_write_then_read_is_identity(t in tree()) {
        let text = kmip_wire::json::to_json_string(&t);
        prop_assert_eq!(kmip_wire::json::from_json_str(&text), Ok(t), "{}", text);
    }

    #[test]
    fn ttlv_to_json_to_ttlv_is_byte_exact(t in tree()) {
        let bytes = t.to_bytes().unwrap();
        let decoded = decode(&bytes, &Limits::default()).unwrap();
        let back = kmip_wire::json::from_json_str(&kmip_wire::json::to_json_string(&decoded)).unwrap();
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
    }
}
