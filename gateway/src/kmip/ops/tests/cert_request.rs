//! Certificate Request objects (KMIP 2.x): a CSR registered, got back as registered, located by
//! its type and destroyed; a 1.x client, whose protocol has none, can neither register nor get
//! one.

use super::*;
use bytes::Bytes;

#[tokio::test]
async fn a_certificate_request_is_kept_for_2x_clients() {
    let h = harness().await;
    let csr = ManagedObject::CertificateRequest {
        certificate_request_type: CertificateRequestType::Pkcs10,
        value: Bytes::from_static(b"0\x82 a PKCS#10 request, kept as given"),
    };
    let register = RequestPayload::Register(RegisterRequest {
        object_type: ObjectType::CertificateRequest,
        attributes: vec![Attribute::name(&Name::new("host-csr"))],
        templates: Vec::new(),
        object: csr.clone(),
    });
    let refused = h.one(ProtocolVersion::V1_4, register.clone()).await;
    assert_eq!(refused.result_status, ResultStatus::OperationFailed);

    let v = ProtocolVersion::V2_1;
    let item = h.one(v, register).await;
    let Some(ResponsePayload::Register(r)) = item.payload else {
        panic!("register failed: {:?}", item.result_message);
    };
    let uid = r.unique_identifier;
    let got = h.one(v, get_req(&uid)).await;
    let Some(ResponsePayload::Get(g)) = got.payload else {
        panic!("get failed: {:?}", got.result_message);
    };
    assert_eq!(g.object, csr);
    assert_eq!(
        h.one(ProtocolVersion::V1_4, get_req(&uid))
            .await
            .result_status,
        ResultStatus::OperationFailed
    );
    let located = h
        .one(
            v,
            RequestPayload::Locate(LocateRequest {
                attributes: vec![Attribute::enumeration(
                    tags::OBJECT_TYPE,
                    ObjectType::CertificateRequest,
                )],
                ..LocateRequest::default()
            }),
        )
        .await;
    let Some(ResponsePayload::Locate(l)) = located.payload else {
        panic!("locate failed");
    };
    assert_eq!(l.unique_identifiers, vec![uid.clone()]);
    let destroyed = h.one(v, RequestPayload::Destroy(uid_req(&uid))).await;
    assert_eq!(destroyed.result_status, ResultStatus::Success);
}
