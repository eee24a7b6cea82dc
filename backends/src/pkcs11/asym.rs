//! Asymmetric keys on the token. A key pair is made by `C_GenerateKeyPair`: the private key is
//! a token object (`CKO_PRIVATE_KEY`, `CKA_ID` = uid) that leaves the token only if it was made
//! extractable; the public key is read back once and stored as SubjectPublicKeyInfo in a data
//! object, like other non-key material. A registered RSA private key is imported as a token key
//! too. Signing and RSA decryption are `C_Sign` / `C_Decrypt` with that key.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use zeroize::Zeroizing;

use super::objects::{self, destroy_objects, Entry, ZeroizeTemplate, MATERIAL_APP};
use super::p11_error;
use crate::asym::{
    curve_params, ec_spki, ecdsa_der, rsa_pkcs8_from_numbers, rsa_private_numbers, rsa_spki,
    HashAlgorithm, KeyPairAlgorithm, KeyPairSpec, RsaPadding, SignatureScheme,
};
use crate::{BackendError, ObjectKind, ObjectRecord};

/// prime256v1, secp384r1, secp521r1 (OID contents, as in `crate::asym`'s DER).
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
/// The RSA public exponent of generated keys (F4).
const RSA_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

fn unsupported(what: &str) -> BackendError {
    BackendError::Unsupported(format!("the pkcs11 backend does not support {what}"))
}

/// Attributes of a private key on the token: never exported unless `extractable`.
fn private_template(uid: &str, label: Option<&str>, extractable: bool) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Id(uid.as_bytes().to_vec()),
        Attribute::Label(label.unwrap_or(uid).as_bytes().to_vec()),
        Attribute::Sensitive(!extractable),
        Attribute::Extractable(extractable),
        Attribute::Sign(true),
    ]
}

/// The data object holding a public key's SubjectPublicKeyInfo.
fn public_template(uid: &str, spki: Vec<u8>) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Application(MATERIAL_APP.to_vec()),
        Attribute::Label(uid.as_bytes().to_vec()),
        Attribute::Value(spki),
    ]
}

fn attribute(s: &Session, h: ObjectHandle, t: AttributeType) -> Result<Vec<u8>, BackendError> {
    s.get_attributes(h, &[t])
        .map_err(p11_error)?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Modulus(v) | Attribute::PublicExponent(v) | Attribute::EcPoint(v) => Some(v),
            _ => None,
        })
        .ok_or_else(|| BackendError::Crypto(format!("the token did not return {t:?}")))
}

/// Generates the pair on the token; returns the private key and the public key's SPKI.
fn generate(
    s: &Session,
    uid: &str,
    spec: &KeyPairSpec,
) -> Result<(ObjectHandle, Vec<u8>), BackendError> {
    let mut private = private_template(uid, spec.label.as_deref(), spec.private_extractable);
    let curve = match spec.algorithm {
        KeyPairAlgorithm::Rsa { .. } => None,
        KeyPairAlgorithm::EcP256 => Some(P256),
        KeyPairAlgorithm::EcP384 => Some(P384),
        KeyPairAlgorithm::EcP521 => Some(P521),
        KeyPairAlgorithm::Ed25519 => return Err(unsupported("Ed25519 key pairs")),
    };
    // The public half is a session object: read once, then dropped.
    let mut public = vec![Attribute::Token(false), Attribute::Verify(true)];
    let mechanism = match (spec.algorithm, curve) {
        (KeyPairAlgorithm::Rsa { bits }, _) => {
            public.push(Attribute::ModulusBits(Ulong::from(u64::from(bits))));
            public.push(Attribute::PublicExponent(RSA_EXPONENT.to_vec()));
            public.push(Attribute::Encrypt(true));
            private.push(Attribute::Decrypt(true));
            Mechanism::RsaPkcsKeyPairGen
        }
        (_, Some(c)) => {
            public.push(Attribute::EcParams(curve_params(c)));
            Mechanism::EccKeyPairGen
        }
        (_, None) => return Err(unsupported("this key pair")),
    };
    let (pub_handle, priv_handle) = s
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(p11_error)?;
    let spki = match curve {
        None => rsa_spki(
            &attribute(s, pub_handle, AttributeType::Modulus)?,
            &attribute(s, pub_handle, AttributeType::PublicExponent)?,
        ),
        Some(c) => ec_spki(c, &attribute(s, pub_handle, AttributeType::EcPoint)?),
    };
    let cleanup = s.destroy_object(pub_handle).map_err(p11_error);
    match spki.and_then(|spki| cleanup.map(|()| spki)) {
        Ok(spki) => Ok((priv_handle, spki)),
        Err(e) => {
            if let Err(undo) = s.destroy_object(priv_handle) {
                tracing::warn!(uid, error = %undo, "could not remove a half-made key pair");
            }
            Err(e)
        }
    }
}

