//! What operators and tests run beside the server: the certificate authority, the audit trail, wire
//! capture, the OASIS conformance runner and a KMIP client.

pub mod audit;
pub mod capture;
pub mod client;
pub mod conformance;
pub mod pki;
