//! Process wiring: configuration → backend → store → TLS → listeners, and signal handling
//! (SIGTERM/SIGINT stop gracefully; SIGHUP, file changes and `POST /reload` reload, see
//! [`crate::front::reload`]). The pid file `<data_dir>/kmip-gateway.pid` lets `kmip-gateway reload` find
//! the process; the gateway holds an exclusive lock on it while it runs, so a stale file (whose
//! pid may now be another process) is recognised and never signalled.

use crate::config::{BackendConfig, GatewayConfig, MasterKeyConfig, MigrateTarget, PinConfig};
use crate::front::admin::{Admin, AdminAccess, AdminReload};
use crate::front::reload::{
    export_expiries, pid_file, spawn_file_watcher, spawn_sighup, Commit, ReloadHook, Reloader,
};
use crate::front::server::{keep_saved, load_clients_seen, save_clients_seen, Protocol, Server};
use crate::front::tls::{TlsSetupError, TlsState};
use crate::kmip::access::{load_policy, Access, AccessError};
use crate::kmip::dispatch::Dispatcher;
use crate::kmip::ops::{Adoption, Ops};
use crate::kmip::store::Store;
use crate::tooling::audit::AuditLog;
use crate::tooling::capture::Capture;
use crate::upstream::{refresh, MigratingBackend, UpstreamBackend};
use arc_swap::ArcSwap;
use kmip_backends::{Backend, BackendError};
use metrics_exporter_prometheus::Matcher;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};
use zeroize::Zeroizing;

mod postgres;
pub use postgres::{postgres_parts, postgres_settings};

#[derive(Debug, Error)]
pub enum StartError {
    #[error("development PKI: {0}")]
    Pki(#[from] crate::tooling::pki::PkiError),
    #[error("[certify] issuing CA: {0}")]
    IssuingCa(crate::tooling::pki::PkiError),
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("stored objects: {0}")]
    Store(String),
    #[error(transparent)]
    Policy(#[from] AccessError),
    #[error("audit trail: {0}")]
    Audit(String),
    #[error("wire capture: {0}")]
    Capture(#[from] crate::tooling::capture::CaptureError),
    #[error("signals: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Admin(#[from] crate::front::admin::AdminError),
    #[error("admin token task: {0}")]
    AdminTask(String),
    /// A secret of the postgres backend (password, KEK) could not be read.
    #[error("{0}")]
    Secret(String),
    /// Another migrating KMIP proxy holds the database of `[backend.migrate_to]`.
    #[error(
        "another KMIP proxy is migrating to the database of [backend.migrate_to]: one proxy \
         at a time migrates into a database (its upstream map is in its own data folder); \
         stop the other one, or point this gateway's clients at it (docs/proxy.md)"
    )]
    MigratingElsewhere,
}

/// Secrets the configuration takes from environment variables, read (and removed from the
/// environment) by [`take_env_secrets`] before any thread exists.
#[derive(Default)]
pub struct EnvSecrets {
    /// The vault master key in hex (`master_key_env`).
    master_key_hex: Option<Zeroizing<String>>,
    /// The PKCS#11 user PIN (`pin_env`).
    pin: Option<Zeroizing<String>>,
    /// The postgres backend's: its password and its KEKs' keys or PINs, by variable name.
    vars: Vec<(String, Zeroizing<String>)>,
}

impl EnvSecrets {
    /// The value taken from the variable `name`, once.
    fn take(&mut self, name: &str) -> Option<Zeroizing<String>> {
        let at = self.vars.iter().position(|(n, _)| n == name)?;
        Some(self.vars.swap_remove(at).1)
    }
}

