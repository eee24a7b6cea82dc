//! The database schema and its versioned migrations, applied at open under a transaction
//! advisory lock so gateways starting together do not race.

use tokio_postgres::{Client, GenericClient};

use super::connect::unavailable;
use crate::BackendError;

/// One schema change, applied in its own transaction with its row in `kmip_schema_migrations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, in order. Never edit one that shipped: add the next.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
    description:
        "objects with sealed material and wrapped data keys, the change log and its pruning point",
    sql: "CREATE TABLE kmip_objects (
    uid text PRIMARY KEY,
    kind smallint NOT NULL,
    version bigint NOT NULL,
    meta bytea NOT NULL,
    algorithm smallint,
    bits integer,
    extractable boolean,
    sensitive boolean,
    label text,
    sealed bytea,
    wrapped_key bytea,
    kek_id text
);
CREATE INDEX kmip_objects_kek_id ON kmip_objects (kek_id);
CREATE TABLE kmip_changes (
    seq bigserial PRIMARY KEY,
    uid text NOT NULL,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kmip_changes_txid ON kmip_changes (txid);
CREATE INDEX kmip_changes_at ON kmip_changes (at);
CREATE TABLE kmip_changes_pruned (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    through bigint NOT NULL
);
INSERT INTO kmip_changes_pruned (through) VALUES (0);",
    },
    Migration {
        version: 2,
        description: "autovacuum reclaims kmip_objects' dead row versions as soon as there is one \
             (a destroyed key's old row, with its wrapped data key, goes within a naptime)",
        // Any write leaves the previous row version in the table until VACUUM; after a Destroy
        // that version still holds the wrapped data key. The defaults wait for 50 dead rows
        // plus a fifth of the table, which a quiet key server may never reach. The table is
        // small and PostgreSQL skips index passes when few pages are affected, so vacuuming
        // it once per autovacuum_naptime whenever it changed is cheap. Setting reloptions
        // takes a lock that does not block reads or writes.
        sql: "ALTER TABLE kmip_objects SET (autovacuum_vacuum_scale_factor = 0, \
              autovacuum_vacuum_threshold = 0);",
    },
];

/// The advisory lock key migrations run under (any fixed value; the Name locks hash into the
/// same space with a context, so a collision costs only a wait).
const MIGRATION_LOCK: i64 = 0x6b6d_6970_7363_6831;

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS kmip_schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// The schema version the database is at (0: none), refusing one newer than this binary.
async fn current_version(client: &impl GenericClient) -> Result<i32, BackendError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('kmip_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(unavailable)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let version: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM kmip_schema_migrations",
            &[],
        )
        .await
        .map_err(unavailable)?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if version > known {
        return Err(BackendError::Unsupported(format!(
            "the database schema is at version {version}, newer than this kmip-gateway knows \
             ({known}): another gateway of a newer release migrated it; run that release here too"
        )));
    }
    Ok(version)
}

/// The migrations the database still needs, without applying them.
pub(crate) async fn pending(client: &impl GenericClient) -> Result<Vec<Migration>, BackendError> {
    let version = current_version(client).await?;
    Ok(MIGRATIONS
        .iter()
        .filter(|m| m.version > version)
        .copied()
        .collect())
}

/// Applies the pending migrations in one transaction under the migration lock; returns them.
pub(crate) async fn apply(client: &mut Client) -> Result<Vec<Migration>, BackendError> {
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(unavailable)?;
    tx.batch_execute(CREATE_LEDGER).await.map_err(unavailable)?;
    let todo = pending(&tx).await?;
    for m in &todo {
        tx.batch_execute(m.sql).await.map_err(|e| {
            BackendError::Unavailable(format!("schema migration {} failed: {e}", m.version))
        })?;
        tx.execute(
            "INSERT INTO kmip_schema_migrations (version, description) VALUES ($1, $2)",
            &[&m.version, &m.description],
        )
        .await
        .map_err(unavailable)?;
    }
    tx.commit().await.map_err(unavailable)?;
    for m in &todo {
        tracing::info!(
            version = m.version,
            "applied schema migration: {}",
            m.description
        );
    }
    Ok(todo)
}
