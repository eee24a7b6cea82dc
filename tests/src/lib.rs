//! Process harness shared by the end-to-end tests: locates the workspace's binaries (of the same
//! build profile as the running test), starts the real `kmip-gateway` in a temporary folder on a
//! free port, waits for its ready line and kills it when dropped.
//!
//! This is test-support code: setup failures panic with a message saying what is missing.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long the gateway may take to generate its development PKI, open its vault and bind: far
/// above the usual fraction of a second, so a loaded CI machine does not fail a test spuriously.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The log line the gateway prints once its KMIP listener is bound (followed by `addr=`).
const KMIP_READY: &str = "KMIP listener ready";
/// The log line the gateway prints once its admin listener is bound.
const ADMIN_READY: &str = "admin listener ready";

/// The 32-byte AES key a Get answered with; panics, naming `uid`, on anything else.
pub fn aes256_key_of(item: &kmip_wire::model::ResponseBatchItem, uid: &str) -> Vec<u8> {
    let Some(kmip_wire::model::ResponsePayload::Get(g)) = &item.payload else {
        panic!("Get {uid}: {item:?}");
    };
    let key = g
        .object
        .key_block()
        .and_then(|kb| kb.key_bytes())
        .map(|b| b.as_slice().to_vec())
        .unwrap_or_default();
    assert_eq!(key.len(), 32, "Get {uid}: not a 32-byte key");
    key
}

/// The workspace root (the folder holding the root Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the kmip-e2e crate sits inside the workspace")
        .to_path_buf()
}

/// The shared OASIS test vectors: `<workspace>/../shared/kmip-vectors`.
pub fn vectors_dir() -> PathBuf {
    workspace_root().join("../shared/kmip-vectors")
}

/// The folder holding the binaries of the profile the running test was built with
/// (`target/debug` or `target/release`, or the same under `CARGO_TARGET_DIR`).
pub fn bin_dir() -> PathBuf {
    // A test executable lives in `<target>/<profile>/deps/`: its grandparent is the profile
    // folder, which also holds the workspace's binaries when they were built with that profile.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent().and_then(Path::parent) {
            if dir.parent().is_some() {
                return dir.to_path_buf();
            }
        }
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join(profile)
}

/// Path of a workspace binary of the current profile; panics with the build command if missing.
pub fn binary_path(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries of this profile first \
         (`cargo build --workspace --bins{}`)",
        path.display(),
        if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        }
    );
    path
}

/// Runs `kmip-gateway ARGS` (a CLI command, not a server); returns (success, stdout + stderr).
pub fn gateway_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String) {
    let out = Command::new(binary_path("kmip-gateway"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kmip-gateway");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Removes ANSI escape sequences (colours) from a log line.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, ended by a byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Extracts the `addr=HOST:PORT` value of a (colour-stripped) log line.
fn parse_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("addr=")? + "addr=".len()..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// How to start the gateway. `Default` = embedded default configuration, admin listener off.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// Also start the admin listener on a free port (`GatewayProcess::admin_addr`).
    pub admin: bool,
    /// Extra arguments after `serve --listen 127.0.0.1:0 --admin-listen ...` (e.g. `--config F`).
    pub extra_args: Vec<String>,
    /// Extra environment variables for the gateway process.
    pub env: Vec<(String, String)>,
    /// Do not run `kmip-gateway init --config F` before `serve --config F` (the harness does by
    /// default, as an operator would once): for tests of the refusal itself.
    pub no_init: bool,
    /// Keep the admin listener the `--config` file sets (no `--admin-listen` override) and wait
    /// for its ready line: for CLI commands that read the admin address from the configuration.
    pub admin_from_config: bool,
}

/// A running `kmip-gateway serve` in its own temporary working folder; killed on drop.
pub struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    /// The development PKI the process's clients use.
    pki: PathBuf,
    /// The gateway's data folder (embedded default or home).
    data_dir: PathBuf,
    /// `[admin] token_file` of the `--config` file, if any.
    admin_token_file: Option<PathBuf>,
    // Declared after `child` so they are removed after the process is killed (Drop runs before
    // fields drop).
    dir: tempfile::TempDir,
    /// Keeps the lasting state (data folder, token) alive while the process runs.
    _home: Option<GatewayHome>,
}

/// Why a gateway did not come up: its exit status (`None` if it was killed after
/// `READY_TIMEOUT`) and its whole log.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub log: String,
}

