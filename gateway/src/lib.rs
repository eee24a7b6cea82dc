//! kmip-gateway: a mutual-TLS KMIP server in front of key backends. See ARCHITECTURE.md.
//!
//! Four rooms, plus the wiring: [`front`] is what faces the network (TLS, accept loop, reload,
//! admin listener); [`kmip`] is what KMIP means here (dispatch, operations, access, the object
//! store, the Locate cache); [`tooling`] is what operators run beside the server (PKI, audit trail,
//! wire capture); [`client`] is a KMIP client and the OASIS conformance runner built on it.
//! [`identity`] is who a connection is, once authenticated. [`config`] and [`app`] read the
//! configuration and wire the rooms together.

pub mod app;
pub mod client;
pub mod config;
mod environ;
pub mod front;
pub mod identity;
pub mod kmip;
pub mod tooling;
pub mod upstream;
