//! Transparent RSA and EC keys through the dispatcher: a generated pair served in its
//! Transparent forms, registered again from them, and the registered private key signing what
//! the original public key verifies.

use super::*;
use kmip_wire::ttlv::Ttlv;

const V: ProtocolVersion = ProtocolVersion::V2_1;

async fn pair(h: &Harness, algorithm: CryptographicAlgorithm, bits: i32) -> (String, String) {
    let item = h
        .one(
            V,
            RequestPayload::CreateKeyPair(CreateKeyPairRequest {
                common_attributes: vec![
                    Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, algorithm),
                    Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, bits),
                    Attribute::datetime(tags::ACTIVATION_DATE, 1),
                ],
                private_key_attributes: Vec::new(),
                public_key_attributes: Vec::new(),
                common_templates: Vec::new(),
                private_key_templates: Vec::new(),
                public_key_templates: Vec::new(),
            }),
        )
        .await;
    let Some(ResponsePayload::CreateKeyPair(p)) = item.payload else {
        panic!("create key pair failed: {:?}", item.result_message);
    };
    (
        p.private_key_unique_identifier,
        p.public_key_unique_identifier,
    )
}

async fn get_as(h: &Harness, uid: &str, format: KeyFormatType) -> KeyBlock {
    let item = h
        .one(
            V,
            RequestPayload::Get(GetRequest {
                unique_identifier: Some(uid.to_owned()),
                key_format_type: Some(format),
                ..GetRequest::default()
            }),
        )
        .await;
    match item.payload {
        Some(ResponsePayload::Get(GetResponse {
            object: ManagedObject::PublicKey(b) | ManagedObject::PrivateKey(b),
            ..
        })) => b,
        other => panic!(
            "get as {format:?} failed: {:?} {other:?}",
            item.result_message
        ),
    }
}

async fn register(h: &Harness, object: ManagedObject) -> String {
    let object_type = object.object_type();
    let item = h
        .one(
            V,
            RequestPayload::Register(RegisterRequest {
                object_type,
                attributes: vec![Attribute::datetime(tags::ACTIVATION_DATE, 1)],
                templates: Vec::new(),
                object,
            }),
        )
        .await;
    let Some(ResponsePayload::Register(r)) = item.payload else {
        panic!("register failed: {:?}", item.result_message);
    };
    r.unique_identifier
}

fn material(block: &KeyBlock) -> Ttlv {
    match &block.key_value {
        KeyValue::Transparent(t) => t.0.clone(),
        other => panic!("not a transparent key value: {other:?}"),
    }
}

async fn signs(
    h: &Harness,
    private: &str,
    public: &str,
    hash: HashingAlgorithm,
    padding: Option<PaddingMethod>,
) -> bool {
    let parameters = Some(CryptographicParameters {
        hashing_algorithm: Some(hash),
        padding_method: padding,
        ..Default::default()
    });
    let data = SecretBytes::from_slice(b"signed by a key made from numbers");
    let item = h
        .one(
            V,
            RequestPayload::Sign(SignRequest {
                unique_identifier: Some(private.to_owned()),
                cryptographic_parameters: parameters.clone(),
                data: Some(data.clone()),
                ..Default::default()
            }),
        )
        .await;
    let Some(ResponsePayload::Sign(signed)) = item.payload else {
        panic!("sign failed: {:?}", item.result_message);
    };
    let item = h
        .one(
            V,
            RequestPayload::SignatureVerify(SignRequest {
                unique_identifier: Some(public.to_owned()),
                cryptographic_parameters: parameters,
                data: Some(data),
                signature_data: signed.signature_data,
                ..Default::default()
            }),
        )
        .await;
    match item.payload {
        Some(ResponsePayload::SignatureVerify(v)) => {
            v.validity_indicator == ValidityIndicator::Valid
        }
        other => panic!("verify failed: {:?} {other:?}", item.result_message),
    }
}

