//! `migrate --from CONFIG --to CONFIG`, and `upstream copy --config PROXY --to LOCAL` (a KMIP
//! proxy's extractable objects into a local vault or PostgreSQL: the same copy, whose source is
//! the proxy's map and upstream): opens the two configurations' backends as `serve` would and
//! runs `tooling::migrate` between them; the summary goes to stdout, progress to stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kmip_gateway::app::{open_backend, take_env_secrets, EnvSecrets};
use kmip_gateway::config::{BackendConfig, GatewayConfig, MigrateTarget};
use kmip_gateway::tooling::{datadir, migrate};

#[derive(clap::Args)]
pub(crate) struct MigrateArgs {
    /// The configuration of the installation to copy from (e.g. the vault's). Its gateway
    /// must be stopped.
    #[arg(long)]
    from: PathBuf,
    /// The configuration of the installation to copy into (e.g. PostgreSQL's), initialised.
    #[arg(long)]
    to: PathBuf,
}

/// `upstream copy`'s arguments.
#[derive(clap::Args)]
pub(crate) struct UpstreamCopyArgs {
    /// The KMIP proxy's configuration (`[backend] kind = "kmip"`). Its gateway must be stopped;
    /// the upstream must answer. A proxy migrating to PostgreSQL copies into that database.
    #[arg(long)]
    config: PathBuf,
    /// The local installation's configuration (vault or postgres backend), initialised.
    #[arg(long)]
    to: PathBuf,
}

/// Which command runs the copy: what it checks and how it words its report.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    Migrate,
    UpstreamCopy,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Migrate => "migrate",
            Command::UpstreamCopy => "upstream copy",
        }
    }

    fn source_flag(self) -> &'static str {
        match self {
            Command::Migrate => "--from",
            Command::UpstreamCopy => "--config",
        }
    }

    /// Refuses a pair of configurations this command does not copy between.
    fn check(self, from: &GatewayConfig, to: &GatewayConfig) -> Result<(), String> {
        let proxy = |c: &GatewayConfig| matches!(c.backend, BackendConfig::Kmip(_));
        match self {
            Command::Migrate if proxy(from) => Err(
                "--from is a KMIP proxy: copy its objects with `kmip-gateway upstream copy`".into(),
            ),
            Command::UpstreamCopy if !proxy(from) => Err(
                "--config is not a KMIP proxy ([backend] kind = \"kmip\"): use `kmip-gateway migrate`"
                    .into(),
            ),
            _ if proxy(to) => Err(
                "--to is a KMIP proxy: copy into a local vault or PostgreSQL installation".into(),
            ),
            _ => migrating_to(from, to),
        }
    }
}

/// A proxy migrating to PostgreSQL made its new objects in that database: `--to` must be it,
/// or the configuration it becomes would lose them.
fn migrating_to(from: &GatewayConfig, to: &GatewayConfig) -> Result<(), String> {
    let BackendConfig::Kmip(upstream) = &from.backend else {
        return Ok(());
    };
    let Some(MigrateTarget::Postgres(local)) = &upstream.migrate_to else {
        return Ok(());
    };
    match (local.as_ref(), &to.backend) {
        (BackendConfig::Postgres { url: a, .. }, BackendConfig::Postgres { url: b, .. })
            if a == b =>
        {
            Ok(())
        }
        (BackendConfig::Postgres { url, .. }, _) => Err(format!(
            "--config migrates to the database {url} ([backend.migrate_to]), which holds the \
             objects made during the migration: --to must be that database's configuration \
             (its [backend] is the proxy's [backend.migrate_to])"
        )),
        _ => Ok(()),
    }
}

/// Exit status of a run refused before it copied anything (bad arguments or configuration).
const EXIT_REFUSED: u8 = 2;

