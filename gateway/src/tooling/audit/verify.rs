//! Verification of a chain (`kmip-gateway audit verify`): every record's hash, seq and `prev`,
//! across files in chain order, stopping at the first problem.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{is_audit_file, read_line, rotated_first_seq, LineRead};
use super::record::{reported_drops, AuditRecord};
use super::{GENESIS_PREV, GENESIS_SEQ, MAX_LINE_BYTES};

/// Result of [`verify`]: how far the chain checked out and the first thing wrong, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The files read, in chain order.
    pub files: Vec<PathBuf>,
    /// Records that passed every check before the first problem (all of them if none).
    pub records_checked: u64,
    /// The first record read: seq and `prev` (a non-genesis start means earlier files were not
    /// given, which is not an error by itself).
    pub start: Option<ChainStart>,
    /// The last good record: compare its seq and hash with an anchor kept elsewhere to detect
    /// records removed from the end.
    pub end: Option<ChainEnd>,
    /// Drop-marker records among the checked ones, and the drops they report.
    pub drop_markers: u64,
    pub drops_reported: u64,
    pub first_problem: Option<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStart {
    pub seq: u64,
    pub prev: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEnd {
    pub seq: u64,
    pub hash: String,
}

/// Where verification stopped: file, 1-based line (0 when the file itself is the problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: u64,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// No audit file under the given paths.
    NoAuditFiles,
    /// A file or directory could not be read.
    Unreadable { reason: String },
    /// A line is not a record (bad JSON, unknown or missing field, too long, cut short).
    Unparsable { reason: String },
    /// The record's content does not match its hash: it was edited.
    Edited { seq: u64 },
    /// Seqs jump: these records are absent from the files.
    Deleted {
        first_missing: u64,
        last_missing: u64,
    },
    /// A record appears where another seq was due (and the due one is further on, or the seq
    /// goes backwards): records were moved or replayed.
    Reordered { seq: u64, expected: u64 },
    /// Seqs are contiguous but `prev` is not the previous record's hash: a neighbouring record
    /// was replaced or rewritten with a recomputed hash.
    ChainBroken { seq: u64 },
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_problem.is_none()
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::NoAuditFiles => write!(f, "no audit files (audit.log, audit-*.log)"),
            ProblemKind::Unreadable { reason } => write!(f, "cannot read: {reason}"),
            ProblemKind::Unparsable { reason } => write!(f, "not a valid audit record: {reason}"),
            ProblemKind::Edited { seq } => write!(
                f,
                "record seq {seq} was modified (its content does not match its hash)"
            ),
            ProblemKind::Deleted {
                first_missing,
                last_missing,
            } if first_missing == last_missing => {
                write!(f, "record seq {first_missing} is missing (deleted)")
            }
            ProblemKind::Deleted {
                first_missing,
                last_missing,
            } => write!(
                f,
                "records seq {first_missing}..={last_missing} are missing (deleted)"
            ),
            ProblemKind::Reordered { seq, expected } => write!(
                f,
                "record seq {seq} is out of order (seq {expected} was due here)"
            ),
            ProblemKind::ChainBroken { seq } => write!(
                f,
                "record seq {seq} does not chain to the record before it (prev mismatch: \
                 one of them was replaced or rewritten)"
            ),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.kind)
        } else {
            write!(
                f,
                "{} line {}: {}",
                self.file.display(),
                self.line,
                self.kind
            )
        }
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.files.len();
        match &self.first_problem {
            Some(problem) => write!(
                f,
                "audit chain BROKEN after {} good record(s) in {files} file(s): {problem}",
                self.records_checked
            ),
            None => {
                write!(
                    f,
                    "audit chain OK: {} record(s) in {files} file(s)",
                    self.records_checked
                )?;
                if let (Some(start), Some(end)) = (&self.start, &self.end) {
                    write!(f, ", seq {}..={}", start.seq, end.seq)?;
                    if start.seq == GENESIS_SEQ && start.prev == GENESIS_PREV {
                        write!(f, " from the genesis record")?;
                    } else {
                        write!(
                            f,
                            " (starts after seq {} with prev {}: earlier files not given)",
                            start.seq.saturating_sub(1),
                            start.prev
                        )?;
                    }
                    write!(f, "; last hash {}", end.hash)?;
                }
                if self.drop_markers > 0 {
                    write!(
                        f,
                        "; {} record(s) were dropped by the gateway (reported by {} marker \
                         record(s) in the chain)",
                        self.drops_reported, self.drop_markers
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Checks the chain in `paths`: audit files, or directories whose `audit.log` and
/// `audit-*.log` files are read. Files are put in chain order by their first record's seq
/// (whatever their names), and every record is checked for its hash, its seq (previous + 1)
/// and its `prev` (previous record's hash). Stops at the first problem.
pub fn verify(paths: &[PathBuf]) -> VerifyReport {
    let mut report = VerifyReport {
        files: Vec::new(),
        records_checked: 0,
        start: None,
        end: None,
        drop_markers: 0,
        drops_reported: 0,
        first_problem: None,
    };
    let files = match chain_files(paths) {
        Ok(files) => files,
        Err(problem) => {
            report.first_problem = Some(problem);
            return report;
        }
    };
    if files.is_empty() {
        report.first_problem = Some(Problem {
            file: paths.first().cloned().unwrap_or_default(),
            line: 0,
            kind: ProblemKind::NoAuditFiles,
        });
        return report;
    }
    report.files = files.clone();
    let mut entries = Entries::new(files);
    let mut last: Option<ChainEnd> = None;
    while let Some(entry) = entries.next() {
        let Entry {
            file,
            line,
            content,
        } = entry;
        let at = |kind| Problem {
            file: file.as_ref().clone(),
            line,
            kind,
        };
        let record = match content {
            Ok(record) => record,
            Err(kind) => {
                report.first_problem = Some(at(kind));
                break;
            }
        };
        if let Some(kind) = check(&record, last.as_ref(), &mut entries) {
            report.first_problem = Some(at(kind));
            break;
        }
        if last.is_none() {
            report.start = Some(ChainStart {
                seq: record.seq,
                prev: record.prev.clone(),
            });
        }
        report.records_checked += 1;
        if let Some(n) = reported_drops(&record) {
            report.drop_markers += 1;
            report.drops_reported += n;
        }
        last = Some(ChainEnd {
            seq: record.seq,
            hash: record.hash,
        });
    }
    report.end = last;
    report
}

/// What is wrong with `record` following `last`, if anything. A seq jump is told apart from a
/// move by looking ahead for the seq that was due.
fn check(record: &AuditRecord, last: Option<&ChainEnd>, rest: &mut Entries) -> Option<ProblemKind> {
    match record.compute_hash() {
        Ok(hash) if hash == record.hash => {}
        _ => return Some(ProblemKind::Edited { seq: record.seq }),
    }
    let last = last?;
    let Some(expected) = last.seq.checked_add(1) else {
        return Some(ProblemKind::Reordered {
            seq: record.seq,
            expected: last.seq,
        });
    };
    if record.seq < expected {
        return Some(ProblemKind::Reordered {
            seq: record.seq,
            expected,
        });
    }
    if record.seq > expected {
        let due_later = rest.any(|e| matches!(&e.content, Ok(r) if r.seq == expected));
        return Some(if due_later {
            ProblemKind::Reordered {
                seq: record.seq,
                expected,
            }
        } else {
            ProblemKind::Deleted {
                first_missing: expected,
                last_missing: record.seq - 1,
            }
        });
    }
    if record.prev != last.hash {
        return Some(ProblemKind::ChainBroken { seq: record.seq });
    }
    None
}

/// The audit files named by `paths`, deduplicated and sorted by first seq.
fn chain_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problem> {
    let unreadable = |file: &Path, e: io::Error| Problem {
        file: file.to_path_buf(),
        line: 0,
        kind: ProblemKind::Unreadable {
            reason: e.to_string(),
        },
    };
    let mut files = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).map_err(|e| unreadable(path, e))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        for entry in fs::read_dir(path).map_err(|e| unreadable(path, e))? {
            let entry = entry.map_err(|e| unreadable(path, e))?;
            if entry.file_name().to_str().is_some_and(is_audit_file) {
                files.push(entry.path());
            }
        }
    }
    let mut keyed: Vec<(u64, PathBuf)> = files
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .map(|p| (order_key(&p), p))
        .collect();
    keyed.sort();
    keyed.dedup_by(|a, b| a.1 == b.1);
    Ok(keyed.into_iter().map(|(_, p)| p).collect())
}

/// The file's first seq; failing that, the one in its rotated name; `audit.log` and anything
/// unreadable go last, where reading them reports the problem in chain order.
fn order_key(path: &Path) -> u64 {
    let from_content = File::open(path).ok().and_then(|f| {
        let mut line = Vec::new();
        match read_line(&mut BufReader::new(f), &mut line) {
            Ok(LineRead::Line | LineRead::Incomplete) => {
                serde_json::from_slice::<AuditRecord>(&line)
                    .ok()
                    .map(|r| r.seq)
            }
            _ => None,
        }
    });
    from_content
        .or_else(|| {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(rotated_first_seq)
        })
        .unwrap_or(u64::MAX)
}

struct Entry {
    file: Arc<PathBuf>,
    line: u64,
    content: Result<AuditRecord, ProblemKind>,
}

/// Every line of every file, in order, parsed. A file that cannot be read yields one entry for
/// it and reading moves on to the next file (verify stops there; a look-ahead skips it).
struct Entries {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(Arc<PathBuf>, BufReader<File>, u64)>,
    buf: Vec<u8>,
}

impl Entries {
    fn new(files: Vec<PathBuf>) -> Entries {
        Entries {
            files: files.into_iter(),
            current: None,
            buf: Vec::new(),
        }
    }
}

impl Iterator for Entries {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let Some((file, reader, line_no)) = &mut self.current else {
                let path = Arc::new(self.files.next()?);
                match File::open(path.as_ref()) {
                    Ok(f) => self.current = Some((path, BufReader::new(f), 0)),
                    Err(e) => {
                        return Some(Entry {
                            file: path,
                            line: 0,
                            content: Err(ProblemKind::Unreadable {
                                reason: e.to_string(),
                            }),
                        })
                    }
                }
                continue;
            };
            *line_no += 1;
            let line = *line_no;
            let file = Arc::clone(file);
            let content = match read_line(reader, &mut self.buf) {
                Ok(LineRead::Eof) => {
                    self.current = None;
                    continue;
                }
                Ok(LineRead::Line) => parse_line(&self.buf),
                Ok(LineRead::Incomplete) => parse_line(&self.buf).map_err(|kind| match kind {
                    ProblemKind::Unparsable { reason } => ProblemKind::Unparsable {
                        reason: format!("incomplete last line (no newline): {reason}"),
                    },
                    other => other,
                }),
                Ok(LineRead::TooLong) => {
                    self.current = None;
                    Err(ProblemKind::Unparsable {
                        reason: format!("line longer than {MAX_LINE_BYTES} bytes"),
                    })
                }
                Err(e) => {
                    self.current = None;
                    Err(ProblemKind::Unreadable {
                        reason: e.to_string(),
                    })
                }
            };
            return Some(Entry {
                file,
                line,
                content,
            });
        }
    }
}

fn parse_line(line: &[u8]) -> Result<AuditRecord, ProblemKind> {
    serde_json::from_slice(line).map_err(|e| ProblemKind::Unparsable {
        reason: e.to_string(),
    })
}
