//! Multi-part Encrypt and Decrypt on the token: `C_EncryptInit`/`Update`/`Final` (and the
//! Decrypt calls) on one session held out of the pool for the whole stream. At most
//! `pool size − 1` sessions are held (`Token::stream_permits`), so streams never starve single
//! requests; a stream that is dropped unfinished closes its session (ending the token's
//! operation) instead of giving it back with an operation still active. Every call runs on a
//! blocking thread.
//!
//! AES-GCM Decrypt is buffered (at most `MAX_STREAM_BUFFER` bytes) and decrypted in one
//! `C_Decrypt` with the final part, so no plaintext is released before the tag is verified.
//! PKCS#11 has no padded ECB mechanism, so ECB with padding does not stream here.

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use tokio::sync::OwnedSemaphorePermit;
use zeroize::Zeroizing;

use super::backend::key_handle;
use super::cipher::{self, CipherJob, AES_BLOCK};
use super::des3::is_des3;
use super::pool::SessionManager;
use super::{p11_error, Pkcs11Backend};
use crate::stream::MAX_STREAM_BUFFER;
use crate::stream::{check_streamable, CipherStream, StartedStream, StreamRequest};
use crate::{BackendError, CipherMode, CipherOutput};

/// The Triple DES block, and so its CBC IV (bytes).
const DES3_BLOCK: usize = 8;

type Conn = bb8::PooledConnection<'static, SessionManager>;

pub(super) struct TokenStream {
    conn: Option<Conn>,
    _permit: OwnedSemaphorePermit,
    key: ObjectHandle,
    mode: CipherMode,
    decrypt: bool,
    /// A GCM Decrypt: the ciphertext, waiting for its tag.
    buffered: Option<Zeroizing<Vec<u8>>>,
    iv: Vec<u8>,
    aad: Vec<u8>,
    /// The token's operation has ended (finished or failed): the session may go back.
    done: bool,
}

impl Pkcs11Backend {
    pub(super) async fn start_token_stream(
        &self,
        uid: &str,
        req: StreamRequest,
    ) -> Result<StartedStream, BackendError> {
        check_streamable(req.mode)?;
        if req.mode == CipherMode::Ctr {
            return Err(cipher::no_ctr());
        }
        if matches!(req.mode, CipherMode::Ecb { pad: true }) {
            return Err(BackendError::Unsupported(
                "ECB with padding does not stream on a PKCS#11 token (it has no padded ECB \
                 mechanism); use CBC"
                    .into(),
            ));
        }
        if req.decrypt && req.iv.is_none() && !matches!(req.mode, CipherMode::Ecb { .. }) {
            return Err(BackendError::InvalidInput(
                "a multi-part Decrypt needs the IV".into(),
            ));
        }
        let permit = self
            .token
            .stream_permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| BackendError::Busy(std::time::Duration::ZERO))?;
        let (entry, _) = self.lookup(uid)?;
        let key = key_handle(uid, &entry)?;
        let conn = self.token.checkout().await?;
        let mut stream = TokenStream {
            conn: Some(conn),
            _permit: permit,
            key,
            mode: req.mode,
            decrypt: req.decrypt,
            buffered: None,
            iv: req.iv.clone().unwrap_or_default(),
            aad: req.aad.clone().unwrap_or_default(),
            done: true,
        };
        let (mode, decrypt, given_iv, aad) = (req.mode, req.decrypt, req.iv, stream.aad.clone());
        if decrypt && matches!(mode, CipherMode::Gcm { .. }) {
            stream.buffered = Some(Zeroizing::new(Vec::new()));
            return Ok(StartedStream {
                stream: Box::new(stream),
                generated_iv: None,
            });
        }
        let generated_iv = stream
            .run(move |s| init(s, key, mode, decrypt, given_iv, &aad))
            .await?;
        if let Some(iv) = &generated_iv {
            stream.iv.clone_from(iv);
        }
        stream.done = false;
        Ok(StartedStream {
            stream: Box::new(stream),
            generated_iv,
        })
    }
}

