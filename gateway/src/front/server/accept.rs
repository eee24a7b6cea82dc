//! The accept loop: every limit checked before a connection gets a task (connections in total
//! and per source, handshakes in total and per source), then graceful shutdown.

use super::slots::{HandshakeSlot, SourceSlots};
use super::{Protocol, Server};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

impl Server {
    /// Accepts until `shutdown` turns true, then waits up to the grace period for open
    /// connections to finish their in-flight request. Each listener (`protocol`) has its own
    /// connection and handshake limits, of the same `[limits]` values.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
        protocol: Protocol,
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
                this.connection(stream, peer, shutdown, handshake, protocol)
                    .await;
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
                open = self.registry.connections.len(),
                "shutdown grace period over with connections still open"
            );
        }
    }
}
