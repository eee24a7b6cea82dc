use super::*;
use crate::kmip::store::ObjectDraft;
use kmip_wire::ttlv::Ttlv;

fn key(kind: ObjectKind, attrs: Vec<Attribute>) -> StoredObject {
    ObjectDraft {
        uid: "k".into(),
        kind,
        owner: "u".into(),
        attributes: attrs,
        version: 1,
    }
    .finish()
}

fn rsa_key_with_parameters(fields: Vec<Ttlv>) -> StoredObject {
    key(
        ObjectKind::PrivateKey,
        vec![
            Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm::Rsa),
            Attribute::new(tags::CRYPTOGRAPHIC_PARAMETERS, Value::Structure(fields)),
        ],
    )
}

fn e(tag: Tag, v: u32) -> Ttlv {
    Ttlv::new(tag, Value::Enumeration(v))
}

fn alg(a: CryptographicAlgorithm, bits: Option<i32>) -> Vec<Attribute> {
    let mut v = vec![Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, a)];
    v.extend(bits.map(|b| Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, b)));
    v
}

#[test]
fn create_key_pair_accepts_the_supported_algorithms_only() {
    use CryptographicAlgorithm as A;
    let ok = [
        (A::Rsa, Some(3072), KeyPairAlgorithm::Rsa { bits: 3072 }),
        (A::Ec, Some(384), KeyPairAlgorithm::EcP384),
        (A::Ecdsa, Some(521), KeyPairAlgorithm::EcP521),
        (A::Ed25519, None, KeyPairAlgorithm::Ed25519),
    ];
    for (a, bits, want) in ok {
        assert_eq!(pair_algorithm(&alg(a, bits)).unwrap(), want);
    }
    for (a, bits) in [
        (A::Rsa, Some(1024)),
        (A::Rsa, None),
        (A::Ec, Some(192)),
        (A::Aes, Some(256)),
    ] {
        assert!(matches!(
            pair_algorithm(&alg(a, bits)),
            Err(OpError::InvalidField(_))
        ));
    }
    assert!(matches!(pair_algorithm(&[]), Err(OpError::MissingData(_))));
}

#[test]
fn the_signature_scheme_comes_from_the_request_then_the_key() {
    let pss = rsa_key_with_parameters(vec![
        e(tags::PADDING_METHOD, PaddingMethod::Pss.to_u32()),
        e(tags::HASHING_ALGORITHM, HashingAlgorithm::Sha256.to_u32()),
    ]);
    assert_eq!(
        signature_scheme(None, &pss).unwrap(),
        SignatureScheme::RsaPss(HashAlgorithm::Sha256)
    );
    let request = CryptographicParameters {
        padding_method: Some(PaddingMethod::Pkcs1V15),
        hashing_algorithm: Some(HashingAlgorithm::Sha512),
        ..Default::default()
    };
    assert_eq!(
        signature_scheme(Some(&request), &pss).unwrap(),
        SignatureScheme::RsaPkcs1v15(HashAlgorithm::Sha512)
    );
    let by_name = CryptographicParameters {
        other: vec![e(
            tags::DIGITAL_SIGNATURE_ALGORITHM,
            DigitalSignatureAlgorithm::Sha384WithRsa.to_u32(),
        )],
        ..Default::default()
    };
    assert_eq!(
        signature_scheme(Some(&by_name), &pss).unwrap(),
        SignatureScheme::RsaPkcs1v15(HashAlgorithm::Sha384)
    );
    // An RSA key without a padding says what is missing.
    let bare = rsa_key_with_parameters(vec![]);
    assert!(matches!(
        signature_scheme(None, &bare),
        Err(OpError::MissingData(_))
    ));
    let ed = key(
        ObjectKind::PrivateKey,
        alg(CryptographicAlgorithm::Ed25519, None),
    );
    assert_eq!(
        signature_scheme(None, &ed).unwrap(),
        SignatureScheme::Ed25519
    );
}

fn oaep(hash: HashAlgorithm, mgf1_hash: HashAlgorithm, label: &[u8]) -> RsaPadding {
    RsaPadding::Oaep(OaepParams {
        hash,
        mgf1_hash,
        label: label.to_vec(),
    })
}

#[test]
fn oaep_defaults_to_sha1_and_mgf1_over_the_oaep_hash() {
    let oaep_only =
        rsa_key_with_parameters(vec![e(tags::PADDING_METHOD, PaddingMethod::Oaep.to_u32())]);
    assert_eq!(
        rsa_padding(None, &oaep_only).unwrap(),
        oaep(HashAlgorithm::Sha1, HashAlgorithm::Sha1, b"")
    );
    let sha256 = rsa_key_with_parameters(vec![
        e(tags::PADDING_METHOD, PaddingMethod::Oaep.to_u32()),
        e(tags::HASHING_ALGORITHM, HashingAlgorithm::Sha256.to_u32()),
    ]);
    assert_eq!(
        rsa_padding(None, &sha256).unwrap(),
        oaep(HashAlgorithm::Sha256, HashAlgorithm::Sha256, b"")
    );
    let none = rsa_key_with_parameters(vec![]);
    assert!(matches!(
        rsa_padding(None, &none),
        Err(OpError::MissingData(_))
    ));
}

