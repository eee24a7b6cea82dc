//! `serve`: the configuration (a file or the embedded default) with the command line's
//! overrides, the data folder checked (or, for the embedded default, initialised), the log, and
//! the async runtime that runs the gateway.

use kmip_gateway::config::{GatewayConfig, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// Starts the log on stderr (level from `KMIP_GATEWAY_LOG`, default info). Colour codes only
/// when stderr is a terminal (and `NO_COLOR` is unset): journald and files get plain text.
pub(crate) fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KMIP_GATEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

pub(crate) fn serve(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
    [admin_listen, https_listen]: [Option<String>; 2],
    capture: Option<PathBuf>,
    log_format: Option<LogFormat>,
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
    init_logging(log_format.unwrap_or(cfg.log_format));
    if let Err(why) = kmip_gateway::tooling::datadir::check(&cfg) {
        match &config {
            Some(path) => {
                eprintln!(
                    "kmip-gateway: {}",
                    kmip_gateway::tooling::datadir::refusal(&why, path)
                );
                return ExitCode::from(2);
            }
            // The embedded default is for trying the gateway out: its first run initialises
            // the folder itself, and says so.
            None => match kmip_gateway::tooling::datadir::init(&cfg) {
                Ok(done) => tracing::warn!(
                    "{why}: initialising it (embedded default; with --config, run \
                     `kmip-gateway init`): {}",
                    done.trim_end().replace('\n', "; ")
                ),
                Err(e) => {
                    eprintln!("kmip-gateway: {why}, and initialising it failed: {e}");
                    return ExitCode::FAILURE;
                }
            },
        }
    }
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if capture.is_some() {
        cfg.capture_dir = capture;
    }
    for (flag, value, slot) in [
        ("--admin-listen", admin_listen, &mut cfg.admin_listen),
        ("--https-listen", https_listen, &mut cfg.https_listen),
    ] {
        match value.as_deref() {
            None => {}
            Some("off") => *slot = None,
            Some(a) => match a.parse() {
                Ok(addr) => *slot = Some(addr),
                Err(_) => {
                    eprintln!("{flag}: '{a}' is not an address or 'off'");
                    return ExitCode::from(2);
                }
            },
        }
    }
    // Before the runtime: no other thread may read the environment while it changes.
    let secrets = kmip_gateway::app::take_env_secrets(&cfg);
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
    match runtime.block_on(kmip_gateway::app::run(cfg, config, secrets)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("kmip-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
