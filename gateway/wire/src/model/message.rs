//! Request and response messages: headers, batch items, and their TTLV form.

use bytes::Bytes;

use super::codec::{self, Node};
use super::enums::{BatchErrorContinuationOption, Operation, ResultReason, ResultStatus};
use super::error::ModelError;
use super::payload::{RequestPayload, ResponsePayload};
use super::version::{prune_undefined, ProtocolVersion};
use crate::spec::tags;
use crate::ttlv::{Ttlv, Value};

/// Most batch items accepted in one request. Protects the server from a message that fans out
/// into unbounded work; real clients send fewer than ten.
pub const MAX_BATCH_ITEMS: usize = 1024;

/// Asynchronous Indicator values of KMIP 2.x (1.x sends a Boolean).
const ASYNC_MANDATORY: u32 = 1;
const ASYNC_OPTIONAL: u32 = 2;
const ASYNC_PROHIBITED: u32 = 3;

/// The Authentication of a request header: its Credential structures, kept as received (the
/// server authenticates by TLS certificate). Debug never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Authentication {
    pub credentials: Vec<Ttlv>,
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Authentication {{ credentials: <{} redacted> }}",
            self.credentials.len()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub protocol_version: ProtocolVersion,
    pub maximum_response_size: Option<i32>,
    pub client_correlation_value: Option<String>,
    pub server_correlation_value: Option<String>,
    /// Whether the client accepts asynchronous responses (1.x Boolean; 2.x Mandatory/Optional).
    pub asynchronous_indicator: Option<bool>,
    pub attestation_capable_indicator: Option<bool>,
    pub authentication: Option<Authentication>,
    pub batch_error_continuation_option: Option<BatchErrorContinuationOption>,
    pub batch_order_option: Option<bool>,
    pub time_stamp: Option<i64>,
}

impl RequestHeader {
    pub fn new(protocol_version: ProtocolVersion) -> RequestHeader {
        RequestHeader {
            protocol_version,
            maximum_response_size: None,
            client_correlation_value: None,
            server_correlation_value: None,
            asynchronous_indicator: None,
            attestation_capable_indicator: None,
            authentication: None,
            batch_error_continuation_option: None,
            batch_order_option: None,
            time_stamp: None,
        }
    }

    fn read(node: &Node<'_>) -> Result<RequestHeader, ModelError> {
        node.structure()?;
        let asynchronous_indicator = match node.opt(tags::ASYNCHRONOUS_INDICATOR) {
            None => None,
            Some(n) => Some(match n.ttlv.value {
                Value::Boolean(b) => b,
                Value::Enumeration(e) => e == ASYNC_MANDATORY || e == ASYNC_OPTIONAL,
                _ => return Err(n.wrong("Boolean or Enumeration")),
            }),
        };
        let authentication = match node.opt(tags::AUTHENTICATION) {
            None => None,
            Some(n) => {
                n.structure()?;
                Some(Authentication {
                    credentials: n.ttlv.children(tags::CREDENTIAL).cloned().collect(),
                })
            }
        };
        Ok(RequestHeader {
            protocol_version: ProtocolVersion::read(&node.req(tags::PROTOCOL_VERSION)?)?,
            maximum_response_size: node.opt_int(tags::MAXIMUM_RESPONSE_SIZE)?,
            client_correlation_value: node.opt_text(tags::CLIENT_CORRELATION_VALUE)?,
            server_correlation_value: node.opt_text(tags::SERVER_CORRELATION_VALUE)?,
            asynchronous_indicator,
            attestation_capable_indicator: node.opt_bool(tags::ATTESTATION_CAPABLE_INDICATOR)?,
            authentication,
            batch_error_continuation_option: node
                .opt_enum(tags::BATCH_ERROR_CONTINUATION_OPTION)?,
            batch_order_option: node.opt_bool(tags::BATCH_ORDER_OPTION)?,
            time_stamp: node.opt_datetime(tags::TIME_STAMP)?,
        })
    }