/// `C_EncryptInit`/`C_DecryptInit` for the mode; returns the IV it generated, if any.
fn init(
    s: &Session,
    key: ObjectHandle,
    mode: CipherMode,
    decrypt: bool,
    iv: Option<Vec<u8>>,
    aad: &[u8],
) -> Result<Option<Vec<u8>>, BackendError> {
    let des3 = is_des3(s, key)?;
    let block = if des3 { DES3_BLOCK } else { AES_BLOCK };
    let (mut iv, generated) = match (iv, mode) {
        (Some(_), CipherMode::Ecb { .. }) => {
            return Err(BackendError::InvalidInput("ECB mode takes no IV".into()))
        }
        (Some(iv), _) => (iv, false),
        (None, CipherMode::Ecb { .. }) => (Vec::new(), false),
        (None, CipherMode::Gcm { .. }) => (
            cipher::random(s, cipher::GCM_DEFAULT_IV_LEN)?.to_vec(),
            true,
        ),
        (None, _) => (cipher::random(s, block)?.to_vec(), true),
    };
    let generated_iv = generated.then(|| iv.clone());
    let bad_iv = || BackendError::InvalidInput(format!("the IV must be one {block}-byte block"));
    let mechanism = match (mode, des3) {
        (CipherMode::Gcm { .. }, true) => {
            return Err(BackendError::InvalidInput(
                "Triple DES streams only in ECB and CBC".into(),
            ))
        }
        (CipherMode::Gcm { tag_len }, false) => {
            let job = CipherJob {
                mode,
                data: Zeroizing::new(Vec::new()),
                iv: Some(iv.clone()),
                aad: aad.to_vec(),
                tag: None,
            };
            job.validate(false)?;
            let bits = cryptoki::types::Ulong::try_from(tag_len * 8)
                .map_err(|_| BackendError::InvalidInput("GCM tag length out of range".into()))?;
            let params = GcmParams::new(&mut iv, aad, bits).map_err(p11_error)?;
            return begin(s, &Mechanism::AesGcm(params), key, decrypt).map(|()| generated_iv);
        }
        (CipherMode::Cbc { pad }, true) => {
            let iv: [u8; DES3_BLOCK] = iv.as_slice().try_into().map_err(|_| bad_iv())?;
            if pad {
                Mechanism::Des3CbcPad(iv)
            } else {
                Mechanism::Des3Cbc(iv)
            }
        }
        (CipherMode::Cbc { pad }, false) => {
            let iv: [u8; AES_BLOCK] = iv.as_slice().try_into().map_err(|_| bad_iv())?;
            if pad {
                Mechanism::AesCbcPad(iv)
            } else {
                Mechanism::AesCbc(iv)
            }
        }
        (CipherMode::Ecb { .. }, true) => Mechanism::Des3Ecb,
        (CipherMode::Ecb { .. }, false) => Mechanism::AesEcb,
        (other, _) => {
            return Err(BackendError::Unsupported(format!(
                "{other:?} does not stream on a PKCS#11 token"
            )))
        }
    };
    begin(s, &mechanism, key, decrypt).map(|()| generated_iv)
}

fn begin(
    s: &Session,
    mechanism: &Mechanism<'_>,
    key: ObjectHandle,
    decrypt: bool,
) -> Result<(), BackendError> {
    if decrypt {
        s.decrypt_init(mechanism, key)
    } else {
        s.encrypt_init(mechanism, key)
    }
    .map_err(p11_error)
}