impl GatewayProcess {
    /// Starts the gateway with the embedded default configuration on 127.0.0.1:0.
    pub fn start() -> GatewayProcess {
        GatewayProcess::start_with(&GatewayOptions::default())
    }

    /// Starts the gateway and waits (up to `READY_TIMEOUT`) for its ready line(s).
    pub fn start_with(options: &GatewayOptions) -> GatewayProcess {
        GatewayProcess::spawn(options, None, None)
            .unwrap_or_else(|f| panic!("kmip-gateway did not start: {f:?}\nits log:\n{}", f.log))
    }

    /// Like [`GatewayProcess::start_with`], run as the system user and group `user` (through
    /// `setpriv`; the caller must be root), as a service manager starts it.
    pub fn start_as(user: &str, options: &GatewayOptions) -> GatewayProcess {
        GatewayProcess::spawn(options, None, Some(user))
            .unwrap_or_else(|f| panic!("kmip-gateway did not start: {f:?}\nits log:\n{}", f.log))
    }

    /// Starts the gateway on a fresh [`GatewayHome`] of `backend` (the home lives as long as
    /// the process).
    pub fn start_backend(backend: Backend) -> GatewayProcess {
        GatewayHome::new(backend).start()
    }

    /// Like [`GatewayProcess::start_backend`], with extra options (admin listener, arguments,
    /// environment).
    pub fn start_backend_with(backend: Backend, options: &GatewayOptions) -> GatewayProcess {
        GatewayHome::new(backend).start_with(options)
    }

