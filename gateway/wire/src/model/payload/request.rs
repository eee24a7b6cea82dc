//! The request payloads: one type per operation served (written by `write_request.rs`, read by
//! `read_request.rs`).

use bytes::Bytes;

use super::digest::{HashRequest, MacVerifyRequest, RngRetrieveRequest, RngSeedRequest};
use super::split::{CreateSplitKeyRequest, JoinSplitKeyRequest};
use super::CryptographicParameters;
use crate::model::attribute::{Attribute, AttributeName, Name, RevocationReason};
use crate::model::enums::{
    CertificateRequestType, EndpointRole, InteropFunction, KeyCompressionType, KeyFormatType,
    KeyWrapType, ObjectGroupMember, ObjectType, Operation, QueryFunction,
};
use crate::model::object::{ManagedObject, SecretBytes};
use crate::model::version::ProtocolVersion;
use crate::ttlv::{Ttlv, Value};

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
    /// The Templates (KMIP 1.x) whose attributes apply under [`Self::attributes`].
    pub templates: Vec<Name>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKeyPairRequest {
    pub common_attributes: Vec<Attribute>,
    pub private_key_attributes: Vec<Attribute>,
    pub public_key_attributes: Vec<Attribute>,
    /// The Templates (KMIP 1.x) each Template-Attribute names, in the same order as the groups.
    pub common_templates: Vec<Name>,
    pub private_key_templates: Vec<Name>,
    pub public_key_templates: Vec<Name>,
}

/// ReKey Key Pair: the private key to replace (its public key is found by its Link), and the
/// attributes that change on the new pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReKeyKeyPairRequest {
    /// The Private Key Unique Identifier.
    pub unique_identifier: Option<String>,
    pub offset: Option<u32>,
    pub common_attributes: Vec<Attribute>,
    pub private_key_attributes: Vec<Attribute>,
    pub public_key_attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest {
    pub object_type: ObjectType,
    pub attributes: Vec<Attribute>,
    /// The Templates (KMIP 1.x) whose attributes apply under [`Self::attributes`].
    pub templates: Vec<Name>,
    pub object: ManagedObject,
}

/// Import (KMIP 1.4 / 2.x): an object under the Unique Identifier it had elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    pub unique_identifier: String,
    pub object_type: ObjectType,
    pub replace_existing: Option<bool>,
    pub key_wrap_type: Option<KeyWrapType>,
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

/// Certify (of a Public Key or a certificate request) and Re-certify (of a certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertifyRequest {
    /// Certify: the Public Key; Re-certify: the existing certificate.
    pub unique_identifier: Option<String>,
    pub certificate_request_type: Option<CertificateRequestType>,
    /// 1.x Certificate Request, 2.x Certificate Request Value.
    pub certificate_request: Option<Bytes>,
    /// 2.x: a stored Certificate Request object to certify instead of one in the request.
    pub certificate_request_unique_identifier: Option<String>,
    /// Re-certify only: Initial Date to Activation Date of the new certificate.
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

/// Adjust Attribute (2.x): change a numeric attribute by a value, or negate a Boolean one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustAttributeRequest {
    pub unique_identifier: Option<String>,
    pub name: AttributeName,
    /// Adjustment Type: 1 Increment, 2 Decrement, 3 Negate.
    pub adjustment_type: u32,
    pub adjustment_value: Option<Value>,
}

/// PKCS#11 (2.x): one PKCS#11 function call carried in KMIP (2.1 §6.1.37).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Request {
    pub interface: Option<String>,
    /// An Enumeration (a PKCS#11 defined function) or an Integer (a vendor function).
    pub function: Value,
    pub correlation_value: Option<Bytes>,
    pub input_parameters: Option<Bytes>,
}

/// Poll and Cancel: the asynchronous operation they name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncRequest {
    pub asynchronous_correlation_value: Bytes,
}

/// Get Usage Allocation: the units of the object's Usage Limits the client will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetUsageAllocationRequest {
    pub unique_identifier: Option<String>,
    pub usage_limits_count: i64,
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

/// Sign and Signature Verify requests (single-part: no streaming).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignRequest {
    pub unique_identifier: Option<String>,
    pub cryptographic_parameters: Option<CryptographicParameters>,
    /// The data signed (or whose signature is checked). Secret: it may be a key or a password.
    pub data: Option<SecretBytes>,
    /// The hash of the data, when the client hashed it.
    pub digested_data: Option<Bytes>,
    /// Signature Verify only.
    pub signature_data: Option<Bytes>,
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

/// 2.x Set Endpoint Role request: the role the client asks the server to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetEndpointRoleRequest {
    pub role: EndpointRole,
}

