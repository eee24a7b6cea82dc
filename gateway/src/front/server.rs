//! The KMIP listener: accept loop, TLS handshake, authentication, framing, graceful shutdown.
//!
//! A connection permit is taken *before* accept, so the gateway never holds more than
//! `max_connections` sockets, and a source slot right after it, so that one host never holds more
//! than `max_connections_per_source`; then a handshake slot (`max_handshakes` in total,
//! `max_handshakes_per_source`), held only until the TLS handshake ends, so sockets that never
//! finish it cannot lock clients out. A connection over any limit is closed at once and counted.
//! The handshake runs in the connection's own task under a timeout.
//!
//! Each message's 8-byte header is checked against the size limit; its buffer then grows only
//! as bytes arrive, and every byte of buffer is charged to the in-flight budget
//! (`max_inflight_request_bytes`) before it is allocated, so what clients announce costs
//! nothing and what they send is bounded in total.
//!
//! The listener also keeps what operators need for certificate day-2 work: the registry of open
//! connections with each one's certificate chain (so a reload can re-check and close connections
//! whose certificate was revoked or denied), and when each client certificate was last seen.

use crate::config::LimitsConfig;
use crate::front::tls::{
    cert_subject_and_expiry, handshake_failure_label, ExpiryKind, TlsState, EXPIRY_WARNING,
};
use crate::identity::Identity;
use crate::kmip::dispatch::{ConnContext, Dispatcher, Outcome};
use crate::tooling::capture::{Capture, ConnCapture};
use arc_swap::ArcSwap;
use bytes::Bytes;
use dashmap::DashMap;
use kmip_wire::ttlv::{message_length, Limits, HEADER_LEN};
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

/// Client certificates remembered for `clients`: bounds the last-seen table against a stream of
/// distinct certificates (each entry is a few hundred bytes).
pub const MAX_TRACKED_CLIENTS: usize = 10_000;
/// A client certificate close to expiry is warned about at most this often, not per connection.
const CLIENT_EXPIRY_WARNING_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Buffer allocated for a message body before any of it arrived; the buffer then doubles as it
/// fills. Keeps a header announcing a large body from costing more than this, while a large
/// message is read in a handful of allocations.
const FIRST_BODY_CHUNK: usize = 4096;

/// What the registry knows of an open connection (for `clients`, and to close revoked ones).
pub struct ConnEntry {
    pub identity: Identity,
    pub peer: SocketAddr,
    pub opened: SystemTime,
    /// The client's certificate chain (leaf first), re-checked on reload.
    pub chain: Vec<CertificateDer<'static>>,
    /// Sending `true` asks the connection to close after its current request.
    pub close: watch::Sender<bool>,
}

/// One client certificate the gateway has let in.
pub struct ClientSeen {
    pub user: String,
    pub subject: String,
    pub serial_hex: String,
    /// The certificate's `notAfter`, Unix seconds.
    pub not_after: Option<i64>,
    pub first_seen: SystemTime,
    /// Unix milliseconds of the last authentication or request; shared with open connections.
    pub last_seen_ms: Arc<AtomicI64>,
    last_expiry_warning: Option<Instant>,
}

/// A row of `GET /clients`: one client certificate.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ClientReport {
    pub user: String,
    pub fingerprint: String,
    pub subject: String,
    pub serial: String,
    pub not_after: Option<i64>,
    /// Unix seconds.
    pub first_seen: i64,
    /// Unix seconds.
    pub last_seen: i64,
    pub open_connections: usize,
}

