//! AES-CTR (NIST SP 800-38A): the IV is the whole 16-byte initial counter block, incremented
//! as one 128-bit big-endian number (the standard incrementing function over the full block,
//! as aws-lc-rs does). One-shot, and fed in parts for multi-part operations.

use aws_lc_rs::cipher::{
    self, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext,
    StreamingDecryptingKey, StreamingEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use zeroize::Zeroizing;

use crate::{random, BackendError, CipherOutput, CipherRequest};

/// The counter block (bytes).
pub(crate) const COUNTER_LEN: usize = 16;

fn unbound(key: &[u8]) -> Result<UnboundCipherKey, BackendError> {
    let alg = match key.len() {
        16 => &cipher::AES_128,
        24 => &cipher::AES_192,
        32 => &cipher::AES_256,
        n => {
            return Err(BackendError::InvalidInput(format!(
                "a {}-bit key is not an AES key",
                n * 8
            )))
        }
    };
    UnboundCipherKey::new(alg, key).map_err(|_| failed())
}

fn failed() -> BackendError {
    BackendError::Crypto("AES-CTR failed".into())
}

fn counter(iv: &[u8]) -> Result<[u8; COUNTER_LEN], BackendError> {
    iv.try_into().map_err(|_| {
        BackendError::InvalidInput(format!("the CTR counter block must be {COUNTER_LEN} bytes"))
    })
}

/// Encrypts with the given counter block, or a random one (returned).
pub(crate) fn encrypt(key: &[u8], req: CipherRequest) -> Result<CipherOutput, BackendError> {
    let (iv, generated_iv) = match &req.iv {
        Some(iv) => (counter(iv)?, None),
        None => {
            let iv = counter(&random::software_bytes(COUNTER_LEN)?)?;
            (iv, Some(iv.to_vec()))
        }
    };
    let mut data = req.data;
    EncryptingKey::ctr(unbound(key)?)
        .map_err(|_| failed())?
        .less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| failed())?;
    Ok(CipherOutput {
        data,
        generated_iv,
        tag: None,
    })
}

pub(crate) fn decrypt(key: &[u8], req: CipherRequest) -> Result<CipherOutput, BackendError> {
    let iv = counter(
        req.iv
            .as_deref()
            .ok_or_else(|| BackendError::InvalidInput("CTR decryption needs the IV".into()))?,
    )?;
    let mut data = req.data;
    DecryptingKey::ctr(unbound(key)?)
        .map_err(|_| failed())?
        .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| failed())?;
    Ok(CipherOutput {
        data,
        generated_iv: None,
        tag: None,
    })
}

/// AES-CTR fed in parts: each part's output has the part's length and comes at once.
pub(crate) enum CtrStream {
    Encrypt(StreamingEncryptingKey),
    Decrypt(StreamingDecryptingKey),
}

impl CtrStream {
    pub(crate) fn new(key: &[u8], iv: &[u8], decrypt: bool) -> Result<CtrStream, BackendError> {
        let iv = FixedLength::from(counter(iv)?);
        Ok(if decrypt {
            CtrStream::Decrypt(
                StreamingDecryptingKey::ctr(unbound(key)?, DecryptionContext::Iv128(iv))
                    .map_err(|_| failed())?,
            )
        } else {
            CtrStream::Encrypt(
                StreamingEncryptingKey::less_safe_ctr(unbound(key)?, EncryptionContext::Iv128(iv))
                    .map_err(|_| failed())?,
            )
        })
    }

    pub(crate) fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        // aws-lc-rs asks for a block of room beyond the input.
        let mut out = Zeroizing::new(vec![0u8; data.len() + COUNTER_LEN]);
        let n = match self {
            CtrStream::Encrypt(k) => k
                .update(data, &mut out)
                .map_err(|_| failed())?
                .written()
                .len(),
            CtrStream::Decrypt(k) => k
                .update(data, &mut out)
                .map_err(|_| failed())?
                .written()
                .len(),
        };
        out.truncate(n);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CipherMode;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn req(data: &[u8], iv: Option<Vec<u8>>) -> CipherRequest {
        CipherRequest {
            mode: CipherMode::Ctr,
            data: Zeroizing::new(data.to_vec()),
            iv,
            aad: None,
            tag: None,
        }
    }

    /// NIST SP 800-38A F.5.1 (CTR-AES128.Encrypt), and back.
    #[test]
    fn matches_sp800_38a() {
        let key = h("2b7e151628aed2a6abf7158809cf4f3c");
        let iv = h("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let plain = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        let ct = h("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff");
        let out = encrypt(&key, req(&plain, Some(iv.clone()))).unwrap();
        assert_eq!(*out.data, ct);
        let back = decrypt(&key, req(&ct, Some(iv.clone()))).unwrap();
        assert_eq!(*back.data, plain);
        let mut s = CtrStream::new(&key, &iv, false).unwrap();
        let mut parts = s.update(&plain[..5]).unwrap().to_vec();
        parts.extend_from_slice(&s.update(&plain[5..21]).unwrap());
        parts.extend_from_slice(&s.update(&plain[21..]).unwrap());
        assert_eq!(parts, ct);
        assert!(decrypt(&key, req(&ct, Some(vec![0; 12]))).is_err());
    }
}
