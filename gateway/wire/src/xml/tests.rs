//! Unit tests of the XML encoding: round trips, naming of values, placeholders, errors.

use bytes::Bytes;

use super::*;
use crate::spec::tags;

fn roundtrip(t: &Ttlv) -> Ttlv {
    let text = to_xml_string(t);
    parse_node(&text)
        .unwrap()
        .to_ttlv(&Bindings::new())
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn values_are_written_as_the_vectors_write_them() {
    let t = Ttlv::structure(
        tags::ATTRIBUTE,
        vec![
            Ttlv::new(
                tags::ATTRIBUTE_NAME,
                Value::TextString("Cryptographic Usage Mask".into()),
            ),
            Ttlv::new(tags::ATTRIBUTE_VALUE, Value::Integer(0x0C)),
        ],
    );
    let text = to_xml_string(&t);
    assert!(text.contains(r#"<AttributeValue type="Integer" value="Encrypt Decrypt"/>"#));
    assert_eq!(roundtrip(&t), t);
    let d = Ttlv::new(tags::ACTIVATION_DATE, Value::DateTime(0x47DA_67F8));
    assert!(to_xml_string(&d).contains(r#"value="2008-03-14T11:56:40+00:00""#));
}

#[test]
fn unknown_tags_and_values_round_trip_in_hex() {
    let t = Ttlv::structure(
        Tag(0x54_0001),
        vec![
            Ttlv::new(Tag(0x42_ffff), Value::Enumeration(7)),
            Ttlv::new(tags::OBJECT_TYPE, Value::Enumeration(0x8000_0001)),
            Ttlv::new(tags::CRYPTOGRAPHIC_USAGE_MASK, Value::Integer(-0x7fff_fffc)),
            Ttlv::new(tags::ACTIVATION_DATE, Value::DateTime(i64::MIN)),
            Ttlv::new(tags::ACTIVATION_DATE, Value::DateTimeExtended(-1)),
            Ttlv::new(tags::NAME_VALUE, Value::TextString("<a & \"b\">".into())),
            Ttlv::new(tags::MODULUS, Value::BigInteger(Bytes::from(vec![0xff; 8]))),
        ],
    );
    let text = to_xml_string(&t);
    assert!(text.contains(r#"<TTLV tag="0x540001">"#), "{text}");
    assert!(text.contains(r#"<TTLV tag="0x42ffff" type="Enumeration" value="0x00000007"/>"#));
    assert_eq!(roundtrip(&t), t);
}

#[test]
fn attribute_values_are_named_by_their_attribute_name() {
    let xml = r#"<Attribute>
        <AttributeName type="TextString" value="Cryptographic Algorithm"/>
        <AttributeValue type="Enumeration" value="AES"/>
    </Attribute>"#;
    let t = parse_node(xml).unwrap().to_ttlv(&Bindings::new()).unwrap();
    assert_eq!(t.items()[1].value, Value::Enumeration(3));
}

#[test]
fn placeholders_are_kept_and_resolved() {
    let xml = r#"<ResponseHeader>
        <TimeStamp type="DateTime" value="$NOW-3600"/>
        <UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>
    </ResponseHeader>"#;
    let node = parse_template(xml).unwrap();
    let mut b = Bindings::new();
    assert!(matches!(
        node.to_ttlv(&b),
        Err(XmlError::Unbound { ref name, .. }) if name == "NOW-3600"
    ));
    b.now = Some(10_000);
    b.bind("UNIQUE_IDENTIFIER_0", Value::TextString("id-1".into()));
    let t = node.to_ttlv(&b).unwrap();
    assert_eq!(t.items()[0].value, Value::DateTime(6_400));
    assert_eq!(t.items()[1].as_text(), Some("id-1"));
}

/// Fuzzing found this: a Text String starting with `$` came back from XML as a placeholder.
#[test]
fn dollar_text_is_text_outside_templates() {
    let t = Ttlv::new(
        tags::UNIQUE_IDENTIFIER,
        Value::TextString("$ummy UNIQUE_IDENTIFIER_0".into()),
    );
    assert_eq!(roundtrip(&t), t);
    let t = Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString("$NOW".into()));
    assert_eq!(roundtrip(&t), t);
    let xml = r#"<UniqueIdentifier type="TextString" value="$ummy"/>"#;
    assert!(matches!(
        parse_template(xml).unwrap().value,
        XmlValue::Value(_)
    ));
    let xml = r#"<UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_2"/>"#;
    assert!(matches!(
        parse_template(xml).unwrap().value,
        XmlValue::Placeholder { .. }
    ));
}

#[test]
fn errors_name_the_element_path() {
    let err = parse_node(
        r#"<RequestMessage><BatchItem><Operation type="Enumeration" value="Fly"/></BatchItem></RequestMessage>"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/RequestMessage/BatchItem/Operation"), "{err}");
    assert!(parse_node(r#"<Nope/>"#).is_err());
    assert!(parse_node(r#"<BatchCount type="Integer" value="x"/>"#).is_err());
    assert!(parse_node(r#"<BatchCount type="Integer">1</BatchCount>"#).is_err());
    assert!(parse_node(r#"<BatchCount type="Bogus" value="1"/>"#).is_err());
    let n = MAX_XML_DEPTH + 1;
    let deep = "<Attribute>".repeat(n) + &"</Attribute>".repeat(n);
    let err = parse_node(&deep).unwrap_err().to_string();
    assert!(err.contains("deeper"), "{err}");
}