#[test]
fn oaep_takes_its_mgf1_hash_and_label_from_the_key_or_the_request() {
    let stored = rsa_key_with_parameters(vec![
        e(tags::PADDING_METHOD, PaddingMethod::Oaep.to_u32()),
        e(tags::HASHING_ALGORITHM, HashingAlgorithm::Sha384.to_u32()),
        e(tags::MASK_GENERATOR, MGF1),
        e(
            tags::MASK_GENERATOR_HASHING_ALGORITHM,
            HashingAlgorithm::Sha256.to_u32(),
        ),
        Ttlv::new(
            tags::PSOURCE,
            Value::ByteString(Bytes::from_static(b"label")),
        ),
    ]);
    assert_eq!(
        rsa_padding(None, &stored).unwrap(),
        oaep(HashAlgorithm::Sha384, HashAlgorithm::Sha256, b"label")
    );
    // The request's fields override the key's.
    let given = CryptographicParameters {
        other: vec![
            e(
                tags::MASK_GENERATOR_HASHING_ALGORITHM,
                HashingAlgorithm::Sha224.to_u32(),
            ),
            Ttlv::new(
                tags::PSOURCE,
                Value::ByteString(Bytes::from_static(b"other")),
            ),
        ],
        ..Default::default()
    };
    assert_eq!(
        rsa_padding(Some(&given), &stored).unwrap(),
        oaep(HashAlgorithm::Sha384, HashAlgorithm::Sha224, b"other")
    );
}

#[test]
fn oaep_refuses_other_mask_generators_and_bad_labels() {
    let with = |extra: Ttlv| {
        rsa_key_with_parameters(vec![
            e(tags::PADDING_METHOD, PaddingMethod::Oaep.to_u32()),
            extra,
        ])
    };
    let bad = [
        e(tags::MASK_GENERATOR, 2),
        e(
            tags::MASK_GENERATOR_HASHING_ALGORITHM,
            HashingAlgorithm::Md5.to_u32(),
        ),
        Ttlv::new(tags::PSOURCE, Value::TextString("label".into())),
        Ttlv::new(
            tags::PSOURCE,
            Value::ByteString(Bytes::from(vec![0u8; soft::MAX_OAEP_LABEL + 1])),
        ),
    ];
    for extra in bad {
        assert!(
            matches!(
                rsa_padding(None, &with(extra.clone())),
                Err(OpError::BadCryptoParameters(_))
            ),
            "{extra:?}"
        );
    }
    let longest = with(Ttlv::new(
        tags::PSOURCE,
        Value::ByteString(Bytes::from(vec![0u8; soft::MAX_OAEP_LABEL])),
    ));
    assert!(rsa_padding(None, &longest).is_ok());
}

#[test]
fn registered_keys_are_stored_canonical_and_served_in_the_format_asked() {
    let pair = kmip_backends::asym::public_to_pkcs1(&generated_spki()).unwrap();
    let stored = stored_material(
        ObjectType::PublicKey,
        KeyFormatType::Pkcs1,
        Zeroizing::new(pair.clone()),
    )
    .unwrap();
    assert_ne!(&stored[..], &pair[..], "stored as SubjectPublicKeyInfo");
    let (format, served) = served_material(
        ObjectKind::PublicKey,
        KeyFormatType::Pkcs1,
        None,
        stored.clone(),
    )
    .unwrap();
    assert_eq!((format, &served[..]), (KeyFormatType::Pkcs1, &pair[..]));
    let (format, served) = served_material(
        ObjectKind::PublicKey,
        KeyFormatType::Pkcs1,
        Some(KeyFormatType::X509),
        stored.clone(),
    )
    .unwrap();
    assert_eq!((format, &served[..]), (KeyFormatType::X509, &stored[..]));
    // Transparent on request, and registered from that form, the same stored key.
    let (format, transparent) = served_material(
        ObjectKind::PublicKey,
        KeyFormatType::Pkcs1,
        Some(KeyFormatType::TransparentRsaPublicKey),
        stored.clone(),
    )
    .unwrap();
    assert_eq!(format, KeyFormatType::TransparentRsaPublicKey);
    let again = stored_material(
        ObjectType::PublicKey,
        KeyFormatType::TransparentRsaPublicKey,
        transparent,
    )
    .unwrap();
    assert_eq!(again, stored);
    // An RSA key has no EC form.
    assert!(matches!(
        served_material(
            ObjectKind::PublicKey,
            KeyFormatType::Pkcs1,
            Some(KeyFormatType::TransparentEcPublicKey),
            stored
        ),
        Err(OpError::KeyFormatNotSupported)
    ));
    assert!(matches!(
        stored_material(
            ObjectType::PrivateKey,
            KeyFormatType::Pkcs8,
            Zeroizing::new(b"not a key".to_vec())
        ),
        Err(OpError::InvalidField(_))
    ));
}

/// A SubjectPublicKeyInfo of a real RSA key (the OASIS CS-AC-M-2 public key).
fn generated_spki() -> Vec<u8> {
    let pkcs1 = hex::decode(concat!(
        "3082010a0282010100ab7f161c0042496ccd6c6d4dadb919973435357776003acf54b7af1e440afb80b6",
        "4a8755f8002cfeba6b184540a2d66086d74648346d75b8d71812b205387c0f6583bc4d7dc7ec114f3b17",
        "6b7957c422e7d03fc6267fa2a6f89b9bee9e60a1d7c2d833e5a5f4bb0b1434f4e795a41100f8aa214900",
        "df8b65089f98135b1c67b701675abdbc7d5721aac9d14a7f081fcec80b64e8a0ecc8295353c795328abf",
        "70e1b42e7bb8b7f4e8ac8c810cdb66e3d21126eba8da7d0ca34142cb76f91f013da809e9c1b7ae64c541",
        "30fbc21d80e9c2cb06c5c8d7cce8946a9ac99b1c2815c3612a29a82d73a1f99374fe30e54951662a6eda",
        "29c6fc411335d5dc7426b0f6050203010001",
    ))
    .unwrap();
    kmip_backends::asym::public_to_spki(&pkcs1).unwrap()
}
