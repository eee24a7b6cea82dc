//! Tests of the conformance runner: binding, volatile values, relaxed comparisons.

use super::session::Session;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Ttlv, Value};
use kmip_wire::xml::{parse_template, XmlNode};

fn uid(s: &str) -> Ttlv {
    Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString(s.into()))
}

#[test]
fn identifiers_bind_in_order_of_appearance() {
    let mut s = Session::default();
    let resp = Ttlv::structure(tags::RESPONSE_PAYLOAD, vec![uid("b"), uid("a"), uid("b")]);
    s.bind_new_identifiers(&resp);
    assert_eq!(
        s.bindings.get("UNIQUE_IDENTIFIER_0"),
        Some(&Value::TextString("b".into()))
    );
    assert_eq!(
        s.bindings.get("UNIQUE_IDENTIFIER_1"),
        Some(&Value::TextString("a".into()))
    );
    assert_eq!(s.uid_count, 2);
}

#[test]
fn unbound_request_placeholder_takes_the_last_value_of_its_tag() {
    let mut s = Session::default();
    s.last_by_tag
        .insert(tags::DATA, Value::ByteString(vec![1, 2, 3].into()));
    let req = parse_template(
        r#"<RequestPayload><Data type="ByteString" value="$DATA_0"/></RequestPayload>"#,
    )
    .unwrap();
    let t = s.prepare_request(&req).unwrap();
    assert_eq!(
        t.child(tags::DATA)
            .and_then(Ttlv::as_bytes)
            .map(|b| b.to_vec()),
        Some(vec![1, 2, 3])
    );
    let unknown = parse_template(
        r#"<RequestPayload><UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_3"/></RequestPayload>"#,
    )
    .unwrap();
    let err = s.prepare_request(&unknown).unwrap_err();
    assert!(err.contains("$UNIQUE_IDENTIFIER_3"), "{err}");
}

fn enc_request(iv: bool) -> Ttlv {
    let mut payload = vec![
        uid("k"),
        Ttlv::new(tags::DATA, Value::ByteString(vec![9; 16].into())),
    ];
    if iv {
        payload.push(Ttlv::new(
            tags::IV_COUNTER_NONCE,
            Value::ByteString(vec![7; 16].into()),
        ));
    }
    Ttlv::structure(
        tags::REQUEST_MESSAGE,
        vec![Ttlv::structure(
            tags::BATCH_ITEM,
            vec![
                Ttlv::new(tags::OPERATION, Value::Enumeration(0x1F)),
                Ttlv::structure(tags::REQUEST_PAYLOAD, payload),
            ],
        )],
    )
}

fn enc_response(data: u8, iv: u8) -> Ttlv {
    Ttlv::structure(
        tags::RESPONSE_MESSAGE,
        vec![Ttlv::structure(
            tags::BATCH_ITEM,
            vec![
                Ttlv::new(tags::OPERATION, Value::Enumeration(0x1F)),
                Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)),
                Ttlv::structure(
                    tags::RESPONSE_PAYLOAD,
                    vec![
                        uid("k"),
                        Ttlv::new(tags::DATA, Value::ByteString(vec![data; 16].into())),
                        Ttlv::new(
                            tags::IV_COUNTER_NONCE,
                            Value::ByteString(vec![iv; 16].into()),
                        ),
                    ],
                ),
            ],
        )],
    )
}

const EXPECTED_ENCRYPT: &str = r#"<ResponseMessage><BatchItem>
    <Operation type="Enumeration" value="Encrypt"/>
    <ResultStatus type="Enumeration" value="Success"/>
    <ResponsePayload>
      <UniqueIdentifier type="TextString" value="k"/>
      <Data type="ByteString" value="01010101010101010101010101010101"/>
      <IVCounterNonce type="ByteString" value="02020202020202020202020202020202"/>
    </ResponsePayload></BatchItem></ResponseMessage>"#;

#[test]
fn server_chosen_iv_and_its_ciphertext_are_not_compared_but_replayed() {
    let expected = parse_template(EXPECTED_ENCRYPT).unwrap();
    let mut s = Session::default();
    s.check_response(&enc_request(false), &expected, &enc_response(5, 6))
        .unwrap();
    // A later request quoting the recorded ciphertext sends the actual one.
    let replay = parse_template(
        r#"<RequestPayload><Data type="ByteString" value="01010101010101010101010101010101"/></RequestPayload>"#,
    )
    .unwrap();
    let t = s.prepare_request(&replay).unwrap();
    assert_eq!(
        t.child(tags::DATA)
            .and_then(Ttlv::as_bytes)
            .map(|b| b.to_vec()),
        Some(vec![5; 16])
    );
}

