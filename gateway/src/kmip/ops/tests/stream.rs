//! Multi-part Encrypt and Decrypt through the dispatcher, on the vault.

use super::*;

const V: ProtocolVersion = ProtocolVersion::V2_1;

fn gcm() -> Option<CryptographicParameters> {
    Some(CryptographicParameters {
        block_cipher_mode: Some(BlockCipherMode::Gcm),
        tag_length: Some(16),
        ..CryptographicParameters::default()
    })
}

fn cbc_pad() -> Option<CryptographicParameters> {
    Some(CryptographicParameters {
        block_cipher_mode: Some(BlockCipherMode::Cbc),
        padding_method: Some(PaddingMethod::Pkcs5),
        ..CryptographicParameters::default()
    })
}

fn part(
    uid: &str,
    params: Option<CryptographicParameters>,
    data: &[u8],
    cv: Option<Bytes>,
    init: bool,
    last: bool,
) -> CryptoRequest {
    CryptoRequest {
        unique_identifier: Some(uid.into()),
        cryptographic_parameters: params,
        data: Some(SecretBytes::from_slice(data)),
        correlation_value: cv,
        init_indicator: init.then_some(true),
        final_indicator: last.then_some(true),
        ..CryptoRequest::default()
    }
}

fn encrypted(item: ResponseBatchItem) -> EncryptResponse {
    match item.payload {
        Some(ResponsePayload::Encrypt(e)) => e,
        other => panic!("{:?} {other:?}", item.result_reason),
    }
}

fn decrypted(item: ResponseBatchItem) -> DecryptResponse {
    match item.payload {
        Some(ResponsePayload::Decrypt(d)) => d,
        other => panic!("{:?} {other:?}", item.result_reason),
    }
}

async fn active_key(h: &Harness) -> String {
    let uid = h.create(V, None).await;
    h.one(V, RequestPayload::Activate(uid_req(&uid))).await;
    uid
}

use bytes::Bytes;

impl Harness {
    /// One request from another connection (another user).
    async fn send_as(
        &self,
        conn: &ConnContext,
        version: ProtocolVersion,
        payload: RequestPayload,
    ) -> ResponseBatchItem {
        let msg = RequestMessage {
            header: RequestHeader::new(version),
            items: vec![RequestBatchItem::new(payload)],
        };
        let Outcome::Respond(out) = self
            .dispatcher
            .handle(conn, msg.to_ttlv().to_bytes().unwrap())
            .await
        else {
            panic!("connection closed");
        };
        let mut r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
        r.items.remove(0)
    }
}

/// Streams `plain` in parts cut at `cuts`; returns (ciphertext, tag).
async fn encrypt_in_parts(
    h: &Harness,
    uid: &str,
    params: Option<CryptographicParameters>,
    iv: &[u8],
    plain: &[u8],
    cuts: &[usize],
) -> (Vec<u8>, Option<Bytes>) {
    let mut first = part(uid, params.clone(), &plain[..cuts[0]], None, true, false);
    first.iv_counter_nonce = Some(Bytes::copy_from_slice(iv));
    first.authenticated_encryption_additional_data = Some(Bytes::from_static(b"aad"));
    let r = encrypted(h.one(V, RequestPayload::Encrypt(first)).await);
    let cv = r.correlation_value.clone().expect("a Correlation Value");
    let mut out = r.data.unwrap().to_vec();
    let mut from = cuts[0];
    for &c in &cuts[1..] {
        let r = encrypted(
            h.one(
                V,
                RequestPayload::Encrypt(part(
                    uid,
                    params.clone(),
                    &plain[from..c],
                    Some(cv.clone()),
                    false,
                    false,
                )),
            )
            .await,
        );
        out.extend_from_slice(&r.data.unwrap());
        from = c;
    }
    let r = encrypted(
        h.one(
            V,
            RequestPayload::Encrypt(part(uid, params, &plain[from..], Some(cv), false, true)),
        )
        .await,
    );
    assert!(r.correlation_value.is_none());
    out.extend_from_slice(&r.data.unwrap());
    (out, r.authenticated_encryption_tag)
}

