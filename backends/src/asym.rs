//! Asymmetric keys: what the gateway asks of a backend (key pairs, signatures, RSA decryption)
//! and the software implementation the vault and PostgreSQL share. A Private Key object's
//! material is PKCS#8 DER, a Public Key object's X.509 SubjectPublicKeyInfo DER; conversion from
//! and to PKCS#1 lives here too. Public-key operations (verify, RSA encrypt) involve nothing
//! secret, so the gateway runs them here over the stored public key, whatever the backend.

mod der;
pub mod numbers;
mod oaep_ffi;
mod pss;

pub(crate) use der::{
    curve_params, ec_spki, ecdsa_der, rsa_pkcs8_from_numbers, rsa_private_numbers, rsa_spki,
};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeySize, Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey, RsaParameters, RsaPssSaltLength,
};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, RsaEncoding,
    UnparsedPublicKey, VerificationAlgorithm,
};
use zeroize::Zeroizing;

use crate::{Backend, BackendError, ObjectKind, ObjectRecord};

/// The key pairs Create Key Pair makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPairAlgorithm {
    /// RSA with a modulus of 2048, 3072 or 4096 bits.
    Rsa {
        bits: u32,
    },
    EcP256,
    EcP384,
    EcP521,
    Ed25519,
}

/// RSA moduli generated (bits): below 2048 RSA is no longer safe; above 4096 generation takes
/// seconds of a shared core for no client that asks for it.
pub const RSA_BITS: [u32; 3] = [2048, 3072, 4096];

/// What to generate for a Create Key Pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairSpec {
    pub algorithm: KeyPairAlgorithm,
    /// Whether the private key may ever leave the backend (KMIP `Extractable`).
    pub private_extractable: bool,
    /// Human-readable label (the private key's KMIP Name), if any.
    pub label: Option<String>,
}

/// Hash functions of signatures and OAEP (SHA-224 only in OAEP; signatures refuse it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    /// The digest's length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha224 => 28,
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }
}

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    RsaPkcs1v15(HashAlgorithm),
    RsaPss(HashAlgorithm),
    Ecdsa(HashAlgorithm),
    Ed25519,
}

/// RSA encryption padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RsaPadding {
    Oaep(OaepParams),
    Pkcs1v15,
}

/// The longest OAEP label (KMIP P Source) accepted, in bytes. OAEP only hashes the label, so
/// any length would do; this bounds the copy each request makes of it. Labels in practice are
/// a few dozen bytes.
pub const MAX_OAEP_LABEL: usize = 4096;

/// RSA-OAEP's parameters (RFC 8017 §7.1): the hash of the label, the hash of MGF1, and the
/// label. `Debug` shows the label's length only: a label may bind a ciphertext to a context the
/// logs should not carry.
#[derive(Clone, PartialEq, Eq)]
pub struct OaepParams {
    pub hash: HashAlgorithm,
    pub mgf1_hash: HashAlgorithm,
    pub label: Vec<u8>,
}

impl std::fmt::Debug for OaepParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OaepParams")
            .field("hash", &self.hash)
            .field("mgf1_hash", &self.mgf1_hash)
            .field("label_len", &self.label.len())
            .finish()
    }
}

/// A generated key pair in its stored forms.
pub struct GeneratedPair {
    pub private_pkcs8: Zeroizing<Vec<u8>>,
    pub public_spki: Vec<u8>,
}

fn failed(what: &str) -> BackendError {
    BackendError::Crypto(format!("{what} failed"))
}

fn unsupported(what: String) -> BackendError {
    BackendError::InvalidInput(what)
}