#[tokio::test]
async fn pairs_round_trip_through_their_transparent_forms() {
    let h = harness().await;
    for (algorithm, bits, private_format, public_format, hash, padding) in [
        (
            CryptographicAlgorithm::Rsa,
            2048,
            KeyFormatType::TransparentRsaPrivateKey,
            KeyFormatType::TransparentRsaPublicKey,
            HashingAlgorithm::Sha256,
            Some(PaddingMethod::Pkcs1V15),
        ),
        (
            CryptographicAlgorithm::Ec,
            384,
            KeyFormatType::TransparentEcPrivateKey,
            KeyFormatType::TransparentEcPublicKey,
            HashingAlgorithm::Sha384,
            None,
        ),
    ] {
        let (private, public) = pair(&h, algorithm, bits).await;
        let transparent_private = get_as(&h, &private, private_format).await;
        let transparent_public = get_as(&h, &public, public_format).await;
        assert_eq!(transparent_private.key_format_type, private_format);
        let fields = material(&transparent_public);
        if algorithm == CryptographicAlgorithm::Ec {
            assert_eq!(
                fields
                    .child(tags::RECOMMENDED_CURVE)
                    .and_then(Ttlv::as_enum),
                Some(0x0A),
                "P-384"
            );
            assert!(material(&transparent_private).child(tags::D).is_some());
        } else {
            assert!(fields.child(tags::MODULUS).is_some());
        }

        let public_again = register(&h, ManagedObject::PublicKey(transparent_public)).await;
        let private_again = register(&h, ManagedObject::PrivateKey(transparent_private)).await;
        // The same keys: the DER forms are equal, and the new private key signs what the
        // original public key verifies.
        for (original, again, der) in [
            (&public, &public_again, KeyFormatType::X509),
            (&private, &private_again, KeyFormatType::Pkcs8),
        ] {
            let a = get_as(&h, original, der).await;
            let b = get_as(&h, again, der).await;
            assert_eq!(a.key_value, b.key_value, "{algorithm:?} {der:?}");
        }
        assert!(
            signs(&h, &private_again, &public, hash, padding).await,
            "{algorithm:?}"
        );
        // Served again as registered, Transparent, without asking.
        let item = h.one(V, get_req(&public_again)).await;
        let Some(ResponsePayload::Get(g)) = item.payload else {
            panic!("get failed");
        };
        let ManagedObject::PublicKey(b) = g.object else {
            panic!("not a public key");
        };
        assert_eq!(b.key_format_type, public_format);
    }
}

#[tokio::test]
async fn transparent_numbers_that_make_no_key_are_refused() {
    let h = harness().await;
    let (_, public) = pair(&h, CryptographicAlgorithm::Ec, 256).await;
    let mut block = get_as(&h, &public, KeyFormatType::TransparentEcPublicKey).await;
    let Value::Structure(fields) = material(&block).value else {
        panic!("Key Material is a structure");
    };
    let off_curve: Vec<Ttlv> = fields
        .into_iter()
        .map(|f| match f.value {
            Value::ByteString(q) if f.tag == tags::QSTRING => {
                let mut q = q.to_vec();
                let last = q.len() - 1;
                q[last] ^= 1;
                Ttlv::new(tags::QSTRING, Value::ByteString(q.into()))
            }
            _ => f,
        })
        .collect();
    block.key_value =
        KeyValue::Transparent(SecretTtlv(Ttlv::structure(tags::KEY_MATERIAL, off_curve)));
    let item = h
        .one(
            V,
            RequestPayload::Register(RegisterRequest {
                object_type: ObjectType::PublicKey,
                attributes: Vec::new(),
                templates: Vec::new(),
                object: ManagedObject::PublicKey(block),
            }),
        )
        .await;
    assert_eq!(item.result_status, ResultStatus::OperationFailed);
    assert_eq!(item.result_reason, Some(ResultReason::InvalidField));
}
