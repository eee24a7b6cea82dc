//! kmip-gateway: a mutual-TLS KMIP server in front of key backends. See ARCHITECTURE.md.

pub mod access;
pub mod admin;
pub mod app;
pub mod audit;
pub mod capture;
pub mod client;
pub mod config;
pub mod conformance;
pub mod dispatch;
pub mod locate_cache;
pub mod ops;
pub mod pki;
pub mod reload;
pub mod server;
pub mod store;
pub mod tls;
