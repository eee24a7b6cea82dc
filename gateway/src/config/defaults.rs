//! Default values and bounds of the configuration: what each named limit protects is said here.

use std::time::Duration;

/// Default KMIP port (IANA-registered for KMIP over TLS).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5696";
/// Default admin listener (metrics, health): loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9696";
/// Default data folder of the embedded configuration, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "kmip-gateway-data";
/// Default cap on open client connections: bounds memory and file descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default cap on open connections from one source address (an IPv4 address, an IPv6 /64):
/// one misbehaving or hostile host cannot take every connection slot. A storage array or
/// hypervisor cluster opens a handful; 64 leaves room for a few clients behind one NAT, and
/// takes a hundred and fifty sources to fill `DEFAULT_MAX_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 64;
/// Default cap on connections still in the TLS handshake, all sources together: idle or slow
/// sockets cannot hold the connection slots (and the handshake's CPU) of every client; a real
/// client finishes its handshake in milliseconds, so a few hundred at once is a reconnect storm.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;
/// Default cap on connections still in the TLS handshake from one source: one host cannot take
/// the handshake slots of all others (it takes eight sources to fill `DEFAULT_MAX_HANDSHAKES`),
/// while a host reconnecting a few dozen connections at once (a cluster behind one address after
/// a restart) is not refused.
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 32;
/// Default time a client has to finish the TLS handshake: stops half-open connections from holding
/// a handshake slot for long.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default budget of request bytes held in memory by all connections together (message buffers
/// as they fill): bounds what many clients sending large or unfinished messages can make the
/// gateway hold, at 64 messages of the default `max_message_size`.
pub const DEFAULT_MAX_INFLIGHT_REQUEST_BYTES: usize = 64 << 20;
/// Default time to receive the rest of a message once its first byte arrived: defeats slowloris.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a connection may sit idle between requests before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time in-flight requests get to finish after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default upper bound on batch items in one request: bounds the work one message can ask for.
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 1_000;
/// Default time a request waits for a pooled HSM session before failing with Operation Failed.
pub const DEFAULT_PKCS11_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of cached Locate results: bounds the cache's bookkeeping (each entry holds one
/// identifier list).
pub const DEFAULT_LOCATE_CACHE_ENTRIES: usize = 10_000;
/// Default bytes of cached Locate results (identifier lists and their keys): bounds the cache's
/// memory whatever the size of the results.
pub const DEFAULT_LOCATE_CACHE_BYTES: usize = 64 << 20;
/// Default PKCS#11 session pool size: SoftHSM gains nothing past a few sessions.
pub const DEFAULT_PKCS11_POOL_SIZE: u32 = 4;
/// Default cap on identifiers in one Locate answer, applied also when the client asks for more
/// or sets no Maximum Items: bounds the memory, the response and the cache entry one Locate
/// makes (clients page with Offset Items; Located Items still gives the full count).
pub const DEFAULT_MAX_LOCATE_RESULTS: usize = 10_000;
/// Default cap on live (not destroyed) objects one user owns: one client cannot fill the store,
/// the backend or the token for everyone (Create, Register and ReKey fail beyond it).
pub const DEFAULT_MAX_OBJECTS_PER_USER: usize = 100_000;
/// File name of the admin token the embedded default creates in its data folder.
pub const DEFAULT_ADMIN_TOKEN_FILE: &str = "admin.token";
/// Default size at which an audit file is rotated: keeps each file easy to ship and verify.
pub const DEFAULT_AUDIT_FILE_BYTES: u64 = 64 << 20;
/// Smallest rotation size accepted: one record must always fit in a file.
pub const MIN_AUDIT_FILE_BYTES: u64 = 1 << 20;
/// `[[users]] direct_issuer_only` when not set: off, so a chain through intermediates to a
/// user's CA is accepted as before (the FlashArray's own chains are root + leaf anyway).
pub const DEFAULT_DIRECT_ISSUER_ONLY: bool = false;
/// Name of the vault's master key file in its default folder.
pub const DEFAULT_MASTER_KEY_FILE: &str = "master.key";
/// Name of the vault's chain head file in its default folder.
pub const DEFAULT_HEAD_FILE: &str = "vault.head";
/// `[revocation] require_crl` when not set: a user CA without a CRL is a warning, not an error,
/// so a configuration that revokes through `deny_serials` alone still starts (and says so).
pub const DEFAULT_REQUIRE_CRL: bool = false;
/// The CA certificate in a `[pki] dir` (written by `kmip-gateway pki init-ca`).
pub const PKI_CA_FILE: &str = "ca.pem";
/// The CRL in a `[pki] dir` (written by `pki init-ca`, `pki revoke`, `pki crl`).
pub const PKI_CRL_FILE: &str = "crl.pem";
/// Default form of the gateway's log lines: text, readable in a terminal and in journald.
pub const DEFAULT_LOG_FORMAT: super::log::LogFormat = super::log::LogFormat::Text;
/// Default size of a postgres backend's connection pool, per gateway: enough for the writes
/// and key reads a busy gateway has in flight, while three replicas stay far below PostgreSQL's
/// default `max_connections` (100).
pub const DEFAULT_PG_POOL_SIZE: u32 = 8;
/// Default time a request waits for a pooled database connection before failing (General
/// Failure): a database that cannot serve in time fails requests rather than piling them up.
pub const DEFAULT_PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time opening one database connection may take, per host of the URL: bounds how long
/// a dead host delays the failover to the next one.
pub const DEFAULT_PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of pooled connections per KMIP upstream: appliances limit concurrent
/// connections, and a few carry the load of many clients.
pub const DEFAULT_UPSTREAM_POOL_SIZE: u32 = 4;
/// Default time a request waits for a pooled (or newly opened) upstream connection, per
/// upstream, before it tries the next: bounds how long a dead upstream delays the failover.
pub const DEFAULT_UPSTREAM_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time one upstream request may take: a hung upstream fails the request instead of
/// holding the client (and a pooled connection) forever.
pub const DEFAULT_UPSTREAM_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an upstream connection may sit idle in the pool before it is closed (servers
/// and firewalls drop idle connections silently).
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default time between two passes of the KMIP proxy's refresher, which re-reads the lifecycle
/// of every mapped object upstream: a change made on the upstream by others (a key revoked or
/// destroyed on its console) is seen through the gateway within this plus one pass.
pub const DEFAULT_UPSTREAM_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest refresh interval accepted (other than 0, off): each pass reads every mapped object
/// upstream, so a shorter one would keep the upstream busy with the gateway's polling.
pub const MIN_UPSTREAM_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// Most upstreams one `[backend] kind = "kmip"` may list: each has its own pool, and a request
/// may try them all in turn, so the list bounds both connections and a request's worst delay.
pub const MAX_UPSTREAMS: usize = 8;
/// The folder, inside the data folder, of the vault that maps gateway objects to upstream ones.
/// Its own folder: its records hold upstream identifiers, never key material, and must never be
/// read as a key vault.
pub const UPSTREAM_MAP_DIR: &str = "upstream-map";
/// The chain head of that vault, next to the master key (by default in `<data_dir>-secrets`).
pub const UPSTREAM_MAP_HEAD_FILE: &str = "upstream-map.head";
