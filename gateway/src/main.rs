//! `kmip-gateway`: the KMIP server binary and its operator commands.

use clap::{Parser, Subcommand};
use kmip_gateway::config::GatewayConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kmip-gateway",
    version,
    about = "KMIP gateway in front of HSM backends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gateway. Without --config: the embedded default (127.0.0.1:5696, data and a
    /// development PKI in ./kmip-gateway-data, user `purefa`, encrypted file vault).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides the listen address (e.g. 127.0.0.1:0 for a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Data folder of the embedded default (not with --config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Overrides the admin listener address, or `off`.
        #[arg(long)]
        admin_listen: Option<String>,
    },
    /// Validates a configuration file and says exactly what is wrong.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KMIP_GATEWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            data_dir,
            admin_listen,
        } => serve(config, listen, data_dir, admin_listen),
        Command::CheckConfig { config } => check_config(&config),
    }
}

fn serve(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
    admin_listen: Option<String>,
) -> ExitCode {
    if config.is_some() && data_dir.is_some() {
        eprintln!(
            "--data-dir applies to the embedded default only; set data_dir in the config file"
        );
        return ExitCode::from(2);
    }
    let mut cfg = match &config {
        Some(path) => match GatewayConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => GatewayConfig::embedded(
            &data_dir
                .clone()
                .unwrap_or_else(|| kmip_gateway::config::DEFAULT_DATA_DIR.into()),
        ),
    };
    if let Some(l) = listen {
        cfg.listen = l;
    }
    match admin_listen.as_deref() {
        None => {}
        Some("off") => cfg.admin_listen = None,
        Some(a) => match a.parse() {
            Ok(addr) => cfg.admin_listen = Some(addr),
            Err(_) => {
                eprintln!("--admin-listen: '{a}' is not an address or 'off'");
                return ExitCode::from(2);
            }
        },
    }
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
    match runtime.block_on(kmip_gateway::app::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("kmip-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Validates the configuration and everything it points at (certificates, keys, CAs), as the
/// server would at start.
fn check_config(path: &std::path::Path) -> ExitCode {
    let cfg = match GatewayConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = kmip_gateway::tls::TlsState::build(&cfg, None) {
        eprintln!("{}: tls: {e}", path.display());
        return ExitCode::from(2);
    }
    println!("{}: OK", path.display());
    ExitCode::SUCCESS
}
