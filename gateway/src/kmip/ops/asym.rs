//! Asymmetric keys: Create Key Pair (two linked objects), Sign and Signature Verify, RSA
//! Encrypt/Decrypt, and the Key Format conversions of Register and Get (objects are stored as
//! PKCS#8 and SubjectPublicKeyInfo; clients also send and ask for PKCS#1).

mod transparent;

use super::object::{digest_attr, state_name, state_of};
use super::server_attributes::rng_attribute;
use super::unique_names::name_values;
use super::{OpContext, OpError, Ops};
use crate::kmip::store::{StoredObject, Written};
use bytes::Bytes;
use kmip_backends::asym::{
    self as soft, HashAlgorithm, KeyPairAlgorithm, KeyPairSpec, OaepParams, RsaPadding,
    SignatureScheme,
};
use kmip_backends::ObjectKind;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

const USAGE_SIGN: i32 = 0x0000_0001;
const USAGE_VERIFY: i32 = 0x0000_0002;
const USAGE_ENCRYPT: i32 = 0x0000_0004;
const USAGE_DECRYPT: i32 = 0x0000_0008;

impl Ops {
    pub(super) async fn create_key_pair(
        &self,
        ctx: &mut OpContext<'_>,
        r: CreateKeyPairRequest,
    ) -> Result<CreateKeyPairResponse, OpError> {
        let common_attributes = self
            .with_templates(ctx, &r.common_templates, r.common_attributes)
            .await?;
        let private_key_attributes = self
            .with_templates(ctx, &r.private_key_templates, r.private_key_attributes)
            .await?;
        let public_key_attributes = self
            .with_templates(ctx, &r.public_key_templates, r.public_key_attributes)
            .await?;
        let mut names = name_values(&private_key_attributes);
        names.extend(name_values(&public_key_attributes));
        let _names = self.lock_names(names).await?;
        // Each key's own attributes override the common ones.
        let merged = |own: Vec<Attribute>| {
            let mut all: Vec<Attribute> = common_attributes
                .iter()
                .filter(|c| !own.iter().any(|o| o.name == c.name))
                .cloned()
                .collect();
            all.extend(own);
            all
        };
        let private_attrs = self.client_attributes(ctx, merged(private_key_attributes), true)?;
        let public_attrs = self.client_attributes(ctx, merged(public_key_attributes), true)?;
        let algorithm = pair_algorithm(&private_attrs)?;
        let flag = |tag: Tag| {
            private_attrs
                .iter()
                .find(|a| a.is(tag))
                .and_then(Attribute::as_bool)
        };
        let extractable = flag(tags::EXTRACTABLE).unwrap_or(true);
        let sensitive = flag(tags::SENSITIVE).unwrap_or(false);
        let spec = KeyPairSpec {
            algorithm,
            private_extractable: extractable,
            label: private_attrs
                .iter()
                .find(|a| a.is(tags::NAME))
                .and_then(Attribute::as_name)
                .map(|n| n.value),
        };
        let (kmip_alg, bits) = algorithm_attributes(algorithm);
        let (private_format, public_format) = formats_of(algorithm);
        let with_key_facts = |mut attrs: Vec<Attribute>, format: KeyFormatType| {
            attrs.retain(|a| {
                !a.is(tags::CRYPTOGRAPHIC_ALGORITHM) && !a.is(tags::CRYPTOGRAPHIC_LENGTH)
            });
            attrs.push(Attribute::enumeration(
                tags::CRYPTOGRAPHIC_ALGORITHM,
                kmip_alg,
            ));
            attrs.push(Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, bits));
            attrs.push(Attribute::enumeration(tags::KEY_FORMAT_TYPE, format));
            attrs
        };
        let mut private = self.new_object(
            ctx,
            ObjectType::PrivateKey,
            with_key_facts(private_attrs, private_format),
        )?;
        let mut public = self.new_object(
            ctx,
            ObjectType::PublicKey,
            with_key_facts(public_attrs, public_format),
        )?;
        private.set(tags::SENSITIVE, Value::Boolean(sensitive));
        private.set(tags::EXTRACTABLE, Value::Boolean(extractable));
        private.set(tags::ALWAYS_SENSITIVE, Value::Boolean(sensitive));
        private.set(tags::NEVER_EXTRACTABLE, Value::Boolean(!extractable));
        // The server generated the pair: its generator is the backend's, whatever a client said.
        let generator = rng_attribute(self.store.backend().rng());
        private.set(tags::RANDOM_NUMBER_GENERATOR, generator.clone());
        public.set(tags::RANDOM_NUMBER_GENERATOR, generator);
        private.attributes.push(Attribute::link(&Link {
            link_type: LinkType::PublicKeyLink,
            linked_object_identifier: public.uid.clone(),
        }));
        public.attributes.push(Attribute::link(&Link {
            link_type: LinkType::PrivateKeyLink,
            linked_object_identifier: private.uid.clone(),
        }));
        let (private_uid, public_uid) = (private.uid.clone(), public.uid.clone());
        let (private_after, public_after) = self
            .store
            .create_pair(private, public, spec, self.max_objects_per_user)
            .await?;
        ctx.written.push(Written {
            before: None,
            after: private_after,
        });
        ctx.written.push(Written {
            before: None,
            after: public_after,
        });
        // The Digest is of the key as served in its Key Format Type; the material exists only
        // now. A private key that cannot leave the backend has no digest here.
        let public_der = self.store.read_material(&public_uid).await?;
        let digest = digest_attr(
            &served_bytes(ObjectKind::PublicKey, public_format, &public_der)?,
            public_format,
        );
        self.update(ctx, &public_uid, |o| {
            o.attributes.push(digest.clone());
            Ok(())
        })
        .await?;
        if let Ok(private_der) = self.store.read_material(&private_uid).await {
            let digest = digest_attr(
                &served_bytes(ObjectKind::PrivateKey, private_format, &private_der)?,
                private_format,
            );
            self.update(ctx, &private_uid, |o| {
                o.attributes.push(digest.clone());
                Ok(())
            })
            .await?;
        }
        ctx.id_placeholder = Some(private_uid.clone());
        Ok(CreateKeyPairResponse {
            private_key_unique_identifier: private_uid,
            public_key_unique_identifier: public_uid,
        })
    }

    /// The key `uid` if it may be used for `usage` at `now`: of `kind`, Active, within its
    /// dates (signing and encrypting protect: they stop at the Protect Stop Date; verifying
    /// and decrypting process: they start at the Process Start Date), and its usage mask
    /// allows it.
    fn usable_asym_key(
        &self,
        uid: &str,
        kind: ObjectKind,
        usage: i32,
        now: i64,
    ) -> Result<Arc<StoredObject>, OpError> {
        let obj = self.live_object(uid)?;
        if obj.kind != kind {
            return Err(OpError::InvalidField(format!(
                "this operation needs a {} key",
                if kind == ObjectKind::PrivateKey {
                    "private"
                } else {
                    "public"
                }
            )));
        }
        if state_of(&obj) != State::Active {
            return Err(OpError::WrongState(state_name(state_of(&obj))));
        }
        let date = |tag: Tag| obj.first(tag).and_then(|a| a.as_datetime());
        let protecting = usage == USAGE_SIGN || usage == USAGE_ENCRYPT;
        if protecting && date(tags::PROTECT_STOP_DATE).is_some_and(|d| d <= now) {
            return Err(OpError::WrongState("past its Protect Stop Date"));
        }
        if !protecting && date(tags::PROCESS_START_DATE).is_some_and(|d| d > now) {
            return Err(OpError::WrongState("before its Process Start Date"));
        }
        if obj
            .first(tags::CRYPTOGRAPHIC_USAGE_MASK)
            .and_then(|a| a.as_int())
            .is_some_and(|mask| mask & usage == 0)
        {
            return Err(OpError::IncompatibleUsageMask);
        }
        Ok(obj)
    }

    pub(super) async fn sign(
        &self,
        ctx: &mut OpContext<'_>,
        r: SignRequest,
    ) -> Result<SignResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_asym_key(&uid, ObjectKind::PrivateKey, USAGE_SIGN, ctx.now)?;
        let scheme = signature_scheme(r.cryptographic_parameters.as_ref(), &obj)?;
        let data = single_part_data(
            r.data,
            r.digested_data.as_ref(),
            r.init_indicator,
            r.final_indicator,
        )?;
        let signature = self
            .store
            .backend()
            .sign(&uid, scheme, data.as_slice())
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(SignResponse {
            unique_identifier: uid,
            signature_data: Some(Bytes::from(signature)),
            correlation_value: None,
        })
    }

    pub(super) async fn signature_verify(
        &self,
        ctx: &mut OpContext<'_>,
        r: SignRequest,
    ) -> Result<SignatureVerifyResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_asym_key(&uid, ObjectKind::PublicKey, USAGE_VERIFY, ctx.now)?;
        let scheme = signature_scheme(r.cryptographic_parameters.as_ref(), &obj)?;
        let data = single_part_data(
            r.data,
            r.digested_data.as_ref(),
            r.init_indicator,
            r.final_indicator,
        )?;
        let signature = r
            .signature_data
            .ok_or_else(|| OpError::MissingData("Signature Data".into()))?;
        let spki = self.store.read_material(&uid).await?;
        let valid = soft::verify(&spki, scheme, data.as_slice(), &signature)?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(SignatureVerifyResponse {
            unique_identifier: uid,
            validity_indicator: if valid {
                ValidityIndicator::Valid
            } else {
                ValidityIndicator::Invalid
            },
            correlation_value: None,
        })
    }

    /// RSA Encrypt with a public key (Encrypt's path for asymmetric keys).
    pub(super) async fn rsa_encrypt(
        &self,
        ctx: &mut OpContext<'_>,
        r: CryptoRequest,
    ) -> Result<EncryptResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_asym_key(&uid, ObjectKind::PublicKey, USAGE_ENCRYPT, ctx.now)?;
        let padding = rsa_padding(r.cryptographic_parameters.as_ref(), &obj)?;
        let data = r.data.ok_or_else(|| OpError::MissingData("Data".into()))?;
        let spki = self.store.read_material(&uid).await?;
        let out = soft::encrypt(&spki, &padding, data.as_slice())?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(EncryptResponse {
            unique_identifier: uid,
            data: Some(Bytes::from(out)),
            iv_counter_nonce: None,
            correlation_value: None,
            authenticated_encryption_tag: None,
        })
    }

    /// RSA Decrypt with a private key, where it lives (Decrypt's path for asymmetric keys).
    pub(super) async fn rsa_decrypt(
        &self,
        ctx: &mut OpContext<'_>,
        r: CryptoRequest,
    ) -> Result<DecryptResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.usable_asym_key(&uid, ObjectKind::PrivateKey, USAGE_DECRYPT, ctx.now)?;
        let padding = rsa_padding(r.cryptographic_parameters.as_ref(), &obj)?;
        let data = r.data.ok_or_else(|| OpError::MissingData("Data".into()))?;
        let out = self
            .store
            .backend()
            .rsa_decrypt(&uid, padding, data.as_slice())
            .await?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(DecryptResponse {
            unique_identifier: uid,
            data: Some(SecretBytes::from_slice(&out)),
            correlation_value: None,
        })
    }
}

