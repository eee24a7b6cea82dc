//! The postgres backend's connection settings and key encryption keys, from the configuration:
//! the password and file KEKs read from their private files, or taken from the environment at
//! start ([`super::take_env_secrets`]).

use super::{EnvSecrets, StartError};
use crate::config::{BackendConfig, GatewayConfig, KekConfig, PasswordConfig, PinConfig};
use kmip_backends::envelope::{FileKek, Kek, KekRing};
use kmip_backends::postgres::PgSettings;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Permission bits a secret file (database password, KEK) must not have: readable by anyone
/// but its owner, its secret is not one.
const FORBIDDEN_SECRET_MODE_BITS: u32 = 0o077;

/// The variables of the environment a postgres configuration takes secrets from: the
/// password's, and each KEK's key or PIN.
pub(super) fn secret_vars(backend: &BackendConfig) -> Vec<String> {
    let BackendConfig::Postgres {
        password,
        kek,
        previous_keks,
        ..
    } = backend
    else {
        return Vec::new();
    };
    let mut vars = Vec::new();
    if let PasswordConfig::Env(name) = password {
        vars.push(name.clone());
    }
    for k in std::iter::once(kek).chain(previous_keks) {
        match k {
            KekConfig::Env(name)
            | KekConfig::Pkcs11 {
                pin: PinConfig::Env(name),
                ..
            } => vars.push(name.clone()),
            _ => {}
        }
    }
    vars
}

