use super::*;

fn refused(reason: ResultReason) -> CallError {
    CallError::Refused {
        reason: Some(reason),
        message: Some("upstream detail".into()),
    }
}

#[test]
fn upstream_failures_become_backend_errors_without_the_upstream_message() {
    let e = backend_error(
        "kms1:5696",
        "Get",
        "gw-uid",
        refused(ResultReason::ItemNotFound),
    );
    assert!(
        matches!(e, BackendError::NotFound(ref u) if u == "gw-uid"),
        "{e:?}"
    );
    for gone in [ResultReason::ObjectNotFound, ResultReason::ObjectDestroyed] {
        let e = backend_error("kms1:5696", "Get", "gw-uid", refused(gone));
        assert!(matches!(e, BackendError::NotFound(_)), "{gone:?}: {e:?}");
    }
    let e = backend_error(
        "kms1:5696",
        "Decrypt",
        "gw-uid",
        refused(ResultReason::CryptographicFailure),
    );
    assert!(
        matches!(
            e,
            BackendError::Call {
                class: FailureClass::Crypto,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.to_string().contains("upstream detail"), "{e}");
    for unsupported in [
        ResultReason::FeatureNotSupported,
        ResultReason::OperationNotSupported,
    ] {
        let e = backend_error("kms1:5696", "Create", "gw-uid", refused(unsupported));
        assert!(matches!(e, BackendError::Unsupported(_)), "{e:?}");
        assert!(!e.to_string().contains("upstream detail"), "{e}");
    }
    let e = backend_error(
        "kms1:5696",
        "Encrypt",
        "gw-uid",
        CallError::Untranslatable("no Authenticated Encryption Tag".into()),
    );
    assert!(
        matches!(e, BackendError::Unsupported(ref m) if m.contains("Encryption Tag")),
        "{e:?}"
    );
    let e = backend_error(
        "kms1:5696",
        "Get",
        "gw-uid",
        CallError::Transport("connection refused".into()),
    );
    assert!(
        matches!(e, BackendError::Unavailable(ref m) if m.contains("kms1:5696")),
        "{e:?}"
    );
}

#[test]
fn cipher_modes_map_to_cryptographic_parameters() {
    let p = cipher_parameters(CipherMode::Gcm { tag_len: 16 });
    assert_eq!(p.block_cipher_mode, Some(BlockCipherMode::Gcm));
    assert_eq!(p.tag_length, Some(16));
    assert_eq!(p.padding_method, None);
    let p = cipher_parameters(CipherMode::Cbc { pad: true });
    assert_eq!(p.padding_method, Some(PaddingMethod::Pkcs5));
    let p = cipher_parameters(CipherMode::Ecb { pad: false });
    assert_eq!(p.block_cipher_mode, Some(BlockCipherMode::Ecb));
    assert_eq!(p.padding_method, Some(PaddingMethod::None));
}

#[test]
fn signature_schemes_and_rsa_paddings_map_to_cryptographic_parameters() {
    let p = sign_parameters(SignatureScheme::RsaPss(HashAlgorithm::Sha256));
    assert_eq!(p.cryptographic_algorithm, Some(CryptographicAlgorithm::Rsa));
    assert_eq!(p.padding_method, Some(PaddingMethod::Pss));
    assert_eq!(p.hashing_algorithm, Some(HashingAlgorithm::Sha256));
    let p = sign_parameters(SignatureScheme::Ecdsa(HashAlgorithm::Sha384));
    assert_eq!(
        p.cryptographic_algorithm,
        Some(CryptographicAlgorithm::Ecdsa)
    );
    assert_eq!(p.padding_method, None);
    let p = rsa_parameters(&RsaPadding::Pkcs1v15);
    assert_eq!(p.padding_method, Some(PaddingMethod::Pkcs1V15));
    assert!(p.other.is_empty());
    // OAEP's defaults are left to the upstream; what differs is sent.
    let oaep = |mgf1_hash, label: &[u8]| {
        rsa_parameters(&RsaPadding::Oaep(soft::OaepParams {
            hash: HashAlgorithm::Sha256,
            mgf1_hash,
            label: label.to_vec(),
        }))
    };
    let p = oaep(HashAlgorithm::Sha256, b"");
    assert_eq!(p.hashing_algorithm, Some(HashingAlgorithm::Sha256));
    assert!(p.other.is_empty());
    let p = oaep(HashAlgorithm::Sha1, b"context");
    let tags_of: Vec<_> = p.other.iter().map(|t| t.tag).collect();
    assert_eq!(
        tags_of,
        [tags::MASK_GENERATOR_HASHING_ALGORITHM, tags::PSOURCE]
    );
}

#[test]
fn upstream_keys_are_read_back_as_pkcs8_and_spki() {
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let pair = (
        key.serialize_der(),
        rcgen::PublicKeyData::subject_public_key_info(&key),
    );
    let pkcs1 = soft::private_to_pkcs1(&pair.0).unwrap();
    let block = |format, bytes: &[u8]| KeyBlock {
        key_format_type: format,
        ..KeyBlock::raw(SecretBytes::from_slice(bytes), None, None)
    };
    let got = material(
        "k",
        ManagedObject::PrivateKey(block(KeyFormatType::Pkcs1, &pkcs1)),
        None,
    )
    .unwrap();
    assert_eq!(got.as_slice(), pair.0.as_slice());
    let spki_pkcs1 = soft::public_to_pkcs1(&pair.1).unwrap();
    let got = material(
        "k",
        ManagedObject::PublicKey(block(KeyFormatType::Pkcs1, &spki_pkcs1)),
        None,
    )
    .unwrap();
    assert_eq!(got.as_slice(), pair.1.as_slice());
    // A Transparent RSA Public Key (as some key managers answer) converts too.
    let (n, e) = soft::numbers::rsa_public_numbers(&pair.1).unwrap();
    let big = |tag, b: &[u8]| {
        // Two's complement, a multiple of 8 bytes: a leading zero keeps it positive.
        let mut v = vec![0u8; 8 - b.len() % 8];
        v.extend_from_slice(b);
        Ttlv::new(tag, Value::BigInteger(Bytes::from(v)))
    };
    let structure = Ttlv::structure(
        tags::KEY_MATERIAL,
        vec![big(tags::MODULUS, &n), big(tags::PUBLIC_EXPONENT, &e)],
    );
    let transparent = KeyBlock {
        key_format_type: KeyFormatType::TransparentRsaPublicKey,
        key_value: KeyValue::Transparent(SecretTtlv(structure)),
        ..KeyBlock::raw(SecretBytes::from_slice(b""), None, None)
    };
    let got = material("k", ManagedObject::PublicKey(transparent), None).unwrap();
    assert_eq!(got.as_slice(), pair.1.as_slice());
}

#[test]
fn registered_keys_go_upstream_as_pkcs8_spki_or_their_byte_format() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let facts = |format| KeyFacts {
        algorithm: Some(CryptographicAlgorithm::Ec),
        length: Some(256),
        format,
    };
    let block = asymmetric_block(
        ObjectKind::PrivateKey,
        &key.serialize_der(),
        facts(Some(KeyFormatType::Pkcs8)),
    )
    .unwrap();
    assert_eq!(block.key_format_type, KeyFormatType::Pkcs8);
    assert_eq!(block.cryptographic_length, Some(256));
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let block = asymmetric_block(ObjectKind::PublicKey, &spki, facts(None)).unwrap();
    assert_eq!(block.key_format_type, KeyFormatType::X509);
    assert_eq!(
        block.key_value,
        KeyValue::Material(SecretBytes::from_slice(&spki))
    );
    // Bytes in another format go as they are; a Transparent structure's are refused.
    let raw = asymmetric_block(
        ObjectKind::PublicKey,
        b"\x04point",
        facts(Some(KeyFormatType::Raw)),
    )
    .unwrap();
    assert_eq!(raw.key_format_type, KeyFormatType::Raw);
    for format in [Some(KeyFormatType::TransparentEcPublicKey), None] {
        assert!(asymmetric_block(ObjectKind::PublicKey, b"\x42", facts(format)).is_err());
    }
}

#[test]
fn a_wrapped_get_names_the_wrapping_key_and_mode_and_its_answer_must_be_wrapped() {
    let RequestPayload::Get(get) = wrapped_get("up-1", KeyFormatType::Raw, "up-kek", true) else {
        panic!("not a Get");
    };
    assert_eq!(get.unique_identifier.as_deref(), Some("up-1"));
    assert_eq!(get.key_format_type, Some(KeyFormatType::Raw));
    let spec = get
        .key_wrapping_specification
        .expect("a wrapping specification");
    let info = spec
        .child(tags::ENCRYPTION_KEY_INFORMATION)
        .expect("key info");
    assert_eq!(
        info.child(tags::UNIQUE_IDENTIFIER).and_then(Ttlv::as_text),
        Some("up-kek")
    );
    assert_eq!(
        info.child(tags::CRYPTOGRAPHIC_PARAMETERS)
            .and_then(|p| p.child(tags::BLOCK_CIPHER_MODE))
            .and_then(Ttlv::as_enum),
        Some(BlockCipherMode::AesKeyWrapPadding.to_u32())
    );
    let clear =
        ManagedObject::SymmetricKey(KeyBlock::raw(SecretBytes::from_slice(&[7; 32]), None, None));
    assert!(matches!(
        wrapped_bytes("gw-1", clear),
        Err(BackendError::Crypto(_))
    ));
    assert_eq!(
        wrap_format("gw-1", ObjectKind::PrivateKey).unwrap(),
        KeyFormatType::Pkcs8
    );
    assert!(wrap_format("gw-1", ObjectKind::Certificate).is_err());
}
