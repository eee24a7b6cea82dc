//! MAC and MAC Verify with a key the backend holds, and the keyless Hash, RNG Retrieve and RNG
//! Seed.

use super::crypto::{effective_parameters, USAGE_MAC_GENERATE};
use super::{OpContext, OpError, Ops};
use crate::kmip::store::StoredObject;
use aws_lc_rs::{constant_time, digest};
use bytes::Bytes;
use kmip_backends::MacAlgorithm;
use kmip_wire::model::*;
use kmip_wire::spec::tags;

/// The most random bytes one RNG Retrieve returns: enough for any key or nonce, small enough
/// that a client cannot make the server fill megabytes per request.
pub(crate) const MAX_RNG_RETRIEVE_BYTES: usize = 1024;
/// The most seed bytes one RNG Seed passes to the generator; a longer seed is refused (a DRBG
/// takes a few hundred bytes of input at most; more only costs the token time).
pub(crate) const MAX_RNG_SEED_BYTES: usize = 1024;

const USAGE_MAC_VERIFY: i32 = 0x0000_0100;

impl Ops {
    /// The HMAC `obj` is used with: the request's or the key's Cryptographic Parameters, else
    /// the key's Cryptographic Algorithm. An AES key MACs only when its parameters name an HMAC.
    fn mac_algorithm(
        given: Option<&CryptographicParameters>,
        obj: &StoredObject,
    ) -> Result<MacAlgorithm, OpError> {
        let alg = effective_parameters(given, obj)
            .cryptographic_algorithm
            .or_else(|| {
                obj.first(tags::CRYPTOGRAPHIC_ALGORITHM)
                    .and_then(|a| a.as_enum())
            });
        match alg {
            Some(CryptographicAlgorithm::HmacSha1) => Ok(MacAlgorithm::HmacSha1),
            Some(CryptographicAlgorithm::HmacSha224) => Ok(MacAlgorithm::HmacSha224),
            Some(CryptographicAlgorithm::HmacSha256) => Ok(MacAlgorithm::HmacSha256),
            Some(CryptographicAlgorithm::HmacSha384) => Ok(MacAlgorithm::HmacSha384),
            Some(CryptographicAlgorithm::HmacSha512) => Ok(MacAlgorithm::HmacSha512),
            other => Err(OpError::BadCryptoParameters(format!(
                "MAC needs HMAC-SHA1/224/256/384/512 (in the request's or the key's \
                 Cryptographic Parameters), not {other:?}"
            ))),
        }
    }

    pub(super) async fn mac(
        &self,
        ctx: &mut OpContext<'_>,
        r: MacRequest,
    ) -> Result<MacResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_key(&uid, USAGE_MAC_GENERATE, ctx.now)?;
        let alg = Self::mac_algorithm(r.cryptographic_parameters.as_ref(), &obj)?;
        let data = r.data.ok_or_else(|| OpError::MissingData("Data".into()))?;
        let mac = self.store.backend().mac(&uid, alg, data.as_slice()).await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(MacResponse {
            unique_identifier: uid,
            mac_data: Some(Bytes::from(mac)),
            correlation_value: None,
        })
    }

    pub(super) async fn mac_verify(
        &self,
        ctx: &mut OpContext<'_>,
        r: MacVerifyRequest,
    ) -> Result<MacVerifyResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_key(&uid, USAGE_MAC_VERIFY, ctx.now)?;
        let alg = Self::mac_algorithm(r.cryptographic_parameters.as_ref(), &obj)?;
        let data = r.data.ok_or_else(|| OpError::MissingData("Data".into()))?;
        let given = r
            .mac_data
            .ok_or_else(|| OpError::MissingData("MAC Data".into()))?;
        let mac = self.store.backend().mac(&uid, alg, data.as_slice()).await?;
        let valid = constant_time::verify_slices_are_equal(&mac, &given).is_ok();
        ctx.id_placeholder = Some(uid.clone());
        Ok(MacVerifyResponse {
            unique_identifier: uid,
            validity_indicator: if valid {
                VALIDITY_VALID
            } else {
                VALIDITY_INVALID
            },
        })
    }

    pub(super) async fn rng_retrieve(
        &self,
        r: RngRetrieveRequest,
    ) -> Result<DataResponse, OpError> {
        let len = usize::try_from(r.data_length)
            .ok()
            .filter(|n| (1..=MAX_RNG_RETRIEVE_BYTES).contains(n))
            .ok_or_else(|| {
                OpError::InvalidField(format!(
                    "Data Length must be 1 to {MAX_RNG_RETRIEVE_BYTES} bytes, got {}",
                    r.data_length
                ))
            })?;
        let bytes = self.store.backend().random(len).await?;
        Ok(DataResponse {
            data: Bytes::copy_from_slice(&bytes),
        })
    }

    pub(super) async fn rng_seed(&self, r: RngSeedRequest) -> Result<RngSeedResponse, OpError> {
        let seed = r.data.as_slice();
        if seed.is_empty() || seed.len() > MAX_RNG_SEED_BYTES {
            return Err(OpError::InvalidField(format!(
                "the seed must be 1 to {MAX_RNG_SEED_BYTES} bytes, got {}",
                seed.len()
            )));
        }
        let used = self.store.backend().seed_random(seed).await?;
        Ok(RngSeedResponse {
            amount: i32::try_from(used).unwrap_or(i32::MAX),
        })
    }
}