/// Reads the secrets `cfg` takes from the environment and removes them from it, so that neither
/// child processes nor `/proc/PID/environ` show them. Call it before the async runtime (or any
/// other thread) starts: the environment is process-wide and unsynchronised.
pub fn take_env_secrets(cfg: &GatewayConfig) -> EnvSecrets {
    match &cfg.backend {
        BackendConfig::Vault {
            master_key: MasterKeyConfig::Env(name),
            ..
        } => EnvSecrets {
            master_key_hex: crate::environ::take_secret(name),
            ..EnvSecrets::default()
        },
        BackendConfig::Kmip(upstream) => EnvSecrets {
            master_key_hex: match &upstream.master_key {
                MasterKeyConfig::Env(name) => crate::environ::take_secret(name),
                MasterKeyConfig::File(_) => None,
            },
            vars: match &upstream.migrate_to {
                Some(MigrateTarget::Postgres(local)) => take_postgres_secrets(local),
                _ => Vec::new(),
            },
            ..EnvSecrets::default()
        },
        BackendConfig::Pkcs11 {
            pin: PinConfig::Env(name),
            ..
        } => EnvSecrets {
            pin: crate::environ::take_secret(name),
            ..EnvSecrets::default()
        },
        BackendConfig::Postgres { .. } => EnvSecrets {
            vars: take_postgres_secrets(&cfg.backend),
            ..EnvSecrets::default()
        },
        _ => EnvSecrets::default(),
    }
}

/// The secrets a postgres backend's configuration takes from the environment, by variable.
fn take_postgres_secrets(backend: &BackendConfig) -> Vec<(String, Zeroizing<String>)> {
    postgres::secret_vars(backend)
        .into_iter()
        .filter_map(|name| crate::environ::take_secret(&name).map(|v| (name, v)))
        .collect()
}

/// Histogram buckets (seconds) of request and handshake latency: sub-millisecond vault reads up
/// to HSM calls that wait for a pooled session.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];
/// How long a stopping gateway waits for the capture writer to write what is queued.
const CAPTURE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the file vault gets its master key from.
pub fn vault_key_source(key: &MasterKeyConfig) -> kmip_backends::vault::MasterKeySource {
    use kmip_backends::vault::MasterKeySource;
    match key {
        MasterKeyConfig::File(p) => MasterKeySource::File(p.clone()),
        MasterKeyConfig::Env(name) => MasterKeySource::EnvHex(name.clone()),
    }
}

/// Opens (or creates) the vault in `dir`. Opening replays its log from disk: blocking work, off
/// the async workers.
async fn open_vault(
    dir: &std::path::Path,
    source: kmip_backends::vault::MasterKeySource,
    head: &std::path::Path,
) -> Result<Arc<dyn Backend>, BackendError> {
    let (dir, head) = (dir.to_path_buf(), head.to_path_buf());
    let vault = tokio::task::spawn_blocking(move || {
        kmip_backends::vault::Vault::open_with_head(&dir, source, &head)
    })
    .await
    .map_err(|e| BackendError::Unavailable(format!("vault open task: {e}")))??;
    Ok(Arc::new(vault))
}

/// Opens the configured backend; any problem (bad module, token, PIN, corrupt vault) is fatal.
/// Secrets named by `*_env` keys come from `secrets` (see [`take_env_secrets`]).
pub async fn open_backend(
    cfg: &GatewayConfig,
    secrets: EnvSecrets,
) -> Result<Arc<dyn Backend>, StartError> {
    Ok(open_backend_parts(cfg, secrets).await?.0)
}

/// A KMIP proxy's parts beside the backend: the proxy (its adoption of objects held before, its
/// refresher) and, in migrate mode, the backend that routes between the local vault and it.
struct ProxyParts {
    proxy: Arc<UpstreamBackend>,
    migrating: Option<Arc<MigratingBackend>>,
}

