//! Slots that bound what one source and the handshakes hold: a per-source count of open
//! connections (IPv6 counted by /64) and the slot a connection holds while in the TLS handshake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;

/// Open connections per source, for `limits.max_connections_per_source`. An entry exists only
/// while its source has a connection open, so the table holds at most `max_connections` entries.
pub(super) struct SourceSlots {
    open: Mutex<HashMap<IpAddr, usize>>,
    pub(super) max: usize,
}

/// One connection's place in [`SourceSlots`], given back when dropped.
pub(super) struct SourceSlot {
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
    pub(super) fn new(max: usize) -> Arc<SourceSlots> {
        Arc::new(SourceSlots {
            open: Mutex::new(HashMap::new()),
            max,
        })
    }

    /// A slot for a connection from `peer`, or `None` when its source is at the limit.
    pub(super) fn take(self: &Arc<Self>, peer: IpAddr) -> Option<SourceSlot> {
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
pub(super) struct HandshakeSlot {
    _total: OwnedSemaphorePermit,
    _source: SourceSlot,
}

impl HandshakeSlot {
    pub(super) fn new(total: OwnedSemaphorePermit, source: SourceSlot) -> HandshakeSlot {
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

    #[test]
    fn sources_without_open_connections_leave_no_entry() {
        let slots = SourceSlots::new(1);
        for i in 0..100u8 {
            drop(slots.take(IpAddr::from([192, 0, 2, i])));
        }
        assert!(slots.open.lock().unwrap().is_empty());
    }
}