/// The digest of a Hash request.
pub(super) fn hash(r: &HashRequest) -> Result<DataResponse, OpError> {
    let alg = r
        .cryptographic_parameters
        .as_ref()
        .and_then(|p| p.hashing_algorithm)
        .ok_or_else(|| OpError::MissingData("Hashing Algorithm".into()))?;
    let algorithm = match alg {
        HashingAlgorithm::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashingAlgorithm::Sha224 => &digest::SHA224,
        HashingAlgorithm::Sha256 => &digest::SHA256,
        HashingAlgorithm::Sha384 => &digest::SHA384,
        HashingAlgorithm::Sha512 => &digest::SHA512,
        HashingAlgorithm::Sha512256 => &digest::SHA512_256,
        HashingAlgorithm::Sha3256 => &digest::SHA3_256,
        HashingAlgorithm::Sha3384 => &digest::SHA3_384,
        HashingAlgorithm::Sha3512 => &digest::SHA3_512,
        other => {
            return Err(OpError::BadCryptoParameters(format!(
                "Hash supports SHA-1, SHA-2 and SHA-3 (not SHA3-224), not {other:?}"
            )))
        }
    };
    let data = r
        .data
        .as_ref()
        .ok_or_else(|| OpError::MissingData("Data".into()))?;
    Ok(DataResponse {
        data: Bytes::copy_from_slice(digest::digest(algorithm, data.as_slice()).as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(alg: HashingAlgorithm, data: &[u8]) -> Result<DataResponse, OpError> {
        hash(&HashRequest {
            cryptographic_parameters: Some(CryptographicParameters {
                hashing_algorithm: Some(alg),
                ..CryptographicParameters::default()
            }),
            data: Some(SecretBytes::from_slice(data)),
        })
    }

    #[test]
    fn hash_matches_fips_180_examples() {
        let abc = [
            (
                HashingAlgorithm::Sha1,
                "a9993e364706816aba3e25717850c26c9cd0d89d",
            ),
            (
                HashingAlgorithm::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (alg, want) in abc {
            assert_eq!(hex::encode(hash_of(alg, b"abc").unwrap().data), want);
        }
        assert_eq!(
            hash_of(HashingAlgorithm::Sha512, b"").unwrap().data.len(),
            64
        );
    }

    #[test]
    fn hash_refuses_missing_and_unsupported_algorithms() {
        assert!(matches!(
            hash_of(HashingAlgorithm::Md5, b"x"),
            Err(OpError::BadCryptoParameters(_))
        ));
        let no_alg = hash(&HashRequest {
            cryptographic_parameters: None,
            data: Some(SecretBytes::from_slice(b"x")),
        });
        assert!(matches!(no_alg, Err(OpError::MissingData(_))));
    }
}
