//! Reading `kmip_objects` rows back into the backend's types, and the change-log write every
//! write transaction ends with.

use tokio_postgres::{GenericClient, Row};

use super::connect::unavailable;
use super::seal;
use crate::{BackendError, KeySpec, ObjectKind, ObjectRecord};

/// The columns [`record`] reads, in order.
pub(crate) const RECORD_COLUMNS: &str = "uid, kind, version, meta";

/// The columns [`stored`] reads, in order.
pub(crate) const STORED_COLUMNS: &str =
    "uid, kind, version, meta, algorithm, bits, extractable, sensitive, label, sealed, wrapped_key, kek_id";

pub(crate) fn kind(uid: &str, code: i16) -> Result<ObjectKind, BackendError> {
    u8::try_from(code)
        .ok()
        .and_then(ObjectKind::from_code)
        .ok_or_else(|| BackendError::Corrupt(format!("object {uid} has the unknown kind {code}")))
}

/// A record from a row starting with [`RECORD_COLUMNS`].
pub(crate) fn record(row: &Row) -> Result<ObjectRecord, BackendError> {
    let uid: String = row.get(0);
    let version: i64 = row.get(2);
    Ok(ObjectRecord {
        kind: kind(&uid, row.get(1))?,
        version: u64::try_from(version)
            .map_err(|_| BackendError::Corrupt(format!("object {uid} has version {version}")))?,
        meta: bytes::Bytes::from(row.get::<_, Vec<u8>>(3)),
        uid: uid.into(),
    })
}

/// Everything stored of one object.
pub(crate) struct Stored {
    pub(crate) record: ObjectRecord,
    pub(crate) spec: Option<KeySpec>,
    /// Sealed material, wrapped data key and KEK id; `None` once destroyed.
    pub(crate) envelope: Option<seal::Sealed>,
}

/// A stored object from a row of [`STORED_COLUMNS`].
pub(crate) fn stored(row: &Row) -> Result<Stored, BackendError> {
    let record = record(row)?;
    let spec = match row.get::<_, Option<i16>>(4) {
        None => None,
        Some(code) => {
            let bits: i32 = row.get(5);
            Some(KeySpec {
                algorithm: seal::algorithm_from_code(code).ok_or_else(|| {
                    BackendError::Corrupt(format!(
                        "object {} has the unknown algorithm {code}",
                        record.uid
                    ))
                })?,
                bits: u32::try_from(bits).map_err(|_| {
                    BackendError::Corrupt(format!("object {} has {bits} bits", record.uid))
                })?,
                extractable: row.get(6),
                sensitive: row.get(7),
                label: row.get(8),
            })
        }
    };
    let envelope = match (row.get(9), row.get(10), row.get(11)) {
        (Some(sealed), Some(wrapped_key), Some(kek_id)) => Some(seal::Sealed {
            sealed,
            wrapped_key,
            kek_id,
        }),
        _ => None,
    };
    Ok(Stored {
        record,
        spec,
        envelope,
    })
}

/// Logs a change of `uid` and wakes the listeners. Called after the transaction wrote its
/// object row, so its transaction id was taken before this change's sequence number (the
/// change feed's exactness rests on it).
pub(crate) async fn log_change(tx: &impl GenericClient, uid: &str) -> Result<(), BackendError> {
    tx.execute(
        "WITH c AS (INSERT INTO kmip_changes (uid) VALUES ($1)) SELECT pg_notify('kmip_changes', '')",
        &[&uid],
    )
    .await
    .map_err(unavailable)?;
    Ok(())
}
