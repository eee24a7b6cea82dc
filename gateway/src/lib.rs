//! kmip-gateway: a mutual-TLS KMIP server in front of key backends. See ARCHITECTURE.md.
//!
//! Three rooms, plus the wiring: [`front`] is what faces the network (TLS, accept loop, reload,
//! admin listener); [`kmip`] is what KMIP means here (dispatch, operations, access, the object
//! store, the Locate cache); [`tooling`] is what operators and tests run beside the server (PKI,
//! audit trail, wire capture, the conformance runner, a KMIP client). [`config`] and [`app`] read
//! the configuration and wire the rooms together.

pub mod app;
pub mod config;
pub mod front;
pub mod kmip;
pub mod tooling;
