//! The audit trail through its public API on real files: chain, tampering of each kind,
//! rotation, reopening, torn tails, concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use kmip_gateway::tooling::audit::{
    verify, AuditError, AuditEvent, AuditLog, AuditRecord, ProblemKind, VerifyReport, CURRENT_FILE,
    DROP_MARKER_OPERATION, ENQUEUE_TIMEOUT, GENESIS_PREV, GENESIS_SEQ, MAX_FIELD_BYTES, MAX_UIDS,
    QUEUE_CAPACITY,
};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        time: SystemTime::now(),
        conn_id: i % 7,
        peer: "192.0.2.10:40000".parse().unwrap(),
        cert_subject: "CN=array-01,O=Example".into(),
        cert_fingerprint: "ab".repeat(32),
        user: "flasharray".into(),
        operation: "Get".into(),
        unique_identifiers: vec![format!("uid-{i}")],
        result_status: "Success".into(),
        result_reason: None,
        latency_us: 100 + i,
        // Some records carry a client's Log text: the chain holds with and without one.
        note: i.is_multiple_of(3).then(|| format!("client log {i}")),
    }
}

/// Opens `dir`, records `range`, closes (which flushes and fsyncs).
async fn write_records(dir: &Path, max: u64, range: std::ops::Range<u64>) {
    let log = AuditLog::open(dir, max).unwrap();
    for i in range {
        log.record(event(i)).await;
    }
    let totals = log.close().unwrap();
    assert_eq!(totals.dropped, 0);
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

fn records(path: &Path) -> Vec<AuditRecord> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn check_dir(dir: &Path) -> VerifyReport {
    verify(&[dir.to_path_buf()])
}

fn problem(report: &VerifyReport) -> (&Path, u64, &ProblemKind) {
    let p = report
        .first_problem
        .as_ref()
        .unwrap_or_else(|| panic!("expected a problem: {report}"));
    (p.file.as_path(), p.line, &p.kind)
}

fn rotated_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("audit-")
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_chain_of_records_verifies() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..10).await;

    let current = dir.path().join(CURRENT_FILE);
    let recs = records(&current);
    assert_eq!(recs.len(), 10);
    assert_eq!(recs[0].seq, GENESIS_SEQ);
    assert_eq!(recs[0].prev, GENESIS_PREV);
    for pair in recs.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev, pair[0].hash);
    }
    // Time format: RFC 3339 UTC with exactly six fractional digits.
    let t = &recs[0].time;
    assert_eq!(t.len(), "2025-01-31T12:34:56.123456Z".len(), "{t}");
    assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.');
    assert!(time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok());

    for report in [
        check_dir(dir.path()),
        verify(std::slice::from_ref(&current)),
    ] {
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.records_checked, 10);
        assert_eq!(report.end.as_ref().unwrap().seq, 10);
        assert_eq!(report.end.as_ref().unwrap().hash, recs[9].hash);
        assert!(report.to_string().contains("genesis"), "{report}");
    }
}

#[tokio::test]
async fn a_record_has_only_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..2).await;
    let written = lines(&dir.path().join(CURRENT_FILE));
    // Record 1 carries no client text: its line has no `note` at all.
    assert!(!written[1].contains("\"note\""), "{}", written[1]);
    let line = &written[0];
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "seq",
        "time",
        "conn_id",
        "peer",
        "cert_subject",
        "cert_fingerprint",
        "user",
        "operation",
        "unique_identifiers",
        "result_status",
        "result_reason",
        "latency_us",
        "note",
        "prev",
        "hash",
    ];
    expected.sort();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, expected);
    // The hash covers exactly the line without its hash field.
    let rec: AuditRecord = serde_json::from_str(line).unwrap();
    let canonical = String::from_utf8(rec.canonical_json().unwrap()).unwrap();
    let open_object = canonical.strip_suffix('}').unwrap();
    assert_eq!(*line, format!("{open_object},\"hash\":\"{}\"}}", rec.hash));
}

#[tokio::test]
async fn an_edited_field_is_detected_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..8).await;
    let current = dir.path().join(CURRENT_FILE);
    let mut l = lines(&current);
    assert!(l[3].contains("\"result_status\":\"Success\""));
    l[3] = l[3].replace("\"Success\"", "\"OperationFailed\"");
    write_lines(&current, &l);

    let report = check_dir(dir.path());
    let (file, line, kind) = problem(&report);
    assert_eq!(file.file_name().unwrap(), CURRENT_FILE);
    assert_eq!(line, 4);
    assert_eq!(kind, &ProblemKind::Edited { seq: 4 });
    assert_eq!(report.records_checked, 3);
    assert!(report.to_string().contains("line 4"), "{report}");
}

