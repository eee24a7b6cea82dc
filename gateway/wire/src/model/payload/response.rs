//! The response payloads: one type per operation served, read and written in the shape of a
//! version.

use bytes::Bytes;

use super::digest::{self, DataResponse, MacVerifyResponse, RngSeedResponse};
use super::split::{self, CreateSplitKeyResponse};
use super::{opt_secret, push_bytes, push_uid, uid, R};
use crate::model::attribute::{write_bare_response, Attribute, AttributeGroup, AttributeName};
use crate::model::codec::{self, Node};
use crate::model::enums::{EndpointRole, ObjectType, Operation, ValidityIndicator};
use crate::model::error::ModelError;
use crate::model::object::{ManagedObject, SecretBytes};
use crate::model::version::ProtocolVersion;
use crate::spec::tags;
use crate::ttlv::{Tag, Ttlv};

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

/// Export (KMIP 1.4 / 2.x): the object and all its attributes in one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportResponse {
    pub unique_identifier: String,
    pub attributes: Vec<Attribute>,
    pub object: ManagedObject,
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

/// Set Endpoint Role (2.x): the role the server took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRoleResponse {
    pub role: EndpointRole,
}

/// PKCS#11 (2.x): the function performed, its output parameters and its CK_RV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Response {
    pub interface: Option<String>,
    /// The function of the request, echoed (Enumeration or Integer).
    pub function: crate::ttlv::Value,
    pub output_parameters: Option<Bytes>,
    pub correlation_value: Option<Bytes>,
    /// The PKCS#11 CK_RV (PKCS#11 Return Code enumeration).
    pub return_code: u32,
}

/// Cancel: the operation named and what became of it (Cancellation Result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelResponse {
    pub asynchronous_correlation_value: Bytes,
    pub cancellation_result: u32,
}

