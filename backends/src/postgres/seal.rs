//! The envelope of one object: its material sealed with AES-256-GCM under a fresh data key, the
//! data key wrapped by the current KEK. The object's uid, kind and key facts are bound as
//! associated data, so a database writer can neither swap sealed material between objects nor
//! make a non-extractable key extractable.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

use crate::envelope::{KekRing, KEY_LEN};
use crate::{BackendError, KeyAlgorithm, KeySpec, ObjectKind};

/// Domain separation of the associated data: the format of this backend's sealed material.
const AAD_CONTEXT: &[u8] = b"kmip-gateway postgres sealed material v1";

/// A sealed object as stored: nonce || ciphertext || tag, the wrapped data key, the KEK's id.
pub(crate) struct Sealed {
    pub(crate) sealed: Vec<u8>,
    pub(crate) wrapped_key: Vec<u8>,
    pub(crate) kek_id: String,
}

/// The stored code of an algorithm. Part of the schema: never renumber.
pub(crate) fn algorithm_code(a: KeyAlgorithm) -> i16 {
    match a {
        KeyAlgorithm::Aes => 1,
        KeyAlgorithm::HmacSha256 => 2,
        KeyAlgorithm::TripleDes => 3,
        KeyAlgorithm::ChaCha20 => 4,
    }
}

pub(crate) fn algorithm_from_code(code: i16) -> Option<KeyAlgorithm> {
    match code {
        1 => Some(KeyAlgorithm::Aes),
        2 => Some(KeyAlgorithm::HmacSha256),
        3 => Some(KeyAlgorithm::TripleDes),
        4 => Some(KeyAlgorithm::ChaCha20),
        _ => None,
    }
}

fn aad(uid: &str, kind: ObjectKind, spec: Option<&KeySpec>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_CONTEXT.len() + uid.len() + 16);
    aad.extend_from_slice(AAD_CONTEXT);
    aad.extend_from_slice(&(uid.len() as u64).to_be_bytes());
    aad.extend_from_slice(uid.as_bytes());
    aad.push(kind.code());
    match spec {
        None => aad.push(0),
        Some(s) => {
            aad.push(1);
            aad.extend_from_slice(&algorithm_code(s.algorithm).to_be_bytes());
            aad.extend_from_slice(&s.bits.to_be_bytes());
            aad.push(u8::from(s.extractable));
            aad.push(u8::from(s.sensitive));
        }
    }
    aad
}

fn gcm(key: &[u8]) -> Result<LessSafeKey, BackendError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| BackendError::Crypto("data key refused".into()))
}

/// Seals `material` under a new data key wrapped by the ring's current KEK.
pub(crate) async fn seal(
    keks: &KekRing,
    uid: &str,
    kind: ObjectKind,
    spec: Option<&KeySpec>,
    material: &[u8],
) -> Result<Sealed, BackendError> {
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut data_key[..])
        .and_then(|()| aws_lc_rs::rand::fill(&mut nonce))
        .map_err(|_| BackendError::Crypto("random generator failed".into()))?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + material.len() + 16);
    sealed.extend_from_slice(&nonce);
    let mut body = Zeroizing::new(material.to_vec());
    let tag = gcm(&data_key[..])?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(uid, kind, spec)),
            &mut body[..],
        )
        .map_err(|_| BackendError::Crypto("sealing failed".into()))?;
    sealed.extend_from_slice(&body);
    sealed.extend_from_slice(tag.as_ref());
    let kek = keks.current();
    Ok(Sealed {
        sealed,
        wrapped_key: kek.wrap(&data_key[..]).await?,
        kek_id: kek.id().to_owned(),
    })
}

/// The data key of a stored object, unwrapped by the KEK its row names.
pub(crate) async fn unwrap_key(
    keks: &KekRing,
    uid: &str,
    wrapped_key: &[u8],
    kek_id: &str,
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let kek = keks.by_id(kek_id).ok_or_else(|| {
        BackendError::Unavailable(format!(
            "object {uid}'s data key is wrapped by the key encryption key {kek_id}, which is \
             not configured: add it to backend.previous_keks (and run `kmip-gateway kek rotate` \
             to move every data key to the current one)"
        ))
    })?;
    kek.unwrap(wrapped_key).await.map_err(|_| {
        BackendError::Corrupt(format!(
            "object {uid}'s data key does not unwrap under the key encryption key {kek_id}"
        ))
    })
}

/// Opens sealed material with its (unwrapped) data key.
pub(crate) fn open(
    data_key: &[u8],
    uid: &str,
    kind: ObjectKind,
    spec: Option<&KeySpec>,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let corrupt = || BackendError::Corrupt(format!("object {uid}'s sealed material does not open"));
    let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or_else(corrupt)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = gcm(data_key)?
        .open_in_place(nonce, Aad::from(aad(uid, kind, spec)), &mut buf[..])
        .map_err(|_| corrupt())?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::FileKek;
    use std::sync::Arc;

    fn spec(extractable: bool) -> KeySpec {
        KeySpec {
            algorithm: KeyAlgorithm::Aes,
            bits: 128,
            extractable,
            sensitive: false,
            label: None,
        }
    }

    #[tokio::test]
    async fn material_opens_only_for_its_own_uid_kind_and_key_facts() {
        let keks = KekRing::new(
            Arc::new(FileKek::from_bytes("k", &[1u8; KEY_LEN]).unwrap()),
            vec![],
        )
        .unwrap();
        let m = [9u8; 16];
        let s = seal(&keks, "a", ObjectKind::SymmetricKey, Some(&spec(false)), &m)
            .await
            .unwrap();
        assert!(!s.sealed.windows(16).any(|w| w == m));
        let dk = unwrap_key(&keks, "a", &s.wrapped_key, &s.kek_id)
            .await
            .unwrap();
        let open_as = |uid, kind, sp: &KeySpec| open(&dk, uid, kind, Some(sp), &s.sealed);
        assert_eq!(
            &open_as("a", ObjectKind::SymmetricKey, &spec(false)).unwrap()[..],
            &m
        );
        assert!(open_as("b", ObjectKind::SymmetricKey, &spec(false)).is_err());
        assert!(open_as("a", ObjectKind::SecretData, &spec(false)).is_err());
        assert!(open_as("a", ObjectKind::SymmetricKey, &spec(true)).is_err());
        let e = unwrap_key(&keks, "a", &s.wrapped_key, "file:gone")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("file:gone") && e.contains("backend.previous_keks"),
            "{e}"
        );
    }
}
