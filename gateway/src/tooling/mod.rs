//! What operators run beside the server: the certificate authority, the audit trail and wire
//! capture.

pub mod audit;
pub mod capture;
pub mod pki;
