//! KMIP semantics: request dispatch, the operations, access control, the object store and the
//! Locate cache. Nothing here opens a socket.

pub mod access;
pub mod dispatch;
pub mod locate_cache;
pub mod ops;
pub mod store;
