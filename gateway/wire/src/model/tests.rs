use std::path::{Path, PathBuf};

use super::*;
use crate::spec::tags;
use crate::ttlv::{ItemType, Tag, Ttlv, Value};
use crate::xml::{self, Bindings};

const NOW: i64 = 1_700_000_000;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kmip-vectors")
}

/// The messages of a vector file, placeholders bound to fixed values of their type.
fn vector_messages(file: &str) -> Vec<Ttlv> {
    let text = std::fs::read_to_string(vectors_dir().join(file)).unwrap();
    let nodes = xml::parse_document(&text).unwrap();
    let mut bindings = Bindings::new();
    bindings.now = Some(NOW);
    for node in &nodes {
        node.for_each_placeholder(&mut |p, item_type| {
            if p.now_offset().is_some() {
                return;
            }
            let value = match item_type {
                ItemType::TextString => Value::TextString(format!("bound-{}", p.0)),
                ItemType::ByteString => Value::ByteString(bytes::Bytes::from(vec![0x5A; 16])),
                ItemType::Integer => Value::Integer(16),
                ItemType::LongInteger => Value::LongInteger(16),
                ItemType::Enumeration => Value::Enumeration(1),
                ItemType::Boolean => Value::Boolean(true),
                ItemType::DateTime => Value::DateTime(NOW),
                ItemType::Interval => Value::Interval(16),
                _ => return,
            };
            bindings.bind(&p.0, value);
        });
    }
    nodes
        .iter()
        .map(|n| n.to_ttlv(&bindings).unwrap())
        .collect()
}

fn all_vector_files() -> Vec<String> {
    let mut files = Vec::new();
    for sub in ["v1.4", "v2.1"] {
        for entry in std::fs::read_dir(vectors_dir().join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".xml") {
                files.push(format!("{sub}/{name}"));
            }
        }
    }
    files.sort();
    files
}

/// Operations the model deliberately leaves untyped.
const UNTYPED: [Operation; 4] = [
    Operation::Hash,
    Operation::MacVerify,
    Operation::Pkcs11,
    Operation::RngRetrieve,
];