#[test]
fn client_supplied_iv_makes_the_ciphertext_compared() {
    let expected = parse_template(EXPECTED_ENCRYPT).unwrap();
    let mut s = Session::default();
    let d = s
        .check_response(&enc_request(true), &expected, &enc_response(5, 2))
        .unwrap_err();
    assert_eq!(d.path, "/ResponseMessage/BatchItem/ResponsePayload/Data");
    s.check_response(&enc_request(true), &expected, &enc_response(1, 2))
        .unwrap();
}

fn query_response(ops: &[u32]) -> Ttlv {
    let mut payload: Vec<Ttlv> = ops
        .iter()
        .map(|o| Ttlv::new(tags::OPERATION, Value::Enumeration(*o)))
        .collect();
    payload.push(Ttlv::new(
        tags::VENDOR_IDENTIFICATION,
        Value::TextString("another vendor".into()),
    ));
    Ttlv::structure(
        tags::RESPONSE_MESSAGE,
        vec![Ttlv::structure(
            tags::BATCH_ITEM,
            vec![
                Ttlv::new(tags::OPERATION, Value::Enumeration(0x18)),
                Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)),
                Ttlv::structure(tags::RESPONSE_PAYLOAD, payload),
            ],
        )],
    )
}

#[test]
fn query_lists_compare_as_a_subset() {
    let expected = parse_template(
        r#"<ResponseMessage><BatchItem>
        <Operation type="Enumeration" value="Query"/>
        <ResultStatus type="Enumeration" value="Success"/>
        <ResponsePayload>
          <Operation type="Enumeration" value="Query"/>
          <Operation type="Enumeration" value="Locate"/>
          <VendorIdentification type="TextString" value="server-vendor.com"/>
        </ResponsePayload></BatchItem></ResponseMessage>"#,
    )
    .unwrap();
    let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![]);
    // Locate (0x08) and Query (0x18) listed, in another order, with Get (0x0A) as well.
    Session::default()
        .check_response(&request, &expected, &query_response(&[0x0A, 0x08, 0x18]))
        .unwrap();
    let d = Session::default()
        .check_response(&request, &expected, &query_response(&[0x18]))
        .unwrap_err();
    assert!(d.what.contains("Locate"), "{d}");
}

#[test]
fn attribute_index_zero_is_the_same_as_none() {
    let expected = parse_template(
        r#"<Attribute><AttributeName type="TextString" value="State"/>
           <AttributeValue type="Enumeration" value="PreActive"/></Attribute>"#,
    )
    .unwrap();
    let actual = |index: i32| {
        Ttlv::structure(
            tags::ATTRIBUTE,
            vec![
                Ttlv::new(tags::ATTRIBUTE_NAME, Value::TextString("State".into())),
                Ttlv::new(tags::ATTRIBUTE_INDEX, Value::Integer(index)),
                Ttlv::new(tags::ATTRIBUTE_VALUE, Value::Enumeration(1)),
            ],
        )
    };
    let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![]);
    Session::default()
        .check_response(&request, &expected, &actual(0))
        .unwrap();
    Session::default()
        .check_response(&request, &expected, &actual(1))
        .unwrap_err();
}

fn get_response(material: Vec<u8>) -> Ttlv {
    let key_value = Ttlv::structure(
        tags::KEY_VALUE,
        vec![Ttlv::new(
            tags::KEY_MATERIAL,
            Value::ByteString(material.into()),
        )],
    );
    Ttlv::structure(
        tags::RESPONSE_MESSAGE,
        vec![Ttlv::structure(
            tags::BATCH_ITEM,
            vec![
                Ttlv::new(tags::OPERATION, Value::Enumeration(0x0A)),
                Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)),
                Ttlv::structure(tags::RESPONSE_PAYLOAD, vec![key_value]),
            ],
        )],
    )
}

