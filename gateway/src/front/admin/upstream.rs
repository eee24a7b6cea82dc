//! `POST /upstream/adopt?user=U&uid=UPSTREAM_UID` (or `&name=NAME`): a KMIP proxy adopts an
//! object its upstream held before, for the configured user U (`kmip-gateway upstream adopt`).
//! Behind the admin token like `/keys`, naming the operator, and audited as `Adopt` by
//! `admin:<operator>`. The work is the operation layer's (`Ops::operator_adopt`).

use super::keys::{
    bad_request, json_response, now, only_known, operator_name, parse_query, summary, AUDIT_VERSION,
};
use super::{plain, Response};
use crate::kmip::dispatch::Dispatcher;
use crate::kmip::ops::{AdoptTarget, OpError};
use crate::kmip::store::StoredObject;
use crate::tooling::audit::AuditEvent;
use kmip_backends::BackendError;
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// The path of the endpoint.
pub(super) const ADOPT_PATH: &str = "/upstream/adopt";

/// Whether `path` (without query) is under `/upstream`.
pub(super) fn is_upstream_path(path: &str) -> bool {
    path == "/upstream" || path.starts_with("/upstream/")
}

/// An adoption request as the listener parsed it, after the token was checked.
pub(super) struct AdoptCall<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub operator: Option<&'a str>,
    pub peer: SocketAddr,
    pub token_id: String,
}

/// What the request asks: the owner and the upstream object.
fn parse(query: &str) -> Result<(String, AdoptTarget), String> {
    let params = parse_query(query)?;
    let get = only_known(&params, &["user", "uid", "name"])?;
    let user = get("user")
        .filter(|u| !u.is_empty())
        .ok_or("name the owner: user=U (a configured user)")?
        .to_owned();
    let target = match (get("uid"), get("name")) {
        (Some(uid), None) if !uid.is_empty() => AdoptTarget::Uid(uid.to_owned()),
        (None, Some(name)) if !name.is_empty() => AdoptTarget::Name(name.to_owned()),
        _ => return Err("name the upstream object: uid=UPSTREAM_UID or name=NAME (one)".into()),
    };
    Ok((user, target))
}

/// The HTTP status of a refused adoption.
fn status_of(e: &OpError) -> &'static str {
    match e {
        OpError::NotFound | OpError::Backend(BackendError::NotFound(_)) => "404 Not Found",
        OpError::Backend(BackendError::Unavailable(_) | BackendError::Busy(_)) => {
            "503 Service Unavailable"
        }
        OpError::FeatureNotSupported(_)
        | OpError::InvalidField(_)
        | OpError::MissingData(_)
        | OpError::NonUniqueName(_)
        | OpError::ObjectLimit(_)
        | OpError::WrongState(_)
        | OpError::Destroyed
        | OpError::Backend(
            BackendError::AlreadyExists(_)
            | BackendError::InvalidInput(_)
            | BackendError::Unsupported(_),
        ) => "409 Conflict",
        _ => "500 Internal Server Error",
    }
}

/// Answers one `/upstream…` request. `is_user` says whether a name is a configured user.
pub(super) async fn respond(
    dispatcher: &Arc<Dispatcher>,
    is_user: impl Fn(&str) -> bool,
    call: &AdoptCall<'_>,
) -> Response {
    if call.path != ADOPT_PATH {
        return plain("404 Not Found", "not found");
    }
    if call.method != "POST" {
        return plain("405 Method Not Allowed", "method not allowed");
    }
    let operator = match operator_name(call.operator) {
        Ok(o) => o,
        Err(e) => return bad_request(&e),
    };
    let (owner, target) = match parse(call.query) {
        Ok(p) => p,
        Err(e) => return bad_request(&e),
    };
    if !is_user(&owner) {
        return bad_request(&format!(
            "{owner:?} is not a user of this gateway's configuration ([[users]] name)"
        ));
    }
    let adoption = Adopt {
        dispatcher: dispatcher.clone(),
        operator,
        owner,
        target,
        peer: call.peer,
        token_id: call.token_id.clone(),
    };
    // Its own task: upstream calls may outlast the admin connection's deadline, and cutting
    // the adoption between the mapping's write and the store's would leave it half done.
    tokio::spawn(adoption.run()).await.unwrap_or_else(|_| {
        plain(
            "500 Internal Server Error",
            "the adoption task ended without an answer",
        )
    })
}

