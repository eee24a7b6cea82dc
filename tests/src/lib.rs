//! Process harness shared by the end-to-end tests: locates the workspace's binaries (of the same
//! build profile as the running test), starts the real `kmip-gateway` in a temporary folder on a
//! free port, waits for its ready line and kills it when dropped.
//!
//! This is test-support code: setup failures panic with a message saying what is missing.

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
}

/// A running `kmip-gateway serve` in its own temporary working folder; killed on drop.
pub struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    // Declared last so it is removed after the process is killed (Drop runs before fields drop).
    dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts the gateway with the embedded default configuration on 127.0.0.1:0.
    pub fn start() -> GatewayProcess {
        GatewayProcess::start_with(&GatewayOptions::default())
    }

    /// Starts the gateway and waits (up to `READY_TIMEOUT`) for its ready line(s).
    pub fn start_with(options: &GatewayOptions) -> GatewayProcess {
        let dir = tempfile::tempdir().expect("create a temporary folder for the gateway");
        let mut cmd = Command::new(binary_path("kmip-gateway"));
        cmd.current_dir(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen"])
            .arg(if options.admin { "127.0.0.1:0" } else { "off" })
            .args(&options.extra_args)
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
                if line.contains(KMIP_READY) {
                    if let Some(a) = parse_addr(&line) {
                        let _ = tx.send((true, a));
                    }
                } else if line.contains(ADMIN_READY) {
                    if let Some(a) = parse_addr(&line) {
                        let _ = tx.send((false, a));
                    }
                }
                if let Ok(mut l) = thread_log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        let (mut addr, mut admin_addr) = (None, None);
        while addr.is_none() || (options.admin && admin_addr.is_none()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((true, a)) => addr = Some(a),
                Ok((false, a)) => admin_addr = Some(a),
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    // Give the reader thread a moment to store the last lines.
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "kmip-gateway did not report ready within {READY_TIMEOUT:?} \
                         (exit: {status:?}); its log:\n{}",
                        log.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                }
            }
        }
        GatewayProcess {
            child,
            addr: addr.expect("loop ends with an address"),
            admin_addr,
            log,
            dir,
        }
    }

    /// The KMIP listener address (127.0.0.1:PORT).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener address, when started with `GatewayOptions::admin`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The gateway's working folder (holds `kmip-gateway-data/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The development PKI folder the embedded default creates.
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.path().join("kmip-gateway-data/pki")
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
