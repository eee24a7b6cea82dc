//! RSASSA-PSS verification (RFC 8017 §8.1.2, §9.1.2) for the hashes aws-lc-rs's PSS API does
//! not pair (SHA-1): a public-key operation, so nothing secret is handled and a variable-time
//! big-integer exponentiation is sound here.

use aws_lc_rs::digest;
use num_bigint::BigUint;

use super::HashAlgorithm;
use crate::BackendError;

/// Moduli accepted (bits), as aws-lc-rs's `RSA_PSS_2048_8192_*`: smaller keys are not safe, and
/// a larger one would let a client make the server exponentiate a huge number.
const MODULUS_BITS: std::ops::RangeInclusive<u64> = 2048..=8192;
/// The public exponent's size limit (bits), as aws-lc-rs's (it bounds the exponentiation cost).
const MAX_EXPONENT_BITS: u64 = 33;
/// EMSA-PSS's trailer field.
const TRAILER: u8 = 0xbc;

fn algorithm(hash: HashAlgorithm) -> &'static digest::Algorithm {
    match hash {
        HashAlgorithm::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlgorithm::Sha224 => &digest::SHA224,
        HashAlgorithm::Sha256 => &digest::SHA256,
        HashAlgorithm::Sha384 => &digest::SHA384,
        HashAlgorithm::Sha512 => &digest::SHA512,
    }
}

/// MGF1 (RFC 8017 B.2.1): `len` bytes of mask from `seed`.
fn mgf1(hash: HashAlgorithm, seed: &[u8], len: usize) -> Vec<u8> {
    let mut mask = Vec::with_capacity(len);
    let mut counter: u32 = 0;
    while mask.len() < len {
        let mut ctx = digest::Context::new(algorithm(hash));
        ctx.update(seed);
        ctx.update(&counter.to_be_bytes());
        mask.extend_from_slice(ctx.finish().as_ref());
        counter = counter.wrapping_add(1);
    }
    mask.truncate(len);
    mask
}

/// Whether `sig` is an RSASSA-PSS signature of `message` under the RSA public key (`modulus`,
/// `exponent`, unsigned big-endian), with MGF1 over `hash`. The salt length is read from the
/// encoded message (any length verifies), as OpenSSL's `RSA_PSS_SALTLEN_AUTO`: KMIP does not fix it.
pub(crate) fn verify(
    modulus: &[u8],
    exponent: &[u8],
    hash: HashAlgorithm,
    message: &[u8],
    sig: &[u8],
) -> Result<bool, BackendError> {
    let n = BigUint::from_bytes_be(modulus);
    let e = BigUint::from_bytes_be(exponent);
    let mod_bits = n.bits();
    if !MODULUS_BITS.contains(&mod_bits) || e.bits() > MAX_EXPONENT_BITS || e.bits() < 2 {
        return Err(BackendError::Unsupported(format!(
            "RSA-PSS verification needs a {}..{}-bit modulus and a public exponent of at most \
             {MAX_EXPONENT_BITS} bits (3 or more); this key has a {mod_bits}-bit modulus",
            MODULUS_BITS.start(),
            MODULUS_BITS.end()
        )));
    }
    let k = usize::try_from(mod_bits.div_ceil(8)).map_err(|_| too_large())?;
    let s = BigUint::from_bytes_be(sig);
    if sig.len() != k || s >= n {
        return Ok(false);
    }
    let em_bits = mod_bits - 1;
    let em_len = usize::try_from(em_bits.div_ceil(8)).map_err(|_| too_large())?;
    let m = s.modpow(&e, &n).to_bytes_be();
    if m.len() > em_len {
        return Ok(false);
    }
    let mut em = vec![0u8; em_len - m.len()];
    em.extend_from_slice(&m);
    Ok(emsa_pss_verify(hash, message, &em, em_bits))
}

fn too_large() -> BackendError {
    BackendError::Unsupported("RSA modulus too large".into())
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with the salt length recovered from the encoding.
fn emsa_pss_verify(hash: HashAlgorithm, message: &[u8], em: &[u8], em_bits: u64) -> bool {
    let h_len = algorithm(hash).output_len();
    let em_len = em.len();
    if em_len < h_len + 2 || em.last() != Some(&TRAILER) {
        return false;
    }
    let (masked_db, rest) = em.split_at(em_len - h_len - 1);
    let h = &rest[..h_len];
    // The bits of the first byte above emBits must be zero.
    let unused_bits = u32::try_from(8 * em_len as u64 - em_bits).unwrap_or(8);
    let top_mask = 0xffu8.checked_shr(unused_bits).unwrap_or(0);
    if masked_db.first().is_some_and(|b| b & !top_mask != 0) {
        return false;
    }
    let mut db: Vec<u8> = masked_db
        .iter()
        .zip(mgf1(hash, h, masked_db.len()))
        .map(|(a, b)| a ^ b)
        .collect();
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    let Some(separator) = db.iter().position(|&b| b != 0) else {
        return false;
    };
    if db[separator] != 0x01 {
        return false;
    }
    let salt = &db[separator + 1..];
    let mut ctx = digest::Context::new(algorithm(hash));
    ctx.update(&[0u8; 8]);
    ctx.update(digest::digest(algorithm(hash), message).as_ref());
    ctx.update(salt);
    ctx.finish().as_ref() == h
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::{self, KeyPair as _};

    fn numbers(kp: &KeyPair) -> (Vec<u8>, Vec<u8>) {
        let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
            kp.public_key(),
        )
        .unwrap();
        crate::asym::der::rsa_public_numbers(spki.as_ref()).unwrap()
    }

    #[test]
    fn verifies_what_aws_lc_signs_and_nothing_else() {
        let kp = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let (n, e) = numbers(&kp);
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(
            &signature::RSA_PSS_SHA256,
            &SystemRandom::new(),
            b"msg",
            &mut sig,
        )
        .unwrap();
        assert!(verify(&n, &e, HashAlgorithm::Sha256, b"msg", &sig).unwrap());
        assert!(!verify(&n, &e, HashAlgorithm::Sha256, b"msh", &sig).unwrap());
        assert!(!verify(&n, &e, HashAlgorithm::Sha1, b"msg", &sig).unwrap());
        sig[10] ^= 1;
        assert!(!verify(&n, &e, HashAlgorithm::Sha256, b"msg", &sig).unwrap());
        assert!(!verify(&n, &e, HashAlgorithm::Sha256, b"msg", &sig[1..]).unwrap());
    }

    #[test]
    fn small_moduli_are_refused() {
        let err = verify(
            &[0xff; 128],
            &[1, 0, 1],
            HashAlgorithm::Sha1,
            b"m",
            &[0; 128],
        );
        assert!(matches!(err, Err(BackendError::Unsupported(_))));
    }
}