/// Generates a key pair in software.
pub(crate) fn generate_pair(algorithm: KeyPairAlgorithm) -> Result<GeneratedPair, BackendError> {
    let (private, public): (Vec<u8>, Vec<u8>) = match algorithm {
        KeyPairAlgorithm::Rsa { bits } => {
            let size = match bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                _ => {
                    return Err(unsupported(format!(
                        "RSA keys of {bits} bits are not generated (one of {RSA_BITS:?})"
                    )))
                }
            };
            let kp = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| failed("RSA keygen"))?;
            let private = AsDer::<Pkcs8V1Der>::as_der(&kp).map_err(|_| failed("RSA encoding"))?;
            let public = AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
                .map_err(|_| failed("RSA encoding"))?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        KeyPairAlgorithm::EcP256 | KeyPairAlgorithm::EcP384 | KeyPairAlgorithm::EcP521 => {
            let alg = ec_signing(algorithm, None)?;
            let kp = EcdsaKeyPair::generate(alg).map_err(|_| failed("EC keygen"))?;
            let private = kp.to_pkcs8v1().map_err(|_| failed("EC encoding"))?;
            let public = AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
                .map_err(|_| failed("EC encoding"))?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        KeyPairAlgorithm::Ed25519 => {
            let kp = Ed25519KeyPair::generate().map_err(|_| failed("Ed25519 keygen"))?;
            let private = kp.to_pkcs8v1().map_err(|_| failed("Ed25519 encoding"))?;
            let public = AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
                .map_err(|_| failed("Ed25519 encoding"))?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
    };
    Ok(GeneratedPair {
        private_pkcs8: Zeroizing::new(private),
        public_spki: public,
    })
}

/// A software backend's Create Key Pair: generates off the async workers (an RSA 4096 key takes
/// a second of CPU) and stores the pair through `backend.import`, taking the private key back
/// out if the public one cannot be stored, so both are stored or neither.
pub(crate) async fn store_generated_pair<B: Backend + ?Sized>(
    backend: &B,
    private: ObjectRecord,
    public: ObjectRecord,
    spec: KeyPairSpec,
) -> Result<(), BackendError> {
    if private.kind != ObjectKind::PrivateKey || public.kind != ObjectKind::PublicKey {
        return Err(unsupported(
            "a key pair is one Private Key and one Public Key object".into(),
        ));
    }
    let algorithm = spec.algorithm;
    let pair = tokio::task::spawn_blocking(move || generate_pair(algorithm))
        .await
        .map_err(|_| failed("key pair generation"))??;
    let private_uid = private.uid.clone();
    backend.import(private, pair.private_pkcs8, None).await?;
    if let Err(e) = backend
        .import(public, Zeroizing::new(pair.public_spki), None)
        .await
    {
        if let Err(undo) = backend.destroy(&private_uid, None, 1).await {
            tracing::error!(uid = %private_uid, error = %undo,
                "a private key whose public key could not be stored was not removed");
        }
        return Err(e);
    }
    Ok(())
}

/// The algorithm an AlgorithmIdentifier names, as a key pair algorithm (RSA without its size).
fn key_kind(alg: &der::AlgorithmId<'_>) -> Result<KeyPairAlgorithm, BackendError> {
    Ok(match (alg.oid, alg.curve) {
        (der::OID_RSA, _) => KeyPairAlgorithm::Rsa { bits: 0 },
        (der::OID_EC, Some(der::OID_P256)) => KeyPairAlgorithm::EcP256,
        (der::OID_EC, Some(der::OID_P384)) => KeyPairAlgorithm::EcP384,
        (der::OID_EC, Some(der::OID_P521)) => KeyPairAlgorithm::EcP521,
        (der::OID_ED25519, _) => KeyPairAlgorithm::Ed25519,
        _ => {
            return Err(unsupported(
                "the key's algorithm is not RSA, EC P-256/P-384/P-521 or Ed25519".into(),
            ))
        }
    })
}

/// ECDSA signing with the curve of `curve` and, when given, `hash` (else the curve's own).
fn ec_signing(
    curve: KeyPairAlgorithm,
    hash: Option<HashAlgorithm>,
) -> Result<&'static EcdsaSigningAlgorithm, BackendError> {
    use HashAlgorithm::*;
    use KeyPairAlgorithm::*;
    Ok(match (curve, hash) {
        (EcP256, None | Some(Sha256)) => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        (EcP384, None | Some(Sha384)) => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        (EcP521, None | Some(Sha512)) => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        (EcP521, Some(Sha256)) => &signature::ECDSA_P521_SHA256_ASN1_SIGNING,
        (EcP521, Some(Sha384)) => &signature::ECDSA_P521_SHA384_ASN1_SIGNING,
        _ => return Err(unsupported(format!("ECDSA on {curve:?} with {hash:?}"))),
    })
}

