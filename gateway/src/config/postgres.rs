//! `[backend] kind = "postgres"`: the database URL and its credentials, the pool, when requests
//! catch up with other gateways' writes, and the key encryption keys (`[backend.kek]`,
//! `[[backend.previous_keks]]`).

use std::path::Path;

use super::backend::{BackendConfig, KekConfig, PasswordConfig, PinConfig, ReadYourWrites};
use super::defaults::{
    DEFAULT_PG_ACQUIRE_TIMEOUT, DEFAULT_PG_CONNECT_TIMEOUT, DEFAULT_PG_POOL_SIZE,
};
use super::raw::{RawBackend, RawKek};
use super::{invalid, millis, resolve, ConfigError};

/// The URL schemes libpq accepts.
const URL_SCHEMES: [&str; 2] = ["postgresql://", "postgres://"];

/// The query parameters of a libpq URI, names lower-cased.
fn url_params(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the URL and says whether it turns TLS off (`sslmode=disable`).
fn check_url(url: &str) -> Result<bool, ConfigError> {
    let Some(rest) = URL_SCHEMES.iter().find_map(|s| url.strip_prefix(s)) else {
        return Err(invalid(
            "backend.url",
            "must be a libpq URI: postgresql://user@host1:port1,host2:port2/database?sslmode=verify-full",
        ));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let params = url_params(url);
    let user_has_password = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    if user_has_password || params.iter().any(|(k, _)| k == "password") {
        return Err(invalid(
            "backend.url",
            "holds a password: remove it from the URL and give it with password_file (a private \
             file) or password_env (a variable), so that it never appears in the configuration",
        ));
    }
    if authority.rsplit('@').next().is_none_or(str::is_empty) {
        return Err(invalid("backend.url", "names no host"));
    }
    Ok(params
        .iter()
        .any(|(k, v)| k == "sslmode" && v.eq_ignore_ascii_case("disable")))
}

fn read_your_writes(value: Option<String>) -> Result<ReadYourWrites, ConfigError> {
    match value.as_deref() {
        None => Ok(ReadYourWrites::default()),
        Some("request") => Ok(ReadYourWrites::Request),
        Some("connection") => Ok(ReadYourWrites::Connection),
        Some(other) => Err(invalid(
            "backend.read_your_writes",
            format!("'{other}' is not one of \"request\", \"connection\""),
        )),
    }
}

fn kek_config(k: RawKek, key: &str, base: &Path) -> Result<KekConfig, ConfigError> {
    let field = |name: &str| format!("{key}.{name}");
    match k.kind.as_str() {
        "file" => {
            for (set, name) in [
                (k.module.is_some(), "module"),
                (k.token_label.is_some(), "token_label"),
                (
                    k.pin_file.is_some() || k.pin_env.is_some(),
                    "pin_file/pin_env",
                ),
                (k.key_label.is_some(), "key_label"),
            ] {
                if set {
                    return Err(invalid(field(name), "only applies to kind = \"pkcs11\""));
                }
            }
            match (k.file, k.env) {
                (Some(f), None) => Ok(KekConfig::File(resolve(base, f))),
                (None, Some(e)) => Ok(KekConfig::Env(e)),
                _ => Err(invalid(
                    field("file"),
                    "give exactly one of file (a 0600 file of 64 hex digits) or env (a variable)",
                )),
            }
        }
        "pkcs11" => {
            if k.file.is_some() || k.env.is_some() {
                return Err(invalid(field("file"), "only applies to kind = \"file\""));
            }
            let module = resolve(
                base,
                k.module.ok_or_else(|| {
                    invalid(field("module"), "missing: path of the PKCS#11 library")
                })?,
            );
            let token_label = k
                .token_label
                .filter(|l| !l.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        field("token_label"),
                        "missing: the token is found by its label",
                    )
                })?;
            let key_label = k
                .key_label
                .filter(|l| !l.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        field("key_label"),
                        "missing: the label of the AES key that wraps",
                    )
                })?;
            let pin = match (k.pin_file, k.pin_env) {
                (Some(f), None) => PinConfig::File(resolve(base, f)),
                (None, Some(e)) => PinConfig::Env(e),
                _ => {
                    return Err(invalid(
                        field("pin_file"),
                        "give exactly one of pin_file or pin_env",
                    ))
                }
            };
            Ok(KekConfig::Pkcs11 {
                module,
                token_label,
                pin,
                key_label,
            })
        }
        other => Err(invalid(
            field("kind"),
            format!("'{other}' is not one of \"file\", \"pkcs11\""),
        )),
    }
}

