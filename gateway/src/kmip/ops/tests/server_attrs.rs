//! The attributes the server reports without storing them (Lease Time, Short Unique Identifier,
//! Protection Storage Mask, Key Format Type) and the generator of key pairs, on the file vault.

use super::*;

async fn attributes(h: &Harness, v: ProtocolVersion, uid: &str) -> Vec<Attribute> {
    let item = h
        .one(
            v,
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid.to_owned()),
                names: Vec::new(),
            }),
        )
        .await;
    match item.payload {
        Some(ResponsePayload::GetAttributes(r)) => r.attributes,
        other => panic!("get attributes failed: {:?} {other:?}", item.result_message),
    }
}

async fn attribute_list(h: &Harness, v: ProtocolVersion, uid: &str) -> Vec<AttributeName> {
    let item = h
        .one(v, RequestPayload::GetAttributeList(uid_req(uid)))
        .await;
    match item.payload {
        Some(ResponsePayload::GetAttributeList(r)) => r.names,
        other => panic!(
            "get attribute list failed: {:?} {other:?}",
            item.result_message
        ),
    }
}

fn value_of(attrs: &[Attribute], tag: Tag) -> Option<Value> {
    attrs.iter().find(|a| a.is(tag)).map(|a| a.value.clone())
}

#[tokio::test]
async fn a_created_key_reports_lease_storage_format_and_short_identifier_in_2x() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let uid = h.create(v, None).await;
    let attrs = attributes(&h, v, &uid).await;
    assert_eq!(value_of(&attrs, tags::LEASE_TIME), Some(Value::Interval(0)));
    // Software: the file vault keeps material in software.
    assert_eq!(
        value_of(&attrs, tags::PROTECTION_STORAGE_MASK),
        Some(Value::Integer(1))
    );
    assert_eq!(
        value_of(&attrs, tags::KEY_FORMAT_TYPE),
        Some(Value::Enumeration(KeyFormatType::Raw.to_u32()))
    );
    let Some(Value::ByteString(short)) = value_of(&attrs, tags::SHORT_UNIQUE_IDENTIFIER) else {
        panic!("no Short Unique Identifier: {attrs:?}");
    };
    assert_eq!(short.len(), 32);
    // Stable: asked again, and asked for by name, it is the same.
    let again = h
        .one(
            v,
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid.clone()),
                names: vec![AttributeName::Tag(tags::SHORT_UNIQUE_IDENTIFIER)],
            }),
        )
        .await;
    let Some(ResponsePayload::GetAttributes(r)) = again.payload else {
        panic!("get attributes by name failed");
    };
    assert_eq!(r.attributes.len(), 1);
    assert_eq!(r.attributes[0].value, Value::ByteString(short));
    let names = attribute_list(&h, v, &uid).await;
    for tag in [
        tags::LEASE_TIME,
        tags::PROTECTION_STORAGE_MASK,
        tags::KEY_FORMAT_TYPE,
        tags::SHORT_UNIQUE_IDENTIFIER,
    ] {
        assert!(
            names.contains(&AttributeName::Tag(tag)),
            "{tag:?} not in {names:?}"
        );
    }
    // Identifying attributes first (canonical order).
    assert_eq!(names[1], AttributeName::Tag(tags::SHORT_UNIQUE_IDENTIFIER));
}

#[tokio::test]
async fn a_1x_client_sees_lease_time_but_no_2x_attribute() {
    let h = harness().await;
    let v = ProtocolVersion::V1_4;
    let uid = h.create(v, None).await;
    let names = attribute_list(&h, v, &uid).await;
    assert!(names.contains(&AttributeName::Tag(tags::LEASE_TIME)));
    for tag in [
        tags::PROTECTION_STORAGE_MASK,
        tags::KEY_FORMAT_TYPE,
        tags::SHORT_UNIQUE_IDENTIFIER,
    ] {
        assert!(
            !names.contains(&AttributeName::Tag(tag)),
            "{tag:?} in {names:?}"
        );
    }
    let attrs = attributes(&h, v, &uid).await;
    assert_eq!(value_of(&attrs, tags::LEASE_TIME), Some(Value::Interval(0)));
}

#[tokio::test]
async fn a_destroyed_key_has_no_lease_time() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let uid = h.create(v, None).await;
    let item = h.one(v, RequestPayload::Destroy(uid_req(&uid))).await;
    assert_eq!(item.result_status, ResultStatus::Success);
    let attrs = attributes(&h, v, &uid).await;
    assert_eq!(value_of(&attrs, tags::LEASE_TIME), None);
    assert!(!attribute_list(&h, v, &uid)
        .await
        .contains(&AttributeName::Tag(tags::LEASE_TIME)));
}

#[tokio::test]
async fn both_keys_of_a_created_pair_name_the_generator() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let item = h
        .one(
            v,
            RequestPayload::CreateKeyPair(CreateKeyPairRequest {
                common_templates: Vec::new(),
                private_key_templates: Vec::new(),
                public_key_templates: Vec::new(),
                common_attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Ec,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                ],
                private_key_attributes: Vec::new(),
                public_key_attributes: Vec::new(),
            }),
        )
        .await;
    let Some(ResponsePayload::CreateKeyPair(pair)) = item.payload else {
        panic!("create key pair failed: {:?}", item.result_message);
    };
    for uid in [
        &pair.private_key_unique_identifier,
        &pair.public_key_unique_identifier,
    ] {
        let attrs = attributes(&h, v, uid).await;
        let Some(Value::Structure(rng)) = value_of(&attrs, tags::RANDOM_NUMBER_GENERATOR) else {
            panic!("no Random Number Generator on {uid}: {attrs:?}");
        };
        assert!(rng.iter().any(|f| f.tag == tags::RNGALGORITHM), "{rng:?}");
    }
}
