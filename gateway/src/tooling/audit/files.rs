//! The files of the trail: rotated names, opening `audit.log`, setting a torn last line aside,
//! and reading lines back within a bounded length.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::warn;

use super::record::AuditRecord;
use super::{io_err, AuditError, CURRENT_FILE, FILE_MODE, MAX_LINE_BYTES};

/// Chunk used when looking backwards for the end of the last complete line.
const TAIL_SCAN_CHUNK: u64 = 64 * 1024;

fn rotated_name(first: u64, last: u64) -> String {
    format!("audit-{first:020}-{last:020}.log")
}

/// A rotation target that does not exist yet: `rename` would silently replace an older file.
pub(super) fn free_rotated_name(dir: &Path, first: u64, last: u64) -> PathBuf {
    let plain = dir.join(rotated_name(first, last));
    if !plain.exists() {
        return plain;
    }
    let mut n: u64 = 1;
    loop {
        let candidate = dir.join(format!("audit-{first:020}-{last:020}-{n}.log"));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// The first seq in a rotated file's name, or `None` for any other name.
pub(super) fn rotated_first_seq(name: &str) -> Option<u64> {
    let middle = name.strip_prefix("audit-")?.strip_suffix(".log")?;
    middle.split('-').next()?.parse().ok()
}

pub(super) fn is_audit_file(name: &str) -> bool {
    name == CURRENT_FILE || rotated_first_seq(name).is_some()
}

pub(super) fn open_current(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err(path))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// If the file does not end with a newline, its last line was torn by a crash: move those bytes
/// to a side file and cut them off. Returns the file's length afterwards.
pub(super) fn set_aside_torn_tail(file: &mut File, path: &Path) -> Result<u64, AuditError> {
    let len = file.metadata().map_err(io_err(path))?.len();
    let keep = complete_prefix_len(file, len).map_err(io_err(path))?;
    if keep == len {
        return Ok(len);
    }
    let mut torn = Vec::new();
    file.seek(SeekFrom::Start(keep)).map_err(io_err(path))?;
    file.read_to_end(&mut torn).map_err(io_err(path))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let side = path.with_file_name(format!("{CURRENT_FILE}.torn-{stamp}"));
    let mut side_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(&side)
        .map_err(io_err(&side))?;
    side_file
        .write_all(&torn)
        .and_then(|()| side_file.sync_all())
        .map_err(io_err(&side))?;
    file.set_len(keep).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    warn!(
        file = %path.display(),
        bytes = torn.len(),
        kept_in = %side.display(),
        "audit log ended with a partial line (crash during a write); set it aside"
    );
    Ok(keep)
}

/// Length of the file up to and including its last newline.
fn complete_prefix_len(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut chunk = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(TAIL_SCAN_CHUNK);
        chunk.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> AuditError {
    AuditError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn parse_record(line: &[u8], path: &Path, which: &str) -> Result<AuditRecord, AuditError> {
    serde_json::from_slice(line).map_err(|e| corrupt(path, format!("{which} line: {e}")))
}

pub(super) fn read_first_record(path: &Path) -> Result<AuditRecord, AuditError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    match read_line(&mut reader, &mut line).map_err(io_err(path))? {
        LineRead::Line => parse_record(&line, path, "first"),
        LineRead::TooLong => Err(corrupt(path, "first line is too long")),
        LineRead::Eof | LineRead::Incomplete => Err(corrupt(path, "no complete first line")),
    }
}

/// The last line of a file that ends with a newline (`len` > 0), read from the end so opening
/// does not scan a large file.
pub(super) fn read_last_record(
    file: &mut File,
    len: u64,
    path: &Path,
) -> Result<AuditRecord, AuditError> {
    let window = len.min(MAX_LINE_BYTES as u64 + 1);
    let mut tail = vec![0u8; window as usize];
    file.seek(SeekFrom::Start(len - window))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(io_err(path))?;
    if tail.last() != Some(&b'\n') {
        return Err(corrupt(path, "does not end with a complete line"));
    }
    tail.pop();
    let line = match tail.iter().rposition(|&b| b == b'\n') {
        Some(pos) => &tail[pos + 1..],
        None if window == len => &tail[..],
        None => return Err(corrupt(path, "last line is too long")),
    };
    parse_record(line, path, "last")
}

/// The rotated file with the highest first seq that holds at least one byte.
pub(super) fn newest_rotated(dir: &Path) -> Result<Option<PathBuf>, AuditError> {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(first) = name.to_str().and_then(rotated_first_seq) else {
            continue;
        };
        let path = entry.path();
        if fs::metadata(&path).map_err(io_err(&path))?.len() == 0 {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| first > *b) {
            best = Some((first, path));
        }
    }
    Ok(best.map(|(_, p)| p))
}

pub(super) enum LineRead {
    Line,
    /// Bytes at the end of the file without a newline.
    Incomplete,
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without its newline), never buffering more than
/// [`MAX_LINE_BYTES`].
pub(super) fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<LineRead> {
    buf.clear();
    let n = reader
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        Ok(LineRead::Eof)
    } else if buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(LineRead::Line)
    } else if buf.len() > MAX_LINE_BYTES {
        Ok(LineRead::TooLong)
    } else {
        Ok(LineRead::Incomplete)
    }
}