/// A secret from a private file: its content without surrounding white space.
fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<String>, StartError> {
    let fail =
        |problem: String| StartError::Secret(format!("{what} {}: {problem}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.permissions().mode() & FORBIDDEN_SECRET_MODE_BITS != 0 {
        return Err(fail(format!(
            "readable by others (mode {:o}): chmod 0600 it",
            meta.permissions().mode() & 0o777
        )));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
    let value = Zeroizing::new(text.trim().to_owned());
    if value.is_empty() {
        return Err(fail("is empty".into()));
    }
    Ok(value)
}

/// A secret from the environment, as [`super::take_env_secrets`] took it.
fn env_secret(
    secrets: &mut EnvSecrets,
    name: &str,
    what: &str,
) -> Result<Zeroizing<String>, StartError> {
    secrets
        .take(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| StartError::Secret(format!("{what}: the variable {name} is not set")))
}

/// One KEK of the configuration, opened.
async fn open_kek(k: &KekConfig, secrets: &mut EnvSecrets) -> Result<Arc<dyn Kek>, StartError> {
    match k {
        KekConfig::File(path) => {
            let hex = read_secret_file(path, "the key encryption key file")?;
            Ok(Arc::new(FileKek::from_hex(
                &path.display().to_string(),
                &hex,
            )?))
        }
        KekConfig::Env(name) => {
            let hex = env_secret(secrets, name, "the key encryption key")?;
            Ok(Arc::new(FileKek::from_hex(name, &hex)?))
        }
        KekConfig::Pkcs11 {
            module,
            token_label,
            pin,
            key_label,
        } => {
            use kmip_backends::envelope::Pkcs11Kek;
            use kmip_backends::pkcs11::{normalize_pin, PinSource};
            let pin = match pin {
                PinConfig::File(path) => PinSource::File(path.clone()).resolve()?,
                PinConfig::Env(name) => {
                    normalize_pin(env_secret(secrets, name, "the key encryption key's PIN")?)?
                }
            };
            Ok(Arc::new(
                Pkcs11Kek::open(module, token_label, pin, key_label).await?,
            ))
        }
    }
}

/// The postgres backend's connection settings from `cfg` (which must name the postgres
/// backend), without its KEKs: what commands that only touch the schema need. The password
/// named by `password_env` comes from `secrets`.
pub fn postgres_settings(
    cfg: &GatewayConfig,
    secrets: &mut EnvSecrets,
) -> Result<PgSettings, StartError> {
    settings_of(&cfg.backend, secrets)
}

fn not_postgres() -> StartError {
    StartError::Secret("the configuration's backend is not kind = \"postgres\"".into())
}

/// [`postgres_settings`] of a postgres `backend`.
fn settings_of(
    backend: &BackendConfig,
    secrets: &mut EnvSecrets,
) -> Result<PgSettings, StartError> {
    let BackendConfig::Postgres {
        url,
        password,
        ca,
        pool_size,
        acquire_timeout,
        connect_timeout,
        ..
    } = backend
    else {
        return Err(not_postgres());
    };
    let password = match password {
        PasswordConfig::File(path) => Some(read_secret_file(path, "the database password file")?),
        PasswordConfig::Env(name) => Some(env_secret(secrets, name, "the database password")?),
        PasswordConfig::None => None,
    };
    Ok(PgSettings {
        url: url.clone(),
        password,
        ca: ca.clone(),
        pool_size: *pool_size,
        acquire_timeout: *acquire_timeout,
        connect_timeout: *connect_timeout,
    })
}

/// The postgres backend's settings and KEK ring from `cfg` (which must name the postgres
/// backend). Secrets named by `*_env` keys come from `secrets`.
pub async fn postgres_parts(
    cfg: &GatewayConfig,
    secrets: EnvSecrets,
) -> Result<(PgSettings, KekRing), StartError> {
    postgres_parts_of(&cfg.backend, secrets).await
}

/// [`postgres_parts`] of a postgres `backend` (the `[backend]`, or a migrating proxy's
/// `[backend.migrate_to]`).
pub(super) async fn postgres_parts_of(
    backend: &BackendConfig,
    mut secrets: EnvSecrets,
) -> Result<(PgSettings, KekRing), StartError> {
    let settings = settings_of(backend, &mut secrets)?;
    let BackendConfig::Postgres {
        kek, previous_keks, ..
    } = backend
    else {
        return Err(not_postgres());
    };
    let current = open_kek(kek, &mut secrets).await?;
    let mut previous = Vec::with_capacity(previous_keks.len());
    for k in previous_keks {
        previous.push(open_kek(k, &mut secrets).await?);
    }
    let ring = KekRing::new(current, previous)?;
    Ok((settings, ring))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HEX_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const HEX_B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    fn private_file(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn config(dir: &Path, backend: &str) -> GatewayConfig {
        let text = format!(
            "listen = \"127.0.0.1:0\"\n[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n[[users]]\nname = \"purefa\"\ncas = [\"ca.pem\"]\n[backend]\nkind = \"postgres\"\nurl = \"postgresql://kmip@127.0.0.1:5432/kmip?sslmode=disable\"\n{backend}"
        );
        GatewayConfig::from_toml_str(&text, dir).unwrap()
    }

    fn secrets(vars: &[(&str, &str)]) -> EnvSecrets {
        EnvSecrets {
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Zeroizing::new((*v).to_owned())))
                .collect(),
            ..EnvSecrets::default()
        }
    }

    #[tokio::test]
    async fn password_and_keks_are_read_from_files_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        private_file(dir.path(), "pw", "s3cret\n", 0o600);
        private_file(dir.path(), "kek", &format!("{HEX_A}\n"), 0o600);
        let cfg = config(
            dir.path(),
            "password_file = \"pw\"\n[backend.kek]\nkind = \"file\"\nfile = \"kek\"\n[[backend.previous_keks]]\nkind = \"file\"\nenv = \"OLD_KEK\"\n",
        );
        assert_eq!(secret_vars(&cfg.backend), vec!["OLD_KEK".to_owned()]);
        let (settings, ring) = postgres_parts(&cfg, secrets(&[("OLD_KEK", HEX_B)]))
            .await
            .unwrap();
        assert_eq!(
            settings.password.as_deref().map(String::as_str),
            Some("s3cret")
        );
        assert!(settings.ca.is_none());
        let old = FileKek::from_hex("b", HEX_B).unwrap();
        assert!(ring.by_id(old.id()).is_some(), "the previous KEK unwraps");
        assert_ne!(ring.current().id(), old.id());
    }

    #[tokio::test]
    async fn a_migrating_proxys_database_is_opened_from_its_migrate_to_table() {
        let dir = tempfile::tempdir().unwrap();
        private_file(dir.path(), "kek", HEX_A, 0o600);
        let text = "listen = \"127.0.0.1:0\"\n[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n[[users]]\nname = \"purefa\"\ncas = [\"ca.pem\"]\n[backend]\nkind = \"kmip\"\nmode = \"migrate\"\nupstreams = [\"kms1:5696\"]\ncert = \"gw.pem\"\nkey = \"gw.key\"\nca = \"kms-ca.pem\"\n[backend.migrate_to]\nkind = \"postgres\"\nurl = \"postgresql://kmip@127.0.0.1:5432/kmip?sslmode=disable\"\npassword_env = \"DB_PASSWORD\"\n[backend.migrate_to.kek]\nkind = \"file\"\nfile = \"kek\"\n";
        let cfg = GatewayConfig::from_toml_str(text, dir.path()).unwrap();
        let BackendConfig::Kmip(upstream) = &cfg.backend else {
            panic!("not a proxy: {:?}", cfg.backend);
        };
        let Some(crate::config::MigrateTarget::Postgres(local)) = &upstream.migrate_to else {
            panic!("not migrating to PostgreSQL: {:?}", upstream.migrate_to);
        };
        assert_eq!(secret_vars(local), vec!["DB_PASSWORD".to_owned()]);
        let (settings, ring) = postgres_parts_of(local, secrets(&[("DB_PASSWORD", "s3cret")]))
            .await
            .unwrap();
        assert_eq!(
            settings.password.as_deref().map(String::as_str),
            Some("s3cret")
        );
        assert!(settings
            .url
            .starts_with("postgresql://kmip@127.0.0.1:5432/"));
        let kek = FileKek::from_hex("a", HEX_A).unwrap();
        assert_eq!(ring.current().id(), kek.id());
        let e = postgres_parts_of(local, secrets(&[]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("DB_PASSWORD") && e.contains("not set"), "{e}");
    }

    #[tokio::test]
    async fn a_readable_secret_file_or_a_missing_variable_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let pw = private_file(dir.path(), "pw", "s3cret", 0o640);
        let cfg = config(
            dir.path(),
            "password_file = \"pw\"\n[backend.kek]\nkind = \"file\"\nenv = \"KEK\"\n",
        );
        let e = postgres_parts(&cfg, secrets(&[("KEK", HEX_A)]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&pw.display().to_string()) && e.contains("chmod 0600"),
            "{e}"
        );
        assert!(!e.contains("s3cret"));
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = postgres_parts(&cfg, secrets(&[]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("KEK") && e.contains("not set"), "{e}");
    }

    #[tokio::test]
    async fn one_kek_configured_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        private_file(dir.path(), "kek", HEX_A, 0o600);
        let cfg = config(
            dir.path(),
            "[backend.kek]\nkind = \"file\"\nfile = \"kek\"\n[[backend.previous_keks]]\nkind = \"file\"\nenv = \"SAME\"\n",
        );
        let e = postgres_parts(&cfg, secrets(&[("SAME", HEX_A)]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("configured twice"), "{e}");
    }
}
