//! Encrypt, decrypt and MAC inside the token. Blocking: called on a pooled session from
//! `spawn_blocking`.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use zeroize::Zeroizing;

use super::p11_error;
use crate::{BackendError, CipherMode, CipherOutput, MacAlgorithm};

/// AES block size; also the CBC IV length.
pub(crate) const AES_BLOCK: usize = 16;
/// IV length generated for GCM when the client gives none (the length GCM handles natively).
pub(crate) const GCM_DEFAULT_IV_LEN: usize = 12;
/// Longest GCM IV PKCS#11 2.40 allows.
pub(crate) const GCM_MAX_IV_LEN: usize = 256;
/// GCM tag lengths NIST SP 800-38D allows, in bytes.
const GCM_TAG_LENS: [usize; 7] = [4, 8, 12, 13, 14, 15, 16];
/// Largest input for one single-part call: the whole buffer sits in the token's memory at once.
pub(crate) const MAX_CIPHER_DATA: usize = 16 * 1024 * 1024;

/// A validated cipher request, owned so it can move to a blocking thread.
pub(crate) struct CipherJob {
    pub(crate) mode: CipherMode,
    pub(crate) data: Zeroizing<Vec<u8>>,
    pub(crate) iv: Option<Vec<u8>>,
    pub(crate) aad: Vec<u8>,
    pub(crate) tag: Option<Vec<u8>>,
}

impl CipherJob {
    /// Checks what the token would reject less clearly, before taking a session.
    pub(crate) fn validate(&self, decrypt: bool) -> Result<(), BackendError> {
        if self.data.len() > MAX_CIPHER_DATA {
            return Err(BackendError::InvalidInput(format!(
                "data longer than {MAX_CIPHER_DATA} bytes"
            )));
        }
        match self.mode {
            CipherMode::ChaCha20 | CipherMode::ChaCha20Poly1305 { .. } => return Err(no_chacha()),
            // SoftHSM 2.6 offers CKM_AES_KEY_WRAP only to C_WrapKey, not to C_Encrypt: keys of
            // the token are wrapped by `wrap_key`, never bytes from outside.
            CipherMode::AesKeyWrap { .. } => return Err(no_key_wrap()),
            CipherMode::Ctr => return Err(no_ctr()),
            CipherMode::Gcm { tag_len } => {
                if !GCM_TAG_LENS.contains(&tag_len) {
                    return Err(BackendError::InvalidInput(format!(
                        "GCM tag length {tag_len} is not one of {GCM_TAG_LENS:?}"
                    )));
                }
                match &self.iv {
                    Some(iv) if iv.is_empty() || iv.len() > GCM_MAX_IV_LEN => {
                        return Err(BackendError::InvalidInput(format!(
                            "GCM IV must be 1..={GCM_MAX_IV_LEN} bytes"
                        )))
                    }
                    None if decrypt => {
                        return Err(BackendError::InvalidInput(
                            "GCM decrypt needs the IV".into(),
                        ))
                    }
                    _ => {}
                }
                if decrypt && self.tag.as_ref().map(Vec::len) != Some(tag_len) {
                    return Err(BackendError::InvalidInput(format!(
                        "GCM decrypt needs a {tag_len}-byte tag"
                    )));
                }
            }
            // The block, and so the IV, is 16 bytes for AES and 8 for Triple DES: each
            // cipher checks its own once the key is known.
            CipherMode::Cbc { .. } => match &self.iv {
                Some(iv) if iv.is_empty() || iv.len() > AES_BLOCK => {
                    return Err(BackendError::InvalidInput(format!(
                        "CBC IV must be one cipher block ({AES_BLOCK} bytes for AES)"
                    )))
                }
                None if decrypt => {
                    return Err(BackendError::InvalidInput(
                        "CBC decrypt needs the IV".into(),
                    ))
                }
                _ => {}
            },
            CipherMode::Ecb { .. } => {}
        }
        Ok(())
    }
}

