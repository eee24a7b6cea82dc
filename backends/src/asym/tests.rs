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

const HASHES: [HashAlgorithm; 5] = [
    HashAlgorithm::Sha1,
    HashAlgorithm::Sha224,
    HashAlgorithm::Sha256,
    HashAlgorithm::Sha384,
    HashAlgorithm::Sha512,
];

fn oaep(hash: HashAlgorithm, mgf1_hash: HashAlgorithm, label: &[u8]) -> RsaPadding {
    RsaPadding::Oaep(OaepParams {
        hash,
        mgf1_hash,
        label: label.to_vec(),
    })
}

#[test]
fn rsa_encryption_round_trips_with_pkcs1_v15() {
    let pair = generate_pair(KeyPairAlgorithm::Rsa { bits: 2048 }).unwrap();
    let ct = encrypt(&pair.public_spki, &RsaPadding::Pkcs1v15, b"secret").unwrap();
    assert_eq!(ct.len(), 256);
    let pt = decrypt(&pair.private_pkcs8, &RsaPadding::Pkcs1v15, &ct).unwrap();
    assert_eq!(&pt[..], b"secret");
    assert!(encrypt(&pair.public_spki, &RsaPadding::Pkcs1v15, &[0u8; 300]).is_err());
}

#[test]
fn oaep_round_trips_with_every_hash_pair_and_a_label() {
    let pair = generate_pair(KeyPairAlgorithm::Rsa { bits: 2048 }).unwrap();
    for hash in HASHES {
        for mgf1_hash in HASHES {
            for label in [&b""[..], b"context label"] {
                let padding = oaep(hash, mgf1_hash, label);
                let ct = encrypt(&pair.public_spki, &padding, b"secret").unwrap();
                assert_eq!(ct.len(), 256);
                let pt = decrypt(&pair.private_pkcs8, &padding, &ct).unwrap();
                assert_eq!(&pt[..], b"secret", "{padding:?}");
            }
        }
    }
}

#[test]
fn oaep_takes_the_longest_message_the_key_allows_and_no_longer() {
    let pair = generate_pair(KeyPairAlgorithm::Rsa { bits: 2048 }).unwrap();
    // 256 - 2 * 64 - 2 bytes under SHA-512 (RFC 8017 §7.1.1).
    let padding = oaep(HashAlgorithm::Sha512, HashAlgorithm::Sha1, b"");
    let longest = [7u8; 126];
    let ct = encrypt(&pair.public_spki, &padding, &longest).unwrap();
    assert_eq!(
        &decrypt(&pair.private_pkcs8, &padding, &ct).unwrap()[..],
        &longest[..]
    );
    assert!(matches!(
        encrypt(&pair.public_spki, &padding, &[7u8; 127]),
        Err(BackendError::InvalidInput(_))
    ));
}

/// A name's hex value from the OASIS vector fixture.
fn fixture(name: &str) -> Vec<u8> {
    let text = include_str!("testdata/oaep-sha384-mgf1-sha256.txt");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(" = "))
        .unwrap();
    hex::decode(line).unwrap()
}

fn vector_key() -> Zeroizing<Vec<u8>> {
    private_to_pkcs8(&fixture("key")).unwrap()
}

#[test]
fn oaep_decrypts_the_oasis_vectors_with_mgf1_apart_and_a_label() {
    let key = vector_key();
    let plain = oaep(HashAlgorithm::Sha384, HashAlgorithm::Sha256, b"");
    let pt = decrypt(&key, &plain, &fixture("ciphertext")).unwrap();
    assert_eq!(&pt[..], &fixture("plaintext")[..]);
    let labelled = oaep(
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha256,
        &fixture("label"),
    );
    let pt = decrypt(&key, &labelled, &fixture("labelled_ciphertext")).unwrap();
    assert_eq!(&pt[..], &fixture("labelled_plaintext")[..]);
}

#[test]
fn oaep_refuses_tampering_a_wrong_label_and_wrong_hashes_alike() {
    let key = vector_key();
    let padding = oaep(
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha256,
        &fixture("label"),
    );
    let ct = fixture("labelled_ciphertext");
    let mut tampered = ct.clone();
    tampered[100] ^= 1;
    let short = &ct[..ct.len() - 1];
    let wrong_label = oaep(
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha256,
        b"Kilroy was not here",
    );
    let no_label = oaep(HashAlgorithm::Sha384, HashAlgorithm::Sha256, b"");
    let equal_hashes = oaep(
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha384,
        &fixture("label"),
    );
    for (padding, ct) in [
        (&padding, &tampered[..]),
        (&padding, short),
        (&wrong_label, &ct[..]),
        (&no_label, &ct[..]),
        (&equal_hashes, &ct[..]),
    ] {
        // One error for every cause: which check failed is not told.
        assert!(
            matches!(
                decrypt(&key, padding, ct),
                Err(BackendError::IntegrityCheckFailed)
            ),
            "{padding:?}"
        );
    }
}