/// Makes both objects of a key pair with their companions, or neither.
pub(crate) fn create_pair(
    s: &Session,
    private: &ObjectRecord,
    public: &ObjectRecord,
    spec: &KeyPairSpec,
) -> Result<(Entry, Entry), BackendError> {
    let mut spki = None;
    let private_entry = objects::create_with_meta(
        s,
        &private.uid,
        ObjectKind::PrivateKey,
        0,
        &private.meta,
        |s| {
            let (handle, public_key) = generate(s, &private.uid, spec)?;
            spki = Some(public_key);
            Ok(handle)
        },
    )?;
    let spki = spki.ok_or_else(|| BackendError::Crypto("key pair generation".into()))?;
    let public_entry = objects::create_with_meta(
        s,
        &public.uid,
        ObjectKind::PublicKey,
        0,
        &public.meta,
        |s| {
            s.create_object(&public_template(&public.uid, spki))
                .map_err(p11_error)
        },
    );
    match public_entry {
        Ok(public_entry) => Ok((private_entry, public_entry)),
        Err(e) => {
            if let Err(undo) = destroy_objects(s, &private.uid, &private_entry, None) {
                tracing::error!(uid = %private.uid, error = %undo,
                    "a private key whose public key could not be stored was not removed");
            }
            Err(e)
        }
    }
}

/// The template importing a PKCS#8 RSA private key as a token key; `None` for other keys
/// (kept as data objects, which this backend does not sign with).
pub(crate) fn rsa_import_template(
    uid: &str,
    label: Option<&str>,
    pkcs8: &[u8],
    extractable: bool,
) -> Option<ZeroizeTemplate> {
    let numbers = Zeroizing::new(rsa_private_numbers(pkcs8).ok()?);
    let mut t = private_template(uid, label, extractable);
    t.extend([
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Decrypt(true),
        Attribute::Modulus(numbers[0].clone()),
        Attribute::PublicExponent(numbers[1].clone()),
        Attribute::PrivateExponent(numbers[2].clone()),
        Attribute::Prime1(numbers[3].clone()),
        Attribute::Prime2(numbers[4].clone()),
        Attribute::Exponent1(numbers[5].clone()),
        Attribute::Exponent2(numbers[6].clone()),
        Attribute::Coefficient(numbers[7].clone()),
    ]);
    Some(ZeroizeTemplate(t))
}

/// An extractable RSA private key on the token as PKCS#8 (its numbers read back); `None` when
/// the object is not one, or the token withholds them (sensitive or unextractable).
pub(crate) fn export_rsa_private(s: &Session, handle: ObjectHandle) -> Option<Zeroizing<Vec<u8>>> {
    let wanted = [
        AttributeType::Modulus,
        AttributeType::PublicExponent,
        AttributeType::PrivateExponent,
        AttributeType::Prime1,
        AttributeType::Prime2,
        AttributeType::Exponent1,
        AttributeType::Exponent2,
        AttributeType::Coefficient,
    ];
    let attrs = s.get_attributes(handle, &wanted).ok()?;
    let mut numbers: Vec<Vec<u8>> = Vec::with_capacity(wanted.len());
    for t in wanted {
        // A withheld attribute is simply missing from the result (SoftHSM).
        let v = attrs.iter().find_map(|a| match (a, t) {
            (Attribute::Modulus(v), AttributeType::Modulus)
            | (Attribute::PublicExponent(v), AttributeType::PublicExponent)
            | (Attribute::PrivateExponent(v), AttributeType::PrivateExponent)
            | (Attribute::Prime1(v), AttributeType::Prime1)
            | (Attribute::Prime2(v), AttributeType::Prime2)
            | (Attribute::Exponent1(v), AttributeType::Exponent1)
            | (Attribute::Exponent2(v), AttributeType::Exponent2)
            | (Attribute::Coefficient(v), AttributeType::Coefficient) => Some(v.clone()),
            _ => None,
        })?;
        numbers.push(v);
    }
    let numbers = Zeroizing::new(numbers);
    rsa_pkcs8_from_numbers(&numbers).ok().map(Zeroizing::new)
}

/// The token key of the private key `entry`; a private key kept as data cannot be used here.
pub(crate) fn private_key(
    s: &Session,
    uid: &str,
    entry: &Entry,
) -> Result<ObjectHandle, BackendError> {
    let handle = match (entry.kind, entry.material) {
        (ObjectKind::PrivateKey, Some(h)) => h,
        (ObjectKind::PrivateKey, None) => return Err(BackendError::NotFound(uid.to_owned())),
        _ => {
            return Err(BackendError::InvalidInput(format!(
                "object {uid} is not a private key"
            )))
        }
    };
    let class = s
        .get_attributes(handle, &[AttributeType::Class])
        .map_err(p11_error)?;
    if !class
        .iter()
        .any(|a| matches!(a, Attribute::Class(c) if *c == ObjectClass::PRIVATE_KEY))
    {
        return Err(unsupported(
            "signing or decrypting with a registered non-RSA private key (only RSA keys are \
             imported onto the token as keys)",
        ));
    }
    Ok(handle)
}

