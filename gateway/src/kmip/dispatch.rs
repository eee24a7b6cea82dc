//! Request dispatch: bytes → TTLV → typed request → operations, batch item by batch item →
//! typed response → bytes. An operation error fails its own batch item; a message that cannot
//! be used at all gets one failure response; only bytes that are not TTLV close the connection.

use crate::config::{LimitsConfig, ReadYourWrites};
use crate::identity::Identity;
use crate::kmip::ops::{
    audit_note, response_uids, target_uid, DestroyFailed, OpContext, OpError, Ops, UndoJournal,
};
use crate::tooling::audit::{AuditEvent, AuditLog};
use bytes::Bytes;
use kmip_wire::model::{
    BatchErrorContinuationOption, ModelError, Operation, ProtocolVersion, RequestBatchItem,
    RequestHeader, RequestMessage, ResponseBatchItem, ResponseHeader, ResponseMessage,
    ResultStatus,
};
use kmip_wire::ttlv::{decode, Limits};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::debug;

/// Who is on the other end of a connection.
pub struct ConnContext {
    pub conn_id: u64,
    pub peer: SocketAddr,
    pub identity: Identity,
    /// Whether this connection has caught up with the writes other gateways on a shared
    /// backend committed before it started (`read_your_writes = "connection"`).
    pub fenced: AtomicBool,
}

impl ConnContext {
    pub fn new(conn_id: u64, peer: SocketAddr, identity: Identity) -> ConnContext {
        ConnContext {
            conn_id,
            peer,
            identity,
            fenced: AtomicBool::new(false),
        }
    }
}

/// What the connection does with a handled message.
pub enum Outcome {
    Respond(Bytes),
    /// The bytes were not a TTLV message: answer, then close (the stream can't be re-synced).
    RespondAndClose(Bytes),
}

/// The version a message-level failure is answered in when the request's is unknown.
const FALLBACK_VERSION: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };

pub struct Dispatcher {
    ops: Ops,
    limits: LimitsConfig,
    audit: Option<Arc<AuditLog>>,
    /// When to catch up with other gateways' writes on a shared backend.
    read_your_writes: ReadYourWrites,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn encode(msg: &ResponseMessage) -> Bytes {
    // Encoding fails only for tags wider than 24 bits, which no response contains; an empty
    // answer would then make the client fail loudly rather than hang.
    msg.to_ttlv().to_bytes().unwrap_or_default()
}

impl Dispatcher {
    pub fn new(ops: Ops, limits: LimitsConfig, audit: Option<Arc<AuditLog>>) -> Dispatcher {
        Dispatcher {
            ops,
            limits,
            audit,
            read_your_writes: ReadYourWrites::default(),
        }
    }

    /// When requests catch up with other gateways' writes on a shared backend (the
    /// configuration's `[backend] read_your_writes`); before each message by default.
    pub fn with_read_your_writes(mut self, mode: ReadYourWrites) -> Dispatcher {
        self.read_your_writes = mode;
        self
    }

    /// An item of an Undo batch failed: take back what the earlier items wrote and mark them
    /// Operation Undone. An item whose writes could not all be taken back (the object changed
    /// since, or the backend failed) keeps its Success status, which is the truth.
    /// `failed` is the failed item; `done` are items whose effect cannot be taken back either.
    async fn roll_back(
        &self,
        items: &mut [ResponseBatchItem],
        journal: UndoJournal,
        failed: usize,
        done: &[usize],
    ) {
        let kept = match self.ops.undo(journal).await {
            Ok(()) => Vec::new(),
            Err(incomplete) => {
                tracing::warn!(items = ?incomplete.items, "undo of a failed batch is incomplete");
                incomplete.items
            }
        };
        for (i, item) in items.iter_mut().enumerate() {
            if i != failed
                && item.result_status == ResultStatus::Success
                && !kept.contains(&i)
                && !done.contains(&i)
            {
                item.result_status = ResultStatus::OperationUndone;
            }
        }
    }