    /// Starts the process and waits for its ready line(s); a process that exits first, or is
    /// not ready within `READY_TIMEOUT` (then killed), is a [`StartFailure`].
    fn spawn(
        options: &GatewayOptions,
        home: Option<&GatewayHome>,
        run_as: Option<&str>,
    ) -> Result<GatewayProcess, StartFailure> {
        let dir = tempfile::tempdir().expect("create a temporary folder for the gateway");
        let data_dir = match home {
            Some(h) => h.data_dir(),
            None => dir.path().join("kmip-gateway-data"),
        };
        let pki = data_dir.join("pki");
        let config_file = options
            .extra_args
            .iter()
            .position(|a| a == "--config")
            .and_then(|i| options.extra_args.get(i + 1));
        let admin_token_file = config_file
            .and_then(|c| kmip_gateway::config::GatewayConfig::load(Path::new(c)).ok())
            .and_then(|c| c.admin.token_file);
        // The gateway's command line, as `run_as` when given (setpriv execs the gateway: the
        // child's pid is the gateway's).
        let gateway_command = || match run_as {
            None => Command::new(binary_path("kmip-gateway")),
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                    .arg(binary_path("kmip-gateway"));
                c
            }
        };
        if run_as.is_some() {
            std::fs::set_permissions(
                dir.path(),
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
            )
            .expect("open the working folder to the service user");
        }
        if let Some(config) = config_file.filter(|_| !options.no_init) {
            // `serve --config` refuses a data folder that was never initialised, as an
            // operator's would be: initialise it the way the operator does (a no-op after),
            // as the user the gateway runs as.
            let out = gateway_command()
                .current_dir(dir.path())
                .args(["init", "--config", config])
                .envs(options.env.iter().map(|(k, v)| (k, v)))
                .env("NO_COLOR", "1")
                .output()
                .expect("run kmip-gateway init");
            if !out.status.success() {
                return Err(StartFailure {
                    status: Some(out.status),
                    log: format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                });
            }
        }
        let mut cmd = gateway_command();
        cmd.current_dir(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"]);
        if !options.admin_from_config {
            cmd.arg("--admin-listen")
                .arg(if options.admin { "127.0.0.1:0" } else { "off" });
        }
        cmd.args(&options.extra_args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn kmip-gateway");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let thread_log = log.clone();
        // Drains stderr for the whole life of the process (a full pipe would block the gateway)
        // and reports the listener addresses as they appear.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                // Logged before it is reported, so a caller woken by the ready line finds that
                // line in `log()`.
                if let Ok(mut l) = thread_log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
                if line.contains(KMIP_READY) {
                    if let Some(a) = parse_addr(&line) {
                        let _ = tx.send((true, a));
                    }
                } else if line.contains(ADMIN_READY) {
                    if let Some(a) = parse_addr(&line) {
                        let _ = tx.send((false, a));
                    }
                }
            }
        });
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        let (mut addr, mut admin_addr) = (None, None);
        let wait_admin = options.admin || options.admin_from_config;
        while addr.is_none() || (wait_admin && admin_addr.is_none()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((true, a)) => addr = Some(a),
                Ok((false, a)) => admin_addr = Some(a),
                Err(e) => {
                    // Disconnected: the reader saw the end of stderr, the process is exiting
                    // (its log is complete). Timeout: it hangs; kill it.
                    let killed = matches!(e, mpsc::RecvTimeoutError::Timeout);
                    if killed {
                        let _ = child.kill();
                    }
                    let status = child.wait().ok().filter(|_| !killed);
                    // Give the reader thread a moment to store the last lines.
                    thread::sleep(Duration::from_millis(100));
                    return Err(StartFailure {
                        status,
                        log: log.lock().map(|l| l.clone()).unwrap_or_default(),
                    });
                }
            }
        }
        Ok(GatewayProcess {
            child,
            addr: addr.expect("loop ends with an address"),
            admin_addr,
            log,
            pki,
            data_dir,
            admin_token_file,
            dir,
            _home: home.cloned(),
        })
    }

    /// The KMIP listener address (127.0.0.1:PORT).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener address, when started with `GatewayOptions::admin` or
    /// `GatewayOptions::admin_from_config`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The gateway's own temporary working folder (with the embedded default started by
    /// [`GatewayProcess::start_with`], it holds `kmip-gateway-data/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The development PKI folder: the embedded default's, or the home's.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki.clone()
    }

    /// The development CA certificate (trust anchor for clients).
    pub fn ca_cert(&self) -> PathBuf {
        self.pki_dir().join("ca.pem")
    }

    /// The certificate of the development client user `purefa`.
    pub fn client_cert(&self) -> PathBuf {
        self.pki_dir().join("client-purefa.pem")
    }

    /// The private key of the development client user `purefa`.
    pub fn client_key(&self) -> PathBuf {
        self.pki_dir().join("client-purefa.key")
    }

    /// The server name the development server certificate is valid for.
    pub fn server_name(&self) -> &'static str {
        "localhost"
    }

    /// The gateway's log (stderr, colours stripped) so far: attach it to assertion messages.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The KMIP-over-HTTPS listener address, when started with `--https-listen` (its ready line
    /// is logged before the KMIP listener's, so it is in the log once the process is ready).
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.log()
            .lines()
            .find(|l| l.contains("KMIP over HTTPS listener ready"))
            .and_then(parse_addr)
    }

    /// `GET path` on the admin listener (started with `GatewayOptions::admin`), without a
    /// token: status code and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        self.admin_request("GET", path, None)
    }

    /// `METHOD path` on the admin listener with `Host` naming it and, if given, the bearer
    /// `token`: status code and body.
    pub fn admin_request(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let addr = self.admin_addr.expect("started with the admin listener");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let text = admin_exchange(
            addr,
            &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"),
        );
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (code, body)
    }

    /// The admin token file, which the gateway creates at start: the `[admin] token_file` of
    /// the `--config` file it was started with, else the embedded default's
    /// `<data_dir>/admin.token`.
    pub fn admin_token_file(&self) -> PathBuf {
        self.admin_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.token"))
    }

    /// The admin token (see [`GatewayProcess::admin_token_file`]).
    pub fn admin_token(&self) -> String {
        read_admin_token(&self.admin_token_file())
    }

    /// The gateway's data folder (embedded default or home).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id (e.g. to send it a signal).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's resident set size (`VmRSS` of /proc/PID/status) in KiB; `None` once it
    /// has exited or where /proc is missing.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id())
    }

    /// Sends SIGTERM (a graceful stop) to the process.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Sends SIGKILL (a crash) to the process, which stays borrowed by other threads; drop reaps it.
    pub fn sigkill(&self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {} failed", self.child.id());
    }

    /// Waits up to `timeout` for the process to exit; its exit status, or `None` if it is still
    /// running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Sends `request` (raw HTTP) to the admin listener at `addr` and returns the whole answer.
