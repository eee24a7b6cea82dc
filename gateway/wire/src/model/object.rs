//! Managed objects (Symmetric Key, Secret Data, Opaque Object, Certificate, Public/Private Key,
//! Split Key, PGP Key) as carried by Register requests and Get responses.
//!
//! Key material is copied out of the decoded tree into zeroized buffers and never Debug-printed.
//! The Key Value of KMIP 1.x may also hold attributes: they are dropped when reading and never
//! written (clients break on them; attributes travel through the attribute operations).

use bytes::Bytes;
use zeroize::Zeroizing;

use super::attribute::Attribute;
use super::codec::{self, Node};
use super::enums::{
    CertificateRequestType, CertificateType, CryptographicAlgorithm, KeyCompressionType,
    KeyFormatType, ObjectType, SecretDataType, SplitKeyMethod,
};
use super::error::ModelError;
use super::version::ProtocolVersion;
use crate::spec::tags;
use crate::ttlv::{Tag, Ttlv, Value};

/// Secret bytes: zeroized on drop, redacted in Debug.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(Zeroizing::new(bytes))
    }

    pub fn from_slice(bytes: &[u8]) -> SecretBytes {
        SecretBytes::new(bytes.to_vec())
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// A secret TTLV structure (transparent private key fields): redacted in Debug. Its byte strings
/// share the received buffer, which the transport must zeroize.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretTtlv(pub Ttlv);

impl std::fmt::Debug for SecretTtlv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretTtlv(<redacted>)")
    }
}

/// The content of a Key Value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// `Key Value { Key Material: Byte String }` (Raw, Opaque, PKCS#1, PKCS#8, X.509, …).
    Material(SecretBytes),
    /// `Key Value { Key Material: Transparent Symmetric Key { Key } }`.
    TransparentSymmetricKey(SecretBytes),
    /// `Key Value { Key Material: <other transparent structure> }` (RSA, EC, DH, DSA fields).
    Transparent(SecretTtlv),
    /// A wrapped Key Value: a Byte String (the Key Block then has Key Wrapping Data).
    Wrapped(SecretBytes),
}

/// A Key Block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlock {
    pub key_format_type: KeyFormatType,
    pub key_compression_type: Option<KeyCompressionType>,
    pub key_value: KeyValue,
    pub cryptographic_algorithm: Option<CryptographicAlgorithm>,
    pub cryptographic_length: Option<i32>,
    /// Kept as received: this model does not interpret wrapping.
    pub key_wrapping_data: Option<Ttlv>,
}

impl KeyBlock {
    /// A plain (unwrapped) Raw key block.
    pub fn raw(
        material: SecretBytes,
        algorithm: Option<CryptographicAlgorithm>,
        length: Option<i32>,
    ) -> KeyBlock {
        KeyBlock {
            key_format_type: KeyFormatType::Raw,
            key_compression_type: None,
            key_value: KeyValue::Material(material),
            cryptographic_algorithm: algorithm,
            cryptographic_length: length,
            key_wrapping_data: None,
        }
    }

    /// The key bytes of a plain byte-string or transparent symmetric key.
    pub fn key_bytes(&self) -> Option<&SecretBytes> {
        match &self.key_value {
            KeyValue::Material(b) | KeyValue::TransparentSymmetricKey(b) => Some(b),
            KeyValue::Transparent(_) | KeyValue::Wrapped(_) => None,
        }
    }

    pub(crate) fn read(node: &Node<'_>) -> Result<KeyBlock, ModelError> {
        node.structure()?;
        let key_format_type = node.req_enum(tags::KEY_FORMAT_TYPE)?;
        let value = node.req(tags::KEY_VALUE)?;
        let key_value = match &value.ttlv.value {
            Value::ByteString(b) => KeyValue::Wrapped(SecretBytes::from_slice(b)),
            Value::Structure(_) => {
                let material = value.req(tags::KEY_MATERIAL)?;
                match &material.ttlv.value {
                    Value::ByteString(b) => KeyValue::Material(SecretBytes::from_slice(b)),
                    Value::Structure(_)
                        if key_format_type == KeyFormatType::TransparentSymmetricKey =>
                    {
                        let key = material.req(tags::KEY)?.bytes()?;
                        KeyValue::TransparentSymmetricKey(SecretBytes::from_slice(&key))
                    }
                    Value::Structure(_) => KeyValue::Transparent(SecretTtlv(material.ttlv.clone())),
                    _ => return Err(material.wrong("ByteString or Structure")),
                }
            }
            _ => return Err(value.wrong("Structure or ByteString")),
        };
        Ok(KeyBlock {
            key_format_type,
            key_compression_type: node.opt_enum(tags::KEY_COMPRESSION_TYPE)?,
            key_value,
            cryptographic_algorithm: node.opt_enum(tags::CRYPTOGRAPHIC_ALGORITHM)?,
            cryptographic_length: node.opt_int(tags::CRYPTOGRAPHIC_LENGTH)?,
            key_wrapping_data: node.opt(tags::KEY_WRAPPING_DATA).map(|n| n.ttlv.clone()),
        })
    }

