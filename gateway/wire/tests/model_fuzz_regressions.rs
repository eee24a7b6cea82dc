//! Inputs the `model` fuzz target (gateway/fuzz) found: a request the model reads must be written
//! back to the same request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Tag, Ttlv, Value};

const V1_0: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };
const V2_1: ProtocolVersion = ProtocolVersion { major: 2, minor: 1 };

/// Writes `payload` as a `version` request, encodes, decodes and reads it back.
fn round_trip(version: ProtocolVersion, payload: RequestPayload) -> RequestPayload {
    let msg = RequestMessage {
        header: RequestHeader::new(version),
        items: vec![RequestBatchItem::new(payload)],
    };
    let bytes = msg.to_ttlv().to_bytes().unwrap();
    let back = RequestMessage::from_ttlv(&decode(&bytes, &Limits::default()).unwrap()).unwrap();
    assert_eq!(back, msg);
    back.items.into_iter().next().unwrap().payload.unwrap()
}

/// Names a version does not define as attributes: not a tag of the specification at all
/// (0x41FA34, what the fuzzer sent), a 1.x-only attribute in 2.1, a custom name in 2.1, and in
/// 1.0 an attribute name 1.0 does not know.
fn odd_names() -> Vec<(ProtocolVersion, AttributeName)> {
    vec![
        (V2_1, AttributeName::Tag(Tag(0x41_FA34))),
        (V2_1, AttributeName::Tag(tags::OPERATION_POLICY_NAME)),
        (V2_1, AttributeName::Unknown("Not An Attribute".into())),
        (
            V1_0,
            AttributeName::Vendor {
                vendor: "ACME".into(),
                name: "Colour".into(),
            },
        ),
        (V1_0, AttributeName::Tag(Tag(0x41_FA34))),
        (V1_0, AttributeName::from_v1_name("Sensitive")),
    ]
}

/// Writing used to drop such names, so a Get Attributes for only unknown attributes went out
/// as one for every attribute.
#[test]
fn get_attributes_keeps_names_the_version_does_not_define() {
    for (version, name) in odd_names() {
        let payload = RequestPayload::GetAttributes(GetAttributesRequest {
            unique_identifier: Some("uid".into()),
            names: vec![name.clone()],
        });
        let RequestPayload::GetAttributes(back) = round_trip(version, payload) else {
            panic!("operation changed");
        };
        assert_eq!(back.names, vec![name], "{version:?}");
    }
}

/// Writing used to drop the name, leaving a Delete Attribute the server rejects as incomplete.
#[test]
fn delete_attribute_keeps_names_the_version_does_not_define() {
    for (version, name) in odd_names() {
        let payload = RequestPayload::DeleteAttribute(DeleteAttributeRequest {
            unique_identifier: Some("uid".into()),
            name: name.clone(),
            index: None,
            current: None,
        });
        let RequestPayload::DeleteAttribute(back) = round_trip(version, payload) else {
            panic!("operation changed");
        };
        assert_eq!(back.name, name, "{version:?}");
    }
}

/// A response read with a version no table describes (1.-100663292) was written with every tag
/// pruned: an empty Response Message that nothing can read.
#[test]
fn response_in_an_unknown_version_is_written_readably() {
    let version = ProtocolVersion {
        major: 1,
        minor: -100_663_292,
    };
    let msg = ResponseMessage {
        header: ResponseHeader::new(version, 1_600_000_000),
        items: vec![ResponseBatchItem::failure(
            Some(Operation::Query),
            None,
            ResultReason::InvalidMessage,
            "bad",
        )],
    };
    let bytes = msg.to_ttlv().to_bytes().unwrap();
    let back = ResponseMessage::from_ttlv(&decode(&bytes, &Limits::default()).unwrap()).unwrap();
    assert_eq!(back, msg);
}

/// Get Attributes read every Attribute Name before every Attribute Reference, so a 2.x request
/// mixing them came back reordered (and the answer listed the attributes in another order).
#[test]
fn get_attributes_keeps_the_order_of_mixed_names_and_references() {
    let names = vec![
        AttributeName::Tag(tags::CRYPTOGRAPHIC_ALGORITHM),
        AttributeName::Unknown("Not An Attribute".into()),
        AttributeName::Tag(tags::OBJECT_TYPE),
    ];
    let payload = RequestPayload::GetAttributes(GetAttributesRequest {
        unique_identifier: Some("uid".into()),
        names: names.clone(),
    });
    let RequestPayload::GetAttributes(back) = round_trip(V2_1, payload) else {
        panic!("operation changed");
    };
    assert_eq!(back.names, names);
}