pub fn admin_exchange(addr: SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the admin listener");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    s.write_all(request.as_bytes()).expect("send the request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the response");
    text
}

/// The token in an admin token file, without its newline.
pub fn read_admin_token(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the admin token {}: {e}", path.display()))
        .trim_end()
        .to_owned()
}

/// `VmRSS` of process `pid` in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- backends and lasting state -------------------------------------------------------------------

/// Defines one test per backend: `backend_tests! { fn name(backend) { body } }` makes
/// `mod name` with the tests `name::vault`, `name::softhsm` and `name::postgres`, each running `body` with
/// `backend` bound to its [`Backend`]. Attributes before `fn` (doc comments) go on the module.
/// `backend_tests! { with_proxy fn name(backend) { body } }` adds `name::proxy` and
/// `name::proxy_to_1_4`: the same body through a KMIP proxy in front of another gateway
/// ([`Backend::Proxy`]), speaking 2.1 (negotiated) and 1.4 (pinned) to it.
#[macro_export]
macro_rules! backend_tests {
    (with_proxy $(#[$meta:meta])* fn $name:ident($backend:ident) $body:block) => {
        $crate::backend_tests! {
            $(#[$meta])*
            fn $name($backend) $body
            extra {
                #[test]
                fn proxy() {
                    run($crate::Backend::Proxy($crate::upstream::ProxyVersion::Negotiated))
                }

                #[test]
                fn proxy_to_1_4() {
                    run($crate::Backend::Proxy($crate::upstream::ProxyVersion::V1_4))
                }
            }
        }
    };
    ($(#[$meta:meta])* fn $name:ident($backend:ident) $body:block $(extra { $($extra:item)* })?) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($backend: $crate::Backend) $body

            #[test]
            fn vault() {
                run($crate::Backend::Vault)
            }

            #[test]
            fn softhsm() {
                run($crate::Backend::SoftHsm)
            }

            #[test]
            fn postgres() {
                run($crate::Backend::Postgres)
            }

            $($($extra)*)?
        }
    };
}

pub mod accounts;
pub mod ha;
pub mod postgres;
mod softhsm_module;
pub mod upstream;
pub use softhsm_module::{softhsm_module, DEFAULT_SOFTHSM_MODULE};
/// Label of the token a SoftHSM home creates.
pub const SOFTHSM_TOKEN_LABEL: &str = "kmip-e2e";
/// Where SoftHSM homes go when it exists: tmpfs makes token writes (key generation, destroy)
/// several times faster than the disk (stack notes: ≈ 650/s against 10–120/s).
const TMPFS_DIR: &str = "/dev/shm";

/// The key backend a gateway runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The encrypted file vault (the embedded default configuration).
    #[default]
    Vault,
    /// PKCS#11 on a private SoftHSM2 token.
    SoftHsm,
    /// PostgreSQL on a private throwaway cluster, the KEK in a file.
    Postgres,
    /// A KMIP proxy (`[backend] kind = "kmip"`) in front of another kmip-gateway on its vault,
    /// started with the home and killed with it; both share the home's development PKI, so the
    /// clients' certificates are the proxy's identity upstream too. Not in [`Backend::ALL`].
    Proxy(upstream::ProxyVersion),
}

impl Backend {
    /// Every backend, for tests that run on each.
    pub const ALL: [Backend; 3] = [Backend::Vault, Backend::SoftHsm, Backend::Postgres];

    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Vault => "vault",
            Backend::SoftHsm => "softhsm",
            Backend::Postgres => "postgres",
            Backend::Proxy(upstream::ProxyVersion::Negotiated) => "proxy",
            Backend::Proxy(upstream::ProxyVersion::V1_4) => "proxy-1.4",
            Backend::Proxy(upstream::ProxyVersion::V1_2) => "proxy-1.2",
        }
    }
}

