//! The few DER structures asymmetric keys travel in: PKCS#8 PrivateKeyInfo and X.509
//! SubjectPublicKeyInfo (how objects are stored), and PKCS#1 (how many clients send RSA keys).
//! Only what converting between those forms needs: no general ASN.1.

use crate::BackendError;

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;

/// rsaEncryption (1.2.840.113549.1.1.1).
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey (1.2.840.10045.2.1).
pub(crate) const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// id-Ed25519 (1.3.101.112).
pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// prime256v1 (1.2.840.10045.3.1.7).
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (1.3.132.0.34).
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// secp521r1 (1.3.132.0.35).
pub(crate) const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

fn malformed(what: &str) -> BackendError {
    BackendError::InvalidInput(format!("malformed {what}"))
}

/// One DER element: its tag, its content, and what follows it.
fn element<'a>(input: &'a [u8], what: &str) -> Result<(u8, &'a [u8], &'a [u8]), BackendError> {
    let (&tag, rest) = input.split_first().ok_or_else(|| malformed(what))?;
    let (&first, rest) = rest.split_first().ok_or_else(|| malformed(what))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        // Lengths of more than four bytes would describe objects of gigabytes: no key is.
        if n == 0 || n > 4 || rest.len() < n {
            return Err(malformed(what));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(malformed(what));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), BackendError> {
    let (t, content, rest) = element(input, what)?;
    if t != tag {
        return Err(malformed(what));
    }
    Ok((content, rest))
}

/// A DER element of `tag` around `content`.
pub(crate) fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The key algorithm an AlgorithmIdentifier names: its OID and, for EC, the curve's OID.
pub(crate) struct AlgorithmId<'a> {
    pub(crate) oid: &'a [u8],
    pub(crate) curve: Option<&'a [u8]>,
}

fn algorithm_id<'a>(content: &'a [u8]) -> Result<AlgorithmId<'a>, BackendError> {
    let (oid, rest) = expect(content, OID, "AlgorithmIdentifier")?;
    let curve = match element(rest, "AlgorithmIdentifier") {
        Ok((OID, c, _)) => Some(c),
        _ => None,
    };
    Ok(AlgorithmId { oid, curve })
}

/// PKCS#8 PrivateKeyInfo: the algorithm and the inner private key.
pub(crate) fn pkcs8_parts(der: &[u8]) -> Result<(AlgorithmId<'_>, &[u8]), BackendError> {
    let what = "PKCS#8 private key";
    let (body, _) = expect(der, SEQUENCE, what)?;
    let (_version, rest) = expect(body, INTEGER, what)?;
    let (alg, rest) = expect(rest, SEQUENCE, what)?;
    let (key, _) = expect(rest, OCTET_STRING, what)?;
    Ok((algorithm_id(alg)?, key))
}

/// SubjectPublicKeyInfo: the algorithm and the public key bits.
pub(crate) fn spki_parts(der: &[u8]) -> Result<(AlgorithmId<'_>, &[u8]), BackendError> {
    let what = "SubjectPublicKeyInfo";
    let (body, _) = expect(der, SEQUENCE, what)?;
    let (alg, rest) = expect(body, SEQUENCE, what)?;
    let (bits, _) = expect(rest, BIT_STRING, what)?;
    // The first byte counts unused bits: always 0 for a key.
    match bits.split_first() {
        Some((0, key)) => Ok((algorithm_id(alg)?, key)),
        _ => Err(malformed(what)),
    }
}

fn rsa_algorithm_id() -> Vec<u8> {
    let mut alg = wrap(OID, OID_RSA);
    alg.extend(wrap(NULL, &[]));
    wrap(SEQUENCE, &alg)
}

/// The SubjectPublicKeyInfo of a PKCS#1 RSAPublicKey.
pub(crate) fn spki_from_rsa_public(pkcs1: &[u8]) -> Result<Vec<u8>, BackendError> {
    // Check it is an RSAPublicKey (modulus, exponent) before wrapping it.
    let (body, _) = expect(pkcs1, SEQUENCE, "PKCS#1 public key")?;
    let (_n, rest) = expect(body, INTEGER, "PKCS#1 public key")?;
    expect(rest, INTEGER, "PKCS#1 public key")?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut body = rsa_algorithm_id();
    body.extend(wrap(BIT_STRING, &bits));
    Ok(wrap(SEQUENCE, &body))
}

