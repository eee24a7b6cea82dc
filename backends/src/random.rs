//! Random bytes, the generators behind them, and the HMAC hash functions `Backend::mac` takes.

use aws_lc_rs::rand;
use zeroize::Zeroizing;

use crate::BackendError;

/// The hash function of an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    HmacSha1,
    HmacSha224,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

/// What generates a backend's keys and random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RngInfo {
    /// NIST SP 800-90A CTR_DRBG with AES-256: aws-lc-rs, seeded by the operating system.
    CtrDrbgAes256,
    /// A token's own generator, whose construction the token does not tell.
    Token,
}

/// The generator of the backends that compute in this process (vault, PostgreSQL).
pub(crate) const SOFTWARE_RNG: RngInfo = RngInfo::CtrDrbgAes256;

/// `len` bytes from aws-lc-rs' generator.
pub(crate) fn software_bytes(len: usize) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    rand::fill(&mut out[..])
        .map_err(|_| BackendError::Crypto("random generation failed".into()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_bytes_have_the_length_asked_and_differ() {
        let a = software_bytes(32).unwrap();
        let b = software_bytes(32).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(software_bytes(0).unwrap().is_empty());
    }
}
