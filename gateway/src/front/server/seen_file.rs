//! The client certificates seen, kept in the data folder (`clients-seen.json`) so that the
//! `clients` view survives a restart: loaded at start, written atomically (private mode) when it
//! changed, every [`SAVE_INTERVAL`] and at a graceful stop.

use super::registry::{Registry, SeenRecord, MAX_TRACKED_CLIENTS};
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::warn;

/// The file's name in the data folder.
const SEEN_FILE: &str = "clients-seen.json";
/// How often a changed view is written: what a crash can lose of last-seen times (a graceful stop
/// writes it at once).
const SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// Largest file read: [`MAX_TRACKED_CLIENTS`] entries of at most a few hundred bytes each, with
/// room to spare; a larger file is not this gateway's and is not loaded into memory.
const MAX_FILE_BYTES: u64 = (MAX_TRACKED_CLIENTS as u64) * 2048;
/// Only the gateway's user reads who connected when.
const FILE_MODE: u32 = 0o600;
/// The format's version, so a later gateway can tell old files apart.
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SeenFile {
    version: u32,
    clients: Vec<SeenRecord>,
}

/// The data folder's file of client certificates seen.
fn seen_file(data_dir: &Path) -> PathBuf {
    data_dir.join(SEEN_FILE)
}

/// Keeps the `limit` most recently seen records (the same bound as the live view).
fn newest(mut records: Vec<SeenRecord>, limit: usize) -> Vec<SeenRecord> {
    records.sort_by_key(|r| std::cmp::Reverse(r.last_seen_ms));
    records.truncate(limit);
    records
}

/// Reads the file; a missing one is an empty view. Blocking: call it off the async workers.
fn read(path: &Path) -> Result<Vec<SeenRecord>, String> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "{len} bytes, more than the {MAX_FILE_BYTES}-byte limit"
        ));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let file: SeenFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if file.version != FORMAT_VERSION {
        return Err(format!(
            "format version {} is not {FORMAT_VERSION}",
            file.version
        ));
    }
    Ok(newest(file.clients, MAX_TRACKED_CLIENTS))
}

/// Writes the file atomically (temporary file, fsync, rename) in private mode. Blocking.
fn write(path: &Path, records: Vec<SeenRecord>) -> io::Result<()> {
    let json = serde_json::to_vec(&SeenFile {
        version: FORMAT_VERSION,
        clients: records,
    })
    .map_err(io::Error::other)?;
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Loads the view kept by the previous run into `registry`. An unreadable file is moved aside
/// (`<file>.unreadable`, for inspection) and the view starts empty: it is a record of what
/// connected, never a reason not to serve. Returns how many certificates were loaded.
pub async fn load(registry: &Registry, data_dir: &Path) -> usize {
    let path = seen_file(data_dir);
    let read_path = path.clone();
    let records = match tokio::task::spawn_blocking(move || read(&read_path)).await {
        Ok(Ok(r)) => r,
        Ok(Err(problem)) => {
            let aside = path.with_extension("json.unreadable");
            let moved = fs::rename(&path, &aside).is_ok();
            warn!(file = %path.display(), problem, moved_to = moved.then(|| aside.display().to_string()),
                  "cannot read the client certificates seen before the restart: `clients` starts empty");
            return 0;
        }
        Err(e) => {
            warn!(error = %e, "the task reading the client certificates seen failed");
            return 0;
        }
    };
    let count = records.len();
    registry.restore(records);
    count
}

/// Writes the view if it changed since the last write. Returns whether the file is current.
pub async fn save(registry: &Registry, data_dir: &Path) -> bool {
    if !registry.take_changed() {
        return true;
    }
    let path = seen_file(data_dir);
    let records = registry.seen_records();
    let write_path = path.clone();
    let outcome = tokio::task::spawn_blocking(move || write(&write_path, records))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(error) = outcome {
        // Tried again at the next interval.
        registry.mark_changed();
        warn!(file = %path.display(), error, "cannot write the client certificates seen");
        return false;
    }
    true
}

/// Writes the view every `SAVE_INTERVAL` while it changes, until `shutdown`; the caller writes
/// it once more after the connections have ended.
pub async fn keep_saved(
    server: Arc<super::Server>,
    data_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SAVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => { save(&server.registry, &data_dir).await; }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64) -> SeenRecord {
        SeenRecord {
            user: "purefa".into(),
            fingerprint: format!("{n:064x}"),
            subject: "CN=purefa".into(),
            serial: format!("{n:x}"),
            not_after: Some(2_000_000_000),
            first_seen: n,
            last_seen_ms: n * 1000,
        }
    }

    #[test]
    fn only_the_most_recent_are_kept() {
        let kept = newest((0..10).map(record).collect(), 3);
        let seen: Vec<_> = kept.iter().map(|r| r.first_seen).collect();
        assert_eq!(seen, [9, 8, 7]);
    }

    #[test]
    fn written_privately_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = seen_file(dir.path());
        assert_eq!(read(&path).unwrap(), Vec::new(), "no file: empty view");
        let records: Vec<_> = (1..4).map(record).collect();
        write(&path, records.clone()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap(), newest(records, MAX_TRACKED_CLIENTS));
        fs::write(&path, b"{not json").unwrap();
        assert!(read(&path).is_err());
    }
}