/// The vectors write a generated key's material as `2a2a…`: any material of that length
/// matches, and one of another length does not.
#[test]
fn masked_key_material_matches_any_material_of_its_length() {
    let expected = |hex: &str| {
        parse_template(&format!(
            r#"<ResponseMessage><BatchItem>
            <Operation type="Enumeration" value="Get"/>
            <ResultStatus type="Enumeration" value="Success"/>
            <ResponsePayload><KeyValue>
              <KeyMaterial type="ByteString" value="{hex}"/>
            </KeyValue></ResponsePayload></BatchItem></ResponseMessage>"#
        ))
        .unwrap()
    };
    let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![]);
    let masked = expected(&"2a".repeat(4));
    Session::default()
        .check_response(&request, &masked, &get_response(vec![1, 2, 3, 4]))
        .unwrap();
    Session::default()
        .check_response(&request, &masked, &get_response(vec![1, 2, 3]))
        .unwrap_err();
    // Unmasked material is compared byte for byte.
    Session::default()
        .check_response(
            &request,
            &expected("01020305"),
            &get_response(vec![1, 2, 3, 4]),
        )
        .unwrap_err();
}

fn register_exchange(object_type: u32) -> (Ttlv, Ttlv, XmlNode) {
    let item = |payload_tag, payload: Vec<Ttlv>, status: bool| {
        let mut fields = vec![Ttlv::new(tags::OPERATION, Value::Enumeration(0x03))];
        if status {
            fields.push(Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)));
        }
        fields.push(Ttlv::structure(payload_tag, payload));
        Ttlv::structure(tags::BATCH_ITEM, fields)
    };
    let request = Ttlv::structure(
        tags::REQUEST_MESSAGE,
        vec![item(
            tags::REQUEST_PAYLOAD,
            vec![Ttlv::new(
                tags::OBJECT_TYPE,
                Value::Enumeration(object_type),
            )],
            false,
        )],
    );
    let response = Ttlv::structure(
        tags::RESPONSE_MESSAGE,
        vec![item(tags::RESPONSE_PAYLOAD, vec![uid("k")], true)],
    );
    let expected = parse_template(
        r#"<ResponseMessage><BatchItem>
    <Operation type="Enumeration" value="Register"/>
    <ResultStatus type="Enumeration" value="Success"/>
    <ResponsePayload><UniqueIdentifier type="TextString" value="k"/></ResponsePayload>
    </BatchItem></ResponseMessage>"#,
    )
    .unwrap();
    (request, response, expected)
}

#[test]
fn encrypt_outputs_of_registered_asymmetric_keys_are_not_compared() {
    let expected = parse_template(EXPECTED_ENCRYPT).unwrap();
    // A registered public key: its (randomized) ciphertext is not compared.
    let mut s = Session::default();
    let (req, resp, exp) = register_exchange(3);
    s.check_response(&req, &exp, &resp).unwrap();
    s.check_response(&enc_request(true), &expected, &enc_response(5, 2))
        .unwrap();
    // A registered symmetric key: it is.
    let mut s = Session::default();
    let (req, resp, exp) = register_exchange(2);
    s.check_response(&req, &exp, &resp).unwrap();
    assert!(s
        .check_response(&enc_request(true), &expected, &enc_response(5, 2))
        .is_err());
}

/// A vector's Query answer lists what its server did; a server need not list the
/// server-to-client operations (Notify 0x1B, Put 0x1C), nor Create/Join Split Key (0x1D, 0x1E)
/// unless it lists the Split Key object type (0x05).
#[test]
fn query_need_not_list_server_initiated_or_unstored_type_operations() {
    let expected = parse_template(
        r#"<ResponseMessage><BatchItem>
        <Operation type="Enumeration" value="Query"/>
        <ResultStatus type="Enumeration" value="Success"/>
        <ResponsePayload>
          <Operation type="Enumeration" value="Query"/>
          <Operation type="Enumeration" value="Notify"/>
          <Operation type="Enumeration" value="Put"/>
          <Operation type="Enumeration" value="CreateSplitKey"/>
          <Operation type="Enumeration" value="JoinSplitKey"/>
        </ResponsePayload></BatchItem></ResponseMessage>"#,
    )
    .unwrap();
    let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![]);
    Session::default()
        .check_response(&request, &expected, &query_response(&[0x18]))
        .unwrap();
    // A server that stores Split Keys must list their operations.
    let mut split_key_server = query_response(&[0x18]);
    if let Value::Structure(items) = &mut split_key_server.value {
        if let Value::Structure(item) = &mut items[0].value {
            if let Value::Structure(payload) = &mut item[2].value {
                payload.push(Ttlv::new(tags::OBJECT_TYPE, Value::Enumeration(0x05)));
            }
        }
    }
    let d = Session::default()
        .check_response(&request, &expected, &split_key_server)
        .unwrap_err();
    assert!(d.what.contains("CreateSplitKey"), "{d}");
}

