//! Triple DES (three-key EDE: 24 bytes of key, 168 effective bits) in ECB and CBC, with PKCS#5
//! padding when asked, for the backends that compute in this process. aws-lc-rs has no DES:
//! the RustCrypto `des` crate does the block cipher.

use des::cipher::{Block, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::TdesEde3;
use zeroize::Zeroizing;

use crate::random::software_bytes;
use crate::{BackendError, CipherMode, CipherOutput, CipherRequest};

/// The DES block (and CBC IV) length in bytes.
const BLOCK: usize = 8;
/// A three-key Triple DES key, parity bits included (bytes).
pub(crate) const KEY_LEN: usize = 24;

fn tdes(key: &[u8]) -> Result<TdesEde3, BackendError> {
    if key.len() != KEY_LEN {
        return Err(BackendError::InvalidInput(format!(
            "a Triple DES key is {KEY_LEN} bytes, not {}",
            key.len()
        )));
    }
    TdesEde3::new_from_slice(key)
        .map_err(|_| BackendError::Crypto("Triple DES key setup failed".into()))
}

fn blocks(data: &mut [u8]) -> impl Iterator<Item = &mut Block<TdesEde3>> {
    data.chunks_exact_mut(BLOCK)
        .filter_map(|c| <&mut Block<TdesEde3>>::try_from(c).ok())
}

fn check_aligned(len: usize) -> Result<(), BackendError> {
    if len.is_multiple_of(BLOCK) {
        Ok(())
    } else {
        Err(BackendError::InvalidInput(format!(
            "data of {len} bytes is not a multiple of the {BLOCK}-byte DES block"
        )))
    }
}

fn iv_of(iv: &[u8]) -> Result<[u8; BLOCK], BackendError> {
    iv.try_into().map_err(|_| {
        BackendError::InvalidInput(format!(
            "a Triple DES CBC IV is {BLOCK} bytes, not {}",
            iv.len()
        ))
    })
}

fn no_gcm() -> BackendError {
    BackendError::InvalidInput("a Triple DES key encrypts in ECB or CBC only".into())
}

pub(crate) fn encrypt(key: &[u8], req: CipherRequest) -> Result<CipherOutput, BackendError> {
    let cipher = tdes(key)?;
    let (pad, iv, generated_iv) = match (req.mode, &req.iv) {
        (
            CipherMode::Gcm { .. }
            | CipherMode::ChaCha20
            | CipherMode::ChaCha20Poly1305 { .. }
            | CipherMode::AesKeyWrap { .. }
            | CipherMode::Ctr,
            _,
        ) => return Err(no_gcm()),
        (CipherMode::Ecb { .. }, Some(_)) => {
            return Err(BackendError::InvalidInput("ECB mode takes no IV".into()))
        }
        (CipherMode::Ecb { pad }, None) => (pad, None, None),
        (CipherMode::Cbc { pad }, Some(iv)) => (pad, Some(iv_of(iv)?), None),
        (CipherMode::Cbc { pad }, None) => {
            let iv = iv_of(&software_bytes(BLOCK)?)?;
            (pad, Some(iv), Some(iv.to_vec()))
        }
    };
    let mut out = Zeroizing::new(Vec::with_capacity(req.data.len() + BLOCK));
    out.extend_from_slice(&req.data);
    if pad {
        let n = BLOCK - out.len() % BLOCK;
        out.extend(std::iter::repeat_n(n as u8, n));
    }
    check_aligned(out.len())?;
    let mut chain = iv;
    for block in blocks(&mut out) {
        if let Some(prev) = &chain {
            block.iter_mut().zip(prev).for_each(|(b, p)| *b ^= p);
        }
        cipher.encrypt_block(block);
        if let Some(prev) = &mut chain {
            prev.copy_from_slice(block);
        }
    }
    Ok(CipherOutput {
        data: out,
        generated_iv,
        tag: None,
    })
}

pub(crate) fn decrypt(key: &[u8], req: CipherRequest) -> Result<CipherOutput, BackendError> {
    let cipher = tdes(key)?;
    let (pad, mut chain) = match (req.mode, &req.iv) {
        (
            CipherMode::Gcm { .. }
            | CipherMode::ChaCha20
            | CipherMode::ChaCha20Poly1305 { .. }
            | CipherMode::AesKeyWrap { .. }
            | CipherMode::Ctr,
            _,
        ) => return Err(no_gcm()),
        (CipherMode::Ecb { .. }, Some(_)) => {
            return Err(BackendError::InvalidInput("ECB mode takes no IV".into()))
        }
        (CipherMode::Ecb { pad }, None) => (pad, None),
        (CipherMode::Cbc { pad }, Some(iv)) => (pad, Some(iv_of(iv)?)),
        (CipherMode::Cbc { .. }, None) => {
            return Err(BackendError::InvalidInput(
                "CBC decryption needs the IV".into(),
            ))
        }
    };
    let mut data = req.data;
    check_aligned(data.len())?;
    for block in blocks(&mut data) {
        let this: [u8; BLOCK] = block.as_slice().try_into().unwrap_or_default();
        cipher.decrypt_block(block);
        if let Some(prev) = &mut chain {
            block.iter_mut().zip(prev.iter()).for_each(|(b, p)| *b ^= p);
            *prev = this;
        }
    }
    if pad {
        let n = usize::from(data.last().copied().unwrap_or(0));
        let body = data.len().checked_sub(n);
        let ok = (1..=BLOCK).contains(&n)
            && body.is_some_and(|b| data[b..].iter().all(|&x| usize::from(x) == n));
        if !ok {
            return Err(BackendError::IntegrityCheckFailed);
        }
        let keep = data.len() - n;
        data.truncate(keep);
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
        hex::decode(s).unwrap()
    }

    const KEY: &str = "0123456789abcdef23456789abcdef01456789abcdef0123";
    const PLAIN: &[u8] = b"The qufck brown fox jump";

    fn req(mode: CipherMode, data: &[u8], iv: Option<&str>) -> CipherRequest {
        CipherRequest {
            mode,
            data: Zeroizing::new(data.to_vec()),
            iv: iv.map(h),
            aad: None,
            tag: None,
        }
    }

    /// NIST SP 800-67 Rev. 1 appendix B (ECB); CBC checked with `openssl enc -des-ede3-cbc`.
    #[test]
    fn matches_sp800_67_and_openssl() {
        let ecb = encrypt(&h(KEY), req(CipherMode::Ecb { pad: false }, PLAIN, None)).unwrap();
        assert_eq!(
            hex::encode(&*ecb.data),
            "a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900"
        );
        let back = decrypt(
            &h(KEY),
            req(CipherMode::Ecb { pad: false }, &ecb.data, None),
        )
        .unwrap();
        assert_eq!(&back.data[..], PLAIN);
        let iv = Some("0001020304050607");
        let cbc = encrypt(&h(KEY), req(CipherMode::Cbc { pad: true }, PLAIN, iv)).unwrap();
        assert_eq!(
            hex::encode(&*cbc.data),
            "f368d06f3bbd614e60f2d0245cad3f818d5c69f2cb3fd5c7efa5066e2c4e03b9"
        );
        let back = decrypt(&h(KEY), req(CipherMode::Cbc { pad: true }, &cbc.data, iv)).unwrap();
        assert_eq!(&back.data[..], PLAIN);
    }

    #[test]
    fn generated_ivs_round_trip_and_misuse_is_refused() {
        let out = encrypt(&h(KEY), req(CipherMode::Cbc { pad: true }, b"x", None)).unwrap();
        let iv = out.generated_iv.clone().unwrap();
        assert_eq!(iv.len(), BLOCK);
        let mut r = req(CipherMode::Cbc { pad: true }, &out.data, None);
        r.iv = Some(iv);
        assert_eq!(&decrypt(&h(KEY), r).unwrap().data[..], b"x");
        let bad = [
            encrypt(&h(KEY), req(CipherMode::Ecb { pad: false }, b"short", None)),
            encrypt(&h(KEY), req(CipherMode::Gcm { tag_len: 16 }, b"x", None)),
            encrypt(
                &h(KEY),
                req(CipherMode::Ecb { pad: true }, b"x", Some("00")),
            ),
            encrypt(
                &h(KEY)[..16],
                req(CipherMode::Ecb { pad: true }, b"x", None),
            ),
            decrypt(&h(KEY), req(CipherMode::Cbc { pad: true }, &[0; 8], None)),
        ];
        for b in bad {
            assert!(matches!(b, Err(BackendError::InvalidInput(_))));
        }
        // A block whose padding is wrong.
        let ct = encrypt(
            &h(KEY),
            req(CipherMode::Ecb { pad: false }, &[0u8; 8], None),
        )
        .unwrap();
        assert!(matches!(
            decrypt(&h(KEY), req(CipherMode::Ecb { pad: true }, &ct.data, None)),
            Err(BackendError::IntegrityCheckFailed)
        ));
    }
}
