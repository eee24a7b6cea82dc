//! `[limits]` and `[locate_cache]`: the bounds on what clients can make the gateway hold or do.

use std::time::Duration;

use super::defaults::*;
use super::raw::{RawLimits, RawLocateCache};
use super::{invalid, millis, positive, ConfigError};

/// `[locate_cache]`: the cache is bounded by entries and by bytes; 0 in either disables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocateCacheConfig {
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for LocateCacheConfig {
    fn default() -> Self {
        LocateCacheConfig {
            max_entries: DEFAULT_LOCATE_CACHE_ENTRIES,
            max_bytes: DEFAULT_LOCATE_CACHE_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsConfig {
    pub max_message_size: usize,
    pub max_depth: usize,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub max_batch_items: usize,
    pub handshake_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_locate_results: usize,
    pub max_objects_per_user: usize,
    /// Connections still in the TLS handshake, all sources together.
    pub max_handshakes: usize,
    /// Connections still in the TLS handshake from one source.
    pub max_handshakes_per_source: usize,
    /// Request bytes all connections together may hold while receiving messages.
    pub max_inflight_request_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_size: kmip_wire::ttlv::DEFAULT_MAX_MESSAGE_SIZE,
            max_depth: kmip_wire::ttlv::DEFAULT_MAX_DEPTH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_locate_results: DEFAULT_MAX_LOCATE_RESULTS,
            max_objects_per_user: DEFAULT_MAX_OBJECTS_PER_USER,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_handshakes_per_source: DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            max_inflight_request_bytes: DEFAULT_MAX_INFLIGHT_REQUEST_BYTES,
        }
    }
}

/// Validates `[limits]`: every bound positive, and consistent with the others.
pub(super) fn limits_config(l: RawLimits) -> Result<LimitsConfig, ConfigError> {
    let limits = LimitsConfig {
        max_message_size: positive(
            "limits.max_message_size",
            l.max_message_size,
            kmip_wire::ttlv::DEFAULT_MAX_MESSAGE_SIZE,
        )?,
        max_depth: positive(
            "limits.max_depth",
            l.max_depth,
            kmip_wire::ttlv::DEFAULT_MAX_DEPTH,
        )?,
        max_connections: positive(
            "limits.max_connections",
            l.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        )?,
        max_connections_per_source: positive(
            "limits.max_connections_per_source",
            l.max_connections_per_source,
            DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
        )?,
        max_batch_items: positive(
            "limits.max_batch_items",
            l.max_batch_items,
            DEFAULT_MAX_BATCH_ITEMS,
        )?,
        handshake_timeout: millis(
            "limits.handshake_timeout_ms",
            l.handshake_timeout_ms,
            DEFAULT_HANDSHAKE_TIMEOUT,
        )?,
        read_timeout: millis(
            "limits.read_timeout_ms",
            l.read_timeout_ms,
            DEFAULT_READ_TIMEOUT,
        )?,
        idle_timeout: millis(
            "limits.idle_timeout_ms",
            l.idle_timeout_ms,
            DEFAULT_IDLE_TIMEOUT,
        )?,
        shutdown_grace: millis(
            "limits.shutdown_grace_ms",
            l.shutdown_grace_ms,
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        max_locate_results: positive(
            "limits.max_locate_results",
            l.max_locate_results,
            DEFAULT_MAX_LOCATE_RESULTS,
        )?,
        max_objects_per_user: positive(
            "limits.max_objects_per_user",
            l.max_objects_per_user,
            DEFAULT_MAX_OBJECTS_PER_USER,
        )?,
        max_handshakes: positive(
            "limits.max_handshakes",
            l.max_handshakes,
            DEFAULT_MAX_HANDSHAKES,
        )?,
        max_handshakes_per_source: positive(
            "limits.max_handshakes_per_source",
            l.max_handshakes_per_source,
            DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
        )?,
        max_inflight_request_bytes: positive(
            "limits.max_inflight_request_bytes",
            l.max_inflight_request_bytes,
            DEFAULT_MAX_INFLIGHT_REQUEST_BYTES,
        )?,
    };
    if limits.max_inflight_request_bytes < limits.max_message_size {
        return Err(invalid(
            "limits.max_inflight_request_bytes",
            "must be at least limits.max_message_size, or a largest message could never be read",
        ));
    }
    if limits.max_batch_items > kmip_wire::model::MAX_BATCH_ITEMS {
        return Err(invalid(
            "limits.max_batch_items",
            format!(
                "at most {} (the message model's own bound)",
                kmip_wire::model::MAX_BATCH_ITEMS
            ),
        ));
    }
    if limits.max_message_size < 64 {
        return Err(invalid(
            "limits.max_message_size",
            "must be at least 64 bytes",
        ));
    }
    Ok(limits)
}

/// `[locate_cache]` with defaults filled in.
pub(super) fn locate_cache_config(raw: Option<&RawLocateCache>) -> LocateCacheConfig {
    LocateCacheConfig {
        max_entries: raw
            .and_then(|c| c.max_entries)
            .unwrap_or(DEFAULT_LOCATE_CACHE_ENTRIES),
        max_bytes: raw
            .and_then(|c| c.max_bytes)
            .unwrap_or(DEFAULT_LOCATE_CACHE_BYTES),
    }
}
