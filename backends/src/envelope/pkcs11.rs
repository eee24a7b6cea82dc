//! A KEK that never leaves an HSM: an AES-256 key on a PKCS#11 token, found by its label. Data
//! keys are wrapped and unwrapped inside the token (`CKM_AES_KEY_WRAP_PAD`, RFC 5649, the same
//! wrapping as [`super::FileKek`]); in the token they exist only as session objects, destroyed
//! as soon as the call is done. Calls run on a small pool of sessions (the PKCS#11 backend's
//! [`Token`]), each on a blocking thread.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use tracing::warn;
use zeroize::Zeroizing;

use super::{Kek, KEY_LEN};
use crate::error::FailureClass;
use crate::pkcs11::{p11_error, Pkcs11Config, Token, ZeroizeTemplate};
use crate::BackendError;

/// Sessions kept for wrapping: unwraps of many objects (a start, a rotation) run in parallel on
/// them; a software token gains nothing beyond a few (stack notes), an HSM limits sessions.
const KEK_POOL_SIZE: u32 = 4;
/// How long a wrap or unwrap waits for a free session before failing with `Busy`.
const KEK_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest data key accepted: data keys are [`KEY_LEN`] bytes; the bound keeps a caller from
/// putting large values into token memory.
const MAX_DATA_KEY_LEN: usize = 64;
/// Longest key label accepted (token labels are 32 bytes; object labels have no fixed limit).
const MAX_KEY_LABEL_LEN: usize = 64;

/// A key encryption key held by a PKCS#11 token.
pub struct Pkcs11Kek {
    token: Token,
    /// The key's handle, found again by `label` when the token says it is stale.
    key: RwLock<ObjectHandle>,
    label: String,
    id: String,
}

impl fmt::Debug for Pkcs11Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Kek")
            .field("id", &self.id)
            .field("pool", &self.token.pool.state())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Kek {
    /// Opens the token labelled `token_label` in the module at `module`, logs in with `pin` and
    /// finds the secret key labelled `key_label`. Fails, saying what to do, if the key is
    /// missing or not unique, is not an AES-256 key, or may not wrap and unwrap.
    pub async fn open(
        module: &Path,
        token_label: &str,
        pin: Zeroizing<String>,
        key_label: &str,
    ) -> Result<Pkcs11Kek, BackendError> {
        if key_label.is_empty() || key_label.len() > MAX_KEY_LABEL_LEN {
            return Err(BackendError::InvalidInput(format!(
                "the key encryption key's label must be 1..={MAX_KEY_LABEL_LEN} bytes"
            )));
        }
        let token = Token::open(Pkcs11Config {
            module_path: module.to_path_buf(),
            token_label: token_label.to_owned(),
            pin,
            pool_size: KEK_POOL_SIZE,
            acquire_timeout: KEK_ACQUIRE_TIMEOUT,
        })
        .await?;
        let id = format!("pkcs11:{token_label}/{key_label}");
        let label = key_label.to_owned();
        match token.with_session(move |s| find_kek(s, &label)).await {
            Ok(key) => Ok(Pkcs11Kek {
                token,
                key: RwLock::new(key),
                label: key_label.to_owned(),
                id,
            }),
            Err(e) => {
                // Log out and let the module go before answering, so a corrected retry starts
                // afresh.
                let owner = token.owner();
                drop(token);
                Token::closed(owner).await;
                Err(e)
            }
        }
    }

    /// Runs `op` with the key's handle on a pooled session. A handle the token calls invalid
    /// (the token was reloaded) is found again by label, once, as a restart would.
    async fn with_kek<T, F>(&self, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&Session, ObjectHandle) -> Result<T, BackendError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let key = *self.key.read().unwrap_or_else(PoisonError::into_inner);
        let first = Arc::clone(&op);
        match self.token.with_session(move |s| first(s, key)).await {
            Err(BackendError::Call {
                class: FailureClass::NotFound,
                ..
            }) => {
                warn!(kek = %self.id, "the key encryption key's handle is stale; finding it again by its label");
                let label = self.label.clone();
                let key = self
                    .token
                    .with_session(move |s| find_kek(s, &label))
                    .await?;
                *self.key.write().unwrap_or_else(PoisonError::into_inner) = key;
                self.token.with_session(move |s| op(s, key)).await
            }
            other => other,
        }
    }

    /// Drops the KEK and waits (bounded) until its sessions are closed and, if it was the
    /// module's last user, the module is finalised, so that it can be opened afresh.
    pub async fn close(self) {
        let owner = self.token.owner();
        drop(self);
        Token::closed(owner).await;
    }
}