/// [`open_backend`], with the KMIP proxy's parts when the backend is one.
async fn open_backend_parts(
    cfg: &GatewayConfig,
    secrets: EnvSecrets,
) -> Result<(Arc<dyn Backend>, Option<ProxyParts>), StartError> {
    let only = |b: Arc<dyn Backend>| (b, None);
    match &cfg.backend {
        BackendConfig::Vault {
            dir,
            master_key,
            head,
        } => {
            use kmip_backends::vault::{HexSecret, MasterKeySource};
            if let Some(warning) = cfg.vault_key_warning() {
                tracing::warn!("{warning}");
            }
            let source = match (master_key, secrets.master_key_hex) {
                (MasterKeyConfig::Env(name), Some(hex)) => MasterKeySource::HexValue {
                    var: name.clone(),
                    hex: HexSecret(hex),
                },
                (other, _) => vault_key_source(other),
            };
            Ok(only(open_vault(dir, source, head).await?))
        }
        BackendConfig::Kmip(upstream) => {
            use kmip_backends::vault::{HexSecret, MasterKeySource};
            let source = match (&upstream.master_key, secrets.master_key_hex) {
                (MasterKeyConfig::Env(name), Some(hex)) => MasterKeySource::HexValue {
                    var: name.clone(),
                    hex: HexSecret(hex),
                },
                (other, _) => vault_key_source(other),
            };
            let map = open_vault(&upstream.map_dir, source.clone(), &upstream.map_head).await?;
            let proxy = Arc::new(UpstreamBackend::new(upstream, map.clone())?);
            let (backend, migrating): (Arc<dyn Backend>, _) = match &upstream.migrate_to {
                None => (proxy.clone(), None),
                Some(target) => {
                    let local = match target {
                        MigrateTarget::Vault(local) => {
                            open_vault(&local.dir, source, &local.head).await?
                        }
                        MigrateTarget::Postgres(local) => {
                            let rest = EnvSecrets {
                                vars: secrets.vars,
                                ..EnvSecrets::default()
                            };
                            let database = open_postgres(local, rest).await?;
                            if !database.claim(MIGRATING_PROXY_LOCK).await? {
                                return Err(StartError::MigratingElsewhere);
                            }
                            Arc::new(database)
                        }
                    };
                    let migrating = Arc::new(MigratingBackend::new(local, proxy.clone(), map));
                    (migrating.clone(), Some(migrating))
                }
            };
            Ok((backend, Some(ProxyParts { proxy, migrating })))
        }
        BackendConfig::Pkcs11 {
            module,
            token_label,
            pin,
            pool_size,
            acquire_timeout,
        } => {
            use kmip_backends::pkcs11::{normalize_pin, PinSource, Pkcs11Config, RecoveringPkcs11};
            let (pin, pin_file) = match (pin, secrets.pin) {
                (PinConfig::File(p), _) => (PinSource::File(p.clone()).resolve()?, Some(p.clone())),
                (PinConfig::Env(_), Some(value)) => (normalize_pin(value)?, None),
                (PinConfig::Env(name), None) => (PinSource::Env(name.clone()).resolve()?, None),
            };
            let config = Pkcs11Config {
                module_path: module.clone(),
                token_label: token_label.clone(),
                pin,
                pool_size: *pool_size,
                acquire_timeout: *acquire_timeout,
            };
            Ok(only(RecoveringPkcs11::open(config, pin_file).await?))
        }
        BackendConfig::Postgres { .. } => {
            Ok(only(Arc::new(open_postgres(&cfg.backend, secrets).await?)))
        }
    }
}

/// The session advisory lock a migrating KMIP proxy holds on its database while it runs: one
/// proxy at a time, since the older objects' attributes are in its own data folder's upstream
/// map, which a second proxy would not share. A fixed key (the backend's Name locks hash into
/// the same space: a collision could only refuse one start while that Name is being written).
const MIGRATING_PROXY_LOCK: i64 = 0x6b6d_6970_6d69_6772;

/// Opens the postgres backend `backend` configures (the `[backend]`, or a migrating proxy's
/// `[backend.migrate_to]`).
async fn open_postgres(
    backend: &BackendConfig,
    secrets: EnvSecrets,
) -> Result<kmip_backends::postgres::PostgresBackend, StartError> {
    use kmip_backends::postgres::PostgresBackend;
    let (settings, keks) = postgres::postgres_parts_of(backend, secrets).await?;
    Ok(PostgresBackend::open(settings, keks).await?)
}

