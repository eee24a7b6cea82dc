//! The admin listener's key administration (`kmip-gateway keys …`): `GET /keys` (objects by
//! owner, Name, Object Group, State, Object Type; one bounded page), `GET /keys/UID` (every
//! attribute, never key material: the store holds none), `POST /keys/UID/revoke` and
//! `POST /keys/UID/destroy`. Revoke and Destroy run through the operation layer
//! (`Ops::operator_*`) and are audited with the operator's name, the token's id and the peer.

use super::{plain, Response};
use crate::kmip::ops::{DestroyStep, KeyFilter, OpError, Ops};
use crate::kmip::store::StoredObject;
use crate::tooling::audit::{AuditEvent, AuditLog};
use kmip_wire::model::{
    AttributeName, KmipEnum, ProtocolVersion, RevocationReason, RevocationReasonCode,
};
use kmip_wire::names::{enum_names_for_tag, mask_flags, mask_for_tag, tag_hex, tag_name};
use kmip_wire::spec::tags;
use kmip_wire::ttlv::{Tag, Ttlv, Value};
use serde_json::{json, Map, Value as Json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Most objects in one `/keys` answer: bounds the work and the body of a request that must be
/// written within `ADMIN_REQUEST_DEADLINE` (and read by the CLI). More are fetched with
/// `after=<last uid>`; the answer says `"more": true` when there are.
pub(crate) const MAX_KEYS_PER_ANSWER: usize = 1000;
/// Longest operator name recorded in the audit trail.
pub(crate) const MAX_OPERATOR_NAME: usize = 64;
/// The header naming the operator behind a token-holding request (the token is shared, so the
/// name is what tells operators apart in the audit trail).
pub const OPERATOR_HEADER: &str = "x-kmip-operator";
/// The version whose Result Reason names the audit trail records for an operator's action.
pub(super) const AUDIT_VERSION: ProtocolVersion = ProtocolVersion { major: 2, minor: 1 };

/// A `/keys` request as the listener parsed it, after the token was checked.
pub(super) struct KeysCall<'a> {
    pub method: &'a str,
    /// The path without its query.
    pub path: &'a str,
    pub query: &'a str,
    pub operator: Option<&'a str>,
    pub peer: SocketAddr,
    /// A short digest of the admin token in force (names which token, reveals nothing of it).
    pub token_id: String,
}

/// Whether `path` (without query) is one of these endpoints.
pub(super) fn is_keys_path(path: &str) -> bool {
    path == "/keys" || path.starts_with("/keys/")
}

pub(super) fn json_response(status: &'static str, body: &Json) -> Response {
    (status, "application/json", "", format!("{body}\n"))
}

pub(super) fn bad_request(problem: &str) -> Response {
    plain("400 Bad Request", problem)
}

/// Answers one `/keys` request.
pub(super) async fn respond(
    ops: &Ops,
    audit: Option<&Arc<AuditLog>>,
    call: &KeysCall<'_>,
) -> Response {
    let params = match parse_query(call.query) {
        Ok(p) => p,
        Err(e) => return bad_request(&e),
    };
    // On a backend several gateways share, the operator sees (and acts on) every object the
    // others wrote too, not this gateway's view of a moment ago.
    if let Err(e) = ops.store.fence().await {
        return plain(
            "503 Service Unavailable",
            &format!("cannot catch up with the other gateways' writes: {e}"),
        );
    }
    let rest = call.path.strip_prefix("/keys").unwrap_or("");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (call.method, segments.as_slice()) {
        ("GET", []) => list(ops, &params),
        ("GET", [uid]) => match decode(uid) {
            Ok(uid) => show(ops, &params, &uid),
            Err(e) => bad_request(&e),
        },
        ("POST", [uid, verb @ ("revoke" | "destroy")]) => {
            let uid = match decode(uid) {
                Ok(uid) => uid,
                Err(e) => return bad_request(&e),
            };
            let operator = match operator_name(call.operator) {
                Ok(o) => o,
                Err(e) => return bad_request(&e),
            };
            let action = Action {
                ops,
                audit,
                call,
                operator: &operator,
                uid: &uid,
            };
            if *verb == "revoke" {
                action.revoke(&params).await
            } else {
                action.destroy(&params).await
            }
        }
        (_, [] | [_] | [_, "revoke" | "destroy"]) => {
            plain("405 Method Not Allowed", "method not allowed")
        }
        _ => plain("404 Not Found", "not found"),
    }
}

