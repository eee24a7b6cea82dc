//! What operators run beside the server: the certificate authority, the audit trail, wire
//! capture and the data folder's initialisation.

pub mod audit;
pub mod capture;
pub mod datadir;
pub mod pki;
