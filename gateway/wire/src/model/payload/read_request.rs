//! Reading request payloads, in the 1.x or the 2.x shape whatever the header says.

use super::request::Pkcs11Request;
use super::request::{
    AdjustAttributeRequest, AsyncRequest, AttributeRequest, CertifyRequest, CheckRequest,
    CreateKeyPairRequest, CreateRequest, CryptoRequest, DeleteAttributeRequest,
    DiscoverVersionsRequest, GetAttributesRequest, GetRequest, GetUsageAllocationRequest,
    ImportRequest, InteropRequest, LocateRequest, LogRequest, MacRequest, ModifyAttributeRequest,
    QueryRequest, ReKeyKeyPairRequest, ReKeyRequest, RegisterRequest, RequestPayload,
    RevokeRequest, SetEndpointRoleRequest, SignRequest, UidRequest,
};
use super::{digest, opt_secret, split, uid, CryptographicParameters, R};
use crate::model::attribute::{
    read_wrapped, Attribute, AttributeGroup, AttributeName, RevocationReason,
};
use crate::model::codec::Node;
use crate::model::enums::Operation;
use crate::model::error::ModelError;
use crate::model::object::ManagedObject;
use crate::model::version::ProtocolVersion;
use crate::spec::tags;
use crate::ttlv::Value;