/// Reloads the access policy with the rest of the configuration (SIGHUP, file change, `reload`).
/// An invalid policy fails the whole reload and the old one stays in force. The adapter lives here,
/// not in `kmip`, so that KMIP semantics never depend on the network front.
struct PolicyReload(Arc<Access>);

impl ReloadHook for PolicyReload {
    fn name(&self) -> &str {
        "policy"
    }

    fn prepare(&self, cfg: &GatewayConfig) -> Result<Commit, String> {
        let policy = load_policy(cfg).map_err(|e| e.to_string())?;
        let access = self.0.clone();
        Ok(Box::new(move || access.replace(policy)))
    }
}

/// Runs the gateway until SIGTERM or SIGINT, then shuts down gracefully. `config_path` is the file
/// `cfg` was read from (re-read on reload); `None` for the embedded default.
/// `secrets`: from [`take_env_secrets`].
pub async fn run(
    cfg: GatewayConfig,
    config_path: Option<PathBuf>,
    secrets: EnvSecrets,
) -> Result<(), StartError> {
    if cfg.embedded_default {
        let pki = crate::tooling::pki::dev_pki(&cfg.data_dir.join("pki"))?;
        if pki.created {
            info!(dir = %pki.dir.display(), "created the development PKI (CA, server and client-purefa certificates)");
        }
    }
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        // Buckets (not the default summary) for the latencies a dashboard aggregates by
        // operation and across replicas.
        .set_buckets_for_metric(
            Matcher::Full("kmip_request_seconds".into()),
            LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("kmip_handshake_seconds".into()),
                LATENCY_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("kmip_store_fence_seconds".into()),
                LATENCY_BUCKETS,
            )
        })
        .and_then(|b| b.install_recorder())
        .map_err(|e| StartError::Metrics(e.to_string()))?;
    let opening = std::time::Instant::now();
    let (backend, proxy) = open_backend_parts(&cfg, secrets).await?;
    let store = Arc::new(
        Store::open(backend.clone())
            .await
            .map_err(|e| StartError::Store(e.to_string()))?,
    );
    info!(
        backend = backend.name(),
        objects = store.len(),
        open_ms = opening.elapsed().as_millis() as u64,
        "backend opened"
    );
    let tls = Arc::new(ArcSwap::from_pointee(TlsState::build(&cfg, None)?));
    let server_key = tls.load().server_key;
    export_expiries(&tls.load().expiries);
    for finding in &tls.load().warnings {
        warn!("{finding}");
    }
    let access = Arc::new(Access::new(load_policy(&cfg)?));
    let mut ops =
        Ops::new(store.clone(), access.clone(), cfg.locate_cache).with_limits(&cfg.limits);
    if let Some(ca) = load_issuing_ca(&cfg)? {
        ops = ops.with_issuing_ca(Arc::new(ca));
    }
    if let Some(parts) = &proxy {
        ops = ops.with_adoption(parts.proxy.clone() as Arc<dyn Adoption>);
    }
    let audit = match &cfg.audit {
        Some(a) => {
            let dir = a.dir.clone();
            let max = a.max_file_bytes;
            // Opening reads the end of the current audit file to continue the chain.
            let log = tokio::task::spawn_blocking(move || AuditLog::open(&dir, max))
                .await
                .map_err(|e| StartError::Audit(e.to_string()))?
                .map_err(|e| StartError::Audit(e.to_string()))?;
            info!(dir = %a.dir.display(), "audit trail open");
            Some(Arc::new(log))
        }
        None => None,
    };
    let mut dispatcher = Dispatcher::new(ops, cfg.limits, audit);
    if let Some(read_your_writes) = cfg.backend.read_your_writes() {
        dispatcher = dispatcher.with_read_your_writes(read_your_writes);
    }
    let dispatcher = Arc::new(dispatcher);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: cfg.listen.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartError::Listen {
        addr: cfg.listen.to_string(),
        source,
    })?;
    let capture = match &cfg.capture_dir {
        Some(dir) => {
            let limits = kmip_wire::ttlv::Limits {
                max_message_size: cfg.limits.max_message_size,
                max_depth: cfg.limits.max_depth,
            };
            let capture = Capture::start(dir, limits)?;
            warn!(dir = %dir.display(), "wire capture on: every KMIP message is written to this folder (key material and credentials by length only); turn it off once the diagnosis is done");
            Some(capture)
        }
        None => None,
    };
    let server = Arc::new(Server::new(tls, dispatcher, cfg.limits).with_capture(capture.clone()));
    let seen = load_clients_seen(&server.registry, &cfg.data_dir).await;
    if seen > 0 {
        info!(
            clients = seen,
            "client certificates seen before the restart loaded (`kmip-gateway clients`)"
        );
    }
    let reloader = Arc::new(Reloader::new(config_path, cfg.clone(), server.clone()));
    reloader.add_hook(Arc::new(PolicyReload(access)));
    let admin_cfg = cfg.admin.clone();
    // Creating and reading the token file is file I/O: off the async workers.
    let access = tokio::task::spawn_blocking(move || AdminAccess::create_and_load(&admin_cfg))
        .await
        .map_err(|e| StartError::AdminTask(e.to_string()))??;
    let admin_access = Arc::new(ArcSwap::from_pointee(access));
    if cfg.admin.token_file.is_none() && cfg.admin_listen.is_some() {
        warn!("no [admin] token_file: POST /reload and GET /clients are refused");
    }
    reloader.add_hook(Arc::new(AdminReload(admin_access.clone())));
    // Installed before anything announces the process, so an early SIGHUP cannot kill it, nor an
    // early SIGTERM or SIGINT skip the graceful stop.
    spawn_sighup(reloader.clone()).map_err(StartError::Signals)?;
    let stop_signals = StopSignals::install()?;
    if let Err(e) = spawn_file_watcher(reloader.clone()) {
        warn!(error = %e, "cannot watch the configuration's files: reload with SIGHUP or `kmip-gateway reload`");
    }
    let https = match cfg.https_listen {
        Some(addr) => Some(bind_https(addr).await?),
        None => None,
    };
    // Tests and scripts read this line to find a port-0 listener.
    info!(addr = %local, server_key = server_key.label(), "KMIP listener ready");
    if let Some(admin_addr) = cfg.admin_listen {
        let admin_listener =
            TcpListener::bind(admin_addr)
                .await
                .map_err(|source| StartError::Listen {
                    addr: admin_addr.to_string(),
                    source,
                })?;
        let admin_local = admin_listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                addr: admin_addr.to_string(),
                source,
            })?;
        info!(addr = %admin_local, "admin listener ready");
        let admin = Arc::new(Admin {
            metrics,
            backend: backend.clone(),
            reloader: reloader.clone(),
            access: admin_access,
        });
        tokio::spawn(admin.serve(admin_listener));
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let saving = tokio::spawn(keep_saved(
        server.clone(),
        cfg.data_dir.clone(),
        shutdown_rx.clone(),
    ));
    // On a backend other gateways share: apply their writes here as they commit.
    let following = store.follow(shutdown_rx.clone());
    // A KMIP proxy: changes made on the upstream by others reach the store within an interval.
    let refreshing = match (&proxy, &cfg.backend) {
        (Some(parts), BackendConfig::Kmip(upstream)) => upstream.refresh_interval.map(|every| {
            info!(
                interval_ms = every.as_millis() as u64,
                "upstream refresh on"
            );
            refresh::spawn(
                parts.proxy.clone(),
                parts.migrating.clone(),
                server.dispatcher.clone(),
                every,
                shutdown_rx.clone(),
            )
        }),
        _ => None,
    };
    let serving_https = https.map(|l| {
        tokio::spawn(
            server
                .clone()
                .serve(l, shutdown_rx.clone(), Protocol::Https),
        )
    });
    let serving = tokio::spawn(server.clone().serve(listener, shutdown_rx, Protocol::Ttlv));
    let pid_path = pid_file(&cfg.data_dir);
    let pid_lock = std::fs::create_dir_all(&cfg.data_dir).and_then(|()| lock_pid_file(&pid_path));
    if let Err(e) = &pid_lock {
        warn!(file = %pid_path.display(), error = %e, "cannot write the pid file: `kmip-gateway reload` needs --admin or SIGHUP by hand");
    }
    let stopped = stop_signals.wait().await;
    if let Ok(lock) = pid_lock {
        // Removed while still locked, so no reader ever finds it unlocked with this pid.
        let _ = std::fs::remove_file(&pid_path);
        drop(lock);
    }
    stopped?;
    info!("stop signal received: no new connections, finishing in-flight requests");
    let _ = shutdown_tx.send(true);
    if let Err(e) = serving.await {
        error!(error = %e, "listener task failed");
    }
    if let Some(Err(e)) = match serving_https {
        Some(task) => Some(task.await),
        None => None,
    } {
        error!(error = %e, "HTTPS listener task failed");
    }
    let _ = saving.await;
    if let Some(following) = following {
        let _ = following.await;
    }
    if let Some(refreshing) = refreshing {
        let _ = refreshing.await;
    }
    // After the connections ended: their last-seen times are final.
    save_clients_seen(&server.registry, &cfg.data_dir).await;
    if !store.flush_background(cfg.limits.shutdown_grace).await {
        warn!("background attribute writes (Fresh cleared by a Get) did not finish in the grace period");
    }
    if let Some(capture) = capture {
        let flushed = tokio::task::spawn_blocking(move || capture.flush(CAPTURE_FLUSH_TIMEOUT))
            .await
            .unwrap_or(false);
        if !flushed {
            warn!("the wire capture's last messages may not have been written");
        }
    }
    info!("stopped");
    Ok(())
}

