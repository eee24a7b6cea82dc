//! The KMIP-over-HTTPS request loop of one authenticated connection (KMIP HTTPS profile):
//! HTTP/1.1 `POST /kmip`, keep-alive, one KMIP message per request in TTLV, XML or JSON (by
//! `Content-Type`), answered in the same encoding. The connection got here through the same
//! handshake, authentication and registry as a TTLV one (so reloads re-check and close it), and
//! its messages go through the same dispatcher (policy, audit) and capture.
//!
//! Limits: the head is read up to [`MAX_HTTP_HEAD`] under the read timeout once its first byte
//! came (the idle timeout before); the body's announced length is checked before any of it is
//! read (413, connection closed), then read through the in-flight byte budget like a TTLV body.

use super::framing::{read_message, ReadEnd};
use super::http_head::{check_head, head_end, Encoding, Refusal, Status, MAX_HTTP_HEAD};
use super::registry::now_ms;
use super::Server;
use crate::kmip::dispatch::{ConnContext, Outcome};
use crate::tooling::capture::ConnCapture;
use bytes::Bytes;
use kmip_wire::ttlv::{decode, Limits};
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::info;

/// Sent before reading a body the client holds back until told to go on (`Expect`).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How a request's head ended the wait for it.
enum HeadRead {
    /// The head is `buf[..end]`; what follows is the start of the body (or of the next request).
    Whole(usize),
    End(&'static str),
    TooLarge,
}

impl Server {
    /// Serves HTTP requests on one authenticated connection; returns why it ended. `ends`: the
    /// shutdown and this connection's close (revocation) signals.
    pub(super) async fn https_session<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        ctx: &ConnContext,
        ends: (watch::Receiver<bool>, watch::Receiver<bool>),
        last_seen: &AtomicI64,
        mut capture: Option<&mut ConnCapture>,
    ) -> &'static str {
        let (mut shutdown, mut close) = ends;
        // Bytes read past the previous request (a pipelined next one).
        let mut buf: Vec<u8> = Vec::with_capacity(MAX_HTTP_HEAD);
        loop {
            if *shutdown.borrow() || *close.borrow() {
                let _ = stream.shutdown().await;
                return "closed by server";
            }
            let end = match self
                .read_head(&mut stream, &mut buf, &mut shutdown, &mut close)
                .await
            {
                HeadRead::Whole(end) => end,
                HeadRead::End(why) => return why,
                HeadRead::TooLarge => {
                    let refusal = Refusal {
                        status: Status::HeaderFieldsTooLarge,
                        message: format!("the request head is over {MAX_HTTP_HEAD} bytes"),
                        encoding: None,
                    };
                    return self.refuse(&mut stream, ctx, &refusal).await;
                }
            };
            let head = match check_head(&buf[..end], self.limits.max_message_size) {
                Ok(h) => h,
                // The body was not read: the stream cannot be used for another request.
                Err(refusal) => return self.refuse(&mut stream, ctx, &refusal).await,
            };
            let arrived = buf.len() - end;
            // The charge on the in-flight budget is held until the request was handled.
            let (body, carry, _charge) = if arrived >= head.content_length {
                let body = Bytes::copy_from_slice(&buf[end..end + head.content_length]);
                (body, buf[end + head.content_length..].to_vec(), None)
            } else {
                if head.expect_continue && write_all(&mut stream, CONTINUE, self).await.is_err() {
                    return "write failed";
                }
                let deadline = tokio::time::Instant::now() + self.limits.read_timeout;
                let rest = head.content_length - arrived;
                match read_message(&mut stream, &buf[end..], rest, &self.inflight, deadline).await {
                    Ok((body, charge)) => (body, Vec::new(), Some(charge)),
                    Err(ReadEnd::Timeout) => return "read timeout",
                    Err(ReadEnd::Closed) => return "client closed mid-message",
                    Err(ReadEnd::Budget) => {
                        metrics::counter!("kmip_connections_closed_total", "reason" => "inflight_budget")
                            .increment(1);
                        info!(peer = %ctx.peer, user = %ctx.identity.user,
                              "in-flight request budget exhausted until the read timeout, closing");
                        return "in-flight request budget exhausted";
                    }
                }
            };
            buf = carry;
            // A close that came while the request was being read is not answered.
            if *shutdown.borrow() || *close.borrow() {
                let _ = stream.shutdown().await;
                return "closed by server";
            }
            last_seen.store(now_ms(), Ordering::Relaxed);
            let request = match body_to_ttlv(head.encoding, body) {
                Ok(r) => r,
                Err(message) => {
                    let refusal = Refusal {
                        status: Status::BadRequest,
                        message,
                        encoding: Some(head.encoding),
                    };
                    // The body was read whole: the connection stays usable.
                    if self.answer_refusal(&mut stream, ctx, &refusal, false).await {
                        continue;
                    }
                    return "write failed";
                }
            };
            if let Some(c) = capture.as_deref_mut() {
                c.request(&request);
            }
            let (response, keep_open) = match self.dispatcher.handle(ctx, request).await {
                Outcome::Respond(r) => (r, true),
                Outcome::RespondAndClose(r) => (r, false),
            };
            if let Some(c) = capture.as_deref_mut() {
                c.response(&response);
            }
            let keep_open = keep_open && !head.close;
            let written = match self.ttlv_to_body(head.encoding, &response) {
                Ok(body) => {
                    count(Some(head.encoding), Status::Ok);
                    let head_text = response_head(
                        Status::Ok,
                        head.encoding.content_type(),
                        body.len(),
                        keep_open,
                    );
                    write_response(&mut stream, &head_text, &body, self).await
                }
                Err(message) => {
                    let refusal = Refusal {
                        status: Status::InternalError,
                        message,
                        encoding: Some(head.encoding),
                    };
                    self.answer_refusal(&mut stream, ctx, &refusal, !keep_open)
                        .await
                }
            };
            if !written {
                return "write failed";
            }
            if !keep_open {
                let _ = stream.shutdown().await;
                return if head.close {
                    "client asked to close"
                } else {
                    "unparsable message"
                };
            }
        }
    }

    /// Reads until `buf` holds a whole request head: the first byte under the idle timeout
    /// (a revocation or shutdown ends the wait), the rest under the read timeout.
    async fn read_head<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        buf: &mut Vec<u8>,
        shutdown: &mut watch::Receiver<bool>,
        close: &mut watch::Receiver<bool>,
    ) -> HeadRead {
        if buf.is_empty() {
            let mut limited = (&mut *stream).take(MAX_HTTP_HEAD as u64);
            // Biased: when a revocation's close and the client's next request are both ready,
            // the close wins, so nothing sent after a revocation took effect is served.
            let first = tokio::select! {
                biased;
                _ = shutdown.changed() => return HeadRead::End("closed by server"),
                _ = close.changed() => return HeadRead::End("closed by server"),
                r = tokio::time::timeout(self.limits.idle_timeout, limited.read_buf(buf)) => r,
            };
            match first {
                Err(_) => return HeadRead::End("idle timeout"),
                Ok(Err(_)) | Ok(Ok(0)) => return HeadRead::End("client closed"),
                Ok(Ok(_)) => {}
            }
        }
        let deadline = tokio::time::Instant::now() + self.limits.read_timeout;
        loop {
            if let Some(end) = head_end(buf) {
                return HeadRead::Whole(end);
            }
            if buf.len() >= MAX_HTTP_HEAD {
                return HeadRead::TooLarge;
            }
            let room = MAX_HTTP_HEAD - buf.len();
            let mut limited = (&mut *stream).take(room as u64);
            match tokio::time::timeout_at(deadline, limited.read_buf(buf)).await {
                Err(_) => return HeadRead::End("read timeout"),
                Ok(Err(_)) | Ok(Ok(0)) => return HeadRead::End("client closed mid-header"),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Answers a request whose body was not read, and ends the connection.
    async fn refuse<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        ctx: &ConnContext,
        refusal: &Refusal,
    ) -> &'static str {
        self.answer_refusal(stream, ctx, refusal, true).await;
        let _ = stream.shutdown().await;
        "HTTP request refused"
    }

    /// Writes a refusal (plain text saying what to do); `false` when the write failed.
    async fn answer_refusal<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        ctx: &ConnContext,
        refusal: &Refusal,
        closing: bool,
    ) -> bool {
        count(refusal.encoding, refusal.status);
        let (code, _) = refusal.status.line();
        info!(peer = %ctx.peer, user = %ctx.identity.user, status = code,
              reason = %refusal.message, "HTTPS request refused");
        let body = format!("{}\n", refusal.message);
        let mut head = response_head(refusal.status, "text/plain", body.len(), !closing);
        if refusal.status == Status::MethodNotAllowed {
            // Inserted before the blank line ending the head.
            head.insert_str(head.len() - 2, "Allow: POST\r\n");
        }
        write_response(stream, &head, body.as_bytes(), self).await
    }

    /// The response body in the request's encoding.
    fn ttlv_to_body(&self, encoding: Encoding, response: &Bytes) -> Result<Bytes, String> {
        if encoding == Encoding::Ttlv {
            return Ok(response.clone());
        }
        // The dispatcher's own output: decoded without the request size limit it may exceed.
        let limits = Limits {
            max_message_size: response.len(),
            max_depth: self.limits.max_depth,
        };
        let tree = decode(response, &limits)
            .map_err(|e| format!("the response could not be re-encoded: {e}"))?;
        Ok(Bytes::from(match encoding {
            Encoding::Xml => kmip_wire::xml::to_xml_string(&tree),
            Encoding::Json | Encoding::Ttlv => kmip_wire::json::to_json_string(&tree),
        }))
    }
}