fn attribute_answer(operation: u32, entries: Vec<Ttlv>) -> Ttlv {
    Ttlv::structure(
        tags::RESPONSE_MESSAGE,
        vec![Ttlv::structure(
            tags::BATCH_ITEM,
            vec![
                Ttlv::new(tags::OPERATION, Value::Enumeration(operation)),
                Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)),
                Ttlv::structure(tags::RESPONSE_PAYLOAD, entries),
            ],
        )],
    )
}

/// Get Attribute List (0x0C) and Get Attributes (0x0B).
const GET_ATTRIBUTE_LIST: u32 = 0x0C;
const GET_ATTRIBUTES: u32 = 0x0B;

#[test]
fn attribute_answers_compare_in_any_order_but_still_as_a_set() {
    let expected = parse_template(
        r#"<ResponseMessage><BatchItem>
             <Operation type="Enumeration" value="GetAttributeList"/>
             <ResultStatus type="Enumeration" value="Success"/>
             <ResponsePayload>
               <AttributeReference type="Enumeration" value="Digest"/>
               <AttributeReference type="Enumeration" value="KeyFormatType"/>
               <AttributeReference type="Enumeration" value="Extractable"/>
             </ResponsePayload>
           </BatchItem></ResponseMessage>"#,
    )
    .unwrap();
    let reference =
        |tag: kmip_wire::ttlv::Tag| Ttlv::new(tags::ATTRIBUTE_REFERENCE, Value::Enumeration(tag.0));
    let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![]);
    let reordered = attribute_answer(
        GET_ATTRIBUTE_LIST,
        vec![
            reference(tags::DIGEST),
            reference(tags::EXTRACTABLE),
            reference(tags::KEY_FORMAT_TYPE),
        ],
    );
    Session::default()
        .check_response(&request, &expected, &reordered)
        .unwrap();
    let missing = attribute_answer(
        GET_ATTRIBUTE_LIST,
        vec![reference(tags::EXTRACTABLE), reference(tags::DIGEST)],
    );
    Session::default()
        .check_response(&request, &expected, &missing)
        .unwrap_err();
}

#[test]
fn lease_time_is_compared_for_presence_not_value() {
    let expected = expected_answer("Lease Time");
    let lease = |name: &str| {
        Ttlv::structure(
            tags::ATTRIBUTE,
            vec![
                Ttlv::new(tags::ATTRIBUTE_NAME, Value::TextString(name.into())),
                Ttlv::new(tags::ATTRIBUTE_VALUE, Value::Interval(0)),
            ],
        )
    };
    let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![]);
    Session::default()
        .check_response(
            &request,
            &expected,
            &attribute_answer(GET_ATTRIBUTES, vec![lease("Lease Time")]),
        )
        .unwrap();
    // Another attribute's value is still compared.
    let other = expected_answer("Fresh");
    Session::default()
        .check_response(
            &request,
            &other,
            &attribute_answer(GET_ATTRIBUTES, vec![lease("Fresh")]),
        )
        .unwrap_err();
}

/// A Get Attributes answer with one 1.x attribute `name` of value Interval 3600.
fn expected_answer(name: &str) -> XmlNode {
    parse_template(
        &r#"<ResponseMessage><BatchItem>
             <Operation type="Enumeration" value="GetAttributes"/>
             <ResultStatus type="Enumeration" value="Success"/>
             <ResponsePayload>
               <Attribute><AttributeName type="TextString" value="NAME"/>
                 <AttributeValue type="Interval" value="3600"/></Attribute>
             </ResponsePayload>
           </BatchItem></ResponseMessage>"#
            .replace("NAME", name),
    )
    .unwrap()
}

