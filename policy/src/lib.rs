//! Pure, I/O-free access decisions for kmip-gateway.
//!
//! A [`Policy`] is parsed from TOML ([`PolicyConfig`]), validated once, then shared read-only
//! (the gateway holds it as `Arc<Policy>` and swaps it on reload). Everything is denied unless a
//! rule grants it. An object the caller may not see at all is reported as
//! [`DenyReason::Invisible`] (answer Item Not Found, as for a missing object); a visible object
//! whose operation is not granted as [`DenyReason::NotPermitted`] (Permission Denied).
#![forbid(unsafe_code)]

mod error;
mod facts;
mod grants;
mod operation;
mod policy;
mod raw;

pub use error::PolicyError;
pub use facts::ObjectFacts;
pub use operation::{Operation, OperationKind};
pub use policy::{Decision, DenyReason, Identity, Policy};
pub use raw::{GroupConfig, PolicyConfig, RuleConfig, UserConfig};
