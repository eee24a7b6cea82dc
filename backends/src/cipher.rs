//! Server-side Encrypt, Decrypt and MAC with key bytes the gateway holds (the vault's, and the
//! PostgreSQL backend's unsealed data), and the key facts both accept for generation and import.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use aws_lc_rs::cipher::{
    self, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext,
    PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::{constant_time, hmac, rand};
use zeroize::{Zeroize, Zeroizing};

use crate::{
    chacha, ctr, des3, gcm, key_wrap, BackendError, CipherMode, CipherOutput, CipherRequest,
    KeyAlgorithm, KeySpec, MacAlgorithm,
};

/// Smallest HMAC-SHA256 key generated (bits): below this a MAC key is weaker than the tag.
const HMAC_MIN_BITS: u32 = 128;
/// Largest HMAC-SHA256 key generated (bits): one SHA-256 block; longer keys are hashed anyway.
const HMAC_MAX_BITS: u32 = 512;
/// The keys an HMAC may use: any secret bytes are an HMAC key, so an AES key whose KMIP
/// Cryptographic Parameters name an HMAC is one too (the gateway checks those parameters).
pub(crate) const MAC_KEYS: [KeyAlgorithm; 2] = [KeyAlgorithm::HmacSha256, KeyAlgorithm::Aes];
/// The keys Encrypt and Decrypt may use.
pub(crate) const CIPHER_KEYS: [KeyAlgorithm; 3] = [
    KeyAlgorithm::Aes,
    KeyAlgorithm::TripleDes,
    KeyAlgorithm::ChaCha20,
];

/// Encrypts with a key of `algorithm` (a key whose algorithm is not recorded is AES).
pub(crate) fn encrypt_with(
    algorithm: Option<KeyAlgorithm>,
    key: &[u8],
    req: CipherRequest,
) -> Result<CipherOutput, BackendError> {
    match algorithm {
        Some(KeyAlgorithm::TripleDes) => des3::encrypt(key, req),
        Some(KeyAlgorithm::ChaCha20) => chacha::encrypt(key, req),
        _ => encrypt(key, req),
    }
}

/// Decrypts with a key of `algorithm`, as [`encrypt_with`].
pub(crate) fn decrypt_with(
    algorithm: Option<KeyAlgorithm>,
    key: &[u8],
    req: CipherRequest,
) -> Result<CipherOutput, BackendError> {
    match algorithm {
        Some(KeyAlgorithm::TripleDes) => des3::decrypt(key, req),
        Some(KeyAlgorithm::ChaCha20) => chacha::decrypt(key, req),
        _ => decrypt(key, req),
    }
}

/// AES key lengths (bits).
const AES_BITS: [u32; 3] = [128, 192, 256];

/// The key length in bytes `spec` asks a generation for, if it is supported.
pub(crate) fn key_len(spec: &KeySpec) -> Result<usize, BackendError> {
    let ok = match spec.algorithm {
        KeyAlgorithm::Aes => AES_BITS.contains(&spec.bits),
        KeyAlgorithm::HmacSha256 => {
            spec.bits.is_multiple_of(8) && (HMAC_MIN_BITS..=HMAC_MAX_BITS).contains(&spec.bits)
        }
        KeyAlgorithm::TripleDes => spec.bits as usize == des3::KEY_LEN * 8,
        KeyAlgorithm::ChaCha20 => spec.bits as usize == chacha::KEY_LEN * 8,
    };
    if !ok {
        return Err(BackendError::InvalidInput(format!(
            "{:?} keys of {} bits are not supported",
            spec.algorithm, spec.bits
        )));
    }
    Ok(spec.bits as usize / 8)
}

/// Whether imported `material` is the key `spec` declares.
pub(crate) fn check_import(material: &[u8], spec: &KeySpec) -> Result<(), BackendError> {
    let expected_bits = material.len() as u64 * 8;
    let fits = match spec.algorithm {
        KeyAlgorithm::Aes => AES_BITS.contains(&spec.bits),
        KeyAlgorithm::HmacSha256 => spec.bits > 0,
        KeyAlgorithm::TripleDes => spec.bits as usize == des3::KEY_LEN * 8,
        KeyAlgorithm::ChaCha20 => spec.bits as usize == chacha::KEY_LEN * 8,
    };
    if !fits || u64::from(spec.bits) != expected_bits {
        return Err(BackendError::InvalidInput(format!(
            "{expected_bits}-bit material does not match a {:?} key of {} bits",
            spec.algorithm, spec.bits
        )));
    }
    Ok(())
}