/// The `[backend]` settings of a SoftHSM home's configuration file.
#[derive(Debug, Clone)]
pub struct Pkcs11Settings {
    pub pool_size: u32,
    pub acquire_timeout_ms: u64,
    /// The PIN file the gateway reads; `None` = the token's real user PIN.
    pub pin_file: Option<PathBuf>,
}

impl Default for Pkcs11Settings {
    fn default() -> Self {
        Pkcs11Settings {
            pool_size: 4,
            acquire_timeout_ms: 5_000,
            pin_file: None,
        }
    }
}

struct HomeInner {
    backend: Backend,
    /// SoftHSM: `SOFTHSM2_CONF` of the private token.
    softhsm_conf: Option<PathBuf>,
    /// PostgreSQL: the private cluster (stopped when the last clone of the home goes).
    postgres: Option<postgres::PgCluster>,
    /// Proxy: the upstream kmip-gateway (killed when the last clone of the home goes).
    upstream: Option<upstream::GatewayUpstream>,
    // Last: removed when every clone (and every process holding one) is gone.
    dir: tempfile::TempDir,
}

/// A gateway's lasting state in a temporary folder: the data folder (development PKI, vault,
/// audit trail) and, for SoftHSM, the token with its configuration and PIN. Processes started
/// from the same home (one after the other) find everything the previous one stored. Cloning
/// shares the folder; it is removed with the last clone.
///
/// Layout: `data/` (`data/pki/` the development PKI, `data/vault/` the vault), `data-secrets/`
/// (vault: master key and chain head, outside the data folder), `hsm/` (SoftHSM:
/// `softhsm2.conf`, `tokens/`, `user.pin`), `gateway.toml` (SoftHSM, PostgreSQL, proxy: the
/// configuration file), `upstream/` (proxy: the upstream gateway's data folder, its PKI a copy
/// of `data/pki`; its log `upstream.log`).
#[derive(Clone)]
pub struct GatewayHome {
    inner: Arc<HomeInner>,
}

impl GatewayHome {
    /// Creates the home. Vault: nothing yet (the embedded default creates its PKI and vault on
    /// first start). SoftHSM: the development PKI, a token made with
    /// `deploy/softhsm/setup-token.sh`, and `gateway.toml` with [`Pkcs11Settings::default`].
    /// SoftHSM homes go to tmpfs (`/dev/shm`) when there is one. PostgreSQL: the development
    /// PKI, a cluster and `gateway.toml`. Proxy: the development PKI, the upstream gateway
    /// started on a copy of it, and `gateway.toml` forwarding to it.
    pub fn new(backend: Backend) -> GatewayHome {
        let dir = match backend {
            Backend::SoftHsm if Path::new(TMPFS_DIR).is_dir() => tempfile::Builder::new()
                .prefix("kmip-e2e-hsm-")
                .tempdir_in(TMPFS_DIR)
                .or_else(|_| tempfile::tempdir()),
            _ => tempfile::tempdir(),
        }
        .expect("create a temporary folder for the gateway's state");
        GatewayHome::in_dir(backend, dir)
    }