/// Every request and response of every OASIS vector parses, and re-encodes to the same tree.
#[test]
fn every_vector_message_parses_and_re_encodes_exactly() {
    let mut failures = Vec::new();
    let (mut requests, mut responses) = (0, 0);
    for file in all_vector_files() {
        for (i, message) in vector_messages(&file).iter().enumerate() {
            if message.tag == tags::REQUEST_MESSAGE {
                requests += 1;
                let request = match RequestMessage::from_ttlv(message) {
                    Ok(r) => r,
                    Err(e) => {
                        failures.push(format!("{file}#{i}: {e}"));
                        continue;
                    }
                };
                for item in &request.items {
                    match &item.payload {
                        Err(e) => failures.push(format!("{file}#{i}: {e}")),
                        Ok(RequestPayload::Unknown { op_code, .. })
                            if !UNTYPED.contains(op_code) =>
                        {
                            failures.push(format!("{file}#{i}: {op_code:?} untyped"))
                        }
                        Ok(_) => {}
                    }
                }
                if &request.to_ttlv() != message {
                    failures.push(format!("{file}#{i}: request re-encodes differently"));
                }
            } else {
                responses += 1;
                match ResponseMessage::from_ttlv(message) {
                    Ok(r) if &r.to_ttlv() == message => {}
                    Ok(_) => failures.push(format!("{file}#{i}: response re-encodes differently")),
                    Err(e) => failures.push(format!("{file}#{i}: {e}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        requests > 900 && responses == requests,
        "{requests} requests, {responses} responses"
    );
}

fn request(file: &str, index: usize) -> (Ttlv, RequestMessage) {
    let ttlv = vector_messages(file).swap_remove(index);
    let parsed = RequestMessage::from_ttlv(&ttlv).unwrap();
    (ttlv, parsed)
}

fn response(file: &str, index: usize) -> (Ttlv, ResponseMessage) {
    let ttlv = vector_messages(file).swap_remove(index);
    let parsed = ResponseMessage::from_ttlv(&ttlv).unwrap();
    (ttlv, parsed)
}

fn payload(message: &RequestMessage) -> &RequestPayload {
    message.items[0].payload.as_ref().unwrap()
}

#[test]
fn sklc_m_1_14_create_get_attributes_destroy() {
    let file = "v1.4/SKLC-M-1-14.xml";
    let (_, create) = request(file, 0);
    assert_eq!(create.header.protocol_version, ProtocolVersion::V1_4);
    let RequestPayload::Create(c) = payload(&create) else {
        panic!("not a Create")
    };
    assert_eq!(c.object_type, ObjectType::SymmetricKey);
    assert_eq!(
        c.attributes.cryptographic_algorithm(),
        Some(CryptographicAlgorithm::Aes)
    );
    assert_eq!(c.attributes.cryptographic_length(), Some(256));
    assert_eq!(
        c.attributes.cryptographic_usage_mask(),
        Some(usage_mask::ENCRYPT | usage_mask::DECRYPT)
    );
    assert_eq!(c.attributes.names(), vec![Name::new("SKLC-M-1-14")]);

    let (created_ttlv, created) = response(file, 1);
    let Some(ResponsePayload::Create(r)) = &created.items[0].payload else {
        panic!()
    };
    assert_eq!(r.unique_identifier, "bound-UNIQUE_IDENTIFIER_0");
    assert_eq!(created.header.time_stamp, NOW);
    assert_eq!(created.to_ttlv(), created_ttlv);

    let (_, get_attributes) = request(file, 2);
    let RequestPayload::GetAttributes(g) = payload(&get_attributes) else {
        panic!()
    };
    assert_eq!(g.names.len(), 10);
    assert_eq!(g.names[0], AttributeName::Tag(tags::STATE));
    assert_eq!(g.names[2], AttributeName::Tag(tags::UNIQUE_IDENTIFIER));

    let (attrs_ttlv, attrs) = response(file, 3);
    let Some(ResponsePayload::GetAttributes(a)) = &attrs.items[0].payload else {
        panic!()
    };
    assert_eq!(a.attributes.state(), Some(State::PreActive));
    let digest = a
        .attributes
        .get(tags::DIGEST)
        .and_then(Attribute::as_digest)
        .unwrap();
    assert_eq!(digest.hashing_algorithm, HashingAlgorithm::Sha256);
    assert_eq!(digest.key_format_type, Some(KeyFormatType::Raw));
    assert_eq!(attrs.to_ttlv(), attrs_ttlv);

    // The same answer for a 2.1 client: tagged attributes inside an Attributes structure.
    let mut v2 = attrs.clone();
    v2.header.protocol_version = ProtocolVersion::V2_1;
    let encoded = v2.to_ttlv();
    let v2_payload = encoded
        .child(tags::BATCH_ITEM)
        .unwrap()
        .child(tags::RESPONSE_PAYLOAD)
        .unwrap();
    assert!(v2_payload.child(tags::ATTRIBUTE).is_none());
    let attributes = v2_payload.child(tags::ATTRIBUTES).unwrap();
    assert_eq!(
        attributes.child(tags::STATE).unwrap().as_enum(),
        Some(State::PreActive.to_u32())
    );
    assert_eq!(ResponseMessage::from_ttlv(&encoded).unwrap(), v2);

    let (_, destroy) = request(file, 4);
    assert!(
        matches!(payload(&destroy), RequestPayload::Destroy(UidRequest { unique_identifier: Some(u) }) if u == "bound-UNIQUE_IDENTIFIER_0")
    );
}

#[test]
fn sased_m_1_14_query() {
    let file = "v1.4/SASED-M-1-14.xml";
    let (ttlv, query) = request(file, 0);
    let RequestPayload::Query(q) = payload(&query) else {
        panic!()
    };
    assert_eq!(
        q.functions,
        vec![
            QueryFunction::QueryOperations,
            QueryFunction::QueryObjects,
            QueryFunction::QueryServerInformation
        ]
    );
    assert_eq!(query.to_ttlv(), ttlv);
    let (ttlv, answer) = response(file, 1);
    let Some(ResponsePayload::Query(r)) = &answer.items[0].payload else {
        panic!()
    };
    assert_eq!(r.operations.len(), 8);
    assert_eq!(
        r.object_types,
        vec![ObjectType::SecretData, ObjectType::Template]
    );
    assert_eq!(
        r.vendor_identification.as_deref(),
        Some("server-vendor.com")
    );
    assert_eq!(answer.to_ttlv(), ttlv);
}

#[test]
fn sased_m_2_14_register_secret_data_with_custom_attributes() {
    let (ttlv, register) = request("v1.4/SASED-M-2-14.xml", 2);
    let RequestPayload::Register(r) = payload(&register) else {
        panic!()
    };
    assert_eq!(r.attributes.object_groups(), vec!["SASED-M-2-14-group"]);
    let custom = r.attributes.vendor("x", "CustomAttribute3").unwrap();
    assert_eq!(custom.as_text(), Some("CustomValue3"));
    let ManagedObject::SecretData {
        secret_data_type,
        key_block,
    } = &r.object
    else {
        panic!()
    };
    assert_eq!(*secret_data_type, SecretDataType::Password);
    assert_eq!(key_block.key_format_type, KeyFormatType::Opaque);
    assert_eq!(key_block.key_bytes().unwrap().as_slice(), &[0x2a; 32][..]);
    assert_eq!(register.to_ttlv(), ttlv);
}

#[test]
fn bl_m_1_21_register_locate_get_interop_log() {
    let file = "v2.1/BL-M-1-21.xml";
    let messages = vector_messages(file);
    let (_, interop) = request(file, 0);
    assert!(
        matches!(payload(&interop), RequestPayload::Interop(i) if i.function == InteropFunction::Begin && i.identifier == "BL-M-1-21")
    );
    let (_, register) = request(file, 2);
    assert!(register.header.protocol_version.is_v2());
    let RequestPayload::Register(r) = payload(&register) else {
        panic!()
    };
    assert_eq!(r.attributes.names(), vec![Name::new("BL-M-1-21")]);
    assert_eq!(r.attributes.cryptographic_length(), Some(128));
    let (_, locate) = request(file, 4);
    let RequestPayload::Locate(l) = payload(&locate) else {
        panic!()
    };
    assert_eq!(l.attributes.names(), vec![Name::new("BL-M-1-21")]);
    let (_, got) = response(file, 7);
    let Some(ResponsePayload::Get(g)) = &got.items[0].payload else {
        panic!()
    };
    let key = g.object.key_block().unwrap();
    assert_eq!(
        key.cryptographic_algorithm,
        Some(CryptographicAlgorithm::Aes)
    );
    assert_eq!(key.key_bytes().unwrap().len(), 16);
    assert_eq!(
        got.header.server_correlation_value.as_deref(),
        Some("A5E83842-2A456820-7")
    );
    let (_, log) = request(file, 10);
    assert!(
        matches!(payload(&log), RequestPayload::Log(l) if l.message == "Registered a symmetric key.")
    );
    let (_, logged) = response(file, 11);
    assert_eq!(logged.items[0].payload, Some(ResponsePayload::Empty));
    for message in &messages {
        let bytes = message.to_bytes().unwrap();
        let decoded = crate::ttlv::decode(&bytes, &crate::Limits::default()).unwrap();
        assert_eq!(&decoded, message);
    }
}

fn st(tag: Tag, items: Vec<Ttlv>) -> Ttlv {
    Ttlv::new(tag, Value::Structure(items))
}

fn text(tag: Tag, s: &str) -> Ttlv {
    Ttlv::new(tag, Value::TextString(s.to_owned()))
}

fn int(tag: Tag, i: i32) -> Ttlv {
    Ttlv::new(tag, Value::Integer(i))
}

fn enm(tag: Tag, e: u32) -> Ttlv {
    Ttlv::new(tag, Value::Enumeration(e))
}

fn header(major: i32, minor: i32, batch_count: i32) -> Ttlv {
    st(
        tags::REQUEST_HEADER,
        vec![
            st(
                tags::PROTOCOL_VERSION,
                vec![
                    int(tags::PROTOCOL_VERSION_MAJOR, major),
                    int(tags::PROTOCOL_VERSION_MINOR, minor),
                ],
            ),
            int(tags::BATCH_COUNT, batch_count),
        ],
    )
}

fn item(op: Operation, id: Option<&[u8]>, payload: Vec<Ttlv>) -> Ttlv {
    let mut items = vec![enm(tags::OPERATION, op.to_u32())];
    items.extend(id.map(|id| {
        Ttlv::new(
            tags::UNIQUE_BATCH_ITEM_ID,
            Value::ByteString(bytes::Bytes::copy_from_slice(id)),
        )
    }));
    items.push(st(tags::REQUEST_PAYLOAD, payload));
    st(tags::BATCH_ITEM, items)
}

fn v1_attribute(name: &str, value: Value) -> Ttlv {
    st(
        tags::ATTRIBUTE,
        vec![
            text(tags::ATTRIBUTE_NAME, name),
            Ttlv::new(tags::ATTRIBUTE_VALUE, value),
        ],
    )
}

#[test]
fn attributes_read_in_both_forms_and_write_in_the_negotiated_one() {
    // vCenter: three AddAttribute of custom attributes in one 1.1 batch.
    let v1 = st(
        tags::REQUEST_MESSAGE,
        vec![
            header(1, 1, 2),
            item(
                Operation::AddAttribute,
                Some(b"a"),
                vec![
                    text(tags::UNIQUE_IDENTIFIER, "k1"),
                    v1_attribute("x-Product_Version", Value::TextString("8.0".into())),
                ],
            ),
            item(
                Operation::AddAttribute,
                Some(b"b"),
                vec![
                    text(tags::UNIQUE_IDENTIFIER, "k1"),
                    v1_attribute("Cryptographic Algorithm", Value::Enumeration(3)),
                ],
            ),
        ],
    );
    let parsed = RequestMessage::from_ttlv(&v1).unwrap();
    let attribute = |i: usize| match parsed.items[i].payload.as_ref().unwrap() {
        RequestPayload::AddAttribute(a) => a.attribute.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        attribute(0),
        Attribute::vendor("x", "Product_Version", Value::TextString("8.0".into()))
    );
    assert_eq!(
        attribute(1),
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes)
    );
    assert_eq!(parsed.to_ttlv(), v1);

    // The same batch for 2.1: New Attribute holding a Vendor Attribute and a tagged attribute.
    let mut v2 = parsed.clone();
    v2.header.protocol_version = ProtocolVersion::V2_1;
    let encoded = v2.to_ttlv();
    let new_attribute = |i: usize| {
        encoded
            .children(tags::BATCH_ITEM)
            .nth(i)
            .unwrap()
            .child(tags::REQUEST_PAYLOAD)
            .unwrap()
            .child(tags::NEW_ATTRIBUTE)
            .unwrap()
            .clone()
    };
    assert_eq!(
        new_attribute(0),
        st(
            tags::NEW_ATTRIBUTE,
            vec![st(
                tags::ATTRIBUTE,
                vec![
                    text(tags::VENDOR_IDENTIFICATION, "x"),
                    text(tags::ATTRIBUTE_NAME, "Product_Version"),
                    text(tags::ATTRIBUTE_VALUE, "8.0"),
                ]
            )]
        )
    );
    assert_eq!(
        new_attribute(1),
        st(
            tags::NEW_ATTRIBUTE,
            vec![enm(tags::CRYPTOGRAPHIC_ALGORITHM, 3)]
        )
    );
    let reparsed = RequestMessage::from_ttlv(&encoded).unwrap();
    assert_eq!(reparsed.items, parsed.items);
}

#[test]
fn attribute_names_map_between_versions() {
    let cases = [
        (
            "Cryptographic Algorithm",
            AttributeName::Tag(tags::CRYPTOGRAPHIC_ALGORITHM),
        ),
        (
            "Operation Policy Name",
            AttributeName::Tag(tags::OPERATION_POLICY_NAME),
        ),
        (
            "x-Product_Version",
            AttributeName::Vendor {
                vendor: "x".into(),
                name: "Product_Version".into(),
            },
        ),
        (
            "y-NETAPP-Key-Id",
            AttributeName::Vendor {
                vendor: "y".into(),
                name: "NETAPP-Key-Id".into(),
            },
        ),
        ("Made Up", AttributeName::Unknown("Made Up".into())),
    ];
    for (v1_name, name) in cases {
        assert_eq!(AttributeName::from_v1_name(v1_name), name);
        assert_eq!(name.v1_name().as_deref(), Some(v1_name));
    }
    let policy = AttributeName::Tag(tags::OPERATION_POLICY_NAME);
    assert!(policy.defined_in(ProtocolVersion::V1_4));
    assert!(!policy.defined_in(ProtocolVersion::V2_0));
    assert!(!AttributeName::Unknown("Made Up".into()).defined_in(ProtocolVersion::V2_1));
    let acme = AttributeName::Vendor {
        vendor: "acme".into(),
        name: "n".into(),
    };
    assert!(acme.defined_in(ProtocolVersion::V2_1) && !acme.defined_in(ProtocolVersion::V1_4));
}

#[test]
fn get_attributes_references_and_modify_delete_forms() {
    let names = vec![
        AttributeName::Tag(tags::STATE),
        AttributeName::Vendor {
            vendor: "x".into(),
            name: "Product_Version".into(),
        },
    ];
    let get = RequestPayload::GetAttributes(GetAttributesRequest {
        unique_identifier: Some("k".into()),
        names: names.clone(),
    });
    let v1 = get.to_ttlv(ProtocolVersion::V1_2);
    assert_eq!(
        v1.children(tags::ATTRIBUTE_NAME)
            .map(|t| t.as_text().unwrap())
            .collect::<Vec<_>>(),
        ["State", "x-Product_Version"]
    );
    let v2 = get.to_ttlv(ProtocolVersion::V2_0);
    let refs: Vec<_> = v2.children(tags::ATTRIBUTE_REFERENCE).collect();
    assert_eq!(refs[0].as_enum(), Some(tags::STATE.0));
    assert_eq!(
        refs[1]
            .child(tags::VENDOR_IDENTIFICATION)
            .unwrap()
            .as_text(),
        Some("x")
    );
    for encoded in [v1, v2] {
        let parsed =
            RequestPayload::read(Operation::GetAttributes, &codec::Node::new(&encoded, ""))
                .unwrap();
        assert_eq!(parsed, get);
    }

    // 2.x Modify with Current and New Attribute. 1.x has no Current Attribute, but the request
    // writer keeps it rather than modify a different instance than the caller chose: a 1.x
    // server rejects the field.
    let old = Name::new("old");
    let new = Name::new("new");
    let modify_v2 = st(
        tags::REQUEST_PAYLOAD,
        vec![
            text(tags::UNIQUE_IDENTIFIER, "k"),
            st(
                tags::CURRENT_ATTRIBUTE,
                vec![Ttlv::new(tags::NAME, old.to_value())],
            ),
            st(
                tags::NEW_ATTRIBUTE,
                vec![Ttlv::new(tags::NAME, new.to_value())],
            ),
        ],
    );
    let parsed = RequestPayload::read(
        Operation::ModifyAttribute,
        &codec::Node::new(&modify_v2, ""),
    )
    .unwrap();
    let RequestPayload::ModifyAttribute(m) = &parsed else {
        panic!()
    };
    assert_eq!(m.current.as_ref().and_then(Attribute::as_name), Some(old));
    assert_eq!(m.attribute.as_name(), Some(new));
    assert_eq!(parsed.to_ttlv(ProtocolVersion::V2_1), modify_v2);
    let v1 = parsed.to_ttlv(ProtocolVersion::V1_4);
    assert!(v1.child(tags::CURRENT_ATTRIBUTE).is_some());
    assert_eq!(
        v1.child(tags::ATTRIBUTE)
            .unwrap()
            .child(tags::ATTRIBUTE_NAME)
            .unwrap()
            .as_text(),
        Some("Name")
    );

    // 1.x Delete by name and index.
    let delete_v1 = st(
        tags::REQUEST_PAYLOAD,
        vec![
            text(tags::UNIQUE_IDENTIFIER, "k"),
            text(tags::ATTRIBUTE_NAME, "Object Group"),
            int(tags::ATTRIBUTE_INDEX, 1),
        ],
    );
    let parsed = RequestPayload::read(
        Operation::DeleteAttribute,
        &codec::Node::new(&delete_v1, ""),
    )
    .unwrap();
    let RequestPayload::DeleteAttribute(d) = &parsed else {
        panic!()
    };
    assert_eq!(
        (d.name.clone(), d.index),
        (AttributeName::Tag(tags::OBJECT_GROUP), Some(1))
    );
    assert_eq!(parsed.to_ttlv(ProtocolVersion::V1_4), delete_v1);
    let v2 = parsed.to_ttlv(ProtocolVersion::V2_1);
    assert_eq!(
        v2.child(tags::ATTRIBUTE_REFERENCE).unwrap().as_enum(),
        Some(tags::OBJECT_GROUP.0)
    );
    // 2.x has no Attribute Index; the writer keeps it rather than name another instance.
    assert_eq!(
        v2.child(tags::ATTRIBUTE_INDEX).map(|t| &t.value),
        Some(&Value::Integer(1))
    );
}

#[test]
fn locate_filter_wrapped_in_a_template_attribute_is_read() {
    // FortiGate with KMIP 1.0/1.1.
    let locate = st(
        tags::REQUEST_PAYLOAD,
        vec![st(
            tags::TEMPLATE_ATTRIBUTE,
            vec![v1_attribute("Name", Name::new("fgt-key").to_value())],
        )],
    );
    let parsed = RequestPayload::read(Operation::Locate, &codec::Node::new(&locate, "")).unwrap();
    let RequestPayload::Locate(l) = &parsed else {
        panic!()
    };
    assert_eq!(l.attributes.names(), vec![Name::new("fgt-key")]);
    // Written back bare, as 1.2+ defines it.
    let written = parsed.to_ttlv(ProtocolVersion::V1_1);
    assert!(written.child(tags::TEMPLATE_ATTRIBUTE).is_none());
    assert!(written.child(tags::ATTRIBUTE).is_some());
}

#[test]
fn tagged_attributes_in_a_template_attribute_are_read_not_ignored() {
    // A client mixing the shapes: a 2.x-style tagged item inside a 1.x Template-Attribute.
    let locate = st(
        tags::REQUEST_PAYLOAD,
        vec![st(
            tags::TEMPLATE_ATTRIBUTE,
            vec![
                v1_attribute("Name", Name::new("k").to_value()),
                enm(tags::CRYPTOGRAPHIC_ALGORITHM, 3),
            ],
        )],
    );
    let parsed = RequestPayload::read(Operation::Locate, &codec::Node::new(&locate, "")).unwrap();
    let RequestPayload::Locate(l) = &parsed else {
        panic!()
    };
    assert_eq!(l.attributes.names(), vec![Name::new("k")]);
    assert_eq!(
        l.attributes.cryptographic_algorithm(),
        Some(CryptographicAlgorithm::Aes)
    );
    // A malformed one fails the item instead of being dropped.
    let bad = st(
        tags::REQUEST_PAYLOAD,
        vec![st(
            tags::TEMPLATE_ATTRIBUTE,
            vec![text(tags::CRYPTOGRAPHIC_ALGORITHM, "AES")],
        )],
    );
    assert!(RequestPayload::read(Operation::Locate, &codec::Node::new(&bad, "")).is_err());
}

#[test]
fn template_references_are_read_where_objects_are_made_and_refused_elsewhere() {
    let reference = || {
        st(
            tags::TEMPLATE_ATTRIBUTE,
            vec![
                Ttlv::new(tags::NAME, Name::new("t1").to_value()),
                v1_attribute("Cryptographic Length", Value::Integer(128)),
                Ttlv::new(tags::NAME, Name::new("t2").to_value()),
            ],
        )
    };
    let create = st(
        tags::REQUEST_PAYLOAD,
        vec![enm(tags::OBJECT_TYPE, 2), reference()],
    );
    let parsed = RequestPayload::read(
        Operation::Create,
        &codec::Node::new(&create, "RequestPayload"),
    )
    .unwrap();
    let RequestPayload::Create(c) = &parsed else {
        panic!()
    };
    assert_eq!(c.templates, vec![Name::new("t1"), Name::new("t2")]);
    assert_eq!(c.attributes.len(), 1);
    // Written back as a 1.x Template-Attribute, the only shape that carries them, in any version.
    for version in [ProtocolVersion::V1_2, ProtocolVersion::V2_0] {
        let written = parsed.to_ttlv(version);
        let again = RequestPayload::read(
            Operation::Create,
            &codec::Node::new(&written, "RequestPayload"),
        )
        .unwrap();
        assert_eq!(again, parsed, "{version:?}");
    }
    // A Locate has no use for a Template: refused, not ignored.
    let locate = st(tags::REQUEST_PAYLOAD, vec![reference()]);
    let err = RequestPayload::read(
        Operation::Locate,
        &codec::Node::new(&locate, "RequestPayload"),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Unsupported { .. }), "{err:?}");
    // A malformed reference fails the item.
    let bad = st(
        tags::REQUEST_PAYLOAD,
        vec![
            enm(tags::OBJECT_TYPE, 2),
            st(tags::TEMPLATE_ATTRIBUTE, vec![st(tags::NAME, vec![])]),
        ],
    );
    assert!(RequestPayload::read(Operation::Create, &codec::Node::new(&bad, "")).is_err());
}

#[test]
fn unique_batch_item_ids_are_echoed() {
    let message = st(
        tags::REQUEST_MESSAGE,
        vec![
            header(1, 1, 2),
            item(
                Operation::DiscoverVersions,
                Some(&[1, 2, 3, 4, 5, 6, 7, 8]),
                vec![],
            ),
            item(
                Operation::Query,
                Some(&[9; 8]),
                vec![enm(tags::QUERY_FUNCTION, 3)],
            ),
        ],
    );
    let request = RequestMessage::from_ttlv(&message).unwrap();
    let response = ResponseMessage {
        header: ResponseHeader::for_request(&request.header, NOW),
        items: vec![
            request.items[0].success(ResponsePayload::DiscoverVersions(
                DiscoverVersionsResponse {
                    versions: vec![ProtocolVersion::V1_1, ProtocolVersion::V1_0],
                },
            )),
            request.items[1].failure(ResultReason::OperationNotSupported, "no"),
        ],
    };
    let encoded = response.to_ttlv();
    let ids: Vec<_> = encoded
        .children(tags::BATCH_ITEM)
        .map(|i| {
            i.child(tags::UNIQUE_BATCH_ITEM_ID)
                .unwrap()
                .as_bytes()
                .unwrap()
                .to_vec()
        })
        .collect();
    assert_eq!(ids, vec![vec![1, 2, 3, 4, 5, 6, 7, 8], vec![9; 8]]);
    assert_eq!(ResponseMessage::from_ttlv(&encoded).unwrap(), response);
}

#[test]
fn message_level_errors() {
    let one = |count| {
        st(
            tags::REQUEST_MESSAGE,
            vec![header(1, 4, count), item(Operation::Query, None, vec![])],
        )
    };
    assert_eq!(
        RequestMessage::from_ttlv(&one(2)),
        Err(ModelError::BatchCountMismatch {
            declared: 2,
            actual: 1
        })
    );
    assert!(RequestMessage::from_ttlv(&one(1)).is_ok());
    let err = RequestMessage::from_ttlv(&st(tags::RESPONSE_MESSAGE, vec![])).unwrap_err();
    assert!(matches!(err, ModelError::NotARequest { .. }), "{err:?}");
    let no_header = st(
        tags::REQUEST_MESSAGE,
        vec![item(Operation::Query, None, vec![])],
    );
    assert_eq!(
        RequestMessage::from_ttlv(&no_header),
        Err(ModelError::Missing {
            path: "RequestHeader".into()
        })
    );
    let no_version = st(
        tags::REQUEST_MESSAGE,
        vec![
            st(tags::REQUEST_HEADER, vec![int(tags::BATCH_COUNT, 1)]),
            item(Operation::Query, None, vec![]),
        ],
    );
    let err = RequestMessage::from_ttlv(&no_version).unwrap_err();
    assert_eq!(err.to_string(), "RequestHeader.ProtocolVersion: missing");
    assert!(matches!(err, ModelError::Missing { .. }), "{err:?}");
    assert_eq!(
        RequestMessage::peek_version(&one(2)),
        Some(ProtocolVersion::V1_4)
    );

    let failure = ResponseMessage::message_failure(
        ProtocolVersion::V1_4,
        NOW,
        ResultReason::InvalidMessage,
        err.to_string(),
    );
    let encoded = failure.to_ttlv();
    let item = encoded.child(tags::BATCH_ITEM).unwrap();
    assert!(item.child(tags::OPERATION).is_none());
    assert_eq!(
        item.child(tags::RESULT_REASON).unwrap().as_enum(),
        Some(ResultReason::InvalidMessage.to_u32())
    );
}

#[test]
fn a_bad_payload_fails_only_its_item() {
    let message = st(
        tags::REQUEST_MESSAGE,
        vec![
            header(1, 4, 3),
            item(
                Operation::Get,
                Some(b"1"),
                vec![text(tags::UNIQUE_IDENTIFIER, "k")],
            ),
            item(
                Operation::Get,
                Some(b"2"),
                vec![int(tags::UNIQUE_IDENTIFIER, 7)],
            ),
            item(
                Operation::Revoke,
                Some(b"3"),
                vec![text(tags::UNIQUE_IDENTIFIER, "k")],
            ),
        ],
    );
    let request = RequestMessage::from_ttlv(&message).unwrap();
    assert!(request.items[0].payload.is_ok());
    let err = request.items[1].payload.as_ref().unwrap_err();
    assert_eq!(
        err.to_string(),
        "BatchItem[1].RequestPayload.UniqueIdentifier: expected TextString"
    );
    assert!(matches!(err, ModelError::WrongType { .. }), "{err:?}");
    let err = request.items[2].payload.as_ref().unwrap_err();
    assert_eq!(
        err.to_string(),
        "BatchItem[2].RequestPayload.RevocationReason: missing"
    );
    assert!(matches!(err, ModelError::Missing { .. }), "{err:?}");
}

#[test]
fn unknown_operations_keep_their_payload() {
    let sign_payload = vec![
        text(tags::UNIQUE_IDENTIFIER, "k"),
        Ttlv::new(
            tags::DATA,
            Value::ByteString(bytes::Bytes::from_static(b"m")),
        ),
    ];
    let message = st(
        tags::REQUEST_MESSAGE,
        vec![
            header(2, 1, 2),
            item(Operation::Validate, None, sign_payload.clone()),
            item(Operation::Other(0x7777), None, vec![int(Tag(0x54_0001), 5)]),
        ],
    );
    let request = RequestMessage::from_ttlv(&message).unwrap();
    assert_eq!(
        request.items[0].payload,
        Ok(RequestPayload::Unknown {
            op_code: Operation::Validate,
            raw: st(tags::REQUEST_PAYLOAD, sign_payload)
        })
    );
    let Ok(RequestPayload::Unknown { op_code, raw }) = &request.items[1].payload else {
        panic!()
    };
    assert_eq!(*op_code, Operation::Other(0x7777));
    assert_eq!(raw.items()[0].tag, Tag(0x54_0001));
    assert_eq!(request.to_ttlv(), message);
}

/// Every tag of `t` is defined by `version`, and every 1.x attribute name too.
fn assert_defined(t: &Ttlv, version: ProtocolVersion, path: &str) {
    let path = format!("{path}/{}", codec::tag_label(t.tag));
    assert!(
        tag_defined(t.tag, version),
        "{path} not defined in {version}"
    );
    if t.tag == tags::ATTRIBUTE_NAME && !version.is_v2() {
        let name = AttributeName::from_v1_name(t.as_text().unwrap());
        assert!(
            name.defined_in(version),
            "{path} = {name:?} not defined in {version}"
        );
    }
    if t.tag == tags::ATTRIBUTE_REFERENCE {
        if let Some(tag) = t.as_enum() {
            assert!(
                tag_defined(Tag(tag), version),
                "{path} references an undefined tag"
            );
        }
    }
    for child in t.items() {
        assert_defined(child, version, &path);
    }
}

#[test]
fn responses_carry_only_what_the_version_defines() {
    let attributes = vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::text(tags::OPERATION_POLICY_NAME, "default"),
        Attribute::boolean(tags::SENSITIVE, false),
        Attribute::datetime(tags::ORIGINAL_CREATION_DATE, NOW),
        Attribute::boolean(tags::FRESH, true),
        Attribute::vendor("x", "Product_Version", Value::TextString("8".into())),
        Attribute::new(tags::QUANTUM_SAFE, Value::Boolean(false)),
    ];
    let names: Vec<_> = attributes.iter().map(|a| a.name.clone()).collect();
    let payloads = [
        ResponsePayload::GetAttributes(GetAttributesResponse {
            unique_identifier: "k".into(),
            attributes: attributes.clone(),
        }),
        ResponsePayload::GetAttributeList(GetAttributeListResponse {
            unique_identifier: "k".into(),
            names,
        }),
        ResponsePayload::Locate(LocateResponse {
            located_items: Some(1),
            unique_identifiers: vec!["k".into()],
        }),
        ResponsePayload::ModifyAttribute(AttributeResponse {
            unique_identifier: "k".into(),
            attribute: Some(attributes[2].clone()),
        }),
        ResponsePayload::Encrypt(EncryptResponse {
            unique_identifier: "k".into(),
            data: Some(bytes::Bytes::from_static(b"c")),
            iv_counter_nonce: None,
            correlation_value: Some(bytes::Bytes::from_static(b"corr")),
            authenticated_encryption_tag: Some(bytes::Bytes::from_static(b"tag")),
        }),
    ];
    for version in ProtocolVersion::ALL {
        let mut header = ResponseHeader::new(version, NOW);
        header.client_correlation_value = Some("c".into());
        let response = ResponseMessage {
            header,
            items: payloads
                .iter()
                .map(|p| ResponseBatchItem {
                    payload: Some(p.clone()),
                    ..ResponseBatchItem::failure(
                        Some(Operation::Locate),
                        None,
                        ResultReason::GeneralFailure,
                        "",
                    )
                })
                .collect(),
        };
        let encoded = response.to_ttlv();
        assert_defined(&encoded, version, "");
        let text = xml::to_xml_string(&encoded);
        let has = |s: &str| text.contains(s);
        assert_eq!(
            has("Sensitive"),
            version >= ProtocolVersion::V1_4,
            "{version}"
        );
        assert_eq!(
            has("Operation Policy Name"),
            version < ProtocolVersion::V2_0,
            "{version}"
        );
        assert_eq!(
            has("OriginalCreationDate") || has("Original Creation Date"),
            version >= ProtocolVersion::V1_2,
            "{version}"
        );
        assert_eq!(
            has("LocatedItems"),
            version >= ProtocolVersion::V1_3,
            "{version}"
        );
        assert_eq!(
            has("ClientCorrelationValue"),
            version >= ProtocolVersion::V1_4,
            "{version}"
        );
        assert_eq!(has("QuantumSafe"), version.is_v2(), "{version}");
        assert!(has("Product_Version"), "{version}");
        assert!(has("AES"), "{version}");
    }
}

#[test]
fn secrets_are_redacted_and_key_values_carry_no_attributes() {
    let secret = [0xAB_u8; 16];
    let block = KeyBlock::raw(
        SecretBytes::from_slice(&secret),
        Some(CryptographicAlgorithm::Aes),
        Some(128),
    );
    let debug = format!("{:?}", ManagedObject::SymmetricKey(block.clone()));
    assert!(
        !debug.contains("171") && !debug.to_lowercase().contains("ab, "),
        "{debug}"
    );
    let mut header = RequestHeader::new(ProtocolVersion::V1_4);
    header.authentication = Some(Authentication {
        credentials: vec![st(tags::CREDENTIAL, vec![text(tags::PASSWORD, "hunter2")])],
    });
    assert!(!format!("{header:?}").contains("hunter2"));

    // A 1.x Key Value with an attribute inside: the attribute is dropped.
    let key_block = st(
        tags::KEY_BLOCK,
        vec![
            enm(tags::KEY_FORMAT_TYPE, KeyFormatType::Raw.to_u32()),
            st(
                tags::KEY_VALUE,
                vec![
                    Ttlv::new(
                        tags::KEY_MATERIAL,
                        Value::ByteString(bytes::Bytes::copy_from_slice(&secret)),
                    ),
                    v1_attribute("Cryptographic Length", Value::Integer(128)),
                ],
            ),
        ],
    );
    let read = KeyBlock::read(&codec::Node::new(&key_block, "")).unwrap();
    let written = read.to_ttlv();
    assert_eq!(written.child(tags::KEY_VALUE).unwrap().items().len(), 1);
    assert_eq!(read.key_bytes().unwrap().as_slice(), &secret[..]);

    // Transparent Symmetric Key.
    let transparent = KeyBlock {
        key_format_type: KeyFormatType::TransparentSymmetricKey,
        key_value: KeyValue::TransparentSymmetricKey(SecretBytes::from_slice(&secret)),
        ..block
    };
    assert_eq!(
        KeyBlock::read(&codec::Node::new(&transparent.to_ttlv(), "")).unwrap(),
        transparent
    );
}

#[test]
fn attribute_tags_come_from_both_specifications_and_nothing_else() {
    use crate::spec::ATTRIBUTE_TAGS;
    assert!(
        ATTRIBUTE_TAGS.windows(2).all(|w| w[0] < w[1]),
        "sorted, for binary_search"
    );
    for tag in [
        tags::NAME,
        tags::CRYPTOGRAPHIC_USAGE_MASK,
        tags::OPERATION_POLICY_NAME, // 1.x only
        tags::QUANTUM_SAFE,          // 2.x only
        tags::ROTATE_INTERVAL,       // a 2.1 tag the table first missed (written 0x42016A)
    ] {
        assert!(AttributeName::Tag(tag).is_attribute(), "{tag:?}");
    }
    for not in [tags::BATCH_COUNT, tags::ATTRIBUTE_VALUE, Tag(0x54_0001)] {
        assert!(!AttributeName::Tag(not).is_attribute(), "{not:?}");
    }
    assert!(AttributeName::from_v1_name("x-Product_Version").is_attribute());
    assert!(!AttributeName::from_v1_name("Batch Count").is_attribute());
    assert!(!AttributeName::from_v1_name("Not An Attribute").is_attribute());
}

/// ReKey Key Pair is in no vector: its payloads are read back as written, in both versions.
#[test]
fn rekey_key_pair_payloads_round_trip() {
    let request = RequestPayload::ReKeyKeyPair(ReKeyKeyPairRequest {
        unique_identifier: Some("private-1".into()),
        offset: None,
        common_attributes: Vec::new(),
        private_key_attributes: vec![Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 1)],
        public_key_attributes: Vec::new(),
    });
    let answer = ResponsePayload::ReKeyKeyPair(CreateKeyPairResponse {
        private_key_unique_identifier: "private-2".into(),
        public_key_unique_identifier: "public-2".into(),
    });
    for version in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
        let t = request.to_ttlv(version);
        let group = if version.is_v2() {
            tags::PRIVATE_KEY_ATTRIBUTES
        } else {
            tags::PRIVATE_KEY_TEMPLATE_ATTRIBUTE
        };
        assert!(t.child(group).is_some(), "{t:?}");
        assert!(
            t.child(tags::PUBLIC_KEY_ATTRIBUTES).is_none(),
            "no empty groups"
        );
        let node = crate::model::codec::Node::new(&t, "");
        assert_eq!(
            RequestPayload::read(Operation::ReKeyKeyPair, &node).unwrap(),
            request
        );
        let t = answer.to_ttlv(version);
        let node = crate::model::codec::Node::new(&t, "");
        assert_eq!(
            ResponsePayload::read(Operation::ReKeyKeyPair, &node).unwrap(),
            answer
        );
    }
}

