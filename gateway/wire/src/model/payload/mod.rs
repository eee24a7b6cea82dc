//! Typed request and response payloads of the operations the gateway serves. Every other
//! operation is [`RequestPayload::Unknown`], its payload kept as received.
//!
//! Reading accepts both the 1.x and the 2.x shape of a payload, whatever the header says
//! (clients mix them); writing uses the shape of the version passed in.
//!
//! `request` holds the request payloads and their writing, `read_request` their reading,
//! `response` the response payloads.

mod digest;
mod read_request;
mod request;
mod response;
mod split;
mod write_request;

use super::codec::{self, Node};
use super::enums::{BlockCipherMode, CryptographicAlgorithm, HashingAlgorithm, PaddingMethod};
use super::error::ModelError;
use super::object::SecretBytes;
use crate::spec::tags;
use crate::ttlv::{Tag, Ttlv};

type R<T> = Result<T, ModelError>;

pub use digest::{
    DataResponse, HashRequest, MacVerifyRequest, MacVerifyResponse, RngRetrieveRequest,
    RngSeedRequest, RngSeedResponse, VALIDITY_INVALID, VALIDITY_VALID,
};
pub use request::Pkcs11Request;
pub use request::{AdjustAttributeRequest, AsyncRequest, GetUsageAllocationRequest, ImportRequest};
pub use request::{
    AttributeRequest, CertifyRequest, CheckRequest, CreateKeyPairRequest, CreateRequest,
    CryptoRequest, DeleteAttributeRequest, DiscoverVersionsRequest, GetAttributesRequest,
    GetRequest, InteropRequest, LocateRequest, LogRequest, MacRequest, ModifyAttributeRequest,
    QueryRequest, ReKeyKeyPairRequest, ReKeyRequest, RegisterRequest, RequestPayload,
    RevokeRequest, SetEndpointRoleRequest, SignRequest, UidRequest,
};
pub use response::{
    AttributeResponse, CheckResponse, CreateKeyPairResponse, CreateResponse, DecryptResponse,
    DiscoverVersionsResponse, EncryptResponse, ExportResponse, GetAttributeListResponse,
    GetAttributesResponse, GetResponse, LocateResponse, MacResponse, QueryResponse,
    ResponsePayload, SignResponse, SignatureVerifyResponse, UidResponse,
};
pub use response::{CancelResponse, ObtainLeaseResponse};
pub use response::{EndpointRoleResponse, Pkcs11Response};
pub use split::{CreateSplitKeyRequest, CreateSplitKeyResponse, JoinSplitKeyRequest};

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
