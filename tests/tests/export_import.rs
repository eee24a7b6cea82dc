//! Export and Import against the real binary, on every backend: a key exported by one gateway
//! is imported by another under the same Unique Identifier, with the same material, Name and
//! state; importing it again is refused.

use kmip_e2e::{backend_tests, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, AttributeName, CreateRequest, CryptographicAlgorithm, GetRequest, ImportRequest,
    KmipEnum, Name, ObjectType, ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage,
    RequestPayload, ResponseBatchItem, ResponseMessage, ResponsePayload, ResultReason,
    ResultStatus, State, UidRequest,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Value;

const V: ProtocolVersion = ProtocolVersion::V2_1;

/// Sends one single-item request on a new connection and returns its answer.
fn call(gw: &GatewayProcess, payload: RequestPayload) -> ResponseBatchItem {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tls =
            ClientTls::from_files(&gw.ca_cert(), &gw.client_cert(), &gw.client_key()).unwrap();
        let mut client = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
            .await
            .unwrap();
        let request = RequestMessage {
            header: RequestHeader::new(V),
            items: vec![RequestBatchItem::new(payload)],
        };
        let response = client.call(&request.to_ttlv()).await.unwrap();
        ResponseMessage::from_ttlv(&response)
            .unwrap()
            .items
            .remove(0)
    })
}

fn get(uid: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        ..GetRequest::default()
    })
}

backend_tests! {
    fn an_exported_key_imports_on_another_gateway(backend) {
        let a = GatewayProcess::start_backend(backend);
        let b = GatewayProcess::start_backend(backend);
        let created = call(&a, RequestPayload::Create(CreateRequest { templates: Vec::new(),
            object_type: ObjectType::SymmetricKey,
            attributes: vec![
                Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
                Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
                Attribute::name(&Name::new("moving-key")),
            ],
        }));
        let Some(ResponsePayload::Create(c)) = created.payload else {
            panic!("create: {created:?}\n{}", a.log());
        };
        let uid = c.unique_identifier;
        let activated = call(&a, RequestPayload::Activate(UidRequest {
            unique_identifier: Some(uid.clone()),
        }));
        assert_eq!(activated.result_status, ResultStatus::Success);
        let exported = call(&a, RequestPayload::Export(GetRequest {
            unique_identifier: Some(uid.clone()),
            ..GetRequest::default()
        }));
        let Some(ResponsePayload::Export(e)) = exported.payload else {
            panic!("export: {exported:?}\n{}", a.log());
        };
        let import = RequestPayload::Import(ImportRequest {
            unique_identifier: uid.clone(),
            object_type: ObjectType::SymmetricKey,
            replace_existing: None,
            key_wrap_type: None,
            attributes: e.attributes.clone(),
            object: e.object.clone(),
        });
        let imported = call(&b, import.clone());
        assert_eq!(imported.result_status, ResultStatus::Success, "{imported:?}\n{}", b.log());
        let Some(ResponsePayload::Get(got)) = call(&b, get(&uid)).payload else {
            panic!("get of the imported key\n{}", b.log());
        };
        assert_eq!(got.object, e.object);
        let attrs = call(&b, RequestPayload::GetAttributes(kmip_wire::model::GetAttributesRequest {
            unique_identifier: Some(uid.clone()),
            names: vec![AttributeName::Tag(tags::STATE), AttributeName::Tag(tags::NAME)],
        }));
        let Some(ResponsePayload::GetAttributes(attrs)) = attrs.payload else {
            panic!("get attributes: {attrs:?}");
        };
        let values: Vec<Value> = attrs.attributes.into_iter().map(|a| a.value).collect();
        assert!(values.contains(&Value::Enumeration(State::Active.to_u32())), "{values:?}");
        assert!(values.contains(&Attribute::name(&Name::new("moving-key")).value), "{values:?}");
        let again = call(&b, import);
        assert_eq!(again.result_reason, Some(ResultReason::InvalidField));
    }
}