    pub(crate) fn to_ttlv(&self) -> Ttlv {
        let mut items = vec![codec::enumeration(
            tags::KEY_FORMAT_TYPE,
            self.key_format_type,
        )];
        items.extend(
            self.key_compression_type
                .map(|k| codec::enumeration(tags::KEY_COMPRESSION_TYPE, k)),
        );
        items.push(match &self.key_value {
            KeyValue::Material(b) => codec::structure(
                tags::KEY_VALUE,
                vec![codec::bytes(tags::KEY_MATERIAL, b.as_slice())],
            ),
            KeyValue::TransparentSymmetricKey(b) => codec::structure(
                tags::KEY_VALUE,
                vec![codec::structure(
                    tags::KEY_MATERIAL,
                    vec![codec::bytes(tags::KEY, b.as_slice())],
                )],
            ),
            KeyValue::Transparent(t) => codec::structure(tags::KEY_VALUE, vec![t.0.clone()]),
            KeyValue::Wrapped(b) => codec::bytes(tags::KEY_VALUE, b.as_slice()),
        });
        items.extend(
            self.cryptographic_algorithm
                .map(|a| codec::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, a)),
        );
        items.extend(
            self.cryptographic_length
                .map(|l| codec::int(tags::CRYPTOGRAPHIC_LENGTH, l)),
        );
        items.extend(self.key_wrapping_data.clone());
        codec::structure(tags::KEY_BLOCK, items)
    }
}

/// One part of a split key (KMIP 1.4 §2.2.5, 2.1 §2.2.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitKey {
    pub split_key_parts: i32,
    /// Which part this is, from 1; also the x coordinate of a polynomial share.
    pub key_part_identifier: i32,
    pub split_key_threshold: i32,
    pub split_key_method: SplitKeyMethod,
    /// The prime (a Big Integer's bytes) of Polynomial Sharing over a prime field.
    pub prime_field_size: Option<Bytes>,
    pub key_block: KeyBlock,
}

impl SplitKey {
    fn read(node: &Node<'_>) -> Result<SplitKey, ModelError> {
        let prime_field_size = match node.opt(tags::PRIME_FIELD_SIZE) {
            Some(n) => match &n.ttlv.value {
                Value::BigInteger(b) => Some(b.clone()),
                _ => return Err(n.wrong("BigInteger")),
            },
            None => None,
        };
        Ok(SplitKey {
            split_key_parts: node.req(tags::SPLIT_KEY_PARTS)?.int()?,
            key_part_identifier: node.req(tags::KEY_PART_IDENTIFIER)?.int()?,
            split_key_threshold: node.req(tags::SPLIT_KEY_THRESHOLD)?.int()?,
            split_key_method: node.req_enum(tags::SPLIT_KEY_METHOD)?,
            prime_field_size,
            key_block: KeyBlock::read(&node.req(tags::KEY_BLOCK)?)?,
        })
    }

    fn to_ttlv(&self) -> Ttlv {
        let mut items = vec![
            codec::int(tags::SPLIT_KEY_PARTS, self.split_key_parts),
            codec::int(tags::KEY_PART_IDENTIFIER, self.key_part_identifier),
            codec::int(tags::SPLIT_KEY_THRESHOLD, self.split_key_threshold),
            codec::enumeration(tags::SPLIT_KEY_METHOD, self.split_key_method),
        ];
        items.extend(
            self.prime_field_size
                .clone()
                .map(|p| Ttlv::new(tags::PRIME_FIELD_SIZE, Value::BigInteger(p))),
        );
        items.push(self.key_block.to_ttlv());
        codec::structure(tags::SPLIT_KEY, items)
    }
}

