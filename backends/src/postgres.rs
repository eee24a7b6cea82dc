//! The PostgreSQL backend: several gateway processes on one database (high availability).
//! Key material is stored sealed under per-object data keys wrapped by a KEK
//! ([`crate::envelope`]); the database holds only ciphertext.

use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// How to reach the database, as the gateway's `[backend]` section gives it.
#[derive(Clone)]
pub struct PgSettings {
    /// A libpq-style URI, `postgresql://user@host1:port1,host2:port2/db?target_session_attrs=read-write&sslmode=require`.
    /// Several hosts are tried in order; it never carries a password.
    pub url: String,
    /// The password, read by the gateway from a file or the environment.
    pub password: Option<Zeroizing<String>>,
    /// PEM bundle of the CAs that sign the database server's certificate (TLS is verified
    /// against these; without it, `sslmode` must be `disable`).
    pub ca: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: u32,
    /// How long an operation waits for a pooled connection before failing.
    pub acquire_timeout: Duration,
    /// How long opening one connection may take (per host).
    pub connect_timeout: Duration,
}
