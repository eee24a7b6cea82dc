//! The one table of operations. Each row is a KMIP operation this server decodes: the code that
//! runs it, the name the policy decides it under, the object it acts on, and whether Query lists
//! it. Running, authorizing, the audit trail's identifiers and the Query answer all read this
//! table, so an operation is added in one row (a test refuses a decodable operation without one).

use super::asynchronous::cancel;
use super::digest;
use super::interop;
use super::pkcs11;
use super::query::{discover_versions, query};
use super::{OpContext, OpError, Ops};
use kmip_policy::Operation as PolicyOperation;
use kmip_wire::model::*;
use std::future::Future;
use std::pin::Pin;

/// An operation under way; it borrows the operation layer and the item's context.
pub(crate) type Running<'a> =
    Pin<Box<dyn Future<Output = Result<ResponsePayload, OpError>> + Send + 'a>>;

/// Runs an authorized request of its row's operation.
pub(crate) type Handler =
    for<'a, 'c> fn(&'a Ops, &'a mut OpContext<'c>, RequestPayload) -> Running<'a>;

/// What an operation acts on.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    /// No existing object: it creates one or needs none.
    None,
    /// One existing object: the one its Unique Identifier names or, when it names none, the
    /// batch's ID Placeholder. The function reads the identifier field of the request.
    Object(fn(&RequestPayload) -> Option<&Option<String>>),
}

impl Target {
    /// The identifier field of `payload`, for an operation on one existing object.
    pub(crate) fn uid_in(self, payload: &RequestPayload) -> Option<&Option<String>> {
        match self {
            Target::None => None,
            Target::Object(read) => read(payload),
        }
    }
}

/// One row of [`OPERATIONS`].
pub(crate) struct OpEntry {
    pub(crate) operation: Operation,
    pub(crate) run: Handler,
    /// The name the policy decides it under.
    pub(crate) policy: PolicyOperation,
    pub(crate) target: Target,
    /// Listed in the Query Operations answer.
    pub(crate) listed: bool,
    /// The identifiers its answer names, for the audit trail; `None` for another row's answer.
    pub(crate) answer_uids: fn(&ResponsePayload) -> Option<Vec<String>>,
}

/// The identifiers an answer names.
trait NamesObjects {
    fn uids(&self) -> Vec<String>;
}

macro_rules! names_one_object {
    ($($response:ty),* $(,)?) => {
        $(impl NamesObjects for $response {
            fn uids(&self) -> Vec<String> {
                vec![self.unique_identifier.clone()]
            }
        })*
    };
}

names_one_object!(
    CreateResponse,
    UidResponse,
    GetResponse,
    ExportResponse,
    GetAttributesResponse,
    GetAttributeListResponse,
    AttributeResponse,
    ObtainLeaseResponse,
    EncryptResponse,
    DecryptResponse,
    MacResponse,
    MacVerifyResponse,
    SignResponse,
    SignatureVerifyResponse,
);

impl NamesObjects for CreateKeyPairResponse {
    fn uids(&self) -> Vec<String> {
        vec![
            self.private_key_unique_identifier.clone(),
            self.public_key_unique_identifier.clone(),
        ]
    }
}

impl NamesObjects for LocateResponse {
    fn uids(&self) -> Vec<String> {
        self.unique_identifiers.clone()
    }
}

impl NamesObjects for CheckResponse {
    fn uids(&self) -> Vec<String> {
        self.unique_identifier.iter().cloned().collect()
    }
}

impl NamesObjects for CreateSplitKeyResponse {
    fn uids(&self) -> Vec<String> {
        self.unique_identifiers.clone()
    }
}

impl NamesObjects for DiscoverVersionsResponse {
    fn uids(&self) -> Vec<String> {
        Vec::new()
    }
}

impl NamesObjects for DataResponse {
    fn uids(&self) -> Vec<String> {
        Vec::new()
    }
}

impl NamesObjects for RngSeedResponse {
    fn uids(&self) -> Vec<String> {
        Vec::new()
    }
}

impl NamesObjects for CancelResponse {
    fn uids(&self) -> Vec<String> {
        Vec::new()
    }
}

impl NamesObjects for Pkcs11Response {
    fn uids(&self) -> Vec<String> {
        Vec::new()
    }
}

impl NamesObjects for EndpointRoleResponse {
    fn uids(&self) -> Vec<String> {
        Vec::new()
    }
}

