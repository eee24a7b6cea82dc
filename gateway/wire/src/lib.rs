//! KMIP wire layer: the TTLV codec, the tag and enumeration tables of KMIP 1.0–2.1, the typed
//! message model and the KMIP XML encoding. Pure: no I/O, no async.
#![forbid(unsafe_code)]

pub mod compare;
pub mod json;
pub mod model;
pub mod names;
pub mod spec;
pub mod ttlv;
pub mod xml;

pub use ttlv::{decode, Limits, Tag, Ttlv, TtlvError, Value};