/// The keys of `[backend]` that only the postgres backend reads, refused for other kinds.
pub(super) fn refuse_postgres_keys(b: &RawBackend) -> Result<(), ConfigError> {
    for (set, key) in [
        (b.url.is_some(), "url"),
        (
            b.password_file.is_some() || b.password_env.is_some(),
            "password_file/password_env",
        ),
        (b.ca.is_some(), "ca"),
        (b.connect_timeout_ms.is_some(), "connect_timeout_ms"),
        (b.read_your_writes.is_some(), "read_your_writes"),
        (b.kek.is_some(), "kek"),
        (!b.previous_keks.is_empty(), "previous_keks"),
    ] {
        if set {
            return Err(invalid(
                format!("backend.{key}"),
                "only applies to kind = \"postgres\"",
            ));
        }
    }
    Ok(())
}

pub(super) fn postgres_backend(b: RawBackend, base: &Path) -> Result<BackendConfig, ConfigError> {
    for (set, key, kind) in [
        (
            b.master_key_file.is_some() || b.master_key_env.is_some(),
            "master_key_file",
            "vault",
        ),
        (b.head_file.is_some(), "head_file", "vault"),
        (b.module.is_some(), "module", "pkcs11"),
        (b.token_label.is_some(), "token_label", "pkcs11"),
        (
            b.pin_file.is_some() || b.pin_env.is_some(),
            "pin_file/pin_env",
            "pkcs11",
        ),
    ] {
        if set {
            return Err(invalid(
                format!("backend.{key}"),
                format!(
                    "only applies to kind = \"{kind}\" (the postgres KEK's are in [backend.kek])"
                ),
            ));
        }
    }
    let url = b.url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
        invalid(
            "backend.url",
            "missing: the database, postgresql://user@host1:port1,host2:port2/database",
        )
    })?;
    let tls_off = check_url(&url)?;
    let password = match (b.password_file, b.password_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "backend.password_file",
                "give password_file or password_env, not both",
            ))
        }
        (Some(f), None) => PasswordConfig::File(resolve(base, f)),
        (None, Some(e)) => PasswordConfig::Env(e),
        (None, None) => PasswordConfig::None,
    };
    let ca = b.ca.map(|c| resolve(base, c));
    match (&ca, tls_off) {
        (None, false) => {
            return Err(invalid(
                "backend.ca",
                "missing: the PEM file of the CAs that sign the database server's certificate \
                 (or sslmode=disable in the URL, only for a database on a trusted network)",
            ))
        }
        (Some(_), true) => {
            return Err(invalid(
                "backend.ca",
                "given, but the URL's sslmode=disable turns TLS off: remove one of them",
            ))
        }
        _ => {}
    }
    let pool_size = match b.pool_size {
        Some(0) => return Err(invalid("backend.pool_size", "must be greater than zero")),
        Some(n) => n,
        None => DEFAULT_PG_POOL_SIZE,
    };
    let kek = kek_config(
        b.kek.ok_or_else(|| {
            invalid(
                "backend.kek",
                "missing: [backend.kek] with kind = \"file\" or \"pkcs11\": the key that wraps \
                 every object's data key, kept out of the database",
            )
        })?,
        "backend.kek",
        base,
    )?;
    let previous_keks = b
        .previous_keks
        .into_iter()
        .enumerate()
        .map(|(i, k)| kek_config(k, &format!("backend.previous_keks[{i}]"), base))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(i) = previous_keks.iter().position(|k| *k == kek) {
        return Err(invalid(
            format!("backend.previous_keks[{i}]"),
            "is the current [backend.kek]",
        ));
    }
    Ok(BackendConfig::Postgres {
        url,
        password,
        ca,
        pool_size,
        acquire_timeout: millis(
            "backend.acquire_timeout_ms",
            b.acquire_timeout_ms,
            DEFAULT_PG_ACQUIRE_TIMEOUT,
        )?,
        connect_timeout: millis(
            "backend.connect_timeout_ms",
            b.connect_timeout_ms,
            DEFAULT_PG_CONNECT_TIMEOUT,
        )?,
        read_your_writes: read_your_writes(b.read_your_writes)?,
        kek,
        previous_keks,
    })
}
