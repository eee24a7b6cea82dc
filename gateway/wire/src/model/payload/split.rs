//! The payloads of Create Split Key and Join Split Key (requests, their reading and writing, and
//! the Create Split Key answer; Join Split Key answers with a [`super::UidResponse`]).

use bytes::Bytes;

use super::{push_uid, uid, R};
use crate::model::attribute::{Attribute, AttributeGroup};
use crate::model::codec::{self, Node};
use crate::model::enums::{ObjectType, SecretDataType, SplitKeyMethod};
use crate::model::version::ProtocolVersion;
use crate::spec::tags;
use crate::ttlv::{Ttlv, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSplitKeyRequest {
    pub object_type: ObjectType,
    /// An existing key to split instead of a new one.
    pub unique_identifier: Option<String>,
    pub split_key_parts: i32,
    pub split_key_threshold: i32,
    pub split_key_method: SplitKeyMethod,
    /// A Big Integer's bytes.
    pub prime_field_size: Option<Bytes>,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSplitKeyRequest {
    pub object_type: ObjectType,
    pub unique_identifiers: Vec<String>,
    pub secret_data_type: Option<SecretDataType>,
    pub attributes: Vec<Attribute>,
}

/// The parts made, in Key Part Identifier order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateSplitKeyResponse {
    pub unique_identifiers: Vec<String>,
}

pub(super) fn read_create(node: &Node<'_>) -> R<CreateSplitKeyRequest> {
    let prime_field_size = match node.opt(tags::PRIME_FIELD_SIZE) {
        Some(n) => match &n.ttlv.value {
            Value::BigInteger(b) => Some(b.clone()),
            _ => return Err(n.wrong("BigInteger")),
        },
        None => None,
    };
    Ok(CreateSplitKeyRequest {
        object_type: node.req_enum(tags::OBJECT_TYPE)?,
        unique_identifier: uid(node)?,
        split_key_parts: node.req(tags::SPLIT_KEY_PARTS)?.int()?,
        split_key_threshold: node.req(tags::SPLIT_KEY_THRESHOLD)?.int()?,
        split_key_method: node.req_enum(tags::SPLIT_KEY_METHOD)?,
        prime_field_size,
        attributes: AttributeGroup::Plain.read(node)?,
    })
}

pub(super) fn read_join(node: &Node<'_>) -> R<JoinSplitKeyRequest> {
    Ok(JoinSplitKeyRequest {
        object_type: node.req_enum(tags::OBJECT_TYPE)?,
        unique_identifiers: node.all_text(tags::UNIQUE_IDENTIFIER)?,
        secret_data_type: node.opt_enum(tags::SECRET_DATA_TYPE)?,
        attributes: AttributeGroup::Plain.read(node)?,
    })
}

pub(super) fn write_create(
    items: &mut Vec<Ttlv>,
    r: &CreateSplitKeyRequest,
    version: ProtocolVersion,
) {
    items.push(codec::enumeration(tags::OBJECT_TYPE, r.object_type));
    push_uid(items, r.unique_identifier.as_deref());
    items.push(codec::int(tags::SPLIT_KEY_PARTS, r.split_key_parts));
    items.push(codec::int(tags::SPLIT_KEY_THRESHOLD, r.split_key_threshold));
    items.push(codec::enumeration(
        tags::SPLIT_KEY_METHOD,
        r.split_key_method,
    ));
    items.extend(
        r.prime_field_size
            .clone()
            .map(|p| Ttlv::new(tags::PRIME_FIELD_SIZE, Value::BigInteger(p))),
    );
    items.push(AttributeGroup::Plain.write_request(&r.attributes, version));
}

pub(super) fn write_join(items: &mut Vec<Ttlv>, r: &JoinSplitKeyRequest, version: ProtocolVersion) {
    items.push(codec::enumeration(tags::OBJECT_TYPE, r.object_type));
    for u in &r.unique_identifiers {
        push_uid(items, Some(u));
    }
    items.extend(
        r.secret_data_type
            .map(|t| codec::enumeration(tags::SECRET_DATA_TYPE, t)),
    );
    items.push(AttributeGroup::Plain.write_request(&r.attributes, version));
}

pub(super) fn read_create_response(node: &Node<'_>) -> R<CreateSplitKeyResponse> {
    Ok(CreateSplitKeyResponse {
        unique_identifiers: node.all_text(tags::UNIQUE_IDENTIFIER)?,
    })
}

pub(super) fn write_create_response(items: &mut Vec<Ttlv>, r: &CreateSplitKeyResponse) {
    for u in &r.unique_identifiers {
        push_uid(items, Some(u));
    }
}
