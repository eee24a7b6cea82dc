//! File helpers the vault's files share: errors that name their file, private temporary files,
//! directory syncs, and scrubbing what must not stay on disk.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::BackendError;

/// An I/O error that names the file it happened on.
pub(crate) fn io_err(path: &Path, e: std::io::Error) -> BackendError {
    BackendError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// Creates (or empties) a file only the owner can read, for the temporary copies of the log,
/// the key slots and the head that are renamed into place once complete.
pub(crate) fn create_private(path: &Path) -> Result<File, BackendError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))
}

/// Makes a directory's entries (a created or renamed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackendError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}
/// Block of zeros written over a file being scrubbed.
const SCRUB_CHUNK: usize = 64 * 1024;

/// Overwrites an open file's contents with zeros and syncs it: what is gone from a file should
/// be gone from the disk blocks too (on file systems that overwrite in place).
pub(crate) fn scrub(file: &File, path: &Path) -> Result<(), BackendError> {
    let len = file.metadata().map_err(|e| io_err(path, e))?.len();
    let zeros = vec![0u8; SCRUB_CHUNK];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(SCRUB_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| io_err(path, e))?;
        at += n as u64;
    }
    file.sync_data().map_err(|e| io_err(path, e))
}

/// Scrubs and deletes `path` if it exists.
pub(crate) fn scrub_and_remove(path: &Path) -> Result<(), BackendError> {
    match OpenOptions::new().write(true).open(path) {
        Ok(f) => {
            scrub(&f, path)?;
            std::fs::remove_file(path).map_err(|e| io_err(path, e))?;
            tracing::info!(path = %path.display(), "removed an unfinished compaction or upgrade");
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, e)),
    }
}
