//! `[tls]` and `[[users]]`: the server's own certificate, and which client certificates let in
//! which user.

use std::path::{Path, PathBuf};

use super::defaults::DEFAULT_DIRECT_ISSUER_ONLY;
use super::raw::RawUser;
use super::{invalid, resolve, ConfigError};

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub name: String,
    pub cas: Vec<PathBuf>,
    /// CRLs checked for this user's certificates, besides `[revocation] crls`.
    pub crls: Vec<PathBuf>,
    /// The client certificate must be signed by one of `cas` itself, not by an intermediate
    /// below it: trusting a root then does not mean trusting every CA that root certified.
    pub direct_issuer_only: bool,
}

/// A CN a user may be named by: non-empty, no wildcard, printable.
pub fn valid_user_name(name: &str) -> bool {
    !name.trim().is_empty() && !name.contains('*') && !name.chars().any(char::is_control)
}

/// Validates `[[users]]`: at least one, unique valid names, at least one CA each.
pub(super) fn users_config(raw: Vec<RawUser>, base: &Path) -> Result<Vec<UserConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid(
            "users",
            "no [[users]]: nobody could connect; add one with \
             `kmip-gateway user add NAME --ca CA.pem --config FILE`",
        ));
    }
    let mut users = Vec::with_capacity(raw.len());
    for (i, u) in raw.into_iter().enumerate() {
        let key = format!("users[{i}]");
        if !valid_user_name(&u.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("'{}' is empty, a wildcard or not printable", u.name),
            ));
        }
        if users.iter().any(|x: &UserConfig| x.name == u.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("user '{}' is listed twice", u.name),
            ));
        }
        if u.cas.is_empty() {
            return Err(invalid(
                format!("{key}.cas"),
                "at least one trusted CA is required",
            ));
        }
        users.push(UserConfig {
            name: u.name,
            cas: u.cas.into_iter().map(|p| resolve(base, p)).collect(),
            crls: u.crls.into_iter().map(|p| resolve(base, p)).collect(),
            direct_issuer_only: u.direct_issuer_only.unwrap_or(DEFAULT_DIRECT_ISSUER_ONLY),
        });
    }
    Ok(users)
}
