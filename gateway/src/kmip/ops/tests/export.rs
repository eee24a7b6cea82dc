//! Export and Import through the dispatcher, on the file vault: the object as Get serves it and its
//! attributes in one answer, refused where Get is.

use super::*;

fn export_req(uid: &str) -> RequestPayload {
    RequestPayload::Export(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

#[tokio::test]
async fn export_answers_the_material_of_get_and_every_attribute() {
    let h = harness().await;
    for v in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
        let name = format!("export-{v:?}");
        let uid = h.create(v, Some(&name)).await;
        let Some(ResponsePayload::Get(got)) = h.one(v, get_req(&uid)).await.payload else {
            panic!("get failed");
        };
        let item = h.one(v, export_req(&uid)).await;
        let Some(ResponsePayload::Export(e)) = item.payload else {
            panic!("export failed: {:?}", item.result_message);
        };
        assert_eq!(e.unique_identifier, uid);
        assert_eq!(e.object, got.object, "{v:?}");
        assert!(e
            .attributes
            .iter()
            .any(|a| a.name == AttributeName::Tag(tags::NAME)
                && a.value == Attribute::name(&Name::new(&name)).value));
        for tag in [
            tags::CRYPTOGRAPHIC_ALGORITHM,
            tags::CRYPTOGRAPHIC_LENGTH,
            tags::STATE,
        ] {
            assert!(
                e.attributes
                    .iter()
                    .any(|a| a.name == AttributeName::Tag(tag)),
                "{v:?} {tag:?}: {:?}",
                e.attributes
            );
        }
    }
}

#[tokio::test]
async fn export_is_refused_where_get_is() {
    let h = harness().await;
    let v = ProtocolVersion::V2_1;
    let uid = h.create(v, None).await;
    let set = h
        .one(
            v,
            RequestPayload::SetAttribute(AttributeRequest {
                unique_identifier: Some(uid.clone()),
                attribute: Attribute::boolean(tags::SENSITIVE, true),
            }),
        )
        .await;
    assert_eq!(set.result_status, ResultStatus::Success, "{set:?}");
    let get = h.one(v, get_req(&uid)).await;
    assert_eq!(get.result_status, ResultStatus::OperationFailed);
    let export = h.one(v, export_req(&uid)).await;
    assert_eq!(export.result_status, ResultStatus::OperationFailed);
    assert_eq!(export.result_reason, get.result_reason);
    assert!(export.payload.is_none());
    let absent = "00000000-0000-4000-8000-000000000000";
    let missing = h.one(v, export_req(absent)).await;
    assert_eq!(
        missing.result_reason,
        h.one(v, get_req(absent)).await.result_reason
    );
}

fn import_req(e: &ExportResponse, replace_existing: Option<bool>) -> RequestPayload {
    RequestPayload::Import(ImportRequest {
        unique_identifier: e.unique_identifier.clone(),
        object_type: e.object.object_type(),
        replace_existing,
        key_wrap_type: None,
        attributes: e.attributes.clone(),
        object: e.object.clone(),
    })
}

/// The one-instance value of `tag` in a Get Attributes answer.
async fn attribute(h: &Harness, uid: &str, tag: Tag) -> Option<Value> {
    let item = h
        .one(
            ProtocolVersion::V2_1,
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid.to_owned()),
                names: vec![AttributeName::Tag(tag)],
            }),
        )
        .await;
    let Some(ResponsePayload::GetAttributes(a)) = item.payload else {
        panic!("get attributes failed: {:?}", item.result_message);
    };
    a.attributes.into_iter().next().map(|a| a.value)
}

/// What one server exports, another imports under the same identifier, with the same material,
/// Name and lifecycle state; an identifier in use is refused, whoever owns it.
#[tokio::test]
async fn an_exported_object_imports_elsewhere_under_its_identifier() {
    let v = ProtocolVersion::V2_1;
    let source = harness().await;
    let uid = source.create(v, Some("travelling")).await;
    let activated = source.one(v, RequestPayload::Activate(uid_req(&uid))).await;
    assert_eq!(activated.result_status, ResultStatus::Success);
    let Some(ResponsePayload::Export(e)) = source.one(v, export_req(&uid)).await.payload else {
        panic!("export failed");
    };
    let target = harness().await;
    let item = target.one(v, import_req(&e, None)).await;
    let Some(ResponsePayload::Import(i)) = item.payload else {
        panic!("import failed: {:?}", item.result_message);
    };
    assert_eq!(i.unique_identifier, uid);
    let Some(ResponsePayload::Get(got)) = target.one(v, get_req(&uid)).await.payload else {
        panic!("get of the imported object failed");
    };
    assert_eq!(got.object, e.object);
    assert_eq!(
        attribute(&target, &uid, tags::STATE).await,
        Some(Value::Enumeration(State::Active.to_u32()))
    );
    assert_eq!(
        attribute(&target, &uid, tags::INITIAL_DATE).await,
        attribute(&source, &uid, tags::INITIAL_DATE).await
    );
    assert_eq!(
        located(&target.dispatcher, &target.conn, "travelling").await,
        vec![uid.clone()]
    );

    let again = target.one(v, import_req(&e, Some(false))).await;
    assert_eq!(again.result_reason, Some(ResultReason::InvalidField));
    let replace = target.one(v, import_req(&e, Some(true))).await;
    assert_eq!(replace.result_status, ResultStatus::OperationFailed);
    assert!(
        replace
            .result_message
            .as_deref()
            .is_some_and(|m| m.contains("Destroy it first")),
        "{replace:?}"
    );
    // Another user cannot take the identifier over either.
    let msg = RequestMessage {
        header: RequestHeader::new(v),
        items: vec![RequestBatchItem::new(import_req(&e, Some(true)))],
    };
    let Outcome::Respond(out) = target
        .dispatcher
        .handle(&conn_of("other"), msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("closed");
    };
    let r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    assert_eq!(r.items[0].result_status, ResultStatus::OperationFailed);
    let Some(ResponsePayload::Get(still)) = target.one(v, get_req(&uid)).await.payload else {
        panic!("the imported object is gone");
    };
    assert_eq!(still.object, e.object);
}

#[tokio::test]
async fn import_refuses_a_destroyed_state_and_a_mismatched_type() {
    let v = ProtocolVersion::V2_1;
    let source = harness().await;
    let uid = source.create(v, None).await;
    let Some(ResponsePayload::Export(mut e)) = source.one(v, export_req(&uid)).await.payload else {
        panic!("export failed");
    };
    let target = harness().await;
    let RequestPayload::Import(mut wrong_type) = import_req(&e, None) else {
        unreachable!()
    };
    wrong_type.object_type = ObjectType::SecretData;
    // The object is read as the Object Type says, so a mismatch fails decoding.
    let item = target.one(v, RequestPayload::Import(wrong_type)).await;
    assert_eq!(item.result_reason, Some(ResultReason::InvalidMessage));
    e.attributes
        .retain(|a| a.name != AttributeName::Tag(tags::STATE));
    e.attributes
        .push(Attribute::enumeration(tags::STATE, State::Destroyed));
    let item = target.one(v, import_req(&e, None)).await;
    assert_eq!(item.result_reason, Some(ResultReason::InvalidField));
    assert_eq!(
        target.one(v, get_req(&uid)).await.result_status,
        ResultStatus::OperationFailed,
        "nothing was imported"
    );
}