impl TokenStream {
    /// Runs `op` on the held session on a blocking thread.
    async fn run<T, F>(&mut self, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Session) -> Result<T, BackendError> + Send + 'static,
    {
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| BackendError::Unavailable("the stream's session is gone".into()))?;
        let owned = conn
            .session
            .take()
            .ok_or_else(|| BackendError::Unavailable("the stream's session is gone".into()))?;
        let (owned, result) = tokio::task::spawn_blocking(move || {
            let result = op(&owned.session);
            (owned, result)
        })
        .await
        .map_err(|e| BackendError::Unavailable(format!("PKCS#11 worker failed: {e}")))?;
        conn.session = Some(owned);
        result
    }

    fn buffer(&mut self, data: &[u8]) -> Result<(), BackendError> {
        let Some(buffered) = self.buffered.as_mut() else {
            return Err(BackendError::InvalidInput("not a buffered stream".into()));
        };
        if buffered.len().saturating_add(data.len()) > MAX_STREAM_BUFFER {
            return Err(BackendError::InvalidInput(format!(
                "a multi-part operation holds at most {MAX_STREAM_BUFFER} bytes between parts"
            )));
        }
        buffered.extend_from_slice(data);
        Ok(())
    }
}

#[async_trait::async_trait]
impl CipherStream for TokenStream {
    async fn update(
        &mut self,
        data: Zeroizing<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        if self.buffered.is_some() {
            self.buffer(&data)?;
            return Ok(Zeroizing::new(Vec::new()));
        }
        if data.len() > cipher::MAX_CIPHER_DATA {
            return Err(BackendError::InvalidInput(format!(
                "a part longer than {} bytes",
                cipher::MAX_CIPHER_DATA
            )));
        }
        let decrypt = self.decrypt;
        let out = self
            .run(move |s| {
                if decrypt {
                    s.decrypt_update(&data)
                } else {
                    s.encrypt_update(&data)
                }
                .map_err(p11_error)
            })
            .await;
        // A failed update ends the token's operation (PKCS#11 §5.2).
        self.done = out.is_err();
        Ok(Zeroizing::new(out?))
    }

    async fn finish(
        mut self: Box<Self>,
        data: Zeroizing<Vec<u8>>,
        tag: Option<Vec<u8>>,
    ) -> Result<CipherOutput, BackendError> {
        if self.buffered.is_some() {
            self.buffer(&data)?;
            let job = CipherJob {
                mode: self.mode,
                data: self.buffered.take().unwrap_or_default(),
                iv: Some(self.iv.clone()),
                aad: self.aad.clone(),
                tag,
            };
            job.validate(true)?;
            let key = self.key;
            return self.run(move |s| cipher::decrypt(s, key, &job)).await;
        }
        let (decrypt, mode) = (self.decrypt, self.mode);
        let result = self
            .run(move |s| {
                let (mut out, last) = if decrypt {
                    let out = s
                        .decrypt_update(&data)
                        .map_err(|e| cipher::decrypt_error(e, mode))?;
                    (
                        out,
                        s.decrypt_final()
                            .map_err(|e| cipher::decrypt_error(e, mode))?,
                    )
                } else {
                    (
                        s.encrypt_update(&data).map_err(p11_error)?,
                        s.encrypt_final().map_err(p11_error)?,
                    )
                };
                out.extend_from_slice(&last);
                Ok(Zeroizing::new(out))
            })
            .await;
        self.done = true;
        let mut out = result?;
        let tag = match self.mode {
            // The token ends a GCM Encrypt's output with the tag.
            CipherMode::Gcm { tag_len } if !self.decrypt => {
                let split = out.len().checked_sub(tag_len).ok_or_else(|| {
                    BackendError::Crypto("GCM output shorter than its tag".into())
                })?;
                let tag = out[split..].to_vec();
                out.truncate(split);
                Some(tag)
            }
            _ => None,
        };
        Ok(CipherOutput {
            data: out,
            generated_iv: None,
            tag,
        })
    }
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The token still has the operation open on this session: close the session (off the
        // async workers) rather than give it back busy; the pool replaces it.
        if let Some(owned) = self.conn.as_mut().and_then(|c| c.session.take()) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(owned))),
                Err(_) => drop(owned),
            }
        }
    }
}
