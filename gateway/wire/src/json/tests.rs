//! Unit tests of the JSON encoding: the profile's example message, value forms, errors.

use bytes::Bytes;

use super::*;
use crate::xml::{parse_node, Bindings};

/// The MSGENC-JSON-M-1 request as the profile writes it in JSON.
const PROFILE_QUERY: &str = r#"{"tag":"RequestMessage", "value":[
  {"tag":"RequestHeader", "value":[
    {"tag":"ProtocolVersion", "value":[
      {"tag":"ProtocolVersionMajor", "type":"Integer", "value":2},
      {"tag":"ProtocolVersionMinor", "type":"Integer", "value":1}]},
    {"tag":"MaximumResponseSize", "type":"Integer", "value":256},
    {"tag":"BatchCount", "type":"Integer", "value":1}]},
  {"tag":"BatchItem", "value":[
    {"tag":"Operation", "type":"Enumeration", "value":"Query"},
    {"tag":"RequestPayload", "value":[
      {"tag":"QueryFunction", "type":"Enumeration", "value":"QueryOperations"},
      {"tag":"QueryFunction", "type":"Enumeration", "value":"0x00000002"}]}]}]}"#;

const PROFILE_QUERY_XML: &str = r#"<RequestMessage>
  <RequestHeader>
    <ProtocolVersion>
      <ProtocolVersionMajor type="Integer" value="2"/>
      <ProtocolVersionMinor type="Integer" value="1"/>
    </ProtocolVersion>
    <MaximumResponseSize type="Integer" value="256"/>
    <BatchCount type="Integer" value="1"/>
  </RequestHeader>
  <BatchItem>
    <Operation type="Enumeration" value="Query"/>
    <RequestPayload>
      <QueryFunction type="Enumeration" value="QueryOperations"/>
      <QueryFunction type="Enumeration" value="QueryObjects"/>
    </RequestPayload>
  </BatchItem>
</RequestMessage>"#;

#[test]
fn the_profile_example_reads_as_the_same_message_as_its_xml() {
    let from_json = from_json_str(PROFILE_QUERY).unwrap();
    let from_xml = parse_node(PROFILE_QUERY_XML)
        .unwrap()
        .to_ttlv(&Bindings::new())
        .unwrap();
    assert_eq!(from_json, from_xml);
    assert_eq!(
        from_json_str(&to_json_string(&from_json)).unwrap(),
        from_json
    );
}

#[test]
fn values_are_written_in_the_profile_forms() {
    let t = Ttlv::structure(
        tags::TEMPLATE_ATTRIBUTE,
        vec![
            Ttlv::structure(
                tags::ATTRIBUTE,
                vec![
                    Ttlv::new(
                        tags::ATTRIBUTE_NAME,
                        Value::TextString("Cryptographic Usage Mask".into()),
                    ),
                    Ttlv::new(tags::ATTRIBUTE_VALUE, Value::Integer(0x0C)),
                ],
            ),
            Ttlv::new(tags::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(3)),
            Ttlv::new(tags::ACTIVATION_DATE, Value::DateTime(0x47DA_67F8)),
            Ttlv::new(
                tags::KEY_MATERIAL,
                Value::ByteString(Bytes::from_static(&[1, 0xab])),
            ),
            Ttlv::new(tags::MODULUS, Value::BigInteger(Bytes::from(vec![0; 8]))),
            Ttlv::new(tags::USAGE_LIMITS_TOTAL, Value::LongInteger(1 << 60)),
            Ttlv::new(tags::USAGE_LIMITS_COUNT, Value::LongInteger(42)),
            Ttlv::new(tags::SENSITIVE, Value::Boolean(true)),
            Ttlv::new(Tag(0x54_0001), Value::Interval(7)),
        ],
    );
    let text = to_json_string(&t);
    for part in [
        r#"{"tag":"AttributeValue","type":"Integer","value":"Encrypt|Decrypt"}"#,
        r#"{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"}"#,
        r#""value":"2008-03-14T11:56:40+00:00""#,
        r#"{"tag":"KeyMaterial","type":"ByteString","value":"01ab"}"#,
        r#""value":"0x0000000000000000""#,
        r#"{"tag":"UsageLimitsTotal","type":"LongInteger","value":"0x1000000000000000"}"#,
        r#"{"tag":"UsageLimitsCount","type":"LongInteger","value":42}"#,
        r#"{"tag":"Sensitive","type":"Boolean","value":true}"#,
        r#"{"tag":"0x540001","type":"Interval","value":7}"#,
    ] {
        assert!(text.contains(part), "{part} not in {text}");
    }
    assert_eq!(from_json_str(&text).unwrap(), t);
}

#[test]
fn hex_and_number_forms_are_read_too() {
    let t = from_json_str(
        r#"{"tag":"RequestPayload","value":[
            {"tag":"CryptographicLength","type":"Integer","value":"0x00000080"},
            {"tag":"ObjectType","type":"Enumeration","value":2},
            {"tag":"CryptographicUsageMask","type":"Integer","value":"Encrypt|0x00000008"},
            {"tag":"Sensitive","type":"Boolean","value":"0x0000000000000001"},
            {"tag":"ActivationDate","type":"DateTime","value":"0x0000000047DA67F8"}]}"#,
    )
    .unwrap();
    assert_eq!(
        t.items()
            .iter()
            .map(|i| i.value.clone())
            .collect::<Vec<_>>(),
        vec![
            Value::Integer(128),
            Value::Enumeration(2),
            Value::Integer(0x0C),
            Value::Boolean(true),
            Value::DateTime(0x47DA_67F8),
        ]
    );
}

#[test]
fn errors_name_the_path_and_the_problem() {
    let cases = [
        (
            r#"{"tag":"RequestMessage","value":[{"tag":"Nope","value":[]}]}"#,
            "/RequestMessage: unknown tag \"Nope\"",
        ),
        (
            r#"{"tag":"BatchCount","type":"Integer","value":"x"}"#,
            "/BatchCount: Integer \"x\" is not a number",
        ),
        (
            r#"{"tag":"BatchCount","type":"Integer","value":3000000000}"#,
            "/BatchCount: 3000000000 is out of range for a Integer",
        ),
        (
            r#"{"tag":"BatchCount","type":"Integer","value":1.5}"#,
            "/BatchCount: 1.5 is not a whole number",
        ),
        (
            r#"{"tag":"BatchItem","value":{}}"#,
            "/BatchItem: a Structure's value is an array",
        ),
        (
            r#"{"tag":"BatchCount","type":"Integer"}"#,
            "/BatchCount: missing \"value\"",
        ),
        (
            r#"{"tag":"BatchCount","type":"Integer","value":1,"x":2}"#,
            "/BatchCount: unknown member \"x\"",
        ),
        (
            r#"{"tag":"NameValue","type":"TextString","value":1}"#,
            "/NameValue: a TextString's value is a string",
        ),
        (r#"[1]"#, "an item is a JSON object"),
        (r#"{"tag""#, "JSON syntax error"),
    ];
    for (text, want) in cases {
        let e = from_json_str(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e} lacks {want}");
    }
}

#[test]
fn a_hostile_nesting_is_refused_not_recursed_into() {
    let levels = 10_000;
    let text = format!(
        r#"{}{{"tag":"BatchCount","type":"Integer","value":1}}{}"#,
        r#"{"tag":"BatchItem","value":["#.repeat(levels),
        "]}".repeat(levels)
    );
    let e = from_json_str(&text).unwrap_err().to_string();
    assert!(e.contains("recursion limit"), "{e}");
}
