//! The KMIP 2.1 operations about the exchange rather than any object: Interop (§6.1.32, a test
//! harness marking where a test case begins, ends or is reset), Log (§6.1.35, a line the client
//! asks the server to log) and Set Endpoint Role (§6.1.54). Interop and Log write the client's
//! text to the operator's log and, through [`audit_note`], to the audit trail: escaped, so a
//! client cannot forge log lines, and bounded, so it cannot flood them.

use super::OpError;
use kmip_wire::model::*;

/// The most bytes of a client's Log Message that reach the log and the audit trail; the rest is
/// cut and counted. Protects the log's volume and keeps the note within the audit trail's
/// field bound (`tooling::audit::MAX_FIELD_BYTES`), so the two never disagree.
pub(crate) const MAX_LOG_MESSAGE_BYTES: usize = 400;
/// The most bytes of an Interop Identifier that are logged (the OASIS ones are a dozen).
pub(crate) const MAX_INTEROP_IDENTIFIER_BYTES: usize = 128;

/// `text` made safe for one log line: backslash, control characters (line breaks, escape
/// sequences, C1 codes) and the Unicode line separators and bidirectional overrides, which
/// could start a forged line or disguise one, become `\u{..}` escapes (`\\` for backslash, so an
/// escape in the output always came from the escaping). At most `max` bytes of escaped text
/// are kept; what is cut is counted in a final `…[N more bytes]`.
pub(crate) fn escaped(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (at, c) in text.char_indices() {
        let piece = if c == '\\' {
            "\\\\".to_owned()
        } else if needs_escape(c) {
            c.escape_unicode().to_string()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max {
            out.push_str(&format!("…[{} more bytes]", text.len() - at));
            return out;
        }
        out.push_str(&piece);
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Writes a client's Log Message to the operator's log under the authenticated user.
pub(super) fn log(user: &str, request: &LogRequest) {
    tracing::info!(
        target: "kmip_gateway::client_log",
        user = %user,
        message = %escaped(&request.message, MAX_LOG_MESSAGE_BYTES),
        "client log message"
    );
}

/// Records a test boundary the client's harness marks.
pub(super) fn interop(user: &str, request: &InteropRequest) {
    tracing::info!(
        target: "kmip_gateway::client_log",
        user = %user,
        function = ?request.function,
        identifier = %escaped(&request.identifier, MAX_INTEROP_IDENTIFIER_BYTES),
        "client interop test boundary"
    );
}

/// The gateway is always the server of its connections: it takes the Server role and refuses to
/// become a client, which would need it to send requests on the client's channel.
pub(super) fn set_endpoint_role(
    request: &SetEndpointRoleRequest,
) -> Result<EndpointRoleResponse, OpError> {
    match request.role {
        EndpointRole::Server => Ok(EndpointRoleResponse {
            role: EndpointRole::Server,
        }),
        EndpointRole::Client => Err(OpError::FeatureNotSupported(
            "the gateway is always the server of a connection; it cannot take the Client role"
                .into(),
        )),
        EndpointRole::Other(v) => Err(OpError::InvalidField(format!(
            "Endpoint Role {v:#010x} is neither Client nor Server"
        ))),
    }
}

/// The client's own text of a Log or Interop request as the audit trail notes it (escaped and
/// bounded like the log line); `None` for other operations.
pub(crate) fn audit_note(payload: &RequestPayload) -> Option<String> {
    match payload {
        RequestPayload::Log(r) => Some(escaped(&r.message, MAX_LOG_MESSAGE_BYTES)),
        RequestPayload::Interop(r) => Some(format!(
            "{:?} {}",
            r.function,
            escaped(&r.identifier, MAX_INTEROP_IDENTIFIER_BYTES)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_escape_sequences_cannot_start_a_forged_line() {
        let forged =
            "ok\n2026-01-01T00:00:00Z INFO user=admin destroyed\r\x1b[2K\u{2028}\u{202E}x\0";
        let out = escaped(forged, MAX_LOG_MESSAGE_BYTES);
        assert!(!out.chars().any(needs_escape), "{out}");
        assert_eq!(
            out,
            "ok\\u{a}2026-01-01T00:00:00Z INFO user=admin destroyed\\u{d}\\u{1b}[2K\\u{2028}\\u{202e}x\\u{0}"
        );
    }

    #[test]
    fn a_backslash_is_escaped_so_escapes_cannot_be_faked() {
        assert_eq!(escaped(r"a\u{a}b", 100), r"a\\u{a}b");
        assert_eq!(escaped("plain text, ünïcode", 100), "plain text, ünïcode");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_counted() {
        let long = "é".repeat(MAX_LOG_MESSAGE_BYTES);
        let out = escaped(&long, MAX_LOG_MESSAGE_BYTES);
        let kept = MAX_LOG_MESSAGE_BYTES / 2;
        assert_eq!(
            out,
            format!(
                "{}…[{} more bytes]",
                "é".repeat(kept),
                long.len() - 2 * kept
            )
        );
        // An escape is never split: it is kept whole or cut whole.
        let out = escaped("ab\n", 4);
        assert_eq!(out, "ab…[1 more bytes]");
        assert_eq!(escaped("", 4), "");
    }

    #[test]
    fn the_audit_note_fits_the_audit_field_bound() {
        let note = audit_note(&RequestPayload::Log(LogRequest {
            message: "x".repeat(10 * MAX_LOG_MESSAGE_BYTES),
        }))
        .unwrap_or_default();
        assert!(
            note.len() <= crate::tooling::audit::MAX_FIELD_BYTES,
            "{}",
            note.len()
        );
        assert!(note.ends_with(&format!("…[{} more bytes]", 9 * MAX_LOG_MESSAGE_BYTES)));
        let note = audit_note(&RequestPayload::Interop(InteropRequest {
            function: InteropFunction::Begin,
            identifier: "BL-M-1-21\n".into(),
        }));
        assert_eq!(note.as_deref(), Some("Begin BL-M-1-21\\u{a}"));
        assert_eq!(
            audit_note(&RequestPayload::SetEndpointRole(SetEndpointRoleRequest {
                role: EndpointRole::Server
            })),
            None
        );
    }

    #[test]
    fn the_gateway_takes_only_the_server_role() {
        let answer = set_endpoint_role(&SetEndpointRoleRequest {
            role: EndpointRole::Server,
        });
        assert!(matches!(answer, Ok(r) if r.role == EndpointRole::Server));
        let refused = set_endpoint_role(&SetEndpointRoleRequest {
            role: EndpointRole::Client,
        });
        assert!(matches!(refused, Err(OpError::FeatureNotSupported(_))));
        let unknown = set_endpoint_role(&SetEndpointRoleRequest {
            role: EndpointRole::Other(3),
        });
        assert!(matches!(unknown, Err(OpError::InvalidField(_))));
    }
}