#[tokio::test]
async fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..8).await;
    let current = dir.path().join(CURRENT_FILE);
    let mut l = lines(&current);
    let mut rec: AuditRecord = serde_json::from_str(&l[2]).unwrap();
    rec.user = "someone-else".into();
    rec.hash = rec.compute_hash().unwrap();
    l[2] = serde_json::to_string(&rec).unwrap();
    write_lines(&current, &l);

    let report = check_dir(dir.path());
    let (_, line, kind) = problem(&report);
    assert_eq!((line, kind), (4, &ProblemKind::ChainBroken { seq: 4 }));
}

#[tokio::test]
async fn a_deleted_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..8).await;
    let current = dir.path().join(CURRENT_FILE);
    let mut l = lines(&current);
    l.remove(4); // seq 5
    write_lines(&current, &l);

    let report = check_dir(dir.path());
    let (_, line, kind) = problem(&report);
    assert_eq!(line, 5);
    assert_eq!(
        kind,
        &ProblemKind::Deleted {
            first_missing: 5,
            last_missing: 5
        }
    );
    assert_eq!(report.records_checked, 4);
}

#[tokio::test]
async fn swapped_records_are_detected_as_reordered() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..8).await;
    let current = dir.path().join(CURRENT_FILE);
    let mut l = lines(&current);
    l.swap(2, 3); // seq 3 and 4
    write_lines(&current, &l);

    let report = check_dir(dir.path());
    let (_, line, kind) = problem(&report);
    assert_eq!(line, 3);
    assert_eq!(
        kind,
        &ProblemKind::Reordered {
            seq: 4,
            expected: 3
        }
    );
    assert_eq!(report.records_checked, 2);
}

#[tokio::test]
async fn a_replayed_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..5).await;
    let current = dir.path().join(CURRENT_FILE);
    let mut l = lines(&current);
    let copy = l[1].clone();
    l.insert(3, copy); // seq 2 again after seq 3
    write_lines(&current, &l);

    let report = check_dir(dir.path());
    let (_, line, kind) = problem(&report);
    assert_eq!(
        (line, kind),
        (
            4,
            &ProblemKind::Reordered {
                seq: 2,
                expected: 4
            }
        )
    );
}

#[tokio::test]
async fn an_unparsable_line_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..5).await;
    let current = dir.path().join(CURRENT_FILE);
    let mut l = lines(&current);
    l[2] = l[2].replace("\"seq\":3", "\"seq\":\"three\"");
    write_lines(&current, &l);
    let report = check_dir(dir.path());
    let (_, line, kind) = problem(&report);
    assert_eq!(line, 3);
    assert!(matches!(kind, ProblemKind::Unparsable { .. }), "{kind:?}");

    // A field the type does not have is rejected, not ignored.
    let mut l = lines(&current);
    l[2] = l[2].replacen('{', "{\"key_material\":\"00\",", 1);
    write_lines(&current, &l);
    let report = check_dir(dir.path());
    let (_, line, kind) = problem(&report);
    assert_eq!(line, 3);
    assert!(
        matches!(kind, ProblemKind::Unparsable { reason } if reason.contains("key_material")),
        "{kind:?}"
    );
}

/// Writes 60 records with a 1 KiB limit: several rotated files plus `audit.log`.
async fn rotated_log(dir: &Path) -> Vec<PathBuf> {
    write_records(dir, 1024, 0..60).await;
    let rotated = rotated_files(dir);
    assert!(rotated.len() >= 3, "{rotated:?}");
    rotated
}

#[tokio::test]
async fn rotation_keeps_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let rotated = rotated_log(dir.path()).await;

    let mut expected_seq = GENESIS_SEQ;
    let mut prev = GENESIS_PREV.to_owned();
    let mut files = rotated.clone();
    files.push(dir.path().join(CURRENT_FILE));
    for file in &files {
        assert!(fs::metadata(file).unwrap().len() <= 1024, "{file:?}");
        let recs = records(file);
        assert!(!recs.is_empty());
        if file.file_name().unwrap() != CURRENT_FILE {
            let name = format!(
                "audit-{:020}-{:020}.log",
                recs[0].seq,
                recs.last().unwrap().seq
            );
            assert_eq!(file.file_name().unwrap().to_str().unwrap(), name);
        }
        for rec in recs {
            assert_eq!(rec.seq, expected_seq);
            assert_eq!(rec.prev, prev);
            expected_seq += 1;
            prev = rec.hash;
        }
    }
    assert_eq!(expected_seq, 61);

    let report = check_dir(dir.path());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records_checked, 60);
    assert_eq!(report.files.len(), files.len());

    // Files given one by one, in the wrong order, are put back in chain order.
    let mut reversed = files.clone();
    reversed.reverse();
    let report = verify(&reversed);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records_checked, 60);
}

