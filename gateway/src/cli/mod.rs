//! Operator commands besides `serve` and `check-config`: the PKI that stands in for the KMES
//! setup steps of the FlashArray guide, user management in the configuration file, and talking
//! to a running gateway (`reload`, `clients`).

pub(crate) mod backup;
pub(crate) mod pki;
pub(crate) mod remote;
pub(crate) mod user;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Errors of the operator commands. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Pki(#[from] kmip_gateway::tooling::pki::PkiError),
    #[error("{}: {problem}", path.display())]
    State { path: PathBuf, problem: String },
    #[error("{0}")]
    Refused(String),
    #[error("admin endpoint {addr}: {problem}")]
    Admin { addr: String, problem: String },
}

/// Reads a file that should be small (PEM, state, configuration), refusing more than `limit` bytes.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, CliError> {
    let io_err = |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = fs::metadata(path).map_err(io_err)?.len();
    if len > limit {
        return Err(CliError::Refused(format!(
            "{}: {len} bytes, more than the {limit}-byte limit",
            path.display()
        )));
    }
    fs::read(path).map_err(io_err)
}

/// Replaces `path` atomically (write a temporary file beside it, then rename), so a gateway
/// watching the folder never reads half a file.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CliError> {
    let io_err = |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::Refused(format!("{}: not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}
