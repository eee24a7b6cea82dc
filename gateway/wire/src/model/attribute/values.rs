//! The structured attribute values (Name, Link, Digest, Revocation Reason) and the bits of the
//! Cryptographic Usage Mask.

use bytes::Bytes;

use crate::model::codec::{self, Node};
use crate::model::enums::{
    HashingAlgorithm, KeyFormatType, LinkType, NameType, RevocationReasonCode,
};
use crate::model::error::ModelError;
use crate::spec::tags;
use crate::ttlv::Value;

/// Bits of the Cryptographic Usage Mask attribute used by the model's clients.
pub mod usage_mask {
    pub const SIGN: i32 = 0x0000_0001;
    pub const VERIFY: i32 = 0x0000_0002;
    pub const ENCRYPT: i32 = 0x0000_0004;
    pub const DECRYPT: i32 = 0x0000_0008;
    pub const WRAP_KEY: i32 = 0x0000_0010;
    pub const UNWRAP_KEY: i32 = 0x0000_0020;
    pub const EXPORT: i32 = 0x0000_0040;
    pub const MAC_GENERATE: i32 = 0x0000_0080;
    pub const MAC_VERIFY: i32 = 0x0000_0100;
}

/// The Name attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub value: String,
    pub name_type: NameType,
}

impl Name {
    pub fn new(value: &str) -> Name {
        Name {
            value: value.to_owned(),
            name_type: NameType::UninterpretedTextString,
        }
    }

    pub(crate) fn read(node: &Node<'_>) -> Result<Name, ModelError> {
        node.structure()?;
        Ok(Name {
            value: node.req_text(tags::NAME_VALUE)?,
            name_type: node.req_enum(tags::NAME_TYPE)?,
        })
    }

    pub fn to_value(&self) -> Value {
        Value::Structure(vec![
            codec::text(tags::NAME_VALUE, &self.value),
            codec::enumeration(tags::NAME_TYPE, self.name_type),
        ])
    }
}

/// The Link attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub link_type: LinkType,
    pub linked_object_identifier: String,
}

impl Link {
    pub(crate) fn read(node: &Node<'_>) -> Result<Link, ModelError> {
        node.structure()?;
        Ok(Link {
            link_type: node.req_enum(tags::LINK_TYPE)?,
            linked_object_identifier: node.req_text(tags::LINKED_OBJECT_IDENTIFIER)?,
        })
    }

    pub fn to_value(&self) -> Value {
        Value::Structure(vec![
            codec::enumeration(tags::LINK_TYPE, self.link_type),
            codec::text(
                tags::LINKED_OBJECT_IDENTIFIER,
                &self.linked_object_identifier,
            ),
        ])
    }
}

/// The Digest attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub hashing_algorithm: HashingAlgorithm,
    pub digest_value: Bytes,
    pub key_format_type: Option<KeyFormatType>,
}

impl Digest {
    pub(crate) fn read(node: &Node<'_>) -> Result<Digest, ModelError> {
        node.structure()?;
        Ok(Digest {
            hashing_algorithm: node.req_enum(tags::HASHING_ALGORITHM)?,
            digest_value: node.opt_bytes(tags::DIGEST_VALUE)?.unwrap_or_default(),
            key_format_type: node.opt_enum(tags::KEY_FORMAT_TYPE)?,
        })
    }

    pub fn to_value(&self) -> Value {
        let mut items = vec![
            codec::enumeration(tags::HASHING_ALGORITHM, self.hashing_algorithm),
            codec::bytes(tags::DIGEST_VALUE, &self.digest_value),
        ];
        items.extend(
            self.key_format_type
                .map(|k| codec::enumeration(tags::KEY_FORMAT_TYPE, k)),
        );
        Value::Structure(items)
    }
}

/// The Revocation Reason attribute (also the reason of a Revoke request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationReason {
    pub code: RevocationReasonCode,
    pub message: Option<String>,
}

impl RevocationReason {
    pub(crate) fn read(node: &Node<'_>) -> Result<RevocationReason, ModelError> {
        node.structure()?;
        Ok(RevocationReason {
            code: node.req_enum(tags::REVOCATION_REASON_CODE)?,
            message: node.opt_text(tags::REVOCATION_MESSAGE)?,
        })
    }

    pub fn to_value(&self) -> Value {
        let mut items = vec![codec::enumeration(tags::REVOCATION_REASON_CODE, self.code)];
        items.extend(
            self.message
                .as_deref()
                .map(|m| codec::text(tags::REVOCATION_MESSAGE, m)),
        );
        Value::Structure(items)
    }
}