/// Whether Encrypt/Decrypt on `uid` takes the RSA path: the key is a Public or Private Key.
pub(super) fn is_asymmetric(ops: &Ops, uid: Option<&String>, placeholder: Option<&String>) -> bool {
    uid.or(placeholder)
        .and_then(|u| ops.store.get(u))
        .is_some_and(|o| matches!(o.kind, ObjectKind::PublicKey | ObjectKind::PrivateKey))
}

/// Sign and Signature Verify take the whole data in one request; the streaming form and
/// client-side hashing are refused by name rather than half-served.
fn single_part_data(
    data: Option<SecretBytes>,
    digested: Option<&Bytes>,
    init: Option<bool>,
    last: Option<bool>,
) -> Result<SecretBytes, OpError> {
    if digested.is_some() {
        return Err(OpError::FeatureNotSupported(
            "Digested Data is not supported: send the Data itself".into(),
        ));
    }
    if init.is_some() || last.is_some() {
        return Err(OpError::FeatureNotSupported(
            "streaming Sign/Signature Verify (Init/Final Indicator) is not supported".into(),
        ));
    }
    data.ok_or_else(|| OpError::MissingData("Data".into()))
}

/// The key pair Create Key Pair asks for, from the merged attributes of the private key.
fn pair_algorithm(attrs: &[Attribute]) -> Result<KeyPairAlgorithm, OpError> {
    let alg = attrs
        .iter()
        .find(|a| a.is(tags::CRYPTOGRAPHIC_ALGORITHM))
        .and_then(|a| a.as_enum::<CryptographicAlgorithm>())
        .ok_or_else(|| OpError::MissingData("Cryptographic Algorithm".into()))?;
    let bits = attrs
        .iter()
        .find(|a| a.is(tags::CRYPTOGRAPHIC_LENGTH))
        .and_then(Attribute::as_int);
    Ok(match (alg, bits) {
        (CryptographicAlgorithm::Rsa, Some(b)) if soft::RSA_BITS.contains(&(b.max(0) as u32)) => {
            KeyPairAlgorithm::Rsa { bits: b as u32 }
        }
        (CryptographicAlgorithm::Ec | CryptographicAlgorithm::Ecdsa, Some(256)) => {
            KeyPairAlgorithm::EcP256
        }
        (CryptographicAlgorithm::Ec | CryptographicAlgorithm::Ecdsa, Some(384)) => {
            KeyPairAlgorithm::EcP384
        }
        (CryptographicAlgorithm::Ec | CryptographicAlgorithm::Ecdsa, Some(521)) => {
            KeyPairAlgorithm::EcP521
        }
        (CryptographicAlgorithm::Ed25519, None | Some(255) | Some(256)) => {
            KeyPairAlgorithm::Ed25519
        }
        _ => {
            return Err(OpError::InvalidField(format!(
                "cannot create {alg:?} key pairs of {} bits (RSA 2048/3072/4096, EC 256/384/521, \
                 Ed25519 are supported)",
                bits.map_or("unspecified".into(), |b| b.to_string())
            )))
        }
    })
}

