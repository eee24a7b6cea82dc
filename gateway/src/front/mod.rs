//! The network front: the mutual-TLS KMIP server (accept loop, connections and their registry),
//! TLS material and client authentication, hot reload of both, and the admin listener.

pub mod admin;
pub mod reload;
pub mod server;
pub mod tls;
