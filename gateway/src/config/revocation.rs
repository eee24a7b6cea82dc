//! `[revocation]`: CRLs for every user, the deny-list of certificates, and whether every user CA
//! must have a CRL.

use std::path::{Path, PathBuf};

use super::defaults::DEFAULT_REQUIRE_CRL;
use super::raw::RawRevocation;
use super::{invalid, resolve, ConfigError};

/// Longest certificate serial number RFC 5280 allows, in octets (DER, sign byte included).
const MAX_SERIAL_LEN: usize = 20;

/// Validated `[revocation]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// CRL files (PEM, one or more CRLs each) checked for every user's certificates.
    pub crls: Vec<PathBuf>,
    /// Refused certificate serials: lowercase hex, no separators or leading zero bytes.
    pub deny_serials: Vec<String>,
    /// Refused certificates by SHA-256 of their DER: 64 lowercase hex digits.
    pub deny_fingerprints: Vec<String>,
    /// Whether a reload closes open connections whose certificate no longer passes.
    pub close_revoked_connections: bool,
    /// A user CA without a CRL in force fails start, `check-config` and reload (instead of a
    /// warning): its certificates could not be revoked.
    pub require_crl: bool,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            crls: Vec::new(),
            deny_serials: Vec::new(),
            deny_fingerprints: Vec::new(),
            close_revoked_connections: true,
            require_crl: DEFAULT_REQUIRE_CRL,
        }
    }
}
/// Normalises a serial as `openssl x509 -serial` or `pki list` print it (`0x`, `:` allowed):
/// lowercase hex without leading zero bytes; `None` for zero, non-hex or more than 20 octets.
pub fn normalize_serial(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    if digits.len() > 2 * (MAX_SERIAL_LEN + 1) {
        return None;
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes = hex::decode(padded).ok()?;
    let first = bytes.iter().position(|b| *b != 0)?;
    let trimmed = bytes.get(first..)?;
    // A set top bit costs one more (zero) byte in DER.
    let sign_byte = trimmed.first().is_some_and(|b| b & 0x80 != 0);
    (trimmed.len() + usize::from(sign_byte) <= MAX_SERIAL_LEN).then(|| hex::encode(trimmed))
}

/// Normalises a SHA-256 fingerprint (`AB:CD:...` or plain hex) to 64 lowercase hex digits.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

pub(super) fn revocation_config(
    raw: Option<RawRevocation>,
    base: &Path,
) -> Result<RevocationConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let mut deny_serials = Vec::with_capacity(raw.deny_serials.len());
    for (i, s) in raw.deny_serials.iter().enumerate() {
        deny_serials.push(normalize_serial(s).ok_or_else(|| {
            invalid(
                format!("revocation.deny_serials[{i}]"),
                format!("'{s}' is not a certificate serial in hex"),
            )
        })?);
    }
    let mut deny_fingerprints = Vec::with_capacity(raw.deny_fingerprints.len());
    for (i, f) in raw.deny_fingerprints.iter().enumerate() {
        deny_fingerprints.push(normalize_fingerprint(f).ok_or_else(|| {
            invalid(
                format!("revocation.deny_fingerprints[{i}]"),
                format!("'{f}' is not a SHA-256 fingerprint (64 hex digits)"),
            )
        })?);
    }
    Ok(RevocationConfig {
        crls: raw.crls.into_iter().map(|p| resolve(base, p)).collect(),
        deny_serials,
        deny_fingerprints,
        close_revoked_connections: raw.close_revoked_connections.unwrap_or(true),
        require_crl: raw.require_crl.unwrap_or(DEFAULT_REQUIRE_CRL),
    })
}