    fn to_ttlv(&self, batch_count: usize) -> Ttlv {
        let version = self.protocol_version;
        let mut items = vec![version.to_ttlv()];
        items.extend(
            self.maximum_response_size
                .map(|s| codec::int(tags::MAXIMUM_RESPONSE_SIZE, s)),
        );
        items.extend(
            self.client_correlation_value
                .as_deref()
                .map(|c| codec::text(tags::CLIENT_CORRELATION_VALUE, c)),
        );
        items.extend(
            self.server_correlation_value
                .as_deref()
                .map(|c| codec::text(tags::SERVER_CORRELATION_VALUE, c)),
        );
        items.extend(self.asynchronous_indicator.map(|a| {
            if version.is_v2() {
                let e = if a { ASYNC_OPTIONAL } else { ASYNC_PROHIBITED };
                Ttlv::new(tags::ASYNCHRONOUS_INDICATOR, Value::Enumeration(e))
            } else {
                codec::boolean(tags::ASYNCHRONOUS_INDICATOR, a)
            }
        }));
        items.extend(
            self.attestation_capable_indicator
                .map(|a| codec::boolean(tags::ATTESTATION_CAPABLE_INDICATOR, a)),
        );
        items.extend(
            self.authentication
                .as_ref()
                .map(|a| codec::structure(tags::AUTHENTICATION, a.credentials.clone())),
        );
        items.extend(
            self.batch_error_continuation_option
                .map(|o| codec::enumeration(tags::BATCH_ERROR_CONTINUATION_OPTION, o)),
        );
        items.extend(
            self.batch_order_option
                .map(|o| codec::boolean(tags::BATCH_ORDER_OPTION, o)),
        );
        items.extend(
            self.time_stamp
                .map(|t| codec::datetime(tags::TIME_STAMP, t)),
        );
        items.push(codec::int(tags::BATCH_COUNT, count(batch_count)));
        codec::structure(tags::REQUEST_HEADER, items)
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBatchItem {
    pub operation: Operation,
    /// Echoed in the response item.
    pub unique_batch_item_id: Option<Bytes>,
    /// KMIP 2.x: do not return the Data output.
    pub ephemeral: Option<bool>,
    /// The typed payload, or why it is unusable: then this item alone fails and the other items
    /// proceed.
    pub payload: Result<RequestPayload, ModelError>,
}

impl RequestBatchItem {
    pub fn new(payload: RequestPayload) -> RequestBatchItem {
        RequestBatchItem {
            operation: payload.operation(),
            unique_batch_item_id: None,
            ephemeral: None,
            payload: Ok(payload),
        }
    }

    /// A success answering this item (operation and Unique Batch Item ID echoed).
    pub fn success(&self, payload: ResponsePayload) -> ResponseBatchItem {
        ResponseBatchItem {
            operation: Some(self.operation),
            unique_batch_item_id: self.unique_batch_item_id.clone(),
            result_status: ResultStatus::Success,
            result_reason: None,
            result_message: None,
            asynchronous_correlation_value: None,
            payload: Some(payload),
        }
    }

    /// A failure answering this item (operation and Unique Batch Item ID echoed).
    pub fn failure(&self, reason: ResultReason, message: impl Into<String>) -> ResponseBatchItem {
        ResponseBatchItem::failure(
            Some(self.operation),
            self.unique_batch_item_id.clone(),
            reason,
            message,
        )
    }

    fn read(node: &Node<'_>) -> Result<RequestBatchItem, ModelError> {
        node.structure()?;
        let operation = node.req_enum(tags::OPERATION)?;
        let payload = match node.opt(tags::REQUEST_PAYLOAD) {
            Some(p) => RequestPayload::read(operation, &p),
            None => Err(node.missing(tags::REQUEST_PAYLOAD)),
        };
        Ok(RequestBatchItem {
            operation,
            unique_batch_item_id: node.opt_bytes(tags::UNIQUE_BATCH_ITEM_ID)?,
            ephemeral: node.opt_bool(tags::EPHEMERAL)?,
            payload,
        })
    }

    fn to_ttlv(&self, version: ProtocolVersion) -> Ttlv {
        let mut items = vec![codec::enumeration(tags::OPERATION, self.operation)];
        if version.is_v2() {
            items.extend(self.ephemeral.map(|e| codec::boolean(tags::EPHEMERAL, e)));
        }
        items.extend(
            self.unique_batch_item_id
                .as_deref()
                .map(|id| codec::bytes(tags::UNIQUE_BATCH_ITEM_ID, id)),
        );
        items.push(match &self.payload {
            Ok(p) => p.to_ttlv(version),
            Err(_) => codec::structure(tags::REQUEST_PAYLOAD, Vec::new()),
        });
        codec::structure(tags::BATCH_ITEM, items)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMessage {
    pub header: RequestHeader,
    pub items: Vec<RequestBatchItem>,
}

impl RequestMessage {
    /// Reads a request. An `Err` makes the whole message unusable (answer one failure with
    /// [`ResponseMessage::message_failure`]); a bad payload only fails its own item (see
    /// [`RequestBatchItem::payload`]).
    pub fn from_ttlv(ttlv: &Ttlv) -> Result<RequestMessage, ModelError> {
        let root = Node::new(ttlv, "RequestMessage");
        if ttlv.tag != tags::REQUEST_MESSAGE {
            return Err(ModelError::NotARequest {
                found: codec::tag_label(ttlv.tag),
            });
        }
        root.structure()?;
        let root = Node::new(ttlv, "");
        let header = RequestHeader::read(&root.req(tags::REQUEST_HEADER)?)?;
        let declared = root
            .req(tags::REQUEST_HEADER)?
            .req(tags::BATCH_COUNT)?
            .int()?;
        let actual = ttlv.children(tags::BATCH_ITEM).count();
        if actual > MAX_BATCH_ITEMS {
            return Err(ModelError::TooManyItems {
                actual,
                limit: MAX_BATCH_ITEMS,
            });
        }
        if usize::try_from(declared).ok() != Some(actual) {
            return Err(ModelError::BatchCountMismatch { declared, actual });
        }
        if actual == 0 {
            return Err(root.missing(tags::BATCH_ITEM));
        }
        let items = root
            .all(tags::BATCH_ITEM)
            .map(|n| RequestBatchItem::read(&n))
            .collect::<Result<_, _>>()?;
        Ok(RequestMessage { header, items })
    }

    /// The protocol version of a message that may not parse, to answer its failure in the
    /// client's version.
    pub fn peek_version(ttlv: &Ttlv) -> Option<ProtocolVersion> {
        let version = ttlv
            .child(tags::REQUEST_HEADER)?
            .child(tags::PROTOCOL_VERSION)?;
        ProtocolVersion::from_ttlv(version).ok()
    }

    /// The message in the encoding of its header's protocol version. Batch Count is the number
    /// of items.
    pub fn to_ttlv(&self) -> Ttlv {
        let version = self.header.protocol_version;
        let mut items = vec![self.header.to_ttlv(self.items.len())];
        items.extend(self.items.iter().map(|i| i.to_ttlv(version)));
        codec::structure(tags::REQUEST_MESSAGE, items)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeader {
    pub protocol_version: ProtocolVersion,
    /// Seconds since the Unix epoch.
    pub time_stamp: i64,
    pub client_correlation_value: Option<String>,
    pub server_correlation_value: Option<String>,
}

impl ResponseHeader {
    pub fn new(protocol_version: ProtocolVersion, time_stamp: i64) -> ResponseHeader {
        ResponseHeader {
            protocol_version,
            time_stamp,
            client_correlation_value: None,
            server_correlation_value: None,
        }
    }

    /// A header answering `request`, in its version. The Client Correlation Value is not echoed:
    /// KMIP 2.1 (section 9.9) returns it only on server-to-client operations, and the OASIS
    /// vectors' responses never carry it.
    pub fn for_request(request: &RequestHeader, time_stamp: i64) -> ResponseHeader {
        ResponseHeader::new(request.protocol_version, time_stamp)
    }

    fn read(node: &Node<'_>) -> Result<ResponseHeader, ModelError> {
        node.structure()?;
        Ok(ResponseHeader {
            protocol_version: ProtocolVersion::read(&node.req(tags::PROTOCOL_VERSION)?)?,
            time_stamp: node.req(tags::TIME_STAMP)?.datetime()?,
            client_correlation_value: node.opt_text(tags::CLIENT_CORRELATION_VALUE)?,
            server_correlation_value: node.opt_text(tags::SERVER_CORRELATION_VALUE)?,
        })
    }

    fn to_ttlv(&self, batch_count: usize) -> Ttlv {
        let mut items = vec![
            self.protocol_version.to_ttlv(),
            codec::datetime(tags::TIME_STAMP, self.time_stamp),
        ];
        items.extend(
            self.client_correlation_value
                .as_deref()
                .map(|c| codec::text(tags::CLIENT_CORRELATION_VALUE, c)),
        );
        items.extend(
            self.server_correlation_value
                .as_deref()
                .map(|c| codec::text(tags::SERVER_CORRELATION_VALUE, c)),
        );
        items.push(codec::int(tags::BATCH_COUNT, count(batch_count)));
        codec::structure(tags::RESPONSE_HEADER, items)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseBatchItem {
    /// Present when the request item named one.
    pub operation: Option<Operation>,
    pub unique_batch_item_id: Option<Bytes>,
    pub result_status: ResultStatus,
    pub result_reason: Option<ResultReason>,
    pub result_message: Option<String>,
    pub asynchronous_correlation_value: Option<Bytes>,
    pub payload: Option<ResponsePayload>,
}

impl ResponseBatchItem {
    pub fn failure(
        operation: Option<Operation>,
        unique_batch_item_id: Option<Bytes>,
        reason: ResultReason,
        message: impl Into<String>,
    ) -> ResponseBatchItem {
        ResponseBatchItem {
            operation,
            unique_batch_item_id,
            result_status: ResultStatus::OperationFailed,
            result_reason: Some(reason),
            result_message: Some(message.into()),
            asynchronous_correlation_value: None,
            payload: None,
        }
    }

    /// Reads one item of a message in `version`. The answer of an operation `version` does not
    /// define is kept as it came: typed, it would be written without the fields the version
    /// lacks (a Hash answer in 1.1 loses its Data) and could not be read back.
    fn read(node: &Node<'_>, version: ProtocolVersion) -> Result<ResponseBatchItem, ModelError> {
        node.structure()?;
        let operation: Option<Operation> = node.opt_enum(tags::OPERATION)?;
        let payload = match (node.opt(tags::RESPONSE_PAYLOAD), operation) {
            (None, _) => None,
            (Some(p), Some(op))
                if super::operation_defined(super::KmipEnum::to_u32(op), version) =>
            {
                Some(ResponsePayload::read(op, &p)?)
            }
            (Some(p), _) => Some(ResponsePayload::Raw(p.ttlv.clone())),
        };
        Ok(ResponseBatchItem {
            operation,
            unique_batch_item_id: node.opt_bytes(tags::UNIQUE_BATCH_ITEM_ID)?,
            result_status: node.req_enum(tags::RESULT_STATUS)?,
            result_reason: node.opt_enum(tags::RESULT_REASON)?,
            result_message: node.opt_text(tags::RESULT_MESSAGE)?,
            asynchronous_correlation_value: node.opt_bytes(tags::ASYNCHRONOUS_CORRELATION_VALUE)?,
            payload,
        })
    }

    fn to_ttlv(&self, version: ProtocolVersion) -> Ttlv {
        let mut items = Vec::new();
        items.extend(
            self.operation
                .map(|o| codec::enumeration(tags::OPERATION, o)),
        );
        items.extend(
            self.unique_batch_item_id
                .as_deref()
                .map(|id| codec::bytes(tags::UNIQUE_BATCH_ITEM_ID, id)),
        );
        items.push(codec::enumeration(tags::RESULT_STATUS, self.result_status));
        items.extend(
            self.result_reason
                .map(|r| codec::enumeration(tags::RESULT_REASON, r)),
        );
        items.extend(
            self.result_message
                .as_deref()
                .map(|m| codec::text(tags::RESULT_MESSAGE, m)),
        );
        items.extend(
            self.asynchronous_correlation_value
                .as_deref()
                .map(|v| codec::bytes(tags::ASYNCHRONOUS_CORRELATION_VALUE, v)),
        );
        items.extend(self.payload.as_ref().map(|p| p.to_ttlv(version)));
        codec::structure(tags::BATCH_ITEM, items)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMessage {
    pub header: ResponseHeader,
    pub items: Vec<ResponseBatchItem>,
}

impl ResponseMessage {
    /// The one-item failure answering a request that could not be used at all. The reason is
    /// the server's choice (the gateway maps every error in one place, `kmip/ops/error.rs`).
    pub fn message_failure(
        version: ProtocolVersion,
        time_stamp: i64,
        reason: ResultReason,
        message: String,
    ) -> ResponseMessage {
        ResponseMessage {
            header: ResponseHeader::new(version, time_stamp),
            items: vec![ResponseBatchItem::failure(None, None, reason, message)],
        }
    }

    pub fn from_ttlv(ttlv: &Ttlv) -> Result<ResponseMessage, ModelError> {
        let root = Node::new(ttlv, "ResponseMessage");
        if ttlv.tag != tags::RESPONSE_MESSAGE {
            return Err(root.invalid(format!(
                "not a ResponseMessage (tag {})",
                codec::tag_label(ttlv.tag)
            )));
        }
        root.structure()?;
        let root = Node::new(ttlv, "");
        let header_node = root.req(tags::RESPONSE_HEADER)?;
        let header = ResponseHeader::read(&header_node)?;
        let declared = header_node.req(tags::BATCH_COUNT)?.int()?;
        let actual = ttlv.children(tags::BATCH_ITEM).count();
        if usize::try_from(declared).ok() != Some(actual) {
            return Err(ModelError::BatchCountMismatch { declared, actual });
        }
        let items = root
            .all(tags::BATCH_ITEM)
            .map(|n| ResponseBatchItem::read(&n, header.protocol_version))
            .collect::<Result<_, _>>()?;
        Ok(ResponseMessage { header, items })
    }

    /// The message in the encoding of its header's protocol version, with every tag that
    /// version does not define left out (see [`super::tag_defined`]) if the version is known.
    /// Batch Count is the number of items.
    pub fn to_ttlv(&self) -> Ttlv {
        let version = self.header.protocol_version;
        let mut items = vec![self.header.to_ttlv(self.items.len())];
        items.extend(self.items.iter().map(|i| i.to_ttlv(version)));
        let mut message = codec::structure(tags::RESPONSE_MESSAGE, items);
        // An unknown version (1.-3, say) defines no tags to keep: pruning would leave an empty
        // message, so its answer keeps everything.
        if version.is_known() {
            prune_undefined(&mut message, version);
        }
        message
    }
}
