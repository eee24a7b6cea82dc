//! MAC, MAC Verify, RNG Retrieve/Seed and the Random Number Generator attribute through the
//! dispatcher, on the file vault.

use super::*;
use bytes::Bytes;

const V: ProtocolVersion = ProtocolVersion::V2_1;

/// Creates and activates an AES-256 key whose usage mask allows MAC generation and verification.
async fn mac_key(h: &Harness) -> String {
    let item = h
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
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, 256),
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x180),
                ],
            }),
        )
        .await;
    let Some(ResponsePayload::Create(c)) = item.payload else {
        panic!("create failed: {:?}", item.result_message);
    };
    let a = h
        .one(V, RequestPayload::Activate(uid_req(&c.unique_identifier)))
        .await;
    assert_eq!(a.result_status, ResultStatus::Success);
    c.unique_identifier
}

fn hmac_params(alg: CryptographicAlgorithm) -> Option<CryptographicParameters> {
    Some(CryptographicParameters {
        cryptographic_algorithm: Some(alg),
        ..CryptographicParameters::default()
    })
}

fn mac_req(uid: &str, params: Option<CryptographicParameters>) -> RequestPayload {
    RequestPayload::Mac(MacRequest {
        unique_identifier: Some(uid.to_owned()),
        cryptographic_parameters: params,
        data: Some(SecretBytes::from_slice(b"data")),
        ..MacRequest::default()
    })
}

#[tokio::test]
async fn an_aes_key_macs_only_under_an_hmac_named_in_its_parameters() {
    let h = harness().await;
    let uid = mac_key(&h).await;
    let refused = h.one(V, mac_req(&uid, None)).await;
    assert_eq!(
        refused.result_reason,
        Some(ResultReason::CryptographicFailure)
    );
    let item = h
        .one(
            V,
            mac_req(&uid, hmac_params(CryptographicAlgorithm::HmacSha512)),
        )
        .await;
    let Some(ResponsePayload::Mac(m)) = item.payload else {
        panic!("{:?}", item.result_message);
    };
    let mac = m.mac_data.unwrap();
    assert_eq!(mac.len(), 64);

    let verify = |mac_data: Bytes| {
        RequestPayload::MacVerify(MacVerifyRequest {
            unique_identifier: Some(uid.clone()),
            cryptographic_parameters: hmac_params(CryptographicAlgorithm::HmacSha512),
            data: Some(SecretBytes::from_slice(b"data")),
            mac_data: Some(mac_data),
        })
    };
    let validity = |item: ResponseBatchItem| match item.payload {
        Some(ResponsePayload::MacVerify(v)) => v.validity_indicator,
        _ => panic!("{:?}", item.result_message),
    };
    assert_eq!(
        validity(h.one(V, verify(mac.clone())).await),
        VALIDITY_VALID
    );
    let mut wrong = mac.to_vec();
    wrong[0] ^= 1;
    assert_eq!(
        validity(h.one(V, verify(Bytes::from(wrong))).await),
        VALIDITY_INVALID
    );
    assert_eq!(
        validity(h.one(V, verify(mac.slice(..32))).await),
        VALIDITY_INVALID
    );
}

