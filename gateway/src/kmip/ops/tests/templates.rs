//! Template references (KMIP 1.x) on Create, Register and Create Key Pair: the order of
//! precedence of KMIP 1.4 §4 and who may use a Template.

use super::*;
use crate::kmip::dispatch::ConnContext;

const V: ProtocolVersion = ProtocolVersion::V1_4;

/// Registers a Template named `name` holding `inside`, answering its identifier.
async fn register_template(h: &Harness, name: &str, inside: Vec<Attribute>) -> String {
    let item = h
        .one(
            V,
            RequestPayload::Register(RegisterRequest {
                templates: Vec::new(),
                object_type: ObjectType::Template,
                attributes: vec![Attribute::name(&Name::new(name))],
                object: ManagedObject::Template { attributes: inside },
            }),
        )
        .await;
    let Some(ResponsePayload::Register(r)) = item.payload else {
        panic!("register failed: {:?}", item.result_message);
    };
    r.unique_identifier
}

fn create_with(templates: &[&str], attributes: Vec<Attribute>) -> RequestPayload {
    RequestPayload::Create(CreateRequest {
        object_type: ObjectType::SymmetricKey,
        attributes,
        templates: templates.iter().map(|t| Name::new(t)).collect(),
    })
}

async fn attributes_of(h: &Harness, uid: &str) -> Vec<Attribute> {
    let item = h
        .one(
            V,
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid.to_owned()),
                names: Vec::new(),
            }),
        )
        .await;
    let Some(ResponsePayload::GetAttributes(r)) = item.payload else {
        panic!("get attributes failed: {:?}", item.result_message);
    };
    r.attributes
}

fn values(attributes: &[Attribute], tag: Tag) -> Vec<Value> {
    attributes
        .iter()
        .filter(|a| a.is(tag))
        .map(|a| a.value.clone())
        .collect()
}

fn group(name: &str) -> Attribute {
    Attribute::text(tags::OBJECT_GROUP, name)
}

#[tokio::test]
async fn a_later_template_overrides_an_earlier_one_and_the_request_overrides_both() {
    let h = harness().await;
    register_template(
        &h,
        "t-small",
        vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
            Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
            group("from-small"),
        ],
    )
    .await;
    register_template(
        &h,
        "t-large",
        vec![
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
            group("from-large"),
        ],
    )
    .await;
    let item = h
        .one(
            V,
            create_with(
                &["t-small", "t-large"],
                vec![
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x04),
                    Attribute::name(&Name::new("made-from-templates")),
                ],
            ),
        )
        .await;
    let Some(ResponsePayload::Create(c)) = item.payload else {
        panic!("create failed: {:?}", item.result_message);
    };
    let attrs = attributes_of(&h, &c.unique_identifier).await;
    assert_eq!(
        values(&attrs, tags::CRYPTOGRAPHIC_LENGTH),
        [Value::Integer(256)]
    );
    assert_eq!(
        values(&attrs, tags::CRYPTOGRAPHIC_USAGE_MASK),
        [Value::Integer(0x04)]
    );
    let mut groups = values(&attrs, tags::OBJECT_GROUP);
    groups.sort_by_key(|v| format!("{v:?}"));
    assert_eq!(
        groups,
        [
            Value::TextString("from-large".into()),
            Value::TextString("from-small".into())
        ]
    );
    // The Templates' own Names stay theirs.
    let names: Vec<_> = attrs.iter().filter_map(Attribute::as_name).collect();
    assert_eq!(names, [Name::new("made-from-templates")]);
}

#[tokio::test]
async fn a_template_reference_on_register_and_create_key_pair_applies_too() {
    let h = harness().await;
    register_template(&h, "t-group", vec![group("fleet")]).await;
    let registered = h
        .one(
            V,
            RequestPayload::Register(RegisterRequest {
                templates: vec![Name::new("t-group")],
                object_type: ObjectType::SecretData,
                attributes: vec![Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C)],
                object: ManagedObject::SecretData {
                    secret_data_type: SecretDataType::Password,
                    key_block: KeyBlock::raw(SecretBytes::from_slice(b"hunter2"), None, None),
                },
            }),
        )
        .await;
    let Some(ResponsePayload::Register(r)) = registered.payload else {
        panic!("register failed: {:?}", registered.result_message);
    };
    let attrs = attributes_of(&h, &r.unique_identifier).await;
    assert_eq!(
        values(&attrs, tags::OBJECT_GROUP),
        [Value::TextString("fleet".into())]
    );
    register_template(
        &h,
        "t-rsa",
        vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Rsa),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 2048),
        ],
    )
    .await;
    let pair = h
        .one(
            V,
            RequestPayload::CreateKeyPair(CreateKeyPairRequest {
                common_attributes: Vec::new(),
                private_key_attributes: vec![Attribute::integer(
                    tags::CRYPTOGRAPHIC_USAGE_MASK,
                    0x01,
                )],
                public_key_attributes: vec![Attribute::integer(
                    tags::CRYPTOGRAPHIC_USAGE_MASK,
                    0x02,
                )],
                common_templates: vec![Name::new("t-rsa")],
                private_key_templates: vec![Name::new("t-group")],
                public_key_templates: Vec::new(),
            }),
        )
        .await;
    let Some(ResponsePayload::CreateKeyPair(p)) = pair.payload else {
        panic!("create key pair failed: {:?}", pair.result_message);
    };
    let private = attributes_of(&h, &p.private_key_unique_identifier).await;
    assert_eq!(
        values(&private, tags::CRYPTOGRAPHIC_LENGTH),
        [Value::Integer(2048)]
    );
    assert_eq!(
        values(&private, tags::OBJECT_GROUP),
        [Value::TextString("fleet".into())]
    );
    let public = attributes_of(&h, &p.public_key_unique_identifier).await;
    assert!(values(&public, tags::OBJECT_GROUP).is_empty());
}

#[tokio::test]
async fn an_unknown_or_foreign_template_is_refused_alike_and_2x_has_none() {
    let h = harness().await;
    let aes = || {
        vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
            Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
        ]
    };
    register_template(&h, "t-mine", aes()).await;
    let unknown = h.one(V, create_with(&["t-nobody"], Vec::new())).await;
    assert_eq!(unknown.result_status, ResultStatus::OperationFailed);
    assert_eq!(unknown.result_reason, Some(ResultReason::InvalidField));

    // Another user does not see purefa's Template: the same answer as for no Template at all.
    let other = ConnContext::new(
        2,
        "127.0.0.1:2".parse().unwrap(),
        Identity {
            user: "other".into(),
            subject: "CN=other".into(),
            serial_hex: "02".into(),
            fingerprint: "01".into(),
        },
    );
    let msg = RequestMessage {
        header: RequestHeader::new(V),
        items: vec![RequestBatchItem::new(create_with(&["t-mine"], Vec::new()))],
    };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(&other, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("connection closed");
    };
    let answer = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    assert_eq!(answer.items[0].result_status, ResultStatus::OperationFailed);
    assert_eq!(
        answer.items[0].result_reason,
        Some(ResultReason::InvalidField)
    );
    assert_eq!(
        answer.items[0].result_message,
        unknown
            .result_message
            .map(|m| m.replace("t-nobody", "t-mine"))
    );

    let v2 = h
        .one(ProtocolVersion::V2_0, create_with(&["t-mine"], Vec::new()))
        .await;
    assert_eq!(v2.result_status, ResultStatus::OperationFailed);
    let used = h.one(V, create_with(&["t-mine"], Vec::new())).await;
    assert_eq!(
        used.result_status,
        ResultStatus::Success,
        "{:?}",
        used.result_message
    );
}