impl RequestPayload {
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
            Operation::Create => {
                let (attributes, templates) = AttributeGroup::Plain.read_with_templates(node)?;
                RequestPayload::Create(CreateRequest {
                    object_type: node.req_enum(tags::OBJECT_TYPE)?,
                    attributes,
                    templates,
                })
            }
            Operation::CreateKeyPair => {
                let (common_attributes, common_templates) =
                    AttributeGroup::Common.read_with_templates(node)?;
                let (private_key_attributes, private_key_templates) =
                    AttributeGroup::PrivateKey.read_with_templates(node)?;
                let (public_key_attributes, public_key_templates) =
                    AttributeGroup::PublicKey.read_with_templates(node)?;
                RequestPayload::CreateKeyPair(CreateKeyPairRequest {
                    common_attributes,
                    private_key_attributes,
                    public_key_attributes,
                    common_templates,
                    private_key_templates,
                    public_key_templates,
                })
            }
            Operation::Register => {
                let object_type = node.req_enum(tags::OBJECT_TYPE)?;
                let (attributes, templates) = AttributeGroup::Plain.read_with_templates(node)?;
                RequestPayload::Register(RegisterRequest {
                    object_type,
                    attributes,
                    templates,
                    object: ManagedObject::read(node, object_type)?,
                })
            }
            Operation::Import => {
                let object_type = node.req_enum(tags::OBJECT_TYPE)?;
                RequestPayload::Import(ImportRequest {
                    unique_identifier: node.req_text(tags::UNIQUE_IDENTIFIER)?,
                    object_type,
                    replace_existing: node.opt_bool(tags::REPLACE_EXISTING)?,
                    key_wrap_type: node.opt_enum(tags::KEY_WRAP_TYPE)?,
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
            Operation::Get | Operation::Export => {
                let request = GetRequest {
                    unique_identifier: uid(node)?,
                    key_format_type: node.opt_enum(tags::KEY_FORMAT_TYPE)?,
                    key_wrap_type: node.opt_enum(tags::KEY_WRAP_TYPE)?,
                    key_compression_type: node.opt_enum(tags::KEY_COMPRESSION_TYPE)?,
                    key_wrapping_specification: node
                        .opt(tags::KEY_WRAPPING_SPECIFICATION)
                        .map(|n| n.ttlv.clone()),
                };
                if op == Operation::Get {
                    RequestPayload::Get(request)
                } else {
                    RequestPayload::Export(request)
                }
            }
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
            Operation::Archive => RequestPayload::Archive(uid_request()?),
            Operation::Recover => RequestPayload::Recover(uid_request()?),
            Operation::ObtainLease => RequestPayload::ObtainLease(uid_request()?),
            Operation::AdjustAttribute => RequestPayload::AdjustAttribute(AdjustAttributeRequest {
                unique_identifier: uid(node)?,
                name: AttributeName::read_reference(&node.req(tags::ATTRIBUTE_REFERENCE)?)?,
                adjustment_type: node.req(tags::ADJUSTMENT_TYPE)?.enum_value()?,
                adjustment_value: node
                    .opt(tags::ADJUSTMENT_VALUE)
                    .map(|n| n.ttlv.value.clone()),
            }),
            Operation::Pkcs11 => RequestPayload::Pkcs11(Pkcs11Request {
                interface: node.opt_text(tags::PKCS_11_INTERFACE)?,
                function: pkcs11_function(&node.req(tags::PKCS_11_FUNCTION)?)?,
                correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
                input_parameters: node.opt_bytes(tags::PKCS_11_INPUT_PARAMETERS)?,
            }),
            Operation::Poll => RequestPayload::Poll(AsyncRequest {
                asynchronous_correlation_value: node
                    .req(tags::ASYNCHRONOUS_CORRELATION_VALUE)?
                    .bytes()?,
            }),
            Operation::Cancel => RequestPayload::Cancel(AsyncRequest {
                asynchronous_correlation_value: node
                    .req(tags::ASYNCHRONOUS_CORRELATION_VALUE)?
                    .bytes()?,
            }),
            Operation::GetUsageAllocation => {
                RequestPayload::GetUsageAllocation(GetUsageAllocationRequest {
                    unique_identifier: uid(node)?,
                    usage_limits_count: node.req(tags::USAGE_LIMITS_COUNT)?.long()?,
                })
            }
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
            Operation::Certify => RequestPayload::Certify(read_certify(node)?),
            Operation::ReCertify => RequestPayload::ReCertify(read_certify(node)?),
            Operation::ReKeyKeyPair => RequestPayload::ReKeyKeyPair(ReKeyKeyPairRequest {
                unique_identifier: node.opt_text(tags::PRIVATE_KEY_UNIQUE_IDENTIFIER)?,
                offset: node.opt_interval(tags::OFFSET)?,
                common_attributes: AttributeGroup::Common.read(node)?,
                private_key_attributes: AttributeGroup::PrivateKey.read(node)?,
                public_key_attributes: AttributeGroup::PublicKey.read(node)?,
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
            Operation::MacVerify => RequestPayload::MacVerify(digest::read_mac_verify(node)?),
            Operation::Hash => RequestPayload::Hash(digest::read_hash(node)?),
            Operation::RngRetrieve => RequestPayload::RngRetrieve(digest::read_rng_retrieve(node)?),
            Operation::RngSeed => RequestPayload::RngSeed(digest::read_rng_seed(node)?),
            Operation::CreateSplitKey => RequestPayload::CreateSplitKey(split::read_create(node)?),
            Operation::JoinSplitKey => RequestPayload::JoinSplitKey(split::read_join(node)?),
            Operation::Sign => RequestPayload::Sign(read_sign(node)?),
            Operation::SignatureVerify => RequestPayload::SignatureVerify(read_sign(node)?),
            Operation::Interop => RequestPayload::Interop(InteropRequest {
                function: node.req_enum(tags::INTEROP_FUNCTION)?,
                identifier: node.req_text(tags::INTEROP_IDENTIFIER)?,
            }),
            Operation::Log => RequestPayload::Log(LogRequest {
                message: node.req_text(tags::LOG_MESSAGE)?,
            }),
            Operation::SetEndpointRole => RequestPayload::SetEndpointRole(SetEndpointRoleRequest {
                role: node.req_enum(tags::ENDPOINT_ROLE)?,
            }),
            op_code => RequestPayload::Unknown {
                op_code,
                raw: node.ttlv.clone(),
            },
        })
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

fn read_sign(node: &Node<'_>) -> R<SignRequest> {
    Ok(SignRequest {
        unique_identifier: uid(node)?,
        cryptographic_parameters: read_crypto_parameters(node)?,
        data: opt_secret(node, tags::DATA)?,
        digested_data: node.opt_bytes(tags::DIGESTED_DATA)?,
        signature_data: node.opt_bytes(tags::SIGNATURE_DATA)?,
        correlation_value: node.opt_bytes(tags::CORRELATION_VALUE)?,
        init_indicator: node.opt_bool(tags::INIT_INDICATOR)?,
        final_indicator: node.opt_bool(tags::FINAL_INDICATOR)?,
    })
}

/// Certify and Re-certify: the request bytes under their 1.x or 2.x tag.
fn read_certify(node: &Node<'_>) -> R<CertifyRequest> {
    let certificate_request = match node.opt_bytes(tags::CERTIFICATE_REQUEST_VALUE)? {
        Some(b) => Some(b),
        None => node.opt_bytes(tags::CERTIFICATE_REQUEST)?,
    };
    Ok(CertifyRequest {
        unique_identifier: uid(node)?,
        certificate_request_type: node.opt_enum(tags::CERTIFICATE_REQUEST_TYPE)?,
        certificate_request,
        certificate_request_unique_identifier: node
            .opt_text(tags::CERTIFICATE_REQUEST_UNIQUE_IDENTIFIER)?,
        offset: node.opt_interval(tags::OFFSET)?,
        attributes: AttributeGroup::Plain.read(node)?,
    })
}

/// A PKCS#11 Function: an Enumeration (a PKCS#11 defined function) or an Integer (a vendor one).
pub(super) fn pkcs11_function(node: &Node<'_>) -> R<Value> {
    match &node.ttlv.value {
        v @ (Value::Enumeration(_) | Value::Integer(_)) => Ok(v.clone()),
        _ => Err(node.wrong("an Enumeration or an Integer")),
    }
}
