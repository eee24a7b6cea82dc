//! Get with a Key Wrapping Specification through the dispatcher, on the file vault.

use super::*;
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
use kmip_wire::ttlv::Ttlv;

const V: ProtocolVersion = ProtocolVersion::V2_1;
/// Usage masks: Wrap Key; Encrypt | Decrypt.
const WRAP_KEY: i32 = 0x10;
const ENCRYPT_DECRYPT: i32 = 0x0C;

async fn aes_key(h: &Harness, conn: &ConnContext, mask: i32, extra: Vec<Attribute>) -> String {
    let mut attributes = vec![
        Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Aes),
        Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
        Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, mask),
    ];
    attributes.extend(extra);
    let payload = RequestPayload::Create(CreateRequest {
        templates: Vec::new(),
        object_type: ObjectType::SymmetricKey,
        attributes,
    });
    let item = as_user(h, conn, payload).await;
    let Some(ResponsePayload::Create(c)) = item.payload else {
        panic!("create failed: {:?}", item.result_message);
    };
    c.unique_identifier
}

async fn as_user(h: &Harness, conn: &ConnContext, payload: RequestPayload) -> ResponseBatchItem {
    let msg = RequestMessage {
        header: RequestHeader::new(V),
        items: vec![RequestBatchItem::new(payload)],
    };
    let Outcome::Respond(out) = h
        .dispatcher
        .handle(conn, msg.to_ttlv().to_bytes().unwrap())
        .await
    else {
        panic!("closed");
    };
    let mut r = ResponseMessage::from_ttlv(&decode(&out, &Limits::default()).unwrap()).unwrap();
    r.items.remove(0)
}

fn wrapped_get(uid: &str, kek: &str, mode: BlockCipherMode) -> RequestPayload {
    let spec = Ttlv::structure(
        tags::KEY_WRAPPING_SPECIFICATION,
        vec![
            Ttlv::new(tags::WRAPPING_METHOD, Value::Enumeration(1)),
            Ttlv::structure(
                tags::ENCRYPTION_KEY_INFORMATION,
                vec![
                    Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString(kek.into())),
                    Ttlv::structure(
                        tags::CRYPTOGRAPHIC_PARAMETERS,
                        vec![Ttlv::new(
                            tags::BLOCK_CIPHER_MODE,
                            Value::Enumeration(mode.to_u32()),
                        )],
                    ),
                ],
            ),
        ],
    );
    let RequestPayload::Get(mut get) = get_req(uid) else {
        unreachable!()
    };
    get.key_wrapping_specification = Some(spec);
    RequestPayload::Get(get)
}

fn key_block(item: ResponseBatchItem) -> KeyBlock {
    match item.payload {
        Some(ResponsePayload::Get(GetResponse {
            object: ManagedObject::SymmetricKey(b),
            ..
        })) => b,
        _ => panic!(
            "get failed: {:?} {:?}",
            item.result_reason, item.result_message
        ),
    }
}

async fn activate(h: &Harness, uid: &str) {
    assert_eq!(
        h.one(V, RequestPayload::Activate(uid_req(uid)))
            .await
            .result_status,
        ResultStatus::Success
    );
}

/// The wrapped value is RFC 3394 of the key under the wrapping key, with Key Wrapping Data
/// naming it; a Sensitive key is refused wrapped too, saying why.
#[tokio::test]
async fn get_wraps_with_an_active_wrap_key_and_refuses_sensitive_keys() {
    let h = harness().await;
    let kek = aes_key(&h, &h.conn, WRAP_KEY, vec![]).await;
    let key = aes_key(&h, &h.conn, ENCRYPT_DECRYPT, vec![]).await;
    let sensitive = aes_key(
        &h,
        &h.conn,
        ENCRYPT_DECRYPT,
        vec![Attribute::new(tags::SENSITIVE, Value::Boolean(true))],
    )
    .await;
    // A pre-active wrapping key may not wrap.
    let item = h
        .one(V, wrapped_get(&key, &kek, BlockCipherMode::NistKeyWrap))
        .await;
    assert_eq!(
        item.result_reason,
        Some(ResultReason::WrongKeyLifecycleState)
    );
    activate(&h, &kek).await;

    let kek_bytes = key_block(h.one(V, get_req(&kek)).await);
    let plain = key_block(h.one(V, get_req(&key)).await);
    let block = key_block(
        h.one(V, wrapped_get(&key, &kek, BlockCipherMode::NistKeyWrap))
            .await,
    );
    let KeyValue::Wrapped(wrapped) = &block.key_value else {
        panic!("not wrapped: {block:?}");
    };
    let mut expected = [0u8; 40];
    let expected = AesKek::new(&AES_256, kek_bytes.key_bytes().unwrap().as_slice())
        .unwrap()
        .wrap(plain.key_bytes().unwrap().as_slice(), &mut expected)
        .unwrap()
        .to_vec();
    assert_eq!(wrapped.as_slice(), &expected[..]);
    let data = block.key_wrapping_data.expect("Key Wrapping Data");
    let info = data.child(tags::ENCRYPTION_KEY_INFORMATION).unwrap();
    assert_eq!(
        info.child(tags::UNIQUE_IDENTIFIER).and_then(Ttlv::as_text),
        Some(kek.as_str())
    );

    let item = h.one(V, get_req(&sensitive)).await;
    assert_eq!(item.result_reason, Some(ResultReason::Sensitive));
    let item = h
        .one(
            V,
            wrapped_get(&sensitive, &kek, BlockCipherMode::AesKeyWrapPadding),
        )
        .await;
    assert_eq!(item.result_reason, Some(ResultReason::FeatureNotSupported));
    assert!(item
        .result_message
        .is_some_and(|m| m.contains("Sensitive key wrapped")));
}

/// The wrapping key must allow Wrap Key, be visible to the caller, use a key-wrap mode and not
/// be the key itself.
#[tokio::test]
async fn get_refuses_a_wrapping_key_the_caller_may_not_wrap_with() {
    let h = harness().await;
    let key = aes_key(&h, &h.conn, ENCRYPT_DECRYPT, vec![]).await;
    let no_wrap = aes_key(&h, &h.conn, ENCRYPT_DECRYPT, vec![]).await;
    activate(&h, &no_wrap).await;
    let item = h
        .one(V, wrapped_get(&key, &no_wrap, BlockCipherMode::NistKeyWrap))
        .await;
    assert_eq!(item.result_reason, Some(ResultReason::PermissionDenied));

    let other = conn_of("other");
    let foreign = aes_key(&h, &other, WRAP_KEY, vec![]).await;
    as_user(&h, &other, RequestPayload::Activate(uid_req(&foreign))).await;
    let item = h
        .one(V, wrapped_get(&key, &foreign, BlockCipherMode::NistKeyWrap))
        .await;
    assert_eq!(item.result_reason, Some(ResultReason::ObjectNotFound));

    let kek = aes_key(&h, &h.conn, WRAP_KEY, vec![]).await;
    activate(&h, &kek).await;
    let item = h
        .one(V, wrapped_get(&key, &kek, BlockCipherMode::Cbc))
        .await;
    assert_eq!(item.result_reason, Some(ResultReason::FeatureNotSupported));
    let item = h
        .one(V, wrapped_get(&kek, &kek, BlockCipherMode::NistKeyWrap))
        .await;
    assert_eq!(item.result_reason, Some(ResultReason::InvalidField));
}