/// The Cryptographic Algorithm and Length attributes of a generated pair.
fn algorithm_attributes(a: KeyPairAlgorithm) -> (CryptographicAlgorithm, i32) {
    match a {
        KeyPairAlgorithm::Rsa { bits } => (CryptographicAlgorithm::Rsa, bits as i32),
        KeyPairAlgorithm::EcP256 => (CryptographicAlgorithm::Ec, 256),
        KeyPairAlgorithm::EcP384 => (CryptographicAlgorithm::Ec, 384),
        KeyPairAlgorithm::EcP521 => (CryptographicAlgorithm::Ec, 521),
        KeyPairAlgorithm::Ed25519 => (CryptographicAlgorithm::Ed25519, 256),
    }
}

/// The Key Format Types a generated pair is served in by default: PKCS#1 for RSA (what the
/// profiles' clients expect), PKCS#8 and X.509 for the others (they have no PKCS#1 form).
fn formats_of(a: KeyPairAlgorithm) -> (KeyFormatType, KeyFormatType) {
    match a {
        KeyPairAlgorithm::Rsa { .. } => (KeyFormatType::Pkcs1, KeyFormatType::Pkcs1),
        _ => (KeyFormatType::Pkcs8, KeyFormatType::X509),
    }
}

/// The DER forms a Public or Private Key converts between.
pub(super) fn is_der_format(f: KeyFormatType) -> bool {
    matches!(
        f,
        KeyFormatType::Pkcs1 | KeyFormatType::Pkcs8 | KeyFormatType::X509
    )
}

