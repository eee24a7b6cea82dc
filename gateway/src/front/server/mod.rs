//! The KMIP server: accept loop, TLS handshake, authentication, framing, graceful shutdown.
//!
//! A connection permit is taken right after accept, so the gateway never keeps more than
//! `max_connections` sockets (one over the limit is closed at once), and a source slot right after
//! it, so that one host never holds more than `max_connections_per_source`; then a handshake slot
//! (`max_handshakes` in total, `max_handshakes_per_source`), held only until the TLS handshake
//! ends, so sockets that never finish it cannot lock clients out. A connection over any limit is
//! closed at once and counted. The handshake runs in the connection's own task under a timeout.
//!
//! Each message's 8-byte header is checked against the size limit; its buffer then grows only
//! as bytes arrive, and every byte of buffer is charged to the in-flight budget
//! (`max_inflight_request_bytes`) before it is allocated, so what clients announce costs
//! nothing and what they send is bounded in total.
//!
//! The server also keeps what operators need for certificate day-2 work: the [`Registry`] of open
//! connections with each one's certificate chain (so a reload can re-check and close connections
//! whose certificate was revoked or denied), and when each client certificate was last seen.
//!
//! - `accept`: the accept loop and the limits checked there; graceful shutdown.
//! - `slots`: per-source connection slots and handshake slots.
//! - `connection`: one connection's task: handshake, authentication, the request/response loop.
//! - `framing`: reading one message against the size limit and the in-flight byte budget.
//! - `https`: the KMIP-over-HTTPS request loop (`POST /kmip`, TTLV, XML or JSON bodies), after the
//!   same handshake and authentication; `http_head` parses and checks an HTTP request head.
//! - `registry`: open connections and client certificates seen, for `clients` and reload.
//! - `seen_file`: the client certificates seen, kept in the data folder across restarts.

mod accept;
mod connection;
mod framing;
mod http_head;
mod https;
mod registry;
mod seen_file;
mod slots;

pub use http_head::Encoding;
pub use registry::{
    ClientReport, ClientSeen, ConnEntry, RecheckReport, Registry, MAX_TRACKED_CLIENTS,
};
pub use seen_file::{keep_saved, load as load_clients_seen, save as save_clients_seen};

use crate::config::LimitsConfig;
use crate::front::tls::TlsState;
use crate::kmip::dispatch::Dispatcher;
use crate::tooling::capture::Capture;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// What a listener speaks once a client is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// KMIP TTLV messages back to back (port 5696).
    Ttlv,
    /// HTTP/1.1 `POST /kmip`, one KMIP message per request, in TTLV, XML or JSON.
    Https,
}

/// The KMIP server's state, shared by the accept loop and all connections: the TLS state in
/// force, the dispatcher, the limits, the in-flight byte budget and the connection registry.
pub struct Server {
    pub tls: Arc<ArcSwap<TlsState>>,
    pub dispatcher: Arc<Dispatcher>,
    pub limits: LimitsConfig,
    /// Open connections and client certificates seen.
    pub registry: Registry,
    /// Bytes of request buffers all connections may hold (`max_inflight_request_bytes`).
    inflight: Arc<Semaphore>,
    /// The wire capture, when `--capture`/`capture_dir` is set.
    capture: Option<Arc<Capture>>,
}

impl Server {
    pub fn new(
        tls: Arc<ArcSwap<TlsState>>,
        dispatcher: Arc<Dispatcher>,
        limits: LimitsConfig,
    ) -> Server {
        Server {
            tls,
            dispatcher,
            limits,
            registry: Registry::new(),
            inflight: Arc::new(Semaphore::new(limits.max_inflight_request_bytes)),
            capture: None,
        }
    }

    /// Captures every authenticated connection's messages (see [`crate::tooling::capture`]).
    pub fn with_capture(mut self, capture: Option<Arc<Capture>>) -> Server {
        self.capture = capture;
        self
    }
}
