//! The connection registry: every open connection with its certificate chain (re-checked on
//! reload, closing the ones whose certificate no longer passes) and every client certificate let
//! in, with when it was last seen (`GET /clients`, `kmip-gateway clients`).

use crate::front::tls::{cert_subject_and_expiry, ExpiryKind, TlsState, EXPIRY_WARNING};
use crate::identity::Identity;
use dashmap::DashMap;
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tracing::warn;

/// Client certificates remembered for `clients`: bounds the last-seen table against a stream of
/// distinct certificates (each entry is a few hundred bytes).
pub const MAX_TRACKED_CLIENTS: usize = 10_000;
/// A client certificate close to expiry is warned about at most this often, not per connection.
const CLIENT_EXPIRY_WARNING_INTERVAL: Duration = Duration::from_secs(24 * 3600);

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

/// One client certificate seen, as `seen_file` keeps it across restarts.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub(crate) struct SeenRecord {
    pub user: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
    pub subject: String,
    pub serial: String,
    /// `notAfter`, Unix seconds.
    pub not_after: Option<i64>,
    /// Unix seconds.
    pub first_seen: i64,
    /// Unix milliseconds.
    pub last_seen_ms: i64,
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

/// Now, in Unix milliseconds (the last-seen clocks).
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Open connections and the client certificates seen (since start, and before it as kept in
/// the data folder by `seen_file`).
pub struct Registry {
    pub connections: DashMap<u64, ConnEntry>,
    /// Client certificates by SHA-256 fingerprint.
    pub clients: DashMap<String, ClientSeen>,
    next_conn_id: AtomicU64,
    /// Whether `clients` changed since it was last written to the data folder.
    changed: AtomicBool,
}

impl Registry {
    pub(super) fn new() -> Registry {
        Registry {
            connections: DashMap::new(),
            clients: DashMap::new(),
            next_conn_id: AtomicU64::new(1),
            changed: AtomicBool::new(false),
        }
    }

    /// Whether the client certificates seen changed since the last call (which clears it).
    pub(super) fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::Relaxed)
    }

    /// Marks the client certificates seen as not yet written (a write failed).
    pub(super) fn mark_changed(&self) {
        self.changed.store(true, Ordering::Relaxed);
    }

    /// The client certificates seen, to be kept across a restart.
    pub(super) fn seen_records(&self) -> Vec<SeenRecord> {
        self.clients
            .iter()
            .map(|c| SeenRecord {
                user: c.user.clone(),
                fingerprint: c.key().clone(),
                subject: c.subject.clone(),
                serial: c.serial_hex.clone(),
                not_after: c.not_after,
                first_seen: unix_secs(c.first_seen),
                last_seen_ms: c.last_seen_ms.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Adds the client certificates a previous run saw (at most [`MAX_TRACKED_CLIENTS`] are
    /// given); one seen again since start keeps its live entry.
    pub(super) fn restore(&self, records: Vec<SeenRecord>) {
        for r in records {
            if self.clients.len() >= MAX_TRACKED_CLIENTS {
                break;
            }
            let first_seen =
                UNIX_EPOCH + Duration::from_secs(u64::try_from(r.first_seen).unwrap_or(0));
            self.clients.entry(r.fingerprint).or_insert(ClientSeen {
                user: r.user,
                subject: r.subject,
                serial_hex: r.serial,
                not_after: r.not_after,
                first_seen,
                last_seen_ms: Arc::new(AtomicI64::new(r.last_seen_ms)),
                last_expiry_warning: None,
            });
        }
    }

    /// A connection id not used before in this process.
    pub(super) fn next_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
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
        let mut open: HashMap<String, usize> = HashMap::new();
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
    pub(super) fn note_client(&self, identity: &Identity, leaf: &[u8]) -> Arc<AtomicI64> {
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
        self.changed.store(true, Ordering::Relaxed);
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
}