/// SoftHSM 2.6 offers CKM_AES_KEY_WRAP only to C_WrapKey, not to C_Encrypt.
fn no_key_wrap() -> BackendError {
    BackendError::Unsupported(
        "AES key wrap of bytes from outside the PKCS#11 token (a converted key format) is not \
         supported; ask for the key in the format it was registered in"
            .into(),
    )
}

/// `key` wrapped by the AES key `wrapping` with C_WrapKey (CKM_AES_KEY_WRAP, or _PAD with
/// `pad`): the key never leaves the token in clear. A wrapping key made without CKA_WRAP (keys
/// this backend stored before it wrapped) is given it once and the call retried; the gateway
/// has already checked the KMIP usage mask. The token's refusal to release `key` even wrapped
/// (CKA_EXTRACTABLE false without a trusted wrapping key) is [`BackendError::NotExtractable`].
pub(crate) fn wrap_key(
    s: &Session,
    wrapping: ObjectHandle,
    key: ObjectHandle,
    pad: bool,
    key_uid: &str,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let mechanism = if pad {
        Mechanism::AesKeyWrapPad
    } else {
        Mechanism::AesKeyWrap
    };
    let wrapped = match s.wrap_key(&mechanism, wrapping, key) {
        Err(CkError::Pkcs11(RvError::KeyFunctionNotPermitted, _)) => {
            s.update_attributes(wrapping, &[Attribute::Wrap(true)])
                .map_err(p11_error)?;
            s.wrap_key(&mechanism, wrapping, key)
        }
        other => other,
    };
    match wrapped {
        Ok(bytes) => Ok(Zeroizing::new(bytes)),
        Err(CkError::Pkcs11(RvError::KeyUnextractable | RvError::KeyNotWrappable, _)) => {
            Err(BackendError::NotExtractable(key_uid.to_owned()))
        }
        Err(e) => Err(p11_error(e)),
    }
}

/// cryptoki 0.12 has no CKM_AES_CTR mechanism (and so no way to pass its counter parameters).
pub(crate) fn no_ctr() -> BackendError {
    BackendError::Unsupported(
        "AES-CTR with a key held in the PKCS#11 token is not supported (the cryptoki binding has \
         no CKM_AES_CTR); use GCM or CBC"
            .into(),
    )
}

/// SoftHSM 2.6, like most tokens, has no ChaCha20 mechanism.
fn no_chacha() -> BackendError {
    BackendError::Unsupported("this PKCS#11 token does not encrypt with ChaCha20".into())
}

fn block_iv(iv: &[u8]) -> Result<[u8; AES_BLOCK], BackendError> {
    iv.try_into()
        .map_err(|_| BackendError::InvalidInput(format!("CBC IV must be {AES_BLOCK} bytes")))
}

fn tag_bits(tag_len: usize) -> Result<Ulong, BackendError> {
    Ulong::try_from(tag_len * 8)
        .map_err(|_| BackendError::InvalidInput("GCM tag length out of range".into()))
}

/// PKCS#5/7 padding to a whole number of AES blocks (always at least one byte).
pub(crate) fn pad(data: &[u8]) -> Zeroizing<Vec<u8>> {
    let n = AES_BLOCK - data.len() % AES_BLOCK;
    let mut out = Zeroizing::new(Vec::with_capacity(data.len() + n));
    out.extend_from_slice(data);
    // n is 1..=16, so the cast is exact.
    out.resize(data.len() + n, n as u8);
    out
}

/// Strips PKCS#5/7 padding. Checks every pad byte without an early exit.
pub(crate) fn unpad(mut data: Zeroizing<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let Some(&last) = data.last() else {
        return Err(BackendError::IntegrityCheckFailed);
    };
    let n = usize::from(last);
    if n == 0 || n > AES_BLOCK || n > data.len() || !data.len().is_multiple_of(AES_BLOCK) {
        return Err(BackendError::IntegrityCheckFailed);
    }
    let bad = data[data.len() - n..]
        .iter()
        .fold(0u8, |acc, &b| acc | (b ^ last));
    if bad != 0 {
        return Err(BackendError::IntegrityCheckFailed);
    }
    let keep = data.len() - n;
    data.truncate(keep);
    Ok(data)
}

