//! The replayable form of the XML capture: server-assigned identifiers and date-times as the
//! placeholders `kmip-conformance` binds (`$UNIQUE_IDENTIFIER_n`, `$NOW-n`), so a capture can be
//! replayed against another server. The placeholder convention is defined here and the
//! conformance runner uses it.

use kmip_wire::spec::tags;
use kmip_wire::ttlv::{ItemType, Tag, Ttlv, Value};
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;
use time::OffsetDateTime;

use super::redact::{walk, Shown};

/// Placeholder name prefix of the identifiers the server returns, numbered by first appearance.
pub const UID_PREFIX: &str = "UNIQUE_IDENTIFIER_";

/// Tags carrying identifiers the server assigned.
pub const IDENTIFIER_TAGS: [Tag; 3] = [
    tags::UNIQUE_IDENTIFIER,
    tags::PRIVATE_KEY_UNIQUE_IDENTIFIER,
    tags::PUBLIC_KEY_UNIQUE_IDENTIFIER,
];

/// Distinct server identifiers a capture's XML numbers: bounds the memory of a long connection
/// (a Locate can return many); past it, identifiers stay literal.
const MAX_REPLAY_IDENTIFIERS: usize = 100_000;
/// Distinct client-sent date-times remembered per capture, for the same reason.
const MAX_REPLAY_TIMES: usize = 10_000;
/// A response date-time this close to the response's own time is taken as chosen by the server.
const SERVER_TIME_WINDOW_SECS: u64 = 24 * 3600;

/// What the XML of one capture has learnt for replays: the identifiers the server returned,
/// numbered by first appearance in a response (the order in which `kmip-conformance` binds
/// `$UNIQUE_IDENTIFIER_n`), and the date-times the client sent.
#[derive(Debug, Default)]
pub struct ReplayState {
    identifiers: HashMap<String, usize>,
    request_times: HashSet<i64>,
}

impl ReplayState {
    fn identifier(
        &mut self,
        uid: &str,
        in_response: bool,
        is_identifier_tag: bool,
    ) -> Option<String> {
        let n = match self.identifiers.get(uid) {
            Some(n) => *n,
            // Numbered where `kmip-conformance` numbers: identifier tags of a response.
            None if in_response
                && is_identifier_tag
                && self.identifiers.len() < MAX_REPLAY_IDENTIFIERS =>
            {
                let n = self.identifiers.len();
                self.identifiers.insert(uid.to_owned(), n);
                n
            }
            // Named by the client, never returned by the server here: kept as written.
            None => return None,
        };
        Some(format!("${}{n}", UID_PREFIX))
    }

    /// A response's date-time close to the response's own time and not sent by the client:
    /// chosen by the server (Initial Date, Last Change Date...), so written relative to `$NOW`.
    fn time(&mut self, secs: i64, in_response: bool, at: i64) -> Option<String> {
        if !in_response {
            if self.request_times.len() < MAX_REPLAY_TIMES {
                self.request_times.insert(secs);
            }
            return None;
        }
        let age = at.checked_sub(secs)?;
        if age.unsigned_abs() > SERVER_TIME_WINDOW_SECS || self.request_times.contains(&secs) {
            return None;
        }
        Some(match age {
            0 => "$NOW".to_owned(),
            a if a > 0 => format!("$NOW-{a}"),
            a => format!("$NOW+{}", a.unsigned_abs()),
        })
    }
}

/// The form of a message the XML capture holds, so that a replay against another server (or
/// later) can match: [redacted](super::redact()) first; every identifier the server returned (in this message, if a
/// response, or earlier) written as `$UNIQUE_IDENTIFIER_n`; the server's date-times in a
/// response as `$NOW-n`. `at` is when the message went over the wire.
pub fn replay_form<'a>(
    t: &'a Ttlv,
    in_response: bool,
    at: SystemTime,
    state: &mut ReplayState,
) -> Shown<'a> {
    let at = OffsetDateTime::from(at).unix_timestamp();
    walk(t, false, &mut |leaf| {
        let (item_type, name) = match &leaf.value {
            Value::TextString(uid) => {
                let is_identifier_tag = IDENTIFIER_TAGS.contains(&leaf.tag);
                (
                    ItemType::TextString,
                    state.identifier(uid, in_response, is_identifier_tag)?,
                )
            }
            Value::DateTime(secs) => (ItemType::DateTime, state.time(*secs, in_response, at)?),
            Value::DateTimeExtended(us) => (
                ItemType::DateTimeExtended,
                state.time(us.div_euclid(1_000_000), in_response, at)?,
            ),
            _ => return None,
        };
        // The header's time stamp is not compared by the runner: kept as it was.
        (leaf.tag != tags::TIME_STAMP).then_some(Shown::Named {
            tag: leaf.tag,
            item_type,
            name,
        })
    })
}
