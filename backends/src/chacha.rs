//! ChaCha20 (RFC 8439 with a 96-bit nonce, or the original 64-bit-nonce variant with a 64-bit
//! block counter) and ChaCha20-Poly1305 (RFC 8439, through aws-lc-rs), for the backends that
//! compute in this process. aws-lc-rs offers ChaCha20 only inside the AEAD, so the bare stream
//! cipher is here.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use aws_lc_rs::constant_time;
use zeroize::Zeroizing;

use crate::random::software_bytes;
use crate::{BackendError, CipherMode, CipherOutput, CipherRequest};

/// A ChaCha20 key (bytes).
pub(crate) const KEY_LEN: usize = 32;
/// The original ChaCha20 nonce (bytes); RFC 8439's is [`NONCE_LEN`].
const LEGACY_NONCE_LEN: usize = 8;
/// Poly1305's full tag (bytes).
const TAG_LEN: usize = 16;
/// The truncated tag lengths accepted (bytes), as for GCM (SP 800-38D): shorter ones are
/// forged too easily.
const TAG_LENS: [usize; 7] = [4, 8, 12, 13, 14, 15, 16];
/// One keystream block (bytes).
const BLOCK: usize = 64;
/// "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

fn quarter(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

fn words(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

/// One keystream block of the state `input` (constants, key, counter and nonce words).
fn block(input: &[u32; 16]) -> Zeroizing<[u8; BLOCK]> {
    let mut s = Zeroizing::new(*input);
    for _ in 0..10 {
        quarter(&mut s, 0, 4, 8, 12);
        quarter(&mut s, 1, 5, 9, 13);
        quarter(&mut s, 2, 6, 10, 14);
        quarter(&mut s, 3, 7, 11, 15);
        quarter(&mut s, 0, 5, 10, 15);
        quarter(&mut s, 1, 6, 11, 12);
        quarter(&mut s, 2, 7, 8, 13);
        quarter(&mut s, 3, 4, 9, 14);
    }
    let mut out = Zeroizing::new([0u8; BLOCK]);
    for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&s[i].wrapping_add(input[i]).to_le_bytes());
    }
    out
}

/// XORs the ChaCha20 keystream of `key` and `nonce` (8 or 12 bytes), from block `first`, into
/// `data`.
fn xor_keystream(
    key: &[u8],
    nonce: &[u8],
    first: u64,
    data: &mut [u8],
) -> Result<(), BackendError> {
    if key.len() != KEY_LEN {
        return Err(BackendError::InvalidInput(format!(
            "a ChaCha20 key is {KEY_LEN} bytes, not {}",
            key.len()
        )));
    }
    if nonce.len() != LEGACY_NONCE_LEN && nonce.len() != NONCE_LEN {
        return Err(BackendError::InvalidInput(format!(
            "a ChaCha20 nonce is {LEGACY_NONCE_LEN} or {NONCE_LEN} bytes, not {}",
            nonce.len()
        )));
    }
    let mut state = Zeroizing::new([0u32; 16]);
    state[..4].copy_from_slice(&SIGMA);
    for (slot, w) in state[4..12].iter_mut().zip(words(key)) {
        *slot = w;
    }
    // The counter takes the words the nonce leaves: two (64-bit) or one (32-bit).
    let counter_words = 16 - 12 - nonce.len() / 4;
    for (slot, w) in state[12 + counter_words..].iter_mut().zip(words(nonce)) {
        *slot = w;
    }
    for (n, chunk) in data.chunks_mut(BLOCK).enumerate() {
        let n = first + n as u64;
        state[12] = n as u32;
        if counter_words == 2 {
            state[13] = (n >> 32) as u32;
        }
        let ks = block(&state);
        chunk.iter_mut().zip(ks.iter()).for_each(|(d, k)| *d ^= k);
    }
    Ok(())
}

