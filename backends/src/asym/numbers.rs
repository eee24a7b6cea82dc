//! Keys as their numbers, for KMIP's Transparent key structures: an RSA key's modulus,
//! exponents, primes and CRT values; an EC key's curve with its private scalar or public
//! point. To and from the DER forms keys are kept in (PKCS#8, SubjectPublicKeyInfo); a key
//! made from numbers is checked by parsing it as the signing code will.

use aws_lc_rs::signature::{self, EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair};
use num_bigint::BigUint;
use zeroize::Zeroizing;

use super::der;
use crate::BackendError;

/// The NIST curves KMIP's Recommended Curve names and the gateway keeps keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => der::OID_P256,
            Curve::P384 => der::OID_P384,
            Curve::P521 => der::OID_P521,
        }
    }

    fn of_oid(oid: &[u8]) -> Result<Curve, BackendError> {
        [Curve::P256, Curve::P384, Curve::P521]
            .into_iter()
            .find(|c| c.oid() == oid)
            .ok_or_else(|| {
                BackendError::Unsupported("EC keys on curves other than P-256/384/521".into())
            })
    }

    /// Bytes of a private scalar and of a point coordinate.
    fn scalar_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    fn signing(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }
}

fn invalid(what: &str) -> BackendError {
    BackendError::InvalidInput(format!("the numbers do not make a valid {what}"))
}

/// The eight numbers of an RSA private key in PKCS#8, unsigned big-endian, in the order n, e,
/// d, p, q, d mod (p-1), d mod (q-1), q^-1 mod p.
pub fn rsa_private_numbers(pkcs8: &[u8]) -> Result<Vec<Zeroizing<Vec<u8>>>, BackendError> {
    Ok(der::rsa_private_numbers(pkcs8)?
        .into_iter()
        .map(Zeroizing::new)
        .collect())
}

/// The PKCS#8 RSA private key of the eight numbers (see [`rsa_private_numbers`]), refused
/// unless the modulus is the product of the primes. Keys below the signing code's minimum size
/// (2048 bits) are kept all the same, as registered keys of any size are: using one for a
/// signature or a decryption is what fails.
pub fn rsa_private_from_numbers(numbers: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let [n, _, _, p, q, ..] = numbers else {
        return Err(invalid("RSA private key"));
    };
    if BigUint::from_bytes_be(n) != BigUint::from_bytes_be(p) * BigUint::from_bytes_be(q) {
        return Err(invalid("RSA private key"));
    }
    let owned: Zeroizing<Vec<Vec<u8>>> =
        Zeroizing::new(numbers.iter().map(|n| n.to_vec()).collect());
    Ok(Zeroizing::new(der::rsa_pkcs8_from_numbers(&owned)?))
}

/// The modulus and public exponent of an RSA SubjectPublicKeyInfo.
pub fn rsa_public_numbers(spki: &[u8]) -> Result<(Vec<u8>, Vec<u8>), BackendError> {
    der::rsa_public_numbers(spki)
}