/// What a re-check of the open connections found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecheckReport {
    pub checked: usize,
    /// Connections whose certificate no longer passes.
    pub failing: usize,
    /// Of those, the ones asked to close.
    pub closed: usize,
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Open connections per source, for `limits.max_connections_per_source`. An entry exists only
/// while its source has a connection open, so the table holds at most `max_connections` entries.
struct SourceSlots {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One connection's place in [`SourceSlots`], given back when dropped.
struct SourceSlot {
    slots: Arc<SourceSlots>,
    source: IpAddr,
}

/// The address a per-source limit counts: IPv4 (also when mapped into IPv6) as is, IPv6 by its
/// /64, the block one host or site normally gets.
fn source_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

impl SourceSlots {
    fn new(max: usize) -> Arc<SourceSlots> {
        Arc::new(SourceSlots {
            open: Mutex::new(HashMap::new()),
            max,
        })
    }

    /// A slot for a connection from `peer`, or `None` when its source is at the limit.
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<SourceSlot> {
        let source = source_of(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(source).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            slots: self.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// A connection's place among those still in the TLS handshake, given back when dropped (at the
/// end of the handshake, whatever its outcome).
struct HandshakeSlot {
    _total: OwnedSemaphorePermit,
    _source: SourceSlot,
}

impl HandshakeSlot {
    fn new(total: OwnedSemaphorePermit, source: SourceSlot) -> HandshakeSlot {
        metrics::gauge!("kmip_handshakes_in_progress").increment(1.0);
        HandshakeSlot {
            _total: total,
            _source: source,
        }
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        metrics::gauge!("kmip_handshakes_in_progress").decrement(1.0);
    }
}

/// Why a message could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    Timeout,
    Closed,
    /// The in-flight budget had no room for the message's next bytes before the read timeout.
    Budget,
}

/// The share of the in-flight request budget one message holds (its buffer's capacity), given
/// back when dropped: after the message was handled and its buffer freed.
struct Charge {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Charge {
    fn new() -> Charge {
        metrics::gauge!("kmip_inflight_requests").increment(1.0);
        Charge {
            permit: None,
            bytes: 0,
        }
    }

    /// Waits (until `deadline`) for `bytes` more of `budget`.
    async fn add(
        &mut self,
        budget: &Arc<Semaphore>,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), ReadEnd> {
        let n = u32::try_from(bytes).map_err(|_| ReadEnd::Budget)?;
        let permit =
            match tokio::time::timeout_at(deadline, budget.clone().acquire_many_owned(n)).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) | Err(_) => return Err(ReadEnd::Budget),
            };
        match self.permit.as_mut() {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
        self.bytes += bytes;
        metrics::gauge!("kmip_inflight_request_bytes").increment(bytes as f64);
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        metrics::gauge!("kmip_inflight_requests").decrement(1.0);
        metrics::gauge!("kmip_inflight_request_bytes").decrement(self.bytes as f64);
    }
}

/// Reads the rest of a message whose `header` announced `body_len` bytes (already checked
/// against the size limit), by `deadline`. The buffer starts at [`FIRST_BODY_CHUNK`] and doubles
/// only when full, each growth charged to `budget` before it is allocated: a client that announces
/// a large body and sends nothing costs one small chunk, not the announced size.
async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    header: &[u8; HEADER_LEN],
    body_len: usize,
    budget: &Arc<Semaphore>,
    deadline: tokio::time::Instant,
) -> Result<(Bytes, Charge), ReadEnd> {
    let total = HEADER_LEN + body_len;
    let mut charge = Charge::new();
    let first = total.min(HEADER_LEN + FIRST_BODY_CHUNK);
    charge.add(budget, first, deadline).await?;
    let mut buf = Vec::with_capacity(first);
    buf.extend_from_slice(header);
    while buf.len() < total {
        if buf.len() == buf.capacity() {
            let grow = buf.capacity().min(total - buf.len());
            charge.add(budget, grow, deadline).await?;
            buf.reserve_exact(grow);
        }
        let room = (buf.capacity() - buf.len()).min(total - buf.len());
        let mut limited = (&mut *stream).take(room as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
            Err(_) => return Err(ReadEnd::Timeout),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(ReadEnd::Closed),
            Ok(Ok(_)) => {}
        }
    }
    Ok((Bytes::from(buf), charge))
}

/// State shared by the accept loop and all connections.
pub struct Listener {
    pub tls: Arc<ArcSwap<TlsState>>,
    pub dispatcher: Arc<Dispatcher>,
    pub limits: LimitsConfig,
    pub connections: DashMap<u64, ConnEntry>,
    /// Client certificates by SHA-256 fingerprint.
    pub clients: DashMap<String, ClientSeen>,
    /// Bytes of request buffers all connections may hold (`max_inflight_request_bytes`).
    inflight: Arc<Semaphore>,
    /// The wire capture, when `--capture`/`capture_dir` is set.
    capture: Option<Arc<Capture>>,
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
            clients: DashMap::new(),
            inflight: Arc::new(Semaphore::new(limits.max_inflight_request_bytes)),
            capture: None,
            next_conn_id: AtomicU64::new(1),
        }
    }