/// The material to store for a registered Public or Private Key in `format`: PKCS#8 or
/// SubjectPublicKeyInfo; other formats (transparent structures) are kept as they came.
pub(super) fn stored_material(
    object_type: ObjectType,
    format: KeyFormatType,
    material: Zeroizing<Vec<u8>>,
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let invalid = |e: kmip_backends::BackendError| {
        OpError::InvalidField(format!("the key material is not a {format:?} key: {e}"))
    };
    Ok(match (object_type, format) {
        (ObjectType::PrivateKey, KeyFormatType::Pkcs1 | KeyFormatType::Pkcs8) => {
            soft::private_to_pkcs8(&material).map_err(invalid)?
        }
        (ObjectType::PublicKey, KeyFormatType::Pkcs1 | KeyFormatType::X509) => {
            Zeroizing::new(soft::public_to_spki(&material).map_err(invalid)?)
        }
        (
            ObjectType::PrivateKey,
            KeyFormatType::TransparentRsaPrivateKey | KeyFormatType::TransparentEcPrivateKey,
        )
        | (
            ObjectType::PublicKey,
            KeyFormatType::TransparentRsaPublicKey | KeyFormatType::TransparentEcPublicKey,
        ) => transparent::der_of_transparent(format, &material)?,
        _ => material,
    })
}