fn aead_key(key: &[u8]) -> Result<LessSafeKey, BackendError> {
    UnboundKey::new(&aead::CHACHA20_POLY1305, key)
        .map(LessSafeKey::new)
        .map_err(|_| {
            BackendError::InvalidInput(format!(
                "a ChaCha20-Poly1305 key is {KEY_LEN} bytes, not {}",
                key.len()
            ))
        })
}

fn aead_nonce(nonce: &[u8]) -> Result<Nonce, BackendError> {
    Nonce::try_assume_unique_for_key(nonce).map_err(|_| {
        BackendError::InvalidInput(format!(
            "a ChaCha20-Poly1305 nonce is {NONCE_LEN} bytes, not {}",
            nonce.len()
        ))
    })
}

fn check_tag_len(tag_len: usize) -> Result<(), BackendError> {
    if TAG_LENS.contains(&tag_len) {
        Ok(())
    } else {
        Err(BackendError::InvalidInput(format!(
            "a Poly1305 tag length is one of {TAG_LENS:?} bytes, not {tag_len}"
        )))
    }
}

/// The full tag of `plain` (sealed again in a scratch copy).
fn full_tag(key: &[u8], nonce: &[u8], aad: &[u8], plain: &[u8]) -> Result<aead::Tag, BackendError> {
    let mut scratch = Zeroizing::new(plain.to_vec());
    aead_key(key)?
        .seal_in_place_separate_tag(aead_nonce(nonce)?, Aad::from(aad), &mut scratch[..])
        .map_err(|_| BackendError::Crypto("ChaCha20-Poly1305 encryption failed".into()))
}

fn not_a_chacha_mode() -> BackendError {
    BackendError::InvalidInput("a ChaCha20 key encrypts with ChaCha20 or ChaCha20-Poly1305".into())
}

pub(crate) fn encrypt(key: &[u8], req: CipherRequest) -> Result<CipherOutput, BackendError> {
    let (nonce, generated_iv) = match req.iv {
        Some(iv) => (iv, None),
        None => {
            let n = software_bytes(NONCE_LEN)?.to_vec();
            (n.clone(), Some(n))
        }
    };
    let mut data = req.data;
    let tag = match req.mode {
        CipherMode::ChaCha20 => {
            xor_keystream(key, &nonce, 0, &mut data)?;
            None
        }
        CipherMode::ChaCha20Poly1305 { tag_len } => {
            check_tag_len(tag_len)?;
            let aad = req.aad.unwrap_or_default();
            let tag = aead_key(key)?
                .seal_in_place_separate_tag(aead_nonce(&nonce)?, Aad::from(&aad[..]), &mut data[..])
                .map_err(|_| BackendError::Crypto("ChaCha20-Poly1305 encryption failed".into()))?;
            Some(tag.as_ref()[..tag_len].to_vec())
        }
        _ => return Err(not_a_chacha_mode()),
    };
    Ok(CipherOutput {
        data,
        generated_iv,
        tag,
    })
}