impl NamesObjects for QueryResponse {
    fn uids(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The [`Target`] column: `none`, or `object` (read from the request's `unique_identifier`).
macro_rules! target {
    ($op:ident, none) => {
        Target::None
    };
    ($op:ident, object) => {
        Target::Object(|payload| match payload {
            RequestPayload::$op(r) => Some(&r.unique_identifier),
            _ => None,
        })
    };
}

/// A row whose request and answer are the payload variants named like the operation. The
/// handler is an expression of the request `$r`, with the layer `$ops` and the context `$ctx`.
macro_rules! row {
    ($op:ident, $policy:ident, $target:ident, listed: $listed:expr,
     |$ops:pat, $ctx:pat, $r:ident| $run:expr) => {
        OpEntry {
            operation: Operation::$op,
            run: |$ops, $ctx, payload| {
                Box::pin(async move {
                    match payload {
                        RequestPayload::$op($r) => Ok(ResponsePayload::$op($run)),
                        _ => Err(OpError::OperationNotSupported),
                    }
                })
            },
            policy: PolicyOperation::$policy,
            target: target!($op, $target),
            listed: $listed,
            answer_uids: |answer| match answer {
                ResponsePayload::$op(r) => Some(NamesObjects::uids(r)),
                _ => None,
            },
        }
    };
}

/// A row whose answer has no fields (Interop, Log): the handler `$run`, of the request `$r`
/// and the context `$ctx`, runs for its effect; no object is named.
macro_rules! empty_answer {
    ($op:ident, |$ctx:ident, $r:ident| $run:expr) => {
        OpEntry {
            operation: Operation::$op,
            run: |_, $ctx, payload| {
                Box::pin(async move {
                    match payload {
                        RequestPayload::$op($r) => {
                            $run;
                            Ok(ResponsePayload::Empty)
                        }
                        _ => Err(OpError::OperationNotSupported),
                    }
                })
            },
            policy: PolicyOperation::$op,
            target: Target::None,
            listed: true,
            answer_uids: |_| None,
        }
    };
}

/// Every operation this server decodes, in the order Query Operations lists them.
pub(crate) const OPERATIONS: &[OpEntry] = &[
    row!(DiscoverVersions, DiscoverVersions, none, listed: true,
        |_, _, r| discover_versions(&r)),
    row!(Query, Query, none, listed: true,
    |ops, ctx, r| query(
        &r,
        &supported_operations(),
        ctx.version,
        ops.store.backend().streams()
    )),
    row!(Create, Create, none, listed: true, |ops, ctx, r| ops.create(ctx, r).await?),
    row!(Register, Register, none, listed: true, |ops, ctx, r| ops.register(ctx, r).await?),
    row!(Import, Import, none, listed: true, |ops, ctx, r| ops.import(ctx, r).await?),
    row!(Locate, Locate, none, listed: true, |ops, ctx, r| ops.locate(ctx, &r).await?),
    row!(Get, Get, object, listed: true, |ops, ctx, r| ops.get(ctx, r).await?),
    row!(Export, Export, object, listed: true, |ops, ctx, r| ops.export(ctx, r).await?),
    row!(GetAttributes, GetAttributes, object, listed: true,
        |ops, ctx, r| ops.get_attributes(ctx, r).await?),
    row!(GetAttributeList, GetAttributeList, object, listed: true,
        |ops, ctx, r| ops.get_attribute_list(ctx, r)?),
    row!(AddAttribute, AddAttribute, object, listed: true,
        |ops, ctx, r| ops.add_attribute(ctx, r).await?),
    row!(ModifyAttribute, ModifyAttribute, object, listed: true,
        |ops, ctx, r| ops.modify_attribute(ctx, r).await?),
    row!(DeleteAttribute, DeleteAttribute, object, listed: true,
        |ops, ctx, r| ops.delete_attribute(ctx, r).await?),
    row!(SetAttribute, SetAttribute, object, listed: true,
        |ops, ctx, r| ops.set_attribute(ctx, r).await?),
    row!(AdjustAttribute, AdjustAttribute, object, listed: true,
        |ops, ctx, r| ops.adjust_attribute(ctx, r).await?),
    row!(Activate, Activate, object, listed: true, |ops, ctx, r| ops.activate(ctx, r).await?),
    row!(Revoke, Revoke, object, listed: true, |ops, ctx, r| ops.revoke(ctx, r).await?),
    row!(Destroy, Destroy, object, listed: true, |ops, ctx, r| ops.destroy(ctx, r).await?),
    row!(Archive, Archive, object, listed: true, |ops, ctx, r| ops.keep_online(ctx, r)?),
    row!(Recover, Recover, object, listed: true, |ops, ctx, r| ops.keep_online(ctx, r)?),
    row!(ObtainLease, ObtainLease, object, listed: true, |ops, ctx, r| ops.obtain_lease(ctx, r)?),
    row!(GetUsageAllocation, GetUsageAllocation, object, listed: true,
        |ops, ctx, r| ops.get_usage_allocation(ctx, r).await?),
    row!(ReKey, ReKey, object, listed: true, |ops, ctx, r| ops.rekey(ctx, r).await?),
    row!(Check, Check, object, listed: true, |ops, ctx, r| ops.check(ctx, r)?),
    row!(Certify, Certify, none, listed: true, |ops, ctx, r| ops.certify(ctx, r).await?),
    row!(ReCertify, ReCertify, object, listed: true,
        |ops, ctx, r| ops.recertify(ctx, r).await?),
    row!(Encrypt, Encrypt, object, listed: true, |ops, ctx, r| ops.encrypt(ctx, r).await?),
    row!(Decrypt, Decrypt, object, listed: true, |ops, ctx, r| ops.decrypt(ctx, r).await?),
    row!(Mac, Mac, object, listed: true, |ops, ctx, r| ops.mac(ctx, r).await?),
    row!(MacVerify, MacVerify, object, listed: true,
        |ops, ctx, r| ops.mac_verify(ctx, r).await?),
    row!(Hash, Hash, none, listed: true, |_, _, r| digest::hash(&r)?),
    row!(RngRetrieve, RngRetrieve, none, listed: true, |ops, _, r| ops.rng_retrieve(r).await?),
    row!(RngSeed, RngSeed, none, listed: true, |ops, _, r| ops.rng_seed(r).await?),
    row!(CreateKeyPair, CreateKeyPair, none, listed: true,
        |ops, ctx, r| ops.create_key_pair(ctx, r).await?),
    row!(ReKeyKeyPair, ReKeyKeyPair, object, listed: true,
        |ops, ctx, r| ops.rekey_key_pair(ctx, r).await?),
    row!(Sign, Sign, object, listed: true, |ops, ctx, r| ops.sign(ctx, r).await?),
    row!(SignatureVerify, SignatureVerify, object, listed: true,
        |ops, ctx, r| ops.signature_verify(ctx, r).await?),
    // The key split and the parts joined are each authorized as a Get inside the handler.
    row!(CreateSplitKey, CreateSplitKey, none, listed: true,
        |ops, ctx, r| ops.create_split_key(ctx, r).await?),
    row!(JoinSplitKey, JoinSplitKey, none, listed: true,
        |ops, ctx, r| ops.join_split_key(ctx, r).await?),
    // Poll never succeeds here (nothing is outstanding), so its row has no answer type.
    OpEntry {
        operation: Operation::Poll,
        run: |_, _, payload| {
            Box::pin(async move {
                match payload {
                    RequestPayload::Poll(_) => Err(OpError::NoAsynchronousOperation),
                    _ => Err(OpError::OperationNotSupported),
                }
            })
        },
        policy: PolicyOperation::Poll,
        target: Target::None,
        listed: true,
        answer_uids: |_| None,
    },
    row!(Cancel, Cancel, none, listed: true, |_, _, r| cancel(r)),
    row!(Pkcs11, Pkcs11, none, listed: true, |_, _, r| pkcs11::pkcs11(r)?),
    row!(SetEndpointRole, SetEndpointRole, none, listed: true,
        |_, _, r| interop::set_endpoint_role(&r)?),
    empty_answer!(Interop, |ctx, r| interop::interop(ctx.user, &r)),
    empty_answer!(Log, |ctx, r| interop::log(ctx.user, &r)),
];

/// The row of `operation`; `None` for an operation this server does not know.
pub(crate) fn entry(operation: Operation) -> Option<&'static OpEntry> {
    OPERATIONS.iter().find(|e| e.operation == operation)
}

/// Operations this server implements (the Query Operations answer).
pub(crate) fn supported_operations() -> Vec<Operation> {
    OPERATIONS
        .iter()
        .filter(|e| e.listed)
        .map(|e| e.operation)
        .collect()
}

/// The Unique Identifier a request names, for operations on one existing object.
pub fn target_uid(payload: &RequestPayload) -> Option<&Option<String>> {
    entry(payload.operation())?.target.uid_in(payload)
}

/// The identifiers a response names, for the audit trail and undo journal.
pub fn response_uids(p: &ResponsePayload) -> Vec<String> {
    OPERATIONS
        .iter()
        .find_map(|e| (e.answer_uids)(p))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_policy::OperationKind;
    use kmip_wire::spec::tags;
    use kmip_wire::ttlv::Ttlv;

    /// Whether the message model has a typed payload for `op`: a request of `op` with an empty
    /// payload decodes to something other than `Unknown` (a typed payload, or the error of one
    /// whose required fields are missing).
    fn model_decodes(op: Operation, version: ProtocolVersion) -> bool {
        let message = RequestMessage {
            header: RequestHeader::new(version),
            items: vec![RequestBatchItem::new(RequestPayload::Unknown {
                op_code: op,
                raw: Ttlv::structure(tags::REQUEST_PAYLOAD, Vec::new()),
            })],
        };
        let decoded = RequestMessage::from_ttlv(&message.to_ttlv()).unwrap();
        !matches!(decoded.items[0].payload, Ok(RequestPayload::Unknown { .. }))
    }

    #[test]
    fn every_operation_the_model_decodes_has_exactly_one_row() {
        let codes = (0..=0x1ffu32).chain([0x8000_0000, 0x8000_0001, u32::MAX]);
        for code in codes {
            let op = Operation::from_u32(code);
            for version in [ProtocolVersion::V1_4, ProtocolVersion::V2_1] {
                assert_eq!(
                    model_decodes(op, version),
                    entry(op).is_some(),
                    "{op:?} at {version:?}: the model decodes it iff the table has a row"
                );
            }
            let rows = OPERATIONS.iter().filter(|e| e.operation == op).count();
            assert!(rows <= 1, "{op:?} has {rows} rows");
        }
    }

    #[test]
    fn the_target_column_agrees_with_the_policy() {
        for e in OPERATIONS {
            assert_eq!(
                e.policy.kind() == OperationKind::Object,
                matches!(e.target, Target::Object(_)),
                "{:?}: the policy decides it against an object iff it names one",
                e.operation
            );
        }
    }

    #[test]
    fn query_lists_the_implemented_operations_in_their_order() {
        assert_eq!(
            supported_operations(),
            vec![
                Operation::DiscoverVersions,
                Operation::Query,
                Operation::Create,
                Operation::Register,
                Operation::Import,
                Operation::Locate,
                Operation::Get,
                Operation::Export,
                Operation::GetAttributes,
                Operation::GetAttributeList,
                Operation::AddAttribute,
                Operation::ModifyAttribute,
                Operation::DeleteAttribute,
                Operation::SetAttribute,
                Operation::AdjustAttribute,
                Operation::Activate,
                Operation::Revoke,
                Operation::Destroy,
                Operation::Archive,
                Operation::Recover,
                Operation::ObtainLease,
                Operation::GetUsageAllocation,
                Operation::ReKey,
                Operation::Check,
                Operation::Certify,
                Operation::ReCertify,
                Operation::Encrypt,
                Operation::Decrypt,
                Operation::Mac,
                Operation::MacVerify,
                Operation::Hash,
                Operation::RngRetrieve,
                Operation::RngSeed,
                Operation::CreateKeyPair,
                Operation::ReKeyKeyPair,
                Operation::Sign,
                Operation::SignatureVerify,
                Operation::CreateSplitKey,
                Operation::JoinSplitKey,
                Operation::Poll,
                Operation::Cancel,
                Operation::Pkcs11,
                Operation::SetEndpointRole,
                Operation::Interop,
                Operation::Log,
            ]
        );
    }

    #[test]
    fn identifiers_are_read_from_the_row_of_the_payload() {
        let uid = |u: &str| Some(u.to_owned());
        let get = RequestPayload::Get(GetRequest {
            unique_identifier: uid("k1"),
            ..GetRequest::default()
        });
        assert_eq!(target_uid(&get), Some(&uid("k1")));
        let query = RequestPayload::Query(QueryRequest {
            functions: Vec::new(),
        });
        assert_eq!(target_uid(&query), None);
        let unknown = RequestPayload::Unknown {
            op_code: Operation::Get,
            raw: Ttlv::structure(tags::REQUEST_PAYLOAD, Vec::new()),
        };
        assert_eq!(target_uid(&unknown), None);
        let located = ResponsePayload::Locate(LocateResponse {
            located_items: Some(2),
            unique_identifiers: vec!["a".into(), "b".into()],
        });
        assert_eq!(response_uids(&located), vec!["a", "b"]);
        let revoked = ResponsePayload::Revoke(UidResponse {
            unique_identifier: "r".into(),
        });
        assert_eq!(response_uids(&revoked), vec!["r"]);
        assert!(response_uids(&ResponsePayload::Empty).is_empty());
    }
}
