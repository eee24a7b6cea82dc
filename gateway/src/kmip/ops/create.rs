//! Create and Register: the attributes a client supplies, the key specification the backend
//! generates or imports under, and the new object's first durable write.

use super::attribute_rules::{check_is_attribute, server_set, CREATE_ONLY, MULTI_VALUED};
use super::certificate;
use super::import::Imported;
use super::object::digest_attr;
use super::server_attributes::rng_attribute;
use super::split_material::{
    check_certificate_requests_exist, check_split, encode, SplitGroup, REGISTERED,
};
use super::template::template_material;
use super::unique_names::name_values;
use super::{OpContext, OpError, Ops};
use crate::kmip::store::{ObjectDraft, Written};
use kmip_backends::{KeyAlgorithm, KeySpec};
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Value};
use zeroize::Zeroizing;

impl Ops {
    /// Attributes a client supplies at Create/Register, checked; server attributes are refused.
    pub(super) fn client_attributes(
        &self,
        ctx: &OpContext<'_>,
        attrs: Vec<Attribute>,
        creating: bool,
    ) -> Result<Vec<Attribute>, OpError> {
        let mut out: Vec<Attribute> = Vec::with_capacity(attrs.len());
        for a in attrs {
            check_is_attribute(&a.name)?;
            if let Some(tag) = a.tag() {
                if tag == tags::OBJECT_TYPE || tag == tags::UNIQUE_IDENTIFIER {
                    continue;
                }
                if server_set(tag) && !(creating && CREATE_ONLY.contains(&tag)) {
                    return Err(OpError::ReadOnlyAttribute(
                        a.name.v1_name().unwrap_or_default(),
                    ));
                }
                if !MULTI_VALUED.contains(&tag) {
                    out.retain(|x| x.name != a.name);
                }
                if tag == tags::NAME {
                    self.check_name_unique(ctx, &a, None)?;
                }
            }
            out.push(Attribute { index: None, ..a });
        }
        Ok(out)
    }

    pub(super) async fn create(
        &self,
        ctx: &mut OpContext<'_>,
        r: CreateRequest,
    ) -> Result<CreateResponse, OpError> {
        if r.object_type != ObjectType::SymmetricKey {
            return Err(OpError::FeatureNotSupported(
                "Create makes Symmetric Keys only".into(),
            ));
        }
        let attributes = self.with_templates(ctx, &r.templates, r.attributes).await?;
        let _names = self.lock_names(name_values(&attributes)).await?;
        let attrs = self.client_attributes(ctx, attributes, true)?;
        let alg = attrs
            .iter()
            .find(|a| a.is(tags::CRYPTOGRAPHIC_ALGORITHM))
            .and_then(|a| a.as_enum::<CryptographicAlgorithm>())
            .ok_or_else(|| OpError::MissingData("Cryptographic Algorithm".into()))?;
        let bits = attrs
            .iter()
            .find(|a| a.is(tags::CRYPTOGRAPHIC_LENGTH))
            .and_then(Attribute::as_int)
            .ok_or_else(|| OpError::MissingData("Cryptographic Length".into()))?;
        let algorithm = match (alg, bits) {
            (CryptographicAlgorithm::Aes, 128 | 192 | 256) => KeyAlgorithm::Aes,
            // KMIP counts Triple DES by its 168 effective bits; the key is 192 with parity.
            (CryptographicAlgorithm::Des3, 168 | 192) => KeyAlgorithm::TripleDes,
            (CryptographicAlgorithm::ChaCha20 | CryptographicAlgorithm::ChaCha20Poly1305, 256) => {
                KeyAlgorithm::ChaCha20
            }
            (CryptographicAlgorithm::HmacSha256, 128..=512) if bits % 8 == 0 => KeyAlgorithm::HmacSha256,
            _ => {
                return Err(OpError::InvalidField(format!(
                    "cannot create {alg:?} keys of {bits} bits (AES 128/192/256, Triple DES 168, ChaCha20 256 and HMAC-SHA256 are supported)"
                )))
            }
        };
        super::quantum_safe::check_quantum_safe(&attrs, algorithm, bits)?;
        let material_bits = if algorithm == KeyAlgorithm::TripleDes {
            TRIPLE_DES_MATERIAL_BITS
        } else {
            bits
        };
        let spec = key_spec(algorithm, material_bits, &attrs);
        let mut obj = self.new_object(ctx, ObjectType::SymmetricKey, attrs)?;
        flag_attrs(&mut obj, &spec);
        // The server generated the key: its generator is the one the backend uses, whatever a
        // client said.
        obj.set(
            tags::RANDOM_NUMBER_GENERATOR,
            rng_attribute(self.store.backend().rng()),
        );
        let uid = obj.uid.clone();
        let after = self
            .store
            .create(obj, spec, self.max_objects_per_user)
            .await?;
        ctx.written.push(Written {
            before: None,
            after,
        });
        ctx.id_placeholder = Some(uid.clone());
        Ok(CreateResponse {
            object_type: ObjectType::SymmetricKey,
            unique_identifier: uid,
        })
    }

