//! Multi-part (streaming) Encrypt and Decrypt: a cipher state that lives between the parts
//! of one message. The software form here serves the vault and PostgreSQL; the PKCS#11
//! backend holds a token session instead (`pkcs11/stream.rs`).
//!
//! Streaming AES-GCM Decrypt releases no plaintext before the tag is verified: its parts are
//! buffered (at most [`MAX_STREAM_BUFFER`] bytes) and the whole plaintext comes with the final
//! part, once the tag matched.

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::KeyAlgorithm;
use crate::{cipher, ctr, gcm, random, BackendError, CipherMode, CipherOutput, CipherRequest};

/// Most bytes one stream holds between parts (the ciphertext of a GCM Decrypt waiting for its
/// tag, less than a block otherwise): protects the server's memory from a client that streams
/// without end.
pub const MAX_STREAM_BUFFER: usize = 16 * 1024 * 1024;

/// The GCM nonce generated when an Encrypt gives none (the length GCM takes natively).
const GCM_NONCE_LEN: usize = 12;

/// The first part of a stream: the mode and its IV and AAD (later parts carry only data).
pub struct StreamRequest {
    pub mode: CipherMode,
    /// For Encrypt, `None` lets the backend generate one (returned in [`StartedStream`]).
    pub iv: Option<Vec<u8>>,
    pub aad: Option<Vec<u8>>,
    pub decrypt: bool,
}

/// A started stream and the IV the backend generated for it, if it did.
pub struct StartedStream {
    pub stream: Box<dyn CipherStream>,
    pub generated_iv: Option<Vec<u8>>,
}

/// The state of one multi-part Encrypt or Decrypt. Dropping it ends the stream and zeroizes
/// (or, on a token, discards) its key state.
#[async_trait]
pub trait CipherStream: Send {
    /// Processes one middle part; returns the output it makes available now.
    async fn update(
        &mut self,
        data: Zeroizing<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError>;

    /// Processes the final part and ends the stream; `tag` is a GCM Decrypt's tag.
    async fn finish(
        self: Box<Self>,
        data: Zeroizing<Vec<u8>>,
        tag: Option<Vec<u8>>,
    ) -> Result<CipherOutput, BackendError>;
}

/// Refuses a mode no backend streams.
pub(crate) fn check_streamable(mode: CipherMode) -> Result<(), BackendError> {
    match mode {
        CipherMode::Gcm { .. }
        | CipherMode::Cbc { .. }
        | CipherMode::Ecb { .. }
        | CipherMode::Ctr => Ok(()),
        other => Err(BackendError::Unsupported(format!(
            "{other:?} cannot be used in a multi-part Encrypt or Decrypt"
        ))),
    }
}

fn too_much() -> BackendError {
    BackendError::InvalidInput(format!(
        "a multi-part operation holds at most {MAX_STREAM_BUFFER} bytes between parts"
    ))
}

/// A stream over key bytes held in memory.
pub(crate) struct SoftwareStream {
    algorithm: Option<KeyAlgorithm>,
    key: Zeroizing<Vec<u8>>,
    mode: CipherMode,
    decrypt: bool,
    /// The IV (CBC: the chaining value for the next block).
    iv: Option<Vec<u8>>,
    aad: Option<Vec<u8>>,
    /// Input not yet processed: a partial block, a held-back last block (CBC/ECB Decrypt with
    /// padding), or a whole GCM ciphertext awaiting its tag.
    pending: Zeroizing<Vec<u8>>,
    sealer: Option<gcm::GcmSealer>,
    ctr: Option<ctr::CtrStream>,
}

impl SoftwareStream {
    pub(crate) fn start(
        algorithm: Option<KeyAlgorithm>,
        key: Zeroizing<Vec<u8>>,
        req: StreamRequest,
    ) -> Result<StartedStream, BackendError> {
        check_streamable(req.mode)?;
        let block = block_len(algorithm);
        let mut generated_iv = None;
        let iv = match (req.mode, req.iv) {
            (CipherMode::Ecb { .. }, Some(_)) => {
                return Err(BackendError::InvalidInput("ECB mode takes no IV".into()))
            }
            (CipherMode::Ecb { .. }, None) => None,
            (_, Some(iv)) => Some(iv),
            (_, None) if req.decrypt => {
                return Err(BackendError::InvalidInput(
                    "a multi-part Decrypt needs the IV".into(),
                ))
            }
            (mode, None) => {
                let len = if matches!(mode, CipherMode::Gcm { .. }) {
                    GCM_NONCE_LEN
                } else {
                    block
                };
                let iv = random::software_bytes(len)?.to_vec();
                generated_iv = Some(iv.clone());
                Some(iv)
            }
        };
        if req.mode == CipherMode::Ctr && algorithm == Some(KeyAlgorithm::TripleDes) {
            return Err(BackendError::InvalidInput(
                "Triple DES streams only in ECB and CBC".into(),
            ));
        }
        if matches!(req.mode, CipherMode::Cbc { .. } | CipherMode::Ctr)
            && iv.as_ref().map(Vec::len) != Some(block)
        {
            return Err(BackendError::InvalidInput(format!(
                "the IV must be one {block}-byte block"
            )));
        }
        let sealer = match (req.mode, &iv) {
            (CipherMode::Gcm { .. }, Some(nonce)) if !req.decrypt => Some(gcm::GcmSealer::new(
                &key,
                nonce,
                req.aad.as_deref().unwrap_or_default(),
            )?),
            _ => None,
        };
        let ctr = match (req.mode, &iv) {
            (CipherMode::Ctr, Some(iv)) => Some(ctr::CtrStream::new(&key, iv, req.decrypt)?),
            _ => None,
        };
        Ok(StartedStream {
            stream: Box::new(SoftwareStream {
                algorithm,
                key,
                mode: req.mode,
                decrypt: req.decrypt,
                iv,
                aad: req.aad,
                pending: Zeroizing::new(Vec::new()),
                sealer,
                ctr,
            }),
            generated_iv,
        })
    }