    /// Like [`GatewayHome::new`], but always in the system's temporary folder (usually on
    /// disk): for tests that want slow token writes.
    pub fn on_disk(backend: Backend) -> GatewayHome {
        let dir = tempfile::tempdir().expect("create a temporary folder for the gateway's state");
        GatewayHome::in_dir(backend, dir)
    }

    fn in_dir(backend: Backend, dir: tempfile::TempDir) -> GatewayHome {
        if backend != Backend::Vault {
            kmip_gateway::tooling::pki::dev_pki(&dir.path().join("data/pki"))
                .expect("create the development PKI");
        }
        let softhsm_conf =
            (backend == Backend::SoftHsm).then(|| make_token(&dir.path().join("hsm")));
        let postgres = (backend == Backend::Postgres).then(postgres::PgCluster::start);
        let upstream = matches!(backend, Backend::Proxy(_)).then(|| {
            let data = dir.path().join("upstream");
            copy_dir(&dir.path().join("data/pki"), &data.join("pki"));
            upstream::GatewayUpstream::start(&data)
        });
        let home = GatewayHome {
            inner: Arc::new(HomeInner {
                backend,
                softhsm_conf,
                postgres,
                upstream,
                dir,
            }),
        };
        match backend {
            Backend::Vault => {}
            Backend::SoftHsm => home.set_pkcs11(&Pkcs11Settings::default()),
            Backend::Postgres => home.set_postgres(&home.postgres_backend_section()),
            Backend::Proxy(version) => {
                let upstream = home.upstream().expect("a proxy home has an upstream");
                home.write_config(&upstream::kmip_backend_section(
                    &[upstream.addr()],
                    &home.pki_dir(),
                    version,
                ));
            }
        }
        home
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The home folder.
    pub fn dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// The gateway's `data_dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Vault: the master key and chain head (`<data_dir>-secrets`, made by the first start).
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir().join("data-secrets")
    }

    /// The development PKI (the vault's is made by the gateway's first start).
    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir().join("pki")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.pki_dir().join("ca.pem")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.pki_dir().join("client-purefa.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.pki_dir().join("client-purefa.key")
    }