    /// Captures every authenticated connection's messages (see [`crate::tooling::capture`]).
    pub fn with_capture(mut self, capture: Option<Arc<Capture>>) -> Listener {
        self.capture = capture;
        self
    }

    /// Re-authenticates every open connection's certificate against `state` (new CRLs, deny-list,
    /// users, CAs) and, when `close` is set, asks the failing ones to close after their current
    /// request.
    pub fn recheck(&self, state: &TlsState, close: bool) -> RecheckReport {
        let mut report = RecheckReport::default();
        for entry in self.connections.iter() {
            report.checked += 1;
            let Err(e) = state.authenticate(Some(&entry.chain), false) else {
                continue;
            };
            report.failing += 1;
            let id = &entry.identity;
            if close {
                report.closed += 1;
                // A connection that ended meanwhile has dropped its receiver: nothing to close.
                let _ = entry.close.send(true);
                metrics::counter!("kmip_connections_closed_total", "reason" => e.label())
                    .increment(1);
                warn!(conn_id = *entry.key(), peer = %entry.peer, user = %id.user, serial = %id.serial_hex,
                      reason = e.label(), "closing connection: its certificate no longer passes");
            } else {
                warn!(conn_id = *entry.key(), peer = %entry.peer, user = %id.user, serial = %id.serial_hex,
                      reason = e.label(), "open connection's certificate no longer passes; kept open (close_revoked_connections = false)");
            }
        }
        report
    }

