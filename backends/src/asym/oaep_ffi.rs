//! RSA-OAEP through AWS-LC's EVP interface, called directly: aws-lc-rs offers OAEP only with
//! the MGF1 hash equal to the OAEP hash and never with a label, while KMIP names the two hashes
//! apart (Mask Generator Hashing Algorithm) and carries a label (P Source). AWS-LC's OAEP
//! decoding is constant-time; nothing here looks at the padding itself. The backends' one
//! module where `unsafe` is allowed (`tests/tests/structure.rs` holds that): every pointer has
//! an owner that frees it on every path, and every return code is checked.
#![allow(unsafe_code)]

use std::ptr::{self, NonNull};

use aws_lc_sys as sys;
use zeroize::Zeroizing;

use super::{HashAlgorithm, OaepParams};
use crate::BackendError;

/// An owned `EVP_PKEY`.
struct Key(NonNull<sys::EVP_PKEY>);

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: the pointer came from EVP_parse_*_key, is owned by this value alone, and is
        // freed exactly once here.
        unsafe { sys::EVP_PKEY_free(self.0.as_ptr()) }
    }
}

/// An owned `EVP_PKEY_CTX` (it holds its own reference to the key and owns a label set on it).
struct Ctx(NonNull<sys::EVP_PKEY_CTX>);

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: the pointer came from EVP_PKEY_CTX_new, is owned by this value alone, and is
        // freed exactly once here; freeing it frees a label handed to it by set0.
        unsafe { sys::EVP_PKEY_CTX_free(self.0.as_ptr()) }
    }
}

/// A label copied into AWS-LC's allocator, owned here until `EVP_PKEY_CTX_set0_rsa_oaep_label`
/// takes it.
struct Label {
    ptr: NonNull<u8>,
    len: usize,
}

impl Drop for Label {
    fn drop(&mut self) {
        // SAFETY: the buffer came from OPENSSL_malloc and was not handed over (`into_raw` forgets
        // the value when it is); OPENSSL_free accepts it exactly once.
        unsafe { sys::OPENSSL_free(self.ptr.as_ptr().cast()) }
    }
}

/// Which side of the key an operation uses.
#[derive(Clone, Copy)]
enum Side {
    Public,
    Private,
}

fn failed(what: &str) -> BackendError {
    // AWS-LC's error queue is per thread; left behind, it would be reported by a later call.
    // SAFETY: ERR_clear_error only empties this thread's queue.
    unsafe { sys::ERR_clear_error() }
    BackendError::Crypto(format!("RSA-OAEP {what} failed"))
}

fn md(hash: HashAlgorithm) -> *const sys::EVP_MD {
    // SAFETY: the EVP_sha* functions take nothing and return pointers to static tables.
    unsafe {
        match hash {
            HashAlgorithm::Sha1 => sys::EVP_sha1(),
            HashAlgorithm::Sha224 => sys::EVP_sha224(),
            HashAlgorithm::Sha256 => sys::EVP_sha256(),
            HashAlgorithm::Sha384 => sys::EVP_sha384(),
            HashAlgorithm::Sha512 => sys::EVP_sha512(),
        }
    }
}

/// Parses a whole DER key (SubjectPublicKeyInfo or PKCS#8); trailing bytes are refused.
fn parse(der: &[u8], side: Side) -> Result<Key, BackendError> {
    let not_rsa = || {
        // SAFETY: as in `failed`.
        unsafe { sys::ERR_clear_error() }
        BackendError::InvalidInput(match side {
            Side::Public => "not an RSA public key".into(),
            Side::Private => "not an RSA private key".into(),
        })
    };
    let mut cbs = sys::CBS {
        data: ptr::null(),
        len: 0,
    };
    // SAFETY: CBS_init records the slice's pointer and length; `der` outlives `cbs`, which is
    // only read by the parse below. The parse copies what it keeps into a new EVP_PKEY, owned by
    // `Key` at once.
    let key = unsafe {
        sys::CBS_init(&mut cbs, der.as_ptr(), der.len());
        match side {
            Side::Public => sys::EVP_parse_public_key(&mut cbs),
            Side::Private => sys::EVP_parse_private_key(&mut cbs),
        }
    };
    let key = Key(NonNull::new(key).ok_or_else(not_rsa)?);
    // SAFETY: the key is valid (owned by `key`); EVP_PKEY_id only reads it.
    let id = unsafe { sys::EVP_PKEY_id(key.0.as_ptr()) };
    if cbs.len != 0 || id != sys::EVP_PKEY_RSA {
        return Err(not_rsa());
    }
    Ok(key)
}

/// The modulus length in bytes: the ciphertext's length and the output buffer's bound.
fn modulus_len(key: &Key) -> Result<usize, BackendError> {
    // SAFETY: the key is valid; EVP_PKEY_size only reads it.
    let n = unsafe { sys::EVP_PKEY_size(key.0.as_ptr()) };
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| failed("setup"))
}

