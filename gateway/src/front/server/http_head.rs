//! The head of one HTTP/1.1 request on the KMIP-over-HTTPS listener: parsed, then checked
//! against what the listener serves (`POST /kmip`, a known body encoding, a `Content-Length`
//! within the limit). Pure: the request loop (`https`) does the I/O.

/// Largest request head (request line and header fields) read. Protects memory: KMIP clients
/// send a handful of short header fields.
pub(super) const MAX_HTTP_HEAD: usize = 8192;

/// The one path KMIP is served on (KMIP HTTPS profile).
pub(super) const KMIP_PATH: &str = "/kmip";

/// How far a text encoding may exceed the binary message size limit: the XML and JSON encodings
/// of a message take 2–4 times its TTLV bytes (names, hex byte strings). The TTLV converted from
/// the body is held to `max_message_size` itself.
pub(super) const TEXT_BODY_EXPANSION: usize = 4;

/// A KMIP message encoding, chosen by the request's `Content-Type`; the answer uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Ttlv,
    Xml,
    Json,
}

impl Encoding {
    /// The media type answered (and the one a client should send).
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Ttlv => "application/octet-stream",
            Encoding::Xml => "text/xml",
            Encoding::Json => "application/json",
        }
    }

    /// The metrics label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Encoding::Ttlv => "ttlv",
            Encoding::Xml => "xml",
            Encoding::Json => "json",
        }
    }

    /// By media type, parameters (`; charset=utf-8`) and case ignored.
    fn of_media_type(value: &str) -> Option<Encoding> {
        let media = value.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "application/octet-stream" => Some(Encoding::Ttlv),
            "text/xml" | "application/xml" => Some(Encoding::Xml),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }
}

/// An HTTP status the listener answers with: a fixed set, so metrics labels are never chosen by
/// a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    LengthRequired,
    PayloadTooLarge,
    UnsupportedMediaType,
    HeaderFieldsTooLarge,
    InternalError,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    /// The status line's code and reason phrase.
    pub(super) fn line(self) -> (&'static str, &'static str) {
        match self {
            Status::Ok => ("200", "OK"),
            Status::BadRequest => ("400", "Bad Request"),
            Status::NotFound => ("404", "Not Found"),
            Status::MethodNotAllowed => ("405", "Method Not Allowed"),
            Status::LengthRequired => ("411", "Length Required"),
            Status::PayloadTooLarge => ("413", "Content Too Large"),
            Status::UnsupportedMediaType => ("415", "Unsupported Media Type"),
            Status::HeaderFieldsTooLarge => ("431", "Request Header Fields Too Large"),
            Status::InternalError => ("500", "Internal Server Error"),
            Status::NotImplemented => ("501", "Not Implemented"),
            Status::VersionNotSupported => ("505", "HTTP Version Not Supported"),
        }
    }
}

/// A request the listener does not serve: the status and a message saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: Status,
    pub(super) message: String,
    /// The encoding, when the head named a known one (for the metrics label).
    pub(super) encoding: Option<Encoding>,
}

fn refuse(status: Status, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        encoding: None,
    }
}

/// A request head the listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) encoding: Encoding,
    pub(super) content_length: usize,
    /// The client asked to close after this answer (`Connection: close`, or HTTP/1.0).
    pub(super) close: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before sending its body.
    pub(super) expect_continue: bool,
}