/// A managed object with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedObject {
    SymmetricKey(KeyBlock),
    PublicKey(KeyBlock),
    PrivateKey(KeyBlock),
    SecretData {
        secret_data_type: SecretDataType,
        key_block: KeyBlock,
    },
    OpaqueObject {
        /// Opaque Data Type: the specification defines only extension values.
        opaque_data_type: u32,
        value: SecretBytes,
    },
    Certificate {
        certificate_type: CertificateType,
        value: Bytes,
    },
    SplitKey(SplitKey),
    /// A Certificate Request (KMIP 2.x): a CSR kept as registered.
    CertificateRequest {
        certificate_request_type: CertificateRequestType,
        value: Bytes,
    },
    /// A PGP Key: its Key Block's material is the OpenPGP key, kept as opaque bytes.
    PgpKey {
        pgp_key_version: i32,
        key_block: KeyBlock,
    },
    /// A KMIP 1.x Template: attributes to apply to the objects created with it (deprecated since
    /// 1.3, absent from 2.x).
    Template {
        attributes: Vec<Attribute>,
    },
}

/// The tag of the object structure of each supported object type.
fn object_tag(object_type: ObjectType) -> Option<Tag> {
    Some(match object_type {
        ObjectType::SymmetricKey => tags::SYMMETRIC_KEY,
        ObjectType::PublicKey => tags::PUBLIC_KEY,
        ObjectType::PrivateKey => tags::PRIVATE_KEY,
        ObjectType::SecretData => tags::SECRET_DATA,
        ObjectType::OpaqueObject => tags::OPAQUE_OBJECT,
        ObjectType::Certificate => tags::CERTIFICATE,
        ObjectType::Template => tags::TEMPLATE,
        ObjectType::SplitKey => tags::SPLIT_KEY,
        ObjectType::PgpKey => tags::PGPKEY,
        ObjectType::CertificateRequest => tags::CERTIFICATE_REQUEST,
        _ => return None,
    })
}

impl ManagedObject {
    pub fn object_type(&self) -> ObjectType {
        match self {
            ManagedObject::SymmetricKey(_) => ObjectType::SymmetricKey,
            ManagedObject::PublicKey(_) => ObjectType::PublicKey,
            ManagedObject::PrivateKey(_) => ObjectType::PrivateKey,
            ManagedObject::SecretData { .. } => ObjectType::SecretData,
            ManagedObject::OpaqueObject { .. } => ObjectType::OpaqueObject,
            ManagedObject::Certificate { .. } => ObjectType::Certificate,
            ManagedObject::Template { .. } => ObjectType::Template,
            ManagedObject::SplitKey(_) => ObjectType::SplitKey,
            ManagedObject::PgpKey { .. } => ObjectType::PgpKey,
            ManagedObject::CertificateRequest { .. } => ObjectType::CertificateRequest,
        }
    }

    pub fn key_block(&self) -> Option<&KeyBlock> {
        match self {
            ManagedObject::SymmetricKey(kb)
            | ManagedObject::PublicKey(kb)
            | ManagedObject::PrivateKey(kb)
            | ManagedObject::SecretData { key_block: kb, .. }
            | ManagedObject::PgpKey { key_block: kb, .. }
            | ManagedObject::SplitKey(SplitKey { key_block: kb, .. }) => Some(kb),
            ManagedObject::OpaqueObject { .. }
            | ManagedObject::Certificate { .. }
            | ManagedObject::CertificateRequest { .. }
            | ManagedObject::Template { .. } => None,
        }
    }

    /// Reads the object of type `object_type` from a Register request or Get response payload.
    pub(crate) fn read(
        payload: &Node<'_>,
        object_type: ObjectType,
    ) -> Result<ManagedObject, ModelError> {
        let Some(tag) = object_tag(object_type) else {
            return Err(payload.unsupported("this Object Type"));
        };
        let node = payload.req(tag)?;
        node.structure()?;
        Ok(match object_type {
            ObjectType::SymmetricKey => {
                ManagedObject::SymmetricKey(KeyBlock::read(&node.req(tags::KEY_BLOCK)?)?)
            }
            ObjectType::PublicKey => {
                ManagedObject::PublicKey(KeyBlock::read(&node.req(tags::KEY_BLOCK)?)?)
            }
            ObjectType::PrivateKey => {
                ManagedObject::PrivateKey(KeyBlock::read(&node.req(tags::KEY_BLOCK)?)?)
            }
            ObjectType::SecretData => ManagedObject::SecretData {
                secret_data_type: node.req_enum(tags::SECRET_DATA_TYPE)?,
                key_block: KeyBlock::read(&node.req(tags::KEY_BLOCK)?)?,
            },
            ObjectType::OpaqueObject => ManagedObject::OpaqueObject {
                opaque_data_type: node.req(tags::OPAQUE_DATA_TYPE)?.enum_value()?,
                value: SecretBytes::from_slice(&node.req(tags::OPAQUE_DATA_VALUE)?.bytes()?),
            },
            ObjectType::Template => ManagedObject::Template {
                attributes: read_template_attributes(&node)?,
            },
            ObjectType::SplitKey => ManagedObject::SplitKey(SplitKey::read(&node)?),
            ObjectType::PgpKey => ManagedObject::PgpKey {
                pgp_key_version: node.req(tags::PGPKEY_VERSION)?.int()?,
                key_block: KeyBlock::read(&node.req(tags::KEY_BLOCK)?)?,
            },
            ObjectType::CertificateRequest => ManagedObject::CertificateRequest {
                certificate_request_type: node.req_enum(tags::CERTIFICATE_REQUEST_TYPE)?,
                value: node.req(tags::CERTIFICATE_REQUEST_VALUE)?.bytes()?,
            },
            _ => ManagedObject::Certificate {
                certificate_type: node.req_enum(tags::CERTIFICATE_TYPE)?,
                value: node.req(tags::CERTIFICATE_VALUE)?.bytes()?,
            },
        })
    }

