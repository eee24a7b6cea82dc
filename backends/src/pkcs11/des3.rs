//! Triple DES encrypt and decrypt inside the token (CKM_DES3_ECB, CKM_DES3_CBC[_PAD]), for keys
//! of type CKK_DES3. Blocking: called on a pooled session from `spawn_blocking`.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use super::cipher::{random, CipherJob};
use super::p11_error;
use crate::{BackendError, CipherMode, CipherOutput};

/// The DES block (and CBC IV) length in bytes.
const BLOCK: usize = 8;

/// Whether `key` is a Triple DES key (one attribute read).
pub(crate) fn is_des3(session: &Session, key: ObjectHandle) -> Result<bool, BackendError> {
    let attrs = session
        .get_attributes(key, &[AttributeType::KeyType])
        .map_err(p11_error)?;
    Ok(attrs
        .iter()
        .any(|a| matches!(a, Attribute::KeyType(t) if *t == KeyType::DES3)))
}

fn iv_of(iv: &[u8]) -> Result<[u8; BLOCK], BackendError> {
    iv.try_into().map_err(|_| {
        BackendError::InvalidInput(format!(
            "a Triple DES CBC IV is {BLOCK} bytes, not {}",
            iv.len()
        ))
    })
}

fn ecb_or_cbc_only() -> BackendError {
    BackendError::InvalidInput("a Triple DES key encrypts in ECB or CBC only".into())
}

/// PKCS#5 padding to whole DES blocks (there is no CKM_DES3_ECB_PAD).
fn pad(data: &[u8]) -> Zeroizing<Vec<u8>> {
    let n = BLOCK - data.len() % BLOCK;
    let mut out = Zeroizing::new(Vec::with_capacity(data.len() + n));
    out.extend_from_slice(data);
    out.resize(data.len() + n, n as u8);
    out
}

fn unpad(mut data: Zeroizing<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let n = usize::from(data.last().copied().unwrap_or(0));
    let body = data.len().checked_sub(n);
    let ok = (1..=BLOCK).contains(&n)
        && body.is_some_and(|b| data[b..].iter().all(|&x| usize::from(x) == n));
    if !ok {
        return Err(BackendError::IntegrityCheckFailed);
    }
    let keep = data.len() - n;
    data.truncate(keep);
    Ok(data)
}

pub(crate) fn encrypt(
    session: &Session,
    key: ObjectHandle,
    job: &CipherJob,
) -> Result<CipherOutput, BackendError> {
    let (mechanism, input, generated_iv) = match (job.mode, &job.iv) {
        (CipherMode::Ecb { .. }, Some(_)) => {
            return Err(BackendError::InvalidInput("ECB mode takes no IV".into()))
        }
        (CipherMode::Ecb { pad: p }, None) => {
            let input = if p { pad(&job.data) } else { job.data.clone() };
            (Mechanism::Des3Ecb, input, None)
        }
        (CipherMode::Cbc { pad: p }, iv) => {
            let (iv, generated) = match iv {
                Some(iv) => (iv_of(iv)?, None),
                None => {
                    let iv = iv_of(&random(session, BLOCK)?)?;
                    (iv, Some(iv.to_vec()))
                }
            };
            let mechanism = if p {
                Mechanism::Des3CbcPad(iv)
            } else {
                Mechanism::Des3Cbc(iv)
            };
            (mechanism, job.data.clone(), generated)
        }
        _ => return Err(ecb_or_cbc_only()),
    };
    let out = session
        .encrypt(&mechanism, key, &input)
        .map_err(p11_error)?;
    Ok(CipherOutput {
        data: Zeroizing::new(out),
        generated_iv,
        tag: None,
    })
}

pub(crate) fn decrypt(
    session: &Session,
    key: ObjectHandle,
    job: &CipherJob,
) -> Result<CipherOutput, BackendError> {
    let failed = |e| match e {
        cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::EncryptedDataInvalid, _) => {
            BackendError::IntegrityCheckFailed
        }
        other => p11_error(other),
    };
    let data = match (job.mode, &job.iv) {
        (CipherMode::Ecb { .. }, Some(_)) => {
            return Err(BackendError::InvalidInput("ECB mode takes no IV".into()))
        }
        (CipherMode::Ecb { pad: p }, None) => {
            let out = Zeroizing::new(
                session
                    .decrypt(&Mechanism::Des3Ecb, key, &job.data)
                    .map_err(failed)?,
            );
            if p {
                unpad(out)?
            } else {
                out
            }
        }
        (CipherMode::Cbc { pad: p }, Some(iv)) => {
            let iv = iv_of(iv)?;
            let mechanism = if p {
                Mechanism::Des3CbcPad(iv)
            } else {
                Mechanism::Des3Cbc(iv)
            };
            Zeroizing::new(
                session
                    .decrypt(&mechanism, key, &job.data)
                    .map_err(failed)?,
            )
        }
        (CipherMode::Cbc { .. }, None) => {
            return Err(BackendError::InvalidInput(
                "CBC decryption needs the IV".into(),
            ))
        }
        _ => return Err(ecb_or_cbc_only()),
    };
    Ok(CipherOutput {
        data,
        generated_iv: None,
        tag: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_round_trips_and_bad_padding_is_an_integrity_failure() {
        for len in 0..=3 * BLOCK {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let padded = pad(&data);
            assert_eq!(padded.len() % BLOCK, 0);
            assert_eq!(&unpad(padded).unwrap()[..], &data[..]);
        }
        let bad = Zeroizing::new(vec![1, 2, 3, 4, 5, 6, 7, 3]);
        assert!(matches!(
            unpad(bad),
            Err(BackendError::IntegrityCheckFailed)
        ));
    }
}
