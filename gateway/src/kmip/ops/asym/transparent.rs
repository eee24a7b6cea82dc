//! Transparent RSA and EC keys (KMIP 1.4 §2.1.7): a registered one is kept as PKCS#8 or
//! SubjectPublicKeyInfo like every other asymmetric key, so it signs, verifies, encrypts and
//! converts the same; and any stored key is served in its Transparent form on request.
//! The structures travel inside the model as the TTLV of their Key Material.

use super::OpError;
use bytes::Bytes;
use kmip_backends::asym::numbers::{self, Curve};
use kmip_backends::ObjectKind;
use kmip_wire::model::KeyFormatType;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{decode, Limits, Tag, Ttlv, Value};
use zeroize::Zeroizing;

/// The Transparent RSA Private Key's numbers, in the order of KMIP's structure, and where each
/// sits among [`numbers::rsa_private_numbers`]'s (n, e, d, p, q, dp, dq, qinv).
const RSA_PRIVATE_FIELDS: [(Tag, usize); 8] = [
    (tags::MODULUS, 0),
    (tags::PRIVATE_EXPONENT, 2),
    (tags::PUBLIC_EXPONENT, 1),
    (tags::P, 3),
    (tags::Q, 4),
    (tags::PRIME_EXPONENT_P, 5),
    (tags::PRIME_EXPONENT_Q, 6),
    (tags::CRTCOEFFICIENT, 7),
];

/// Recommended Curve values of the curves keys are kept on (KMIP 1.4 §9.1.3.2.5).
const CURVES: [(Curve, u32); 3] = [
    (Curve::P256, 0x07),
    (Curve::P384, 0x0A),
    (Curve::P521, 0x0D),
];

/// Whether `format` is a Transparent RSA or EC key structure this module converts.
pub(in crate::kmip::ops) fn is_transparent_key(format: KeyFormatType) -> bool {
    matches!(
        format,
        KeyFormatType::TransparentRsaPrivateKey
            | KeyFormatType::TransparentRsaPublicKey
            | KeyFormatType::TransparentEcPrivateKey
            | KeyFormatType::TransparentEcPublicKey
    )
}

fn invalid(what: impl std::fmt::Display) -> OpError {
    OpError::InvalidField(format!("Key Material: {what}"))
}

/// The PKCS#8 (private) or SubjectPublicKeyInfo (public) DER of a registered Transparent key,
/// given as the TTLV encoding of its Key Material.
pub(in crate::kmip::ops) fn der_of_transparent(
    format: KeyFormatType,
    key_material: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let tree =
        decode(&Bytes::copy_from_slice(key_material), &Limits::default()).map_err(invalid)?;
    let big = |tag: Tag| -> Result<Zeroizing<Vec<u8>>, OpError> {
        let field = tree
            .child(tag)
            .ok_or_else(|| invalid(format!("{format:?} needs {tag:?}")))?;
        match &field.value {
            Value::BigInteger(b) => unsigned(b),
            _ => Err(invalid(format!("{tag:?} is not a Big Integer"))),
        }
    };
    let rejected = |e: kmip_backends::BackendError| invalid(e);
    Ok(match format {
        KeyFormatType::TransparentRsaPrivateKey => {
            let mut numbers: Vec<Zeroizing<Vec<u8>>> = vec![Zeroizing::new(Vec::new()); 8];
            for (tag, at) in RSA_PRIVATE_FIELDS {
                numbers[at] = big(tag)?;
            }
            let refs: Vec<&[u8]> = numbers.iter().map(|n| n.as_slice()).collect();
            numbers::rsa_private_from_numbers(&refs).map_err(rejected)?
        }
        KeyFormatType::TransparentRsaPublicKey => Zeroizing::new(
            numbers::rsa_public_from_numbers(&big(tags::MODULUS)?, &big(tags::PUBLIC_EXPONENT)?)
                .map_err(rejected)?,
        ),
        KeyFormatType::TransparentEcPrivateKey => {
            numbers::ec_private_from_numbers(curve_of(&tree)?, &big(tags::D)?).map_err(rejected)?
        }
        KeyFormatType::TransparentEcPublicKey => {
            let point = match tree.child(tags::QSTRING).map(|q| &q.value) {
                Some(Value::ByteString(q)) => q.clone(),
                _ => return Err(invalid("Transparent EC Public Key needs its Q String")),
            };
            Zeroizing::new(
                numbers::ec_public_from_numbers(curve_of(&tree)?, &point).map_err(rejected)?,
            )
        }
        other => return Err(invalid(format!("{other:?} is not converted"))),
    })
}