/// GCM tag lengths SP 800-38D allows (bytes); shorter tags weaken authentication.
const GCM_TAG_LENS: [usize; 7] = [4, 8, 12, 13, 14, 15, 16];
/// AES block (and CBC IV) length in bytes.
const AES_BLOCK_LEN: usize = 16;
/// The full GCM tag, the only length aws-lc-rs verifies directly.
const GCM_FULL_TAG_LEN: usize = aead::MAX_TAG_LEN;

/// The AES variants for one key length.
struct Aes {
    block: &'static cipher::Algorithm,
    gcm: &'static aead::Algorithm,
}

fn aes_for(key: &[u8]) -> Result<Aes, BackendError> {
    match key.len() {
        16 => Ok(Aes {
            block: &cipher::AES_128,
            gcm: &aead::AES_128_GCM,
        }),
        24 => Ok(Aes {
            block: &cipher::AES_192,
            gcm: &aead::AES_192_GCM,
        }),
        32 => Ok(Aes {
            block: &cipher::AES_256,
            gcm: &aead::AES_256_GCM,
        }),
        n => Err(BackendError::InvalidInput(format!(
            "a {}-bit key is not an AES key",
            n * 8
        ))),
    }
}

fn crypto_failed(what: &str) -> BackendError {
    BackendError::Crypto(format!("{what} failed"))
}

fn random<const N: usize>() -> Result<[u8; N], BackendError> {
    let mut b = [0u8; N];
    rand::fill(&mut b).map_err(|_| crypto_failed("random generation"))?;
    Ok(b)
}

fn fixed<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], BackendError> {
    v.try_into().map_err(|_| {
        BackendError::InvalidInput(format!("{what} must be {N} bytes, got {}", v.len()))
    })
}

fn check_tag_len(tag_len: usize) -> Result<(), BackendError> {
    if GCM_TAG_LENS.contains(&tag_len) {
        Ok(())
    } else {
        Err(BackendError::InvalidInput(format!(
            "GCM tag length {tag_len} is not one of {GCM_TAG_LENS:?} bytes"
        )))
    }
}

/// Copies `data` into a buffer with room for `extra` more bytes, so padding never makes the
/// vector reallocate and leave an unwiped copy of the plaintext behind.
fn with_headroom(data: &[u8], extra: usize) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(Vec::with_capacity(data.len() + extra));
    v.extend_from_slice(data);
    v
}

fn check_block_multiple(len: usize) -> Result<(), BackendError> {
    if len.is_multiple_of(AES_BLOCK_LEN) {
        Ok(())
    } else {
        Err(BackendError::InvalidInput(format!(
            "data of {len} bytes is not a multiple of the {AES_BLOCK_LEN}-byte AES block"
        )))
    }
}

fn gcm_key(aes: &Aes, key: &[u8]) -> Result<LessSafeKey, BackendError> {
    Ok(LessSafeKey::new(
        UnboundKey::new(aes.gcm, key).map_err(|_| crypto_failed("AES-GCM key setup"))?,
    ))
}

fn block_key(aes: &Aes, key: &[u8]) -> Result<UnboundCipherKey, BackendError> {
    UnboundCipherKey::new(aes.block, key).map_err(|_| crypto_failed("AES key setup"))
}

