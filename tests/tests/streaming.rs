//! Multi-part Encrypt and Decrypt through the real gateway over TLS, on the vault and on a
//! SoftHSM2 token: a stream's parts equal the one-shot answer, another connection of the same
//! user may continue it, and on the token streams hold at most `pool size − 1` sessions, so
//! single requests are still served while they are all taken.

use bytes::Bytes;
use kmip_e2e::{Backend, GatewayHome, GatewayProcess};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, BlockCipherMode, CreateRequest, CryptoRequest, CryptographicAlgorithm,
    CryptographicParameters, DecryptResponse, EncryptResponse, ObjectType, PaddingMethod,
    ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
    ResponseBatchItem, ResponseMessage, ResponsePayload, ResultReason, ResultStatus, SecretBytes,
    UidRequest,
};
use kmip_wire::spec::tags;

const V: ProtocolVersion = ProtocolVersion::V2_1;

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
        header: RequestHeader::new(V),
        items: vec![RequestBatchItem::new(payload)],
    };
    let reply = c.call(&request.to_ttlv()).await.expect("an answer");
    let mut msg = ResponseMessage::from_ttlv(&reply).expect("a Response Message");
    msg.items.remove(0)
}

fn encrypted(item: ResponseBatchItem) -> EncryptResponse {
    match item.payload {
        Some(ResponsePayload::Encrypt(e)) if item.result_status == ResultStatus::Success => e,
        other => panic!("{:?} {other:?}", item.result_reason),
    }
}

fn params(mode: BlockCipherMode) -> Option<CryptographicParameters> {
    Some(CryptographicParameters {
        block_cipher_mode: Some(mode),
        padding_method: (mode == BlockCipherMode::Cbc).then_some(PaddingMethod::Pkcs5),
        tag_length: (mode == BlockCipherMode::Gcm).then_some(16),
        ..CryptographicParameters::default()
    })
}

fn request(
    uid: &str,
    mode: BlockCipherMode,
    data: &[u8],
    iv: Option<&[u8]>,
    cv: Option<Bytes>,
    init: bool,
    last: bool,
) -> RequestPayload {
    RequestPayload::Encrypt(CryptoRequest {
        unique_identifier: Some(uid.into()),
        cryptographic_parameters: params(mode),
        data: Some(SecretBytes::from_slice(data)),
        iv_counter_nonce: iv.map(Bytes::copy_from_slice),
        authenticated_encryption_additional_data: (mode == BlockCipherMode::Gcm)
            .then(|| Bytes::from_static(b"header")),
        correlation_value: cv,
        init_indicator: init.then_some(true),
        final_indicator: last.then_some(true),
        ..CryptoRequest::default()
    })
}

async fn active_aes_key(c: &mut KmipClient) -> String {
    let created = call(
        c,
        RequestPayload::Create(CreateRequest {
            templates: Vec::new(),
            object_type: ObjectType::SymmetricKey,
            attributes: vec![
                Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
                Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0c),
            ],
        }),
    )
    .await;
    let Some(ResponsePayload::Create(c2)) = created.payload else {
        panic!("{created:?}");
    };
    let uid = c2.unique_identifier;
    let activated = call(
        c,
        RequestPayload::Activate(UidRequest {
            unique_identifier: Some(uid.clone()),
        }),
    )
    .await;
    assert_eq!(activated.result_status, ResultStatus::Success);
    uid
}