#[tokio::test]
async fn a_deleted_middle_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let rotated = rotated_log(dir.path()).await;
    let middle = &rotated[1];
    let gone = records(middle);
    let next_first = records(&rotated[2])[0].seq;
    fs::remove_file(middle).unwrap();

    let report = check_dir(dir.path());
    let (file, line, kind) = problem(&report);
    assert_eq!(file.file_name(), rotated[2].file_name());
    assert_eq!(line, 1);
    assert_eq!(
        kind,
        &ProblemKind::Deleted {
            first_missing: gone[0].seq,
            last_missing: gone.last().unwrap().seq
        }
    );
    assert_eq!(gone.last().unwrap().seq + 1, next_first);
}

#[tokio::test]
async fn only_the_later_files_verify_as_a_partial_chain() {
    let dir = tempfile::tempdir().unwrap();
    let rotated = rotated_log(dir.path()).await;
    let first_kept = records(&rotated[1])[0].clone();
    fs::remove_file(&rotated[0]).unwrap();
    let report = check_dir(dir.path());
    assert!(report.is_ok(), "{report}");
    let start = report.start.as_ref().unwrap();
    assert_eq!((start.seq, &start.prev), (first_kept.seq, &first_kept.prev));
    assert!(
        report.to_string().contains("earlier files not given"),
        "{report}"
    );
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..3).await;
    write_records(dir.path(), 1 << 20, 3..6).await;
    let recs = records(&dir.path().join(CURRENT_FILE));
    assert_eq!(
        recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    let report = check_dir(dir.path());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records_checked, 6);

    // Reopening with rotation: the new audit.log starts where the rotated files end.
    write_records(dir.path(), 1024, 6..40).await;
    write_records(dir.path(), 1024, 40..45).await;
    let report = check_dir(dir.path());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records_checked, 45);
}

#[tokio::test]
async fn reopening_after_a_crash_between_rename_and_create_continues_from_the_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let rotated = rotated_log(dir.path()).await;
    // Simulate the crash: audit.log's records end up rotated and no audit.log exists.
    let current = dir.path().join(CURRENT_FILE);
    let recs = records(&current);
    let name = format!(
        "audit-{:020}-{:020}.log",
        recs[0].seq,
        recs.last().unwrap().seq
    );
    fs::rename(&current, dir.path().join(name)).unwrap();
    assert!(rotated.len() >= 3);

    write_records(dir.path(), 1024, 60..65).await;
    let report = check_dir(dir.path());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records_checked, 65);
}

#[tokio::test]
async fn a_torn_last_line_is_set_aside_on_open() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..4).await;
    let current = dir.path().join(CURRENT_FILE);
    let mut bytes = fs::read(&current).unwrap();
    let intact = bytes.len();
    bytes.extend_from_slice(b"{\"seq\":5,\"time\":\"2025-");
    fs::write(&current, &bytes).unwrap();

    // The live file with a torn tail does not verify...
    let report = check_dir(dir.path());
    let (_, line, kind) = problem(&report);
    assert_eq!(line, 5);
    assert!(
        matches!(kind, ProblemKind::Unparsable { reason } if reason.contains("incomplete")),
        "{kind:?}"
    );

    // ...reopening moves the partial line aside and the chain continues from seq 4.
    write_records(dir.path(), 1 << 20, 4..6).await;
    let recs = records(&current);
    assert_eq!(recs.len(), 6);
    assert_eq!(recs[4].seq, 5);
    assert_eq!(fs::read(&current).unwrap()[..intact], bytes[..intact]);
    let side: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("audit.log.torn-"))
        .collect();
    assert_eq!(side.len(), 1);
    assert_eq!(
        fs::read(dir.path().join(&side[0])).unwrap(),
        b"{\"seq\":5,\"time\":\"2025-"
    );
    let report = check_dir(dir.path());
    assert!(report.is_ok(), "{report}");
}

#[tokio::test]
async fn a_corrupt_last_record_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, 0..3).await;
    let current = dir.path().join(CURRENT_FILE);
    let mut l = lines(&current);
    l[2] = "not json".into();
    write_lines(&current, &l);
    let err = AuditLog::open(dir.path(), 1 << 20).err().unwrap();
    assert!(
        err.to_string().contains("cannot continue the chain"),
        "{err}"
    );
}

