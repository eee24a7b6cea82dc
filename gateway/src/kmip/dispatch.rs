//! Request dispatch: bytes → TTLV → typed request → operations, batch item by batch item →
//! typed response → bytes. An operation error fails its own batch item; a message that cannot
//! be used at all gets one failure response; only bytes that are not TTLV close the connection.

use crate::config::LimitsConfig;
use crate::identity::Identity;
use crate::kmip::ops::{response_uids, target_uid, OpContext, OpError, Ops, UndoJournal};
use crate::tooling::audit::{AuditEvent, AuditLog};
use bytes::Bytes;
use kmip_wire::model::{
    BatchErrorContinuationOption, ModelError, Operation, ProtocolVersion, RequestMessage,
    ResponseBatchItem, ResponseHeader, ResponseMessage, ResultReason, ResultStatus,
};
use kmip_wire::ttlv::{decode, Limits};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::debug;

/// Who is on the other end of a connection.
pub struct ConnContext {
    pub conn_id: u64,
    pub peer: SocketAddr,
    pub identity: Identity,
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
        Dispatcher { ops, limits, audit }
    }

    /// An item of an Undo batch failed: take back what the earlier items wrote and mark them
    /// Operation Undone. An item whose writes could not all be taken back (the object changed
    /// since, or the backend failed) keeps its Success status, which is the truth.
    async fn roll_back(&self, items: &mut [ResponseBatchItem], journal: UndoJournal) {
        let kept = match self.ops.undo(journal).await {
            Ok(()) => Vec::new(),
            Err(incomplete) => {
                tracing::warn!(items = ?incomplete.items, "undo of a failed batch is incomplete");
                incomplete.items
            }
        };
        let last = items.len().saturating_sub(1);
        for (i, item) in items[..last].iter_mut().enumerate() {
            if item.result_status == ResultStatus::Success && !kept.contains(&i) {
                item.result_status = ResultStatus::OperationUndone;
            }
        }
    }

    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    pub async fn handle(&self, conn: &ConnContext, bytes: Bytes) -> Outcome {
        let limits = Limits {
            max_message_size: self.limits.max_message_size,
            max_depth: self.limits.max_depth,
        };
        let ttlv = match decode(&bytes, &limits) {
            Ok(t) => t,
            Err(e) => {
                debug!(conn = conn.conn_id, error = %e, "undecodable message");
                metrics::counter!("kmip_invalid_messages_total", "kind" => "ttlv").increment(1);
                let failure = ResponseMessage {
                    header: ResponseHeader::new(FALLBACK_VERSION, now()),
                    items: vec![ResponseBatchItem::failure(
                        None,
                        None,
                        ResultReason::InvalidMessage,
                        e.to_string(),
                    )],
                };
                return Outcome::RespondAndClose(encode(&failure));
            }
        };
        let request = match RequestMessage::from_ttlv(&ttlv) {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("kmip_invalid_messages_total", "kind" => "message").increment(1);
                // An unknown version has no encoding to answer in (every tag would be pruned).
                let version = RequestMessage::peek_version(&ttlv)
                    .filter(|v| v.is_known())
                    .unwrap_or(FALLBACK_VERSION);
                return Outcome::Respond(encode(&ResponseMessage::message_failure(
                    version,
                    now(),
                    &e,
                )));
            }
        };
        let version = request.header.protocol_version;
        if !version.is_known() {
            let e = ModelError::Unsupported {
                path: "RequestHeader.ProtocolVersion".into(),
                what: "this protocol version",
            };
            return Outcome::Respond(encode(&ResponseMessage::message_failure(
                FALLBACK_VERSION,
                now(),
                &e,
            )));
        }
        if request.items.len() > self.limits.max_batch_items {
            let e = ModelError::TooManyItems {
                actual: request.items.len(),
                limit: self.limits.max_batch_items,
            };
            return Outcome::Respond(encode(&ResponseMessage::message_failure(
                version,
                now(),
                &e,
            )));
        }
        let option = request.header.batch_error_continuation_option;
        let undo = option == Some(BatchErrorContinuationOption::Undo) && request.items.len() > 1;
        let stop_on_error = undo
            || (option.is_none() || option == Some(BatchErrorContinuationOption::Stop))
                && request.items.len() > 1;
        let mut journal = UndoJournal::default();
        let mut ctx = OpContext::new(&conn.identity.user, version, now());
        let mut items = Vec::with_capacity(request.items.len());
        for item in request.items {
            let started = Instant::now();
            let received = SystemTime::now();
            let op_label = format!("{:?}", item.operation);
            let metric_label = operation_metric_label(item.operation);
            let target = item
                .payload
                .as_ref()
                .ok()
                .and_then(target_uid)
                .and_then(Clone::clone);
            let response = match item.payload.clone() {
                Err(e) => item.failure(e.result_reason(), e.to_string()),
                Ok(payload) => {
                    let result = if undo {
                        self.ops
                            .execute_undoable(&mut ctx, payload, &mut journal)
                            .await
                    } else {
                        self.ops.execute(&mut ctx, payload).await
                    };
                    match result {
                        Ok(p) => item.success(p),
                        Err(e) => failure_item(&item, &e, version),
                    }
                }
            };
            let failed = response.result_status != ResultStatus::Success;
            metrics::counter!("kmip_requests_total", "operation" => metric_label.clone(), "result" => if failed { "failure" } else { "success" }).increment(1);
            metrics::histogram!("kmip_request_seconds", "operation" => metric_label)
                .record(started.elapsed().as_secs_f64());
            if let Some(audit) = &self.audit {
                let mut uids: Vec<String> = target.into_iter().collect();
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
                        time: received,
                        conn_id: conn.conn_id,
                        peer: conn.peer,
                        cert_subject: conn.identity.subject.clone(),
                        cert_fingerprint: conn.identity.fingerprint.clone(),
                        user: conn.identity.user.clone(),
                        operation: op_label,
                        unique_identifiers: uids,
                        result_status: format!("{:?}", response.result_status),
                        result_reason: response.result_reason.map(|r| format!("{r:?}")),
                        latency_us: u64::try_from(started.elapsed().as_micros())
                            .unwrap_or(u64::MAX),
                    })
                    .await;
            }
            items.push(response);
            if failed && stop_on_error {
                if undo {
                    self.roll_back(&mut items, std::mem::take(&mut journal))
                        .await;
                }
                break;
            }
        }
        let response = ResponseMessage {
            header: ResponseHeader::for_request(&request.header, now()),
            items,
        };
        let encoded = encode(&response);
        if let Some(max) = request.header.maximum_response_size {
            if encoded.len() > usize::try_from(max).unwrap_or(0) {
                let too_large = ResponseMessage {
                    header: response.header.clone(),
                    items: response
                        .items
                        .iter()
                        .map(|i| {
                            ResponseBatchItem::failure(
                                i.operation,
                                i.unique_batch_item_id.clone(),
                                ResultReason::ResponseTooLarge,
                                OpError::ResponseTooLarge.to_string(),
                            )
                        })
                        .collect(),
                };
                return Outcome::Respond(encode(&too_large));
            }
        }
        Outcome::Respond(encoded)
    }
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
    item: &kmip_wire::model::RequestBatchItem,
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