/// Export carries Get's fields and answers with the object and its attributes: the attribute
/// group is `Template-Attribute` in 1.4 and `Attributes` in 2.1, and both read back as written.
#[test]
fn export_payloads_round_trip() {
    let request = RequestPayload::Export(GetRequest {
        unique_identifier: Some("key-1".into()),
        key_format_type: Some(KeyFormatType::Raw),
        ..GetRequest::default()
    });
    let answer = ResponsePayload::Export(ExportResponse {
        unique_identifier: "key-1".into(),
        attributes: vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
        ],
        object: ManagedObject::SymmetricKey(KeyBlock::raw(
            SecretBytes::from_slice(&[7; 16]),
            Some(CryptographicAlgorithm::Aes),
            Some(128),
        )),
    });
    for version in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
        let t = request.to_ttlv(version);
        let node = crate::model::codec::Node::new(&t, "");
        assert_eq!(
            RequestPayload::read(Operation::Export, &node).unwrap(),
            request
        );
        let t = answer.to_ttlv(version);
        let group = if version.is_v2() {
            tags::ATTRIBUTES
        } else {
            tags::TEMPLATE_ATTRIBUTE
        };
        assert!(t.child(group).is_some(), "{t:?}");
        assert!(t.child(tags::SYMMETRIC_KEY).is_some(), "{t:?}");
        let node = crate::model::codec::Node::new(&t, "");
        assert_eq!(
            ResponsePayload::read(Operation::Export, &node).unwrap(),
            answer
        );
    }
}