    fn take_input(&mut self, data: &[u8]) -> Result<(), BackendError> {
        if self.pending.len().saturating_add(data.len()) > MAX_STREAM_BUFFER {
            return Err(too_much());
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// Runs the one-shot cipher over `data` as one stretch of the stream, then moves the
    /// chaining value on: CBC's next IV is the last ciphertext block.
    fn one_shot(
        &mut self,
        data: Zeroizing<Vec<u8>>,
        mode: CipherMode,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        if data.is_empty()
            && !matches!(
                mode,
                CipherMode::Cbc { pad: true } | CipherMode::Ecb { pad: true }
            )
        {
            return Ok(data);
        }
        let block = block_len(self.algorithm);
        let ct_tail = |ct: &[u8]| ct[ct.len().saturating_sub(block)..].to_vec();
        let input_tail = ct_tail(&data);
        let req = CipherRequest {
            mode,
            data,
            iv: self.iv.clone(),
            aad: None,
            tag: None,
        };
        let out = if self.decrypt {
            cipher::decrypt_with(self.algorithm, &self.key, req)?.data
        } else {
            cipher::encrypt_with(self.algorithm, &self.key, req)?.data
        };
        match mode {
            CipherMode::Cbc { .. } if self.decrypt => self.iv = Some(input_tail),
            CipherMode::Cbc { .. } => self.iv = Some(ct_tail(&out)),
            _ => {}
        }
        Ok(out)
    }

    /// The whole blocks of `pending` that may be processed now; with padding a Decrypt keeps
    /// the last block back, since only the final part may strip the padding.
    fn ready(&self) -> usize {
        let block = block_len(self.algorithm);
        let whole = self.pending.len() / block * block;
        let hold_back = self.decrypt
            && matches!(
                self.mode,
                CipherMode::Cbc { pad: true } | CipherMode::Ecb { pad: true }
            )
            && whole == self.pending.len();
        if hold_back {
            whole.saturating_sub(block)
        } else {
            whole
        }
    }
}

/// The block length of the key's cipher (Triple DES 8 bytes, AES 16).
fn block_len(algorithm: Option<KeyAlgorithm>) -> usize {
    if algorithm == Some(KeyAlgorithm::TripleDes) {
        8
    } else {
        16
    }
}

#[async_trait]
impl CipherStream for SoftwareStream {
    async fn update(
        &mut self,
        data: Zeroizing<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        if let Some(sealer) = self.sealer.as_mut() {
            let mut data = data;
            sealer.update(&mut data)?;
            return Ok(data);
        }
        if let Some(ctr) = self.ctr.as_mut() {
            return ctr.update(&data);
        }
        self.take_input(&data)?;
        if matches!(self.mode, CipherMode::Gcm { .. }) {
            // A Decrypt: nothing is released before the tag is checked.
            return Ok(Zeroizing::new(Vec::new()));
        }
        let n = self.ready();
        let rest = Zeroizing::new(self.pending[n..].to_vec());
        let mut now = std::mem::replace(&mut self.pending, rest);
        now.truncate(n);
        let mode = match self.mode {
            CipherMode::Cbc { .. } => CipherMode::Cbc { pad: false },
            CipherMode::Ecb { .. } => CipherMode::Ecb { pad: false },
            other => other,
        };
        self.one_shot(now, mode)
    }

    async fn finish(
        mut self: Box<Self>,
        data: Zeroizing<Vec<u8>>,
        tag: Option<Vec<u8>>,
    ) -> Result<CipherOutput, BackendError> {
        if let Some(mut sealer) = self.sealer.take() {
            let CipherMode::Gcm { tag_len } = self.mode else {
                return Err(BackendError::InvalidInput("not a GCM stream".into()));
            };
            let mut data = data;
            sealer.update(&mut data)?;
            let full = sealer.finish()?;
            return Ok(CipherOutput {
                data,
                generated_iv: None,
                tag: Some(full[..tag_len.min(full.len())].to_vec()),
            });
        }
        if let Some(ctr) = self.ctr.as_mut() {
            return Ok(CipherOutput {
                data: ctr.update(&data)?,
                generated_iv: None,
                tag: None,
            });
        }
        self.take_input(&data)?;
        let all = std::mem::replace(&mut self.pending, Zeroizing::new(Vec::new()));
        if matches!(self.mode, CipherMode::Gcm { .. }) {
            // The whole ciphertext, verified before any of it is decrypted.
            return cipher::decrypt_with(
                self.algorithm,
                &self.key,
                CipherRequest {
                    mode: self.mode,
                    data: all,
                    iv: self.iv.clone(),
                    aad: self.aad.clone(),
                    tag,
                },
            );
        }
        let mode = self.mode;
        let data = self.one_shot(all, mode)?;
        Ok(CipherOutput {
            data,
            generated_iv: None,
            tag: None,
        })
    }
}

#[cfg(test)]
mod tests;