    /// Ends an Undo batch whose items all succeeded: its deferred Destroys are done now. One
    /// that fails fails its item, and the batch is undone as far as it can be.
    async fn commit_undo_batch(
        &self,
        ctx: &mut OpContext<'_>,
        items: &mut [ResponseBatchItem],
        journal: UndoJournal,
    ) {
        let Err(failure) = self.ops.commit_destroys(ctx, journal).await else {
            return;
        };
        let DestroyFailed {
            item,
            error,
            journal,
            done,
        } = *failure;
        tracing::warn!(item, error = %error, "a Destroy deferred to the end of an Undo batch failed");
        if let Some(failed) = items.get_mut(item) {
            *failed = ResponseBatchItem::failure(
                failed.operation,
                failed.unique_batch_item_id.clone(),
                error.result_reason(ctx.version),
                error.to_string(),
            );
        }
        self.roll_back(items, journal, item, &done).await;
    }

    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    /// The audit trail, if kept: the admin listener records the operator's actions in it too.
    pub fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }

    /// Answers one message: decode it, run its batch items, encode the response within the
    /// client's Maximum Response Size.
    pub async fn handle(&self, conn: &ConnContext, bytes: Bytes) -> Outcome {
        let request = match self.decode_request(conn, &bytes) {
            Ok(request) => request,
            Err(failure) => return failure,
        };
        let RequestMessage { header, items } = request;
        let items = match self.fence(conn).await {
            Ok(()) => self.execute_batch(conn, &header, items).await,
            Err(e) => self.fail_batch(conn, &header, items, &e).await,
        };
        let response = ResponseMessage {
            header: ResponseHeader::for_request(&header, now()),
            items,
        };
        Outcome::Respond(encode_within(
            &response,
            header.maximum_response_size,
            header.protocol_version,
        ))
    }

    /// Read-your-writes on a shared backend: catches up with every write other gateways
    /// committed before this message (or, in `connection` mode, before the connection's first
    /// message). Free on a backend only this process opens.
    async fn fence(&self, conn: &ConnContext) -> Result<(), OpError> {
        if self.read_your_writes == ReadYourWrites::Connection
            && conn.fenced.load(Ordering::Acquire)
        {
            return Ok(());
        }
        self.ops.store.fence().await?;
        conn.fenced.store(true, Ordering::Release);
        Ok(())
    }

    /// Every item of a message that could not be run (its fence failed: the database is out
    /// of reach) fails with `e`; the connection stays open, and the next message tries again.
    async fn fail_batch(
        &self,
        conn: &ConnContext,
        header: &RequestHeader,
        requests: Vec<RequestBatchItem>,
        e: &OpError,
    ) -> Vec<ResponseBatchItem> {
        let mut items = Vec::with_capacity(requests.len());
        for item in requests {
            let trace = ItemTrace::start(&item);
            let response = failure_item(&item, e, header.protocol_version);
            self.record(conn, trace, &response).await;
            items.push(response);
        }
        items
    }