fn pss(hash: MechanismType, mgf: PkcsMgfType, len: u64) -> PkcsPssParams {
    PkcsPssParams {
        hash_alg: hash,
        mgf,
        s_len: Ulong::from(len),
    }
}

/// Signs `data` with the token key `key`.
pub(crate) fn sign(
    s: &Session,
    key: ObjectHandle,
    scheme: SignatureScheme,
    data: &[u8],
) -> Result<Vec<u8>, BackendError> {
    use HashAlgorithm::*;
    let mechanism = match scheme {
        SignatureScheme::RsaPkcs1v15(Sha256) => Mechanism::Sha256RsaPkcs,
        SignatureScheme::RsaPkcs1v15(Sha384) => Mechanism::Sha384RsaPkcs,
        SignatureScheme::RsaPkcs1v15(Sha512) => Mechanism::Sha512RsaPkcs,
        // The salt is the digest's length, as the software backends sign.
        SignatureScheme::RsaPss(Sha256) => {
            Mechanism::Sha256RsaPkcsPss(pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32))
        }
        SignatureScheme::RsaPss(Sha384) => {
            Mechanism::Sha384RsaPkcsPss(pss(MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48))
        }
        SignatureScheme::RsaPss(Sha512) => {
            Mechanism::Sha512RsaPkcsPss(pss(MechanismType::SHA512, PkcsMgfType::MGF1_SHA512, 64))
        }
        SignatureScheme::Ecdsa(hash) => {
            // The digest is computed here (nothing secret in it) and signed with CKM_ECDSA,
            // which every token offers; the token's r || s becomes the DER clients expect.
            let alg = match hash {
                Sha256 => &aws_lc_rs::digest::SHA256,
                Sha384 => &aws_lc_rs::digest::SHA384,
                Sha512 => &aws_lc_rs::digest::SHA512,
                Sha1 | Sha224 => return Err(unsupported(&format!("ECDSA with {hash:?}"))),
            };
            let digest = aws_lc_rs::digest::digest(alg, data);
            let raw = s
                .sign(&Mechanism::Ecdsa, key, digest.as_ref())
                .map_err(p11_error)?;
            return ecdsa_der(&raw);
        }
        other => return Err(unsupported(&format!("{other:?} signatures"))),
    };
    s.sign(&mechanism, key, data).map_err(p11_error)
}

fn oaep_hash(hash: HashAlgorithm) -> MechanismType {
    match hash {
        HashAlgorithm::Sha1 => MechanismType::SHA1,
        HashAlgorithm::Sha224 => MechanismType::SHA224,
        HashAlgorithm::Sha256 => MechanismType::SHA256,
        HashAlgorithm::Sha384 => MechanismType::SHA384,
        HashAlgorithm::Sha512 => MechanismType::SHA512,
    }
}

fn oaep_mgf(hash: HashAlgorithm) -> PkcsMgfType {
    match hash {
        HashAlgorithm::Sha1 => PkcsMgfType::MGF1_SHA1,
        HashAlgorithm::Sha224 => PkcsMgfType::MGF1_SHA224,
        HashAlgorithm::Sha256 => PkcsMgfType::MGF1_SHA256,
        HashAlgorithm::Sha384 => PkcsMgfType::MGF1_SHA384,
        HashAlgorithm::Sha512 => PkcsMgfType::MGF1_SHA512,
    }
}

/// RSA-decrypts `data` with the token key `key`.
pub(crate) fn decrypt(
    s: &Session,
    key: ObjectHandle,
    padding: &RsaPadding,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let mechanism = match padding {
        RsaPadding::Pkcs1v15 => Mechanism::RsaPkcs,
        // The hashes and label as asked: a token that cannot do them refuses the mechanism
        // (SoftHSM 2.6 takes SHA-1 only), which is better than a silent substitute.
        RsaPadding::Oaep(p) => {
            let source = if p.label.is_empty() {
                PkcsOaepSource::empty()
            } else {
                PkcsOaepSource::data_specified(&p.label)
            };
            Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
                oaep_hash(p.hash),
                oaep_mgf(p.mgf1_hash),
                source,
            ))
        }
    };
    s.decrypt(&mechanism, key, data)
        .map(Zeroizing::new)
        .map_err(p11_error)
}