/// The PKCS#8 PrivateKeyInfo of a PKCS#1 RSAPrivateKey.
pub(crate) fn pkcs8_from_rsa_private(pkcs1: &[u8]) -> Result<Vec<u8>, BackendError> {
    let (body, _) = expect(pkcs1, SEQUENCE, "PKCS#1 private key")?;
    expect(body, INTEGER, "PKCS#1 private key")?;
    let mut body = wrap(INTEGER, &[0]);
    body.extend(rsa_algorithm_id());
    body.extend(wrap(OCTET_STRING, pkcs1));
    Ok(wrap(SEQUENCE, &body))
}

/// A DER INTEGER's content as an unsigned big-endian number (its sign byte dropped).
fn unsigned(content: &[u8]) -> Vec<u8> {
    let skip = content.iter().take_while(|b| **b == 0).count();
    content[skip.min(content.len().saturating_sub(1))..].to_vec()
}

/// A DER INTEGER of the unsigned big-endian number `n`.
fn integer(n: &[u8]) -> Vec<u8> {
    let skip = n.iter().take_while(|b| **b == 0).count();
    let n = &n[skip.min(n.len().saturating_sub(1))..];
    let mut content = Vec::with_capacity(n.len() + 1);
    if n.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(n);
    wrap(INTEGER, &content)
}

/// The eight numbers of an RSA private key (n, e, d, p, q, d mod p-1, d mod q-1, q^-1 mod p)
/// inside a PKCS#8 key, as unsigned big-endian bytes.
pub(crate) fn rsa_private_numbers(pkcs8: &[u8]) -> Result<Vec<Vec<u8>>, BackendError> {
    let what = "RSA private key";
    let (alg, inner) = pkcs8_parts(pkcs8)?;
    if alg.oid != OID_RSA {
        return Err(BackendError::InvalidInput("not an RSA private key".into()));
    }
    let (body, _) = expect(inner, SEQUENCE, what)?;
    let (_version, mut rest) = expect(body, INTEGER, what)?;
    let mut numbers = Vec::with_capacity(8);
    for _ in 0..8 {
        let (n, next) = expect(rest, INTEGER, what)?;
        numbers.push(unsigned(n));
        rest = next;
    }
    Ok(numbers)
}

/// The PKCS#8 form of an RSA private key given by its eight numbers (see
/// [`rsa_private_numbers`]).
pub(crate) fn rsa_pkcs8_from_numbers(numbers: &[Vec<u8>]) -> Result<Vec<u8>, BackendError> {
    if numbers.len() != 8 {
        return Err(malformed("RSA private key"));
    }
    let mut body = wrap(INTEGER, &[0]);
    for n in numbers {
        body.extend(integer(n));
    }
    pkcs8_from_rsa_private(&wrap(SEQUENCE, &body))
}

/// The modulus and public exponent (unsigned big-endian) of an RSA SubjectPublicKeyInfo.
pub(crate) fn rsa_public_numbers(spki: &[u8]) -> Result<(Vec<u8>, Vec<u8>), BackendError> {
    let what = "RSA public key";
    let (alg, key) = spki_parts(spki)?;
    if alg.oid != OID_RSA {
        return Err(BackendError::InvalidInput("not an RSA public key".into()));
    }
    let (body, _) = expect(key, SEQUENCE, what)?;
    let (n, rest) = expect(body, INTEGER, what)?;
    let (e, _) = expect(rest, INTEGER, what)?;
    Ok((unsigned(n), unsigned(e)))
}

/// The SubjectPublicKeyInfo of the RSA key (`modulus`, `exponent`).
pub(crate) fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, BackendError> {
    let mut numbers = integer(modulus);
    numbers.extend(integer(exponent));
    spki_from_rsa_public(&wrap(SEQUENCE, &numbers))
}

/// The SubjectPublicKeyInfo of an EC key on the curve `curve` (OID content) with the point
/// `ec_point` as PKCS#11 gives it (a DER OCTET STRING around the uncompressed point).
pub(crate) fn ec_spki(curve: &[u8], ec_point: &[u8]) -> Result<Vec<u8>, BackendError> {
    let (point, _) = expect(ec_point, OCTET_STRING, "EC point")?;
    let mut alg = wrap(OID, OID_EC);
    alg.extend(wrap(OID, curve));
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    let mut body = wrap(SEQUENCE, &alg);
    body.extend(wrap(BIT_STRING, &bits));
    Ok(wrap(SEQUENCE, &body))
}

/// The DER OID element of a curve, as PKCS#11's `CKA_EC_PARAMS` holds it.
pub(crate) fn curve_params(curve: &[u8]) -> Vec<u8> {
    wrap(OID, curve)
}