/// The end of the head in `buf` (the index after its blank line), if it arrived whole.
pub(super) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses and checks a request head (`head` up to and including its blank line);
/// `max_message_size` bounds a TTLV body, [`TEXT_BODY_EXPANSION`] times it an XML or JSON body.
pub(super) fn check_head(head: &[u8], max_message_size: usize) -> Result<Head, Refusal> {
    let text = std::str::from_utf8(head)
        .map_err(|_| refuse(Status::BadRequest, "the request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse(Status::BadRequest, "malformed request line"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => {
            return Err(refuse(
                Status::VersionNotSupported,
                "only HTTP/1.1 (and 1.0) are served",
            ))
        }
    };
    let mut content_length: Option<usize> = None;
    let mut content_type: Option<&str> = None;
    let mut close = http10;
    let mut expect_continue = false;
    let mut chunked = false;
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(refuse(Status::BadRequest, "malformed header field"));
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value
                    .parse::<usize>()
                    .map_err(|_| refuse(Status::BadRequest, "Content-Length is not a number"))?;
                // Two different lengths: a request-smuggling attempt or a broken client.
                if content_length.is_some_and(|c| c != n) {
                    return Err(refuse(
                        Status::BadRequest,
                        "conflicting Content-Length fields",
                    ));
                }
                content_length = Some(n);
            }
            "content-type" => content_type = Some(value),
            "transfer-encoding" => chunked = true,
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.split(',').any(|t| t.trim() == "close") {
                    close = true;
                } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                    close = false;
                }
            }
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if target != KMIP_PATH {
        return Err(refuse(
            Status::NotFound,
            format!("KMIP is served at POST {KMIP_PATH}"),
        ));
    }
    if method != "POST" {
        return Err(refuse(
            Status::MethodNotAllowed,
            format!("KMIP is served at POST {KMIP_PATH}"),
        ));
    }
    if chunked {
        return Err(refuse(
            Status::NotImplemented,
            "Transfer-Encoding is not accepted: send the body with a Content-Length",
        ));
    }
    let Some(content_length) = content_length else {
        return Err(refuse(
            Status::LengthRequired,
            "a KMIP request needs a Content-Length",
        ));
    };
    let encoding = content_type
        .and_then(Encoding::of_media_type)
        .ok_or_else(|| {
            refuse(
            Status::UnsupportedMediaType,
            "Content-Type must be application/octet-stream (TTLV), text/xml or application/json",
        )
        })?;
    let limit = match encoding {
        Encoding::Ttlv => max_message_size,
        Encoding::Xml | Encoding::Json => max_message_size.saturating_mul(TEXT_BODY_EXPANSION),
    };
    if content_length > limit {
        return Err(Refusal {
            status: Status::PayloadTooLarge,
            message: format!(
                "the body ({content_length} bytes) is over this listener's limit of {limit} \
                 bytes for {} ([limits] max_message_size)",
                encoding.content_type()
            ),
            encoding: Some(encoding),
        });
    }
    Ok(Head {
        encoding,
        content_length,
        close,
        expect_continue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> Vec<u8> {
        format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
    }

    fn status_of(lines: &[&str]) -> Status {
        check_head(&head(lines), 1000).unwrap_err().status
    }

    #[test]
    fn a_kmip_post_is_accepted_in_each_encoding() {
        for (ct, enc) in [
            ("application/octet-stream", Encoding::Ttlv),
            ("text/xml; charset=utf-8", Encoding::Xml),
            ("Application/JSON", Encoding::Json),
        ] {
            let h = check_head(
                &head(&[
                    "POST /kmip HTTP/1.1",
                    "Host: x",
                    &format!("Content-Type: {ct}"),
                    "Content-Length: 10",
                ]),
                1000,
            )
            .unwrap();
            assert_eq!((h.encoding, h.content_length, h.close), (enc, 10, false));
        }
        let h = check_head(
            &head(&[
                "POST /kmip HTTP/1.0",
                "Content-Type: text/xml",
                "Content-Length: 1",
                "Expect: 100-continue",
            ]),
            1000,
        )
        .unwrap();
        assert!(h.close && h.expect_continue);
    }

    #[test]
    fn what_is_not_served_is_refused_with_its_status() {
        let ct = "Content-Type: application/octet-stream";
        assert_eq!(
            status_of(&["GET /kmip HTTP/1.1", ct, "Content-Length: 1"]),
            Status::MethodNotAllowed
        );
        assert_eq!(
            status_of(&["POST / HTTP/1.1", ct, "Content-Length: 1"]),
            Status::NotFound
        );
        assert_eq!(
            status_of(&["POST /kmip HTTP/2", ct, "Content-Length: 1"]),
            Status::VersionNotSupported
        );
        assert_eq!(
            status_of(&["POST /kmip HTTP/1.1", ct]),
            Status::LengthRequired
        );
        assert_eq!(
            status_of(&["POST /kmip HTTP/1.1", ct, "Transfer-Encoding: chunked"]),
            Status::NotImplemented
        );
        assert_eq!(
            status_of(&[
                "POST /kmip HTTP/1.1",
                "Content-Type: text/plain",
                "Content-Length: 1"
            ]),
            Status::UnsupportedMediaType
        );
        assert_eq!(
            status_of(&[
                "POST /kmip HTTP/1.1",
                ct,
                "Content-Length: 1",
                "Content-Length: 2"
            ]),
            Status::BadRequest
        );
        assert_eq!(status_of(&["POST /kmip"]), Status::BadRequest);
    }

    #[test]
    fn a_body_over_the_limit_is_refused_from_its_announced_length() {
        let ttlv = [
            "POST /kmip HTTP/1.1",
            "Content-Type: application/octet-stream",
        ];
        let r = check_head(&head(&[ttlv[0], ttlv[1], "Content-Length: 1001"]), 1000).unwrap_err();
        assert_eq!(r.status, Status::PayloadTooLarge);
        assert!(r.message.contains("max_message_size"), "{}", r.message);
        assert!(check_head(&head(&[ttlv[0], ttlv[1], "Content-Length: 1000"]), 1000).is_ok());
        // Text encodings get room for their expansion, no more.
        let json = |n: usize| {
            check_head(
                &head(&[
                    "POST /kmip HTTP/1.1",
                    "Content-Type: application/json",
                    &format!("Content-Length: {n}"),
                ]),
                1000,
            )
        };
        assert!(json(1000 * TEXT_BODY_EXPANSION).is_ok());
        assert_eq!(
            json(1000 * TEXT_BODY_EXPANSION + 1).unwrap_err().status,
            Status::PayloadTooLarge
        );
    }

    #[test]
    fn the_head_ends_at_its_blank_line() {
        assert_eq!(
            head_end(b"POST /kmip HTTP/1.1\r\nA: b\r\n\r\nBODY"),
            Some(29)
        );
        assert_eq!(head_end(b"POST /kmip HTTP/1.1\r\nA: b\r\n"), None);
    }
}
