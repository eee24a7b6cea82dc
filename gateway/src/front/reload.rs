//! Hot reload of the TLS material and the users, without dropping anyone.
//!
//! A reload is triggered by SIGHUP, by a change to one of the files the configuration names
//! (the configuration file itself, the server certificate and key, the CAs, the CRLs), or by
//! `POST /reload` on the admin listener. It re-reads the configuration file, builds a complete new
//! [`TlsState`] (keeping TLS session resumption: cache and ticket keys are carried over) and the
//! state of every registered [`ReloadHook`], and only when all of them succeed stores the new
//! TLS state and commits the hooks. If anything is wrong the old state stays in force, the error
//! is logged, `kmip_reloads_total{result="failure"}` and `kmip_reload_failures_total{trigger}`
//! count it, `kmip_reload_last_failed` is 1 and [`Reloader::degraded`] reports it (on `/readyz`)
//! until a reload succeeds. Connections keep the TLS session
//! they started with; after a successful reload every open connection's certificate is re-checked
//! against the new CRLs, deny-list and users, and the failing ones are closed after their current
//! request (`[revocation] close_revoked_connections`), logged and counted in
//! `kmip_connections_closed_total` under the refusal's own reason (`certificate_revoked`,
//! `denied`, `certificate_expired`, `indirect_issuer`, …).
//!
//! Keys that only apply at start (`listen`, `data_dir`, `[limits]`, `[backend]`, `[admin]`, `[https]`) are
//! compared and, when changed, logged as needing a restart; the running values stay.
//!
//! Other components hook in with [`Reloader::add_hook`] (two-phase: `prepare` validates and builds,
//! the returned commit applies), or just watch the reload generation with [`Reloader::subscribe`].

use crate::config::{ConfigError, GatewayConfig};
use crate::front::server::{RecheckReport, Server};
use crate::front::tls::{Expiry, TlsSetupError, TlsState, EXPIRY_WARNING};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

/// Quiet time after the last file event before reloading: an editor's or a tool's write of a
/// certificate and then its key lands as one reload instead of a failing half-way one.
pub const FILE_EVENT_DEBOUNCE: Duration = Duration::from_millis(300);
/// Name of the pid file written in `data_dir`, read by `kmip-gateway reload`.
pub const PID_FILE_NAME: &str = "kmip-gateway.pid";

/// The pid file of a gateway whose data folder is `data_dir`.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join(PID_FILE_NAME)
}

/// What asked for a reload (a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    FileChange,
    Admin,
}

impl Trigger {
    /// Every trigger: the fixed label set of `kmip_reload_failures_total`.
    pub const ALL: [Trigger; 3] = [Trigger::Signal, Trigger::FileChange, Trigger::Admin];

    pub fn label(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::FileChange => "file_change",
            Trigger::Admin => "admin",
        }
    }
}

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsSetupError),
    #[error("{hook}: {problem}")]
    Hook { hook: String, problem: String },
}

/// Applies a prepared reload of one component.
pub type Commit = Box<dyn FnOnce() + Send>;

/// A component reloaded together with the TLS state (e.g. the access policy).
pub trait ReloadHook: Send + Sync {
    /// Names the component in logs and errors.
    fn name(&self) -> &str;
    /// Validates and builds the component's new state from `cfg` without applying it. An error
    /// fails the whole reload: nothing is applied anywhere.
    fn prepare(&self, cfg: &GatewayConfig) -> Result<Commit, String>;
}

/// The outcome of the last reload: what `/readyz`, `GET /reload`, `kmip-gateway reload` and
/// `kmip-gateway clients` report. The error text names files and keys, never their contents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastReload {
    /// Unix seconds.
    pub at: i64,
    /// What asked for it (`sighup`, `file_change`, `admin`).
    pub trigger: String,
    pub ok: bool,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<String>,
}

