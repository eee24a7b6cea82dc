//! The postgres backend's operator commands: `migrate-schema` (show or apply the pending schema
//! migrations) and `kek rotate` (rewrap every data key under the configured KEK, online).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kmip_backends::postgres::{
    apply_migrations, pending_migrations, Migration, PostgresBackend, RotateReport,
};
use kmip_gateway::app::{postgres_parts, postgres_settings, take_env_secrets};
use kmip_gateway::config::{BackendConfig, GatewayConfig};

/// Exit status of a command refused before it touched the database (arguments, configuration).
const EXIT_REFUSED: u8 = 2;

/// Data keys rewrapped per transaction by default: each batch holds its rows' locks (a
/// gateway writing one of those objects waits) for a KEK unwrap and wrap per row, which on a
/// network HSM is a round trip each; small batches keep that wait short.
const DEFAULT_ROTATE_BATCH: u64 = 100;
/// The largest `--batch`: bounds how long one rotation transaction holds its rows.
const MAX_ROTATE_BATCH: u64 = 10_000;

#[derive(clap::Args)]
pub(crate) struct MigrateSchemaArgs {
    /// The configuration of a gateway on PostgreSQL (`[backend] kind = "postgres"`).
    #[arg(long)]
    config: PathBuf,
    /// Only print the pending migrations (version, description, SQL); change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Subcommand)]
pub(crate) enum KekCommand {
    /// Rewraps every data key under the configured `[backend.kek]`, reading the older ones
    /// with `[[backend.previous_keks]]`, in small transactions while the gateways serve.
    /// Every gateway must already have the new KEK configured (docs/high-availability.md).
    Rotate {
        /// The configuration of a gateway on PostgreSQL (`[backend] kind = "postgres"`).
        #[arg(long)]
        config: PathBuf,
        /// Data keys rewrapped per transaction.
        #[arg(long, default_value_t = DEFAULT_ROTATE_BATCH,
              value_parser = clap::value_parser!(u64).range(1..=MAX_ROTATE_BATCH))]
        batch: u64,
    },
}

/// A postgres configuration, or why not (printed as is, exit 2).
fn load(path: &Path, command: &str) -> Result<GatewayConfig, String> {
    let cfg = GatewayConfig::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !matches!(cfg.backend, BackendConfig::Postgres { .. }) {
        return Err(format!(
            "{}: {command} works on the postgres backend only, and this configuration's \
             [backend] is not kind = \"postgres\": give the configuration of a gateway on \
             PostgreSQL",
            path.display()
        ));
    }
    Ok(cfg)
}

/// Loads the configuration, takes its secrets from the environment and runs `body` on a
/// runtime; prints its output (exit 0) or its error (exit 1).
fn run_on<F, Fut>(path: &Path, command: &str, body: F) -> ExitCode
where
    F: FnOnce(GatewayConfig, kmip_gateway::app::EnvSecrets) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let cfg = match load(path, command) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmip-gateway {command}: {e}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    // Before the runtime: no other thread may read the environment while it changes.
    let secrets = take_env_secrets(&cfg);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body(cfg, secrets)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kmip-gateway {command}: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `migrate-schema [--dry-run]`.
pub(crate) fn migrate_schema(args: &MigrateSchemaArgs) -> ExitCode {
    let dry_run = args.dry_run;
    run_on(
        &args.config,
        "migrate-schema",
        |cfg, mut secrets| async move {
            let settings = postgres_settings(&cfg, &mut secrets).map_err(|e| e.to_string())?;
            if dry_run {
                let pending = pending_migrations(&settings)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(describe_pending(&pending))
            } else {
                let applied = apply_migrations(&settings)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(describe_applied(&applied))
            }
        },
    )
}

/// The dry run's output: valid SQL comments around each migration's SQL.
fn describe_pending(pending: &[Migration]) -> String {
    if pending.is_empty() {
        return "-- nothing to apply: the database schema is current\n".into();
    }
    let mut out = format!(
        "-- {} pending schema migration(s); nothing was changed (--dry-run).\n\
         -- `kmip-gateway migrate-schema --config C` (or a gateway's start) applies them in one \
         transaction and records each in kmip_schema_migrations: do not run this SQL by hand.\n",
        pending.len()
    );
    for m in pending {
        out.push_str(&format!(
            "\n-- version {}: {}\n{}\n",
            m.version,
            m.description,
            m.sql.trim_end()
        ));
    }
    out
}

fn describe_applied(applied: &[Migration]) -> String {
    if applied.is_empty() {
        return "nothing to apply: the database schema is current\n".into();
    }
    applied
        .iter()
        .map(|m| {
            format!(
                "applied schema migration {}: {}\n",
                m.version, m.description
            )
        })
        .collect()
}

/// `kek rotate`.
pub(crate) fn kek(cmd: &KekCommand) -> ExitCode {
    let KekCommand::Rotate { config, batch } = cmd;
    let batch = usize::try_from(*batch).unwrap_or(usize::MAX);
    run_on(config, "kek rotate", |cfg, secrets| async move {
        let (settings, keks) = postgres_parts(&cfg, secrets)
            .await
            .map_err(|e| e.to_string())?;
        let current = keks.current().id().to_owned();
        let previous: Vec<String> = keks.previous().iter().map(|k| k.id().to_owned()).collect();
        let backend = PostgresBackend::open(settings, keks)
            .await
            .map_err(|e| e.to_string())?;
        let report = backend
            .rotate_keks(batch)
            .await
            .map_err(|e| e.to_string())?;
        Ok(describe_rotation(&report, &current, &previous))
    })
}

fn describe_rotation(report: &RotateReport, current: &str, previous: &[String]) -> String {
    let mut out = format!(
        "kek rotate: rewrapped {} data key(s) under {current}; {} were under it already. Every \
         data key in the database is now wrapped by {current}.\n",
        report.rewrapped, report.already_current
    );
    if previous.is_empty() {
        out.push_str("No previous key encryption key is configured: nothing more to do.\n");
    } else {
        out.push_str(&format!(
            "Next: remove [[backend.previous_keks]] ({}) from every gateway's configuration and \
             restart the gateways one at a time (a gateway refuses to start while a data key is \
             wrapped by a KEK it lacks, and names it). Take a new database backup; once the \
             backups and WAL archives you keep all start after this rotation, destroy the old \
             KEK(s): older backups become unreadable, and with them every key destroyed before \
             now (docs/high-availability.md).\n",
            previous.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dry_run_prints_each_migration_as_sql_and_says_when_there_is_none() {
        let m = Migration {
            version: 7,
            description: "a table",
            sql: "CREATE TABLE t (v int);\n",
        };
        let out = describe_pending(&[m]);
        assert!(out.contains("nothing was changed"), "{out}");
        assert!(
            out.contains("-- version 7: a table\nCREATE TABLE t (v int);\n"),
            "{out}"
        );
        assert!(out
            .lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with("--") || l.starts_with("CREATE")));
        assert!(describe_pending(&[]).contains("nothing to apply"));
        assert!(describe_applied(&[m]).contains("applied schema migration 7: a table"));
    }
}