/// Import carries the identifier, the Replace Existing flag, the attributes and the object, and
/// reads back as written in both versions.
#[test]
fn import_payloads_round_trip() {
    let request = RequestPayload::Import(ImportRequest {
        unique_identifier: "key-1".into(),
        object_type: ObjectType::SymmetricKey,
        replace_existing: Some(true),
        key_wrap_type: None,
        attributes: vec![Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128)],
        object: ManagedObject::SymmetricKey(KeyBlock::raw(
            SecretBytes::from_slice(&[9; 16]),
            Some(CryptographicAlgorithm::Aes),
            Some(128),
        )),
    });
    let answer = ResponsePayload::Import(UidResponse {
        unique_identifier: "key-1".into(),
    });
    for version in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
        let t = request.to_ttlv(version);
        assert!(t.child(tags::REPLACE_EXISTING).is_some(), "{t:?}");
        let node = crate::model::codec::Node::new(&t, "");
        assert_eq!(
            RequestPayload::read(Operation::Import, &node).unwrap(),
            request
        );
        let t = answer.to_ttlv(version);
        let node = crate::model::codec::Node::new(&t, "");
        assert_eq!(
            ResponsePayload::read(Operation::Import, &node).unwrap(),
            answer
        );
    }
}

/// Split Key and PGP Key objects in Register and Get, and the Create / Join Split Key payloads,
/// read back as written in both versions; a Split Key's fields sit beside its Key Block.
#[test]
fn split_key_and_pgp_key_payloads_round_trip() {
    let split = ManagedObject::SplitKey(SplitKey {
        split_key_parts: 5,
        key_part_identifier: 3,
        split_key_threshold: 2,
        split_key_method: SplitKeyMethod::PolynomialSharingPrimeField,
        prime_field_size: Some(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0xfb])),
        key_block: KeyBlock::raw(
            SecretBytes::from_slice(&[3; 16]),
            Some(CryptographicAlgorithm::Aes),
            Some(128),
        ),
    });
    let pgp = ManagedObject::PgpKey {
        pgp_key_version: 4,
        key_block: KeyBlock {
            key_format_type: KeyFormatType::Opaque,
            ..KeyBlock::raw(SecretBytes::from_slice(b"\x99\x01 packet"), None, None)
        },
    };
    for object in [&split, &pgp] {
        let t = object.to_ttlv();
        assert_eq!(
            &ManagedObject::from_ttlv(object.object_type(), &t).unwrap(),
            object
        );
        let register = RequestPayload::Register(RegisterRequest {
            templates: Vec::new(),
            object_type: object.object_type(),
            attributes: Vec::new(),
            object: object.clone(),
        });
        let get = ResponsePayload::Get(GetResponse {
            unique_identifier: "part-3".into(),
            object: object.clone(),
        });
        for version in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
            let t = register.to_ttlv(version);
            let node = crate::model::codec::Node::new(&t, "");
            assert_eq!(
                RequestPayload::read(Operation::Register, &node).unwrap(),
                register
            );
            let t = get.to_ttlv(version);
            let node = crate::model::codec::Node::new(&t, "");
            assert_eq!(ResponsePayload::read(Operation::Get, &node).unwrap(), get);
        }
    }
    let t = split.to_ttlv();
    let order: Vec<Tag> = t.items().iter().map(|c| c.tag).collect();
    assert_eq!(
        order,
        vec![
            tags::SPLIT_KEY_PARTS,
            tags::KEY_PART_IDENTIFIER,
            tags::SPLIT_KEY_THRESHOLD,
            tags::SPLIT_KEY_METHOD,
            tags::PRIME_FIELD_SIZE,
            tags::KEY_BLOCK
        ]
    );
    assert_eq!(
        t.child(tags::PRIME_FIELD_SIZE).map(|p| p.value.clone()),
        Some(Value::BigInteger(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0, 0, 0, 0xfb
        ])))
    );

    let create = RequestPayload::CreateSplitKey(CreateSplitKeyRequest {
        object_type: ObjectType::SplitKey,
        unique_identifier: Some("key-1".into()),
        split_key_parts: 3,
        split_key_threshold: 2,
        split_key_method: SplitKeyMethod::PolynomialSharingGf28,
        prime_field_size: None,
        attributes: vec![Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256)],
    });
    let join = RequestPayload::JoinSplitKey(JoinSplitKeyRequest {
        object_type: ObjectType::SecretData,
        unique_identifiers: vec!["p1".into(), "p3".into()],
        secret_data_type: Some(SecretDataType::Seed),
        attributes: Vec::new(),
    });
    let created = ResponsePayload::CreateSplitKey(CreateSplitKeyResponse {
        unique_identifiers: vec!["p1".into(), "p2".into(), "p3".into()],
    });
    let joined = ResponsePayload::JoinSplitKey(UidResponse {
        unique_identifier: "k".into(),
    });
    for version in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
        for (op, request) in [
            (Operation::CreateSplitKey, &create),
            (Operation::JoinSplitKey, &join),
        ] {
            let t = request.to_ttlv(version);
            let node = crate::model::codec::Node::new(&t, "");
            assert_eq!(&RequestPayload::read(op, &node).unwrap(), request);
        }
        for (op, answer) in [
            (Operation::CreateSplitKey, &created),
            (Operation::JoinSplitKey, &joined),
        ] {
            let t = answer.to_ttlv(version);
            let node = crate::model::codec::Node::new(&t, "");
            assert_eq!(&ResponsePayload::read(op, &node).unwrap(), answer);
        }
    }
}