#[tokio::test]
async fn rng_retrieve_is_bounded_and_the_vault_takes_no_seed() {
    let h = harness().await;
    let retrieve = |n: i32| RequestPayload::RngRetrieve(RngRetrieveRequest { data_length: n });
    let max = i32::try_from(super::super::digest::MAX_RNG_RETRIEVE_BYTES).unwrap();
    match h.one(V, retrieve(max)).await.payload {
        Some(ResponsePayload::RngRetrieve(d)) => assert_eq!(d.data.len(), max as usize),
        other => panic!("{other:?}"),
    }
    for bad in [0, -1, max + 1] {
        let item = h.one(V, retrieve(bad)).await;
        assert_eq!(
            item.result_reason,
            Some(ResultReason::InvalidField),
            "{bad}"
        );
    }
    let seed = h
        .one(
            V,
            RequestPayload::RngSeed(RngSeedRequest {
                data: SecretBytes::from_slice(&[7u8; 32]),
            }),
        )
        .await;
    match seed.payload {
        Some(ResponsePayload::RngSeed(s)) => assert_eq!(s.amount, 0),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_created_key_names_the_generator_that_made_it() {
    let h = harness().await;
    let uid = h.create(V, None).await;
    let item = h
        .one(
            V,
            RequestPayload::GetAttributes(GetAttributesRequest {
                unique_identifier: Some(uid),
                names: vec![AttributeName::Tag(tags::RANDOM_NUMBER_GENERATOR)],
            }),
        )
        .await;
    let Some(ResponsePayload::GetAttributes(a)) = item.payload else {
        panic!("{:?}", item.result_message);
    };
    let Value::Structure(fields) = &a.attributes[0].value else {
        panic!("{:?}", a.attributes);
    };
    let field = |tag: Tag| {
        fields
            .iter()
            .find(|f| f.tag == tag)
            .map(|f| f.value.clone())
    };
    // DRBG (3), CTR (5), AES-256: aws-lc-rs' generator.
    assert_eq!(field(tags::RNGALGORITHM), Some(Value::Enumeration(3)));
    assert_eq!(field(tags::DRBGALGORITHM), Some(Value::Enumeration(5)));
    assert_eq!(field(tags::CRYPTOGRAPHIC_LENGTH), Some(Value::Integer(256)));
}

/// NIST SP 800-67's Triple DES key; the ciphertext checked with `openssl enc -des-ede3-cbc`.
const TDES_KEY: &str = "0123456789abcdef23456789abcdef01456789abcdef0123";

#[tokio::test]
async fn a_registered_triple_des_key_encrypts_in_cbc_and_refuses_gcm() {
    let h = harness().await;
    let item = h
        .one(
            V,
            RequestPayload::Register(RegisterRequest {
                templates: Vec::new(),
                object_type: ObjectType::SymmetricKey,
                attributes: vec![
                    Attribute::integer(tags::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
                    Attribute::datetime(tags::ACTIVATION_DATE, 1),
                ],
                object: ManagedObject::SymmetricKey(KeyBlock {
                    key_format_type: KeyFormatType::Raw,
                    key_compression_type: None,
                    key_value: KeyValue::Material(SecretBytes::new(hex::decode(TDES_KEY).unwrap())),
                    cryptographic_algorithm: Some(CryptographicAlgorithm::Des3),
                    cryptographic_length: Some(168),
                    key_wrapping_data: None,
                }),
            }),
        )
        .await;
    let Some(ResponsePayload::Register(r)) = item.payload else {
        panic!("{:?}", item.result_message);
    };
    let params = |mode: BlockCipherMode| {
        Some(CryptographicParameters {
            block_cipher_mode: Some(mode),
            padding_method: Some(PaddingMethod::Pkcs5),
            ..CryptographicParameters::default()
        })
    };
    let request = |mode, data: &[u8]| CryptoRequest {
        unique_identifier: Some(r.unique_identifier.clone()),
        cryptographic_parameters: params(mode),
        data: Some(SecretBytes::from_slice(data)),
        iv_counter_nonce: Some(Bytes::from_static(&[0, 1, 2, 3, 4, 5, 6, 7])),
        ..CryptoRequest::default()
    };
    let enc = h
        .one(
            V,
            RequestPayload::Encrypt(request(BlockCipherMode::Cbc, b"The qufck brown fox jump")),
        )
        .await;
    let Some(ResponsePayload::Encrypt(e)) = enc.payload else {
        panic!("{:?}", enc.result_message);
    };
    let ct = e.data.unwrap();
    assert_eq!(
        hex::encode(&ct),
        "f368d06f3bbd614e60f2d0245cad3f818d5c69f2cb3fd5c7efa5066e2c4e03b9"
    );
    let dec = h
        .one(
            V,
            RequestPayload::Decrypt(request(BlockCipherMode::Cbc, &ct)),
        )
        .await;
    let Some(ResponsePayload::Decrypt(d)) = dec.payload else {
        panic!("{:?}", dec.result_message);
    };
    assert_eq!(d.data.unwrap().as_slice(), b"The qufck brown fox jump");
    let gcm = h
        .one(
            V,
            RequestPayload::Encrypt(request(BlockCipherMode::Gcm, b"x")),
        )
        .await;
    assert_eq!(gcm.result_reason, Some(ResultReason::CryptographicFailure));
}
