//! Export (KMIP 1.4 / 2.x): an object's material, exactly as Get serves it (same refusals), and
//! every attribute Get Attributes would report, in one answer.

use super::{OpContext, OpError, Ops};
use kmip_wire::model::*;

impl Ops {
    pub(super) async fn export(
        &self,
        ctx: &mut OpContext<'_>,
        r: GetRequest,
    ) -> Result<ExportResponse, OpError> {
        // Get first: its refusals (sensitive, non-extractable, format) decide before anything
        // is read, and it ends Fresh, so the attributes shown are the ones the object now has.
        let got = self.get(ctx, r).await?;
        let attributes = self
            .get_attributes(
                ctx,
                GetAttributesRequest {
                    unique_identifier: Some(got.unique_identifier.clone()),
                    names: Vec::new(),
                },
            )
            .await?
            .attributes;
        Ok(ExportResponse {
            unique_identifier: got.unique_identifier,
            attributes,
            object: got.object,
        })
    }
}