/// Ciphertext that fails its check is reported as such, not as a generic token error. SoftHSM
/// 2.6 answers a wrong GCM tag or CBC padding with `CKR_GENERAL_ERROR` instead of
/// `CKR_ENCRYPTED_DATA_INVALID`, so for the checking modes that code means the same.
pub(super) fn decrypt_error(e: CkError, mode: CipherMode) -> BackendError {
    let checking = matches!(mode, CipherMode::Gcm { .. } | CipherMode::Cbc { pad: true });
    match e {
        CkError::Pkcs11(RvError::EncryptedDataInvalid, _) => BackendError::IntegrityCheckFailed,
        CkError::Pkcs11(RvError::GeneralError, _) if checking => BackendError::IntegrityCheckFailed,
        other => p11_error(other),
    }
}

pub(crate) fn encrypt(
    session: &Session,
    key: ObjectHandle,
    job: &CipherJob,
) -> Result<CipherOutput, BackendError> {
    let (iv, generated) = match (&job.iv, job.mode) {
        (_, CipherMode::Ecb { .. }) => (Vec::new(), false),
        (Some(iv), _) => (iv.clone(), false),
        (None, CipherMode::Gcm { .. }) => (random(session, GCM_DEFAULT_IV_LEN)?.to_vec(), true),
        (None, CipherMode::Cbc { .. }) => (random(session, AES_BLOCK)?.to_vec(), true),
        (None, CipherMode::ChaCha20 | CipherMode::ChaCha20Poly1305 { .. }) => {
            return Err(no_chacha())
        }
        (_, CipherMode::AesKeyWrap { .. }) => return Err(no_key_wrap()),
        (_, CipherMode::Ctr) => return Err(no_ctr()),
    };
    let generated_iv = generated.then(|| iv.clone());
    match job.mode {
        CipherMode::ChaCha20 | CipherMode::ChaCha20Poly1305 { .. } => Err(no_chacha()),
        CipherMode::AesKeyWrap { .. } => Err(no_key_wrap()),
        CipherMode::Ctr => Err(no_ctr()),
        CipherMode::Gcm { tag_len } => {
            let mut iv = iv;
            let params =
                GcmParams::new(&mut iv, &job.aad, tag_bits(tag_len)?).map_err(p11_error)?;
            let mut out = Zeroizing::new(
                session
                    .encrypt(&Mechanism::AesGcm(params), key, &job.data)
                    .map_err(p11_error)?,
            );
            // PKCS#11 returns ciphertext || tag.
            let split = out
                .len()
                .checked_sub(tag_len)
                .ok_or_else(|| BackendError::Crypto("GCM output shorter than its tag".into()))?;
            let tag = out[split..].to_vec();
            out.truncate(split);
            Ok(CipherOutput {
                data: out,
                generated_iv,
                tag: Some(tag),
            })
        }
        CipherMode::Cbc { pad } => {
            let iv = block_iv(&iv)?;
            let mech = if pad {
                Mechanism::AesCbcPad(iv)
            } else {
                Mechanism::AesCbc(iv)
            };
            let out = session.encrypt(&mech, key, &job.data).map_err(p11_error)?;
            Ok(CipherOutput {
                data: Zeroizing::new(out),
                generated_iv,
                tag: None,
            })
        }
        CipherMode::Ecb { pad: do_pad } => {
            // There is no CKM_AES_ECB_PAD: pad here.
            let input = if do_pad {
                pad(&job.data)
            } else {
                job.data.clone()
            };
            let out = session
                .encrypt(&Mechanism::AesEcb, key, &input)
                .map_err(p11_error)?;
            Ok(CipherOutput {
                data: Zeroizing::new(out),
                generated_iv: None,
                tag: None,
            })
        }
    }
}

