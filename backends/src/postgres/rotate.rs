//! KEK rotation, online: every data key not under the current KEK is unwrapped by its own and
//! wrapped again by the current one, in batches that each commit on their own. Sealed material
//! and object versions are unchanged (the data key is the same), so nothing is logged and no
//! cache is dropped.

use super::connect::unavailable;
use super::{seal, PostgresBackend};
use crate::BackendError;

/// What a rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RotateReport {
    /// Data keys moved to the current KEK.
    pub rewrapped: u64,
    /// Data keys that were under it already.
    pub already_current: u64,
}

impl PostgresBackend {
    /// Rewraps every data key not under the current KEK, `batch` rows per transaction. Rows a
    /// writer holds are skipped first and waited for last, so the rotation ends with none left
    /// and the previous KEKs can be removed from the configuration.
    pub async fn rotate_keks(&self, batch: usize) -> Result<RotateReport, BackendError> {
        let current = self.inner.keks.current().clone();
        let current_id = current.id().to_owned();
        let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut report = RotateReport::default();
        let mut skip_locked = true;
        loop {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await.map_err(unavailable)?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT uid, wrapped_key, kek_id FROM kmip_objects \
                         WHERE kek_id IS NOT NULL AND kek_id <> $1 LIMIT $2 FOR UPDATE{}",
                        if skip_locked { " SKIP LOCKED" } else { "" }
                    ),
                    &[&current_id, &limit],
                )
                .await
                .map_err(unavailable)?;
            if rows.is_empty() {
                tx.commit().await.map_err(unavailable)?;
                if skip_locked {
                    skip_locked = false;
                    continue;
                }
                break;
            }
            for row in &rows {
                let uid: String = row.get(0);
                let wrapped: Vec<u8> = row.get(1);
                let kek_id: String = row.get(2);
                let key = seal::unwrap_key(&self.inner.keks, &uid, &wrapped, &kek_id).await?;
                let rewrapped = current.wrap(&key).await?;
                tx.execute(
                    "UPDATE kmip_objects SET wrapped_key = $2, kek_id = $3 WHERE uid = $1",
                    &[&uid, &rewrapped, &current_id],
                )
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)?;
            report.rewrapped += rows.len() as u64;
        }
        let conn = self.conn().await?;
        let n: i64 = conn
            .query_one(
                "SELECT count(*) FROM kmip_objects WHERE kek_id = $1",
                &[&current_id],
            )
            .await
            .map_err(unavailable)?
            .get(0);
        report.already_current = u64::try_from(n)
            .unwrap_or(0)
            .saturating_sub(report.rewrapped);
        Ok(report)
    }
}