/// The curve (OID content) and private scalar of an EC key inside a PKCS#8 key (its RFC 5915
/// ECPrivateKey).
pub(crate) fn ec_private_scalar(pkcs8: &[u8]) -> Result<(&[u8], &[u8]), BackendError> {
    let what = "EC private key";
    let (alg, inner) = pkcs8_parts(pkcs8)?;
    let (OID_EC, Some(curve)) = (alg.oid, alg.curve) else {
        return Err(BackendError::InvalidInput("not an EC private key".into()));
    };
    let (body, _) = expect(inner, SEQUENCE, what)?;
    let (_version, rest) = expect(body, INTEGER, what)?;
    let (d, _) = expect(rest, OCTET_STRING, what)?;
    Ok((curve, d))
}

/// The RFC 5915 ECPrivateKey of scalar `d` (its curve's length, big-endian) on `curve`, with
/// its public `point` (SEC 1) when known: a parser derives a missing one, but then also leaves
/// it out of the PKCS#8 it writes.
pub(crate) fn ec_private_key(curve: &[u8], d: &[u8], point: Option<&[u8]>) -> Vec<u8> {
    const PARAMETERS: u8 = 0xa0;
    const PUBLIC_KEY: u8 = 0xa1;
    let mut body = wrap(INTEGER, &[1]);
    body.extend(wrap(OCTET_STRING, d));
    body.extend(wrap(PARAMETERS, &wrap(OID, curve)));
    if let Some(point) = point {
        let mut bits = vec![0u8];
        bits.extend_from_slice(point);
        body.extend(wrap(PUBLIC_KEY, &wrap(BIT_STRING, &bits)));
    }
    wrap(SEQUENCE, &body)
}

/// The curve (OID content) and point (SEC 1 encoding) of an EC SubjectPublicKeyInfo.
pub(crate) fn ec_public_point(spki: &[u8]) -> Result<(&[u8], &[u8]), BackendError> {
    let (alg, point) = spki_parts(spki)?;
    match (alg.oid, alg.curve) {
        (OID_EC, Some(curve)) => Ok((curve, point)),
        _ => Err(BackendError::InvalidInput("not an EC public key".into())),
    }
}

/// The DER OCTET STRING around `point`, as PKCS#11's `CKA_EC_POINT` holds it.
pub(crate) fn ec_point_octets(point: &[u8]) -> Vec<u8> {
    wrap(OCTET_STRING, point)
}

/// An ECDSA signature as X9.62 DER (what clients verify) from PKCS#11's r || s.
pub(crate) fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, BackendError> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(malformed("ECDSA signature"));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = integer(r);
    body.extend(integer(s));
    Ok(wrap(SEQUENCE, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        let content = vec![7u8; 300];
        let der = wrap(OCTET_STRING, &content);
        assert_eq!(&der[..4], &[OCTET_STRING, 0x82, 0x01, 0x2c]);
        let (tag, got, rest) = element(&der, "x").unwrap();
        assert_eq!((tag, got, rest.len()), (OCTET_STRING, &content[..], 0));
    }

    #[test]
    fn truncated_input_is_refused() {
        let der = wrap(SEQUENCE, &[1, 2, 3]);
        assert!(element(&der[..4], "x").is_err());
        assert!(element(&[0x30, 0x85, 1, 1, 1, 1, 1], "x").is_err());
    }

    #[test]
    fn integers_are_positive_and_minimal() {
        assert_eq!(integer(&[0x80]), vec![INTEGER, 2, 0, 0x80]);
        assert_eq!(integer(&[0, 0, 0x7f]), vec![INTEGER, 1, 0x7f]);
        assert_eq!(unsigned(&[0, 0x80]), vec![0x80]);
        let sig = ecdsa_der(&[0x80, 1]).unwrap();
        assert_eq!(sig, vec![SEQUENCE, 7, INTEGER, 2, 0, 0x80, INTEGER, 1, 1]);
        assert!(ecdsa_der(&[1, 2, 3]).is_err());
    }

    #[test]
    fn pkcs1_public_wraps_into_spki_and_back() {
        let pkcs1 = wrap(
            SEQUENCE,
            &[wrap(INTEGER, &[0x00, 0xc1]), wrap(INTEGER, &[3])].concat(),
        );
        let spki = spki_from_rsa_public(&pkcs1).unwrap();
        let (alg, key) = spki_parts(&spki).unwrap();
        assert_eq!(alg.oid, OID_RSA);
        assert_eq!(key, &pkcs1[..]);
    }
}