/// The TTLV message of a request body; an error says what is wrong with it.
fn body_to_ttlv(encoding: Encoding, body: Bytes) -> Result<Bytes, String> {
    let text = || {
        std::str::from_utf8(&body)
            .map(str::to_owned)
            .map_err(|_| format!("the {} body is not UTF-8", encoding.content_type()))
    };
    let tree = match encoding {
        Encoding::Ttlv => return Ok(body),
        Encoding::Xml => kmip_wire::xml::parse_node(&text()?)
            .and_then(|n| n.to_ttlv(&kmip_wire::xml::Bindings::new()))
            .map_err(|e| format!("the XML body is not a KMIP message: {e}"))?,
        Encoding::Json => kmip_wire::json::from_json_str(&text()?)
            .map_err(|e| format!("the JSON body is not a KMIP message: {e}"))?,
    };
    tree.to_bytes()
        .map_err(|e| format!("the message cannot be encoded as TTLV: {e}"))
}

fn count(encoding: Option<Encoding>, status: Status) {
    let encoding = encoding.map_or("none", Encoding::label);
    metrics::counter!("kmip_https_requests_total", "encoding" => encoding, "status" => status.line().0)
        .increment(1);
}

fn response_head(status: Status, content_type: &str, len: usize, keep_open: bool) -> String {
    let (code, reason) = status.line();
    let connection = if keep_open { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Connection: {connection}\r\n\r\n"
    )
}

async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    head: &str,
    body: &[u8],
    server: &Server,
) -> bool {
    write_all(stream, head.as_bytes(), server).await.is_ok()
        && write_all(stream, body, server).await.is_ok()
        && stream.flush().await.is_ok()
}

/// Writes under the read timeout: a client that never reads cannot hold the task.
async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    server: &Server,
) -> Result<(), ()> {
    match tokio::time::timeout(server.limits.read_timeout, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
