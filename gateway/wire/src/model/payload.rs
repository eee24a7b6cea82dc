//! Typed request and response payloads of the operations the gateway serves. Every other
//! operation is [`RequestPayload::Unknown`], its payload kept as received.
//!
//! Reading accepts both the 1.x and the 2.x shape of a payload, whatever the header says
//! (clients mix them); writing uses the shape of the version passed in.

use bytes::Bytes;

use super::attribute::{
    needs_v2_shape, read_wrapped, write_bare_response, write_wrapped, Attribute, AttributeGroup,
    AttributeName, RevocationReason,
};
use super::codec::{self, Node};
use super::enums::{
    BlockCipherMode, CryptographicAlgorithm, HashingAlgorithm, InteropFunction, KeyCompressionType,
    KeyFormatType, KeyWrapType, ObjectGroupMember, ObjectType, Operation, PaddingMethod,
    QueryFunction,
};
use super::error::ModelError;
use super::object::{ManagedObject, SecretBytes};
use super::version::ProtocolVersion;
use crate::spec::tags;
use crate::ttlv::{Tag, Ttlv};

type R<T> = Result<T, ModelError>;

/// Cryptographic Parameters (Encrypt, Decrypt, MAC, and the attribute of the same name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CryptographicParameters {
    pub block_cipher_mode: Option<BlockCipherMode>,
    pub padding_method: Option<PaddingMethod>,
    pub hashing_algorithm: Option<HashingAlgorithm>,
    pub cryptographic_algorithm: Option<CryptographicAlgorithm>,
    pub random_iv: Option<bool>,
    pub iv_length: Option<i32>,
    pub tag_length: Option<i32>,
    /// Every other field (Key Role Type, counter lengths, …), kept as received.
    pub other: Vec<Ttlv>,
}

const TYPED_CRYPTO_PARAMETERS: [Tag; 7] = [
    tags::BLOCK_CIPHER_MODE,
    tags::PADDING_METHOD,
    tags::HASHING_ALGORITHM,
    tags::CRYPTOGRAPHIC_ALGORITHM,
    tags::RANDOM_IV,
    tags::IVLENGTH,
    tags::TAG_LENGTH,
];

impl CryptographicParameters {
    pub(crate) fn read(node: &Node<'_>) -> R<CryptographicParameters> {
        let items = node.structure()?;
        Ok(CryptographicParameters {
            block_cipher_mode: node.opt_enum(tags::BLOCK_CIPHER_MODE)?,
            padding_method: node.opt_enum(tags::PADDING_METHOD)?,
            hashing_algorithm: node.opt_enum(tags::HASHING_ALGORITHM)?,
            cryptographic_algorithm: node.opt_enum(tags::CRYPTOGRAPHIC_ALGORITHM)?,
            random_iv: node.opt_bool(tags::RANDOM_IV)?,
            iv_length: node.opt_int(tags::IVLENGTH)?,
            tag_length: node.opt_int(tags::TAG_LENGTH)?,
            other: items
                .iter()
                .filter(|t| !TYPED_CRYPTO_PARAMETERS.contains(&t.tag))
                .cloned()
                .collect(),
        })
    }

    pub(crate) fn to_ttlv(&self) -> Ttlv {
        let mut items = Vec::new();
        items.extend(
            self.block_cipher_mode
                .map(|m| codec::enumeration(tags::BLOCK_CIPHER_MODE, m)),
        );
        items.extend(
            self.padding_method
                .map(|m| codec::enumeration(tags::PADDING_METHOD, m)),
        );
        items.extend(
            self.hashing_algorithm
                .map(|a| codec::enumeration(tags::HASHING_ALGORITHM, a)),
        );
        items.extend(
            self.cryptographic_algorithm
                .map(|a| codec::enumeration(tags::CRYPTOGRAPHIC_ALGORITHM, a)),
        );
        items.extend(self.random_iv.map(|b| codec::boolean(tags::RANDOM_IV, b)));
        items.extend(self.iv_length.map(|i| codec::int(tags::IVLENGTH, i)));
        items.extend(self.tag_length.map(|i| codec::int(tags::TAG_LENGTH, i)));
        items.extend(self.other.iter().cloned());
        codec::structure(tags::CRYPTOGRAPHIC_PARAMETERS, items)
    }
}

fn uid(node: &Node<'_>) -> R<Option<String>> {
    node.opt_text(tags::UNIQUE_IDENTIFIER)
}

fn push_uid(items: &mut Vec<Ttlv>, uid: Option<&str>) {
    items.extend(uid.map(|u| codec::text(tags::UNIQUE_IDENTIFIER, u)));
}

fn opt_secret(node: &Node<'_>, tag: Tag) -> R<Option<SecretBytes>> {
    Ok(node.opt_bytes(tag)?.map(|b| SecretBytes::from_slice(&b)))
}

fn push_bytes(items: &mut Vec<Ttlv>, tag: Tag, b: Option<&[u8]>) {
    items.extend(b.map(|b| codec::bytes(tag, b)));
}

fn push_bool(items: &mut Vec<Ttlv>, tag: Tag, b: Option<bool>) {
    items.extend(b.map(|b| codec::boolean(tag, b)));
}

