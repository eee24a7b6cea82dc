//! The network front: the mutual-TLS KMIP listener, TLS material and client authentication, hot
//! reload of both, and the admin listener.

pub mod admin;
pub mod reload;
pub mod server;
pub mod tls;