/// The payload of a request batch item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestPayload {
    DiscoverVersions(DiscoverVersionsRequest),
    Query(QueryRequest),
    Create(CreateRequest),
    CreateKeyPair(CreateKeyPairRequest),
    Register(RegisterRequest),
    Import(ImportRequest),
    Locate(LocateRequest),
    Get(GetRequest),
    /// Export (KMIP 1.4 / 2.x): the fields of Get; the answer adds the attributes.
    Export(GetRequest),
    GetAttributes(GetAttributesRequest),
    GetAttributeList(UidRequest),
    AddAttribute(AttributeRequest),
    ModifyAttribute(ModifyAttributeRequest),
    DeleteAttribute(DeleteAttributeRequest),
    SetAttribute(AttributeRequest),
    Activate(UidRequest),
    Revoke(RevokeRequest),
    Destroy(UidRequest),
    Archive(UidRequest),
    Recover(UidRequest),
    ObtainLease(UidRequest),
    GetUsageAllocation(GetUsageAllocationRequest),
    Poll(AsyncRequest),
    Cancel(AsyncRequest),
    AdjustAttribute(AdjustAttributeRequest),
    Pkcs11(Pkcs11Request),
    ReKey(ReKeyRequest),
    Certify(CertifyRequest),
    ReCertify(CertifyRequest),
    ReKeyKeyPair(ReKeyKeyPairRequest),
    Check(CheckRequest),
    Encrypt(CryptoRequest),
    Decrypt(CryptoRequest),
    Mac(MacRequest),
    MacVerify(MacVerifyRequest),
    Hash(HashRequest),
    RngRetrieve(RngRetrieveRequest),
    RngSeed(RngSeedRequest),
    CreateSplitKey(CreateSplitKeyRequest),
    JoinSplitKey(JoinSplitKeyRequest),
    Sign(SignRequest),
    SignatureVerify(SignRequest),
    Interop(InteropRequest),
    Log(LogRequest),
    SetEndpointRole(SetEndpointRoleRequest),
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
            RequestPayload::Import(_) => Operation::Import,
            RequestPayload::Locate(_) => Operation::Locate,
            RequestPayload::Get(_) => Operation::Get,
            RequestPayload::Export(_) => Operation::Export,
            RequestPayload::GetAttributes(_) => Operation::GetAttributes,
            RequestPayload::GetAttributeList(_) => Operation::GetAttributeList,
            RequestPayload::AddAttribute(_) => Operation::AddAttribute,
            RequestPayload::ModifyAttribute(_) => Operation::ModifyAttribute,
            RequestPayload::DeleteAttribute(_) => Operation::DeleteAttribute,
            RequestPayload::SetAttribute(_) => Operation::SetAttribute,
            RequestPayload::Activate(_) => Operation::Activate,
            RequestPayload::Revoke(_) => Operation::Revoke,
            RequestPayload::Destroy(_) => Operation::Destroy,
            RequestPayload::Archive(_) => Operation::Archive,
            RequestPayload::Recover(_) => Operation::Recover,
            RequestPayload::ObtainLease(_) => Operation::ObtainLease,
            RequestPayload::GetUsageAllocation(_) => Operation::GetUsageAllocation,
            RequestPayload::Poll(_) => Operation::Poll,
            RequestPayload::Cancel(_) => Operation::Cancel,
            RequestPayload::AdjustAttribute(_) => Operation::AdjustAttribute,
            RequestPayload::Pkcs11(_) => Operation::Pkcs11,
            RequestPayload::ReKey(_) => Operation::ReKey,
            RequestPayload::Certify(_) => Operation::Certify,
            RequestPayload::ReCertify(_) => Operation::ReCertify,
            RequestPayload::ReKeyKeyPair(_) => Operation::ReKeyKeyPair,
            RequestPayload::Check(_) => Operation::Check,
            RequestPayload::Encrypt(_) => Operation::Encrypt,
            RequestPayload::Decrypt(_) => Operation::Decrypt,
            RequestPayload::Mac(_) => Operation::Mac,
            RequestPayload::MacVerify(_) => Operation::MacVerify,
            RequestPayload::Hash(_) => Operation::Hash,
            RequestPayload::RngRetrieve(_) => Operation::RngRetrieve,
            RequestPayload::RngSeed(_) => Operation::RngSeed,
            RequestPayload::CreateSplitKey(_) => Operation::CreateSplitKey,
            RequestPayload::JoinSplitKey(_) => Operation::JoinSplitKey,
            RequestPayload::Sign(_) => Operation::Sign,
            RequestPayload::SignatureVerify(_) => Operation::SignatureVerify,
            RequestPayload::Interop(_) => Operation::Interop,
            RequestPayload::Log(_) => Operation::Log,
            RequestPayload::SetEndpointRole(_) => Operation::SetEndpointRole,
            RequestPayload::Unknown { op_code, .. } => *op_code,
        }
    }
}
