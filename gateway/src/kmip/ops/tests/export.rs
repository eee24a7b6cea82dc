//! Export through the dispatcher, on the file vault: the object as Get serves it and its
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
