//! The KMIP listener: accept loop, TLS handshake, authentication, framing, graceful shutdown.
//!
//! A connection permit is taken *before* accept, so the gateway never holds more than
//! `max_connections` sockets; a connection over the limit is closed at once and counted. The
//! handshake runs in the connection's own task under a timeout. Each message's 8-byte header is
//! checked against the size limit before its body buffer is allocated.

use crate::config::LimitsConfig;
use crate::dispatch::{ConnContext, Dispatcher, Outcome};
use crate::tls::{handshake_failure_label, Identity, TlsState};
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use kmip_wire::ttlv::{message_length, Limits, HEADER_LEN};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// What the registry knows of an open connection (for `clients`, and to close revoked ones).
pub struct ConnEntry {
    pub identity: Identity,
    pub peer: SocketAddr,
    pub opened: SystemTime,
    /// Sending `true` asks the connection to close after its current request.
    pub close: watch::Sender<bool>,
}

/// State shared by the accept loop and all connections.
pub struct Listener {
    pub tls: Arc<ArcSwap<TlsState>>,
    pub dispatcher: Arc<Dispatcher>,
    pub limits: LimitsConfig,
    pub connections: DashMap<u64, ConnEntry>,
    next_conn_id: AtomicU64,
}

impl Listener {
    pub fn new(
        tls: Arc<ArcSwap<TlsState>>,
        dispatcher: Arc<Dispatcher>,
        limits: LimitsConfig,
    ) -> Listener {
        Listener {
            tls,
            dispatcher,
            limits,
            connections: DashMap::new(),
            next_conn_id: AtomicU64::new(1),
        }
    }

    /// Accepts until `shutdown` turns true, then waits up to the grace period for open
    /// connections to finish their in-flight request.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let max = self.limits.max_connections;
        let permits = Arc::new(Semaphore::new(max));
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    metrics::counter!("kmip_accept_errors_total").increment(1);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                metrics::counter!("kmip_connections_refused_total", "reason" => "limit")
                    .increment(1);
                debug!(%peer, max, "connection over the limit closed");
                drop(stream);
                continue;
            };
            metrics::counter!("kmip_connections_accepted_total").increment(1);
            let this = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                metrics::gauge!("kmip_connections_open").increment(1.0);
                this.connection(stream, peer, shutdown).await;
                metrics::gauge!("kmip_connections_open").decrement(1.0);
                drop(permit);
            });
        }
        info!("listener stopped accepting; waiting for open connections");
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        if tokio::time::timeout(self.limits.shutdown_grace, permits.acquire_many(all))
            .await
            .is_err()
        {
            warn!(
                open = self.connections.len(),
                "shutdown grace period over with connections still open"
            );
        }
    }

    async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let tls = self.tls.load_full();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let started = Instant::now();
        let stream = match tokio::time::timeout(
            self.limits.handshake_timeout,
            acceptor.accept(stream),
        )
        .await
        {
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
        let identity = match tls.authenticate(stream.get_ref().1.peer_certificates()) {
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
        drop(tls);
        let conn_id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (close_tx, close_rx) = watch::channel(false);
        self.connections.insert(
            conn_id,
            ConnEntry {
                identity: identity.clone(),
                peer,
                opened: SystemTime::now(),
                close: close_tx,
            },
        );
        debug!(%peer, conn_id, user = %identity.user, "client authenticated");
        let ctx = ConnContext {
            conn_id,
            peer,
            identity,
        };
        let end = self.session(stream, &ctx, shutdown, close_rx).await;
        self.connections.remove(&conn_id);
        debug!(%peer, conn_id, end, "connection closed");
    }

    /// Request/response loop of one authenticated connection; returns why it ended.
    async fn session<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        ctx: &ConnContext,
        mut shutdown: watch::Receiver<bool>,
        mut close: watch::Receiver<bool>,
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
            let first = tokio::select! {
                r = tokio::time::timeout(self.limits.idle_timeout, stream.read_u8()) => r,
                _ = shutdown.changed() => continue,
                _ = close.changed() => continue,
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
            let mut buf = BytesMut::with_capacity(HEADER_LEN + body_len);
            buf.extend_from_slice(&header);
            buf.resize(HEADER_LEN + body_len, 0);
            match tokio::time::timeout(
                self.limits.read_timeout,
                stream.read_exact(&mut buf[HEADER_LEN..]),
            )
            .await
            {
                Err(_) => return "read timeout",
                Ok(Err(_)) => return "client closed mid-message",
                Ok(Ok(_)) => {}
            }
            let request: Bytes = buf.freeze();
            let (response, keep_open) = match self.dispatcher.handle(ctx, request).await {
                Outcome::Respond(r) => (r, true),
                Outcome::RespondAndClose(r) => (r, false),
            };
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