impl LastReload {
    /// One line for people: `ok at T (trigger)`, or the failure and that the old state serves.
    pub fn describe(&self) -> String {
        let at = time::OffsetDateTime::from_unix_timestamp(self.at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.at.to_string());
        match &self.error {
            None => format!("ok at {at} ({})", self.trigger),
            Some(e) => format!(
                "FAILED at {at} ({}): {e}; the previous configuration still serves until a \
                 reload succeeds",
                self.trigger
            ),
        }
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub generation: u64,
    /// Start-only keys whose new value waits for a restart.
    pub restart_needed: Vec<&'static str>,
    pub connections: RecheckReport,
}

/// Owns the configuration in force and performs reloads, one at a time.
pub struct Reloader {
    config_path: Option<PathBuf>,
    /// The configuration in force; the lock also serialises reloads.
    current: Mutex<GatewayConfig>,
    /// The file's start-only values as last read: command-line overrides (`--listen`) make the
    /// running values differ from the file's without anything having changed.
    file_baseline: Mutex<GatewayConfig>,
    /// Whose TLS state a reload swaps and whose open connections it re-checks.
    server: Arc<Server>,
    hooks: Mutex<Vec<Arc<dyn ReloadHook>>>,
    generation: watch::Sender<u64>,
    /// `None` until the first reload.
    last: Mutex<Option<LastReload>>,
}

/// Start-only keys whose value differs between `old` and `new`.
pub fn restart_only_changes(old: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.data_dir != new.data_dir {
        changed.push("data_dir");
    }
    if old.limits != new.limits {
        changed.push("limits");
    }
    if old.backend != new.backend {
        changed.push("backend");
    }
    if old.admin_listen != new.admin_listen {
        changed.push("admin.listen");
    }
    if old.https_listen != new.https_listen {
        changed.push("https.listen");
    }
    if old.capture_dir != new.capture_dir {
        changed.push("capture_dir");
    }
    // Certify's CA is loaded and checked once, at start.
    if old.certify != new.certify {
        changed.push("certify");
    }
    // The log is set up once, before anything is logged.
    if old.log_format != new.log_format {
        changed.push("log.format");
    }
    changed
}

/// Exports `kmip_cert_expiry_seconds{kind, subject}` (the Unix time of `notAfter`, or of a CRL's
/// `nextUpdate`) and warns about anything within [`EXPIRY_WARNING`].
pub fn export_expiries(expiries: &[Expiry]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let window = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    for e in expiries {
        metrics::gauge!("kmip_cert_expiry_seconds", "kind" => e.kind.label(), "subject" => e.subject.clone())
            .set(e.not_after as f64);
        let left = e.not_after.saturating_sub(now);
        if left <= 0 {
            warn!(kind = e.kind.label(), subject = %e.subject, file = %e.path.display(),
                  "certificate or CRL has expired");
        } else if left < window {
            warn!(kind = e.kind.label(), subject = %e.subject, file = %e.path.display(),
                  days_left = left / 86_400, "certificate or CRL expires soon");
        }
    }
}

impl Reloader {
    /// `config_path` is `None` for the embedded default: a reload then re-reads the files only.
    pub fn new(
        config_path: Option<PathBuf>,
        current: GatewayConfig,
        server: Arc<Server>,
    ) -> Reloader {
        // Exported at zero from the start, so an alert on them has a series before any failure.
        metrics::gauge!("kmip_reload_last_failed").set(0.0);
        for t in Trigger::ALL {
            metrics::counter!("kmip_reload_failures_total", "trigger" => t.label()).increment(0);
        }
        let file_baseline = config_path
            .as_deref()
            .and_then(|p| GatewayConfig::load(p).ok())
            .unwrap_or_else(|| current.clone());
        Reloader {
            config_path,
            file_baseline: Mutex::new(file_baseline),
            current: Mutex::new(current),
            server,
            hooks: Mutex::new(Vec::new()),
            generation: watch::Sender::new(0),
            last: Mutex::new(None),
        }
    }

    /// The KMIP server whose TLS state this reloads.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// Registers a component to reload together with the TLS state.
    pub fn add_hook(&self, hook: Arc<dyn ReloadHook>) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// The reload generation: 0 at start, +1 for each successful reload.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The outcome of the last reload (`None`: none since start).
    pub fn last_reload(&self) -> Option<LastReload> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last reload's failure, while it is the last one: the gateway serves its previous state.
    pub fn degraded(&self) -> Option<LastReload> {
        self.last_reload().filter(|l| !l.ok)
    }