/// One adoption, owned, run to its end whatever happens to the connection that asked for it.
struct Adopt {
    dispatcher: Arc<Dispatcher>,
    operator: String,
    owner: String,
    target: AdoptTarget,
    peer: SocketAddr,
    token_id: String,
}

impl Adopt {
    async fn run(self) -> Response {
        let ops = self.dispatcher.ops();
        // On a backend several gateways share, a clash with what the others wrote must be seen.
        if let Err(e) = ops.store.fence().await {
            return plain(
                "503 Service Unavailable",
                &format!("cannot catch up with the other gateways' writes: {e}"),
            );
        }
        let started = SystemTime::now();
        let result = ops.operator_adopt(&self.owner, now(), &self.target).await;
        let asked = match &self.target {
            AdoptTarget::Uid(u) => u.clone(),
            AdoptTarget::Name(n) => format!("name {n}"),
        };
        self.record(&asked, started, &result).await;
        match result {
            Ok(obj) => {
                tracing::info!(uid = %obj.uid, owner = %self.owner, operator = %self.operator, "adopted an upstream object");
                let mut answer = summary(&obj);
                answer.insert("result".into(), "success".into());
                answer.insert("upstream_uid".into(), obj.uid.to_string().into());
                json_response("200 OK", &Json::Object(answer))
            }
            Err(e) => json_response(
                status_of(&e),
                &json!({ "result": "failure", "asked": asked, "error": e.to_string() }),
            ),
        }
    }

    /// The audit record: who (the operator's name, the token's id), from where, which upstream
    /// object for whom, with what outcome.
    async fn record(
        &self,
        asked: &str,
        started: SystemTime,
        result: &Result<Arc<StoredObject>, OpError>,
    ) {
        let Some(audit) = self.dispatcher.audit() else {
            return;
        };
        audit
            .record(AuditEvent {
                time: started,
                conn_id: 0,
                peer: self.peer,
                cert_subject: "admin token".into(),
                cert_fingerprint: self.token_id.clone(),
                user: format!("admin:{}", self.operator),
                operation: "Adopt".into(),
                unique_identifiers: result
                    .as_ref()
                    .map(|o| o.uid.to_string())
                    .into_iter()
                    .collect(),
                result_status: if result.is_ok() {
                    "Success".into()
                } else {
                    "OperationFailed".into()
                },
                result_reason: result
                    .as_ref()
                    .err()
                    .map(|e| format!("{:?}", e.result_reason(AUDIT_VERSION))),
                latency_us: started
                    .elapsed()
                    .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                note: Some(format!("upstream object {asked} for {}", self.owner)),
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_and_exactly_one_upstream_object_are_required() {
        assert_eq!(
            parse("user=a&uid=42").unwrap(),
            ("a".into(), AdoptTarget::Uid("42".into()))
        );
        assert_eq!(
            parse("user=a&name=disk%201").unwrap(),
            ("a".into(), AdoptTarget::Name("disk 1".into()))
        );
        for bad in [
            "uid=42",
            "user=&uid=42",
            "user=a",
            "user=a&uid=42&name=n",
            "user=a&uid=",
            "user=a&uid=42&owner=b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_have_distinct_statuses() {
        assert_eq!(
            status_of(&OpError::Backend(BackendError::NotFound("x".into()))),
            "404 Not Found"
        );
        assert_eq!(
            status_of(&OpError::Backend(BackendError::AlreadyExists("x".into()))),
            "409 Conflict"
        );
        assert_eq!(
            status_of(&OpError::Backend(BackendError::Unavailable("x".into()))),
            "503 Service Unavailable"
        );
        assert_eq!(
            status_of(&OpError::FeatureNotSupported("not kmip".into())),
            "409 Conflict"
        );
    }
}