/// The query's `name=value` pairs, percent-decoded; a name given twice is refused.
pub(super) fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode(name)?, decode(value)?);
        if params.iter().any(|(n, _)| *n == name) {
            return Err(format!("query parameter {name:?} given twice"));
        }
        params.push((name, value));
    }
    Ok(params)
}

/// Percent-decoding (`+` is a space) into UTF-8.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in {text:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

/// Refuses parameters an endpoint does not know: a misspelt filter must not select everything.
pub(super) fn only_known<'p>(
    params: &'p [(String, String)],
    known: &[&str],
) -> Result<impl Fn(&str) -> Option<&'p str>, String> {
    if let Some((name, _)) = params.iter().find(|(n, _)| !known.contains(&n.as_str())) {
        return Err(format!(
            "unknown query parameter {name:?} (known here: {})",
            known.join(", ")
        ));
    }
    Ok(move |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    })
}

/// The value of enumeration `tag` named `name` (its KMIP XML name, e.g. `PreActive`).
fn enum_value(tag: Tag, what: &str, name: &str) -> Result<u32, String> {
    let names = enum_names_for_tag(tag).ok_or_else(|| format!("{what} has no names"))?;
    names.value_of(name).ok_or_else(|| {
        let known: Vec<&str> = match names {
            kmip_wire::names::EnumNames::Table(def) => def.values.iter().map(|(n, _)| *n).collect(),
            kmip_wire::names::EnumNames::Tags => Vec::new(),
        };
        format!("{name:?} is not a {what} (one of: {})", known.join(", "))
    })
}

fn list(ops: &Ops, params: &[(String, String)]) -> Response {
    let get = match only_known(
        params,
        &[
            "user", "name", "group", "state", "type", "after", "limit", "detail",
        ],
    ) {
        Ok(g) => g,
        Err(e) => return bad_request(&e),
    };
    let filter = (|| -> Result<KeyFilter, String> {
        Ok(KeyFilter {
            owner: get("user").map(str::to_owned),
            name: get("name").map(str::to_owned),
            group: get("group").map(str::to_owned),
            state: get("state")
                .map(|s| enum_value(tags::STATE, "State", s).map(KmipEnum::from_u32))
                .transpose()?,
            object_type: get("type")
                .map(|t| enum_value(tags::OBJECT_TYPE, "Object Type", t).map(KmipEnum::from_u32))
                .transpose()?,
        })
    })();
    let filter = match filter {
        Ok(f) => f,
        Err(e) => return bad_request(&e),
    };
    let limit = match get("limit").map(str::parse::<usize>) {
        None => MAX_KEYS_PER_ANSWER,
        Some(Ok(n)) if (1..=MAX_KEYS_PER_ANSWER).contains(&n) => n,
        Some(_) => {
            return bad_request(&format!(
                "limit must be a number from 1 to {MAX_KEYS_PER_ANSWER}"
            ))
        }
    };
    let detail = get("detail").is_some_and(|d| d != "0" && d != "false");
    let page = ops.operator_select(&filter, get("after"), limit);
    let objects: Vec<Json> = page
        .objects
        .iter()
        .map(|o| {
            if detail {
                details(o)
            } else {
                Json::Object(summary(o))
            }
        })
        .collect();
    let next = page
        .objects
        .last()
        .filter(|_| page.more)
        .map(|o| o.uid.to_string());
    json_response(
        "200 OK",
        &json!({ "objects": objects, "more": page.more, "next_after": next }),
    )
}