    pub(super) async fn register(
        &self,
        ctx: &mut OpContext<'_>,
        r: RegisterRequest,
    ) -> Result<UidResponse, OpError> {
        self.register_as(ctx, r, None).await
    }

    /// Register, or Import when `imported` names the identifier and server attributes to keep.
    pub(super) async fn register_as(
        &self,
        ctx: &mut OpContext<'_>,
        r: RegisterRequest,
        imported: Option<Imported>,
    ) -> Result<UidResponse, OpError> {
        self.register_in(ctx, r, imported, &REGISTERED).await
    }

    /// Register; a Split Key is recorded as a part of the split `group`.
    pub(super) async fn register_in(
        &self,
        ctx: &mut OpContext<'_>,
        r: RegisterRequest,
        imported: Option<Imported>,
        group: &SplitGroup,
    ) -> Result<UidResponse, OpError> {
        let object_type = r.object.object_type();
        if let ManagedObject::SplitKey(split) = &r.object {
            check_split(split)?;
        }
        let attributes = self.with_templates(ctx, &r.templates, r.attributes).await?;
        let _names = self.lock_names(name_values(&attributes)).await?;
        let mut attrs = self.client_attributes(ctx, attributes, true)?;
        let (material, format) = match &r.object {
            ManagedObject::SymmetricKey(kb)
            | ManagedObject::PublicKey(kb)
            | ManagedObject::PrivateKey(kb)
            | ManagedObject::SecretData { key_block: kb, .. }
            | ManagedObject::PgpKey { key_block: kb, .. }
            | ManagedObject::SplitKey(SplitKey { key_block: kb, .. }) => {
                if let Some(a) = kb.cryptographic_algorithm {
                    attrs.retain(|x| !x.is(tags::CRYPTOGRAPHIC_ALGORITHM));
                    attrs.push(Attribute::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, a));
                }
                if let Some(l) = kb.cryptographic_length {
                    attrs.retain(|x| !x.is(tags::CRYPTOGRAPHIC_LENGTH));
                    attrs.push(Attribute::integer(tags::CRYPTOGRAPHIC_LENGTH, l));
                }
                let material = match &kb.key_value {
                    KeyValue::Material(b) | KeyValue::TransparentSymmetricKey(b) => {
                        Zeroizing::new(b.as_slice().to_vec())
                    }
                    // Transparent RSA/DSA/EC/DH keys are kept as their TTLV encoding and
                    // handed back in the same structure.
                    KeyValue::Transparent(t) => Zeroizing::new(
                        t.0.to_bytes()
                            .map_err(|_| OpError::InvalidField("key material".into()))?
                            .to_vec(),
                    ),
                    KeyValue::Wrapped(_) => {
                        return Err(OpError::FeatureNotSupported(
                            "wrapped key values cannot be registered".into(),
                        ))
                    }
                };
                (material, kb.key_format_type)
            }
            ManagedObject::OpaqueObject { value, .. } => (
                Zeroizing::new(value.as_slice().to_vec()),
                KeyFormatType::Opaque,
            ),
            ManagedObject::Certificate { value, .. } => {
                (Zeroizing::new(value.to_vec()), KeyFormatType::X509)
            }
            ManagedObject::Template { attributes } => (
                template_material(ctx.version, attributes)?,
                KeyFormatType::Opaque,
            ),
            ManagedObject::CertificateRequest { .. } => {
                check_certificate_requests_exist(ctx.version)?;
                (Zeroizing::new(Vec::new()), KeyFormatType::Opaque)
            }
        };
        match &r.object {
            ManagedObject::SecretData {
                secret_data_type, ..
            } => attrs.push(Attribute::enumeration(
                tags::SECRET_DATA_TYPE,
                *secret_data_type,
            )),
            ManagedObject::OpaqueObject {
                opaque_data_type, ..
            } => attrs.push(Attribute::new(
                tags::OPAQUE_DATA_TYPE,
                Value::Enumeration(*opaque_data_type),
            )),
            ManagedObject::Certificate {
                certificate_type,
                value,
            } => {
                // The certificate, not the client, says what its key is.
                attrs.retain(|a| {
                    a.tag().is_none_or(|t| {
                        !certificate::DERIVED.contains(&t)
                            && t != tags::CERTIFICATE_TYPE
                            && t != tags::CRYPTOGRAPHIC_ALGORITHM
                            && t != tags::CRYPTOGRAPHIC_LENGTH
                    })
                });
                attrs.push(Attribute::enumeration(
                    tags::CERTIFICATE_TYPE,
                    *certificate_type,
                ));
                if *certificate_type == CertificateType::X509 {
                    attrs.extend(certificate::derived_attributes(value)?);
                }
            }
            _ => {}
        }
        if !matches!(
            object_type,
            ObjectType::Template | ObjectType::CertificateRequest
        ) {
            // A Template or a Certificate Request holds no key: no Key Format Type, no Digest.
            attrs.push(Attribute::enumeration(tags::KEY_FORMAT_TYPE, format));
            attrs.push(digest_attr(&material, format));
        }
        let material = match &r.object {
            // Their fields beyond the Key Block are kept with the material (`split_material`).
            ManagedObject::SplitKey(_)
            | ManagedObject::PgpKey { .. }
            | ManagedObject::CertificateRequest { .. } => encode(&r.object, group)?,
            _ => super::asym::stored_material(object_type, format, material)?,
        };
        let spec = match &r.object {
            ManagedObject::SymmetricKey(_) => symmetric_key_spec(&attrs, material.len()),
            _ => None,
        };
        let key_links = if object_type == ObjectType::Certificate {
            self.certificate_key_links(ctx, &attrs)?
        } else {
            Vec::new()
        };
        let mut obj = self.new_object(ctx, object_type, attrs)?;
        match &spec {
            Some(s) => flag_attrs(&mut obj, s),
            None => {
                let flag = |tag: Tag| obj.first(tag).and_then(Attribute::as_bool);
                let sensitive = flag(tags::SENSITIVE).unwrap_or(false);
                let extractable = flag(tags::EXTRACTABLE).unwrap_or(true);
                obj.set(tags::ALWAYS_SENSITIVE, Value::Boolean(sensitive));
                obj.set(tags::NEVER_EXTRACTABLE, Value::Boolean(!extractable));
            }
        }
        if *group != REGISTERED {
            // A part Create Split Key made: its bytes come from the server's generator.
            obj.set(
                tags::RANDOM_NUMBER_GENERATOR,
                rng_attribute(self.store.backend().rng()),
            );
        }
        if let Some(imported) = imported {
            imported.apply(&mut obj);
        }
        let uid = obj.uid.clone();
        let after = self
            .store
            .register(obj, material, spec, self.max_objects_per_user)
            .await?;
        ctx.written.push(Written {
            before: None,
            after,
        });
        // KMIP: a key's Certificate Link names its (newest) certificate.
        for key in key_links {
            self.relink(ctx, &key, LinkType::CertificateLink, &uid)
                .await?;
        }
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }
}

