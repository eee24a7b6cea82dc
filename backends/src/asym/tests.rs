use super::*;

const ALL: [KeyPairAlgorithm; 4] = [
    KeyPairAlgorithm::Rsa { bits: 2048 },
    KeyPairAlgorithm::EcP256,
    KeyPairAlgorithm::EcP384,
    KeyPairAlgorithm::Ed25519,
];

fn scheme_for(alg: KeyPairAlgorithm) -> SignatureScheme {
    match alg {
        KeyPairAlgorithm::Rsa { .. } => SignatureScheme::RsaPss(HashAlgorithm::Sha256),
        KeyPairAlgorithm::EcP256 => SignatureScheme::Ecdsa(HashAlgorithm::Sha256),
        KeyPairAlgorithm::EcP384 => SignatureScheme::Ecdsa(HashAlgorithm::Sha384),
        KeyPairAlgorithm::EcP521 => SignatureScheme::Ecdsa(HashAlgorithm::Sha512),
        KeyPairAlgorithm::Ed25519 => SignatureScheme::Ed25519,
    }
}

#[test]
fn generated_pairs_sign_and_verify() {
    for alg in ALL {
        let pair = generate_pair(alg).unwrap();
        let scheme = scheme_for(alg);
        let sig = sign(&pair.private_pkcs8, scheme, b"message").unwrap();
        assert!(
            verify(&pair.public_spki, scheme, b"message", &sig).unwrap(),
            "{alg:?}"
        );
        assert!(
            !verify(&pair.public_spki, scheme, b"messagf", &sig).unwrap(),
            "{alg:?}"
        );
    }
}

#[test]
fn rsa_pkcs1_v15_signatures_are_deterministic_and_verify() {
    let pair = generate_pair(KeyPairAlgorithm::Rsa { bits: 2048 }).unwrap();
    let scheme = SignatureScheme::RsaPkcs1v15(HashAlgorithm::Sha384);
    let a = sign(&pair.private_pkcs8, scheme, b"m").unwrap();
    assert_eq!(a, sign(&pair.private_pkcs8, scheme, b"m").unwrap());
    assert!(verify(&pair.public_spki, scheme, b"m", &a).unwrap());
}

#[test]
fn a_scheme_of_another_key_type_is_refused() {
    let pair = generate_pair(KeyPairAlgorithm::EcP256).unwrap();
    let err = sign(
        &pair.private_pkcs8,
        SignatureScheme::RsaPss(HashAlgorithm::Sha256),
        b"m",
    );
    assert!(matches!(err, Err(BackendError::InvalidInput(_))));
}

#[test]
fn unsupported_rsa_sizes_are_refused() {
    assert!(generate_pair(KeyPairAlgorithm::Rsa { bits: 1024 }).is_err());
}

#[test]
fn rsa_encryption_round_trips_with_each_padding() {
    let pair = generate_pair(KeyPairAlgorithm::Rsa { bits: 2048 }).unwrap();
    for padding in [
        RsaPadding::Oaep(HashAlgorithm::Sha1),
        RsaPadding::Oaep(HashAlgorithm::Sha256),
        RsaPadding::Oaep(HashAlgorithm::Sha512),
        RsaPadding::Pkcs1v15,
    ] {
        let ct = encrypt(&pair.public_spki, padding, b"secret").unwrap();
        assert_eq!(ct.len(), 256);
        let pt = decrypt(&pair.private_pkcs8, padding, &ct).unwrap();
        assert_eq!(&pt[..], b"secret", "{padding:?}");
    }
    let ct = encrypt(
        &pair.public_spki,
        RsaPadding::Oaep(HashAlgorithm::Sha256),
        b"x",
    )
    .unwrap();
    let wrong = decrypt(
        &pair.private_pkcs8,
        RsaPadding::Oaep(HashAlgorithm::Sha1),
        &ct,
    );
    assert!(matches!(wrong, Err(BackendError::IntegrityCheckFailed)));
    assert!(encrypt(&pair.public_spki, RsaPadding::Pkcs1v15, &[0u8; 300]).is_err());
}

#[test]
fn pkcs1_forms_convert_both_ways() {
    let pair = generate_pair(KeyPairAlgorithm::Rsa { bits: 2048 }).unwrap();
    let private1 = private_to_pkcs1(&pair.private_pkcs8).unwrap();
    let public1 = public_to_pkcs1(&pair.public_spki).unwrap();
    assert_ne!(&private1[..], &pair.private_pkcs8[..]);
    // Back from PKCS#1, the keys still work together.
    let pkcs8 = private_to_pkcs8(&private1).unwrap();
    let spki = public_to_spki(&public1).unwrap();
    assert_eq!(spki, pair.public_spki);
    let scheme = SignatureScheme::RsaPss(HashAlgorithm::Sha256);
    let sig = sign(&pkcs8, scheme, b"m").unwrap();
    assert!(verify(&spki, scheme, b"m", &sig).unwrap());
    // Already canonical forms pass through; EC keys have no PKCS#1 form.
    assert_eq!(
        &private_to_pkcs8(&pair.private_pkcs8).unwrap()[..],
        &pair.private_pkcs8[..]
    );
    let ec = generate_pair(KeyPairAlgorithm::EcP256).unwrap();
    assert!(public_to_pkcs1(&ec.public_spki).is_err());
    assert!(private_to_pkcs8(b"not a key").is_err());
}
