//! A KEK held in the gateway's memory, read from a file or an environment variable.

use super::{Kek, KEY_LEN};
use crate::BackendError;
use async_trait::async_trait;
use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Domain separation of the id: the id is a hash of the key, never usable as the key.
const ID_CONTEXT: &[u8] = b"kmip-gateway file kek id v1";

/// RFC 5649 adds up to 15 bytes (an 8-byte block and padding to 8).
const WRAP_OVERHEAD: usize = 15;

pub struct FileKek {
    key: Zeroizing<[u8; KEY_LEN]>,
    id: String,
}

impl FileKek {
    /// A KEK from its 32 bytes. `name` (a file path or variable name) goes into errors only.
    pub fn from_bytes(name: &str, key: &[u8]) -> Result<FileKek, BackendError> {
        let key: [u8; KEY_LEN] = key.try_into().map_err(|_| {
            BackendError::InvalidInput(format!(
                "the key encryption key {name} must be {KEY_LEN} bytes ({} hex digits), not {}",
                KEY_LEN * 2,
                key.len()
            ))
        })?;
        let digest = Sha256::new()
            .chain_update(ID_CONTEXT)
            .chain_update(key)
            .finalize();
        Ok(FileKek {
            key: Zeroizing::new(key),
            id: format!("file:{}", hex::encode(&digest[..8])),
        })
    }

    /// A KEK from hex text (a file's content or a variable's value), surrounding space ignored.
    pub fn from_hex(name: &str, text: &str) -> Result<FileKek, BackendError> {
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| {
            BackendError::InvalidInput(format!(
                "the key encryption key {name} is not hex ({} hex digits expected)",
                KEY_LEN * 2
            ))
        })?);
        FileKek::from_bytes(name, &bytes)
    }

    fn kek(&self) -> Result<AesKek, BackendError> {
        AesKek::new(&AES_256, &self.key[..])
            .map_err(|_| BackendError::Crypto("the key encryption key was refused".into()))
    }
}

#[async_trait]
impl Kek for FileKek {
    fn id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mut out = vec![0u8; data_key.len() + WRAP_OVERHEAD];
        let len = self
            .kek()?
            .wrap_with_padding(data_key, &mut out)
            .map_err(|_| BackendError::Crypto("key wrap failed".into()))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    async fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
        let len = self
            .kek()?
            .unwrap_with_padding(wrapped, &mut out)
            .map_err(|_| BackendError::IntegrityCheckFailed)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wraps_and_unwraps_and_refuses_another_keys_wrap() {
        let a = FileKek::from_bytes("a", &[7u8; KEY_LEN]).unwrap();
        let b = FileKek::from_hex("b", &hex::encode([8u8; KEY_LEN])).unwrap();
        let dek = [42u8; KEY_LEN];
        let wrapped = a.wrap(&dek).await.unwrap();
        assert_ne!(&wrapped[..KEY_LEN], &dek[..]);
        assert_eq!(&a.unwrap(&wrapped).await.unwrap()[..], &dek[..]);
        assert!(matches!(
            b.unwrap(&wrapped).await,
            Err(BackendError::IntegrityCheckFailed)
        ));
        assert_ne!(a.id(), b.id());
        assert!(!a.id().contains(&hex::encode([7u8; 4])));
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused_by_name() {
        let e = FileKek::from_hex("/etc/kek", "abcd")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/etc/kek") && e.contains("64 hex digits"), "{e}");
    }
}