fn show(ops: &Ops, params: &[(String, String)], uid: &str) -> Response {
    if let Err(e) = only_known(params, &[]) {
        return bad_request(&e);
    }
    match ops.operator_object(uid) {
        Some(o) => json_response("200 OK", &details(&o)),
        None => plain("404 Not Found", &format!("no object {uid:?}")),
    }
}

/// An enumeration attribute's value by name.
fn enum_text(obj: &StoredObject, tag: Tag, default: &str) -> String {
    obj.enum_of(tag)
        .map(|v| {
            enum_names_for_tag(tag)
                .and_then(|n| n.name_of(v))
                .map_or_else(|| format!("0x{v:08x}"), str::to_owned)
        })
        .unwrap_or_else(|| default.to_owned())
}

fn date_text(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

fn date_of(obj: &StoredObject, tag: Tag) -> Json {
    obj.first(tag)
        .and_then(|a| a.as_datetime())
        .map_or(Json::Null, |d| Json::String(date_text(d)))
}

/// The one-line view: identifier, owner, type, state, Names, Object Groups, dates.
pub(super) fn summary(obj: &StoredObject) -> Map<String, Json> {
    let texts = |tag| -> Vec<String> {
        obj.all(tag)
            .filter_map(|a| {
                a.as_name()
                    .map(|n| n.value)
                    .or_else(|| a.as_text().map(str::to_owned))
            })
            .collect()
    };
    let mut m = Map::new();
    m.insert("uid".into(), (*obj.uid).into());
    m.insert("owner".into(), (*obj.owner).into());
    m.insert("type".into(), enum_text(obj, tags::OBJECT_TYPE, "?").into());
    m.insert(
        "state".into(),
        enum_text(obj, tags::STATE, "PreActive").into(),
    );
    m.insert("names".into(), texts(tags::NAME).into());
    m.insert("groups".into(), texts(tags::OBJECT_GROUP).into());
    m.insert("created".into(), date_of(obj, tags::INITIAL_DATE));
    m.insert("last_change".into(), date_of(obj, tags::LAST_CHANGE_DATE));
    m
}

/// The summary and every attribute, by name. Attributes never hold key material.
fn details(obj: &StoredObject) -> Json {
    let mut m = summary(obj);
    let attributes: Vec<Json> = obj
        .attributes()
        .map(|a| {
            let name = match &a.name {
                AttributeName::Vendor { vendor, name } => format!("{vendor}:{name}"),
                other => other
                    .v1_name()
                    .unwrap_or_else(|| a.tag().map_or_else(String::new, tag_hex)),
            };
            json!({ "name": name, "value": value_json(a.tag().unwrap_or(Tag(0)), &a.value) })
        })
        .collect();
    m.insert("attributes".into(), attributes.into());
    Json::Object(m)
}

/// A value as JSON: enumerations and masks by name, dates as RFC 3339, bytes as hex,
/// structures as objects of their fields (a repeated field becomes a list).
fn value_json(tag: Tag, v: &Value) -> Json {
    match v {
        Value::Structure(items) => {
            let mut m = Map::new();
            for Ttlv { tag, value } in items {
                let key = tag_name(*tag).map_or_else(|| tag_hex(*tag), str::to_owned);
                let value = value_json(*tag, value);
                match m.get_mut(&key) {
                    Some(Json::Array(list)) => list.push(value),
                    Some(first) => *first = Json::Array(vec![first.take(), value]),
                    None => {
                        m.insert(key, value);
                    }
                }
            }
            Json::Object(m)
        }
        Value::Integer(i) => match mask_for_tag(tag) {
            Some(mask) => {
                let (flags, rest) = mask_flags(mask, *i as u32);
                let mut flags: Vec<String> = flags.into_iter().map(str::to_owned).collect();
                if rest != 0 {
                    flags.push(format!("0x{rest:08x}"));
                }
                flags.into()
            }
            None => (*i).into(),
        },
        Value::LongInteger(i) => (*i).into(),
        Value::BigInteger(b) | Value::ByteString(b) => hex::encode(b).into(),
        Value::Enumeration(e) => enum_names_for_tag(tag)
            .and_then(|n| n.name_of(*e))
            .map_or_else(|| format!("0x{e:08x}"), str::to_owned)
            .into(),
        Value::Boolean(b) => (*b).into(),
        Value::TextString(s) => s.clone().into(),
        Value::DateTime(d) => date_text(*d).into(),
        Value::DateTimeExtended(us) => date_text(us.div_euclid(1_000_000)).into(),
        Value::Interval(i) => (*i).into(),
    }
}

/// The operator's name from the header: required for actions, plain characters only.
pub(super) fn operator_name(given: Option<&str>) -> Result<String, String> {
    let name = given.map(str::trim).unwrap_or("");
    let plain = |c: char| c.is_ascii_alphanumeric() || "._@-".contains(c);
    if name.is_empty() || name.len() > MAX_OPERATOR_NAME || !name.chars().all(plain) {
        return Err(format!(
            "name the operator in the {OPERATOR_HEADER} header (`kmip-gateway keys|upstream … \
             --operator NAME`): 1 to {MAX_OPERATOR_NAME} of A-Z a-z 0-9 . _ @ -"
        ));
    }
    Ok(name.to_owned())
}

pub(super) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The Revocation Reason named by `reason` (`KeyCompromise`, `CessationOfOperation`, … as KMIP
/// names them) with `message`, and the compromise date a compromise requires.
fn revocation(
    get: &dyn Fn(&str) -> Option<String>,
    required: bool,
) -> Result<Option<(RevocationReason, Option<i64>)>, String> {
    let Some(name) = get("reason") else {
        return if required {
            Err("give the Revocation Reason: reason=KeyCompromise, CessationOfOperation, …".into())
        } else {
            Ok(None)
        };
    };
    let code: RevocationReasonCode = KmipEnum::from_u32(enum_value(
        tags::REVOCATION_REASON_CODE,
        "Revocation Reason Code",
        &name,
    )?);
    let compromise = matches!(
        code,
        RevocationReasonCode::KeyCompromise | RevocationReasonCode::CaCompromise
    );
    let date = match (get("compromise_date"), compromise) {
        (Some(d), true) => Some(
            OffsetDateTime::parse(&d, &Rfc3339)
                .map_err(|_| format!("compromise_date {d:?} is not an RFC 3339 date"))?
                .unix_timestamp(),
        ),
        (None, true) => {
            return Err(format!(
                "{name} needs the date the compromise occurred: compromise_date=RFC 3339 date \
                 (KMIP requires the Compromise Occurrence Date for it)"
            ))
        }
        (Some(_), false) => {
            return Err("compromise_date is only for KeyCompromise and CACompromise".into())
        }
        (None, false) => None,
    };
    Ok(Some((
        RevocationReason {
            code,
            message: get("message"),
        },
        date,
    )))
}

/// One operator action on one object.
struct Action<'a> {
    ops: &'a Ops,
    audit: Option<&'a Arc<AuditLog>>,
    call: &'a KeysCall<'a>,
    operator: &'a str,
    uid: &'a str,
}

impl Action<'_> {
    async fn revoke(&self, params: &[(String, String)]) -> Response {
        let get = match only_known(params, &["reason", "compromise_date", "message"]) {
            Ok(g) => g,
            Err(e) => return bad_request(&e),
        };
        let owned = |n: &str| get(n).map(str::to_owned);
        let (reason, date) = match revocation(&owned, true) {
            Ok(Some(r)) => r,
            Ok(None) => return bad_request("give the Revocation Reason"),
            Err(e) => return bad_request(&e),
        };
        let who = format!("admin:{}", self.operator);
        let started = SystemTime::now();
        let result = self
            .ops
            .operator_revoke(&who, now(), self.uid, reason, date)
            .await;
        self.record("Revoke", started, &result).await;
        self.answer(&["Revoke"], result)
    }

    async fn destroy(&self, params: &[(String, String)]) -> Response {
        let get = match only_known(params, &["reason", "message"]) {
            Ok(g) => g,
            Err(e) => return bad_request(&e),
        };
        let owned = |n: &str| get(n).map(str::to_owned);
        let reason = match revocation(&owned, false) {
            Ok(r) => r.map(|(r, _)| r),
            Err(e) => return bad_request(&e),
        };
        let who = format!("admin:{}", self.operator);
        let started = SystemTime::now();
        let steps = self
            .ops
            .operator_destroy(&who, now(), self.uid, reason)
            .await;
        let mut names = Vec::new();
        let mut last = Ok(());
        for (step, result) in steps {
            let name = match step {
                DestroyStep::Revoke => "Revoke",
                DestroyStep::Destroy => "Destroy",
            };
            self.record(name, started, &result).await;
            names.push(name);
            last = result;
        }
        self.answer(&names, last)
    }

    /// The audit record of one KMIP operation the operator ran: who (the operator's name, the
    /// token's id), from where, on which object, with what outcome.
    async fn record(&self, operation: &str, started: SystemTime, result: &Result<(), OpError>) {
        let Some(audit) = self.audit else { return };
        audit
            .record(AuditEvent {
                time: started,
                conn_id: 0,
                peer: self.call.peer,
                cert_subject: "admin token".into(),
                cert_fingerprint: self.call.token_id.clone(),
                user: format!("admin:{}", self.operator),
                operation: operation.into(),
                unique_identifiers: vec![self.uid.to_owned()],
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
                note: None,
            })
            .await;
    }

    fn answer(&self, steps: &[&str], result: Result<(), OpError>) -> Response {
        match result {
            Ok(()) => {
                let state = self
                    .ops
                    .operator_object(self.uid)
                    .map(|o| enum_text(&o, tags::STATE, "PreActive"));
                json_response(
                    "200 OK",
                    &json!({ "result": "success", "uid": self.uid, "steps": steps, "state": state }),
                )
            }
            Err(e) => {
                let status = match e {
                    OpError::NotFound => "404 Not Found",
                    OpError::Destroyed | OpError::WrongState(_) => "409 Conflict",
                    OpError::InvalidField(_) | OpError::MissingData(_) => "400 Bad Request",
                    _ => "500 Internal Server Error",
                };
                json_response(
                    status,
                    &json!({ "result": "failure", "uid": self.uid, "steps": steps, "error": e.to_string() }),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded_and_a_repeated_or_unknown_parameter_is_refused() {
        let p = parse_query("name=vol%201&group=a+b&detail").unwrap();
        assert_eq!(
            p,
            vec![
                ("name".into(), "vol 1".into()),
                ("group".into(), "a b".into()),
                ("detail".into(), String::new())
            ]
        );
        assert!(parse_query("user=a&user=b").is_err());
        assert!(parse_query("name=%zz").is_err());
        assert!(parse_query("name=%ff").is_err());
        assert!(only_known(&p, &["name", "group"]).is_err());
        let get = only_known(&p, &["name", "group", "detail"]).unwrap();
        assert_eq!(get("name"), Some("vol 1"));
    }

    #[test]
    fn operator_names_are_required_and_plain() {
        assert_eq!(operator_name(Some(" carol@site ")).unwrap(), "carol@site");
        for bad in [
            None,
            Some(""),
            Some("a b"),
            Some("x\u{7f}"),
            Some(&*"a".repeat(65)),
        ] {
            assert!(operator_name(bad).is_err(), "{bad:?}");
        }
    }
}
