//! Archive, Recover and Obtain Lease: how long and where a client's object stays available.
//! KMIP's Archive is a client's indication that the server MAY archive an
//! object, the server choosing if and when (2.1 §6.1.4); this server keeps every object on-line
//! and never archives, so Archive answers for a live object without changing it, and Recover
//! (bring an object back from archive) finds every live object already on-line. Both answer as
//! the other object operations do for a missing or destroyed object. Nor does the server limit
//! how long a client may use an object it holds, so Obtain Lease grants no lease interval.

use super::{OpContext, OpError, Ops};
use kmip_wire::model::{ObtainLeaseResponse, UidRequest, UidResponse};
use kmip_wire::spec::tags;

/// The Lease Time Obtain Lease answers: 0, "no lease interval is effective, and the client MAY
/// use the object without any lease time limit" (KMIP 1.4 §4.17). A destroyed object gets none.
pub(super) const NO_LEASE_LIMIT: u32 = 0;

impl Ops {
    /// Archive and Recover: the object must be live; nothing is moved.
    pub(super) fn keep_online(
        &self,
        ctx: &mut OpContext<'_>,
        r: UidRequest,
    ) -> Result<UidResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        self.live_object(&uid)?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(UidResponse {
            unique_identifier: uid,
        })
    }

    /// Obtain Lease of a live object: no lease limit, and its Last Change Date.
    pub(super) fn obtain_lease(
        &self,
        ctx: &mut OpContext<'_>,
        r: UidRequest,
    ) -> Result<ObtainLeaseResponse, OpError> {
        let uid = ctx.uid(r.unique_identifier)?;
        let obj = self.live_object(&uid)?;
        let last_change_date = obj
            .first(tags::LAST_CHANGE_DATE)
            .and_then(|a| a.as_datetime())
            .ok_or_else(|| OpError::MissingData("the object's Last Change Date".into()))?;
        ctx.id_placeholder = Some(uid.clone());
        Ok(ObtainLeaseResponse {
            unique_identifier: uid,
            lease_time: NO_LEASE_LIMIT,
            last_change_date,
        })
    }
}