/// The key facts a backend keeps with a symmetric key's `material_len` bytes: its algorithm
/// from the attributes, its length from the material. Register's, and a copy's out of a KMIP
/// proxy (`upstream copy`), from the attributes stored. `None`: no algorithm a backend keys on.
pub fn symmetric_key_spec(attrs: &[Attribute], material_len: usize) -> Option<KeySpec> {
    let algorithm = match attrs
        .iter()
        .find(|a| a.is(tags::CRYPTOGRAPHIC_ALGORITHM))
        .and_then(|a| a.as_enum())?
    {
        CryptographicAlgorithm::Aes => KeyAlgorithm::Aes,
        CryptographicAlgorithm::ChaCha20 | CryptographicAlgorithm::ChaCha20Poly1305 => {
            KeyAlgorithm::ChaCha20
        }
        CryptographicAlgorithm::Des3 => KeyAlgorithm::TripleDes,
        CryptographicAlgorithm::HmacSha256 => KeyAlgorithm::HmacSha256,
        _ => return None,
    };
    Some(key_spec(algorithm, (material_len * 8) as i32, attrs))
}

fn key_spec(algorithm: KeyAlgorithm, bits: i32, attrs: &[Attribute]) -> KeySpec {
    let flag = |tag: Tag| {
        attrs
            .iter()
            .find(|a| a.is(tag))
            .and_then(Attribute::as_bool)
    };
    KeySpec {
        algorithm,
        bits: bits.max(0) as u32,
        extractable: flag(tags::EXTRACTABLE).unwrap_or(true),
        sensitive: flag(tags::SENSITIVE).unwrap_or(false),
        label: attrs
            .iter()
            .find(|a| a.is(tags::NAME))
            .and_then(Attribute::as_name)
            .map(|n| n.value),
    }
}

/// A Triple DES key's material: 168 key bits and 24 parity bits.
const TRIPLE_DES_MATERIAL_BITS: i32 = 192;

fn flag_attrs(obj: &mut ObjectDraft, spec: &KeySpec) {
    obj.set(tags::SENSITIVE, Value::Boolean(spec.sensitive));
    obj.set(tags::EXTRACTABLE, Value::Boolean(spec.extractable));
    obj.set(tags::ALWAYS_SENSITIVE, Value::Boolean(spec.sensitive));
    obj.set(tags::NEVER_EXTRACTABLE, Value::Boolean(!spec.extractable));
}
