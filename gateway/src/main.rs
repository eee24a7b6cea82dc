//! `kmip-gateway`: the KMIP server binary and its operator commands.
#![forbid(unsafe_code)]

mod cli;

use clap::{Args, Parser, Subcommand};
use kmip_gateway::config::{GatewayConfig, LogFormat};
use kmip_gateway::tooling::pki::KeyType;
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
        /// Overrides `[https] listen`: KMIP over HTTPS (`POST /kmip`) on this address, or `off`.
        #[arg(long)]
        https_listen: Option<String>,
        /// Writes every KMIP message of every connection to DIR, as text and as KMIP XML
        /// (key material and credentials by length only); overrides `capture_dir`.
        #[arg(long, value_name = "DIR")]
        capture: Option<PathBuf>,
        /// Log lines as `text` or `json` (one object per line); overrides `[log] format`.
        #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
        log_format: Option<LogFormat>,
    },
    /// Creates the data folder of a new installation (and the vault, its master key and chain
    /// head, where the configuration puts them). `serve --config` refuses a missing or empty
    /// data folder; an initialised one is left as it is.
    Init {
        #[arg(long)]
        config: PathBuf,
    },
    /// Writes an encrypted backup archive: the vault (a consistent copy, safe while the gateway
    /// serves), its master key, the configuration and policy, the CA folder, the audit head.
    Backup(cli::backup::BackupArgs),
    /// Restores an archive into a new data folder (never over existing data), after checking
    /// the passphrase, the archive's authenticity and the vault's chain.
    Restore(cli::backup::RestoreArgs),
    /// Validates a configuration file (and the certificates, keys, CAs and policy it names) and
    /// says exactly what is wrong. With --user and --operation, also prints the policy's decision
    /// for that request (dry run), on an object described by --owner/--uid/--group/--name.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        dry_run: DryRun,
    },
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Reloads a running gateway: TLS certificate and key, CAs, CRLs, users, revocation.
    /// With --admin, or --config naming an admin listener at a fixed port and a token file:
    /// `POST /reload` with the admin token, then prints the outcome and `last reload: …`
    /// (exit 1 when it failed); otherwise SIGHUP to the pid in the pid file
    /// (`<data_dir>/kmip-gateway.pid`), only if a running gateway holds that file.
    Reload {
        /// Admin listener address (e.g. 127.0.0.1:9696).
        #[arg(long, conflicts_with = "pid_file")]
        admin: Option<String>,
        #[arg(long, conflicts_with_all = ["config", "data_dir"])]
        pid_file: Option<PathBuf>,
        /// The gateway's configuration file (its data_dir holds the pid file; its
        /// [admin] token_file the admin token).
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// The data folder of a gateway running the embedded default.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The admin token file (default: from --config, else <data_dir>/admin.token).
        #[arg(long, requires = "admin")]
        token_file: Option<PathBuf>,
    },
    /// Lists the client certificates a running gateway has seen: user, serial, last seen, expiry,
    /// open connections, fingerprint; then `last reload: …` (ok, or FAILED and why).
    Clients {
        /// Admin listener address (default: from --config, which must then name a fixed port;
        /// without --config the embedded default's 127.0.0.1:9696).
        #[arg(long)]
        admin: Option<String>,
        /// The gateway's configuration file (for its admin listener and [admin] token_file).
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// The data folder of a gateway running the embedded default (holds admin.token).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The admin token file (default: from --config, else <data_dir>/admin.token).
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Key administration of a running gateway through its admin listener (admin token): list,
    /// show, revoke, destroy, export the metadata.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// A KMIP proxy (`[backend] kind = "kmip"`) and its upstream: adopt an object the upstream
    /// held before, for one user, through the running gateway's admin listener; copy its
    /// extractable objects into a local installation.
    #[command(subcommand)]
    Upstream(cli::upstream::UpstreamCommand),
    /// Certificate authority for the KMIP listener and its clients (the FlashArray setup).
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Users in the configuration file.
    #[command(subcommand)]
    User(UserCommand),
    /// The encrypted file vault.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Copies every object (UID, attributes, state, material) of one installation's backend
    /// into another's, verifying each; resumable. Stop the gateway first.
    Migrate(cli::migrate::MigrateArgs),
    /// PostgreSQL backend: prints (--dry-run) or applies the pending schema migrations.
    MigrateSchema(cli::postgres::MigrateSchemaArgs),
    /// PostgreSQL backend: the key encryption keys of the stored data keys.
    #[command(subcommand)]
    Kek(cli::postgres::KekCommand),
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Accepts the vault as it is after a deliberate restore from a backup. The gateway refuses
    /// a vault log that is shorter than, or different from, what its head records (a cut or
    /// rolled-back log, which would silently undo acknowledged writes such as destroys); this
    /// re-anchors the head to the log as it is now, and logs it. Run it with the gateway stopped.
    AcceptRestore {
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// The data folder of a gateway running the embedded default.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct CaDirArg {
    /// The CA folder (ca.pem, ca.key, crl.pem, ca-state.json).
    #[arg(long)]
    dir: PathBuf,
    /// The group the gateway service runs as (`kmip-gateway` in the systemd unit): the folder
    /// becomes 0750 and the listener's key 0640, both root:GROUP, so the service reads them and
    /// cannot rewrite them; the CA key stays 0600. Without it, a file being replaced keeps its
    /// owner, group and mode, and a new one is 0600 (keys) or 0644 for the user running this.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
}

impl CaDirArg {
    fn open(&self) -> Result<cli::pki::CaDir, cli::CliError> {
        let group = self.group.as_deref().map(cli::resolve_group).transpose()?;
        Ok(cli::pki::CaDir::new(&self.dir, group))
    }
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Creates a root CA (no intermediates: the FlashArray does not support them) and an empty CRL.
    InitCa {
        #[command(flatten)]
        ca: CaDirArg,
        #[arg(long, default_value = "Pure Storage FlashArray")]
        cn: String,
        #[arg(long, default_value_t = cli::pki::DEFAULT_CA_DAYS)]
        days: u32,
        /// The CA's key: rsa2048, rsa3072, p256 or p384. It signs leaves of any type.
        #[arg(long, default_value_t = KeyType::default())]
        key_type: KeyType,
    },
    /// Signs a client's CSR (the array's), keeping its Common Name; clientAuth usage.
    SignCsr {
        #[command(flatten)]
        ca: CaDirArg,
        #[arg(long)]
        csr: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = cli::pki::DEFAULT_LEAF_DAYS)]
        days: u32,
    },
    /// Issues the KMIP listener's certificate and key (default DIR/server.pem, DIR/server.key).
    ServerCert {
        #[command(flatten)]
        ca: CaDirArg,
        /// DNS name the array uses to reach the gateway (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// IP address the array uses to reach the gateway (repeatable).
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
        #[arg(long, default_value_t = cli::pki::DEFAULT_LEAF_DAYS)]
        days: u32,
        #[arg(long)]
        cert_out: Option<PathBuf>,
        #[arg(long)]
        key_out: Option<PathBuf>,
        /// Only write a key and CSR (DIR/server.csr) for a CA that is not this tool.
        #[arg(long)]
        csr_only: bool,
        /// The listener's key: rsa2048, rsa3072, p256 or p384 (RSA for clients that only take
        /// RSA servers; the TLS 1.2 suites offered follow it, see docs/tls.md).
        #[arg(long, default_value_t = KeyType::default())]
        key_type: KeyType,
    },
    /// Revokes a certificate this CA issued: adds it to the revoked list and rewrites
    /// DIR/crl.pem; with --config, checks that the running gateway enforces it.
    Revoke {
        #[command(flatten)]
        ca: CaDirArg,
        /// Serial in hex (as `pki list` or `openssl x509 -serial` print it).
        #[arg(long, required_unless_present = "cert", conflicts_with = "cert")]
        serial: Option<String>,
        /// The certificate file to revoke.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// The gateway's configuration: after writing the CRL, reload that gateway through its
        /// admin listener and say whether it enforces the revocation (exit 1 if not).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Admin listener address (default: from --config).
        #[arg(long, requires = "config")]
        admin: Option<String>,
    },
    /// Republishes DIR/crl.pem with a new number and a later nextUpdate.
    Crl {
        #[command(flatten)]
        ca: CaDirArg,
    },
    /// Lists the certificates this CA issued, with expiry and revocation.
    List {
        #[command(flatten)]
        ca: CaDirArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Adds a [[users]] entry (the name is the client certificate's Common Name) trusting a CA.
    Add {
        name: String,
        /// CA certificate (PEM) trusted for this user.
        #[arg(long)]
        ca: PathBuf,
        /// CRL (PEM) checked for this user's certificates (repeatable).
        #[arg(long)]
        crl: Vec<PathBuf>,
        /// Accept only certificates the CA signed itself, not those of intermediates below it.
        #[arg(long)]
        direct_issuer_only: bool,
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    // `serve` starts its log once it knows the configured format; the other commands log as text.
    if !matches!(command, Command::Serve { .. }) {
        cli::serve::init_logging(LogFormat::Text);
    }
    match command {
        Command::Serve {
            config,
            listen,
            data_dir,
            admin_listen,
            https_listen,
            capture,
            log_format,
        } => cli::serve::serve(
            config,
            listen,
            data_dir,
            [admin_listen, https_listen],
            capture,
            log_format,
        ),
        Command::CheckConfig { config, dry_run } => check_config(&config, &dry_run),
        Command::Backup(args) => report(cli::backup::run_backup(&args)),
        Command::Restore(args) => report(cli::backup::run_restore(&args)),
        Command::Migrate(args) => cli::migrate::run(&args),
        Command::MigrateSchema(args) => cli::postgres::migrate_schema(&args),
        Command::Kek(cmd) => cli::postgres::kek(&cmd),
        Command::Init { config } => report(
            GatewayConfig::load(&config)
                .map_err(|e| format!("{}: {e}", config.display()))
                .and_then(|cfg| kmip_gateway::tooling::datadir::init(&cfg))
                .map_err(cli::CliError::Refused),
        ),
        Command::Audit(AuditCommand::Verify { paths }) => {
            let report = kmip_gateway::tooling::audit::verify(&paths);
            println!("{report}");
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Reload {
            admin,
            pid_file,
            config,
            data_dir,
            token_file,
        } => report(reload(admin, pid_file, config, data_dir, token_file)),
        Command::Clients {
            admin,
            config,
            data_dir,
            token_file,
            json,
        } => report(
            cli::remote::admin_target(admin, token_file, config.as_deref(), data_dir)
                .and_then(|target| cli::remote::clients(&target, json)),
        ),
        Command::Keys(cmd) => report(cli::keys::run(cmd)),
        Command::Upstream(cli::upstream::UpstreamCommand::Adopt(args)) => {
            report(cli::upstream::adopt(args))
        }
        Command::Upstream(cli::upstream::UpstreamCommand::Copy(args)) => {
            cli::migrate::upstream_copy(&args)
        }
        Command::Pki(cmd) => report(pki(cmd)),
        Command::User(UserCommand::Add {
            name,
            ca,
            crl,
            direct_issuer_only,
            config,
        }) => report(cli::user::add(
            &name,
            &ca,
            &crl,
            direct_issuer_only,
            &config,
        )),
        Command::Vault(VaultCommand::AcceptRestore { config, data_dir }) => {
            report(vault_accept_restore(config, data_dir))
        }
    }
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    LogFormat::parse(s).ok_or_else(|| format!("'{s}' is not a log format: use text or json"))
}

/// `vault accept-restore`: re-anchors the vault's head to its log as it is.
fn vault_accept_restore(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<String, cli::CliError> {
    let cfg = match &config {
        Some(path) => GatewayConfig::load(path)
            .map_err(|e| cli::CliError::Refused(format!("{}: {e}", path.display())))?,
        None => GatewayConfig::embedded(
            &data_dir.unwrap_or_else(|| kmip_gateway::config::DEFAULT_DATA_DIR.into()),
        ),
    };
    let kmip_gateway::config::BackendConfig::Vault {
        dir,
        master_key,
        head,
    } = &cfg.backend
    else {
        return Err(cli::CliError::Refused(
            "the configured backend is not the file vault".into(),
        ));
    };
    let source = kmip_gateway::app::vault_key_source(master_key);
    let done = kmip_backends::vault::Vault::accept_restore(dir, source, head)
        .map_err(|e| cli::CliError::Refused(e.to_string()))?;
    Ok(format!("{done}\n"))
}

/// Prints a command's output, or its error with exit status 1.
fn report(result: Result<String, cli::CliError>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kmip-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn reload(
    admin: Option<String>,
    pid_file: Option<PathBuf>,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    token_file: Option<PathBuf>,
) -> Result<String, cli::CliError> {
    if admin.is_some() {
        let target = cli::remote::admin_target(admin, token_file, config.as_deref(), data_dir)?;
        return cli::remote::reload_admin(&target);
    }
    let pid_file = match (pid_file, config, data_dir) {
        (Some(p), _, _) => p,
        (None, Some(c), _) => {
            let cfg = GatewayConfig::load(&c)
                .map_err(|e| cli::CliError::Refused(format!("{}: {e}", c.display())))?;
            // An admin listener at a fixed address with a token: reload there and print the
            // outcome; otherwise signal, and the outcome is in the log and metrics.
            if cfg.admin.token_file.is_some() && cfg.admin_listen.is_some_and(|a| a.port() != 0) {
                let target = cli::remote::admin_target(None, None, Some(&c), None)?;
                return cli::remote::reload_admin(&target);
            }
            kmip_gateway::front::reload::pid_file(&cfg.data_dir)
        }
        (None, None, d) => kmip_gateway::front::reload::pid_file(
            &d.unwrap_or_else(|| kmip_gateway::config::DEFAULT_DATA_DIR.into()),
        ),
    };
    cli::remote::reload_signal(&pid_file)
}

fn pki(cmd: PkiCommand) -> Result<String, cli::CliError> {
    match cmd {
        PkiCommand::InitCa {
            ca,
            cn,
            days,
            key_type,
        } => ca.open()?.init(&cn, days, key_type),
        PkiCommand::SignCsr { ca, csr, out, days } => ca.open()?.sign_csr(&csr, &out, days),
        PkiCommand::ServerCert {
            ca,
            dns,
            ip,
            days,
            cert_out,
            key_out,
            csr_only,
            key_type,
        } => {
            let dir = ca.open()?;
            let key_out = key_out.unwrap_or_else(|| dir.dir.join(cli::pki::SERVER_KEY));
            if csr_only {
                let csr_out = dir.dir.join(cli::pki::SERVER_CSR);
                return cli::pki::server_csr_files(
                    &dns, &ip, key_type, &csr_out, &key_out, dir.group,
                );
            }
            let cert_out = cert_out.unwrap_or_else(|| dir.dir.join(cli::pki::SERVER_CERT));
            dir.server_cert(&dns, &ip, days, key_type, &cert_out, &key_out)
        }
        PkiCommand::Revoke {
            ca,
            serial,
            cert,
            config,
            admin,
        } => cli::pki::revoke_command(
            &ca.open()?,
            serial.as_deref(),
            cert.as_deref(),
            config.as_deref(),
            admin,
        ),
        PkiCommand::Crl { ca } => ca.open()?.renew_crl(),
        PkiCommand::List { ca, json } => ca.open()?.list(json),
    }
}

/// Validates the configuration and everything it points at (certificates, keys, CAs), as the
/// server would at start.
fn check_config(path: &std::path::Path, dry_run: &DryRun) -> ExitCode {
    let cfg = match GatewayConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let tls = match kmip_gateway::front::tls::TlsState::build(&cfg, None) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("{}: tls: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let policy = match kmip_gateway::kmip::access::load_policy(&cfg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    if let Some(warning) = cfg.vault_key_warning() {
        eprintln!("{}: warning: {warning}", path.display());
    }
    for finding in &tls.warnings {
        eprintln!("{}: warning: {finding}", path.display());
    }
    if let Err(why) = kmip_gateway::tooling::datadir::check(&cfg) {
        eprintln!(
            "{p}: warning: {why}: serve will refuse it; for a new installation run \
             `kmip-gateway init --config {p}`",
            p = path.display()
        );
    }
    println!("{}: OK", path.display());
    println!("{}", cli::check::server_certificate_line(&tls));
    for line in cli::check::upstream_lines(&cfg) {
        println!("{line}");
    }
    match (&dry_run.user, &dry_run.operation) {
        (None, None) => ExitCode::SUCCESS,
        (Some(user), Some(op)) => {
            let Some(op) = kmip_policy::Operation::from_name(op) else {
                eprintln!("--operation: '{op}' is not a KMIP operation name");
                return ExitCode::from(2);
            };
            let id = policy.identity(user);
            let line = match op.kind() {
                kmip_policy::OperationKind::Global => policy.explain_global(&id, op),
                kmip_policy::OperationKind::Object => {
                    let obj = kmip_policy::ObjectFacts {
                        uid: dry_run.uid.clone().unwrap_or_default(),
                        owner: dry_run.owner.clone().unwrap_or_default(),
                        object_groups: dry_run.group.clone(),
                        names: dry_run.name.clone(),
                    };
                    policy.explain(&id, op, &obj)
                }
            };
            println!("{line}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("a dry run needs both --user and --operation");
            ExitCode::from(2)
        }
    }
}

/// A request to decide without a server: who, what, and on which object.
#[derive(clap::Args)]
struct DryRun {
    /// The caller (certificate Common Name).
    #[arg(long)]
    user: Option<String>,
    /// A KMIP operation name (Get, Locate, Create, …).
    #[arg(long)]
    operation: Option<String>,
    /// The object's owner (the user that created it).
    #[arg(long)]
    owner: Option<String>,
    #[arg(long)]
    uid: Option<String>,
    /// An Object Group of the object (repeatable).
    #[arg(long)]
    group: Vec<String>,
    /// A Name of the object (repeatable).
    #[arg(long)]
    name: Vec<String>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks the hash chain of audit files (a file, or a folder of rotated files) and reports
    /// the first edited, deleted or reordered record.
    Verify {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}