/// Obtain Lease: how long the client may use the object (0: no lease limit) and when the object
/// last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObtainLeaseResponse {
    pub unique_identifier: String,
    pub lease_time: u32,
    pub last_change_date: i64,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignResponse {
    pub unique_identifier: String,
    pub signature_data: Option<Bytes>,
    pub correlation_value: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureVerifyResponse {
    pub unique_identifier: String,
    pub validity_indicator: ValidityIndicator,
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
    Import(UidResponse),
    Locate(LocateResponse),
    Get(GetResponse),
    GetAttributes(GetAttributesResponse),
    GetAttributeList(GetAttributeListResponse),
    Export(ExportResponse),
    AddAttribute(AttributeResponse),
    ModifyAttribute(AttributeResponse),
    DeleteAttribute(AttributeResponse),
    SetAttribute(UidResponse),
    Activate(UidResponse),
    Revoke(UidResponse),
    Destroy(UidResponse),
    Archive(UidResponse),
    Recover(UidResponse),
    ObtainLease(ObtainLeaseResponse),
    GetUsageAllocation(UidResponse),
    Cancel(CancelResponse),
    AdjustAttribute(UidResponse),
    Pkcs11(Pkcs11Response),
    SetEndpointRole(EndpointRoleResponse),
    ReKey(UidResponse),
    Certify(UidResponse),
    ReCertify(UidResponse),
    ReKeyKeyPair(CreateKeyPairResponse),
    Check(CheckResponse),
    Encrypt(EncryptResponse),
    Decrypt(DecryptResponse),
    Mac(MacResponse),
    MacVerify(MacVerifyResponse),
    Hash(DataResponse),
    RngRetrieve(DataResponse),
    RngSeed(RngSeedResponse),
    CreateSplitKey(CreateSplitKeyResponse),
    JoinSplitKey(UidResponse),
    Sign(SignResponse),
    SignatureVerify(SignatureVerifyResponse),
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
            Operation::CreateKeyPair | Operation::ReKeyKeyPair => {
                let pair = CreateKeyPairResponse {
                    private_key_unique_identifier: node
                        .req_text(tags::PRIVATE_KEY_UNIQUE_IDENTIFIER)?,
                    public_key_unique_identifier: node
                        .req_text(tags::PUBLIC_KEY_UNIQUE_IDENTIFIER)?,
                };
                if op == Operation::CreateKeyPair {
                    ResponsePayload::CreateKeyPair(pair)
                } else {
                    ResponsePayload::ReKeyKeyPair(pair)
                }
            }
            Operation::Register => ResponsePayload::Register(uid_response()?),
            Operation::Import => ResponsePayload::Import(uid_response()?),
            Operation::Locate => ResponsePayload::Locate(LocateResponse {
                located_items: node.opt_int(tags::LOCATED_ITEMS)?,
                unique_identifiers: node.all_text(tags::UNIQUE_IDENTIFIER)?,
            }),
            Operation::Get => ResponsePayload::Get(GetResponse {
                unique_identifier: req_uid()?,
                object: ManagedObject::read(node, node.req_enum(tags::OBJECT_TYPE)?)?,
            }),
            Operation::Export => ResponsePayload::Export(ExportResponse {
                unique_identifier: req_uid()?,
                attributes: AttributeGroup::Plain.read(node)?,
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
            Operation::Archive => ResponsePayload::Archive(uid_response()?),
            Operation::Recover => ResponsePayload::Recover(uid_response()?),
            Operation::AdjustAttribute => ResponsePayload::AdjustAttribute(uid_response()?),
            Operation::GetUsageAllocation => ResponsePayload::GetUsageAllocation(uid_response()?),
            Operation::Pkcs11 => ResponsePayload::Pkcs11(Pkcs11Response {
                interface: node.opt_text(tags::PKCS_11_INTERFACE)?,
                function: super::read_request::pkcs11_function(&node.req(tags::PKCS_11_FUNCTION)?)?,
                output_parameters: node.opt_bytes(tags::PKCS_11_OUTPUT_PARAMETERS)?,
                correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
                return_code: node.req(tags::PKCS_11_RETURN_CODE)?.enum_value()?,
            }),
            Operation::SetEndpointRole => ResponsePayload::SetEndpointRole(EndpointRoleResponse {
                role: node.req_enum(tags::ENDPOINT_ROLE)?,
            }),
            Operation::Cancel => ResponsePayload::Cancel(CancelResponse {
                asynchronous_correlation_value: node
                    .req(tags::ASYNCHRONOUS_CORRELATION_VALUE)?
                    .bytes()?,
                cancellation_result: node.req(tags::CANCELLATION_RESULT)?.enum_value()?,
            }),
            Operation::ObtainLease => ResponsePayload::ObtainLease(ObtainLeaseResponse {
                unique_identifier: req_uid()?,
                lease_time: node.req(tags::LEASE_TIME)?.interval()?,
                last_change_date: node.req(tags::LAST_CHANGE_DATE)?.datetime()?,
            }),
            Operation::ReKey => ResponsePayload::ReKey(uid_response()?),
            Operation::Certify => ResponsePayload::Certify(uid_response()?),
            Operation::ReCertify => ResponsePayload::ReCertify(uid_response()?),
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
            Operation::MacVerify => {
                ResponsePayload::MacVerify(digest::read_mac_verify_response(node)?)
            }
            Operation::Hash => ResponsePayload::Hash(digest::read_data_response(node)?),
            Operation::RngRetrieve => {
                ResponsePayload::RngRetrieve(digest::read_data_response(node)?)
            }
            Operation::RngSeed => ResponsePayload::RngSeed(digest::read_rng_seed_response(node)?),
            Operation::CreateSplitKey => {
                ResponsePayload::CreateSplitKey(split::read_create_response(node)?)
            }
            Operation::JoinSplitKey => ResponsePayload::JoinSplitKey(uid_response()?),
            Operation::Sign => ResponsePayload::Sign(SignResponse {
                unique_identifier: req_uid()?,
                signature_data: node.opt_bytes(tags::SIGNATURE_DATA)?,
                correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
            }),
            Operation::SignatureVerify => {
                ResponsePayload::SignatureVerify(SignatureVerifyResponse {
                    unique_identifier: req_uid()?,
                    validity_indicator: node.req_enum(tags::VALIDITY_INDICATOR)?,
                    correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
                })
            }
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
            ResponsePayload::CreateKeyPair(r) | ResponsePayload::ReKeyKeyPair(r) => {
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
            | ResponsePayload::JoinSplitKey(r)
            | ResponsePayload::Import(r)
            | ResponsePayload::SetAttribute(r)
            | ResponsePayload::Activate(r)
            | ResponsePayload::Revoke(r)
            | ResponsePayload::Destroy(r)
            | ResponsePayload::Archive(r)
            | ResponsePayload::Recover(r)
            | ResponsePayload::GetUsageAllocation(r)
            | ResponsePayload::AdjustAttribute(r)
            | ResponsePayload::ReKey(r)
            | ResponsePayload::Certify(r)
            | ResponsePayload::ReCertify(r) => push_uid(&mut items, Some(&r.unique_identifier)),
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
            ResponsePayload::Export(r) => {
                items.push(codec::enumeration(
                    tags::OBJECT_TYPE,
                    r.object.object_type(),
                ));
                push_uid(&mut items, Some(&r.unique_identifier));
                items.push(AttributeGroup::Plain.write_response(&r.attributes, version));
                items.push(r.object.to_ttlv());
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
            ResponsePayload::Pkcs11(r) => {
                items.extend(
                    r.interface
                        .as_deref()
                        .map(|i| codec::text(tags::PKCS_11_INTERFACE, i)),
                );
                items.push(Ttlv::new(tags::PKCS_11_FUNCTION, r.function.clone()));
                items.extend(
                    r.output_parameters
                        .as_deref()
                        .map(|p| codec::bytes(tags::PKCS_11_OUTPUT_PARAMETERS, p)),
                );
                items.extend(
                    r.correlation_value
                        .as_deref()
                        .map(|c| codec::bytes(tags::CORRELATION_VALUE, c)),
                );
                items.push(Ttlv::new(
                    tags::PKCS_11_RETURN_CODE,
                    crate::ttlv::Value::Enumeration(r.return_code),
                ));
            }
            ResponsePayload::Cancel(r) => {
                items.push(codec::bytes(
                    tags::ASYNCHRONOUS_CORRELATION_VALUE,
                    &r.asynchronous_correlation_value,
                ));
                items.push(Ttlv::new(
                    tags::CANCELLATION_RESULT,
                    crate::ttlv::Value::Enumeration(r.cancellation_result),
                ));
            }
            ResponsePayload::ObtainLease(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                items.push(codec::interval(tags::LEASE_TIME, r.lease_time));
                items.push(codec::datetime(tags::LAST_CHANGE_DATE, r.last_change_date));
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
            ResponsePayload::MacVerify(r) => digest::write_mac_verify_response(&mut items, r),
            ResponsePayload::Hash(r) | ResponsePayload::RngRetrieve(r) => {
                push_bytes(&mut items, tags::DATA, Some(&r.data));
            }
            ResponsePayload::RngSeed(r) => digest::write_rng_seed_response(&mut items, r),
            ResponsePayload::CreateSplitKey(r) => split::write_create_response(&mut items, r),
            ResponsePayload::Sign(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                push_bytes(
                    &mut items,
                    tags::SIGNATURE_DATA,
                    r.signature_data.as_deref(),
                );
                push_bytes(
                    &mut items,
                    tags::CORRELATION_VALUE,
                    r.correlation_value.as_deref(),
                );
            }
            ResponsePayload::SignatureVerify(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                items.push(codec::enumeration(
                    tags::VALIDITY_INDICATOR,
                    r.validity_indicator,
                ));
                push_bytes(
                    &mut items,
                    tags::CORRELATION_VALUE,
                    r.correlation_value.as_deref(),
                );
            }
            ResponsePayload::SetEndpointRole(r) => {
                items.push(codec::enumeration(tags::ENDPOINT_ROLE, r.role));
            }
            ResponsePayload::Empty => {}
            ResponsePayload::Raw(raw) => return raw.clone(),
        }
        codec::structure(tags::RESPONSE_PAYLOAD, items)
    }
}