    /// The configuration in force.
    pub fn config(&self) -> GatewayConfig {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Files whose change triggers a reload (absolute paths).
    pub fn watched_files(&self) -> BTreeSet<PathBuf> {
        let cfg = self.config();
        let mut files: Vec<&Path> = vec![&cfg.tls.cert, &cfg.tls.key];
        for u in &cfg.users {
            files.extend(u.cas.iter().map(PathBuf::as_path));
            files.extend(u.crls.iter().map(PathBuf::as_path));
        }
        files.extend(cfg.revocation.crls.iter().map(PathBuf::as_path));
        let pki = cfg.pki_files();
        if let Some((ca, crl)) = &pki {
            files.extend([ca.as_path(), crl.as_path()]);
        }
        if let crate::config::PolicySource::File(p) = &cfg.policy {
            files.push(p);
        }
        if let Some(p) = &self.config_path {
            files.push(p);
        }
        files
            .into_iter()
            .filter_map(|p| std::path::absolute(p).ok())
            .collect()
    }

    /// Reloads now (blocking: file reads and certificate parsing; call it off the async workers).
    /// Logs and counts the outcome.
    pub fn reload(&self, trigger: Trigger) -> Result<ReloadOutcome, ReloadError> {
        let started = std::time::Instant::now();
        let result = self.try_reload();
        metrics::histogram!("kmip_reload_seconds").record(started.elapsed().as_secs_f64());
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastReload {
            at,
            trigger: trigger.label().to_string(),
            ok: result.is_ok(),
            error: result.as_ref().err().map(ToString::to_string),
        });
        metrics::gauge!("kmip_reload_last_failed").set(if result.is_ok() { 0.0 } else { 1.0 });
        match &result {
            Ok(o) => {
                metrics::counter!("kmip_reloads_total", "result" => "success").increment(1);
                info!(
                    trigger = trigger.label(),
                    generation = o.generation,
                    connections_checked = o.connections.checked,
                    connections_failing = o.connections.failing,
                    connections_closed = o.connections.closed,
                    "configuration reloaded"
                );
            }
            Err(e) => {
                metrics::counter!("kmip_reloads_total", "result" => "failure").increment(1);
                metrics::counter!("kmip_reload_failures_total", "trigger" => trigger.label())
                    .increment(1);
                error!(trigger = trigger.label(), error = %e, "reload failed: the previous configuration stays in force");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = match &self.config_path {
            Some(path) => GatewayConfig::load(path)?,
            None => current.clone(),
        };
        let mut baseline = self.file_baseline.lock().unwrap_or_else(|p| p.into_inner());
        let restart_needed = restart_only_changes(&baseline, &new);
        for key in &restart_needed {
            warn!(
                key,
                "changed in the configuration file: takes effect after a restart"
            );
        }
        let file_values = new.clone();
        // The running values of start-only keys stay.
        new.listen = current.listen;
        new.data_dir = current.data_dir.clone();
        new.limits = current.limits;
        new.backend = current.backend.clone();
        new.admin_listen = current.admin_listen;
        new.capture_dir = current.capture_dir.clone();
        new.https_listen = current.https_listen;
        new.log_format = current.log_format;
        new.embedded_default = current.embedded_default;

        let old_tls = self.server.tls.load_full();
        let tls = Arc::new(TlsState::build(&new, Some(&old_tls))?);
        let hooks: Vec<_> = self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut commits = Vec::with_capacity(hooks.len());
        for hook in &hooks {
            commits.push(hook.prepare(&new).map_err(|problem| ReloadError::Hook {
                hook: hook.name().to_string(),
                problem,
            })?);
        }
        self.server.tls.store(tls.clone());
        for commit in commits {
            commit();
        }
        let connections = self
            .server
            .registry
            .recheck(&tls, new.revocation.close_revoked_connections);
        export_expiries(&tls.expiries);
        for finding in &tls.warnings {
            warn!("{finding}");
        }
        *current = new;
        *baseline = file_values;
        let mut generation = 0;
        self.generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        Ok(ReloadOutcome {
            generation,
            restart_needed,
            connections,
        })
    }

    /// Reloads on a blocking thread.
    pub async fn reload_async(
        self: &Arc<Self>,
        trigger: Trigger,
    ) -> Result<ReloadOutcome, ReloadError> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.reload(trigger)).await {
            Ok(r) => r,
            // The blocking pool only fails to run the task when the runtime shuts down.
            Err(e) => Err(ReloadError::Hook {
                hook: "reload task".into(),
                problem: e.to_string(),
            }),
        }
    }
}

/// Reloads on every SIGHUP. The handler is installed before this returns, so a SIGHUP that
/// arrives afterwards never kills the process.
pub fn spawn_sighup(reloader: Arc<Reloader>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reloader.reload_async(Trigger::Signal).await;
        }
    });
    Ok(())
}