#[test]
fn error_paths_name_nested_and_indexed_fields() {
    let attribute = |name: &str| {
        st(
            tags::ATTRIBUTE,
            vec![
                text(tags::ATTRIBUTE_NAME, name),
                int(tags::ATTRIBUTE_VALUE, 256),
            ],
        )
    };
    // The second Attribute has no Attribute Name.
    let create = st(
        tags::REQUEST_PAYLOAD,
        vec![
            enm(tags::OBJECT_TYPE, 2),
            st(
                tags::TEMPLATE_ATTRIBUTE,
                vec![
                    attribute("Cryptographic Length"),
                    st(tags::ATTRIBUTE, vec![int(tags::ATTRIBUTE_VALUE, 1)]),
                ],
            ),
        ],
    );
    for (root, want) in [
        (
            "RequestPayload",
            "RequestPayload.TemplateAttribute.Attribute[1].AttributeName: missing",
        ),
        ("", "TemplateAttribute.Attribute[1].AttributeName: missing"),
    ] {
        let err =
            RequestPayload::read(Operation::Create, &codec::Node::new(&create, root)).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn enumeration_values_of_2_x_only_are_not_defined_in_1_x() {
    let alg = tags::CRYPTOGRAPHIC_ALGORITHM;
    let ed25519 = CryptographicAlgorithm::Ed25519.to_u32();
    assert!(!enum_value_defined(alg, ed25519, ProtocolVersion::V1_4));
    assert!(!enum_value_defined(alg, ed25519, ProtocolVersion::V1_2));
    assert!(enum_value_defined(alg, ed25519, ProtocolVersion::V2_0));
    for v in ProtocolVersion::ALL {
        assert!(
            enum_value_defined(alg, CryptographicAlgorithm::Aes.to_u32(), v),
            "{v}"
        );
        // An extension value, and a tag that is no enumeration: not judged.
        assert!(enum_value_defined(alg, 0x8000_0001, v), "{v}");
        assert!(
            enum_value_defined(tags::CRYPTOGRAPHIC_LENGTH, 0x37, v),
            "{v}"
        );
    }
    let curve = tags::RECOMMENDED_CURVE;
    // Recommended Curve CURVE25519 (2.0) and P-256 (1.0).
    assert!(!enum_value_defined(curve, 0x45, ProtocolVersion::V1_4));
    assert!(enum_value_defined(curve, 0x07, ProtocolVersion::V1_4));
}