/// The DER (PKCS#8 or SubjectPublicKeyInfo) of a key another server answered as a Transparent
/// RSA or EC structure: a KMIP proxy's upstream, whose keys the proxy keeps in the stored form.
pub(crate) fn der_of_transparent_key(
    format: KeyFormatType,
    structure: &Ttlv,
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    if !transparent::is_transparent_key(format) {
        return Err(OpError::KeyFormatNotSupported);
    }
    let bytes = structure
        .to_bytes()
        .map_err(|_| OpError::InvalidField("the transparent key structure".into()))?;
    transparent::der_of_transparent(format, &bytes)
}

/// Whether a key's stored material is DER (PKCS#8 or SubjectPublicKeyInfo), whatever format
/// it was registered in. Transparent RSA and EC keys registered before they were converted
/// on Register are kept as their TTLV (which starts with a tag, 0x42, never DER's 0x30).
fn stored_as_der(format: KeyFormatType, material: &[u8]) -> bool {
    const DER_SEQUENCE: u8 = 0x30;
    is_der_format(format)
        || (transparent::is_transparent_key(format) && material.first() == Some(&DER_SEQUENCE))
}

/// The stored material of a Public or Private Key in the DER `format` a client asks for.
fn served_bytes(
    kind: ObjectKind,
    format: KeyFormatType,
    stored: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let converted = match (kind, format) {
        (ObjectKind::PrivateKey, KeyFormatType::Pkcs8) => soft::private_to_pkcs8(stored),
        (ObjectKind::PrivateKey, KeyFormatType::Pkcs1) => soft::private_to_pkcs1(stored),
        (ObjectKind::PublicKey, KeyFormatType::X509) => {
            soft::public_to_spki(stored).map(Zeroizing::new)
        }
        (ObjectKind::PublicKey, KeyFormatType::Pkcs1) => {
            soft::public_to_pkcs1(stored).map(Zeroizing::new)
        }
        (_, f) if transparent::is_transparent_key(f) => {
            return transparent::transparent_of_der(kind, f, stored)
        }
        _ => return Err(OpError::KeyFormatNotSupported),
    };
    converted.map_err(|_| OpError::KeyFormatNotSupported)
}

/// Get's material of a Public or Private Key: in the format asked for (default: the one it was
/// registered or created in), converted between PKCS#1, PKCS#8, X.509 and the Transparent RSA
/// and EC structures where the key has that form.
pub(super) fn served_material(
    kind: ObjectKind,
    stored_format: KeyFormatType,
    wanted: Option<KeyFormatType>,
    material: Zeroizing<Vec<u8>>,
) -> Result<(KeyFormatType, Zeroizing<Vec<u8>>), OpError> {
    let wanted = wanted.unwrap_or(stored_format);
    if !stored_as_der(stored_format, &material) {
        return if wanted == stored_format {
            Ok((wanted, material))
        } else {
            Err(OpError::KeyFormatNotSupported)
        };
    }
    Ok((wanted, served_bytes(kind, wanted, &material)?))
}

