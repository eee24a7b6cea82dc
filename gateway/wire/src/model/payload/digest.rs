//! The payloads of the keyless and verifying cryptographic operations: MAC Verify, Hash, RNG
//! Retrieve and RNG Seed (requests, their reading and writing, and the responses).

use bytes::Bytes;

use super::{opt_secret, push_bytes, push_uid, uid, CryptographicParameters, R};
use crate::model::codec::{self, Node};
use crate::model::object::SecretBytes;
use crate::spec::tags;
use crate::ttlv::Ttlv;

/// The Validity Indicator enumeration (MAC Verify, Signature Verify): 1 Valid, 2 Invalid,
/// 3 Unknown.
pub const VALIDITY_VALID: u32 = 1;
pub const VALIDITY_INVALID: u32 = 2;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacVerifyRequest {
    pub unique_identifier: Option<String>,
    pub cryptographic_parameters: Option<CryptographicParameters>,
    pub data: Option<SecretBytes>,
    pub mac_data: Option<Bytes>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashRequest {
    pub cryptographic_parameters: Option<CryptographicParameters>,
    pub data: Option<SecretBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RngRetrieveRequest {
    pub data_length: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RngSeedRequest {
    pub data: SecretBytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacVerifyResponse {
    pub unique_identifier: String,
    /// [`VALIDITY_VALID`] or [`VALIDITY_INVALID`].
    pub validity_indicator: u32,
}

/// Hash and RNG Retrieve answers: the digest or the random bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataResponse {
    pub data: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RngSeedResponse {
    /// How many bytes of the seed the generator took in.
    pub amount: i32,
}

fn crypto_parameters(node: &Node<'_>) -> R<Option<CryptographicParameters>> {
    node.opt(tags::CRYPTOGRAPHIC_PARAMETERS)
        .map(|n| CryptographicParameters::read(&n))
        .transpose()
}

pub(super) fn read_mac_verify(node: &Node<'_>) -> R<MacVerifyRequest> {
    Ok(MacVerifyRequest {
        unique_identifier: uid(node)?,
        cryptographic_parameters: crypto_parameters(node)?,
        data: opt_secret(node, tags::DATA)?,
        mac_data: node.opt_bytes(tags::MACDATA)?,
    })
}

pub(super) fn read_hash(node: &Node<'_>) -> R<HashRequest> {
    Ok(HashRequest {
        cryptographic_parameters: crypto_parameters(node)?,
        data: opt_secret(node, tags::DATA)?,
    })
}

pub(super) fn read_rng_retrieve(node: &Node<'_>) -> R<RngRetrieveRequest> {
    Ok(RngRetrieveRequest {
        data_length: node.req(tags::DATA_LENGTH)?.int()?,
    })
}

pub(super) fn read_rng_seed(node: &Node<'_>) -> R<RngSeedRequest> {
    Ok(RngSeedRequest {
        data: SecretBytes::from_slice(&node.req(tags::DATA)?.bytes()?),
    })
}

pub(super) fn write_mac_verify(items: &mut Vec<Ttlv>, r: &MacVerifyRequest) {
    push_uid(items, r.unique_identifier.as_deref());
    items.extend(r.cryptographic_parameters.as_ref().map(|p| p.to_ttlv()));
    push_bytes(items, tags::DATA, r.data.as_ref().map(|d| d.as_slice()));
    push_bytes(items, tags::MACDATA, r.mac_data.as_deref());
}

pub(super) fn write_hash(items: &mut Vec<Ttlv>, r: &HashRequest) {
    items.extend(r.cryptographic_parameters.as_ref().map(|p| p.to_ttlv()));
    push_bytes(items, tags::DATA, r.data.as_ref().map(|d| d.as_slice()));
}

pub(super) fn read_mac_verify_response(node: &Node<'_>) -> R<MacVerifyResponse> {
    Ok(MacVerifyResponse {
        unique_identifier: node.req_text(tags::UNIQUE_IDENTIFIER)?,
        validity_indicator: {
            let n = node.req(tags::VALIDITY_INDICATOR)?;
            n.ttlv.as_enum().ok_or_else(|| n.wrong("Enumeration"))?
        },
    })
}

pub(super) fn read_data_response(node: &Node<'_>) -> R<DataResponse> {
    Ok(DataResponse {
        data: node.req(tags::DATA)?.bytes()?,
    })
}

pub(super) fn read_rng_seed_response(node: &Node<'_>) -> R<RngSeedResponse> {
    Ok(RngSeedResponse {
        amount: node.req(tags::DATA_LENGTH)?.int()?,
    })
}

pub(super) fn write_mac_verify_response(items: &mut Vec<Ttlv>, r: &MacVerifyResponse) {
    push_uid(items, Some(&r.unique_identifier));
    items.push(Ttlv::new(
        tags::VALIDITY_INDICATOR,
        crate::ttlv::Value::Enumeration(r.validity_indicator),
    ));
}

pub(super) fn write_rng_seed_response(items: &mut Vec<Ttlv>, r: &RngSeedResponse) {
    items.push(codec::int(tags::DATA_LENGTH, r.amount));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::enums::{HashingAlgorithm, Operation};
    use crate::model::payload::{RequestPayload, ResponsePayload};
    use crate::model::version::ProtocolVersion;

    #[test]
    fn requests_and_responses_read_back_as_written() {
        let requests = [
            RequestPayload::MacVerify(MacVerifyRequest {
                unique_identifier: Some("k".into()),
                cryptographic_parameters: None,
                data: Some(SecretBytes::from_slice(b"data")),
                mac_data: Some(Bytes::from_static(b"mac")),
            }),
            RequestPayload::Hash(HashRequest {
                cryptographic_parameters: Some(CryptographicParameters {
                    hashing_algorithm: Some(HashingAlgorithm::Sha256),
                    ..CryptographicParameters::default()
                }),
                data: Some(SecretBytes::from_slice(b"data")),
            }),
            RequestPayload::RngRetrieve(RngRetrieveRequest { data_length: 32 }),
            RequestPayload::RngSeed(RngSeedRequest {
                data: SecretBytes::from_slice(b"seed"),
            }),
        ];
        for r in requests {
            let t = r.to_ttlv(ProtocolVersion::V2_1);
            let back = RequestPayload::read(r.operation(), &Node::new(&t, "")).unwrap();
            assert_eq!(back, r);
        }
        let responses = [
            (
                Operation::MacVerify,
                ResponsePayload::MacVerify(MacVerifyResponse {
                    unique_identifier: "k".into(),
                    validity_indicator: VALIDITY_INVALID,
                }),
            ),
            (
                Operation::Hash,
                ResponsePayload::Hash(DataResponse {
                    data: Bytes::from_static(b"digest"),
                }),
            ),
            (
                Operation::RngRetrieve,
                ResponsePayload::RngRetrieve(DataResponse {
                    data: Bytes::from_static(b"random"),
                }),
            ),
            (
                Operation::RngSeed,
                ResponsePayload::RngSeed(RngSeedResponse { amount: 4 }),
            ),
        ];
        for (op, r) in responses {
            let t = r.to_ttlv(ProtocolVersion::V1_4);
            assert_eq!(ResponsePayload::read(op, &Node::new(&t, "")).unwrap(), r);
        }
        // RNG Retrieve without its Data Length is malformed.
        let empty = codec::structure(tags::REQUEST_PAYLOAD, Vec::new());
        assert!(RequestPayload::read(Operation::RngRetrieve, &Node::new(&empty, "")).is_err());
    }
}