/// The unique AES-256 key labelled `label`, checked for wrap and unwrap. Blocking.
fn find_kek(session: &Session, label: &str) -> Result<ObjectHandle, BackendError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(p11_error)?;
    let key = match found.as_slice() {
        [key] => *key,
        [] => {
            return Err(BackendError::Unavailable(format!(
                "no secret key labelled {label:?} on the token: create it \
                 (deploy/softhsm/create-kek.sh, or the HSM vendor's tool: AES-256, wrap and unwrap)"
            )))
        }
        _ => {
            return Err(BackendError::Unavailable(format!(
                "{} secret keys on the token are labelled {label:?}; a key encryption key's label must be unique",
                found.len()
            )))
        }
    };
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Wrap,
                AttributeType::Unwrap,
            ],
        )
        .map_err(p11_error)?;
    let (mut key_type, mut len, mut wrap, mut unwrap) = (None, None, false, false);
    for attr in attrs {
        match attr {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::ValueLen(l) => len = Some(u64::from(l)),
            Attribute::Wrap(w) => wrap = w,
            Attribute::Unwrap(u) => unwrap = u,
            _ => {}
        }
    }
    // AES-256: the data keys it protects are AES-256, and a weaker KEK would be the weak link.
    if key_type != Some(KeyType::AES) || len != Some(KEY_LEN as u64) {
        return Err(BackendError::InvalidInput(format!(
            "the key labelled {label:?} is not an AES-256 key; a key encryption key must be one"
        )));
    }
    if !(wrap && unwrap) {
        return Err(BackendError::InvalidInput(format!(
            "the key labelled {label:?} may not wrap and unwrap (CKA_WRAP and CKA_UNWRAP must be true)"
        )));
    }
    Ok(key)
}

/// Template of a data key inside the token: a session object (gone when the session closes,
/// never written to the token's storage), readable so that it can be wrapped and returned.
fn data_key_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        // Any length: the wrapping does not depend on what the data key is for.
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ]
}

/// Destroys a session object made by a call, logging (never failing the call) if the token
/// refuses: the object dies with its session anyway.
fn discard(session: &Session, handle: ObjectHandle) {
    if let Err(e) = session.destroy_object(handle) {
        warn!(error = %e, "could not destroy a data key's session object; it goes with its session");
    }
}

/// Wraps `data_key` under `kek`. Blocking.
fn wrap_in_token(
    session: &Session,
    kek: ObjectHandle,
    data_key: &[u8],
) -> Result<Vec<u8>, BackendError> {
    let mut template = ZeroizeTemplate(data_key_template());
    template.0.push(Attribute::Value(data_key.to_vec()));
    let handle = session.create_object(&template.0).map_err(p11_error)?;
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, kek, handle);
    discard(session, handle);
    wrapped.map_err(p11_error)
}

/// Unwraps `wrapped` under `kek` and reads the data key out. Blocking.
fn unwrap_in_token(
    session: &Session,
    kek: ObjectHandle,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let handle = match session.unwrap_key(
        &Mechanism::AesKeyWrapPad,
        kek,
        wrapped,
        &data_key_template(),
    ) {
        Ok(handle) => handle,
        // The integrity check of RFC 5649 failed: another KEK's wrapping, or altered bytes.
        Err(CkError::Pkcs11(
            RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange,
            _,
        )) => return Err(BackendError::IntegrityCheckFailed),
        // SoftHSM2 answers a failed integrity check with CKR_GENERAL_ERROR. Only if the token
        // still answers for the KEK is that read as the integrity failure; a device fault stays
        // one.
        Err(CkError::Pkcs11(RvError::GeneralError, _))
            if session
                .get_attributes(kek, &[AttributeType::KeyType])
                .is_ok() =>
        {
            return Err(BackendError::IntegrityCheckFailed)
        }
        Err(e) => return Err(p11_error(e)),
    };
    let value = session.get_attributes(handle, &[AttributeType::Value]);
    discard(session, handle);
    value
        .map_err(p11_error)?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) => Some(Zeroizing::new(v)),
            _ => None,
        })
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            BackendError::Crypto("the token did not return the unwrapped data key".into())
        })
}

#[async_trait]
impl Kek for Pkcs11Kek {
    /// `pkcs11:<token label>/<key label>`: a rotated KEK needs a new key label.
    fn id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, BackendError> {
        if data_key.is_empty() || data_key.len() > MAX_DATA_KEY_LEN {
            return Err(BackendError::InvalidInput(format!(
                "a data key must be 1..={MAX_DATA_KEY_LEN} bytes"
            )));
        }
        let data_key = Zeroizing::new(data_key.to_vec());
        self.with_kek(move |s, kek| wrap_in_token(s, kek, &data_key))
            .await
    }

    async fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        // RFC 5649 output: at least two 8-byte blocks, at most the data key plus one block and
        // padding; anything else is not a wrapping of ours.
        if wrapped.len() < 16 || wrapped.len() > MAX_DATA_KEY_LEN + 16 {
            return Err(BackendError::IntegrityCheckFailed);
        }
        let wrapped = wrapped.to_vec();
        self.with_kek(move |s, kek| unwrap_in_token(s, kek, &wrapped))
            .await
    }
}

#[cfg(test)]
mod tests;