/// The SubjectPublicKeyInfo of the RSA public key (`modulus`, `exponent`), refused unless both
/// are odd and the exponent is greater than one (any size is kept, as for private keys).
pub fn rsa_public_from_numbers(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, BackendError> {
    let odd = |x: &[u8]| x.last().is_some_and(|b| b & 1 == 1);
    if !odd(modulus) || !odd(exponent) || BigUint::from_bytes_be(exponent) <= BigUint::from(1u8) {
        return Err(invalid("RSA public key"));
    }
    der::rsa_spki(modulus, exponent)
}

/// The curve and private scalar (its curve's length, big-endian) of an EC key in PKCS#8.
pub fn ec_private_numbers(pkcs8: &[u8]) -> Result<(Curve, Zeroizing<Vec<u8>>), BackendError> {
    let (curve, d) = der::ec_private_scalar(pkcs8)?;
    Ok((Curve::of_oid(curve)?, Zeroizing::new(d.to_vec())))
}

/// The PKCS#8 EC private key (public point included, derived) of scalar `d` on `curve`; `d`
/// may come with fewer leading zero bytes than the curve's length, as a Big Integer does.
pub fn ec_private_from_numbers(curve: Curve, d: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let len = curve.scalar_len();
    let significant = &d[d.iter().take_while(|b| **b == 0).count()..];
    if significant.is_empty() || significant.len() > len {
        return Err(invalid("EC private key"));
    }
    let mut scalar = Zeroizing::new(vec![0u8; len - significant.len()]);
    scalar.extend_from_slice(significant);
    let parse = |sec1: &[u8]| {
        EcdsaKeyPair::from_private_key_der(curve.signing(), sec1)
            .map_err(|_| invalid("EC private key"))
    };
    // Once to derive the public point, once more with it, so that the PKCS#8 carries it as a
    // generated key's does.
    let derived = parse(&Zeroizing::new(der::ec_private_key(
        curve.oid(),
        &scalar,
        None,
    )))?;
    let point = derived.public_key().as_ref().to_vec();
    let pair = parse(&Zeroizing::new(der::ec_private_key(
        curve.oid(),
        &scalar,
        Some(&point),
    )))?;
    let pkcs8 = pair.to_pkcs8v1().map_err(|_| invalid("EC private key"))?;
    Ok(Zeroizing::new(pkcs8.as_ref().to_vec()))
}

/// The curve and point (SEC 1 uncompressed encoding) of an EC SubjectPublicKeyInfo.
pub fn ec_public_numbers(spki: &[u8]) -> Result<(Curve, Vec<u8>), BackendError> {
    let (curve, point) = der::ec_public_point(spki)?;
    Ok((Curve::of_oid(curve)?, point.to_vec()))
}

/// The SubjectPublicKeyInfo of the EC public key `point` (SEC 1 uncompressed) on `curve`,
/// refused unless the point is on the curve.
pub fn ec_public_from_numbers(curve: Curve, point: &[u8]) -> Result<Vec<u8>, BackendError> {
    let spki = der::ec_spki(curve.oid(), &der::ec_point_octets(point))?;
    signature::ParsedPublicKey::new(verifying(curve), point)
        .map_err(|_| invalid("EC public key"))?;
    Ok(spki)
}

fn verifying(curve: Curve) -> &'static signature::EcdsaVerificationAlgorithm {
    match curve {
        Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1,
        Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1,
        Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asym::{generate_pair, KeyPairAlgorithm};

    #[test]
    fn an_rsa_pair_round_trips_through_its_numbers() {
        let pair = generate_pair(KeyPairAlgorithm::Rsa { bits: 2048 }).unwrap();
        let numbers = rsa_private_numbers(&pair.private_pkcs8).unwrap();
        assert_eq!(numbers.len(), 8);
        let refs: Vec<&[u8]> = numbers.iter().map(|n| n.as_slice()).collect();
        let again = rsa_private_from_numbers(&refs).unwrap();
        assert_eq!(rsa_private_numbers(&again).unwrap(), numbers);
        let (n, e) = rsa_public_numbers(&pair.public_spki).unwrap();
        assert_eq!((&n, &e), (&*numbers[0], &*numbers[1]));
        assert_eq!(rsa_public_from_numbers(&n, &e).unwrap(), pair.public_spki);
        // A prime that does not divide the modulus makes no key.
        let mut wrong = numbers.clone();
        let last = wrong[3].len() - 1;
        wrong[3][last] ^= 2;
        let refs: Vec<&[u8]> = wrong.iter().map(|n| n.as_slice()).collect();
        assert!(rsa_private_from_numbers(&refs).is_err());
        assert!(rsa_private_from_numbers(&refs[..4]).is_err());
        assert!(rsa_public_from_numbers(&n, &[1]).is_err());
        assert!(rsa_public_from_numbers(&[0x10], &e).is_err());
    }

    #[test]
    fn ec_pairs_round_trip_through_their_numbers() {
        for (algorithm, curve) in [
            (KeyPairAlgorithm::EcP256, Curve::P256),
            (KeyPairAlgorithm::EcP384, Curve::P384),
            (KeyPairAlgorithm::EcP521, Curve::P521),
        ] {
            let pair = generate_pair(algorithm).unwrap();
            let (c, d) = ec_private_numbers(&pair.private_pkcs8).unwrap();
            assert_eq!(c, curve);
            assert_eq!(d.len(), curve.scalar_len());
            let (c, point) = ec_public_numbers(&pair.public_spki).unwrap();
            assert_eq!(c, curve);
            assert_eq!(
                ec_public_from_numbers(curve, &point).unwrap(),
                pair.public_spki
            );
            // From the scalar alone, leading zeros stripped as a Big Integer may carry it: the
            // same private key, its public point derived again.
            let stripped = &d[d.iter().take_while(|b| **b == 0).count()..];
            let again = ec_private_from_numbers(curve, stripped).unwrap();
            assert_eq!(ec_private_numbers(&again).unwrap(), (curve, d.clone()));
            assert_eq!(
                again, pair.private_pkcs8,
                "the same PKCS#8, public point included"
            );
            let derived = EcdsaKeyPair::from_pkcs8(curve.signing(), &again).unwrap();
            assert_eq!(derived.public_key().as_ref(), point.as_slice());
            // Not a scalar of the curve, not a point on it.
            assert!(ec_private_from_numbers(curve, &[0]).is_err());
            assert!(ec_private_from_numbers(curve, &vec![0xff; curve.scalar_len() + 1]).is_err());
            let mut off = point.clone();
            let last = off.len() - 1;
            off[last] ^= 1;
            assert!(ec_public_from_numbers(curve, &off).is_err());
        }
    }
}