fn encrypt(key: &[u8], req: CipherRequest) -> Result<CipherOutput, BackendError> {
    let aes = aes_for(key)?;
    match req.mode {
        CipherMode::ChaCha20 | CipherMode::ChaCha20Poly1305 { .. } => Err(not_a_chacha_key()),
        CipherMode::AesKeyWrap { pad } => key_wrap::wrap(key, &req, pad),
        CipherMode::Ctr => ctr::encrypt(key, req),
        CipherMode::Gcm { tag_len } => {
            check_tag_len(tag_len)?;
            let (nonce, generated_iv) = match &req.iv {
                Some(iv) if iv.len() != NONCE_LEN => {
                    let mut data = req.data;
                    let aad = req.aad.unwrap_or_default();
                    let tag = gcm::seal(key, iv, &aad, &mut data[..])?;
                    return Ok(CipherOutput {
                        data,
                        generated_iv: None,
                        tag: Some(tag[..tag_len].to_vec()),
                    });
                }
                Some(iv) => (fixed::<NONCE_LEN>(iv, "GCM nonce")?, None),
                None => {
                    let n = random::<NONCE_LEN>()?;
                    (n, Some(n.to_vec()))
                }
            };
            let mut data = req.data;
            let aad = req.aad.unwrap_or_default();
            let tag = gcm_key(&aes, key)?
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad.as_slice()),
                    &mut data[..],
                )
                .map_err(|_| crypto_failed("AES-GCM encryption"))?;
            Ok(CipherOutput {
                data,
                generated_iv,
                tag: Some(tag.as_ref()[..tag_len].to_vec()),
            })
        }
        CipherMode::Cbc { pad } => {
            let (iv, generated_iv) = match &req.iv {
                Some(iv) => (fixed::<AES_BLOCK_LEN>(iv, "CBC IV")?, None),
                None => {
                    let iv = random::<AES_BLOCK_LEN>()?;
                    (iv, Some(iv.to_vec()))
                }
            };
            let context = EncryptionContext::Iv128(FixedLength::from(iv));
            let data = block_encrypt(&aes, key, &req.data, pad, context, true)?;
            Ok(CipherOutput {
                data,
                generated_iv,
                tag: None,
            })
        }
        CipherMode::Ecb { pad } => {
            no_iv_for_ecb(&req)?;
            let data = block_encrypt(&aes, key, &req.data, pad, EncryptionContext::None, false)?;
            Ok(CipherOutput {
                data,
                generated_iv: None,
                tag: None,
            })
        }
    }
}

fn not_a_chacha_key() -> BackendError {
    BackendError::InvalidInput("an AES key does not encrypt with ChaCha20".into())
}

fn no_iv_for_ecb(req: &CipherRequest) -> Result<(), BackendError> {
    if req.iv.is_some() {
        return Err(BackendError::InvalidInput("ECB mode takes no IV".into()));
    }
    Ok(())
}

fn block_encrypt(
    aes: &Aes,
    key: &[u8],
    data: &[u8],
    pad: bool,
    context: EncryptionContext,
    cbc: bool,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let unbound = block_key(aes, key)?;
    let failed = |_| crypto_failed("AES encryption");
    if pad {
        let mut out = with_headroom(data, AES_BLOCK_LEN);
        let k = if cbc {
            PaddedBlockEncryptingKey::cbc_pkcs7(unbound)
        } else {
            PaddedBlockEncryptingKey::ecb_pkcs7(unbound)
        }
        .map_err(failed)?;
        k.less_safe_encrypt(&mut *out, context).map_err(failed)?;
        Ok(out)
    } else {
        check_block_multiple(data.len())?;
        let mut out = Zeroizing::new(data.to_vec());
        let k = if cbc {
            EncryptingKey::cbc(unbound)
        } else {
            EncryptingKey::ecb(unbound)
        }
        .map_err(failed)?;
        k.less_safe_encrypt(&mut out, context).map_err(failed)?;
        Ok(out)
    }
}

fn decrypt(key: &[u8], req: CipherRequest) -> Result<CipherOutput, BackendError> {
    let aes = aes_for(key)?;
    let data = match req.mode {
        CipherMode::ChaCha20 | CipherMode::ChaCha20Poly1305 { .. } => {
            return Err(not_a_chacha_key())
        }
        CipherMode::AesKeyWrap { pad } => return key_wrap::unwrap(key, &req, pad),
        CipherMode::Ctr => return ctr::decrypt(key, req),
        CipherMode::Gcm { tag_len } => gcm_decrypt(&aes, key, req, tag_len)?,
        CipherMode::Cbc { pad } => {
            let iv = req
                .iv
                .as_deref()
                .ok_or_else(|| BackendError::InvalidInput("CBC decryption needs the IV".into()))?;
            let context =
                DecryptionContext::Iv128(FixedLength::from(fixed::<AES_BLOCK_LEN>(iv, "CBC IV")?));
            block_decrypt(&aes, key, req.data, pad, context, true)?
        }
        CipherMode::Ecb { pad } => {
            no_iv_for_ecb(&req)?;
            block_decrypt(&aes, key, req.data, pad, DecryptionContext::None, false)?
        }
    };
    Ok(CipherOutput {
        data,
        generated_iv: None,
        tag: None,
    })
}