/// Attributes a version does not define, each as the reader produces it: a 2.x item with a tag
/// of no table (what the fuzzer sent in a 2.1 Locate), a 1.x-only attribute in 2.1, a 1.x-style
/// name that is no attribute in 2.1 and in a version no table describes, an Attribute Index in
/// 2.1 (read from a 1.x-style Attribute), a vendor that is not `x`/`y` in 1.0, in 1.0 an
/// attribute that 1.4 introduced, and 2.x-only attributes in 1.0 (read from the 2.x
/// `Attributes` shape, which the reader accepts in any version).
fn odd_attributes() -> Vec<(ProtocolVersion, Attribute)> {
    let unknown_version = ProtocolVersion {
        major: 1,
        minor: -1_543_503_868,
    };
    let unknown = Attribute {
        name: AttributeName::Unknown("Not An Attribute".into()),
        index: Some(2),
        value: Value::TextString("v".into()),
    };
    let mut indexed_name = Attribute::name(&Name::new("n"));
    indexed_name.index = Some(1);
    vec![
        (
            V2_1,
            Attribute::new(Tag(0x45_0068), Value::TextString("v".into())),
        ),
        (
            V2_1,
            Attribute::text(tags::OPERATION_POLICY_NAME, "default"),
        ),
        (V2_1, unknown.clone()),
        (unknown_version, unknown.clone()),
        (V2_1, indexed_name),
        (V1_0, Attribute::vendor("ACME", "Colour", Value::Integer(7))),
        (
            V1_0,
            Attribute {
                name: AttributeName::from_v1_name("Sensitive"),
                index: None,
                value: Value::Boolean(true),
            },
        ),
        (V1_0, unknown),
        (V1_0, Attribute::boolean(tags::QUANTUM_SAFE, true)),
        (
            V1_0,
            Attribute::new(tags::PROTECTION_LEVEL, Value::Enumeration(1)),
        ),
    ]
}

/// Request writers used to drop such attributes: a Locate lost the criterion and matched more
/// objects, a Create or an Add Attribute silently did less than asked.
#[test]
fn request_writers_keep_attributes_the_version_does_not_define() {
    for (version, attribute) in odd_attributes() {
        let attributes = vec![attribute.clone()];
        let with_attribute = AttributeRequest {
            unique_identifier: Some("uid".into()),
            attribute: attribute.clone(),
        };
        let payloads = [
            RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: attributes.clone(),
            }),
            RequestPayload::Locate(LocateRequest {
                attributes: attributes.clone(),
                ..LocateRequest::default()
            }),
            RequestPayload::ReKey(ReKeyRequest {
                unique_identifier: Some("uid".into()),
                offset: None,
                attributes,
            }),
            RequestPayload::AddAttribute(with_attribute.clone()),
            RequestPayload::SetAttribute(with_attribute),
            RequestPayload::ModifyAttribute(ModifyAttributeRequest {
                unique_identifier: Some("uid".into()),
                current: Some(attribute.clone()),
                attribute: attribute.clone(),
            }),
            RequestPayload::DeleteAttribute(DeleteAttributeRequest {
                unique_identifier: Some("uid".into()),
                name: attribute.name.clone(),
                index: None,
                current: Some(attribute.clone()),
            }),
        ];
        for payload in payloads {
            assert_eq!(
                round_trip(version, payload.clone()),
                payload,
                "{version:?} {attribute:?}"
            );
        }
    }
}

/// An index chosen by the caller is kept in 2.x too, where only the reader's 1.x-style form
/// can carry it.
#[test]
fn delete_attribute_keeps_its_index_in_2_x() {
    let payload = RequestPayload::DeleteAttribute(DeleteAttributeRequest {
        unique_identifier: Some("uid".into()),
        name: AttributeName::Tag(tags::NAME),
        index: Some(3),
        current: None,
    });
    assert_eq!(round_trip(V2_1, payload.clone()), payload);
}

/// A Hash answer in a KMIP 1.1 message (the fuzz input `regression-hash-answer-in-1-1`): 1.1
/// defines neither Hash nor Data, so a typed Hash answer was written without its Data and could
/// not be read back. An operation the version does not define is kept as it came.
#[test]
fn an_answer_to_an_operation_the_version_lacks_is_kept_as_it_came() {
    let item = Ttlv::structure(
        tags::BATCH_ITEM,
        vec![
            Ttlv::new(tags::OPERATION, Value::Enumeration(0x27)),
            Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)),
            Ttlv::structure(
                tags::RESPONSE_PAYLOAD,
                vec![Ttlv::new(
                    tags::DATA,
                    Value::ByteString(b"digest".to_vec().into()),
                )],
            ),
        ],
    );
    for (minor, typed) in [(1, false), (2, true), (4, true)] {
        let version = ProtocolVersion { major: 1, minor };
        let header = Ttlv::structure(
            tags::RESPONSE_HEADER,
            vec![
                version.to_ttlv(),
                Ttlv::new(tags::TIME_STAMP, Value::DateTime(1_600_000_000)),
                Ttlv::new(tags::BATCH_COUNT, Value::Integer(1)),
            ],
        );
        let msg = Ttlv::structure(tags::RESPONSE_MESSAGE, vec![header, item.clone()]);
        let read = ResponseMessage::from_ttlv(&msg).unwrap();
        assert_eq!(
            matches!(read.items[0].payload, Some(ResponsePayload::Hash(_))),
            typed,
            "1.{minor}"
        );
        let written = read.to_ttlv();
        let again = ResponseMessage::from_ttlv(&written).unwrap();
        assert_eq!(again.to_ttlv(), written, "1.{minor}");
    }
    assert!(operation_defined(0x2B, ProtocolVersion::V1_4));
    assert!(!operation_defined(
        0x2A,
        ProtocolVersion { major: 1, minor: 3 }
    ));
    assert!(!operation_defined(0x1D, V1_0));
    assert!(operation_defined(0x3A, V2_1));
}
