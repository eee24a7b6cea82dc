//! Process wiring: configuration → backend → store → TLS → listeners, and signal handling
//! (SIGTERM/SIGINT stop gracefully; SIGHUP, file changes and `POST /reload` reload, see
//! [`crate::reload`]). The pid file `<data_dir>/kmip-gateway.pid` lets `kmip-gateway reload` find
//! the process.

use crate::access::{load_policy, Access, AccessError, PolicyReload};
use crate::admin::Admin;
use crate::audit::AuditLog;
use crate::capture::Capture;
use crate::config::{BackendConfig, GatewayConfig, MasterKeyConfig, PinConfig};
use crate::dispatch::Dispatcher;
use crate::ops::Ops;
use crate::reload::{export_expiries, pid_file, spawn_file_watcher, spawn_sighup, Reloader};
use crate::server::Listener;
use crate::store::Store;
use crate::tls::{TlsSetupError, TlsState};
use arc_swap::ArcSwap;
use kmip_backends::{Backend, BackendError};
use metrics_exporter_prometheus::Matcher;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Debug, Error)]
pub enum StartError {
    #[error("development PKI: {0}")]
    Pki(#[from] crate::pki::PkiError),
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
    Capture(#[from] crate::capture::CaptureError),
    #[error("signals: {0}")]
    Signals(std::io::Error),
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

/// Opens the configured backend; any problem (bad module, token, PIN, corrupt vault) is fatal.
pub async fn open_backend(cfg: &GatewayConfig) -> Result<Arc<dyn Backend>, StartError> {
    match &cfg.backend {
        BackendConfig::Vault {
            dir,
            master_key,
            head,
        } => {
            use kmip_backends::vault::Vault;
            if let Some(warning) = cfg.vault_key_warning() {
                tracing::warn!("{warning}");
            }
            let source = vault_key_source(master_key);
            let (dir, head) = (dir.clone(), head.clone());
            // Opening replays the vault's log from disk: blocking work, off the async workers.
            let vault =
                tokio::task::spawn_blocking(move || Vault::open_with_head(&dir, source, &head))
                    .await
                    .map_err(|e| BackendError::Unavailable(format!("vault open task: {e}")))??;
            Ok(Arc::new(vault))
        }
        BackendConfig::Pkcs11 {
            module,
            token_label,
            pin,
            pool_size,
            acquire_timeout,
        } => {
            use kmip_backends::pkcs11::{PinSource, Pkcs11Config, RecoveringPkcs11};
            let pin = match pin {
                PinConfig::File(p) => PinSource::File(p.clone()),
                PinConfig::Env(name) => PinSource::Env(name.clone()),
            };
            let config = Pkcs11Config {
                module_path: module.clone(),
                token_label: token_label.clone(),
                pin: pin.resolve()?,
                pool_size: *pool_size,
                acquire_timeout: *acquire_timeout,
            };
            Ok(RecoveringPkcs11::open(config).await?)
        }
    }
}

/// Runs the gateway until SIGTERM or SIGINT, then shuts down gracefully. `config_path` is the file
/// `cfg` was read from (re-read on reload); `None` for the embedded default.
pub async fn run(cfg: GatewayConfig, config_path: Option<PathBuf>) -> Result<(), StartError> {
    if cfg.embedded_default {
        let pki = crate::pki::dev_pki(&cfg.data_dir.join("pki"))?;
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
        .and_then(|b| b.install_recorder())
        .map_err(|e| StartError::Metrics(e.to_string()))?;
    let backend = open_backend(&cfg).await?;
    let store = Arc::new(
        Store::open(backend.clone())
            .await
            .map_err(|e| StartError::Store(e.to_string()))?,
    );
    info!(
        backend = backend.name(),
        objects = store.len(),
        "backend opened"
    );
    let tls = Arc::new(ArcSwap::from_pointee(TlsState::build(&cfg, None)?));
    export_expiries(&tls.load().expiries);
    let access = Arc::new(Access::new(load_policy(&cfg)?));
    let ops = Ops::new(store.clone(), access.clone(), cfg.locate_cache_entries);
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
    let dispatcher = Arc::new(Dispatcher::new(ops, cfg.limits, audit));
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
    let server = Arc::new(Listener::new(tls, dispatcher, cfg.limits).with_capture(capture.clone()));
    let reloader = Arc::new(Reloader::new(config_path, cfg.clone(), server.clone()));
    reloader.add_hook(Arc::new(PolicyReload(access)));
    // Installed before anything announces the process, so an early SIGHUP cannot kill it.
    spawn_sighup(reloader.clone()).map_err(StartError::Signals)?;
    if let Err(e) = spawn_file_watcher(reloader.clone()) {
        warn!(error = %e, "cannot watch the configuration's files: reload with SIGHUP or `kmip-gateway reload`");
    }
    // Tests and scripts read this line to find a port-0 listener.
    info!(addr = %local, "KMIP listener ready");
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
        });
        tokio::spawn(admin.serve(admin_listener));
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let serving = tokio::spawn(server.serve(listener, shutdown_rx));
    let pid_path = pid_file(&cfg.data_dir);
    let pid_written = std::fs::create_dir_all(&cfg.data_dir)
        .and_then(|()| std::fs::write(&pid_path, format!("{}\n", std::process::id())));
    if let Err(e) = &pid_written {
        warn!(file = %pid_path.display(), error = %e, "cannot write the pid file: `kmip-gateway reload` needs --admin or SIGHUP by hand");
    }
    let stopped = wait_for_stop_signal().await;
    if pid_written.is_ok() {
        let _ = std::fs::remove_file(&pid_path);
    }
    stopped?;
    info!("stop signal received: no new connections, finishing in-flight requests");
    let _ = shutdown_tx.send(true);
    if let Err(e) = serving.await {
        error!(error = %e, "listener task failed");
    }
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

async fn wait_for_stop_signal() -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
