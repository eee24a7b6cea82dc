//! Commands that talk to a running gateway: `reload` (SIGHUP to the pid in the pid file, or
//! `POST /reload` on the admin listener), `clients` (`GET /clients`) and the check after
//! `pki revoke --config` (`POST /reload`, then `GET /revocation`). The admin requests carry
//! the bearer token of the gateway's `[admin] token_file`; a signal goes only to a pid whose pid
//! file a running gateway holds locked and whose command line is `kmip-gateway … serve`.

use super::{read_limited, CliError};
use kmip_gateway::config::{GatewayConfig, DEFAULT_ADMIN_LISTEN, DEFAULT_ADMIN_TOKEN_FILE};
use kmip_gateway::front::reload::LastReload;
use kmip_gateway::front::server::ClientReport;
use kmip_gateway::front::tls::CrlInForce;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// Time allowed to connect to and hear back from the admin listener (a reload takes
/// milliseconds; this only stops a hung endpoint from hanging the command).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest admin response read (`/clients` of the largest tracked table fits easily).
const MAX_ADMIN_RESPONSE: u64 = 32 * 1024 * 1024;
/// A pid file holds one number.
const MAX_PID_FILE_LEN: u64 = 64;
/// Largest `/proc/PID/cmdline` read when checking what a pid is.
const MAX_CMDLINE_LEN: u64 = 64 * 1024;
/// The program name a gateway process runs as.
const GATEWAY_PROGRAM: &str = "kmip-gateway";

/// A running gateway's admin listener and the token it wants.
pub(crate) struct AdminTarget {
    pub addr: String,
    token: Zeroizing<String>,
    /// Sent in the operator header: who acts, for the gateway's audit trail.
    operator: Option<String>,
}

impl AdminTarget {
    /// Names the operator on every request.
    pub(crate) fn with_operator(mut self, operator: String) -> AdminTarget {
        self.operator = Some(operator);
        self
    }
}

/// Finds the admin listener and its token: `--token-file`, else the configuration's
/// `[admin] token_file`, else the embedded default's `<data_dir>/admin.token`; the address is
/// `--admin`, else the configuration's admin listener, else the default.
pub(crate) fn admin_target(
    admin: Option<String>,
    token_file: Option<PathBuf>,
    config: Option<&Path>,
    data_dir: Option<PathBuf>,
) -> Result<AdminTarget, CliError> {
    let cfg = match config {
        Some(c) => Some(
            GatewayConfig::load(c)
                .map_err(|e| CliError::Refused(format!("{}: {e}", c.display())))?,
        ),
        None => None,
    };
    let token_path = match (token_file, &cfg) {
        (Some(t), _) => t,
        (None, Some(cfg)) => cfg.admin.token_file.clone().ok_or_else(|| {
            CliError::Refused(format!(
                "{}: no [admin] token_file, so the gateway refuses /reload, /clients and /keys; \
                 set one (created at the next start) or pass --token-file",
                config.map(|c| c.display().to_string()).unwrap_or_default()
            ))
        })?,
        (None, None) => data_dir
            .unwrap_or_else(|| kmip_gateway::config::DEFAULT_DATA_DIR.into())
            .join(DEFAULT_ADMIN_TOKEN_FILE),
    };
    let token = kmip_gateway::front::admin::read_token_file(&token_path)
        .map_err(|e| CliError::Refused(e.to_string()))?;
    let shown = || config.map(|c| c.display().to_string()).unwrap_or_default();
    let addr = match (admin, cfg.map(|c| c.admin_listen)) {
        (Some(a), _) => a,
        (None, Some(Some(listen))) if listen.port() != 0 => {
            let ip = if listen.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                listen.ip()
            };
            SocketAddr::new(ip, listen.port()).to_string()
        }
        // Never a guessed port: another gateway's listener may answer there.
        (None, Some(Some(_))) => {
            return Err(CliError::Refused(format!(
                "{}: [admin] listen has port 0 (chosen at start, logged as `admin listener`); \
                 pass --admin ADDRESS",
                shown()
            )))
        }
        (None, Some(None)) => {
            return Err(CliError::Refused(format!(
                "{}: the admin listener is off ([admin] listen = \"off\"); turn it on or pass \
                 --admin ADDRESS",
                shown()
            )))
        }
        // No configuration: the embedded default's listener.
        (None, None) => DEFAULT_ADMIN_LISTEN.to_string(),
    };
    Ok(AdminTarget {
        addr,
        token,
        operator: None,
    })
}