pub(crate) fn decrypt(key: &[u8], req: CipherRequest) -> Result<CipherOutput, BackendError> {
    let nonce = req
        .iv
        .ok_or_else(|| BackendError::InvalidInput("ChaCha20 decryption needs the nonce".into()))?;
    let mut data = req.data;
    match req.mode {
        CipherMode::ChaCha20 => xor_keystream(key, &nonce, 0, &mut data)?,
        CipherMode::ChaCha20Poly1305 { tag_len } => {
            check_tag_len(tag_len)?;
            let tag = req.tag.filter(|t| t.len() == tag_len).ok_or_else(|| {
                BackendError::InvalidInput(format!("decryption needs the {tag_len}-byte tag"))
            })?;
            let aad = req.aad.unwrap_or_default();
            let opened = if tag_len == TAG_LEN {
                aead_key(key)?
                    .open_in_place_separate_tag(
                        aead_nonce(&nonce)?,
                        Aad::from(&aad[..]),
                        &tag,
                        &mut data[..],
                    )
                    .is_ok()
            } else {
                // aws-lc-rs verifies full tags only. The AEAD's cipher is ChaCha20 from block
                // 1 and its tag deterministic: decrypt, seal again, compare the prefix.
                aead_nonce(&nonce)?;
                xor_keystream(key, &nonce, 1, &mut data)?;
                let full = full_tag(key, &nonce, &aad, &data)?;
                constant_time::verify_slices_are_equal(&full.as_ref()[..tag_len], &tag).is_ok()
            };
            if !opened {
                zeroize::Zeroize::zeroize(&mut *data);
                return Err(BackendError::IntegrityCheckFailed);
            }
        }
        _ => return Err(not_a_chacha_mode()),
    }
    Ok(CipherOutput {
        data,
        generated_iv: None,
        tag: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    #[test]
    fn keystream_matches_rfc8439_and_the_original_variant() {
        // The all-zero key and nonce: block 0 is the same in both variants (RFC 8439 A.1 #1).
        let zero_block = "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7\
                          da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586";
        for nonce in [vec![0u8; 8], vec![0u8; 12]] {
            let mut data = vec![0u8; 64];
            xor_keystream(&[0u8; 32], &nonce, 0, &mut data).unwrap();
            assert_eq!(data, h(zero_block));
        }
        // RFC 8439 §2.4.2: the sunscreen text, counter 1 (here: skip block 0).
        let key = h("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let nonce = h("000000000000004a00000000");
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let mut data = plain.to_vec();
        xor_keystream(&key, &nonce, 1, &mut data).unwrap();
        assert_eq!(hex::encode(&data[..16]), "6e2e359a2568f98041ba0728dd0d6981");
    }

    #[test]
    fn aead_round_trips_and_refuses_a_wrong_tag() {
        let key = [7u8; 32];
        let req = |data: &[u8], iv: Option<Vec<u8>>, tag: Option<Vec<u8>>| CipherRequest {
            mode: CipherMode::ChaCha20Poly1305 { tag_len: 16 },
            data: Zeroizing::new(data.to_vec()),
            iv,
            aad: Some(b"aad".to_vec()),
            tag,
        };
        let out = encrypt(&key, req(b"hello", None, None)).unwrap();
        let iv = out.generated_iv.clone();
        let back = decrypt(&key, req(&out.data, iv.clone(), out.tag.clone())).unwrap();
        assert_eq!(&back.data[..], b"hello");
        let full = out.tag.clone().unwrap();
        let mut bad = full.clone();
        bad[0] ^= 1;
        assert!(matches!(
            decrypt(&key, req(&out.data, iv.clone(), Some(bad))),
            Err(BackendError::IntegrityCheckFailed)
        ));
        // A truncated tag is the full tag's prefix, and verifies.
        let mode = CipherMode::ChaCha20Poly1305 { tag_len: 12 };
        let mut short = CipherRequest {
            mode,
            ..req(b"hello", iv.clone(), None)
        };
        let out12 = encrypt(&key, short).unwrap();
        assert_eq!(out12.tag.as_deref(), Some(&full[..12]));
        short = CipherRequest {
            mode,
            ..req(&out12.data, iv.clone(), out12.tag.clone())
        };
        assert_eq!(&decrypt(&key, short).unwrap().data[..], b"hello");
        let mut bad12 = out12.tag.unwrap();
        bad12[11] ^= 1;
        short = CipherRequest {
            mode,
            ..req(&out12.data, iv, Some(bad12))
        };
        assert!(matches!(
            decrypt(&key, short),
            Err(BackendError::IntegrityCheckFailed)
        ));
        let one = CipherRequest {
            mode: CipherMode::ChaCha20Poly1305 { tag_len: 1 },
            ..req(b"x", None, None)
        };
        assert!(matches!(
            encrypt(&key, one),
            Err(BackendError::InvalidInput(_))
        ));
    }
}