fn ec_verifying(
    curve: KeyPairAlgorithm,
    hash: HashAlgorithm,
) -> Result<&'static dyn VerificationAlgorithm, BackendError> {
    use HashAlgorithm::*;
    use KeyPairAlgorithm::*;
    Ok(match (curve, hash) {
        (EcP256, Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
        (EcP256, Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
        (EcP256, Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
        (EcP384, Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
        (EcP384, Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
        (EcP384, Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
        (EcP521, Sha256) => &signature::ECDSA_P521_SHA256_ASN1,
        (EcP521, Sha384) => &signature::ECDSA_P521_SHA384_ASN1,
        (EcP521, Sha512) => &signature::ECDSA_P521_SHA512_ASN1,
        _ => return Err(unsupported(format!("ECDSA on {curve:?} with {hash:?}"))),
    })
}

fn rsa_signing(scheme: SignatureScheme) -> Result<&'static dyn RsaEncoding, BackendError> {
    use HashAlgorithm::*;
    Ok(match scheme {
        SignatureScheme::RsaPkcs1v15(Sha256) => &signature::RSA_PKCS1_SHA256,
        SignatureScheme::RsaPkcs1v15(Sha384) => &signature::RSA_PKCS1_SHA384,
        SignatureScheme::RsaPkcs1v15(Sha512) => &signature::RSA_PKCS1_SHA512,
        SignatureScheme::RsaPss(Sha256) => &signature::RSA_PSS_SHA256,
        SignatureScheme::RsaPss(Sha384) => &signature::RSA_PSS_SHA384,
        SignatureScheme::RsaPss(Sha512) => &signature::RSA_PSS_SHA512,
        other => return Err(unsupported(format!("RSA signing with {other:?}"))),
    })
}

fn rsa_verifying(
    scheme: SignatureScheme,
) -> Result<&'static dyn VerificationAlgorithm, BackendError> {
    use HashAlgorithm::*;
    Ok(match scheme {
        SignatureScheme::RsaPkcs1v15(Sha1) => {
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        SignatureScheme::RsaPkcs1v15(Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RsaPkcs1v15(Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        SignatureScheme::RsaPkcs1v15(Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
        SignatureScheme::RsaPss(Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RsaPss(Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RsaPss(Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
        other => return Err(unsupported(format!("RSA verification with {other:?}"))),
    })
}

fn mismatch(scheme: SignatureScheme, kind: KeyPairAlgorithm) -> BackendError {
    unsupported(format!("a {kind:?} key cannot make {scheme:?} signatures"))
}

/// Signs `data` with the PKCS#8 private key `pkcs8`.
pub(crate) fn sign(
    pkcs8: &[u8],
    scheme: SignatureScheme,
    data: &[u8],
) -> Result<Vec<u8>, BackendError> {
    let (alg, _) = der::pkcs8_parts(pkcs8)?;
    let kind = key_kind(&alg)?;
    match (kind, scheme) {
        (
            KeyPairAlgorithm::Rsa { .. },
            SignatureScheme::RsaPkcs1v15(_) | SignatureScheme::RsaPss(_),
        ) => {
            let encoding = rsa_signing(scheme)?;
            let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8)
                .map_err(|e| unsupported(format!("RSA private key rejected: {e}")))?;
            let mut sig = vec![0u8; kp.public_modulus_len()];
            kp.sign(encoding, &SystemRandom::new(), data, &mut sig)
                .map_err(|_| failed("RSA signing"))?;
            Ok(sig)
        }
        (
            KeyPairAlgorithm::EcP256 | KeyPairAlgorithm::EcP384 | KeyPairAlgorithm::EcP521,
            SignatureScheme::Ecdsa(hash),
        ) => {
            let kp = EcdsaKeyPair::from_pkcs8(ec_signing(kind, Some(hash))?, pkcs8)
                .map_err(|e| unsupported(format!("EC private key rejected: {e}")))?;
            let sig = kp
                .sign(&SystemRandom::new(), data)
                .map_err(|_| failed("ECDSA signing"))?;
            Ok(sig.as_ref().to_vec())
        }
        (KeyPairAlgorithm::Ed25519, SignatureScheme::Ed25519) => {
            let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                .map_err(|e| unsupported(format!("Ed25519 private key rejected: {e}")))?;
            Ok(kp.sign(data).as_ref().to_vec())
        }
        _ => Err(mismatch(scheme, kind)),
    }
}

/// Whether `sig` is a valid signature of `data` under the SubjectPublicKeyInfo `spki`.
pub fn verify(
    spki: &[u8],
    scheme: SignatureScheme,
    data: &[u8],
    sig: &[u8],
) -> Result<bool, BackendError> {
    let (alg, raw) = der::spki_parts(spki)?;
    let kind = key_kind(&alg)?;
    // aws-lc-rs has no PSS with SHA-1: verified here (a public operation, nothing secret).
    if let (KeyPairAlgorithm::Rsa { .. }, SignatureScheme::RsaPss(HashAlgorithm::Sha1)) =
        (kind, scheme)
    {
        let (n, e) = der::rsa_public_numbers(spki)?;
        return pss::verify(&n, &e, HashAlgorithm::Sha1, data, sig);
    }
    let (algorithm, key): (&'static dyn VerificationAlgorithm, &[u8]) = match (kind, scheme) {
        (
            KeyPairAlgorithm::Rsa { .. },
            SignatureScheme::RsaPkcs1v15(_) | SignatureScheme::RsaPss(_),
        ) => (rsa_verifying(scheme)?, spki),
        (
            KeyPairAlgorithm::EcP256 | KeyPairAlgorithm::EcP384 | KeyPairAlgorithm::EcP521,
            SignatureScheme::Ecdsa(hash),
        ) => (ec_verifying(kind, hash)?, spki),
        (KeyPairAlgorithm::Ed25519, SignatureScheme::Ed25519) => (&signature::ED25519, raw),
        _ => return Err(mismatch(scheme, kind)),
    };
    if UnparsedPublicKey::new(algorithm, key)
        .verify(data, sig)
        .is_ok()
    {
        return Ok(true);
    }
    // KMIP does not fix the PSS salt length: signers use the digest's length (as `sign` does)
    // or the largest the key allows (OpenSSL's and Java's long-time default). Both are accepted.
    let max_salt: Option<&'static dyn VerificationAlgorithm> = match scheme {
        SignatureScheme::RsaPss(HashAlgorithm::Sha256) => Some(&PSS_SHA256_MAX_SALT),
        SignatureScheme::RsaPss(HashAlgorithm::Sha384) => Some(&PSS_SHA384_MAX_SALT),
        SignatureScheme::RsaPss(HashAlgorithm::Sha512) => Some(&PSS_SHA512_MAX_SALT),
        _ => None,
    };
    Ok(max_salt.is_some_and(|a| UnparsedPublicKey::new(a, key).verify(data, sig).is_ok()))
}

static PSS_SHA256_MAX_SALT: RsaParameters =
    signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
static PSS_SHA384_MAX_SALT: RsaParameters =
    signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(RsaPssSaltLength::Max);
static PSS_SHA512_MAX_SALT: RsaParameters =
    signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(RsaPssSaltLength::Max);

/// RSA-encrypts `data` to the SubjectPublicKeyInfo `spki`. All OAEP, whatever its hashes and
/// label, goes through AWS-LC's EVP interface (`oaep_ffi`): one code path to trust and test,
/// rather than aws-lc-rs for the equal-hash, label-less case and the FFI for the rest.
pub fn encrypt(spki: &[u8], padding: &RsaPadding, data: &[u8]) -> Result<Vec<u8>, BackendError> {
    if let RsaPadding::Oaep(params) = padding {
        return oaep_ffi::encrypt(spki, params, data);
    }
    let key = PublicEncryptingKey::from_der(spki)
        .map_err(|e| unsupported(format!("not an RSA public key: {e}")))?;
    let k = Pkcs1PublicEncryptingKey::new(key).map_err(|_| failed("RSA setup"))?;
    if data.len() > k.max_plaintext_size() {
        return Err(unsupported(
            "the data is too long for the RSA key and padding".into(),
        ));
    }
    let mut out = vec![0u8; k.ciphertext_size()];
    let n = k
        .encrypt(data, &mut out)
        .map_err(|_| failed("RSA encryption"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// RSA-decrypts `data` with the PKCS#8 private key `pkcs8` (OAEP as in `encrypt`).
pub(crate) fn decrypt(
    pkcs8: &[u8],
    padding: &RsaPadding,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    if let RsaPadding::Oaep(params) = padding {
        return oaep_ffi::decrypt(pkcs8, params, data);
    }
    let key = PrivateDecryptingKey::from_pkcs8(pkcs8)
        .map_err(|e| unsupported(format!("not an RSA private key: {e}")))?;
    let k = Pkcs1PrivateDecryptingKey::new(key).map_err(|_| failed("RSA setup"))?;
    let mut out = Zeroizing::new(vec![0u8; k.min_output_size()]);
    // A wrong key or tampered ciphertext: an integrity failure, not a malformed request.
    let n = k
        .decrypt(data, &mut out)
        .map_err(|_| BackendError::IntegrityCheckFailed)?
        .len();
    out.truncate(n);
    Ok(out)
}

/// A private key as PKCS#8, from PKCS#8 or a PKCS#1 RSAPrivateKey.
pub fn private_to_pkcs8(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    if der::pkcs8_parts(der).is_ok() {
        return Ok(Zeroizing::new(der.to_vec()));
    }
    der::pkcs8_from_rsa_private(der).map(Zeroizing::new)
}

/// A public key as SubjectPublicKeyInfo, from one or from a PKCS#1 RSAPublicKey.
pub fn public_to_spki(der: &[u8]) -> Result<Vec<u8>, BackendError> {
    if der::spki_parts(der).is_ok() {
        return Ok(der.to_vec());
    }
    der::spki_from_rsa_public(der)
}

fn rsa_only(what: &str) -> BackendError {
    unsupported(format!("only RSA keys have a PKCS#1 form ({what})"))
}

/// The PKCS#1 RSAPrivateKey inside a PKCS#8 (or PKCS#1) RSA private key.
pub fn private_to_pkcs1(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let pkcs8 = private_to_pkcs8(der)?;
    let (alg, inner) = der::pkcs8_parts(&pkcs8)?;
    if alg.oid != der::OID_RSA {
        return Err(rsa_only("private key"));
    }
    Ok(Zeroizing::new(inner.to_vec()))
}

/// The PKCS#1 RSAPublicKey inside a SubjectPublicKeyInfo (or PKCS#1) RSA public key.
pub fn public_to_pkcs1(der: &[u8]) -> Result<Vec<u8>, BackendError> {
    let spki = public_to_spki(der)?;
    let (alg, inner) = der::spki_parts(&spki)?;
    if alg.oid != der::OID_RSA {
        return Err(rsa_only("public key"));
    }
    Ok(inner.to_vec())
}

#[cfg(test)]
mod tests;