    /// Bytes → typed request, or the answer for a message that cannot be used at all: bytes that
    /// are not TTLV (answered, then the connection is closed), a message that is not a request,
    /// an unknown protocol version, too many batch items.
    fn decode_request(&self, conn: &ConnContext, bytes: &Bytes) -> Result<RequestMessage, Outcome> {
        let limits = Limits {
            max_message_size: self.limits.max_message_size,
            max_depth: self.limits.max_depth,
        };
        let ttlv = decode(bytes, &limits).map_err(|e| {
            debug!(conn = conn.conn_id, error = %e, "undecodable message");
            metrics::counter!("kmip_invalid_messages_total", "kind" => "ttlv").increment(1);
            Outcome::RespondAndClose(message_failure(FALLBACK_VERSION, &OpError::Undecodable(e)))
        })?;
        let request = RequestMessage::from_ttlv(&ttlv).map_err(|e| {
            metrics::counter!("kmip_invalid_messages_total", "kind" => "message").increment(1);
            // An unknown version has no encoding to answer in (every tag would be pruned).
            let version = RequestMessage::peek_version(&ttlv)
                .filter(|v| v.is_known())
                .unwrap_or(FALLBACK_VERSION);
            Outcome::Respond(message_failure(version, &OpError::Model(e)))
        })?;
        let version = request.header.protocol_version;
        if !version.is_known() {
            let e = ModelError::Unsupported {
                path: "RequestHeader.ProtocolVersion".into(),
                what: "this protocol version",
            };
            return Err(Outcome::Respond(message_failure(
                FALLBACK_VERSION,
                &OpError::Model(e),
            )));
        }
        if request.items.len() > self.limits.max_batch_items {
            let e = ModelError::TooManyItems {
                actual: request.items.len(),
                limit: self.limits.max_batch_items,
            };
            return Err(Outcome::Respond(message_failure(
                version,
                &OpError::Model(e),
            )));
        }
        Ok(request)
    }

    /// Runs the batch items in order under the request's Batch Error Continuation Option: with
    /// Stop (the default) or Undo the first failure ends the batch, and Undo then takes back
    /// what the earlier items wrote.
    async fn execute_batch(
        &self,
        conn: &ConnContext,
        header: &RequestHeader,
        requests: Vec<RequestBatchItem>,
    ) -> Vec<ResponseBatchItem> {
        let option = header.batch_error_continuation_option;
        let several = requests.len() > 1;
        let undo = option == Some(BatchErrorContinuationOption::Undo) && several;
        let stop_on_error = undo
            || (option.is_none() || option == Some(BatchErrorContinuationOption::Stop)) && several;
        let mut journal = UndoJournal::default();
        let mut ctx = OpContext::new(&conn.identity.user, header.protocol_version, now());
        let mut items = Vec::with_capacity(requests.len());
        for item in requests {
            let trace = ItemTrace::start(&item);
            let response = self
                .execute_item(&mut ctx, &item, undo.then_some(&mut journal))
                .await;
            let failed = response.result_status != ResultStatus::Success;
            self.record(conn, trace, &response).await;
            items.push(response);
            if failed && stop_on_error {
                if undo {
                    let last = items.len() - 1;
                    self.roll_back(&mut items, std::mem::take(&mut journal), last, &[])
                        .await;
                }
                return items;
            }
        }
        if undo {
            self.commit_undo_batch(&mut ctx, &mut items, journal).await;
        }
        items
    }

    /// One batch item: its operation, journaled in `journal` when the batch is to be undone on
    /// failure, and the item's answer.
    async fn execute_item(
        &self,
        ctx: &mut OpContext<'_>,
        item: &RequestBatchItem,
        journal: Option<&mut UndoJournal>,
    ) -> ResponseBatchItem {
        let payload = match item.payload.clone() {
            Ok(payload) => payload,
            Err(e) => return failure_item(item, &OpError::Model(e), ctx.version),
        };
        let result = match journal {
            Some(journal) => self.ops.execute_undoable(ctx, payload, journal).await,
            None => self.ops.execute(ctx, payload).await,
        };
        match result {
            Ok(p) => item.success(p),
            Err(e) => failure_item(item, &e, ctx.version),
        }
    }

