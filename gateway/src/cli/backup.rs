//! `backup` and `restore`: arguments, and the defaults that make a restore land beside, never
//! on, existing data.

use std::path::{Path, PathBuf};

use kmip_gateway::config::GatewayConfig;
use kmip_gateway::tooling::backup::{self, archive, RestoreTarget};

use super::CliError;

#[derive(clap::Args)]
pub(crate) struct BackupArgs {
    /// The gateway's configuration file (its vault, master key, policy, audit trail).
    #[arg(long)]
    config: PathBuf,
    /// The archive to write (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// File holding the passphrase (mode 0600; never on the command line).
    #[arg(long)]
    passphrase_file: PathBuf,
    /// The CA folder (`pki init-ca --dir`) to include: its key signs every client certificate.
    #[arg(long)]
    ca_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    /// The archive `backup` wrote.
    #[arg(long = "in")]
    input: PathBuf,
    /// File holding the archive's passphrase.
    #[arg(long)]
    passphrase_file: PathBuf,
    /// The data folder to restore into: missing or empty (never overwritten).
    #[arg(long)]
    data_dir: PathBuf,
    /// Where the master key and chain head go (default: `<data-dir>-secrets`).
    #[arg(long)]
    secrets_dir: Option<PathBuf>,
    /// Where the configuration, policy, CA folder and audit head go (default:
    /// `<data-dir>-restored`).
    #[arg(long)]
    files_dir: Option<PathBuf>,
}

/// `<dir><suffix>`, a sibling of `dir` even when it is written with a trailing slash.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.components().collect::<PathBuf>().into_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

pub(crate) fn run_backup(args: &BackupArgs) -> Result<String, CliError> {
    let cfg = GatewayConfig::load(&args.config)
        .map_err(|e| CliError::Refused(format!("{}: {e}", args.config.display())))?;
    let pass = backup::read_passphrase(&args.passphrase_file).map_err(CliError::Refused)?;
    backup::backup(
        &cfg,
        &args.config,
        args.ca_dir.as_deref(),
        &pass,
        archive::DEFAULT_KDF_COST,
        &args.out,
    )
    .map_err(CliError::Refused)
}

pub(crate) fn run_restore(args: &RestoreArgs) -> Result<String, CliError> {
    let pass = backup::read_passphrase(&args.passphrase_file).map_err(CliError::Refused)?;
    let target = RestoreTarget {
        data_dir: args.data_dir.clone(),
        secrets_dir: args
            .secrets_dir
            .clone()
            .unwrap_or_else(|| kmip_gateway::config::default_secrets_dir(&args.data_dir)),
        files_dir: args
            .files_dir
            .clone()
            .unwrap_or_else(|| sibling(&args.data_dir, "-restored")),
    };
    let mut out = backup::restore(&args.input, &pass, &target).map_err(CliError::Refused)?;
    out.push_str(&format!(
        "next: set data_dir = {:?} in the configuration (see {}), then `kmip-gateway serve --config F`\n",
        args.data_dir.display().to_string(),
        target.files_dir.display()
    ));
    Ok(out)
}
