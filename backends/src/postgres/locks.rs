//! Cluster-wide Name locks: transaction advisory locks held by a transaction on a pooled
//! connection the guard owns, released by ending that transaction before the connection goes
//! back to the pool.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;

use super::connect::{unavailable, Manager};
use crate::BackendError;

/// How long a Name lock is waited for: another instance's Create with the same Name holds it
/// for one write; far longer means a stuck holder, answered as busy rather than waited on.
pub(crate) const NAME_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Domain separation of the lock keys from other advisory-lock users of the database.
const NAME_LOCK_CONTEXT: &[u8] = b"kmip-gateway name lock v1";

type Conn = bb8::PooledConnection<'static, Manager>;

/// Held Name locks. Dropping it rolls the transaction back (releasing them) on the runtime it
/// was taken on, and only then returns the connection to the pool.
pub(crate) struct NameLocks {
    conn: Option<Conn>,
    runtime: tokio::runtime::Handle,
}

fn key(name: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(NAME_LOCK_CONTEXT)
        .chain_update(name.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Takes every Name's lock, in the order of their keys (two holders never deadlock).
pub(crate) async fn lock(conn: Conn, names: &[String]) -> Result<NameLocks, BackendError> {
    let mut keys: Vec<i64> = names.iter().map(|n| key(n)).collect();
    keys.sort_unstable();
    keys.dedup();
    // The guard exists before the transaction starts: if this future is dropped midway, the
    // transaction is still ended before the connection is reused.
    let guard = NameLocks {
        conn: Some(conn),
        runtime: tokio::runtime::Handle::current(),
    };
    let Some(client) = guard.conn.as_ref() else {
        return Err(BackendError::Unavailable("no connection".into()));
    };
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = {}",
            NAME_LOCK_TIMEOUT.as_millis()
        ))
        .await
        .map_err(unavailable)?;
    for k in keys {
        match client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&k])
            .await
        {
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                return Err(BackendError::Busy(NAME_LOCK_TIMEOUT))
            }
            other => other.map_err(unavailable)?,
        };
    }
    Ok(guard)
}

impl Drop for NameLocks {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.runtime.spawn(async move {
                if let Err(e) = conn.batch_execute("ROLLBACK").await {
                    // A closed connection is discarded by the pool (`has_broken`).
                    tracing::warn!("releasing Name locks failed: {e}");
                }
            });
        }
    }
}