    /// SoftHSM, PostgreSQL: the configuration file the gateway is started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("gateway.toml")
    }

    /// SoftHSM: the value of `SOFTHSM2_CONF` for this token.
    pub fn softhsm_conf(&self) -> Option<&Path> {
        self.inner.softhsm_conf.as_deref()
    }

    /// SoftHSM: the token directory (`directories.tokendir`).
    pub fn token_dir(&self) -> PathBuf {
        self.dir().join("hsm/tokens")
    }

    /// SoftHSM: the file holding the token's user PIN.
    pub fn pin_file(&self) -> PathBuf {
        self.dir().join("hsm/user.pin")
    }

    /// SoftHSM: (re)writes `gateway.toml` with these backend settings; the next start uses it.
    pub fn set_pkcs11(&self, settings: &Pkcs11Settings) {
        assert_eq!(
            self.backend(),
            Backend::SoftHsm,
            "only a SoftHSM home has a token"
        );
        let pki = self.pki_dir();
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n\
             [audit]\nenabled = true\n\
             [certify]\nca_cert = {issuing_cert:?}\nca_key = {issuing_key:?}\n\
             [backend]\nkind = \"pkcs11\"\nmodule = {module:?}\ntoken_label = {label:?}\n\
             pin_file = {pin:?}\npool_size = {pool}\nacquire_timeout_ms = {timeout}\n",
            data = self.data_dir().display().to_string(),
            cert = pki.join("server.pem").display().to_string(),
            key = pki.join("server.key").display().to_string(),
            issuing_cert = pki.join("issuing-ca.pem").display().to_string(),
            issuing_key = pki.join("issuing-ca.key").display().to_string(),
            ca = self.ca_cert().display().to_string(),
            module = softhsm_module().display().to_string(),
            label = SOFTHSM_TOKEN_LABEL,
            pin = settings
                .pin_file
                .clone()
                .unwrap_or_else(|| self.pin_file())
                .display()
                .to_string(),
            pool = settings.pool_size,
            timeout = settings.acquire_timeout_ms,
        );
        std::fs::write(self.config_path(), text).expect("write gateway.toml");
    }

    /// PostgreSQL: the home's cluster.
    pub fn postgres(&self) -> Option<&postgres::PgCluster> {
        self.inner.postgres.as_ref()
    }

    /// PostgreSQL: the `[backend]` section (with `[backend.kek]`) of this home's gateways: its
    /// cluster's URL, the password file `db.password` and the KEK file `kek.hex` (both 0600,
    /// written here the first time).
    pub fn postgres_backend_section(&self) -> String {
        let cluster = self.postgres().expect("a PostgreSQL home has a cluster");
        let password = self.dir().join("db.password");
        if !password.exists() {
            cluster.write_password_file(&password);
        }
        let kek = self.dir().join("kek.hex");
        if !kek.exists() {
            use std::io::Read;
            let mut key = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut key))
                .expect("read /dev/urandom");
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&kek, hex).expect("write the KEK file");
            std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod the KEK file");
        }
        format!(
            "[backend]\nkind = \"postgres\"\nurl = {url:?}\npassword_file = {password:?}\n\
             [backend.kek]\nkind = \"file\"\nfile = {kek:?}\n",
            url = cluster.url(),
            password = password.display().to_string(),
            kek = kek.display().to_string(),
        )
    }

    /// PostgreSQL: (re)writes `gateway.toml` with this `[backend]` section (and its
    /// sub-tables) after the home's listener, PKI, user and audit settings.
    pub fn set_postgres(&self, backend_section: &str) {
        self.write_config(backend_section);
    }

    /// Proxy: the upstream gateway.
    pub fn upstream(&self) -> Option<&upstream::GatewayUpstream> {
        self.inner.upstream.as_ref()
    }

    /// Writes `gateway.toml`: the home's listener, PKI, user, audit and Certify settings, then
    /// `backend_section`.
    fn write_config(&self, backend_section: &str) {
        let pki = self.pki_dir();
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n\
             [audit]\nenabled = true\n\
             [certify]\nca_cert = {issuing_cert:?}\nca_key = {issuing_key:?}\n{backend_section}",
            data = self.data_dir().display().to_string(),
            cert = pki.join("server.pem").display().to_string(),
            key = pki.join("server.key").display().to_string(),
            issuing_cert = pki.join("issuing-ca.pem").display().to_string(),
            issuing_key = pki.join("issuing-ca.key").display().to_string(),
            ca = self.ca_cert().display().to_string(),
        );
        std::fs::write(self.config_path(), text).expect("write gateway.toml");
    }

    /// Arguments and environment that start a gateway on this home, merged with `extra`.
    fn options(&self, extra: &GatewayOptions) -> GatewayOptions {
        let mut options = extra.clone();
        let mut args = match self.backend() {
            Backend::Vault => vec!["--data-dir".into(), self.data_dir().display().to_string()],
            Backend::SoftHsm => {
                options.env.push((
                    "SOFTHSM2_CONF".into(),
                    self.softhsm_conf()
                        .expect("a SoftHSM home has a configuration")
                        .display()
                        .to_string(),
                ));
                vec!["--config".into(), self.config_path().display().to_string()]
            }
            Backend::Postgres | Backend::Proxy(_) => {
                vec!["--config".into(), self.config_path().display().to_string()]
            }
        };
        args.append(&mut options.extra_args);
        options.extra_args = args;
        options
    }

    /// Starts a gateway on this home (no admin listener).
    pub fn start(&self) -> GatewayProcess {
        self.start_with(&GatewayOptions::default())
    }

    /// Starts a gateway on this home with extra options; panics with its log if it fails.
    pub fn start_with(&self, extra: &GatewayOptions) -> GatewayProcess {
        self.try_start_with(extra).unwrap_or_else(|f| {
            panic!(
                "kmip-gateway ({}) did not start: exit {:?}; its log:\n{}{}",
                self.backend().name(),
                f.status,
                f.log,
                self.upstream()
                    .map(|u| format!("\nits upstream's log:\n{}", u.log()))
                    .unwrap_or_default()
            )
        })
    }

    /// Starts a gateway on this home; a start that fails is returned, not a panic.
    pub fn try_start_with(&self, extra: &GatewayOptions) -> Result<GatewayProcess, StartFailure> {
        GatewayProcess::spawn(&self.options(extra), Some(self), None)
    }

    /// SoftHSM: runs `pkcs11-tool` on this home's token, logged in with the user PIN (passed
    /// through the environment, never the command line), and returns its stdout; panics with
    /// its stderr if it fails.
    pub fn pkcs11_tool(&self, args: &[&str]) -> String {
        let conf = self.softhsm_conf().expect("a SoftHSM home has a token");
        let pin = std::fs::read_to_string(self.pin_file()).expect("read the user PIN");
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(softhsm_module())
            .args(["--token-label", SOFTHSM_TOKEN_LABEL])
            .args(["--login", "--pin", "env:KMIP_E2E_PIN"])
            .args(args)
            .env("SOFTHSM2_CONF", conf)
            .env("KMIP_E2E_PIN", pin.trim_end())
            .output()
            .expect("run pkcs11-tool (apt-get install opensc)");
        assert!(
            out.status.success(),
            "pkcs11-tool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Copies the files of `from` (no sub-folders) into `to`, which it creates.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's folder");
    for entry in std::fs::read_dir(from).expect("list the folder to copy") {
        let path = entry.expect("read the folder to copy").path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().expect("a file name")))
                .unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
        }
    }
}