async fn encrypt_whole(
    h: &Harness,
    uid: &str,
    params: Option<CryptographicParameters>,
    iv: &[u8],
    plain: &[u8],
) -> EncryptResponse {
    let mut whole = part(uid, params, plain, None, false, false);
    whole.iv_counter_nonce = Some(Bytes::copy_from_slice(iv));
    whole.authenticated_encryption_additional_data = Some(Bytes::from_static(b"aad"));
    encrypted(h.one(V, RequestPayload::Encrypt(whole)).await)
}

#[tokio::test]
async fn streamed_gcm_and_cbc_equal_one_shot_and_decrypt_back() {
    let h = harness().await;
    let uid = active_key(&h).await;
    let plain: Vec<u8> = (0u8..100).collect();
    for (params, iv) in [
        (gcm(), vec![9u8; 8]),
        (gcm(), vec![9u8; 12]),
        (cbc_pad(), vec![5u8; 16]),
    ] {
        let whole = encrypt_whole(&h, &uid, params.clone(), &iv, &plain).await;
        for cuts in [vec![0, 1], vec![32], vec![17, 40, 99], vec![100]] {
            let (ct, tag) = encrypt_in_parts(&h, &uid, params.clone(), &iv, &plain, &cuts).await;
            assert_eq!(Some(&ct[..]), whole.data.as_deref(), "{cuts:?}");
            assert_eq!(tag, whole.authenticated_encryption_tag, "{cuts:?}");
            // Decrypt in two parts.
            let mut first = part(&uid, params.clone(), &ct[..50], None, true, false);
            first.iv_counter_nonce = Some(Bytes::copy_from_slice(&iv));
            first.authenticated_encryption_additional_data = Some(Bytes::from_static(b"aad"));
            let d1 = decrypted(h.one(V, RequestPayload::Decrypt(first)).await);
            let mut last = part(
                &uid,
                params.clone(),
                &ct[50..],
                d1.correlation_value.clone(),
                false,
                true,
            );
            last.authenticated_encryption_tag = tag.clone();
            let d2 = decrypted(h.one(V, RequestPayload::Decrypt(last)).await);
            let mut back = d1.data.map(|d| d.as_slice().to_vec()).unwrap_or_default();
            back.extend_from_slice(d2.data.unwrap().as_slice());
            assert_eq!(back, plain);
        }
    }
}

#[tokio::test]
async fn a_gcm_decrypt_with_a_bad_tag_releases_nothing() {
    let h = harness().await;
    let uid = active_key(&h).await;
    let plain = [7u8; 40];
    let whole = encrypt_whole(&h, &uid, gcm(), &[1; 12], &plain).await;
    let ct = whole.data.unwrap();
    let mut first = part(&uid, gcm(), &ct[..32], None, true, false);
    first.iv_counter_nonce = Some(Bytes::from_static(&[1; 12]));
    first.authenticated_encryption_additional_data = Some(Bytes::from_static(b"aad"));
    let d1 = decrypted(h.one(V, RequestPayload::Decrypt(first)).await);
    assert!(d1.data.as_ref().is_none_or(|d| d.as_slice().is_empty()));
    let mut bad = whole.authenticated_encryption_tag.unwrap().to_vec();
    bad[3] ^= 0x40;
    let mut last = part(
        &uid,
        gcm(),
        &ct[32..],
        d1.correlation_value.clone(),
        false,
        true,
    );
    last.authenticated_encryption_tag = Some(Bytes::from(bad));
    let r = h.one(V, RequestPayload::Decrypt(last.clone())).await;
    assert_eq!(r.result_reason, Some(ResultReason::CryptographicFailure));
    assert!(r.payload.is_none());
    // The stream is over.
    let again = h.one(V, RequestPayload::Decrypt(last)).await;
    assert_eq!(
        again.result_reason,
        Some(ResultReason::InvalidCorrelationValue)
    );
}

