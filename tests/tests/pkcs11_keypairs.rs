//! Key pairs on the PKCS#11 backend (a private SoftHSM2 token): the private key is a token key
//! found again after a restart, signs and RSA-decrypts on the token, and a non-extractable one
//! is never served.

use kmip_e2e::{Backend, GatewayHome, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, CreateKeyPairRequest, CreateKeyPairResponse, CryptoRequest, CryptographicAlgorithm,
    CryptographicParameters, GetRequest, HashingAlgorithm, PaddingMethod, ProtocolVersion,
    RequestBatchItem, RequestHeader, RequestMessage, RequestPayload, ResponseBatchItem,
    ResponseMessage, ResponsePayload, ResultReason, ResultStatus, SecretBytes, SignRequest,
    ValidityIndicator,
};
use kmip_wire::spec::tags;

const VERSION: ProtocolVersion = ProtocolVersion::V2_1;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(gw: &GatewayProcess, home: &GatewayHome) -> KmipClient {
    let tls =
        ClientTls::from_files(&home.ca_cert(), &home.client_cert(), &home.client_key()).unwrap();
    KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", gw.log()))
}

async fn call(c: &mut KmipClient, payload: RequestPayload) -> ResponseBatchItem {
    let request = RequestMessage {
        header: RequestHeader::new(VERSION),
        items: vec![RequestBatchItem::new(payload)],
    };
    let reply = c.call(&request.to_ttlv()).await.expect("an answer");
    let mut msg = ResponseMessage::from_ttlv(&reply).expect("a Response Message");
    msg.items.remove(0)
}

async fn ok(c: &mut KmipClient, payload: RequestPayload) -> ResponsePayload {
    let what = format!("{:?}", payload.operation());
    let item = call(c, payload).await;
    assert_eq!(
        item.result_status,
        ResultStatus::Success,
        "{what}: {item:?}"
    );
    item.payload.expect("a payload")
}

fn params(padding: PaddingMethod, hash: HashingAlgorithm) -> Option<CryptographicParameters> {
    Some(CryptographicParameters {
        padding_method: Some(padding),
        hashing_algorithm: Some(hash),
        ..Default::default()
    })
}

async fn create_pair(c: &mut KmipClient) -> CreateKeyPairResponse {
    let created = ok(
        c,
        RequestPayload::CreateKeyPair(CreateKeyPairRequest {
            common_templates: Vec::new(),
            private_key_templates: Vec::new(),
            public_key_templates: Vec::new(),
            common_attributes: vec![
                Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Rsa),
                Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 2048),
                Attribute::datetime(tags::ACTIVATION_DATE, 1),
            ],
            private_key_attributes: vec![Attribute::boolean(tags::EXTRACTABLE, false)],
            public_key_attributes: Vec::new(),
        }),
    )
    .await;
    match created {
        ResponsePayload::CreateKeyPair(r) => r,
        other => panic!("Create Key Pair answered {other:?}"),
    }
}

async fn sign_then_verify(c: &mut KmipClient, pair: &CreateKeyPairResponse) -> ValidityIndicator {
    let pss = || params(PaddingMethod::Pss, HashingAlgorithm::Sha256);
    let data = SecretBytes::from_slice(b"signed on the token");
    let ResponsePayload::Sign(signed) = ok(
        c,
        RequestPayload::Sign(SignRequest {
            unique_identifier: Some(pair.private_key_unique_identifier.clone()),
            cryptographic_parameters: pss(),
            data: Some(data.clone()),
            ..Default::default()
        }),
    )
    .await
    else {
        panic!("Sign answered another payload")
    };
    match ok(
        c,
        RequestPayload::SignatureVerify(SignRequest {
            unique_identifier: Some(pair.public_key_unique_identifier.clone()),
            cryptographic_parameters: pss(),
            data: Some(data),
            signature_data: signed.signature_data,
            ..Default::default()
        }),
    )
    .await
    {
        ResponsePayload::SignatureVerify(v) => v.validity_indicator,
        other => panic!("Signature Verify answered {other:?}"),
    }
}

/// RSA-OAEP (SHA-1, the hash SoftHSM 2.6 decrypts with) to the public key, decrypted by the
/// private key on the token.
async fn oaep_round_trip(c: &mut KmipClient, pair: &CreateKeyPairResponse) -> Vec<u8> {
    let oaep = || params(PaddingMethod::Oaep, HashingAlgorithm::Sha1);
    let ResponsePayload::Encrypt(sealed) = ok(
        c,
        RequestPayload::Encrypt(CryptoRequest {
            unique_identifier: Some(pair.public_key_unique_identifier.clone()),
            cryptographic_parameters: oaep(),
            data: Some(SecretBytes::from_slice(b"wrapped secret")),
            ..Default::default()
        }),
    )
    .await
    else {
        panic!("Encrypt answered another payload")
    };
    let ciphertext = sealed.data.expect("a ciphertext");
    match ok(
        c,
        RequestPayload::Decrypt(CryptoRequest {
            unique_identifier: Some(pair.private_key_unique_identifier.clone()),
            cryptographic_parameters: oaep(),
            data: Some(SecretBytes::from_slice(&ciphertext)),
            ..Default::default()
        }),
    )
    .await
    {
        ResponsePayload::Decrypt(d) => d.data.expect("a plaintext").as_slice().to_vec(),
        other => panic!("Decrypt answered {other:?}"),
    }
}

#[test]
fn a_token_key_pair_signs_decrypts_and_survives_a_restart() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let rt = runtime();
    let gw = home.start();
    let pair = rt.block_on(async {
        let mut c = connect(&gw, &home).await;
        let pair = create_pair(&mut c).await;
        assert_eq!(
            sign_then_verify(&mut c, &pair).await,
            ValidityIndicator::Valid
        );
        assert_eq!(oaep_round_trip(&mut c, &pair).await, b"wrapped secret");
        pair
    });
    drop(gw);
    let gw = home.start();
    rt.block_on(async {
        let mut c = connect(&gw, &home).await;
        // The restarted gateway finds the private key among the token's keys.
        assert_eq!(
            sign_then_verify(&mut c, &pair).await,
            ValidityIndicator::Valid
        );
        assert_eq!(oaep_round_trip(&mut c, &pair).await, b"wrapped secret");
        let get = call(
            &mut c,
            RequestPayload::Get(GetRequest {
                unique_identifier: Some(pair.private_key_unique_identifier.clone()),
                ..GetRequest::default()
            }),
        )
        .await;
        assert_eq!(
            (get.result_status, get.result_reason),
            (
                ResultStatus::OperationFailed,
                Some(ResultReason::NotExtractable)
            ),
            "a non-extractable private key is never served: {get:?}"
        );
    });
}
