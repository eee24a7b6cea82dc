//! Archive and Recover. KMIP's Archive is a client's indication that the server MAY archive an
//! object, the server choosing if and when (2.1 §6.1.4); this server keeps every object on-line
//! and never archives, so Archive answers for a live object without changing it, and Recover
//! (bring an object back from archive) finds every live object already on-line. Both answer as
//! the other object operations do for a missing or destroyed object.

use super::{OpContext, OpError, Ops};
use kmip_wire::model::{UidRequest, UidResponse};

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
}