/// One HTTP/1.1 request to the admin listener; returns the status code and the body.
pub(crate) fn admin_request(
    target: &AdminTarget,
    method: &str,
    path: &str,
) -> Result<(u16, String), CliError> {
    let addr = target.addr.as_str();
    let fail = |problem: String| CliError::Admin {
        addr: addr.to_string(),
        problem,
    };
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|_| fail("not an address like 127.0.0.1:9696".into()))?;
    let mut stream =
        TcpStream::connect_timeout(&sock, ADMIN_TIMEOUT).map_err(|e| fail(e.to_string()))?;
    stream
        .set_read_timeout(Some(ADMIN_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(ADMIN_TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    let operator = target
        .operator
        .as_ref()
        .map(|o| {
            format!(
                "{}: {o}\r\n",
                kmip_gateway::front::admin::keys::OPERATOR_HEADER
            )
        })
        .unwrap_or_default();
    let request = Zeroizing::new(format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         {operator}Content-Length: 0\r\nConnection: close\r\n\r\n",
        target.token.as_str()
    ));
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ADMIN_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        fail(format!(
            "no HTTP response within the listener's {}-second request deadline",
            kmip_gateway::front::admin::ADMIN_REQUEST_DEADLINE.as_secs()
        ))
    })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail("no HTTP status".into()))?;
    Ok((status, body.to_string()))
}

/// `reload --admin`: reloads and reports the outcome.
pub(crate) fn reload_admin(target: &AdminTarget) -> Result<String, CliError> {
    let (status, body) = admin_request(target, "POST", "/reload")?;
    let last = last_reload_line(target)?;
    if status == 200 {
        Ok(format!("{body}\n{last}"))
    } else {
        Err(CliError::Admin {
            addr: target.addr.clone(),
            problem: format!("reload failed (HTTP {status}): {body}\n{last}"),
        })
    }
}

/// `last reload: …` from `GET /reload`, one line.
pub(crate) fn last_reload_line(target: &AdminTarget) -> Result<String, CliError> {
    let fail = |problem: String| CliError::Admin {
        addr: target.addr.clone(),
        problem,
    };
    let (status, body) = admin_request(target, "GET", "/reload")?;
    if status != 200 {
        return Err(fail(format!("GET /reload: HTTP {status}: {body}")));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        last_reload: Option<LastReload>,
    }
    let answer: Answer = serde_json::from_str(&body)
        .map_err(|e| fail(format!("unexpected GET /reload answer: {e}")))?;
    Ok(match answer.last_reload {
        Some(last) => format!("last reload: {}\n", last.describe()),
        None => "last reload: none since the gateway started\n".into(),
    })
}

/// `reload` by pid file: sends SIGHUP, only to a gateway that holds the pid file locked and whose
/// command line is `kmip-gateway … serve` (a stale file's pid may now be any process). The
/// outcome is in the gateway's log and metrics.
pub(crate) fn reload_signal(pid_file: &Path) -> Result<String, CliError> {
    let io_err = |source| CliError::Io {
        path: pid_file.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(pid_file).map_err(io_err)?;
    match file.try_lock_shared() {
        // Nobody holds it: the gateway that wrote it is gone.
        Ok(()) => {
            return Err(CliError::State {
                path: pid_file.to_path_buf(),
                problem: "stale: no running gateway holds this pid file (nothing signalled)".into(),
            })
        }
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    let text = read_limited(pid_file, MAX_PID_FILE_LEN)?;
    let pid = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| CliError::State {
            path: pid_file.to_path_buf(),
            problem: "does not hold a process id".into(),
        })?;
    let raw = pid.as_raw_nonzero();
    if !is_gateway_process(raw.get()) {
        return Err(CliError::State {
            path: pid_file.to_path_buf(),
            problem: format!("pid {raw} is not a running `kmip-gateway serve` (nothing signalled)"),
        });
    }
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        CliError::Refused(format!(
            "cannot signal pid {raw} from {}: {e}",
            pid_file.display()
        ))
    })?;
    Ok(format!(
        "SIGHUP sent to pid {raw}; the outcome is in the gateway's log, kmip_reloads_total and \
         `kmip-gateway clients` (use --admin to wait for it)\n"
    ))
}

