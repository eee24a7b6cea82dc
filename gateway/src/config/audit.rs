//! `[audit]`: where the audit trail is written and when its files rotate.

use std::path::{Path, PathBuf};

use super::defaults::{DEFAULT_AUDIT_FILE_BYTES, MIN_AUDIT_FILE_BYTES};
use super::raw::RawAudit;
use super::{invalid, resolve, ConfigError};

/// The audit trail: hash-chained JSON lines, rotated by size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub max_file_bytes: u64,
}

/// Validates `[audit]`: on by default, in `<data_dir>/audit`; `None` when disabled.
pub(super) fn audit_config(
    raw: Option<RawAudit>,
    base: &Path,
    data_dir: &Path,
) -> Result<Option<AuditConfig>, ConfigError> {
    Ok(match raw {
        Some(RawAudit {
            enabled: Some(false),
            ..
        }) => None,
        Some(a) => Some(AuditConfig {
            dir: a
                .dir
                .map(|d| resolve(base, d))
                .unwrap_or_else(|| data_dir.join("audit")),
            max_file_bytes: match a.max_file_bytes {
                Some(n) if n < MIN_AUDIT_FILE_BYTES => {
                    return Err(invalid(
                        "audit.max_file_bytes",
                        format!("must be at least {MIN_AUDIT_FILE_BYTES} bytes"),
                    ))
                }
                Some(n) => n,
                None => DEFAULT_AUDIT_FILE_BYTES,
            },
        }),
        None => Some(AuditConfig {
            dir: data_dir.join("audit"),
            max_file_bytes: DEFAULT_AUDIT_FILE_BYTES,
        }),
    })
}