/// A context for one encryption or decryption with the OAEP hashes and label of `params`.
fn context(key: &Key, side: Side, params: &OaepParams) -> Result<Ctx, BackendError> {
    // SAFETY: the key is valid; the new context takes its own reference to it, so `key` may be
    // dropped first. A null engine is the default.
    let ctx = unsafe { sys::EVP_PKEY_CTX_new(key.0.as_ptr(), ptr::null_mut()) };
    let ctx = Ctx(NonNull::new(ctx).ok_or_else(|| failed("setup"))?);
    let c = ctx.0.as_ptr();
    // SAFETY: `c` is a valid context (owned by `ctx`); the hash tables are static. Each call
    // returns 1 on success.
    let ok = unsafe {
        let init = match side {
            Side::Public => sys::EVP_PKEY_encrypt_init(c),
            Side::Private => sys::EVP_PKEY_decrypt_init(c),
        };
        init == 1
            && sys::EVP_PKEY_CTX_set_rsa_padding(c, sys::RSA_PKCS1_OAEP_PADDING) == 1
            && sys::EVP_PKEY_CTX_set_rsa_oaep_md(c, md(params.hash)) == 1
            && sys::EVP_PKEY_CTX_set_rsa_mgf1_md(c, md(params.mgf1_hash)) == 1
    };
    if !ok {
        return Err(failed("setup"));
    }
    // An empty label is the default; OPENSSL_malloc(0) need not return a pointer.
    if !params.label.is_empty() {
        let label = copy_label(&params.label)?;
        let (p, len) = (label.ptr.as_ptr(), label.len);
        // SAFETY: `p` holds `len` bytes from OPENSSL_malloc. On success the context owns the
        // buffer (freed with it), so `label` is forgotten; on failure AWS-LC did not take it and
        // `label` frees it.
        let taken = unsafe { sys::EVP_PKEY_CTX_set0_rsa_oaep_label(c, p, len) } == 1;
        if !taken {
            return Err(failed("setup"));
        }
        std::mem::forget(label);
    }
    Ok(ctx)
}

fn copy_label(label: &[u8]) -> Result<Label, BackendError> {
    // SAFETY: OPENSSL_malloc returns null or a buffer of `label.len()` bytes, owned by `Label`
    // at once.
    let p = unsafe { sys::OPENSSL_malloc(label.len()) }.cast::<u8>();
    let owned = Label {
        ptr: NonNull::new(p).ok_or_else(|| failed("setup"))?,
        len: label.len(),
    };
    // SAFETY: the new buffer has room for `label.len()` bytes and does not overlap `label`.
    unsafe { ptr::copy_nonoverlapping(label.as_ptr(), owned.ptr.as_ptr(), owned.len) };
    Ok(owned)
}

/// The longest plaintext OAEP can carry under a modulus of `k` bytes (RFC 8017 §7.1.1).
fn max_plaintext(k: usize, hash: HashAlgorithm) -> usize {
    k.saturating_sub(2 * hash.output_len() + 2)
}

/// OAEP-encrypts `data` to the RSA SubjectPublicKeyInfo `spki`.
pub(super) fn encrypt(
    spki: &[u8],
    params: &OaepParams,
    data: &[u8],
) -> Result<Vec<u8>, BackendError> {
    let key = parse(spki, Side::Public)?;
    let k = modulus_len(&key)?;
    if data.len() > max_plaintext(k, params.hash) {
        return Err(BackendError::InvalidInput(
            "the data is too long for the RSA key and padding".into(),
        ));
    }
    let ctx = context(&key, Side::Public, params)?;
    let mut out = vec![0u8; k];
    let mut out_len = out.len();
    // SAFETY: the context is valid; `out` has room for `out_len` bytes (a modulus's worth, all
    // an encryption writes), `data` is read for `data.len()` bytes.
    let rc = unsafe {
        sys::EVP_PKEY_encrypt(
            ctx.0.as_ptr(),
            out.as_mut_ptr(),
            &mut out_len,
            data.as_ptr(),
            data.len(),
        )
    };
    if rc != 1 || out_len > out.len() {
        return Err(failed("encryption"));
    }
    out.truncate(out_len);
    Ok(out)
}

/// OAEP-decrypts `data` with the RSA PKCS#8 private key `pkcs8`. Every way a ciphertext can be
/// wrong (length, padding, label, key) is the same one error, so the answer is no padding oracle.
pub(super) fn decrypt(
    pkcs8: &[u8],
    params: &OaepParams,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let key = parse(pkcs8, Side::Private)?;
    let k = modulus_len(&key)?;
    let ctx = context(&key, Side::Private, params)?;
    let mut out = Zeroizing::new(vec![0u8; k]);
    let mut out_len = out.len();
    // SAFETY: the context is valid; `out` has room for `out_len` bytes (a modulus's worth, more
    // than any OAEP message), `data` is read for `data.len()` bytes.
    let rc = unsafe {
        sys::EVP_PKEY_decrypt(
            ctx.0.as_ptr(),
            out.as_mut_ptr(),
            &mut out_len,
            data.as_ptr(),
            data.len(),
        )
    };
    if rc != 1 || out_len > out.len() {
        // SAFETY: as in `failed`.
        unsafe { sys::ERR_clear_error() }
        return Err(BackendError::IntegrityCheckFailed);
    }
    out.truncate(out_len);
    Ok(out)
}