pub(crate) fn decrypt(
    session: &Session,
    key: ObjectHandle,
    job: &CipherJob,
) -> Result<CipherOutput, BackendError> {
    let iv = job.iv.clone().unwrap_or_default();
    let data = match job.mode {
        CipherMode::ChaCha20 | CipherMode::ChaCha20Poly1305 { .. } => return Err(no_chacha()),
        CipherMode::AesKeyWrap { .. } => return Err(no_key_wrap()),
        CipherMode::Ctr => return Err(no_ctr()),
        CipherMode::Gcm { tag_len } => {
            let mut input = Vec::with_capacity(job.data.len() + tag_len);
            input.extend_from_slice(&job.data);
            input.extend_from_slice(job.tag.as_deref().unwrap_or_default());
            let mut iv = iv;
            let params =
                GcmParams::new(&mut iv, &job.aad, tag_bits(tag_len)?).map_err(p11_error)?;
            Zeroizing::new(
                session
                    .decrypt(&Mechanism::AesGcm(params), key, &input)
                    .map_err(|e| decrypt_error(e, job.mode))?,
            )
        }
        CipherMode::Cbc { pad } => {
            let iv = block_iv(&iv)?;
            let mech = if pad {
                Mechanism::AesCbcPad(iv)
            } else {
                Mechanism::AesCbc(iv)
            };
            Zeroizing::new(
                session
                    .decrypt(&mech, key, &job.data)
                    .map_err(|e| decrypt_error(e, job.mode))?,
            )
        }
        CipherMode::Ecb { pad } => {
            let out = Zeroizing::new(
                session
                    .decrypt(&Mechanism::AesEcb, key, &job.data)
                    .map_err(|e| decrypt_error(e, job.mode))?,
            );
            if pad {
                unpad(out)?
            } else {
                out
            }
        }
    };
    Ok(CipherOutput {
        data,
        generated_iv: None,
        tag: None,
    })
}

pub(crate) fn mac(
    session: &Session,
    key: ObjectHandle,
    algorithm: MacAlgorithm,
    data: &[u8],
) -> Result<Vec<u8>, BackendError> {
    let mechanism = match algorithm {
        MacAlgorithm::HmacSha1 => Mechanism::Sha1Hmac,
        MacAlgorithm::HmacSha224 => Mechanism::Sha224Hmac,
        MacAlgorithm::HmacSha256 => Mechanism::Sha256Hmac,
        MacAlgorithm::HmacSha384 => Mechanism::Sha384Hmac,
        MacAlgorithm::HmacSha512 => Mechanism::Sha512Hmac,
    };
    session.sign(&mechanism, key, data).map_err(p11_error)
}

pub(crate) fn random(session: &Session, len: usize) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    session.generate_random_slice(&mut out).map_err(p11_error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha20_is_refused_as_unsupported_before_a_session_is_taken() {
        for mode in [
            CipherMode::ChaCha20,
            CipherMode::ChaCha20Poly1305 { tag_len: 16 },
        ] {
            let job = CipherJob {
                mode,
                data: Zeroizing::new(b"x".to_vec()),
                iv: Some(vec![0; 12]),
                aad: Vec::new(),
                tag: None,
            };
            assert!(matches!(
                job.validate(false),
                Err(BackendError::Unsupported(_))
            ));
        }
    }

    #[test]
    fn padding_round_trips_all_lengths() {
        for len in 0..=(3 * AES_BLOCK) {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let padded = pad(&data);
            assert_eq!(padded.len() % AES_BLOCK, 0);
            assert!(padded.len() > data.len());
            assert_eq!(unpad(padded).unwrap().as_slice(), data.as_slice());
        }
    }

    #[test]
    fn bad_padding_is_an_integrity_failure() {
        let mut bad = vec![0u8; AES_BLOCK];
        bad[AES_BLOCK - 1] = 3;
        bad[AES_BLOCK - 2] = 3;
        bad[AES_BLOCK - 3] = 2;
        for input in [
            bad,
            vec![0u8; AES_BLOCK],
            vec![17u8; AES_BLOCK],
            vec![1u8; AES_BLOCK - 1],
            Vec::new(),
        ] {
            assert!(matches!(
                unpad(Zeroizing::new(input)),
                Err(BackendError::IntegrityCheckFailed)
            ));
        }
    }
}
