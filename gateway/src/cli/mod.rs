//! The commands behind `main`: `serve`'s start-up (`serve.rs`), the PKI that stands in for the KMES
//! setup steps of the FlashArray guide, user management in the configuration file, and talking
//! to a running gateway (`reload`, `clients`, `keys`, `upstream adopt`), and moving objects
//! between backends (`migrate`), and the postgres backend's schema and KEK commands (`migrate-schema`, `kek`).

pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod keys;
pub(crate) mod migrate;
pub(crate) mod pki;
pub(crate) mod postgres;
pub(crate) mod remote;
pub(crate) mod serve;
pub(crate) mod upstream;
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

/// Largest `/etc/group` read when resolving `--group NAME`.
const MAX_GROUP_FILE_LEN: u64 = 4 * 1024 * 1024;

/// How a written file is owned: a new file gets `mode` and, with a service group, that group
/// (`group_mode` then); an existing file keeps its owner, group and mode unless a service group
/// is given, which re-applies the documented layout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access {
    /// Mode without a service group (private keys 0600, public files 0644).
    pub mode: u32,
    /// Mode with a service group (a key the service reads: 0640).
    pub group_mode: u32,
    /// The service's group id (`--group`), or `None`.
    pub group: Option<u32>,
}

/// Resolves `--group`: a numeric gid, or a name from `/etc/group` (groups of a directory service
/// are given by number).
pub(crate) fn resolve_group(group: &str) -> Result<u32, CliError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let path = Path::new("/etc/group");
    let text = String::from_utf8_lossy(&read_limited(path, MAX_GROUP_FILE_LEN)?).into_owned();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(name, _)| *name == group)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| {
            CliError::Refused(format!(
                "--group {group}: no such group in /etc/group (create it first, e.g. with \
                 systemd-sysusers, or give its numeric id)"
            ))
        })
}

/// Replaces `path` atomically (write a temporary file beside it, set its owner and mode, fsync,
/// rename, fsync the folder), so a gateway watching the folder never reads half a file and a
/// renewal never changes who may read it (see [`Access`]).
pub(crate) fn write_atomic(path: &Path, contents: &[u8], access: Access) -> Result<(), CliError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io_err = |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::Refused(format!("{}: not a file path", path.display())))?;
    let existing = match fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(e)),
    };
    let (owner, mode) = match (access.group, &existing) {
        (Some(gid), _) => ((None, Some(gid)), access.group_mode),
        (None, Some(m)) => ((Some(m.uid()), Some(m.gid())), m.mode() & 0o7777),
        (None, None) => ((None, None), access.mode),
    };
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        // Private until its owner and mode are set.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        if owner != (None, None) {
            std::os::unix::fs::fchown(&f, owner.0, owner.1)?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| match (e.kind(), owner) {
        (io::ErrorKind::PermissionDenied, (uid, Some(gid))) => CliError::Refused(format!(
            "{}: cannot give the new file the owner {} and group {gid} that the service \
             needs ({e}); run this as root",
            path.display(),
            uid.map_or_else(|| "(yours)".to_string(), |u| u.to_string()),
        )),
        _ => io_err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    const KEY: Access = Access {
        mode: 0o600,
        group_mode: 0o640,
        group: None,
    };

    #[test]
    fn a_rewrite_keeps_the_owner_and_mode_of_the_file_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        write_atomic(&path, b"one", KEY).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let gid = fs::metadata(dir.path()).unwrap().gid();
        write_atomic(&path, b"two", KEY).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640, "the operator's mode is kept");
        assert_eq!(meta.gid(), gid);
        assert_eq!(fs::read(&path).unwrap(), b"two");
    }

    #[test]
    fn a_service_group_makes_the_key_group_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        // Our own primary group: chown to it needs no privilege.
        let gid = fs::metadata(dir.path()).unwrap().gid();
        let access = Access {
            group: Some(gid),
            ..KEY
        };
        write_atomic(&path, b"one", access).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.mode() & 0o777, meta.gid()), (0o640, gid));
        assert_eq!(resolve_group(&gid.to_string()).unwrap(), gid);
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert!(resolve_group("no-such-group-kmip")
            .unwrap_err()
            .to_string()
            .contains("no such group"));
    }
}
