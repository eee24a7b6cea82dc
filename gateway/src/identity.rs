//! Who a connection is, once its client certificate is verified: the one fact about a client that
//! the front hands to KMIP dispatch, the audit trail and wire capture.

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub subject: String,
    pub serial_hex: String,
    /// SHA-256 of the client certificate's DER, lowercase hex.
    pub fingerprint: String,
}