/// Locate (0x08) then Get Attributes (0x0B) of what it found, asking for Digest, whose value
/// the server answers as `digest`.
fn locate_then_digest(digest: u8) -> (Ttlv, Ttlv) {
    let op = |code: u32| Ttlv::new(tags::OPERATION, Value::Enumeration(code));
    let request = Ttlv::structure(
        tags::REQUEST_MESSAGE,
        [0x08, 0x0B]
            .into_iter()
            .map(|code| Ttlv::structure(tags::BATCH_ITEM, vec![op(code)]))
            .collect(),
    );
    let digest_attr = Ttlv::structure(
        tags::ATTRIBUTE,
        vec![
            Ttlv::new(tags::ATTRIBUTE_NAME, Value::TextString("Digest".into())),
            Ttlv::structure(
                tags::ATTRIBUTE_VALUE,
                vec![Ttlv::new(
                    tags::DIGEST_VALUE,
                    Value::ByteString(vec![digest; 4].into()),
                )],
            ),
        ],
    );
    let item = |code: u32, payload: Vec<Ttlv>| {
        Ttlv::structure(
            tags::BATCH_ITEM,
            vec![
                op(code),
                Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)),
                Ttlv::structure(tags::RESPONSE_PAYLOAD, payload),
            ],
        )
    };
    let response = Ttlv::structure(
        tags::RESPONSE_MESSAGE,
        vec![
            item(0x08, vec![uid("made-earlier")]),
            item(0x0B, vec![uid("made-earlier"), digest_attr]),
        ],
    );
    (request, response)
}

#[test]
fn material_of_an_object_made_before_the_file_is_not_compared() {
    let expected = parse_template(
        r#"<ResponseMessage>
             <BatchItem><Operation type="Enumeration" value="Locate"/>
               <ResultStatus type="Enumeration" value="Success"/>
               <ResponsePayload><UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/></ResponsePayload>
             </BatchItem>
             <BatchItem><Operation type="Enumeration" value="GetAttributes"/>
               <ResultStatus type="Enumeration" value="Success"/>
               <ResponsePayload><UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>
                 <Attribute><AttributeName type="TextString" value="Digest"/>
                   <AttributeValue><DigestValue type="ByteString" value="01010101"/></AttributeValue>
                 </Attribute>
               </ResponsePayload>
             </BatchItem>
           </ResponseMessage>"#,
    )
    .unwrap();
    let (request, response) = locate_then_digest(0x02);
    Session::default()
        .check_response(&request, &expected, &response)
        .unwrap();
    // An object the file has seen before (registered by it) keeps its Digest compared.
    let mut seen = Session::default();
    seen.bind_new_identifiers(&uid("made-earlier"));
    seen.check_response(&request, &expected, &response)
        .unwrap_err();
    seen.check_response(&request, &expected, &locate_then_digest(0x01).1)
        .unwrap();
}

fn get_info_response(info: &[u8]) -> Ttlv {
    Ttlv::structure(
        tags::RESPONSE_MESSAGE,
        vec![Ttlv::structure(
            tags::BATCH_ITEM,
            vec![
                Ttlv::new(tags::OPERATION, Value::Enumeration(0x33)),
                Ttlv::new(tags::RESULT_STATUS, Value::Enumeration(0)),
                Ttlv::structure(
                    tags::RESPONSE_PAYLOAD,
                    vec![
                        Ttlv::new(tags::PKCS_11_FUNCTION, Value::Enumeration(0x03)),
                        Ttlv::new(
                            tags::PKCS_11_OUTPUT_PARAMETERS,
                            Value::ByteString(info.to_vec().into()),
                        ),
                        Ttlv::new(tags::PKCS_11_RETURN_CODE, Value::Enumeration(0)),
                    ],
                ),
            ],
        )],
    )
}

#[test]
fn get_info_compares_the_ck_info_layout_and_cryptoki_version_only() {
    // CK_INFO of version 2.40, "AB" as manufacturer and description in 4-byte fields here.
    let expected = parse_template(
        r#"<ResponseMessage><BatchItem>
        <Operation type="Enumeration" value="PKCS_11"/>
        <ResultStatus type="Enumeration" value="Success"/>
        <ResponsePayload>
          <PKCS_11Function type="Enumeration" value="C_GetInfo"/>
          <PKCS_11OutputParameters type="ByteString" value="02284142202041422020"/>
          <PKCS_11ReturnCode type="Enumeration" value="OK"/>
        </ResponsePayload></BatchItem></ResponseMessage>"#,
    )
    .unwrap();
    let request = Ttlv::structure(tags::REQUEST_MESSAGE, vec![]);
    let check = |info: &[u8]| {
        Session::default().check_response(&request, &expected, &get_info_response(info))
    };
    check(b"\x02\x28XY  XY  ").unwrap();
    // Another Cryptoki version, or another length, is compared.
    check(b"\x03\x00XY  XY  ").unwrap_err();
    check(b"\x02\x28XY  XY ").unwrap_err();
}