/// Payload holding only an optional Unique Identifier (Activate, Destroy, Get Attribute List
/// requests; the ID Placeholder is used when it is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UidRequest {
    pub unique_identifier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverVersionsRequest {
    pub versions: Vec<ProtocolVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    pub functions: Vec<QueryFunction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub object_type: ObjectType,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKeyPairRequest {
    pub common_attributes: Vec<Attribute>,
    pub private_key_attributes: Vec<Attribute>,
    pub public_key_attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest {
    pub object_type: ObjectType,
    pub attributes: Vec<Attribute>,
    pub object: ManagedObject,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocateRequest {
    pub maximum_items: Option<i32>,
    pub offset_items: Option<i32>,
    pub storage_status_mask: Option<i32>,
    pub object_group_member: Option<ObjectGroupMember>,
    /// The filter: every attribute must match. 1.0/1.1 clients may wrap it in a
    /// Template-Attribute; it is read from there too.
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetRequest {
    pub unique_identifier: Option<String>,
    pub key_format_type: Option<KeyFormatType>,
    pub key_wrap_type: Option<KeyWrapType>,
    pub key_compression_type: Option<KeyCompressionType>,
    /// Kept as received: this model does not interpret wrapping.
    pub key_wrapping_specification: Option<Ttlv>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetAttributesRequest {
    pub unique_identifier: Option<String>,
    /// Empty: every attribute.
    pub names: Vec<AttributeName>,
}

/// Add Attribute and Set Attribute (2.x) requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeRequest {
    pub unique_identifier: Option<String>,
    pub attribute: Attribute,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyAttributeRequest {
    pub unique_identifier: Option<String>,
    /// 2.x Current Attribute: the instance to replace. 1.x names it by `attribute.index`.
    pub current: Option<Attribute>,
    pub attribute: Attribute,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteAttributeRequest {
    pub unique_identifier: Option<String>,
    pub name: AttributeName,
    /// 1.x Attribute Index.
    pub index: Option<i32>,
    /// 2.x Current Attribute: the instance to delete. Without it (and without an index) every
    /// instance of `name` goes.
    pub current: Option<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    pub unique_identifier: Option<String>,
    pub revocation_reason: RevocationReason,
    pub compromise_occurrence_date: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReKeyRequest {
    pub unique_identifier: Option<String>,
    pub offset: Option<u32>,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRequest {
    pub unique_identifier: Option<String>,
    pub usage_limits_count: Option<i64>,
    pub cryptographic_usage_mask: Option<i32>,
    pub lease_time: Option<u32>,
}

/// Encrypt and Decrypt requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CryptoRequest {
    pub unique_identifier: Option<String>,
    pub cryptographic_parameters: Option<CryptographicParameters>,
    /// Plaintext (Encrypt) or ciphertext (Decrypt).
    pub data: Option<SecretBytes>,
    pub iv_counter_nonce: Option<Bytes>,
    pub correlation_value: Option<Bytes>,
    pub init_indicator: Option<bool>,
    pub final_indicator: Option<bool>,
    pub authenticated_encryption_additional_data: Option<Bytes>,
    /// Decrypt only.
    pub authenticated_encryption_tag: Option<Bytes>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacRequest {
    pub unique_identifier: Option<String>,
    pub cryptographic_parameters: Option<CryptographicParameters>,
    pub data: Option<SecretBytes>,
    pub correlation_value: Option<Bytes>,
    pub init_indicator: Option<bool>,
    pub final_indicator: Option<bool>,
}

/// 2.x test-harness Interop request (Begin/End/Reset of a test case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteropRequest {
    pub function: InteropFunction,
    pub identifier: String,
}

/// 2.x Log request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    pub message: String,
}

/// The payload of a request batch item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestPayload {
    DiscoverVersions(DiscoverVersionsRequest),
    Query(QueryRequest),
    Create(CreateRequest),
    CreateKeyPair(CreateKeyPairRequest),
    Register(RegisterRequest),
    Locate(LocateRequest),
    Get(GetRequest),
    GetAttributes(GetAttributesRequest),
    GetAttributeList(UidRequest),
    AddAttribute(AttributeRequest),
    ModifyAttribute(ModifyAttributeRequest),
    DeleteAttribute(DeleteAttributeRequest),
    SetAttribute(AttributeRequest),
    Activate(UidRequest),
    Revoke(RevokeRequest),
    Destroy(UidRequest),
    ReKey(ReKeyRequest),
    Check(CheckRequest),
    Encrypt(CryptoRequest),
    Decrypt(CryptoRequest),
    Mac(MacRequest),
    Interop(InteropRequest),
    Log(LogRequest),
    /// An operation this model has no typed payload for; the payload as received.
    Unknown {
        op_code: Operation,
        raw: Ttlv,
    },
}

impl RequestPayload {
    pub fn operation(&self) -> Operation {
        match self {
            RequestPayload::DiscoverVersions(_) => Operation::DiscoverVersions,
            RequestPayload::Query(_) => Operation::Query,
            RequestPayload::Create(_) => Operation::Create,
            RequestPayload::CreateKeyPair(_) => Operation::CreateKeyPair,
            RequestPayload::Register(_) => Operation::Register,
            RequestPayload::Locate(_) => Operation::Locate,
            RequestPayload::Get(_) => Operation::Get,
            RequestPayload::GetAttributes(_) => Operation::GetAttributes,
            RequestPayload::GetAttributeList(_) => Operation::GetAttributeList,
            RequestPayload::AddAttribute(_) => Operation::AddAttribute,
            RequestPayload::ModifyAttribute(_) => Operation::ModifyAttribute,
            RequestPayload::DeleteAttribute(_) => Operation::DeleteAttribute,
            RequestPayload::SetAttribute(_) => Operation::SetAttribute,
            RequestPayload::Activate(_) => Operation::Activate,
            RequestPayload::Revoke(_) => Operation::Revoke,
            RequestPayload::Destroy(_) => Operation::Destroy,
            RequestPayload::ReKey(_) => Operation::ReKey,
            RequestPayload::Check(_) => Operation::Check,
            RequestPayload::Encrypt(_) => Operation::Encrypt,
            RequestPayload::Decrypt(_) => Operation::Decrypt,
            RequestPayload::Mac(_) => Operation::Mac,
            RequestPayload::Interop(_) => Operation::Interop,
            RequestPayload::Log(_) => Operation::Log,
            RequestPayload::Unknown { op_code, .. } => *op_code,
        }
    }

    /// Reads the `Request Payload` structure of an `op` batch item.
    pub(crate) fn read(op: Operation, node: &Node<'_>) -> R<RequestPayload> {
        node.structure()?;
        let uid_request = || {
            Ok::<_, ModelError>(UidRequest {
                unique_identifier: uid(node)?,
            })
        };
        Ok(match op {
            Operation::DiscoverVersions => {
                RequestPayload::DiscoverVersions(DiscoverVersionsRequest {
                    versions: node
                        .all(tags::PROTOCOL_VERSION)
                        .map(|n| ProtocolVersion::read(&n))
                        .collect::<R<_>>()?,
                })
            }
            Operation::Query => RequestPayload::Query(QueryRequest {
                functions: node.all_enum(tags::QUERY_FUNCTION)?,
            }),
            Operation::Create => RequestPayload::Create(CreateRequest {
                object_type: node.req_enum(tags::OBJECT_TYPE)?,
                attributes: AttributeGroup::Plain.read(node)?,
            }),
            Operation::CreateKeyPair => RequestPayload::CreateKeyPair(CreateKeyPairRequest {
                common_attributes: AttributeGroup::Common.read(node)?,
                private_key_attributes: AttributeGroup::PrivateKey.read(node)?,
                public_key_attributes: AttributeGroup::PublicKey.read(node)?,
            }),
            Operation::Register => {
                let object_type = node.req_enum(tags::OBJECT_TYPE)?;
                RequestPayload::Register(RegisterRequest {
                    object_type,
                    attributes: AttributeGroup::Plain.read(node)?,
                    object: ManagedObject::read(node, object_type)?,
                })
            }
            Operation::Locate => RequestPayload::Locate(LocateRequest {
                maximum_items: node.opt_int(tags::MAXIMUM_ITEMS)?,
                offset_items: node.opt_int(tags::OFFSET_ITEMS)?,
                storage_status_mask: node.opt_int(tags::STORAGE_STATUS_MASK)?,
                object_group_member: node.opt_enum(tags::OBJECT_GROUP_MEMBER)?,
                attributes: AttributeGroup::Plain.read(node)?,
            }),
            Operation::Get => RequestPayload::Get(GetRequest {
                unique_identifier: uid(node)?,
                key_format_type: node.opt_enum(tags::KEY_FORMAT_TYPE)?,
                key_wrap_type: node.opt_enum(tags::KEY_WRAP_TYPE)?,
                key_compression_type: node.opt_enum(tags::KEY_COMPRESSION_TYPE)?,
                key_wrapping_specification: node
                    .opt(tags::KEY_WRAPPING_SPECIFICATION)
                    .map(|n| n.ttlv.clone()),
            }),
            Operation::GetAttributes => {
                let mut names = Vec::new();
                for n in node
                    .items()
                    // In message order: the answer lists attributes in the order asked.
                    .filter(|n| {
                        [tags::ATTRIBUTE_NAME, tags::ATTRIBUTE_REFERENCE].contains(&n.ttlv.tag)
                    })
                {
                    names.push(AttributeName::read_reference(&n)?);
                }
                RequestPayload::GetAttributes(GetAttributesRequest {
                    unique_identifier: uid(node)?,
                    names,
                })
            }
            Operation::GetAttributeList => RequestPayload::GetAttributeList(uid_request()?),
            Operation::AddAttribute | Operation::SetAttribute => {
                let request = AttributeRequest {
                    unique_identifier: uid(node)?,
                    attribute: read_new_attribute(node)?,
                };
                if op == Operation::AddAttribute {
                    RequestPayload::AddAttribute(request)
                } else {
                    RequestPayload::SetAttribute(request)
                }
            }
            Operation::ModifyAttribute => RequestPayload::ModifyAttribute(ModifyAttributeRequest {
                unique_identifier: uid(node)?,
                current: node
                    .opt(tags::CURRENT_ATTRIBUTE)
                    .map(|n| read_wrapped(&n))
                    .transpose()?,
                attribute: read_new_attribute(node)?,
            }),
            Operation::DeleteAttribute => RequestPayload::DeleteAttribute(read_delete(node)?),
            Operation::Activate => RequestPayload::Activate(uid_request()?),
            Operation::Destroy => RequestPayload::Destroy(uid_request()?),
            Operation::Revoke => RequestPayload::Revoke(RevokeRequest {
                unique_identifier: uid(node)?,
                revocation_reason: RevocationReason::read(&node.req(tags::REVOCATION_REASON)?)?,
                compromise_occurrence_date: node.opt_datetime(tags::COMPROMISE_OCCURRENCE_DATE)?,
            }),
            Operation::ReKey => RequestPayload::ReKey(ReKeyRequest {
                unique_identifier: uid(node)?,
                offset: node.opt_interval(tags::OFFSET)?,
                attributes: AttributeGroup::Plain.read(node)?,
            }),
            Operation::Check => RequestPayload::Check(CheckRequest {
                unique_identifier: uid(node)?,
                usage_limits_count: node.opt_long(tags::USAGE_LIMITS_COUNT)?,
                cryptographic_usage_mask: node.opt_int(tags::CRYPTOGRAPHIC_USAGE_MASK)?,
                lease_time: node.opt_interval(tags::LEASE_TIME)?,
            }),
            Operation::Encrypt => RequestPayload::Encrypt(read_crypto(node)?),
            Operation::Decrypt => RequestPayload::Decrypt(read_crypto(node)?),
            Operation::Mac => RequestPayload::Mac(MacRequest {
                unique_identifier: uid(node)?,
                cryptographic_parameters: read_crypto_parameters(node)?,
                data: opt_secret(node, tags::DATA)?,
                correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
                init_indicator: node.opt_bool(tags::INIT_INDICATOR)?,
                final_indicator: node.opt_bool(tags::FINAL_INDICATOR)?,
            }),
            Operation::Interop => RequestPayload::Interop(InteropRequest {
                function: node.req_enum(tags::INTEROP_FUNCTION)?,
                identifier: node.req_text(tags::INTEROP_IDENTIFIER)?,
            }),
            Operation::Log => RequestPayload::Log(LogRequest {
                message: node.req_text(tags::LOG_MESSAGE)?,
            }),
            op_code => RequestPayload::Unknown {
                op_code,
                raw: node.ttlv.clone(),
            },
        })
    }

    /// The `Request Payload` structure in the encoding of `version`.
    pub fn to_ttlv(&self, version: ProtocolVersion) -> Ttlv {
        let mut items = Vec::new();
        match self {
            RequestPayload::DiscoverVersions(r) => {
                items.extend(r.versions.iter().map(|v| v.to_ttlv()));
            }
            RequestPayload::Query(r) => {
                items.extend(
                    r.functions
                        .iter()
                        .map(|f| codec::enumeration(tags::QUERY_FUNCTION, *f)),
                );
            }
            RequestPayload::Create(r) => {
                items.push(codec::enumeration(tags::OBJECT_TYPE, r.object_type));
                items.push(AttributeGroup::Plain.write_request(&r.attributes, version));
            }
            RequestPayload::CreateKeyPair(r) => {
                items.push(AttributeGroup::Common.write_request(&r.common_attributes, version));
                items.push(
                    AttributeGroup::PrivateKey.write_request(&r.private_key_attributes, version),
                );
                items.push(
                    AttributeGroup::PublicKey.write_request(&r.public_key_attributes, version),
                );
            }
            RequestPayload::Register(r) => {
                items.push(codec::enumeration(tags::OBJECT_TYPE, r.object_type));
                items.push(AttributeGroup::Plain.write_request(&r.attributes, version));
                items.push(r.object.to_ttlv());
            }
            RequestPayload::Locate(r) => {
                items.extend(r.maximum_items.map(|i| codec::int(tags::MAXIMUM_ITEMS, i)));
                items.extend(r.offset_items.map(|i| codec::int(tags::OFFSET_ITEMS, i)));
                items.extend(
                    r.storage_status_mask
                        .map(|i| codec::int(tags::STORAGE_STATUS_MASK, i)),
                );
                items.extend(
                    r.object_group_member
                        .map(|m| codec::enumeration(tags::OBJECT_GROUP_MEMBER, m)),
                );
                if needs_v2_shape(&r.attributes, version) {
                    items.push(AttributeGroup::Plain.write_request(&r.attributes, version));
                } else {
                    items.extend(r.attributes.iter().map(|a| a.to_request_ttlv(version)));
                }
            }
            RequestPayload::Get(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(
                    r.key_format_type
                        .map(|k| codec::enumeration(tags::KEY_FORMAT_TYPE, k)),
                );
                items.extend(
                    r.key_wrap_type
                        .map(|k| codec::enumeration(tags::KEY_WRAP_TYPE, k)),
                );
                items.extend(
                    r.key_compression_type
                        .map(|k| codec::enumeration(tags::KEY_COMPRESSION_TYPE, k)),
                );
                items.extend(r.key_wrapping_specification.clone());
            }
            RequestPayload::GetAttributes(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(r.names.iter().map(|n| n.to_request_reference(version)));
            }
            RequestPayload::GetAttributeList(r)
            | RequestPayload::Activate(r)
            | RequestPayload::Destroy(r) => push_uid(&mut items, r.unique_identifier.as_deref()),
            RequestPayload::AddAttribute(r) | RequestPayload::SetAttribute(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.push(write_new_attribute(&r.attribute, version));
            }
            RequestPayload::ModifyAttribute(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(
                    r.current
                        .as_ref()
                        .map(|c| write_wrapped(tags::CURRENT_ATTRIBUTE, c, version)),
                );
                items.push(write_new_attribute(&r.attribute, version));
            }
            RequestPayload::DeleteAttribute(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                match &r.current {
                    Some(current) => {
                        items.push(write_wrapped(tags::CURRENT_ATTRIBUTE, current, version));
                    }
                    None => {
                        items.push(r.name.to_request_reference(version));
                        items.extend(r.index.map(|i| codec::int(tags::ATTRIBUTE_INDEX, i)));
                    }
                }
            }
            RequestPayload::Revoke(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.push(Ttlv::new(
                    tags::REVOCATION_REASON,
                    r.revocation_reason.to_value(),
                ));
                items.extend(
                    r.compromise_occurrence_date
                        .map(|d| codec::datetime(tags::COMPROMISE_OCCURRENCE_DATE, d)),
                );
            }
            RequestPayload::ReKey(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(r.offset.map(|o| codec::interval(tags::OFFSET, o)));
                if !r.attributes.is_empty() {
                    items.push(AttributeGroup::Plain.write_request(&r.attributes, version));
                }
            }
            RequestPayload::Check(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(
                    r.usage_limits_count
                        .map(|c| codec::long(tags::USAGE_LIMITS_COUNT, c)),
                );
                items.extend(
                    r.cryptographic_usage_mask
                        .map(|m| codec::int(tags::CRYPTOGRAPHIC_USAGE_MASK, m)),
                );
                items.extend(r.lease_time.map(|l| codec::interval(tags::LEASE_TIME, l)));
            }
            RequestPayload::Encrypt(r) | RequestPayload::Decrypt(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(r.cryptographic_parameters.as_ref().map(|p| p.to_ttlv()));
                push_bytes(
                    &mut items,
                    tags::DATA,
                    r.data.as_ref().map(|d| d.as_slice()),
                );
                push_bytes(
                    &mut items,
                    tags::IV_COUNTER_NONCE,
                    r.iv_counter_nonce.as_deref(),
                );
                push_bytes(
                    &mut items,
                    tags::CORRELATION_VALUE,
                    r.correlation_value.as_deref(),
                );
                push_bool(&mut items, tags::INIT_INDICATOR, r.init_indicator);
                push_bool(&mut items, tags::FINAL_INDICATOR, r.final_indicator);
                push_bytes(
                    &mut items,
                    tags::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA,
                    r.authenticated_encryption_additional_data.as_deref(),
                );
                push_bytes(
                    &mut items,
                    tags::AUTHENTICATED_ENCRYPTION_TAG,
                    r.authenticated_encryption_tag.as_deref(),
                );
            }
            RequestPayload::Mac(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(r.cryptographic_parameters.as_ref().map(|p| p.to_ttlv()));
                push_bytes(
                    &mut items,
                    tags::DATA,
                    r.data.as_ref().map(|d| d.as_slice()),
                );
                push_bytes(
                    &mut items,
                    tags::CORRELATION_VALUE,
                    r.correlation_value.as_deref(),
                );
                push_bool(&mut items, tags::INIT_INDICATOR, r.init_indicator);
                push_bool(&mut items, tags::FINAL_INDICATOR, r.final_indicator);
            }
            RequestPayload::Interop(r) => {
                items.push(codec::enumeration(tags::INTEROP_FUNCTION, r.function));
                items.push(codec::text(tags::INTEROP_IDENTIFIER, &r.identifier));
            }
            RequestPayload::Log(r) => items.push(codec::text(tags::LOG_MESSAGE, &r.message)),
            RequestPayload::Unknown { raw, .. } => return raw.clone(),
        }
        codec::structure(tags::REQUEST_PAYLOAD, items)
    }
}

/// 1.x `Attribute` or 2.x `New Attribute`.
fn read_new_attribute(node: &Node<'_>) -> R<Attribute> {
    if let Some(new) = node.opt(tags::NEW_ATTRIBUTE) {
        return read_wrapped(&new);
    }
    match node.opt(tags::ATTRIBUTE) {
        Some(a) => Attribute::read_v1(&a),
        None => Err(node.missing(tags::NEW_ATTRIBUTE)),
    }
}

fn write_new_attribute(attribute: &Attribute, version: ProtocolVersion) -> Ttlv {
    if needs_v2_shape([attribute], version) {
        write_wrapped(tags::NEW_ATTRIBUTE, attribute, version)
    } else {
        attribute.to_request_ttlv(version)
    }
}

fn read_delete(node: &Node<'_>) -> R<DeleteAttributeRequest> {
    let unique_identifier = uid(node)?;
    if let Some(current) = node.opt(tags::CURRENT_ATTRIBUTE) {
        let current = read_wrapped(&current)?;
        return Ok(DeleteAttributeRequest {
            unique_identifier,
            name: current.name.clone(),
            index: None,
            current: Some(current),
        });
    }
    let name = match node
        .opt(tags::ATTRIBUTE_NAME)
        .or_else(|| node.opt(tags::ATTRIBUTE_REFERENCE))
    {
        Some(n) => AttributeName::read_reference(&n)?,
        None => return Err(node.missing(tags::ATTRIBUTE_NAME)),
    };
    Ok(DeleteAttributeRequest {
        unique_identifier,
        name,
        index: node.opt_int(tags::ATTRIBUTE_INDEX)?,
        current: None,
    })
}

fn read_crypto_parameters(node: &Node<'_>) -> R<Option<CryptographicParameters>> {
    node.opt(tags::CRYPTOGRAPHIC_PARAMETERS)
        .map(|n| CryptographicParameters::read(&n))
        .transpose()
}

fn read_crypto(node: &Node<'_>) -> R<CryptoRequest> {
    Ok(CryptoRequest {
        unique_identifier: uid(node)?,
        cryptographic_parameters: read_crypto_parameters(node)?,
        data: opt_secret(node, tags::DATA)?,
        iv_counter_nonce: node.opt_bytes(tags::IV_COUNTER_NONCE)?,
        correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
        init_indicator: node.opt_bool(tags::INIT_INDICATOR)?,
        final_indicator: node.opt_bool(tags::FINAL_INDICATOR)?,
        authenticated_encryption_additional_data: node
            .opt_bytes(tags::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA)?,
        authenticated_encryption_tag: node.opt_bytes(tags::AUTHENTICATED_ENCRYPTION_TAG)?,
    })
}

/// Response payload holding only the Unique Identifier of the object acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidResponse {
    pub unique_identifier: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverVersionsResponse {
    pub versions: Vec<ProtocolVersion>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResponse {
    pub operations: Vec<Operation>,
    pub object_types: Vec<ObjectType>,
    pub vendor_identification: Option<String>,
    /// Vendor-specific content, as is.
    pub server_information: Option<Ttlv>,
    /// Other answers (profiles, capabilities, …), as is; left out where the version lacks them.
    pub other: Vec<Ttlv>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateResponse {
    pub object_type: ObjectType,
    pub unique_identifier: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKeyPairResponse {
    pub private_key_unique_identifier: String,
    pub public_key_unique_identifier: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocateResponse {
    /// KMIP 1.3+: the number of matches before Maximum Items / Offset Items applied.
    pub located_items: Option<i32>,
    pub unique_identifiers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResponse {
    pub unique_identifier: String,
    pub object: ManagedObject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetAttributesResponse {
    pub unique_identifier: String,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetAttributeListResponse {
    pub unique_identifier: String,
    pub names: Vec<AttributeName>,
}

/// Add, Modify and Delete Attribute responses. KMIP 1.x echoes the attribute (clients such as
/// Synology check it); 2.x returns the identifier only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeResponse {
    pub unique_identifier: String,
    pub attribute: Option<Attribute>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckResponse {
    pub unique_identifier: Option<String>,
    pub usage_limits_count: Option<i64>,
    pub cryptographic_usage_mask: Option<i32>,
    pub lease_time: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptResponse {
    pub unique_identifier: String,
    pub data: Option<Bytes>,
    pub iv_counter_nonce: Option<Bytes>,
    pub correlation_value: Option<Bytes>,
    pub authenticated_encryption_tag: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptResponse {
    pub unique_identifier: String,
    /// The plaintext: secret.
    pub data: Option<SecretBytes>,
    pub correlation_value: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacResponse {
    pub unique_identifier: String,
    pub mac_data: Option<Bytes>,
    pub correlation_value: Option<Bytes>,
}

/// The payload of a successful response batch item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsePayload {
    DiscoverVersions(DiscoverVersionsResponse),
    Query(QueryResponse),
    Create(CreateResponse),
    CreateKeyPair(CreateKeyPairResponse),
    Register(UidResponse),
    Locate(LocateResponse),
    Get(GetResponse),
    GetAttributes(GetAttributesResponse),
    GetAttributeList(GetAttributeListResponse),
    AddAttribute(AttributeResponse),
    ModifyAttribute(AttributeResponse),
    DeleteAttribute(AttributeResponse),
    SetAttribute(UidResponse),
    Activate(UidResponse),
    Revoke(UidResponse),
    Destroy(UidResponse),
    ReKey(UidResponse),
    Check(CheckResponse),
    Encrypt(EncryptResponse),
    Decrypt(DecryptResponse),
    Mac(MacResponse),
    /// An empty payload (Interop, Log).
    Empty,
    /// The payload of an operation this model has no typed response for, as received.
    Raw(Ttlv),
}

impl ResponsePayload {
    /// Reads the `Response Payload` structure of an `op` batch item.
    pub(crate) fn read(op: Operation, node: &Node<'_>) -> R<ResponsePayload> {
        node.structure()?;
        let req_uid = || node.req_text(tags::UNIQUE_IDENTIFIER);
        let uid_response = || {
            Ok::<_, ModelError>(UidResponse {
                unique_identifier: req_uid()?,
            })
        };
        let attribute_response = || {
            Ok::<_, ModelError>(AttributeResponse {
                unique_identifier: req_uid()?,
                attribute: node
                    .opt(tags::ATTRIBUTE)
                    .map(|a| Attribute::read_v1(&a))
                    .transpose()?,
            })
        };
        Ok(match op {
            Operation::DiscoverVersions => {
                ResponsePayload::DiscoverVersions(DiscoverVersionsResponse {
                    versions: node
                        .all(tags::PROTOCOL_VERSION)
                        .map(|n| ProtocolVersion::read(&n))
                        .collect::<R<_>>()?,
                })
            }
            Operation::Query => {
                const TYPED: [Tag; 4] = [
                    tags::OPERATION,
                    tags::OBJECT_TYPE,
                    tags::VENDOR_IDENTIFICATION,
                    tags::SERVER_INFORMATION,
                ];
                ResponsePayload::Query(QueryResponse {
                    operations: node.all_enum(tags::OPERATION)?,
                    object_types: node.all_enum(tags::OBJECT_TYPE)?,
                    vendor_identification: node.opt_text(tags::VENDOR_IDENTIFICATION)?,
                    server_information: node.opt(tags::SERVER_INFORMATION).map(|n| n.ttlv.clone()),
                    other: node
                        .ttlv
                        .items()
                        .iter()
                        .filter(|t| !TYPED.contains(&t.tag))
                        .cloned()
                        .collect(),
                })
            }
            Operation::Create => ResponsePayload::Create(CreateResponse {
                object_type: node.req_enum(tags::OBJECT_TYPE)?,
                unique_identifier: req_uid()?,
            }),
            Operation::CreateKeyPair => ResponsePayload::CreateKeyPair(CreateKeyPairResponse {
                private_key_unique_identifier: node
                    .req_text(tags::PRIVATE_KEY_UNIQUE_IDENTIFIER)?,
                public_key_unique_identifier: node.req_text(tags::PUBLIC_KEY_UNIQUE_IDENTIFIER)?,
            }),
            Operation::Register => ResponsePayload::Register(uid_response()?),
            Operation::Locate => ResponsePayload::Locate(LocateResponse {
                located_items: node.opt_int(tags::LOCATED_ITEMS)?,
                unique_identifiers: node.all_text(tags::UNIQUE_IDENTIFIER)?,
            }),
            Operation::Get => ResponsePayload::Get(GetResponse {
                unique_identifier: req_uid()?,
                object: ManagedObject::read(node, node.req_enum(tags::OBJECT_TYPE)?)?,
            }),
            Operation::GetAttributes => ResponsePayload::GetAttributes(GetAttributesResponse {
                unique_identifier: req_uid()?,
                attributes: AttributeGroup::Plain.read(node)?,
            }),
            Operation::GetAttributeList => {
                let mut names = Vec::new();
                for n in node
                    .all(tags::ATTRIBUTE_NAME)
                    .chain(node.all(tags::ATTRIBUTE_REFERENCE))
                {
                    names.push(AttributeName::read_reference(&n)?);
                }
                ResponsePayload::GetAttributeList(GetAttributeListResponse {
                    unique_identifier: req_uid()?,
                    names,
                })
            }
            Operation::AddAttribute => ResponsePayload::AddAttribute(attribute_response()?),
            Operation::ModifyAttribute => ResponsePayload::ModifyAttribute(attribute_response()?),
            Operation::DeleteAttribute => ResponsePayload::DeleteAttribute(attribute_response()?),
            Operation::SetAttribute => ResponsePayload::SetAttribute(uid_response()?),
            Operation::Activate => ResponsePayload::Activate(uid_response()?),
            Operation::Revoke => ResponsePayload::Revoke(uid_response()?),
            Operation::Destroy => ResponsePayload::Destroy(uid_response()?),
            Operation::ReKey => ResponsePayload::ReKey(uid_response()?),
            Operation::Check => ResponsePayload::Check(CheckResponse {
                unique_identifier: uid(node)?,
                usage_limits_count: node.opt_long(tags::USAGE_LIMITS_COUNT)?,
                cryptographic_usage_mask: node.opt_int(tags::CRYPTOGRAPHIC_USAGE_MASK)?,
                lease_time: node.opt_interval(tags::LEASE_TIME)?,
            }),
            Operation::Encrypt => ResponsePayload::Encrypt(EncryptResponse {
                unique_identifier: req_uid()?,
                data: node.opt_bytes(tags::DATA)?,
                iv_counter_nonce: node.opt_bytes(tags::IV_COUNTER_NONCE)?,
                correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
                authenticated_encryption_tag: node.opt_bytes(tags::AUTHENTICATED_ENCRYPTION_TAG)?,
            }),
            Operation::Decrypt => ResponsePayload::Decrypt(DecryptResponse {
                unique_identifier: req_uid()?,
                data: opt_secret(node, tags::DATA)?,
                correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
            }),
            Operation::Mac => ResponsePayload::Mac(MacResponse {
                unique_identifier: req_uid()?,
                mac_data: node.opt_bytes(tags::MACDATA)?,
                correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
            }),
            Operation::Interop | Operation::Log if node.ttlv.items().is_empty() => {
                ResponsePayload::Empty
            }
            _ => ResponsePayload::Raw(node.ttlv.clone()),
        })
    }

    /// The `Response Payload` structure in the encoding of `version`.
    pub fn to_ttlv(&self, version: ProtocolVersion) -> Ttlv {
        let mut items = Vec::new();
        let v2 = version.is_v2();
        match self {
            ResponsePayload::DiscoverVersions(r) => {
                items.extend(r.versions.iter().map(|v| v.to_ttlv()));
            }
            ResponsePayload::Query(r) => {
                items.extend(
                    r.operations
                        .iter()
                        .map(|o| codec::enumeration(tags::OPERATION, *o)),
                );
                items.extend(
                    r.object_types
                        .iter()
                        .map(|o| codec::enumeration(tags::OBJECT_TYPE, *o)),
                );
                items.extend(
                    r.vendor_identification
                        .as_deref()
                        .map(|v| codec::text(tags::VENDOR_IDENTIFICATION, v)),
                );
                items.extend(r.server_information.clone());
                items.extend(r.other.iter().cloned());
            }
            ResponsePayload::Create(r) => {
                items.push(codec::enumeration(tags::OBJECT_TYPE, r.object_type));
                push_uid(&mut items, Some(&r.unique_identifier));
            }
            ResponsePayload::CreateKeyPair(r) => {
                items.push(codec::text(
                    tags::PRIVATE_KEY_UNIQUE_IDENTIFIER,
                    &r.private_key_unique_identifier,
                ));
                items.push(codec::text(
                    tags::PUBLIC_KEY_UNIQUE_IDENTIFIER,
                    &r.public_key_unique_identifier,
                ));
            }
            ResponsePayload::Register(r)
            | ResponsePayload::SetAttribute(r)
            | ResponsePayload::Activate(r)
            | ResponsePayload::Revoke(r)
            | ResponsePayload::Destroy(r)
            | ResponsePayload::ReKey(r) => push_uid(&mut items, Some(&r.unique_identifier)),
            ResponsePayload::Locate(r) => {
                items.extend(r.located_items.map(|n| codec::int(tags::LOCATED_ITEMS, n)));
                items.extend(
                    r.unique_identifiers
                        .iter()
                        .map(|u| codec::text(tags::UNIQUE_IDENTIFIER, u)),
                );
            }
            ResponsePayload::Get(r) => {
                items.push(codec::enumeration(
                    tags::OBJECT_TYPE,
                    r.object.object_type(),
                ));
                push_uid(&mut items, Some(&r.unique_identifier));
                items.push(r.object.to_ttlv());
            }
            ResponsePayload::GetAttributes(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                if v2 {
                    items.push(AttributeGroup::Plain.write_response(&r.attributes, version));
                } else {
                    items.extend(write_bare_response(&r.attributes, version));
                }
            }
            ResponsePayload::GetAttributeList(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                items.extend(r.names.iter().filter_map(|n| n.to_reference(version)));
            }
            ResponsePayload::AddAttribute(r)
            | ResponsePayload::ModifyAttribute(r)
            | ResponsePayload::DeleteAttribute(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                if !v2 {
                    items.extend(r.attribute.as_ref().and_then(|a| a.to_ttlv(version)));
                }
            }
            ResponsePayload::Check(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(
                    r.usage_limits_count
                        .map(|c| codec::long(tags::USAGE_LIMITS_COUNT, c)),
                );
                items.extend(
                    r.cryptographic_usage_mask
                        .map(|m| codec::int(tags::CRYPTOGRAPHIC_USAGE_MASK, m)),
                );
                items.extend(r.lease_time.map(|l| codec::interval(tags::LEASE_TIME, l)));
            }
            ResponsePayload::Encrypt(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                push_bytes(&mut items, tags::DATA, r.data.as_deref());
                push_bytes(
                    &mut items,
                    tags::IV_COUNTER_NONCE,
                    r.iv_counter_nonce.as_deref(),
                );
                push_bytes(
                    &mut items,
                    tags::CORRELATION_VALUE,
                    r.correlation_value.as_deref(),
                );
                push_bytes(
                    &mut items,
                    tags::AUTHENTICATED_ENCRYPTION_TAG,
                    r.authenticated_encryption_tag.as_deref(),
                );
            }
            ResponsePayload::Decrypt(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                push_bytes(
                    &mut items,
                    tags::DATA,
                    r.data.as_ref().map(|d| d.as_slice()),
                );
                push_bytes(
                    &mut items,
                    tags::CORRELATION_VALUE,
                    r.correlation_value.as_deref(),
                );
            }
            ResponsePayload::Mac(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                push_bytes(&mut items, tags::MACDATA, r.mac_data.as_deref());
                push_bytes(
                    &mut items,
                    tags::CORRELATION_VALUE,
                    r.correlation_value.as_deref(),
                );
            }
            ResponsePayload::Empty => {}
            ResponsePayload::Raw(raw) => return raw.clone(),
        }
        codec::structure(tags::RESPONSE_PAYLOAD, items)
    }
}