fn block_decrypt(
    aes: &Aes,
    key: &[u8],
    mut data: Zeroizing<Vec<u8>>,
    pad: bool,
    context: DecryptionContext,
    cbc: bool,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    check_block_multiple(data.len())?;
    let unbound = block_key(aes, key)?;
    if pad {
        if data.is_empty() {
            return Err(BackendError::InvalidInput(
                "padded ciphertext cannot be empty".into(),
            ));
        }
        let k = if cbc {
            PaddedBlockDecryptingKey::cbc_pkcs7(unbound)
        } else {
            PaddedBlockDecryptingKey::ecb_pkcs7(unbound)
        }
        .map_err(|_| crypto_failed("AES key setup"))?;
        // The only failure left for a block-aligned input is bad padding.
        let n = k
            .decrypt(&mut data[..], context)
            .map_err(|_| BackendError::IntegrityCheckFailed)?
            .len();
        data.truncate(n);
    } else {
        let k = if cbc {
            DecryptingKey::cbc(unbound)
        } else {
            DecryptingKey::ecb(unbound)
        }
        .map_err(|_| crypto_failed("AES key setup"))?;
        k.decrypt(&mut data[..], context)
            .map_err(|_| crypto_failed("AES decryption"))?;
    }
    Ok(data)
}

fn gcm_decrypt(
    aes: &Aes,
    key: &[u8],
    req: CipherRequest,
    tag_len: usize,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    check_tag_len(tag_len)?;
    let iv = req
        .iv
        .as_deref()
        .ok_or_else(|| BackendError::InvalidInput("GCM decryption needs the nonce".into()))?;
    let tag = req
        .tag
        .as_deref()
        .ok_or_else(|| BackendError::InvalidInput("GCM decryption needs the tag".into()))?;
    if tag.len() != tag_len {
        return Err(BackendError::InvalidInput(format!(
            "GCM tag is {} bytes but the mode says {tag_len}",
            tag.len()
        )));
    }
    let aad = req.aad.clone().unwrap_or_default();
    if iv.len() != NONCE_LEN {
        let mut data = req.data;
        if let Err(e) = gcm::open(key, iv, &aad, &mut data[..], tag) {
            data.zeroize();
            return Err(e);
        }
        return Ok(data);
    }
    let nonce = fixed::<NONCE_LEN>(iv, "GCM nonce")?;
    let tag = tag.to_vec();
    let gcm = gcm_key(aes, key)?;
    let mut data = req.data;
    if tag_len == GCM_FULL_TAG_LEN {
        let opened = gcm
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                &tag,
                &mut data[..],
            )
            .is_ok();
        if !opened {
            data.zeroize();
            return Err(BackendError::IntegrityCheckFailed);
        }
        return Ok(data);
    }
    // aws-lc-rs verifies full tags only. GCM with a 96-bit nonce is CTR starting at counter
    // block nonce||2, and the tag is deterministic: decrypt with CTR, recompute the full tag by
    // sealing the plaintext again, and compare its prefix in constant time.
    let mut counter = [0u8; AES_BLOCK_LEN];
    counter[..NONCE_LEN].copy_from_slice(&nonce);
    counter[AES_BLOCK_LEN - 1] = 2;
    DecryptingKey::ctr(block_key(aes, key)?)
        .map_err(|_| crypto_failed("AES key setup"))?
        .decrypt(
            &mut data[..],
            DecryptionContext::Iv128(FixedLength::from(counter)),
        )
        .map_err(|_| crypto_failed("AES-GCM decryption"))?;
    let mut scratch = Zeroizing::new(data.to_vec());
    let full = gcm
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_slice()),
            &mut scratch[..],
        )
        .map_err(|_| crypto_failed("AES-GCM tag computation"))?;
    if constant_time::verify_slices_are_equal(&full.as_ref()[..tag_len], &tag).is_err() {
        data.zeroize();
        return Err(BackendError::IntegrityCheckFailed);
    }
    Ok(data)
}