    /// Reads an object structure of type `object_type` (as [`ManagedObject::to_ttlv`] writes
    /// it): how the gateway reads back an object it stored in this encoding.
    pub fn from_ttlv(object_type: ObjectType, ttlv: &Ttlv) -> Result<ManagedObject, ModelError> {
        let payload = codec::structure(tags::RESPONSE_PAYLOAD, vec![ttlv.clone()]);
        ManagedObject::read(&Node::new(&payload, "object"), object_type)
    }

    /// The object structure (`Symmetric Key`, `Split Key`, …).
    pub fn to_ttlv(&self) -> Ttlv {
        let (tag, items) = match self {
            ManagedObject::SymmetricKey(kb) => (tags::SYMMETRIC_KEY, vec![kb.to_ttlv()]),
            ManagedObject::PublicKey(kb) => (tags::PUBLIC_KEY, vec![kb.to_ttlv()]),
            ManagedObject::PrivateKey(kb) => (tags::PRIVATE_KEY, vec![kb.to_ttlv()]),
            ManagedObject::SecretData {
                secret_data_type,
                key_block,
            } => (
                tags::SECRET_DATA,
                vec![
                    codec::enumeration(tags::SECRET_DATA_TYPE, *secret_data_type),
                    key_block.to_ttlv(),
                ],
            ),
            ManagedObject::OpaqueObject {
                opaque_data_type,
                value,
            } => (
                tags::OPAQUE_OBJECT,
                vec![
                    Ttlv::new(
                        tags::OPAQUE_DATA_TYPE,
                        Value::Enumeration(*opaque_data_type),
                    ),
                    codec::bytes(tags::OPAQUE_DATA_VALUE, value.as_slice()),
                ],
            ),
            ManagedObject::Certificate {
                certificate_type,
                value,
            } => (
                tags::CERTIFICATE,
                vec![
                    codec::enumeration(tags::CERTIFICATE_TYPE, *certificate_type),
                    codec::bytes(tags::CERTIFICATE_VALUE, value),
                ],
            ),
            ManagedObject::Template { attributes } => return template_ttlv(attributes),
            ManagedObject::SplitKey(split) => return split.to_ttlv(),
            ManagedObject::PgpKey {
                pgp_key_version,
                key_block,
            } => (
                tags::PGPKEY,
                vec![
                    codec::int(tags::PGPKEY_VERSION, *pgp_key_version),
                    key_block.to_ttlv(),
                ],
            ),
            ManagedObject::CertificateRequest {
                certificate_request_type,
                value,
            } => (
                tags::CERTIFICATE_REQUEST,
                vec![
                    codec::enumeration(tags::CERTIFICATE_REQUEST_TYPE, *certificate_request_type),
                    codec::bytes(tags::CERTIFICATE_REQUEST_VALUE, value),
                ],
            ),
        };
        codec::structure(tag, items)
    }
}

/// A Template object's structure: its attributes in the 1.x form (Templates exist only there).
pub fn template_ttlv(attributes: &[Attribute]) -> Ttlv {
    let items = attributes
        .iter()
        .map(|a| a.to_request_ttlv(ProtocolVersion::V1_4))
        .collect();
    codec::structure(tags::TEMPLATE, items)
}

/// The attributes of a Template object's structure (as [`template_ttlv`] writes it).
pub fn template_attributes(template: &Ttlv) -> Result<Vec<Attribute>, ModelError> {
    read_template_attributes(&Node::new(template, "Template"))
}

fn read_template_attributes(node: &Node<'_>) -> Result<Vec<Attribute>, ModelError> {
    node.structure()?;
    node.all(tags::ATTRIBUTE)
        .map(|a| Attribute::read_v1(&a))
        .collect()
}
