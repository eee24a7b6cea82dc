//! The typed KMIP message model: TTLV tree ⇄ request/response messages with typed headers,
//! batch items, operation payloads, attributes and managed objects. I/O-free.
//!
//! Reading ([`RequestMessage::from_ttlv`]) separates two kinds of failure: an `Err` means the
//! message as a whole is unusable (not a Request Message, no header or protocol version, Batch
//! Count not matching the items) and the server answers one failure
//! ([`ResponseMessage::message_failure`]); a malformed payload of one batch item is kept in that
//! item ([`RequestBatchItem::payload`]) so only it fails, with Invalid Field / Invalid Message,
//! while the others proceed. Operations without a typed payload are
//! [`RequestPayload::Unknown`], their payload kept as received.
//!
//! Attributes are one [`Attribute`] type for both encodings: 1.x `Attribute` structures named
//! by text (in Template-Attributes) and 2.x tagged items in `Attributes`, custom `x-`/`y-`
//! attributes mapped to 2.x Vendor Attributes. Payloads are read whatever shape they use and
//! written in the shape of the negotiated version; [`ResponseMessage::to_ttlv`] also drops
//! every tag that version does not define ([`tag_defined`]).
//!
//! Key material lives in [`SecretBytes`] (zeroized, redacted in Debug); the Authentication
//! credential is redacted in Debug too.

mod attribute;
mod codec;
mod enums;
mod error;
mod message;
mod object;
mod payload;
mod version;

#[cfg(test)]
mod tests;

pub use attribute::{
    usage_mask, Attribute, AttributeGroup, AttributeList, AttributeName, Digest, Link, Name,
    RevocationReason,
};
pub use enums::{
    BatchErrorContinuationOption, BlockCipherMode, CertificateRequestType, CertificateType,
    CryptographicAlgorithm, DigitalSignatureAlgorithm, EndpointRole, HashingAlgorithm,
    InteropFunction, KeyCompressionType, KeyFormatType, KeyWrapType, KmipEnum, LinkType, NameType,
    ObjectGroupMember, ObjectType, Operation, PaddingMethod, QueryFunction, ResultReason,
    ResultStatus, RevocationReasonCode, SecretDataType, SplitKeyMethod, State, ValidityIndicator,
};
pub use error::ModelError;
pub use message::{
    Authentication, RequestBatchItem, RequestHeader, RequestMessage, ResponseBatchItem,
    ResponseHeader, ResponseMessage, MAX_BATCH_ITEMS,
};
pub use object::{
    template_attributes, template_ttlv, KeyBlock, KeyValue, ManagedObject, SecretBytes, SecretTtlv,
    SplitKey,
};
pub use payload::{
    AdjustAttributeRequest, AsyncRequest, CancelResponse, ExportResponse,
    GetUsageAllocationRequest, ImportRequest, ObtainLeaseResponse,
};
pub use payload::{
    AttributeRequest, AttributeResponse, CertifyRequest, CheckRequest, CheckResponse,
    CreateKeyPairRequest, CreateKeyPairResponse, CreateRequest, CreateResponse, CryptoRequest,
    CryptographicParameters, DecryptResponse, DeleteAttributeRequest, DiscoverVersionsRequest,
    DiscoverVersionsResponse, EncryptResponse, EndpointRoleResponse, GetAttributeListResponse,
    GetAttributesRequest, GetAttributesResponse, GetRequest, GetResponse, InteropRequest,
    LocateRequest, LocateResponse, LogRequest, MacRequest, MacResponse, ModifyAttributeRequest,
    QueryRequest, QueryResponse, ReKeyKeyPairRequest, ReKeyRequest, RegisterRequest,
    RequestPayload, ResponsePayload, RevokeRequest, SetEndpointRoleRequest, SignRequest,
    SignResponse, SignatureVerifyResponse, UidRequest, UidResponse,
};
pub use payload::{CreateSplitKeyRequest, CreateSplitKeyResponse, JoinSplitKeyRequest};
pub use payload::{
    DataResponse, HashRequest, MacVerifyRequest, MacVerifyResponse, RngRetrieveRequest,
    RngSeedRequest, RngSeedResponse, VALIDITY_INVALID, VALIDITY_VALID,
};
pub use payload::{Pkcs11Request, Pkcs11Response};
pub use version::{
    enum_value_defined, operation_defined, prune_undefined, tag_defined, ProtocolVersion,
};
