//! Migration between two real vaults in temporary folders: copies, tombstones, a second run,
//! a conflicting target, and a run interrupted between a tombstone's import and its destroy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use super::*;
use kmip_backends::vault::{MasterKeySource, Vault};
use kmip_backends::KeyAlgorithm;

fn vault(dir: &tempfile::TempDir) -> Vault {
    Vault::open(&dir.path().join("vault"), MasterKeySource::VaultDir).unwrap()
}

fn record(uid: &str, kind: ObjectKind, meta: &[u8]) -> ObjectRecord {
    ObjectRecord {
        uid: uid.into(),
        kind,
        meta: bytes::Bytes::copy_from_slice(meta),
        version: 0,
    }
}

fn aes(bits: u32) -> KeySpec {
    KeySpec {
        algorithm: KeyAlgorithm::Aes,
        bits,
        extractable: true,
        sensitive: false,
        label: None,
    }
}

/// A live AES key, a sensitive one, a secret data object and a destroyed key.
async fn fill(source: &Vault) {
    source
        .import(
            record("k1", ObjectKind::SymmetricKey, b"meta k1"),
            Zeroizing::new(vec![1; 32]),
            Some(aes(256)),
        )
        .await
        .unwrap();
    let sensitive = KeySpec {
        sensitive: true,
        extractable: false,
        ..aes(128)
    };
    source
        .generate(
            record("k2", ObjectKind::SymmetricKey, b"meta k2"),
            sensitive,
        )
        .await
        .unwrap();
    source
        .import(
            record("s1", ObjectKind::SecretData, b"meta s1"),
            Zeroizing::new(b"a password".to_vec()),
            None,
        )
        .await
        .unwrap();
    source
        .generate(record("d1", ObjectKind::SymmetricKey, b"meta d1"), aes(256))
        .await
        .unwrap();
    source
        .destroy(
            "d1",
            Some(bytes::Bytes::from_static(b"meta d1 destroyed")),
            0,
        )
        .await
        .unwrap();
}

async fn run(source: &Vault, target: &Vault) -> (Result<Summary, MigrateError>, String) {
    let mut progress = Vec::new();
    let result = migrate(source, target, &mut progress).await;
    (result, String::from_utf8(progress).unwrap())
}

#[tokio::test]
async fn copies_everything_verifies_it_and_a_second_run_finds_it_there() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (vault(&a), vault(&b));
    fill(&source).await;
    let (summary, _) = run(&source, &target).await;
    let summary = summary.unwrap();
    assert_eq!(
        (summary.total, summary.copied, summary.tombstones),
        (4, 3, 1),
        "{summary:?}"
    );
    assert!(summary.failed.is_empty() && summary.already_there == 0);
    for uid in ["k1", "k2", "s1", "d1"] {
        let (s, t) = (
            source.export(uid).await.unwrap(),
            target.export(uid).await.unwrap(),
        );
        assert_eq!(s.record.meta, t.record.meta);
        assert_eq!(s.record.kind, t.record.kind);
        assert_eq!(s.spec, t.spec);
        assert_eq!(s.material.as_deref(), t.material.as_deref());
    }
    assert!(target.export("d1").await.unwrap().material.is_none());
    assert!(matches!(
        target.read_material("d1").await,
        Err(BackendError::NotFound(_))
    ));
    let (again, _) = run(&source, &target).await;
    let again = again.unwrap();
    assert_eq!(
        (again.already_there, again.copied, again.tombstones),
        (4, 0, 0)
    );
    assert!(again.failed.is_empty());
}

#[tokio::test]
async fn a_different_object_under_a_uid_stops_the_run_and_stays() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (vault(&a), vault(&b));
    fill(&source).await;
    target
        .import(
            record("k1", ObjectKind::SymmetricKey, b"meta k1"),
            Zeroizing::new(vec![2; 32]),
            Some(aes(256)),
        )
        .await
        .unwrap();
    let (result, _) = run(&source, &target).await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("k1") && e.contains("key material") && e.contains("refusing"),
        "{e}"
    );
    let kept = target.export("k1").await.unwrap();
    assert_eq!(kept.material.as_deref().map(|m| m[0]), Some(2));
    // Nothing after the conflict was copied (uids are taken in order: d1 < k1 < k2 < s1).
    assert!(matches!(
        target.export("s1").await,
        Err(BackendError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_tombstone_left_half_copied_is_destroyed_by_the_next_run() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (vault(&a), vault(&b));
    fill(&source).await;
    // What a run stopped between the import and the destroy of d1 leaves.
    target
        .import(
            record("d1", ObjectKind::SymmetricKey, b"meta d1 destroyed"),
            placeholder(Some(&aes(256))).unwrap(),
            Some(aes(256)),
        )
        .await
        .unwrap();
    let (summary, _) = run(&source, &target).await;
    let summary = summary.unwrap();
    assert_eq!((summary.copied, summary.tombstones), (3, 1), "{summary:?}");
    assert!(summary.failed.is_empty());
    assert!(target.export("d1").await.unwrap().material.is_none());
}

#[tokio::test]
async fn progress_goes_out_every_hundred_objects() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (vault(&a), vault(&b));
    for n in 0..(2 * PROGRESS_EVERY + 1) {
        source
            .import(
                record(&format!("u{n:04}"), ObjectKind::SecretData, b"m"),
                Zeroizing::new(vec![7; 16]),
                None,
            )
            .await
            .unwrap();
    }
    let (summary, progress) = run(&source, &target).await;
    assert_eq!(summary.unwrap().copied, 2 * PROGRESS_EVERY + 1);
    let lines: Vec<&str> = progress.lines().collect();
    assert_eq!(lines.len(), 2, "{progress}");
    assert!(
        lines[1].contains("200 of 201 objects: 200 copied"),
        "{progress}"
    );
    assert!(!progress.contains("0707"));
}