    /// Every client certificate seen since start, with its open connections, most recent first.
    pub fn clients_report(&self) -> Vec<ClientReport> {
        let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for c in self.connections.iter() {
            *open.entry(c.identity.fingerprint.clone()).or_default() += 1;
        }
        let mut rows: Vec<ClientReport> = self
            .clients
            .iter()
            .map(|c| ClientReport {
                user: c.user.clone(),
                fingerprint: c.key().clone(),
                subject: c.subject.clone(),
                serial: c.serial_hex.clone(),
                not_after: c.not_after,
                first_seen: unix_secs(c.first_seen),
                last_seen: c.last_seen_ms.load(Ordering::Relaxed) / 1000,
                open_connections: open.get(c.key()).copied().unwrap_or(0),
            })
            .collect();
        rows.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.user.cmp(&b.user)));
        rows
    }

    /// Records an authenticated client certificate; returns its shared last-seen clock. Exports its
    /// expiry and warns (at most daily per certificate) when it is within [`EXPIRY_WARNING`].
    fn note_client(&self, identity: &Identity, leaf: &[u8]) -> Arc<AtomicI64> {
        let now = now_ms();
        if !self.clients.contains_key(&identity.fingerprint)
            && self.clients.len() >= MAX_TRACKED_CLIENTS
        {
            self.evict_oldest_client();
        }
        let mut entry = self
            .clients
            .entry(identity.fingerprint.clone())
            .or_insert_with(|| {
                let (subject, not_after) = match cert_subject_and_expiry(leaf) {
                    Some((s, n)) => (s, Some(n)),
                    None => (identity.subject.clone(), None),
                };
                if let Some(n) = not_after {
                    metrics::gauge!("kmip_cert_expiry_seconds", "kind" => ExpiryKind::Client.label(), "subject" => subject.clone())
                        .set(n as f64);
                }
                ClientSeen {
                    user: identity.user.clone(),
                    subject,
                    serial_hex: identity.serial_hex.clone(),
                    not_after,
                    first_seen: SystemTime::now(),
                    last_seen_ms: Arc::new(AtomicI64::new(now)),
                    last_expiry_warning: None,
                }
            });
        entry.last_seen_ms.store(now, Ordering::Relaxed);
        if let Some(not_after) = entry.not_after {
            let left = not_after.saturating_sub(now / 1000);
            let due = entry
                .last_expiry_warning
                .is_none_or(|t| t.elapsed() >= CLIENT_EXPIRY_WARNING_INTERVAL);
            if left < EXPIRY_WARNING.as_secs() as i64 && due {
                entry.last_expiry_warning = Some(Instant::now());
                warn!(user = %identity.user, serial = %identity.serial_hex, subject = %entry.subject,
                      days_left = left / 86_400, "client certificate expires soon: the client loses access when it does");
            }
        }
        entry.last_seen_ms.clone()
    }

    fn evict_oldest_client(&self) {
        let oldest = self
            .clients
            .iter()
            .min_by_key(|c| c.last_seen_ms.load(Ordering::Relaxed))
            .map(|c| c.key().clone());
        if let Some(k) = oldest {
            self.clients.remove(&k);
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
        let sources = SourceSlots::new(self.limits.max_connections_per_source);
        let handshakes = Arc::new(Semaphore::new(self.limits.max_handshakes));
        let handshake_sources = SourceSlots::new(self.limits.max_handshakes_per_source);
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
            let Some(slot) = sources.take(peer.ip()) else {
                metrics::counter!("kmip_connections_refused_total", "reason" => "source_limit")
                    .increment(1);
                debug!(
                    %peer,
                    max = sources.max,
                    "connection over the per-source limit closed"
                );
                drop(stream);
                continue;
            };
            let Some(handshake_source) = handshake_sources.take(peer.ip()) else {
                metrics::counter!("kmip_connections_refused_total", "reason" => "source_handshake_limit")
                    .increment(1);
                debug!(%peer, max = handshake_sources.max, "connection over the per-source handshake limit closed");
                drop(stream);
                continue;
            };
            let Ok(handshake_permit) = handshakes.clone().try_acquire_owned() else {
                metrics::counter!("kmip_connections_refused_total", "reason" => "handshake_limit")
                    .increment(1);
                debug!(%peer, max = self.limits.max_handshakes, "connection over the handshake limit closed");
                drop(stream);
                continue;
            };
            let handshake = HandshakeSlot::new(handshake_permit, handshake_source);
            metrics::counter!("kmip_connections_accepted_total").increment(1);
            let this = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                metrics::gauge!("kmip_connections_open").increment(1.0);
                this.connection(stream, peer, shutdown, handshake).await;
                metrics::gauge!("kmip_connections_open").decrement(1.0);
                drop(slot);
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
        handshake: HandshakeSlot,
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
        let last_seen = self.note_client(&identity, chain.first().map_or(&[][..], |c| c.as_ref()));
        let conn_id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (close_tx, close_rx) = watch::channel(false);
        self.connections.insert(
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
                .connections
                .get(&conn_id)
                .map(|c| current.authenticate(Some(&c.chain), false));
            if let Some(Err(e)) = verdict {
                self.connections.remove(&conn_id);
                metrics::counter!("kmip_connections_refused_total", "reason" => e.label())
                    .increment(1);
                info!(%peer, reason = e.label(), error = %e, "client refused after a concurrent reload");
                let mut stream = stream;
                let _ = stream.shutdown().await;
                return;
            }
        }
        drop((tls, current));
        debug!(%peer, conn_id, user = %identity.user, "client authenticated");
        let mut capture = self
            .capture
            .as_ref()
            .map(|c| c.connection(conn_id, peer, &identity));
        let ctx = ConnContext {
            conn_id,
            peer,
            identity,
        };
        let end = self
            .session(
                stream,
                &ctx,
                shutdown,
                close_rx,
                &last_seen,
                capture.as_mut(),
            )
            .await;
        if let Some(c) = capture.as_mut() {
            c.closed(end);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_counted_by_ipv4_address_and_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_of(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn a_source_at_its_limit_is_refused_until_a_slot_is_given_back() {
        let slots = SourceSlots::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert!(
            slots.take(a).is_none(),
            "a third connection from one source"
        );
        assert!(slots.take(b).is_some(), "another source is not affected");
        drop(first);
        assert!(
            slots.take(a).is_some(),
            "a closed connection frees its slot"
        );
    }

    fn header(body_len: usize) -> [u8; HEADER_LEN] {
        let mut h = [0x42, 0x00, 0x78, 0x01, 0, 0, 0, 0];
        h[4..].copy_from_slice(&u32::try_from(body_len).unwrap().to_be_bytes());
        h
    }

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn a_message_is_read_whole_and_charged_until_handled() {
        let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let budget = Arc::new(Semaphore::new(1 << 20));
        // A small pipe: the body arrives in many pieces, as over a network.
        let (mut client, mut server) = tokio::io::duplex(1000);
        let sent = body.clone();
        let writer = tokio::spawn(async move { client.write_all(&sent).await.map(|_| client) });
        let (msg, charge) =
            read_message(&mut server, &header(body.len()), body.len(), &budget, far())
                .await
                .unwrap();
        assert_eq!(msg[..HEADER_LEN], header(body.len()));
        assert_eq!(msg[HEADER_LEN..], body[..]);
        assert_eq!(
            charge.bytes,
            HEADER_LEN + body.len(),
            "the buffer grew to the message, no further"
        );
        assert_eq!(budget.available_permits(), (1 << 20) - charge.bytes);
        drop(charge);
        assert_eq!(budget.available_permits(), 1 << 20);
        writer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_announced_body_is_not_charged_before_it_arrives() {
        // Room for the first chunk only: charging the announced 1 MiB would fail with Budget.
        let budget = Arc::new(Semaphore::new(HEADER_LEN + FIRST_BODY_CHUNK));
        let (_client, mut server) = tokio::io::duplex(1000);
        let past = tokio::time::Instant::now();
        let got = read_message(&mut server, &header(1 << 20), 1 << 20, &budget, past).await;
        assert_eq!(got.err(), Some(ReadEnd::Timeout));
        assert_eq!(budget.available_permits(), HEADER_LEN + FIRST_BODY_CHUNK);
    }

    #[tokio::test]
    async fn a_message_waits_for_the_budget_until_its_deadline() {
        let budget = Arc::new(Semaphore::new(HEADER_LEN + FIRST_BODY_CHUNK));
        let all = u32::try_from(HEADER_LEN + FIRST_BODY_CHUNK).unwrap();
        let held = budget.clone().acquire_many_owned(all).await.unwrap();
        let (mut client, mut server) = tokio::io::duplex(1000);
        client.write_all(&[0u8; 100]).await.unwrap();
        let past = tokio::time::Instant::now();
        let got = read_message(&mut server, &header(100), 100, &budget, past).await;
        assert_eq!(got.err(), Some(ReadEnd::Budget));
        drop(held);
        let (msg, _charge) = read_message(&mut server, &header(100), 100, &budget, far())
            .await
            .unwrap();
        assert_eq!(msg.len(), HEADER_LEN + 100);
    }

    #[test]
    fn sources_without_open_connections_leave_no_entry() {
        let slots = SourceSlots::new(1);
        for i in 0..100u8 {
            drop(slots.take(IpAddr::from([192, 0, 2, i])));
        }
        assert!(slots.open.lock().unwrap().is_empty());
    }
}