/// Binds the KMIP-over-HTTPS listener (`[https] listen`) and logs its address: tests and scripts
/// read that line to find a port-0 listener.
async fn bind_https(addr: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    let listen_error = |source| StartError::Listen {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    info!(addr = %local, "KMIP over HTTPS listener ready (POST /kmip)");
    Ok(listener)
}

/// Writes this process's id to `path` and holds an exclusive lock on it until the returned file is
/// dropped: `kmip-gateway reload` signals the pid only while the lock is held.
fn lock_pid_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another gateway holds this pid file (same data_dir)",
        ),
        std::fs::TryLockError::Error(e) => e,
    })?;
    file.set_len(0)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    file.sync_all()?;
    Ok(file)
}

/// SIGTERM and SIGINT, caught from the moment they are installed: a signal that arrives before
/// [`StopSignals::wait`] is kept, not lost, and never takes the default action (exit).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals, StartError> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).map_err(StartError::Signals)?,
            int: signal(SignalKind::interrupt()).map_err(StartError::Signals)?,
        })
    }

    async fn wait(mut self) -> Result<(), StartError> {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        Ok(())
    }
}

/// The issuing CA of Certify (`[certify]`), refused when it is the listener's key or a CA that
/// logs clients in (any user's, or the `[pki] dir` CA).
fn load_issuing_ca(
    cfg: &GatewayConfig,
) -> Result<Option<crate::tooling::pki::IssuingCa>, StartError> {
    let Some(files) = &cfg.certify else {
        return Ok(None);
    };
    let ca = crate::tooling::pki::IssuingCa::load(&files.cert, &files.key)
        .map_err(StartError::IssuingCa)?;
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|source| {
            StartError::IssuingCa(crate::tooling::pki::PkiError::Io {
                path: path.to_path_buf(),
                source,
            })
        })
    };
    let listener_key = zeroize::Zeroizing::new(read(&cfg.tls.key)?);
    let mut login_cas = Vec::new();
    for path in cfg.users.iter().flat_map(|u| u.cas.iter()) {
        login_cas.push(read(path)?);
    }
    if let Some(dir) = &cfg.pki_dir {
        let own = dir.join(crate::tooling::pki::DEV_CA_CERT);
        if own.exists() {
            login_cas.push(read(&own)?);
        }
    }
    ca.check_separate(&listener_key, &login_cas)
        .map_err(StartError::IssuingCa)?;
    Ok(Some(ca))
}