/// A configuration, checked to hold an installation; `side` names it in messages.
fn load(path: &Path, side: &str) -> Result<GatewayConfig, String> {
    let cfg = GatewayConfig::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    datadir::check(&cfg).map_err(|why| {
        format!(
            "{side} {}: {why}; {}",
            path.display(),
            if side == "--from" {
                "nothing to migrate from there (is it the right configuration?)"
            } else {
                "run `kmip-gateway init --config` on it first"
            }
        )
    })?;
    Ok(cfg)
}

fn same_vault(a: &GatewayConfig, b: &GatewayConfig) -> bool {
    match (&a.backend, &b.backend) {
        (BackendConfig::Vault { dir: x, .. }, BackendConfig::Vault { dir: y, .. }) => {
            x == y || matches!((x.canonicalize(), y.canonicalize()), (Ok(x), Ok(y)) if x == y)
        }
        _ => false,
    }
}

async fn open(
    cfg: &GatewayConfig,
    secrets: EnvSecrets,
    side: &str,
    path: &Path,
) -> Result<std::sync::Arc<dyn kmip_backends::Backend>, String> {
    open_backend(cfg, secrets).await.map_err(|e| {
        format!(
            "cannot open the backend of {side} {}: {e}. If a gateway is serving it, stop the \
             gateway first: migrate needs the store to itself",
            path.display()
        )
    })
}

/// Runs the command: exit 0 when every object is there and verified, 1 when any failed or the
/// run stopped, 2 when it was refused before it started.
pub(crate) fn run(args: &MigrateArgs) -> ExitCode {
    copy(Command::Migrate, &args.from, &args.to)
}

/// `upstream copy`: exit statuses as `migrate`'s; non-extractable objects are listed and do not
/// fail the run (they stay upstream).
pub(crate) fn upstream_copy(args: &UpstreamCopyArgs) -> ExitCode {
    copy(Command::UpstreamCopy, &args.config, &args.to)
}

fn copy(command: Command, from_path: &Path, to_path: &Path) -> ExitCode {
    let name = command.name();
    let configs = load(from_path, command.source_flag()).and_then(|from| {
        let to = load(to_path, "--to")?;
        if same_vault(&from, &to) {
            return Err("--from and --to name the same vault: nothing to migrate".into());
        }
        command.check(&from, &to)?;
        Ok((from, to))
    });
    let (mut from, to) = match configs {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmip-gateway {name}: {e}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    if let BackendConfig::Kmip(upstream) = &mut from.backend {
        // The proxy's own objects only: in migrate mode its local vault is the target's.
        upstream.migrate_to = None;
    }
    // Before the runtime: no other thread may read the environment while it changes.
    let secrets = (take_env_secrets(&from), take_env_secrets(&to));
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
    let outcome = runtime.block_on(async {
        let source = open(&from, secrets.0, command.source_flag(), from_path).await?;
        let target = open(&to, secrets.1, "--to", to_path).await?;
        migrate::migrate(source.as_ref(), target.as_ref(), &mut std::io::stderr())
            .await
            .map_err(|e| e.to_string())
    });
    match outcome {
        Ok(summary) => {
            println!("{name}: {summary}");
            for f in &summary.failed {
                println!("failed: {}: {}", f.uid, f.reason);
            }
            for uid in &summary.not_extractable {
                println!("not extractable, left at the source: {uid}");
            }
            if summary.failed.is_empty() && command == Command::UpstreamCopy {
                println!(
                    "every extractable object is in {} and verified (docs/proxy.md, \"Moving off \
                     the key manager\")",
                    to_path.display()
                );
                ExitCode::SUCCESS
            } else if summary.failed.is_empty() && summary.not_extractable.is_empty() {
                println!(
                    "every object is in the target and verified: point the gateways at {} \
                     (docs/operations.md, \"Moving to PostgreSQL\")",
                    to_path.display()
                );
                ExitCode::SUCCESS
            } else {
                println!(
                    "{} objects were not moved: see why above; objects already copied are kept, \
                     and running the same command again resumes",
                    summary.failed.len() + summary.not_extractable.len()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("kmip-gateway {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
