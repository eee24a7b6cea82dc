//! What operators run beside the server: the certificate authority, the audit trail, wire
//! capture, the data folder's initialisation, backup and restore, migration between backends.

pub mod audit;
pub mod backup;
pub mod capture;
pub mod datadir;
pub mod migrate;
pub mod pki;