/// The request's Cryptographic Parameters completed from the key's own attribute.
fn parameters(given: Option<&CryptographicParameters>, obj: &StoredObject) -> Params {
    let stored = obj
        .first(tags::CRYPTOGRAPHIC_PARAMETERS)
        .and_then(|a| match &a.value {
            Value::Structure(items) => Some(items.clone()),
            _ => None,
        });
    let from_stored = |tag: Tag| {
        stored
            .as_ref()
            .and_then(|items| items.iter().find(|t| t.tag == tag))
            .and_then(|t| t.as_enum())
    };
    let from_given = |tag: Tag| {
        given
            .and_then(|p| p.other.iter().find(|t| t.tag == tag))
            .and_then(|t| t.as_enum())
    };
    let pick = |tag: Tag| from_given(tag).or_else(|| from_stored(tag));
    let find = |items: &[Ttlv], tag: Tag| items.iter().find(|t| t.tag == tag).cloned();
    let pick_field = |tag: Tag| {
        given
            .and_then(|p| find(&p.other, tag))
            .or_else(|| stored.as_deref().and_then(|items| find(items, tag)))
    };
    Params {
        padding: given
            .and_then(|p| p.padding_method)
            .or_else(|| from_stored(tags::PADDING_METHOD).map(PaddingMethod::from_u32)),
        hash: given
            .and_then(|p| p.hashing_algorithm)
            .or_else(|| from_stored(tags::HASHING_ALGORITHM).map(HashingAlgorithm::from_u32)),
        signature: pick(tags::DIGITAL_SIGNATURE_ALGORITHM).map(DigitalSignatureAlgorithm::from_u32),
        mgf: pick(tags::MASK_GENERATOR),
        mgf_hash: pick(tags::MASK_GENERATOR_HASHING_ALGORITHM).map(HashingAlgorithm::from_u32),
        p_source: pick_field(tags::PSOURCE),
    }
}

struct Params {
    padding: Option<PaddingMethod>,
    hash: Option<HashingAlgorithm>,
    signature: Option<DigitalSignatureAlgorithm>,
    /// Mask Generator (an enumeration whose one value is MGF1).
    mgf: Option<u32>,
    mgf_hash: Option<HashingAlgorithm>,
    /// P Source, OAEP's label, as received (checked where it is used).
    p_source: Option<Ttlv>,
}

/// The Mask Generator enumeration's MGF1 (KMIP 1.4 §9.1.3.2.49; the only value defined).
const MGF1: u32 = 0x0000_0001;

fn hash_of(h: HashingAlgorithm) -> Result<HashAlgorithm, OpError> {
    Ok(match h {
        HashingAlgorithm::Sha1 => HashAlgorithm::Sha1,
        HashingAlgorithm::Sha224 => HashAlgorithm::Sha224,
        HashingAlgorithm::Sha256 => HashAlgorithm::Sha256,
        HashingAlgorithm::Sha384 => HashAlgorithm::Sha384,
        HashingAlgorithm::Sha512 => HashAlgorithm::Sha512,
        other => {
            return Err(OpError::BadCryptoParameters(format!(
                "hashing algorithm {other:?} (SHA-1/224/256/384/512 are supported)"
            )))
        }
    })
}