pub(crate) fn hmac(algorithm: MacAlgorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    let alg = match algorithm {
        // SHA-1 HMAC is still sound (its collisions do not reach HMAC); KMIP clients ask for it.
        MacAlgorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        MacAlgorithm::HmacSha224 => hmac::HMAC_SHA224,
        MacAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
        MacAlgorithm::HmacSha384 => hmac::HMAC_SHA384,
        MacAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
    };
    hmac::sign(&hmac::Key::new(alg, key), data)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    fn req(mode: CipherMode, data: &[u8], iv: Option<Vec<u8>>) -> CipherRequest {
        CipherRequest {
            mode,
            data: Zeroizing::new(data.to_vec()),
            iv,
            aad: None,
            tag: None,
        }
    }

    // NIST SP 800-38A F.1.1 / F.1.2 / F.2.1 / F.2.2 and F.1.5 / F.2.5 (AES-256).
    const K128: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    const K256: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
    const PLAIN: &str = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
                         30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
    const CBC_IV: &str = "000102030405060708090a0b0c0d0e0f";

    #[test]
    fn ecb_matches_sp800_38a() {
        let cases = [
            (
                K128,
                "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf\
                    43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4",
            ),
            (
                K256,
                "f3eed1bdb5d2a03c064b5a7e3db181f8591ccb10d410ed26dc5ba74a31362870\
                    b6ed21b99ca6f4f9f153e7b1beafed1d23304b7a39f9f3ff067d8d8f9e24ecc7",
            ),
        ];
        for (k, ct) in cases {
            let out = encrypt(&h(k), req(CipherMode::Ecb { pad: false }, &h(PLAIN), None)).unwrap();
            assert_eq!(&out.data[..], &h(ct)[..]);
            assert!(out.generated_iv.is_none());
            let back = decrypt(&h(k), req(CipherMode::Ecb { pad: false }, &h(ct), None)).unwrap();
            assert_eq!(&back.data[..], &h(PLAIN)[..]);
        }
    }

    #[test]
    fn cbc_matches_sp800_38a() {
        let cases = [
            (
                K128,
                "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2\
                    73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
            ),
            (
                K256,
                "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d\
                    39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
            ),
        ];
        for (k, ct) in cases {
            let out = encrypt(
                &h(k),
                req(CipherMode::Cbc { pad: false }, &h(PLAIN), Some(h(CBC_IV))),
            )
            .unwrap();
            assert_eq!(&out.data[..], &h(ct)[..]);
            let back = decrypt(
                &h(k),
                req(CipherMode::Cbc { pad: false }, &h(ct), Some(h(CBC_IV))),
            )
            .unwrap();
            assert_eq!(&back.data[..], &h(PLAIN)[..]);
        }
    }

    #[test]
    fn padded_modes_round_trip_and_add_a_full_block() {
        for mode in [CipherMode::Cbc { pad: true }, CipherMode::Ecb { pad: true }] {
            for len in [0usize, 1, 15, 16, 17, 33] {
                let plain: Vec<u8> = (0..len as u8).collect();
                let out = encrypt(&h(K128), req(mode, &plain, None)).unwrap();
                assert_eq!(out.data.len(), (len / 16 + 1) * 16);
                let iv = out.generated_iv.clone();
                assert_eq!(iv.is_some(), matches!(mode, CipherMode::Cbc { .. }));
                let back = decrypt(&h(K128), req(mode, &out.data, iv)).unwrap();
                assert_eq!(&back.data[..], &plain[..]);
            }
        }
    }

    #[test]
    fn padded_cbc_of_one_block_matches_manual_pkcs7() {
        // PKCS#5 padding of a full block is a block of 0x10 bytes; compare with unpadded CBC.
        let mut padded = h(PLAIN)[..16].to_vec();
        padded.extend_from_slice(&[16u8; 16]);
        let a = encrypt(
            &h(K128),
            req(
                CipherMode::Cbc { pad: true },
                &h(PLAIN)[..16],
                Some(h(CBC_IV)),
            ),
        )
        .unwrap();
        let b = encrypt(
            &h(K128),
            req(CipherMode::Cbc { pad: false }, &padded, Some(h(CBC_IV))),
        )
        .unwrap();
        assert_eq!(&a.data[..], &b.data[..]);
    }

    #[test]
    fn bad_padding_is_an_integrity_failure() {
        // A block that decrypts to garbage padding: encrypt an unpadded block ending in 0x00.
        let ct = encrypt(
            &h(K128),
            req(CipherMode::Ecb { pad: false }, &[0u8; 16], None),
        )
        .unwrap();
        let err = decrypt(&h(K128), req(CipherMode::Ecb { pad: true }, &ct.data, None));
        assert!(matches!(err, Err(BackendError::IntegrityCheckFailed)));
        let ct = encrypt(
            &h(K128),
            req(CipherMode::Cbc { pad: false }, &[0u8; 32], Some(h(CBC_IV))),
        )
        .unwrap();
        let err = decrypt(
            &h(K128),
            req(CipherMode::Cbc { pad: true }, &ct.data, Some(h(CBC_IV))),
        );
        assert!(matches!(err, Err(BackendError::IntegrityCheckFailed)));
    }

    #[test]
    fn unaligned_or_misused_input_is_rejected() {
        let e = encrypt(
            &h(K128),
            req(CipherMode::Ecb { pad: false }, &[1u8; 15], None),
        );
        assert!(matches!(e, Err(BackendError::InvalidInput(_))));
        let e = decrypt(
            &h(K128),
            req(CipherMode::Cbc { pad: true }, &[1u8; 17], Some(h(CBC_IV))),
        );
        assert!(matches!(e, Err(BackendError::InvalidInput(_))));
        let e = decrypt(
            &h(K128),
            req(CipherMode::Cbc { pad: true }, &[1u8; 16], None),
        );
        assert!(matches!(e, Err(BackendError::InvalidInput(_))));
        let e = encrypt(
            &h(K128),
            req(CipherMode::Ecb { pad: true }, &[1u8; 16], Some(h(CBC_IV))),
        );
        assert!(matches!(e, Err(BackendError::InvalidInput(_))));
        let e = encrypt(
            &[0u8; 20],
            req(CipherMode::Ecb { pad: true }, &[1u8; 16], None),
        );
        assert!(matches!(e, Err(BackendError::InvalidInput(_))));
        let e = encrypt(
            &h(K128),
            req(CipherMode::Gcm { tag_len: 11 }, &[1u8; 16], None),
        );
        assert!(matches!(e, Err(BackendError::InvalidInput(_))));
    }

    /// McGrew & Viega GCM spec test case 4 (AES-128) and 16 (AES-256), both with AAD and a
    /// 96-bit IV, as in the NIST GCM validation vectors.
    struct GcmCase {
        key: &'static str,
        iv: &'static str,
        aad: &'static str,
        plain: &'static str,
        ct: &'static str,
        tag: &'static str,
    }

    const GCM_CASES: [GcmCase; 2] = [
        GcmCase {
            key: "feffe9928665731c6d6a8f9467308308",
            iv: "cafebabefacedbaddecaf888",
            aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            plain: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            ct: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                 21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            tag: "5bc94fbc3221a5db94fae95ae7121a47",
        },
        GcmCase {
            key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            iv: "cafebabefacedbaddecaf888",
            aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            plain: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                 8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b",
        },
    ];

    fn gcm_req(c: &GcmCase, data: &str, tag_len: usize, tag: Option<Vec<u8>>) -> CipherRequest {
        CipherRequest {
            mode: CipherMode::Gcm { tag_len },
            data: Zeroizing::new(h(data)),
            iv: Some(h(c.iv)),
            aad: Some(h(c.aad)),
            tag,
        }
    }

    #[test]
    fn gcm_matches_known_vectors() {
        for c in &GCM_CASES {
            let out = encrypt(&h(c.key), gcm_req(c, c.plain, 16, None)).unwrap();
            assert_eq!(&out.data[..], &h(c.ct)[..]);
            assert_eq!(out.tag.as_deref(), Some(&h(c.tag)[..]));
            assert!(out.generated_iv.is_none());
            let back = decrypt(&h(c.key), gcm_req(c, c.ct, 16, Some(h(c.tag)))).unwrap();
            assert_eq!(&back.data[..], &h(c.plain)[..]);
        }
    }

    #[test]
    fn gcm_truncated_tags_are_prefixes_and_verify() {
        for c in &GCM_CASES {
            for tag_len in [12usize, 8, 4] {
                let out = encrypt(&h(c.key), gcm_req(c, c.plain, tag_len, None)).unwrap();
                assert_eq!(out.tag.as_deref(), Some(&h(c.tag)[..tag_len]));
                let back = decrypt(
                    &h(c.key),
                    gcm_req(c, c.ct, tag_len, Some(h(c.tag)[..tag_len].to_vec())),
                )
                .unwrap();
                assert_eq!(&back.data[..], &h(c.plain)[..]);
                let mut bad = h(c.tag)[..tag_len].to_vec();
                bad[tag_len - 1] ^= 1;
                let err = decrypt(&h(c.key), gcm_req(c, c.ct, tag_len, Some(bad)));
                assert!(matches!(err, Err(BackendError::IntegrityCheckFailed)));
            }
        }
    }

    #[test]
    fn gcm_rejects_tampering() {
        let c = &GCM_CASES[0];
        let mut bad_tag = h(c.tag);
        bad_tag[0] ^= 0x80;
        let err = decrypt(&h(c.key), gcm_req(c, c.ct, 16, Some(bad_tag)));
        assert!(matches!(err, Err(BackendError::IntegrityCheckFailed)));
        let mut r = gcm_req(c, c.ct, 16, Some(h(c.tag)));
        r.data[3] ^= 1;
        assert!(matches!(
            decrypt(&h(c.key), r),
            Err(BackendError::IntegrityCheckFailed)
        ));
        let mut r = gcm_req(c, c.ct, 16, Some(h(c.tag)));
        r.aad = None;
        assert!(matches!(
            decrypt(&h(c.key), r),
            Err(BackendError::IntegrityCheckFailed)
        ));
        let r = gcm_req(c, c.ct, 16, None);
        assert!(matches!(
            decrypt(&h(c.key), r),
            Err(BackendError::InvalidInput(_))
        ));
    }

    #[test]
    fn gcm_generates_a_fresh_nonce_when_none_is_given() {
        let key = h(K256);
        let a = encrypt(&key, req(CipherMode::Gcm { tag_len: 16 }, b"hello", None)).unwrap();
        let b = encrypt(&key, req(CipherMode::Gcm { tag_len: 16 }, b"hello", None)).unwrap();
        let na = a.generated_iv.clone().unwrap();
        assert_eq!(na.len(), NONCE_LEN);
        assert_ne!(Some(na.clone()), b.generated_iv);
        let mut r = req(CipherMode::Gcm { tag_len: 16 }, &a.data, Some(na));
        r.tag = a.tag;
        assert_eq!(&decrypt(&key, r).unwrap().data[..], b"hello");
    }

    #[test]
    fn hmac_matches_rfc4231() {
        // Test cases 1, 2 and 6 (a key longer than the block size).
        let cases = [
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b".to_string(),
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                hex::encode("Jefe"),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                "aa".repeat(131),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, data, mac) in cases {
            assert_eq!(hmac(MacAlgorithm::HmacSha256, &h(&key), &data), h(mac));
        }
    }

    #[test]
    fn every_hmac_hash_matches_rfc4231_and_rfc2202() {
        // The "Jefe" case of each RFC.
        let cases = [
            (
                MacAlgorithm::HmacSha1,
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                MacAlgorithm::HmacSha224,
                "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
            ),
            (
                MacAlgorithm::HmacSha384,
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                 8e2240ca5e69e2c78b3239ecfab21649",
            ),
            (
                MacAlgorithm::HmacSha512,
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                 9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ];
        for (alg, mac) in cases {
            assert_eq!(hmac(alg, b"Jefe", b"what do ya want for nothing?"), h(mac));
        }
    }
}
