//! Get with a Key Wrapping Specification on the PKCS#11 backend (a private SoftHSM2 token):
//! the token wraps one of its keys with another by C_WrapKey (CKM_AES_KEY_WRAP, RFC 3394), and
//! the test unwraps the answer with the wrapping key's known bytes to find the registered key.
//!
//! Needs `softhsm2` (`apt-get install -y softhsm2`).

use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
use kmip_e2e::{Backend, GatewayHome};
use kmip_gateway::client::{ClientTls, KmipClient};
use kmip_wire::model::{
    Attribute, CryptographicAlgorithm, GetRequest, KeyBlock, KeyFormatType, KeyValue,
    ManagedObject, ProtocolVersion, RegisterRequest, RequestBatchItem, RequestHeader,
    RequestMessage, RequestPayload, ResponseBatchItem, ResponseMessage, ResponsePayload,
    ResultReason, ResultStatus, SecretBytes, UidRequest,
};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Ttlv, Value};

/// Cryptographic Usage Mask: Encrypt | Decrypt.
const ENCRYPT_DECRYPT: i32 = 0x0c;
/// Cryptographic Usage Mask: Wrap Key | Unwrap Key.
const WRAP_UNWRAP: i32 = 0x30;
/// Block Cipher Mode NIST Key Wrap (RFC 3394).
const NIST_KEY_WRAP: u32 = 0x0000_000D;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn call(c: &mut KmipClient, payload: RequestPayload) -> ResponseBatchItem {
    let request = RequestMessage {
        header: RequestHeader::new(ProtocolVersion::V2_1),
        items: vec![RequestBatchItem::new(payload)],
    };
    let reply = c.call(&request.to_ttlv()).await.expect("an answer");
    let mut msg = ResponseMessage::from_ttlv(&reply).expect("a Response Message");
    msg.items.remove(0)
}

/// Registers a 256-bit AES key of `bytes` and returns its identifier.
async fn register(c: &mut KmipClient, bytes: &[u8], mask: i32, extra: Vec<Attribute>) -> String {
    let mut attributes = vec![Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, mask)];
    attributes.extend(extra);
    let item = call(
        c,
        RequestPayload::Register(RegisterRequest {
            templates: Vec::new(),
            object_type: kmip_wire::model::ObjectType::SymmetricKey,
            attributes,
            object: ManagedObject::SymmetricKey(KeyBlock::raw(
                SecretBytes::from_slice(bytes),
                Some(CryptographicAlgorithm::Aes),
                Some(256),
            )),
        }),
    )
    .await;
    match item.payload {
        Some(ResponsePayload::Register(r)) => r.unique_identifier,
        _ => panic!("Register answered {item:?}"),
    }
}

/// Get of `uid` wrapped with `wrapping` by NIST Key Wrap.
fn get_wrapped(uid: &str, wrapping: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(uid.to_owned()),
        key_wrapping_specification: Some(Ttlv::structure(
            tags::KEY_WRAPPING_SPECIFICATION,
            vec![
                Ttlv::new(tags::WRAPPING_METHOD, Value::Enumeration(1)),
                Ttlv::structure(
                    tags::ENCRYPTION_KEY_INFORMATION,
                    vec![
                        Ttlv::new(tags::UNIQUE_IDENTIFIER, Value::TextString(wrapping.into())),
                        Ttlv::structure(
                            tags::CRYPTOGRAPHIC_PARAMETERS,
                            vec![Ttlv::new(
                                tags::BLOCK_CIPHER_MODE,
                                Value::Enumeration(NIST_KEY_WRAP),
                            )],
                        ),
                    ],
                ),
            ],
        )),
        ..GetRequest::default()
    })
}

/// RFC 3394 unwrap of `wrapped` with the 256-bit key `kek`.
fn unwrap_rfc3394(kek: &[u8], wrapped: &[u8]) -> Vec<u8> {
    let kek = AesKek::new(&AES_256, kek).expect("a 256-bit KEK");
    let mut out = vec![0u8; wrapped.len()];
    let len = kek
        .unwrap(wrapped, &mut out)
        .expect("the integrity check")
        .len();
    out.truncate(len);
    out
}

#[test]
fn the_token_wraps_one_of_its_keys_with_another() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let gw = home.start();
    let tls = ClientTls::from_files(&home.ca_cert(), &home.client_cert(), &home.client_key())
        .expect("client TLS");
    let kek_bytes: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect();
    let key_bytes: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(13).wrapping_add(101))
        .collect();
    runtime().block_on(async {
        let mut c = KmipClient::connect(&gw.addr().to_string(), gw.server_name(), &tls)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", gw.log()));
        let kek = register(&mut c, &kek_bytes, WRAP_UNWRAP, Vec::new()).await;
        let activated = call(
            &mut c,
            RequestPayload::Activate(UidRequest {
                unique_identifier: Some(kek.clone()),
            }),
        )
        .await;
        assert_eq!(
            activated.result_status,
            ResultStatus::Success,
            "{activated:?}"
        );
        let key = register(&mut c, &key_bytes, ENCRYPT_DECRYPT, Vec::new()).await;

        let got = call(&mut c, get_wrapped(&key, &kek)).await;
        let Some(ResponsePayload::Get(r)) = &got.payload else {
            panic!("Get wrapped answered {got:?}\n{}", gw.log());
        };
        let ManagedObject::SymmetricKey(block) = &r.object else {
            panic!("not a symmetric key: {r:?}");
        };
        assert_eq!(block.key_format_type, KeyFormatType::Raw);
        let KeyValue::Wrapped(wrapped) = &block.key_value else {
            panic!("the key value is not wrapped: {block:?}");
        };
        assert_eq!(wrapped.as_slice().len(), key_bytes.len() + 8);
        assert_ne!(wrapped.as_slice(), key_bytes.as_slice());
        assert_eq!(unwrap_rfc3394(&kek_bytes, wrapped.as_slice()), key_bytes);
        let data = block.key_wrapping_data.as_ref().expect("Key Wrapping Data");
        let named = data
            .child(tags::ENCRYPTION_KEY_INFORMATION)
            .and_then(|i| i.child(tags::UNIQUE_IDENTIFIER))
            .and_then(Ttlv::as_text);
        assert_eq!(named, Some(kek.as_str()));

        // A key the client marked not extractable is not served, wrapped or not (KMIP 2.1
        // §4.23), and the wrapping key must be allowed to wrap.
        let locked = register(
            &mut c,
            &key_bytes,
            ENCRYPT_DECRYPT,
            vec![Attribute::boolean(tags::EXTRACTABLE, false)],
        )
        .await;
        let refused = call(&mut c, get_wrapped(&locked, &kek)).await;
        assert_eq!(refused.result_status, ResultStatus::OperationFailed);
        assert_eq!(refused.result_reason, Some(ResultReason::NotExtractable));
        let not_a_kek = call(&mut c, get_wrapped(&kek, &key)).await;
        assert_eq!(
            not_a_kek.result_status,
            ResultStatus::OperationFailed,
            "{not_a_kek:?}"
        );
    });
}