/// Whether process `pid` runs `kmip-gateway … serve` (from `/proc/PID/cmdline`).
fn is_gateway_process(pid: i32) -> bool {
    let Ok(file) = std::fs::File::open(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut raw = Vec::new();
    if file.take(MAX_CMDLINE_LEN).read_to_end(&mut raw).is_err() {
        return false;
    }
    let mut args = raw.split(|b| *b == 0).map(String::from_utf8_lossy);
    let program_ok = args.next().is_some_and(|argv0| {
        Path::new(argv0.as_ref())
            .file_name()
            .is_some_and(|n| n == GATEWAY_PROGRAM)
    });
    program_ok && args.any(|a| a == "serve")
}

/// `clients`: the client certificates the gateway has seen.
pub(crate) fn clients(target: &AdminTarget, json: bool) -> Result<String, CliError> {
    let addr = target.addr.as_str();
    let (status, body) = admin_request(target, "GET", "/clients")?;
    if status != 200 {
        return Err(CliError::Admin {
            addr: addr.to_string(),
            problem: format!("HTTP {status}: {body}"),
        });
    }
    if json {
        return Ok(format!("{body}\n"));
    }
    let last = last_reload_line(target)?;
    let rows: Vec<ClientReport> = serde_json::from_str(&body).map_err(|e| CliError::Admin {
        addr: addr.to_string(),
        problem: format!("unexpected /clients answer: {e}"),
    })?;
    let when = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| t.to_string())
    };
    let mut out = format!(
        "{:<20} {:<34} {:<21} {:<21} {:>4}  {}\n",
        "USER", "SERIAL", "LAST SEEN", "EXPIRES", "OPEN", "SHA-256 FINGERPRINT"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<20} {:<34} {:<21} {:<21} {:>4}  {}\n",
            r.user,
            r.serial,
            when(r.last_seen),
            r.not_after.map(when).unwrap_or_else(|| "?".into()),
            r.open_connections,
            r.fingerprint
        ));
    }
    out.push_str(&last);
    Ok(out)
}

/// Whether a running gateway enforces a revocation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Enforcement {
    /// A CRL in force lists the serial.
    Enforced { crl: PathBuf },
    /// No CRL of this CA is in force.
    NotConfigured,
    /// This CA's CRL is in force, but an older one without the serial.
    Stale { crl: PathBuf },
    /// The reload that would pick up the new CRL failed; the old state stays in force.
    ReloadFailed(String),
    /// No answer from the admin listener (or no token to ask it with).
    Unreachable(String),
}

/// Reloads the gateway of `config` (at `admin`, else the configuration's admin listener;
/// `POST /reload`, so the new CRL is read now rather than after
/// the file watcher's pause) and looks for `serial` in the CRLs of `issuer` it then enforces
/// (`GET /revocation`).
pub(crate) fn revocation_enforcement(
    config: &Path,
    admin: Option<String>,
    issuer: &str,
    serial: &str,
) -> Enforcement {
    let target = match admin_target(admin, None, Some(config), None) {
        Ok(t) => t,
        Err(e) => return Enforcement::Unreachable(e.to_string()),
    };
    match admin_request(&target, "POST", "/reload") {
        Ok((200, _)) => {}
        Ok((status, body)) => {
            return Enforcement::ReloadFailed(format!("HTTP {status}: {}", body.trim()))
        }
        Err(e) => return Enforcement::Unreachable(e.to_string()),
    }
    let crls: Vec<CrlInForce> = match admin_request(&target, "GET", "/revocation") {
        Ok((200, body)) => match serde_json::from_str(&body) {
            Ok(c) => c,
            Err(e) => {
                return Enforcement::Unreachable(format!("unexpected /revocation answer: {e}"))
            }
        },
        Ok((status, body)) => {
            return Enforcement::Unreachable(format!("/revocation: HTTP {status}: {}", body.trim()))
        }
        Err(e) => return Enforcement::Unreachable(e.to_string()),
    };
    enforcement_in(&crls, issuer, serial)
}

/// Where `serial` of `issuer` stands in the CRLs a gateway enforces.
pub(crate) fn enforcement_in(crls: &[CrlInForce], issuer: &str, serial: &str) -> Enforcement {
    let mut of_issuer = crls.iter().filter(|c| c.issuer == issuer).peekable();
    let Some(first) = of_issuer.peek().map(|c| c.path.clone()) else {
        return Enforcement::NotConfigured;
    };
    match of_issuer.find(|c| c.revoked.iter().any(|r| r == serial)) {
        Some(c) => Enforcement::Enforced {
            crl: c.path.clone(),
        },
        None => Enforcement::Stale { crl: first },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforcement_is_read_from_the_crls_in_force() {
        let crl = |path: &str, issuer: &str, revoked: &[&str]| CrlInForce {
            path: path.into(),
            issuer: issuer.into(),
            revoked: revoked.iter().map(|s| s.to_string()).collect(),
        };
        let crls = [
            crl("/other/crl.pem", "CN=other", &["ab"]),
            crl("/pki/crl.pem", "CN=ours", &["01", "ab"]),
        ];
        assert_eq!(
            enforcement_in(&crls, "CN=ours", "ab"),
            Enforcement::Enforced {
                crl: "/pki/crl.pem".into()
            }
        );
        assert_eq!(
            enforcement_in(&crls, "CN=ours", "cd"),
            Enforcement::Stale {
                crl: "/pki/crl.pem".into()
            }
        );
        assert_eq!(
            enforcement_in(&crls[..1], "CN=ours", "ab"),
            Enforcement::NotConfigured
        );
    }
}