/// The signature scheme of a Sign or Signature Verify: the Digital Signature Algorithm if
/// given, else the key's algorithm with the Padding Method and Hashing Algorithm.
fn signature_scheme(
    given: Option<&CryptographicParameters>,
    obj: &StoredObject,
) -> Result<SignatureScheme, OpError> {
    use DigitalSignatureAlgorithm as D;
    let p = parameters(given, obj);
    let need_hash = || {
        p.hash
            .ok_or_else(|| OpError::MissingData("Hashing Algorithm".into()))
            .and_then(hash_of)
    };
    if let Some(sig) = p.signature {
        return Ok(match sig {
            D::Sha1WithRsa => SignatureScheme::RsaPkcs1v15(HashAlgorithm::Sha1),
            D::Sha256WithRsa => SignatureScheme::RsaPkcs1v15(HashAlgorithm::Sha256),
            D::Sha384WithRsa => SignatureScheme::RsaPkcs1v15(HashAlgorithm::Sha384),
            D::Sha512WithRsa => SignatureScheme::RsaPkcs1v15(HashAlgorithm::Sha512),
            D::RsassaPss => SignatureScheme::RsaPss(need_hash()?),
            D::EcdsaWithSha256 => SignatureScheme::Ecdsa(HashAlgorithm::Sha256),
            D::EcdsaWithSha384 => SignatureScheme::Ecdsa(HashAlgorithm::Sha384),
            D::EcdsaWithSha512 => SignatureScheme::Ecdsa(HashAlgorithm::Sha512),
            other => {
                return Err(OpError::BadCryptoParameters(format!(
                    "digital signature algorithm {other:?}"
                )))
            }
        });
    }
    let alg = obj
        .first(tags::CRYPTOGRAPHIC_ALGORITHM)
        .and_then(|a| a.as_enum::<CryptographicAlgorithm>());
    match alg {
        Some(CryptographicAlgorithm::Rsa) => match p.padding {
            Some(PaddingMethod::Pss) => Ok(SignatureScheme::RsaPss(need_hash()?)),
            Some(PaddingMethod::Pkcs1V15) => Ok(SignatureScheme::RsaPkcs1v15(need_hash()?)),
            None => Err(OpError::MissingData(
                "Padding Method (PSS or PKCS1 v1.5) or Digital Signature Algorithm".into(),
            )),
            Some(other) => Err(OpError::BadCryptoParameters(format!(
                "RSA signatures with padding {other:?}"
            ))),
        },
        Some(CryptographicAlgorithm::Ec | CryptographicAlgorithm::Ecdsa) => {
            Ok(SignatureScheme::Ecdsa(need_hash()?))
        }
        Some(CryptographicAlgorithm::Ed25519) => Ok(SignatureScheme::Ed25519),
        other => Err(OpError::BadCryptoParameters(format!(
            "signatures with a {other:?} key"
        ))),
    }
}

/// The RSA padding of an Encrypt or Decrypt: OAEP or PKCS#1 v1.5. OAEP's hash defaults to
/// SHA-1 (PKCS#1's default); its MGF1 hash, when not given, to the OAEP hash, as clients that
/// name one hash expect (PyKMIP, and what this gateway always did) — the KMIP tables' SHA-1
/// default would silently change their ciphertexts. The label is P Source, empty by default.
fn rsa_padding(
    given: Option<&CryptographicParameters>,
    obj: &StoredObject,
) -> Result<RsaPadding, OpError> {
    let p = parameters(given, obj);
    match p.padding {
        Some(PaddingMethod::Oaep) => {
            if p.mgf.is_some_and(|m| m != MGF1) {
                return Err(OpError::BadCryptoParameters(
                    "OAEP with a mask generator other than MGF1".into(),
                ));
            }
            let hash = hash_of(p.hash.unwrap_or(HashingAlgorithm::Sha1))?;
            let mgf1_hash = p.mgf_hash.map(hash_of).transpose()?.unwrap_or(hash);
            let label = match &p.p_source {
                None => Vec::new(),
                Some(t) => {
                    let bytes = t.as_bytes().ok_or_else(|| {
                        OpError::BadCryptoParameters("P Source is not a Byte String".into())
                    })?;
                    if bytes.len() > soft::MAX_OAEP_LABEL {
                        return Err(OpError::BadCryptoParameters(format!(
                            "P Source of {} bytes (at most {})",
                            bytes.len(),
                            soft::MAX_OAEP_LABEL
                        )));
                    }
                    bytes.to_vec()
                }
            };
            Ok(RsaPadding::Oaep(OaepParams {
                hash,
                mgf1_hash,
                label,
            }))
        }
        Some(PaddingMethod::Pkcs1V15) => Ok(RsaPadding::Pkcs1v15),
        None => Err(OpError::MissingData(
            "Padding Method (OAEP or PKCS1 v1.5) for an RSA key".into(),
        )),
        Some(other) => Err(OpError::BadCryptoParameters(format!(
            "RSA encryption with padding {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests;
