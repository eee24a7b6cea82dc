//! The gateway as a KMIP proxy in tests (`[backend] kind = "kmip"`, issue 18): an upstream
//! kmip-gateway of the test's own, and the `[backend]` section a proxy in front of it is
//! configured with. [`crate::Backend::Proxy`] homes use both; `tests/tests/upstream.rs` too.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary_path;

/// How long an upstream may take to start listening.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// The KMIP version a proxy speaks to its upstream (`[backend] version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyVersion {
    /// Not pinned: the highest both offer (Discover Versions), 2.1 with a kmip-gateway upstream.
    #[default]
    Negotiated,
    /// Pinned to 1.4: a 2.x client then stands in front of a 1.x upstream.
    V1_4,
    /// Pinned to 1.2, the oldest version PyKMIP and the gateway share.
    V1_2,
}

impl ProxyVersion {
    /// The `version` key's value; `None` when it is not set.
    pub fn setting(self) -> Option<&'static str> {
        match self {
            ProxyVersion::Negotiated => None,
            ProxyVersion::V1_4 => Some("1.4"),
            ProxyVersion::V1_2 => Some("1.2"),
        }
    }
}

/// A free port on 127.0.0.1 (bound and released; the caller's process binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Waits until something listens on `addr`; panics naming `what` after [`START_DEADLINE`].
pub fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + START_DEADLINE;
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An upstream kmip-gateway (embedded default configuration) on a data folder and port of our
/// own, so that it can be killed and started again on both; killed on drop. Its log is
/// `<data>.log`.
pub struct GatewayUpstream {
    data: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl GatewayUpstream {
    /// Starts on `data` (its development PKI is made on first start unless `data/pki` holds
    /// one) and a free port.
    pub fn start(data: &Path) -> GatewayUpstream {
        let mut upstream = GatewayUpstream {
            data: data.to_path_buf(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
            child: None,
        };
        upstream.restart();
        upstream
    }

    /// Starts the process (again) on the same folder and port.
    pub fn restart(&mut self) {
        let child = Command::new(binary_path("kmip-gateway"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen", &self.addr.to_string(), "--admin-listen", "off"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path())
                    .expect("open the upstream's log"),
            )
            .spawn()
            .expect("start the upstream kmip-gateway");
        self.child = Some(child);
        wait_listening(self.addr, "the upstream kmip-gateway");
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its KMIP listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its development PKI (`ca.pem`, `client-purefa.{pem,key}`, `server.{pem,key}`).
    pub fn pki(&self) -> PathBuf {
        self.data.join("pki")
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.data.with_extension("log")
    }

    /// Its log so far (empty when there is none yet).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for GatewayUpstream {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The start of a proxy's `[backend]` table: `kind = "kmip"`, the `upstreams`, the proxy's
/// identity from `pki` (`client-purefa.{pem,key}`, trusting `ca.pem`), `server_name =
/// "localhost"` and `version` when pinned. More `[backend]` keys may follow.
pub fn kmip_backend_section(upstreams: &[SocketAddr], pki: &Path, version: ProxyVersion) -> String {
    let list = upstreams
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let version = version
        .setting()
        .map(|v| format!("version = \"{v}\"\n"))
        .unwrap_or_default();
    format!(
        "[backend]\nkind = \"kmip\"\nupstreams = [{list}]\n\
         cert = {cert:?}\nkey = {key:?}\nca = {ca:?}\nserver_name = \"localhost\"\n{version}",
        cert = pki.join("client-purefa.pem").display().to_string(),
        key = pki.join("client-purefa.key").display().to_string(),
        ca = pki.join("ca.pem").display().to_string(),
    )
}