    /// The metrics and the audit record of one answered batch item.
    async fn record(&self, conn: &ConnContext, trace: ItemTrace, response: &ResponseBatchItem) {
        let failed = response.result_status != ResultStatus::Success;
        metrics::counter!("kmip_requests_total", "operation" => trace.metric_label.clone(), "result" => if failed { "failure" } else { "success" }).increment(1);
        metrics::histogram!("kmip_request_seconds", "operation" => trace.metric_label)
            .record(trace.started.elapsed().as_secs_f64());
        let Some(audit) = &self.audit else {
            return;
        };
        let mut uids: Vec<String> = trace.target.into_iter().collect();
        for u in response
            .payload
            .as_ref()
            .map(response_uids)
            .unwrap_or_default()
        {
            if !uids.contains(&u) {
                uids.push(u);
            }
        }
        audit
            .record(AuditEvent {
                time: trace.received,
                conn_id: conn.conn_id,
                peer: conn.peer,
                cert_subject: conn.identity.subject.clone(),
                cert_fingerprint: conn.identity.fingerprint.clone(),
                user: conn.identity.user.clone(),
                operation: trace.op_label,
                unique_identifiers: uids,
                result_status: format!("{:?}", response.result_status),
                result_reason: response.result_reason.map(|r| format!("{r:?}")),
                latency_us: u64::try_from(trace.started.elapsed().as_micros()).unwrap_or(u64::MAX),
                note: trace.note,
            })
            .await;
    }
}

/// What the metrics and the audit trail note of a batch item before it runs.
struct ItemTrace {
    started: Instant,
    received: SystemTime,
    op_label: String,
    metric_label: String,
    target: Option<String>,
    /// The client's text of a Log or Interop item, escaped and bounded, for the audit trail.
    note: Option<String>,
}

impl ItemTrace {
    fn start(item: &RequestBatchItem) -> ItemTrace {
        ItemTrace {
            started: Instant::now(),
            received: SystemTime::now(),
            op_label: format!("{:?}", item.operation),
            metric_label: operation_metric_label(item.operation),
            target: item
                .payload
                .as_ref()
                .ok()
                .and_then(target_uid)
                .and_then(Clone::clone),
            note: item.payload.as_ref().ok().and_then(audit_note),
        }
    }
}

/// The one-item answer to a message that could not be used at all.
fn message_failure(version: ProtocolVersion, e: &OpError) -> Bytes {
    encode(&ResponseMessage::message_failure(
        version,
        now(),
        e.result_reason(version),
        e.to_string(),
    ))
}

/// The encoded response, or, when it is larger than the client's Maximum Response Size, the
/// same items each failed with Response Too Large.
fn encode_within(
    response: &ResponseMessage,
    maximum_response_size: Option<i32>,
    version: ProtocolVersion,
) -> Bytes {
    let encoded = encode(response);
    let Some(max) = maximum_response_size else {
        return encoded;
    };
    if encoded.len() <= usize::try_from(max).unwrap_or(0) {
        return encoded;
    }
    let too_large = OpError::ResponseTooLarge;
    encode(&ResponseMessage {
        header: response.header.clone(),
        items: response
            .items
            .iter()
            .map(|i| {
                ResponseBatchItem::failure(
                    i.operation,
                    i.unique_batch_item_id.clone(),
                    too_large.result_reason(version),
                    too_large.to_string(),
                )
            })
            .collect(),
    })
}

/// The `operation` label of the request metrics: a named operation code, or `other` for any
/// code the model does not name, so clients cannot add label values (each one a series kept
/// for the life of the process).
fn operation_metric_label(operation: Operation) -> String {
    match operation {
        Operation::Other(_) => "other".to_owned(),
        named => format!("{named:?}"),
    }
}

fn failure_item(
    item: &RequestBatchItem,
    e: &OpError,
    version: ProtocolVersion,
) -> ResponseBatchItem {
    item.failure(e.result_reason(version), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmip_wire::model::KmipEnum;

    #[test]
    fn operation_labels_come_from_a_fixed_set() {
        assert_eq!(operation_metric_label(Operation::Locate), "Locate");
        for code in [0x3c, 0xff, 0x8000_0001, u32::MAX] {
            assert_eq!(
                operation_metric_label(Operation::from_u32(code)),
                "other",
                "{code:#x}"
            );
        }
    }
}
