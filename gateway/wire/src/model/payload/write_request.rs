//! How each request payload is written in the shape of a version (the client side: the Rust
//! client, the conformance runner, the proxy's upstream calls).

use super::digest;
use super::request::*;
use super::split;
use super::{push_bool, push_bytes, push_uid};
use crate::model::attribute::{needs_v2_shape, write_wrapped, Attribute, AttributeGroup};
use crate::model::codec;
use crate::model::version::ProtocolVersion;
use crate::spec::tags;
use crate::ttlv::{Ttlv, Value};

impl RequestPayload {
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
                items.push(AttributeGroup::Plain.write_request_with_templates(
                    &r.attributes,
                    &r.templates,
                    version,
                ));
            }
            RequestPayload::CreateKeyPair(r) => {
                for (group, attributes, templates) in [
                    (
                        AttributeGroup::Common,
                        &r.common_attributes,
                        &r.common_templates,
                    ),
                    (
                        AttributeGroup::PrivateKey,
                        &r.private_key_attributes,
                        &r.private_key_templates,
                    ),
                    (
                        AttributeGroup::PublicKey,
                        &r.public_key_attributes,
                        &r.public_key_templates,
                    ),
                ] {
                    items.push(group.write_request_with_templates(attributes, templates, version));
                }
            }
            RequestPayload::Register(r) => {
                items.push(codec::enumeration(tags::OBJECT_TYPE, r.object_type));
                items.push(AttributeGroup::Plain.write_request_with_templates(
                    &r.attributes,
                    &r.templates,
                    version,
                ));
                items.push(r.object.to_ttlv());
            }
            RequestPayload::Import(r) => {
                push_uid(&mut items, Some(&r.unique_identifier));
                items.push(codec::enumeration(tags::OBJECT_TYPE, r.object_type));
                push_bool(&mut items, tags::REPLACE_EXISTING, r.replace_existing);
                items.extend(
                    r.key_wrap_type
                        .map(|k| codec::enumeration(tags::KEY_WRAP_TYPE, k)),
                );
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
            RequestPayload::Get(r) | RequestPayload::Export(r) => {
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
            | RequestPayload::Destroy(r)
            | RequestPayload::Archive(r)
            | RequestPayload::Recover(r)
            | RequestPayload::ObtainLease(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref())
            }
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
            RequestPayload::Certify(r) | RequestPayload::ReCertify(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(
                    r.certificate_request_type
                        .map(|t| codec::enumeration(tags::CERTIFICATE_REQUEST_TYPE, t)),
                );
                let request_tag = if version.is_v2() {
                    tags::CERTIFICATE_REQUEST_VALUE
                } else {
                    tags::CERTIFICATE_REQUEST
                };
                items.extend(
                    r.certificate_request
                        .as_ref()
                        .map(|b| Ttlv::new(request_tag, Value::ByteString(b.clone()))),
                );
                items.extend(
                    r.certificate_request_unique_identifier
                        .as_deref()
                        .map(|u| codec::text(tags::CERTIFICATE_REQUEST_UNIQUE_IDENTIFIER, u)),
                );
                items.extend(r.offset.map(|o| codec::interval(tags::OFFSET, o)));
                if !r.attributes.is_empty() {
                    items.push(AttributeGroup::Plain.write_request(&r.attributes, version));
                }
            }
            RequestPayload::ReKeyKeyPair(r) => {
                items.extend(
                    r.unique_identifier
                        .as_deref()
                        .map(|u| codec::text(tags::PRIVATE_KEY_UNIQUE_IDENTIFIER, u)),
                );
                items.extend(r.offset.map(|o| codec::interval(tags::OFFSET, o)));
                for (group, attrs) in [
                    (AttributeGroup::Common, &r.common_attributes),
                    (AttributeGroup::PrivateKey, &r.private_key_attributes),
                    (AttributeGroup::PublicKey, &r.public_key_attributes),
                ] {
                    if !attrs.is_empty() {
                        items.push(group.write_request(attrs, version));
                    }
                }
            }
            RequestPayload::AdjustAttribute(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.push(r.name.to_request_reference(version));
                items.push(Ttlv::new(
                    tags::ADJUSTMENT_TYPE,
                    Value::Enumeration(r.adjustment_type),
                ));
                items.extend(
                    r.adjustment_value
                        .clone()
                        .map(|v| Ttlv::new(tags::ADJUSTMENT_VALUE, v)),
                );
            }
            RequestPayload::Pkcs11(r) => {
                items.extend(
                    r.interface
                        .as_deref()
                        .map(|i| codec::text(tags::PKCS_11_INTERFACE, i)),
                );
                items.push(Ttlv::new(tags::PKCS_11_FUNCTION, r.function.clone()));
                items.extend(
                    r.correlation_value
                        .as_deref()
                        .map(|c| codec::bytes(tags::CORRELATION_VALUE, c)),
                );
                items.extend(
                    r.input_parameters
                        .as_deref()
                        .map(|p| codec::bytes(tags::PKCS_11_INPUT_PARAMETERS, p)),
                );
            }
            RequestPayload::Poll(r) | RequestPayload::Cancel(r) => items.push(codec::bytes(
                tags::ASYNCHRONOUS_CORRELATION_VALUE,
                &r.asynchronous_correlation_value,
            )),
            RequestPayload::GetUsageAllocation(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.push(codec::long(tags::USAGE_LIMITS_COUNT, r.usage_limits_count));
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
            RequestPayload::MacVerify(r) => digest::write_mac_verify(&mut items, r),
            RequestPayload::Hash(r) => digest::write_hash(&mut items, r),
            RequestPayload::RngRetrieve(r) => {
                items.push(codec::int(tags::DATA_LENGTH, r.data_length));
            }
            RequestPayload::RngSeed(r) => {
                push_bytes(&mut items, tags::DATA, Some(r.data.as_slice()));
            }
            RequestPayload::Sign(r) | RequestPayload::SignatureVerify(r) => {
                push_uid(&mut items, r.unique_identifier.as_deref());
                items.extend(r.cryptographic_parameters.as_ref().map(|p| p.to_ttlv()));
                push_bytes(
                    &mut items,
                    tags::DATA,
                    r.data.as_ref().map(|d| d.as_slice()),
                );
                push_bytes(&mut items, tags::DIGESTED_DATA, r.digested_data.as_deref());
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
                push_bool(&mut items, tags::INIT_INDICATOR, r.init_indicator);
                push_bool(&mut items, tags::FINAL_INDICATOR, r.final_indicator);
            }
            RequestPayload::CreateSplitKey(r) => split::write_create(&mut items, r, version),
            RequestPayload::JoinSplitKey(r) => split::write_join(&mut items, r, version),
            RequestPayload::Interop(r) => {
                items.push(codec::enumeration(tags::INTEROP_FUNCTION, r.function));
                items.push(codec::text(tags::INTEROP_IDENTIFIER, &r.identifier));
            }
            RequestPayload::Log(r) => items.push(codec::text(tags::LOG_MESSAGE, &r.message)),
            RequestPayload::SetEndpointRole(r) => {
                items.push(codec::enumeration(tags::ENDPOINT_ROLE, r.role))
            }
            RequestPayload::Unknown { raw, .. } => return raw.clone(),
        }
        codec::structure(tags::REQUEST_PAYLOAD, items)
    }
}

fn write_new_attribute(attribute: &Attribute, version: ProtocolVersion) -> Ttlv {
    if needs_v2_shape([attribute], version) {
        write_wrapped(tags::NEW_ATTRIBUTE, attribute, version)
    } else {
        attribute.to_request_ttlv(version)
    }
}