#[tokio::test]
async fn another_user_or_key_cannot_use_the_stream_and_revoke_ends_it() {
    let h = harness().await;
    let uid = active_key(&h).await;
    let other_key = active_key(&h).await;
    let mut first = part(&uid, cbc_pad(), b"0123456789", None, true, false);
    first.iv_counter_nonce = Some(Bytes::from_static(&[0; 16]));
    let cv = encrypted(h.one(V, RequestPayload::Encrypt(first)).await).correlation_value;

    // Another user, on a key of their own, with the stolen Correlation Value.
    let mallory = conn_of("other");
    let theirs = match h
        .send_as(
            &mallory,
            V,
            RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
                ],
            }),
        )
        .await
        .payload
    {
        Some(ResponsePayload::Create(c)) => c.unique_identifier,
        other => panic!("{other:?}"),
    };
    h.send_as(&mallory, V, RequestPayload::Activate(uid_req(&theirs)))
        .await;
    let stolen = h
        .send_as(
            &mallory,
            V,
            RequestPayload::Encrypt(part(&theirs, cbc_pad(), b"x", cv.clone(), false, true)),
        )
        .await;
    assert_eq!(
        stolen.result_reason,
        Some(ResultReason::InvalidCorrelationValue)
    );

    let wrong_key = h
        .one(
            V,
            RequestPayload::Encrypt(part(&other_key, cbc_pad(), b"x", cv.clone(), false, false)),
        )
        .await;
    assert_eq!(wrong_key.result_reason, Some(ResultReason::InvalidField));

    // Still the owner's: a middle part works.
    encrypted(
        h.one(
            V,
            RequestPayload::Encrypt(part(
                &uid,
                cbc_pad(),
                b"abcdefghij",
                cv.clone(),
                false,
                false,
            )),
        )
        .await,
    );
    h.one(V, revoke_req(&uid, RevocationReasonCode::Unspecified))
        .await;
    let after = h
        .one(
            V,
            RequestPayload::Encrypt(part(&uid, cbc_pad(), b"x", cv, false, true)),
        )
        .await;
    assert_eq!(
        after.result_reason,
        Some(ResultReason::WrongKeyLifecycleState)
    );
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_streams() {
    let h = harness().await;
    let uid = active_key(&h).await;
    let start = || {
        let mut first = part(&uid, gcm(), b"x", None, true, false);
        first.iv_counter_nonce = Some(Bytes::from_static(&[2; 12]));
        RequestPayload::Encrypt(first)
    };
    for _ in 0..super::super::stream::MAX_STREAMS_PER_USER {
        encrypted(h.one(V, start()).await);
    }
    let over = h.one(V, start()).await;
    assert_eq!(over.result_reason, Some(ResultReason::ServerLimitExceeded));
    assert_eq!(
        h.one(ProtocolVersion::V1_4, start()).await.result_reason,
        Some(ResultReason::GeneralFailure)
    );
}

/// Every part is charged against the key's byte Usage Limits; a part over the limit is refused
/// and ends the stream.
#[tokio::test]
async fn each_part_is_charged_against_usage_limits() {
    let h = harness().await;
    let limits = Value::Structure(vec![
        kmip_wire::ttlv::Ttlv::new(tags::USAGE_LIMITS_TOTAL, Value::LongInteger(10)),
        // Usage Limits Unit Byte.
        kmip_wire::ttlv::Ttlv::new(tags::USAGE_LIMITS_UNIT, Value::Enumeration(1)),
    ]);
    let created = h
        .one(
            V,
            RequestPayload::Create(CreateRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::enumeration(
                        tags::CRYPTOGRAPHIC_ALGORITHM,
                        CryptographicAlgorithm::Aes,
                    ),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 128),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
                    Attribute::new(tags::USAGE_LIMITS, limits),
                ],
            }),
        )
        .await;
    let Some(ResponsePayload::Create(c)) = created.payload else {
        panic!("{created:?}");
    };
    let uid = c.unique_identifier;
    h.one(V, RequestPayload::Activate(uid_req(&uid))).await;
    let mut first = part(&uid, gcm(), &[1; 8], None, true, false);
    first.iv_counter_nonce = Some(Bytes::from_static(&[4; 12]));
    let cv = encrypted(h.one(V, RequestPayload::Encrypt(first)).await).correlation_value;
    let over = h
        .one(
            V,
            RequestPayload::Encrypt(part(&uid, gcm(), &[1; 5], cv.clone(), false, true)),
        )
        .await;
    assert_eq!(over.result_reason, Some(ResultReason::PermissionDenied));
    let after = h
        .one(
            V,
            RequestPayload::Encrypt(part(&uid, gcm(), &[1; 1], cv, false, true)),
        )
        .await;
    assert_eq!(
        after.result_reason,
        Some(ResultReason::InvalidCorrelationValue)
    );
}
