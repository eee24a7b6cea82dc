//! Cancel, and why Poll has no handler. This server answers every operation at once and never
//! answers Pending, so no asynchronous operation is ever outstanding: Poll is always
//! `OpError::NoAsynchronousOperation` (its row in `table.rs`), and Cancel reports the operation
//! Unavailable.

use kmip_wire::model::{AsyncRequest, CancelResponse};

/// Cancellation Result *Unavailable*: there is no such operation to cancel.
const CANCELLATION_UNAVAILABLE: u32 = 0x0000_0005;

/// Cancel: nothing to cancel; the answer says so and echoes the correlation value.
pub(super) fn cancel(r: AsyncRequest) -> CancelResponse {
    CancelResponse {
        asynchronous_correlation_value: r.asynchronous_correlation_value,
        cancellation_result: CANCELLATION_UNAVAILABLE,
    }
}
