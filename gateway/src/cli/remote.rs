//! Commands that talk to a running gateway: `reload` (SIGHUP to the pid in the pid file, or
//! `POST /reload` on the admin listener) and `clients` (`GET /clients`).

use super::{read_limited, CliError};
use kmip_gateway::server::ClientReport;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Time allowed to connect to and hear back from the admin listener (a reload takes
/// milliseconds; this only stops a hung endpoint from hanging the command).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest admin response read (`/clients` of the largest tracked table fits easily).
const MAX_ADMIN_RESPONSE: u64 = 32 * 1024 * 1024;
/// A pid file holds one number.
const MAX_PID_FILE_LEN: u64 = 64;

/// One HTTP/1.1 request to the admin listener; returns the status code and the body.
pub fn admin_request(addr: &str, method: &str, path: &str) -> Result<(u16, String), CliError> {
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
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ADMIN_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("not an HTTP response".into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail("no HTTP status".into()))?;
    Ok((status, body.to_string()))
}

/// `reload --admin`: reloads and reports the outcome.
pub fn reload_admin(addr: &str) -> Result<String, CliError> {
    let (status, body) = admin_request(addr, "POST", "/reload")?;
    if status == 200 {
        Ok(format!("{body}\n"))
    } else {
        Err(CliError::Admin {
            addr: addr.to_string(),
            problem: format!("reload failed (HTTP {status}): {body}"),
        })
    }
}

/// `reload` by pid file: sends SIGHUP. The outcome is in the gateway's log and metrics.
pub fn reload_signal(pid_file: &Path) -> Result<String, CliError> {
    let text = read_limited(pid_file, MAX_PID_FILE_LEN)?;
    let pid = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| CliError::State {
            path: pid_file.to_path_buf(),
            problem: "does not hold a process id".into(),
        })?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        CliError::Refused(format!(
            "cannot signal pid {} from {}: {e}",
            pid.as_raw_nonzero(),
            pid_file.display()
        ))
    })?;
    Ok(format!(
        "SIGHUP sent to pid {}; the outcome is in the gateway's log and in kmip_reloads_total \
         (use --admin to wait for it)\n",
        pid.as_raw_nonzero()
    ))
}

/// `clients`: the client certificates the gateway has seen.
pub fn clients(addr: &str, json: bool) -> Result<String, CliError> {
    let (status, body) = admin_request(addr, "GET", "/clients")?;
    if status != 200 {
        return Err(CliError::Admin {
            addr: addr.to_string(),
            problem: format!("HTTP {status}: {body}"),
        });
    }
    if json {
        return Ok(format!("{body}\n"));
    }
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
    Ok(out)
}