#[tokio::test]
async fn oversized_client_strings_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), 1 << 20).unwrap();
    let mut ev = event(0);
    ev.unique_identifiers = (0..100)
        .map(|i| format!("{i}-{}", "é".repeat(1000)))
        .collect();
    ev.result_reason = Some("x".repeat(10_000));
    log.record(ev).await;
    log.close().unwrap();

    let rec = &records(&dir.path().join(CURRENT_FILE))[0];
    assert_eq!(rec.unique_identifiers.len(), MAX_UIDS + 1);
    assert_eq!(rec.unique_identifiers[MAX_UIDS], "…[84 more]");
    for uid in &rec.unique_identifiers[..MAX_UIDS] {
        assert!(uid.len() <= MAX_FIELD_BYTES + "…[truncated]".len());
        assert!(uid.ends_with("…[truncated]"));
    }
    assert!(rec.result_reason.as_ref().unwrap().len() < 600);
    assert!(check_dir(dir.path()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_recorders_make_one_valid_chain() {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), 256 * 1024).unwrap());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            for i in 0..PER_TASK {
                let before = Instant::now();
                log.record(event(t * PER_TASK + i)).await;
                slowest = slowest.max(before.elapsed());
            }
            slowest
        }));
    }
    let mut slowest = Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.unwrap());
    }
    let enqueued = started.elapsed();
    let log = Arc::try_unwrap(log).ok().unwrap();
    let totals = log.close().unwrap();
    let total = started.elapsed();
    println!(
        "{} records: enqueued in {enqueued:?}, on disk (fsynced) in {total:?} \
         ({:.0} records/s); slowest record() call {slowest:?}; dropped {}",
        TASKS * PER_TASK,
        (TASKS * PER_TASK) as f64 / total.as_secs_f64(),
        totals.dropped
    );

    // Whatever the machine's speed, every record is either in the chain or counted as dropped,
    // and the drops are reported in the chain.
    let report = check_dir(dir.path());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records_checked, totals.written);
    assert_eq!(
        totals.written - report.drop_markers + totals.dropped,
        TASKS * PER_TASK
    );
    assert_eq!(report.drops_reported, totals.dropped);
}

#[tokio::test]
async fn a_stalled_disk_drops_after_the_timeout_and_the_chain_reports_the_drops() {
    let dir = tempfile::tempdir().unwrap();
    // audit.log is a pipe nobody reads: the writer blocks once the pipe buffer is full, as it
    // would on a hung disk, and the queue fills up behind it.
    let fifo = dir.path().join(CURRENT_FILE);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let log = AuditLog::open(dir.path(), 1 << 30).unwrap();
    let mut sent = 0u64;
    let mut last_call = Duration::ZERO;
    while log.dropped() == 0 {
        assert!(sent < QUEUE_CAPACITY as u64 * 4, "the queue never filled");
        let before = Instant::now();
        log.record(event(sent)).await;
        last_call = before.elapsed();
        sent += 1;
    }
    assert!(sent > QUEUE_CAPACITY as u64);
    assert!(last_call >= ENQUEUE_TIMEOUT, "dropped after {last_call:?}");

    // Callers waiting at the same time wait in parallel, once each.
    let log = Arc::new(log);
    let before = Instant::now();
    let calls: Vec<_> = (0..9)
        .map(|i| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.record(event(1_000_000 + i)).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert!(
        before.elapsed() < ENQUEUE_TIMEOUT * 5,
        "{:?}",
        before.elapsed()
    );
    assert_eq!(log.dropped(), 10);

    // Unblock the "disk": the writer writes everything queued plus a drop marker.
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        File::open(&fifo).unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    });
    let log = Arc::try_unwrap(log).ok().unwrap();
    let closed = log.close();
    // fsync is not defined for a pipe; every record has been written to it by then.
    assert!(
        matches!(&closed, Err(AuditError::Io { source, .. }) if source.kind() == io::ErrorKind::InvalidInput),
        "{closed:?}"
    );
    let bytes = reader.join().unwrap();

    let copy = tempfile::tempdir().unwrap();
    fs::write(copy.path().join(CURRENT_FILE), &bytes).unwrap();
    let report = check_dir(copy.path());
    assert!(report.is_ok(), "{report}");
    // `sent` calls of which one was dropped, plus the marker.
    assert_eq!(report.records_checked, sent);
    assert_eq!((report.drop_markers, report.drops_reported), (1, 10));
    assert!(
        report.to_string().contains("10 record(s) were dropped"),
        "{report}"
    );
    let marker = records(&copy.path().join(CURRENT_FILE))
        .into_iter()
        .find(|r| r.operation == DROP_MARKER_OPERATION)
        .unwrap();
    assert!(marker.user.is_empty());
    assert!(
        marker
            .result_reason
            .as_deref()
            .unwrap()
            .starts_with("10 audit record(s) dropped"),
        "{marker:?}"
    );
}

#[test]
fn nothing_to_verify_is_not_ok() {
    let dir = tempfile::tempdir().unwrap();
    let report = check_dir(dir.path());
    assert_eq!(
        report.first_problem.as_ref().map(|p| &p.kind),
        Some(&ProblemKind::NoAuditFiles)
    );
    let report = verify(&[dir.path().join("missing.log")]);
    assert!(matches!(
        report.first_problem.as_ref().map(|p| &p.kind),
        Some(ProblemKind::Unreadable { .. })
    ));
}