/// Three parts, the middle one on a second connection, equal the one-shot ciphertext and tag.
async fn parts_equal_one_shot(gw: &GatewayProcess, home: &GatewayHome) {
    let mut c = connect(gw, home).await;
    let mut other = connect(gw, home).await;
    let uid = active_aes_key(&mut c).await;
    let plain: Vec<u8> = (0u8..=200).collect();
    for (mode, iv) in [
        (BlockCipherMode::Gcm, vec![3u8; 8]),
        (BlockCipherMode::Gcm, vec![3u8; 12]),
        (BlockCipherMode::Cbc, vec![4u8; 16]),
    ] {
        let whole = encrypted(
            call(
                &mut c,
                request(&uid, mode, &plain, Some(&iv), None, false, false),
            )
            .await,
        );
        let first = encrypted(
            call(
                &mut c,
                request(&uid, mode, &plain[..33], Some(&iv), None, true, false),
            )
            .await,
        );
        let cv = first
            .correlation_value
            .clone()
            .expect("a Correlation Value");
        let middle = encrypted(
            call(
                &mut other,
                request(
                    &uid,
                    mode,
                    &plain[33..120],
                    None,
                    Some(cv.clone()),
                    false,
                    false,
                ),
            )
            .await,
        );
        let last = encrypted(
            call(
                &mut c,
                request(&uid, mode, &plain[120..], None, Some(cv), false, true),
            )
            .await,
        );
        let mut joined = first.data.unwrap().to_vec();
        joined.extend_from_slice(&middle.data.unwrap());
        joined.extend_from_slice(&last.data.unwrap());
        assert_eq!(
            Some(&joined[..]),
            whole.data.as_deref(),
            "{mode:?} {}",
            iv.len()
        );
        assert_eq!(
            last.authenticated_encryption_tag,
            whole.authenticated_encryption_tag
        );

        // And back, in two parts.
        let decrypt = |data: &[u8], iv: Option<&[u8]>, cv, init, fin, tag: Option<Bytes>| {
            let RequestPayload::Encrypt(mut r) = request(&uid, mode, data, iv, cv, init, fin)
            else {
                unreachable!()
            };
            r.authenticated_encryption_tag = tag;
            RequestPayload::Decrypt(r)
        };
        let d1 = decrypted(
            call(
                &mut c,
                decrypt(&joined[..70], Some(&iv), None, true, false, None),
            )
            .await,
        );
        let tag = last.authenticated_encryption_tag.clone();
        let d2 = decrypted(
            call(
                &mut other,
                decrypt(
                    &joined[70..],
                    None,
                    d1.correlation_value.clone(),
                    false,
                    true,
                    tag,
                ),
            )
            .await,
        );
        let mut back = d1.data.map(|d| d.as_slice().to_vec()).unwrap_or_default();
        back.extend_from_slice(d2.data.unwrap().as_slice());
        assert_eq!(back, plain, "{mode:?}");
    }
}

fn decrypted(item: ResponseBatchItem) -> DecryptResponse {
    match item.payload {
        Some(ResponsePayload::Decrypt(d)) if item.result_status == ResultStatus::Success => d,
        other => panic!("{:?} {other:?}", item.result_reason),
    }
}

#[test]
fn streams_through_the_gateway_on_the_vault() {
    let home = GatewayHome::new(Backend::Vault);
    let gw = home.start();
    runtime().block_on(parts_equal_one_shot(&gw, &home));
}

#[test]
fn streams_through_the_gateway_on_softhsm_hold_bounded_sessions() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let gw = home.start();
    runtime().block_on(async {
        parts_equal_one_shot(&gw, &home).await;
        let mut c = connect(&gw, &home).await;
        let uid = active_aes_key(&mut c).await;
        let iv = [6u8; 12];
        let start = || {
            request(
                &uid,
                BlockCipherMode::Gcm,
                b"part",
                Some(&iv),
                None,
                true,
                false,
            )
        };
        // The test home's pool has 4 sessions: 3 may be held by streams.
        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(
                encrypted(call(&mut c, start()).await)
                    .correlation_value
                    .unwrap(),
            );
        }
        let refused = call(&mut c, start()).await;
        assert_eq!(
            refused.result_status,
            ResultStatus::OperationFailed,
            "{refused:?}"
        );
        assert_eq!(refused.result_reason, Some(ResultReason::GeneralFailure));
        // Single requests still have their session.
        encrypted(
            call(
                &mut c,
                request(
                    &uid,
                    BlockCipherMode::Gcm,
                    b"one shot",
                    Some(&iv),
                    None,
                    false,
                    false,
                ),
            )
            .await,
        );
        // A finished stream gives its session back.
        let cv = open.pop().unwrap();
        encrypted(
            call(
                &mut c,
                request(
                    &uid,
                    BlockCipherMode::Gcm,
                    b"end",
                    None,
                    Some(cv),
                    false,
                    true,
                ),
            )
            .await,
        );
        encrypted(call(&mut c, start()).await);

        // Revoking the key ends its streams mid-operation: their sessions are closed, not
        // given back busy, so every later request, streamed or not, finds a clean session.
        let revoked = call(
            &mut c,
            RequestPayload::Revoke(kmip_wire::model::RevokeRequest {
                unique_identifier: Some(uid.clone()),
                revocation_reason: kmip_wire::model::RevocationReason {
                    code: kmip_wire::model::RevocationReasonCode::Unspecified,
                    message: None,
                },
                compromise_occurrence_date: None,
            }),
        )
        .await;
        assert_eq!(revoked.result_status, ResultStatus::Success);
        let fresh = active_aes_key(&mut c).await;
        for _ in 0..8 {
            encrypted(
                call(
                    &mut c,
                    request(
                        &fresh,
                        BlockCipherMode::Cbc,
                        b"0123",
                        Some(&[1; 16]),
                        None,
                        false,
                        false,
                    ),
                )
                .await,
            );
        }
        for _ in 0..3 {
            encrypted(
                call(
                    &mut c,
                    request(
                        &fresh,
                        BlockCipherMode::Cbc,
                        b"0123",
                        Some(&[1; 16]),
                        None,
                        true,
                        false,
                    ),
                )
                .await,
            );
        }
    });
}
