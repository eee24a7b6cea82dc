//! One connection's task: the TLS handshake under its timeout, authentication of the client
//! certificate, registration, then the request/response loop (TTLV, or HTTP on the HTTPS
//! listener: `https`) until the client, a timeout, a framing error, a reload that revoked the
//! certificate or shutdown ends it.

use super::framing::{read_message, ReadEnd};
use super::registry::{now_ms, ConnEntry};
use super::slots::HandshakeSlot;
use super::{Protocol, Server};
use crate::front::tls::handshake_failure_label;
use crate::kmip::dispatch::{ConnContext, Outcome};
use crate::tooling::capture::ConnCapture;
use kmip_wire::ttlv::{message_length, Limits, HEADER_LEN};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info};

impl Server {
    /// Runs one accepted connection to its end; `handshake` is given back when the handshake ends.
    pub(super) async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        handshake: HandshakeSlot,
        protocol: Protocol,
    ) {
        let _ = stream.set_nodelay(true);
        let tls = self.tls.load_full();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let started = Instant::now();
        let accepted =
            tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(stream)).await;
        drop(handshake);
        let stream = match accepted {
            Err(_) => {
                metrics::counter!("kmip_handshake_failures_total", "reason" => "timeout")
                    .increment(1);
                info!(%peer, reason = "timeout", "TLS handshake failed");
                return;
            }
            Ok(Err(e)) => {
                let reason = handshake_failure_label(&e);
                metrics::counter!("kmip_handshake_failures_total", "reason" => reason).increment(1);
                info!(%peer, reason, error = %e, "TLS handshake failed: cannot connect and authenticate");
                return;
            }
            Ok(Ok(s)) => s,
        };
        metrics::histogram!("kmip_handshake_seconds").record(started.elapsed().as_secs_f64());
        let chain: Vec<CertificateDer<'static>> = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
            .unwrap_or_default();
        let conn = stream.get_ref().1;
        // For the connection's success line: what was negotiated, never key material.
        let tls_version = conn
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("unknown");
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("unknown");
        let full_handshake = matches!(
            stream.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full | rustls::HandshakeKind::FullWithHelloRetryRequest)
        );
        let identity = match tls.authenticate(Some(&chain), full_handshake) {
            Ok(id) => id,
            Err(e) => {
                metrics::counter!("kmip_connections_refused_total", "reason" => e.label())
                    .increment(1);
                info!(%peer, reason = e.label(), error = %e, "client refused after handshake");
                let mut stream = stream;
                let _ = stream.shutdown().await;
                return;
            }
        };
        let last_seen = self
            .registry
            .note_client(&identity, chain.first().map_or(&[][..], |c| c.as_ref()));
        let conn_id = self.registry.next_id();
        let (close_tx, close_rx) = watch::channel(false);
        self.registry.connections.insert(
            conn_id,
            ConnEntry {
                identity: identity.clone(),
                peer,
                opened: SystemTime::now(),
                chain,
                close: close_tx,
            },
        );
        // A reload stores its state, then re-checks the registry: if it stored after this
        // connection's handshake, it may have re-checked before the insert above, so check here.
        let current = self.tls.load_full();
        if !Arc::ptr_eq(&tls, &current) {
            // The map guard is dropped at the end of this statement, before the remove below.
            let verdict = self
                .registry
                .connections
                .get(&conn_id)
                .map(|c| current.authenticate(Some(&c.chain), false));
            if let Some(Err(e)) = verdict {
                self.registry.connections.remove(&conn_id);
                metrics::counter!("kmip_connections_refused_total", "reason" => e.label())
                    .increment(1);
                info!(%peer, reason = e.label(), error = %e, "client refused after a concurrent reload");
                let mut stream = stream;
                let _ = stream.shutdown().await;
                return;
            }
        }
        drop((tls, current));
        // Once per connection: who came in, with which certificate, over what TLS.
        info!(%peer, conn_id, user = %identity.user, serial = %identity.serial_hex,
              tls_version = %tls_version, cipher_suite = %cipher_suite, "client connected");
        let mut capture = self
            .capture
            .as_ref()
            .map(|c| c.connection(conn_id, peer, &identity));
        let ctx = ConnContext::new(conn_id, peer, identity);
        let end = match protocol {
            Protocol::Ttlv => {
                self.session(
                    stream,
                    &ctx,
                    shutdown,
                    close_rx,
                    &last_seen,
                    capture.as_mut(),
                )
                .await
            }
            Protocol::Https => {
                let ends = (shutdown, close_rx);
                self.https_session(stream, &ctx, ends, &last_seen, capture.as_mut())
                    .await
            }
        };
        if let Some(c) = capture.as_mut() {
            c.closed(end);
        }
        self.registry.connections.remove(&conn_id);
        debug!(%peer, conn_id, end, "connection closed");
    }

    /// Request/response loop of one authenticated connection; returns why it ended.
    async fn session<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        ctx: &ConnContext,
        mut shutdown: watch::Receiver<bool>,
        mut close: watch::Receiver<bool>,
        last_seen: &AtomicI64,
        mut capture: Option<&mut ConnCapture>,
    ) -> &'static str {
        let limits = Limits {
            max_message_size: self.limits.max_message_size,
            max_depth: self.limits.max_depth,
        };
        loop {
            if *shutdown.borrow() || *close.borrow() {
                let _ = stream.shutdown().await;
                return "closed by server";
            }
            let mut header = [0u8; HEADER_LEN];
            // Biased: when a revocation's close and the client's next request are both ready,
            // the close wins, so nothing sent after a revocation took effect is served.
            let first = tokio::select! {
                biased;
                _ = shutdown.changed() => continue,
                _ = close.changed() => continue,
                r = tokio::time::timeout(self.limits.idle_timeout, stream.read_u8()) => r,
            };
            header[0] = match first {
                Err(_) => return "idle timeout",
                Ok(Err(_)) => return "client closed",
                Ok(Ok(b)) => b,
            };
            let body_len = match tokio::time::timeout(
                self.limits.read_timeout,
                stream.read_exact(&mut header[1..]),
            )
            .await
            {
                Err(_) => return "read timeout",
                Ok(Err(_)) => return "client closed mid-header",
                Ok(Ok(_)) => match message_length(&header, &limits) {
                    Ok(total) => total - HEADER_LEN,
                    Err(e) => {
                        metrics::counter!("kmip_framing_errors_total").increment(1);
                        info!(peer = %ctx.peer, user = %ctx.identity.user, error = %e, "framing error, closing");
                        return "framing error";
                    }
                },
            };
            let deadline = tokio::time::Instant::now() + self.limits.read_timeout;
            // Held until the request was handled: dispatch keeps slices of its buffer.
            let (request, _charge) = match read_message(
                &mut stream,
                &header,
                body_len,
                &self.inflight,
                deadline,
            )
            .await
            {
                Ok(r) => r,
                Err(ReadEnd::Timeout) => return "read timeout",
                Err(ReadEnd::Closed) => return "client closed mid-message",
                Err(ReadEnd::Budget) => {
                    metrics::counter!("kmip_connections_closed_total", "reason" => "inflight_budget")
                            .increment(1);
                    info!(peer = %ctx.peer, user = %ctx.identity.user,
                              "in-flight request budget exhausted until the read timeout, closing");
                    return "in-flight request budget exhausted";
                }
            };
            // A close that came while the message was being read is not answered either.
            if *shutdown.borrow() || *close.borrow() {
                let _ = stream.shutdown().await;
                return "closed by server";
            }
            last_seen.store(now_ms(), Ordering::Relaxed);
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
            match tokio::time::timeout(self.limits.read_timeout, stream.write_all(&response)).await
            {
                Ok(Ok(())) => {}
                _ => return "write failed",
            }
            if stream.flush().await.is_err() {
                return "write failed";
            }
            if !keep_open {
                let _ = stream.shutdown().await;
                return "unparsable message";
            }
        }
    }
}