#[test]
fn oaep_refuses_keys_that_are_not_rsa_or_not_whole() {
    let rsa = generate_pair(KeyPairAlgorithm::Rsa { bits: 2048 }).unwrap();
    let ec = generate_pair(KeyPairAlgorithm::EcP256).unwrap();
    let padding = oaep(HashAlgorithm::Sha256, HashAlgorithm::Sha256, b"");
    assert!(matches!(
        encrypt(&ec.public_spki, &padding, b"x"),
        Err(BackendError::InvalidInput(_))
    ));
    assert!(matches!(
        decrypt(&ec.private_pkcs8, &padding, &[0u8; 256]),
        Err(BackendError::InvalidInput(_))
    ));
    let mut trailing = rsa.public_spki.clone();
    trailing.push(0);
    assert!(matches!(
        encrypt(&trailing, &padding, b"x"),
        Err(BackendError::InvalidInput(_))
    ));
    // A public key is not a private one, nor the reverse.
    assert!(decrypt(&rsa.public_spki, &padding, &[0u8; 256]).is_err());
    assert!(encrypt(&rsa.private_pkcs8, &padding, b"x").is_err());
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

/// The PKCS#1 public key and a PSS-SHA256 signature (largest salt) of OASIS vector CS-AC-M-2.
const OASIS_PUBLIC_PKCS1: [&str; 7] = [
    "3082010a0282010100ab7f161c0042496ccd6c6d4dadb919973435357776003acf54b7af1e440afb80b64a87",
    "55f8002cfeba6b184540a2d66086d74648346d75b8d71812b205387c0f6583bc4d7dc7ec114f3b176b7957c4",
    "22e7d03fc6267fa2a6f89b9bee9e60a1d7c2d833e5a5f4bb0b1434f4e795a41100f8aa214900df8b65089f98",
    "135b1c67b701675abdbc7d5721aac9d14a7f081fcec80b64e8a0ecc8295353c795328abf70e1b42e7bb8b7f4",
    "e8ac8c810cdb66e3d21126eba8da7d0ca34142cb76f91f013da809e9c1b7ae64c54130fbc21d80e9c2cb06c5",
    "c8d7cce8946a9ac99b1c2815c3612a29a82d73a1f99374fe30e54951662a6eda29c6fc411335d5dc7426b0f6",
    "050203010001",
];
const OASIS_PSS_SIGNATURE: [&str; 6] = [
    "2925ebf8c6c9d0585c36a44491dd28f8ffd1098d2275a505a0eba7af452e9496472fd5c4a515d1c0db16c7c5",
    "9ef76863b571cbf498fb8178ffeb75667e6e51b9b9bbf09d55bba54b42acb947aa5a81dc62751727d7cad461",
    "6c0c0bf1dd666f8266f24262c5fa9cbbdc424ef5f5e345e633d111e66eb4afc4001bb02e158b2d5d4573c614",
    "655f21a688bee0e9dbde6a58324c08f42ae69697e0c51803f9de6b3df242d2915d9b1a8110ad28143ab7855e",
    "f92ede48971b484172de3b0b8957f493a74b3372ee2200f2233607735f90d0b180968ab20d74841fd3dba4fb",
    "1f225ea5c6c87f99c2a238db72a536e68be202a092cd032337d451477e568f9a48b638cb",
];

#[test]
fn pss_signatures_with_the_largest_salt_verify() {
    let spki = public_to_spki(&hex::decode(OASIS_PUBLIC_PKCS1.concat()).unwrap()).unwrap();
    let mut sig = hex::decode(OASIS_PSS_SIGNATURE.concat()).unwrap();
    let data = hex::decode("01020304050607080910111213141516").unwrap();
    let scheme = SignatureScheme::RsaPss(HashAlgorithm::Sha256);
    assert!(verify(&spki, scheme, &data, &sig).unwrap());
    sig[0] ^= 0xff;
    assert!(!verify(&spki, scheme, &data, &sig).unwrap());
}

#[test]
fn rsa_numbers_rebuild_the_public_key() {
    let pair = generate_pair(KeyPairAlgorithm::Rsa { bits: 2048 }).unwrap();
    let numbers = rsa_private_numbers(&pair.private_pkcs8).unwrap();
    assert_eq!(numbers.len(), 8);
    assert_eq!(numbers[0].len(), 256);
    assert_eq!(
        rsa_spki(&numbers[0], &numbers[1]).unwrap(),
        pair.public_spki
    );
}