/// The TTLV encoding of the Key Material of stored key `der` (PKCS#8 for a Private Key,
/// SubjectPublicKeyInfo for a Public Key) in the Transparent `format`.
pub(in crate::kmip::ops) fn transparent_of_der(
    kind: ObjectKind,
    format: KeyFormatType,
    der: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let not_that_key = |_| OpError::KeyFormatNotSupported;
    let fields = match (kind, format) {
        (ObjectKind::PrivateKey, KeyFormatType::TransparentRsaPrivateKey) => {
            let numbers = numbers::rsa_private_numbers(der).map_err(not_that_key)?;
            RSA_PRIVATE_FIELDS
                .iter()
                .map(|(tag, at)| big_integer(*tag, &numbers[*at]))
                .collect()
        }
        (ObjectKind::PublicKey, KeyFormatType::TransparentRsaPublicKey) => {
            let (n, e) = numbers::rsa_public_numbers(der).map_err(not_that_key)?;
            vec![
                big_integer(tags::MODULUS, &n),
                big_integer(tags::PUBLIC_EXPONENT, &e),
            ]
        }
        (ObjectKind::PrivateKey, KeyFormatType::TransparentEcPrivateKey) => {
            let (curve, d) = numbers::ec_private_numbers(der).map_err(not_that_key)?;
            vec![curve_item(curve), big_integer(tags::D, &d)]
        }
        (ObjectKind::PublicKey, KeyFormatType::TransparentEcPublicKey) => {
            let (curve, point) = numbers::ec_public_numbers(der).map_err(not_that_key)?;
            vec![
                curve_item(curve),
                Ttlv::new(tags::QSTRING, Value::ByteString(point.into())),
            ]
        }
        _ => return Err(OpError::KeyFormatNotSupported),
    };
    let bytes = Ttlv::structure(tags::KEY_MATERIAL, fields)
        .to_bytes()
        .map_err(|_| OpError::KeyFormatNotSupported)?;
    Ok(Zeroizing::new(bytes.to_vec()))
}

fn curve_of(tree: &Ttlv) -> Result<Curve, OpError> {
    let code = tree
        .child(tags::RECOMMENDED_CURVE)
        .and_then(Ttlv::as_enum)
        .ok_or_else(|| invalid("a Transparent EC key needs its Recommended Curve"))?;
    CURVES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(curve, _)| *curve)
        .ok_or_else(|| {
            OpError::FeatureNotSupported("EC keys on curves other than P-256/384/521".into())
        })
}

fn curve_item(curve: Curve) -> Ttlv {
    let code = CURVES
        .iter()
        .find(|(c, _)| *c == curve)
        .map_or(0, |(_, code)| *code);
    Ttlv::new(tags::RECOMMENDED_CURVE, Value::Enumeration(code))
}

/// A Big Integer item of the unsigned big-endian `n`: a leading zero byte keeps it positive
/// (Big Integers are two's complement).
fn big_integer(tag: Tag, n: &[u8]) -> Ttlv {
    let mut bytes = Vec::with_capacity(n.len() + 1);
    if n.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.push(0);
    }
    bytes.extend_from_slice(n);
    Ttlv::new(tag, Value::BigInteger(bytes.into()))
}

/// The unsigned big-endian value of a Big Integer, which must not be negative.
fn unsigned(b: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpError> {
    if b.first().is_some_and(|x| x & 0x80 != 0) {
        return Err(invalid("a negative Big Integer"));
    }
    let skip = b.iter().take_while(|x| **x == 0).count();
    Ok(Zeroizing::new(b[skip..].to_vec()))
}