/// Whether a file event is a change (not our own reads) of a watched file. Entries whose name
/// starts with `..` count too: Kubernetes swaps a mounted Secret or ConfigMap by renaming its
/// `..data` symlink, which changes the files without an event on their names.
fn is_relevant(event: &notify::Event, files: &BTreeSet<PathBuf>) -> bool {
    use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
    let change = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    };
    change
        && event.paths.iter().any(|p| {
            files.contains(p)
                || p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".."))
        })
}

/// Watches the folders of the watched files (a folder, not the file: editors and `mv` replace
/// the file, which ends a watch on the file itself) and reloads once events have been quiet for
/// [`FILE_EVENT_DEBOUNCE`]. The folder set follows the configuration after each reload.
pub fn spawn_file_watcher(reloader: Arc<Reloader>) -> Result<(), notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let files = Arc::new(Mutex::new(reloader.watched_files()));
    let handler_files = files.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                let relevant = handler_files
                    .lock()
                    .map(|f| is_relevant(&event, &f))
                    .unwrap_or(true);
                if relevant {
                    let _ = tx.send(());
                }
            }
            Err(e) => warn!(error = %e, "file watcher error"),
        })?;
    let mut folders = BTreeSet::new();
    watch_folders(
        &mut watcher,
        &mut folders,
        &files.lock().map(|f| f.clone()).unwrap_or_default(),
    );
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            while let Ok(Some(())) = tokio::time::timeout(FILE_EVENT_DEBOUNCE, rx.recv()).await {}
            if reloader.reload_async(Trigger::FileChange).await.is_ok() {
                let now = reloader.watched_files();
                watch_folders(&mut watcher, &mut folders, &now);
                if let Ok(mut f) = files.lock() {
                    *f = now;
                }
            }
        }
    });
    Ok(())
}

/// Makes `watcher` watch exactly the folders of `files`.
fn watch_folders(
    watcher: &mut notify::RecommendedWatcher,
    folders: &mut BTreeSet<PathBuf>,
    files: &BTreeSet<PathBuf>,
) {
    let wanted: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    for gone in folders.difference(&wanted) {
        let _ = watcher.unwatch(gone);
    }
    for folder in wanted.difference(folders) {
        if let Err(e) = watcher.watch(folder, RecursiveMode::NonRecursive) {
            warn!(folder = %folder.display(), error = %e, "cannot watch folder: changes there need SIGHUP or `kmip-gateway reload`");
        }
    }
    *folders = wanted;
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_changes_of_watched_files_count() {
        let files: BTreeSet<PathBuf> = [PathBuf::from("/etc/kg/server.pem")].into();
        let write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(is_relevant(&event(write, "/etc/kg/server.pem"), &files));
        assert!(is_relevant(
            &event(EventKind::Create(CreateKind::File), "/etc/kg/server.pem"),
            &files
        ));
        assert!(!is_relevant(&event(open, "/etc/kg/server.pem"), &files));
        assert!(!is_relevant(
            &event(EventKind::Modify(ModifyKind::Any), "/etc/kg/other.pem"),
            &files
        ));
        assert!(is_relevant(
            &event(EventKind::Create(CreateKind::Any), "/etc/kg/..data"),
            &files
        ));
    }

    #[test]
    fn start_only_keys_are_reported() {
        let a = GatewayConfig::embedded(Path::new("/d"));
        let mut b = a.clone();
        assert!(restart_only_changes(&a, &b).is_empty());
        b.limits.max_connections += 1;
        b.listen = "127.0.0.1:1".parse().unwrap();
        b.users.clear();
        assert_eq!(restart_only_changes(&a, &b), ["listen", "limits"]);
        b.capture_dir = Some("/tmp/capture".into());
        assert_eq!(
            restart_only_changes(&a, &b),
            ["listen", "limits", "capture_dir"]
        );
        b.log_format = crate::config::LogFormat::Json;
        assert_eq!(
            restart_only_changes(&a, &b),
            ["listen", "limits", "capture_dir", "log.format"]
        );
        let mut c = a.clone();
        c.https_listen = "127.0.0.1:8443".parse().ok();
        assert_eq!(restart_only_changes(&a, &c), ["https.listen"]);
        b.certify = None;
        assert_eq!(
            restart_only_changes(&a, &b),
            ["listen", "limits", "capture_dir", "certify", "log.format"]
        );
    }
}