/// Makes a private SoftHSM configuration and token in `dir` with the project's setup script;
/// returns the `SOFTHSM2_CONF` path. Panics with the install command when SoftHSM is missing.
fn make_token(dir: &Path) -> PathBuf {
    let installed = Command::new("softhsm2-util").arg("--version").output();
    let module = softhsm_module();
    assert!(
        matches!(&installed, Ok(out) if out.status.success()) && module.is_file(),
        "SoftHSM2 is not installed (softhsm2-util or {} missing): \
         apt-get install -y softhsm2 opensc (or set SOFTHSM2_MODULE)",
        module.display()
    );
    let script = workspace_root().join("deploy/softhsm/setup-token.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .arg(SOFTHSM_TOKEN_LABEL)
        .env_remove("KMIP_SOFTHSM_PIN")
        .env_remove("KMIP_SOFTHSM_SO_PIN")
        .output()
        .expect("run deploy/softhsm/setup-token.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let conf = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SOFTHSM2_CONF="))
        .filter(|_| out.status.success());
    match conf {
        Some(c) => PathBuf::from(c),
        None => panic!(
            "{} failed (exit {:?}):\n{stdout}{}",
            script.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours_and_parses_the_ready_address() {
        let line = "\u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m KMIP listener ready \
                    \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:40123";
        let plain = strip_ansi(line);
        assert!(plain.contains(KMIP_READY));
        assert_eq!(parse_addr(&plain), Some("127.0.0.1:40123".parse().unwrap()));
        assert_eq!(parse_addr("no address here"), None);
    }
}
