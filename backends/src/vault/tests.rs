use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use super::format::{FRAME_HEADER_LEN, HEADER_LEN, LOG_FILE};
use super::writer::COMPACT_MIN_LOG_BYTES;
use super::*;
use crate::{cipher, Backend, CipherMode, CipherRequest, MacAlgorithm, ObjectRecord};

fn spec(algorithm: KeyAlgorithm, bits: u32) -> KeySpec {
    KeySpec {
        algorithm,
        bits,
        extractable: true,
        sensitive: false,
        label: None,
    }
}

fn rec(uid: &str, meta: &[u8]) -> ObjectRecord {
    ObjectRecord {
        uid: uid.into(),
        kind: ObjectKind::SymmetricKey,
        meta: meta.to_vec().into(),
        version: 0,
    }
}

fn open(dir: &Path) -> Vault {
    open_with(dir, MasterKeySource::VaultDir).unwrap()
}

/// `Vault::open`, waiting out a lock held by a test's child (see [`waiting_out_spawns`]).
fn open_with(dir: &Path, source: MasterKeySource) -> Result<Vault, BackendError> {
    waiting_out_spawns(|| Vault::open(dir, source.clone()))
}

/// `open()`, waiting out a directory lock held only by a process that another test is
/// spawning right now: the child shares every open file (the lock included) from its fork until
/// its exec closes them. The gateway spawns nothing; tests here do
/// (`acknowledged_writes_survive_kill_9`). The bound only turns a lock that stays into a
/// failure instead of a hang.
pub(super) fn waiting_out_spawns(
    open: impl Fn() -> Result<Vault, BackendError>,
) -> Result<Vault, BackendError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(BackendError::Unavailable(m))
                if m.contains("in use") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

fn err_text(r: Result<Vault, BackendError>) -> String {
    match r {
        Ok(_) => panic!("open succeeded where it must fail"),
        Err(e) => e.to_string(),
    }
}

/// (offset, payload length) of every frame in a log image.
fn frames(log: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at + FRAME_HEADER_LEN <= log.len() {
        let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, len));
        at += FRAME_HEADER_LEN + len;
    }
    out
}

/// Recomputes a frame's checksums after a test edited its payload.
fn reseal_frame(log: &mut [u8], at: usize) {
    let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
    let payload_crc = crc32fast::hash(&log[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len]);
    log[at + 4..at + 8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&log[at..at + 8]);
    log[at + 8..at + 12].copy_from_slice(&header_crc.to_le_bytes());
}

async fn snapshot(v: &Vault) -> Vec<(String, Vec<u8>, Option<Vec<u8>>)> {
    let mut all: Vec<_> = Vec::new();
    for r in v.load_all().await.unwrap() {
        let material = v.read_material(&r.uid).await.ok().map(|m| m.to_vec());
        all.push((r.uid.to_string(), r.meta.to_vec(), material));
    }
    all.sort();
    all
}

#[tokio::test]
async fn operations_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    assert_eq!(v.name(), "vault");
    v.health().await.unwrap();

    for (uid, bits) in [("aes128", 128), ("aes192", 192), ("aes256", 256)] {
        v.generate(rec(uid, b"m"), spec(KeyAlgorithm::Aes, bits))
            .await
            .unwrap();
        assert_eq!(v.read_material(uid).await.unwrap().len(), bits as usize / 8);
        let mut r = CipherRequest {
            mode: CipherMode::Gcm { tag_len: 16 },
            data: Zeroizing::new(b"attack at dawn".to_vec()),
            iv: None,
            aad: Some(b"hdr".to_vec()),
            tag: None,
        };
        let out = v.encrypt(uid, r).await.unwrap();
        assert_ne!(&out.data[..], b"attack at dawn");
        r = CipherRequest {
            mode: CipherMode::Gcm { tag_len: 16 },
            data: out.data,
            iv: out.generated_iv,
            aad: Some(b"hdr".to_vec()),
            tag: out.tag,
        };
        assert_eq!(
            &v.decrypt(uid, r).await.unwrap().data[..],
            b"attack at dawn"
        );
    }
    v.generate(rec("hmac", b""), spec(KeyAlgorithm::HmacSha256, 256))
        .await
        .unwrap();
    let key = v.read_material("hmac").await.unwrap();
    assert_eq!(
        v.mac("hmac", MacAlgorithm::HmacSha256, b"data")
            .await
            .unwrap(),
        cipher::hmac(MacAlgorithm::HmacSha256, &key, b"data")
    );
    // Any secret bytes are an HMAC key (the gateway decides when an AES key may MAC), but an
    // HMAC key never encrypts.
    let aes_key = v.read_material("aes128").await.unwrap();
    assert_eq!(
        v.mac("aes128", MacAlgorithm::HmacSha384, b"x")
            .await
            .unwrap(),
        cipher::hmac(MacAlgorithm::HmacSha384, &aes_key, b"x")
    );

    v.import(
        ObjectRecord {
            uid: "secret".into(),
            kind: ObjectKind::SecretData,
            meta: b"s-meta".to_vec().into(),
            version: 0,
        },
        Zeroizing::new(b"password".to_vec()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(&v.read_material("secret").await.unwrap()[..], b"password");
    assert!(matches!(
        v.encrypt(
            "secret",
            CipherRequest {
                mode: CipherMode::Ecb { pad: true },
                data: Zeroizing::new(vec![1]),
                iv: None,
                aad: None,
                tag: None,
            }
        )
        .await,
        Err(BackendError::InvalidInput(_))
    ));

    v.update_meta("secret", b"new-meta".to_vec().into(), 0)
        .await
        .unwrap();
    let all = v.load_all().await.unwrap();
    assert_eq!(all.len(), 5);
    let s = all.iter().find(|r| &*r.uid == "secret").unwrap();
    assert_eq!(s.meta, &b"new-meta"[..]);
    assert_eq!(s.kind, ObjectKind::SecretData);

    assert!(matches!(
        v.generate(rec("aes128", b""), spec(KeyAlgorithm::Aes, 128))
            .await,
        Err(BackendError::AlreadyExists(_))
    ));
    v.destroy("aes128", None, 0).await.unwrap();
    assert!(matches!(
        v.read_material("aes128").await,
        Err(BackendError::NotFound(_))
    ));
    assert!(matches!(
        v.destroy("aes128", None, 0).await,
        Err(BackendError::NotFound(_))
    ));
    assert!(matches!(
        v.update_meta("nope", bytes::Bytes::new(), 0).await,
        Err(BackendError::NotFound(_))
    ));
    for bad in [
        spec(KeyAlgorithm::Aes, 64),
        spec(KeyAlgorithm::HmacSha256, 100),
    ] {
        assert!(matches!(
            v.generate(rec("bad", b""), bad).await,
            Err(BackendError::InvalidInput(_))
        ));
    }
    assert!(matches!(
        v.import(
            rec("short", b""),
            Zeroizing::new(vec![0; 10]),
            Some(spec(KeyAlgorithm::Aes, 128))
        )
        .await,
        Err(BackendError::InvalidInput(_))
    ));
    assert!(matches!(
        v.generate(rec("", b""), spec(KeyAlgorithm::Aes, 128)).await,
        Err(BackendError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn destroy_with_a_tombstone_keeps_only_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    v.generate(rec("k", b"live"), spec(KeyAlgorithm::HmacSha256, 256))
        .await
        .unwrap();
    v.destroy("k", Some(b"destroyed".to_vec().into()), 0)
        .await
        .unwrap();
    let all = v.load_all().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].meta, &b"destroyed"[..]);
    assert!(matches!(
        v.read_material("k").await,
        Err(BackendError::NotFound(_))
    ));
    assert!(matches!(
        v.mac("k", MacAlgorithm::HmacSha256, b"x").await,
        Err(BackendError::NotFound(_))
    ));
    v.update_meta("k", b"destroyed, then archived".to_vec().into(), 0)
        .await
        .unwrap();
    drop(v);
    let v = open(dir.path());
    assert_eq!(
        v.load_all().await.unwrap()[0].meta,
        &b"destroyed, then archived"[..]
    );
    assert!(v.read_material("k").await.is_err());
    v.destroy("k", None, 0).await.unwrap();
    drop(v);
    assert!(open(dir.path()).load_all().await.unwrap().is_empty());
}

#[tokio::test]
async fn unextractable_and_sensitive_keys_are_not_read_but_still_used() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    let mut s = spec(KeyAlgorithm::Aes, 256);
    s.extractable = false;
    v.generate(rec("noext", b""), s.clone()).await.unwrap();
    s.extractable = true;
    s.sensitive = true;
    v.generate(rec("sens", b""), s).await.unwrap();
    for uid in ["noext", "sens"] {
        assert!(matches!(
            v.read_material(uid).await,
            Err(BackendError::NotExtractable(_))
        ));
        let out = v
            .encrypt(
                uid,
                CipherRequest {
                    mode: CipherMode::Cbc { pad: true },
                    data: Zeroizing::new(b"x".to_vec()),
                    iv: None,
                    aad: None,
                    tag: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(out.data.len(), 16);
    }
}

#[tokio::test]
async fn known_vectors_through_the_vault() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    // RFC 4231 test case 1.
    v.import(
        rec("rfc4231", b""),
        Zeroizing::new(vec![0x0b; 20]),
        Some(spec(KeyAlgorithm::HmacSha256, 160)),
    )
    .await
    .unwrap();
    assert_eq!(
        hex::encode(
            v.mac("rfc4231", MacAlgorithm::HmacSha256, b"Hi There")
                .await
                .unwrap()
        ),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    // SP 800-38A F.1.1, first block.
    v.import(
        rec("sp800-38a", b""),
        Zeroizing::new(hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap()),
        Some(spec(KeyAlgorithm::Aes, 128)),
    )
    .await
    .unwrap();
    let out = v
        .encrypt(
            "sp800-38a",
            CipherRequest {
                mode: CipherMode::Ecb { pad: false },
                data: Zeroizing::new(hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap()),
                iv: None,
                aad: None,
                tag: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        hex::encode(&out.data[..]),
        "3ad77bb40d7a3660a89ecaf32466ef97"
    );
}

#[tokio::test]
async fn reopen_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let v = open(dir.path());
        let mut s = spec(KeyAlgorithm::Aes, 256);
        s.label = Some("payroll".into());
        v.generate(rec("a", b"meta-a"), s).await.unwrap();
        v.generate(rec("b", b"meta-b"), spec(KeyAlgorithm::HmacSha256, 256))
            .await
            .unwrap();
        let mut hidden = spec(KeyAlgorithm::Aes, 128);
        hidden.sensitive = true;
        v.generate(rec("c", b"meta-c"), hidden).await.unwrap();
        v.import(
            ObjectRecord {
                uid: "cert".into(),
                kind: ObjectKind::Certificate,
                meta: b"meta-cert".to_vec().into(),
                version: 0,
            },
            Zeroizing::new(vec![0x30; 700]),
            None,
        )
        .await
        .unwrap();
        v.update_meta("a", b"meta-a2".to_vec().into(), 0)
            .await
            .unwrap();
        v.destroy("b", None, 0).await.unwrap();
        v.destroy("cert", Some(b"cert-destroyed".to_vec().into()), 0)
            .await
            .unwrap();
        snapshot(&v).await
    };
    let v = open(dir.path());
    assert_eq!(snapshot(&v).await, before);
    {
        let objects = v.shared.read_objects();
        let a = objects.get("a").unwrap();
        assert_eq!(a.spec.as_ref().unwrap().label.as_deref(), Some("payroll"));
        let cert = objects.get("cert").unwrap();
        assert_eq!(cert.kind, ObjectKind::Certificate);
        assert_eq!(cert.meta, &b"cert-destroyed"[..]);
        assert!(cert.material.is_none());
        assert!(objects.get("c").unwrap().spec.as_ref().unwrap().sensitive);
    }
    assert!(matches!(
        v.read_material("c").await,
        Err(BackendError::NotExtractable(_))
    ));
    // The reopened vault keeps appending.
    v.destroy("a", None, 0).await.unwrap();
    drop(v);
    let v = open(dir.path());
    assert_eq!(v.stats().objects, 2);
}

#[tokio::test]
async fn key_file_is_private_and_its_permissions_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let key = dir.path().join(DEFAULT_KEY_FILE);
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), MASTER_KEY_LEN as u64);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("chmod 600"), "{msg}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    drop(open(dir.path()));

    std::fs::remove_file(&key).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("missing"), "{msg}");
    assert!(!key.exists(), "a new key must not replace the lost one");
}

#[tokio::test]
async fn key_from_a_path_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("vault.key");
    {
        let v = open_with(dir.path(), MasterKeySource::File(key_path.clone())).unwrap();
        v.import(rec("x", b"m"), Zeroizing::new(vec![7; 16]), None)
            .await
            .unwrap();
    }
    let hex_key = hex::encode(std::fs::read(&key_path).unwrap());
    let var = "KMIP_VAULT_TEST_KEY_FROM_ENV";
    std::env::set_var(var, &hex_key);
    // The head stays where it is, beside the key file.
    let head = keys.path().join(HEAD_FILE);
    let v = Vault::open_with_head(dir.path(), MasterKeySource::EnvHex(var.into()), &head).unwrap();
    assert_eq!(&v.read_material("x").await.unwrap()[..], &[7; 16]);
    drop(v);
    let bad = "KMIP_VAULT_TEST_KEY_MALFORMED";
    std::env::set_var(bad, &hex_key[..60]);
    let msg = err_text(open_with(dir.path(), MasterKeySource::EnvHex(bad.into())));
    assert!(msg.contains("64 hex digits"), "{msg}");
    assert!(
        !msg.contains(&hex_key[..60]),
        "the key must not appear in errors"
    );
}

#[tokio::test]
async fn wrong_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let v = open(dir.path());
        v.generate(rec("a", b""), spec(KeyAlgorithm::Aes, 128))
            .await
            .unwrap();
    }
    let before = std::fs::read(log_path(dir.path())).unwrap();
    let var = "KMIP_VAULT_TEST_WRONG_KEY";
    std::env::set_var(var, "11".repeat(MASTER_KEY_LEN));
    let msg = err_text(open_with(dir.path(), MasterKeySource::EnvHex(var.into())));
    assert!(msg.contains("master key does not match"), "{msg}");
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), before);
}

#[tokio::test]
async fn foreign_or_damaged_headers_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let path = log_path(dir.path());
    let good = std::fs::read(&path).unwrap();

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"SQLite format 3\0".repeat(8), "bad magic"),
        (good[..40].to_vec(), "too short"),
        (
            {
                let mut b = good.clone();
                b[20] ^= 1;
                b
            },
            "checksum",
        ),
        (
            {
                let mut b = good.clone();
                b[8..12].copy_from_slice(&3u32.to_le_bytes());
                let crc = crc32fast::hash(&b[..HEADER_LEN - 4]);
                b[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
                b
            },
            "version 3",
        ),
    ];
    for (image, expect) in cases {
        std::fs::write(&path, &image).unwrap();
        let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
        assert!(msg.contains(expect), "{expect}: {msg}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            image,
            "refused file was modified"
        );
    }
}

fn head_path(dir: &Path) -> PathBuf {
    dir.join(HEAD_FILE)
}

/// The vault's files as a crash left them: the log and key slots now, the head as it was.
struct Crashed {
    log: Vec<u8>,
    keys: Vec<u8>,
    head: Vec<u8>,
}

impl Crashed {
    /// Puts the files back, the log as `log`.
    fn restore(&self, dir: &Path, log: &[u8]) {
        std::fs::write(log_path(dir), log).unwrap();
        std::fs::write(dir.join(slots::KEYS_FILE), &self.keys).unwrap();
        std::fs::write(head_path(dir), &self.head).unwrap();
    }
}

/// A vault with three objects written by three separate commits, so three frames, and the head
/// as it was before the third: what a crash between the third frame's fsync and its head update
/// leaves, so the third frame is past the head (written, never acknowledged).
async fn three_frames(dir: &Path) -> Crashed {
    let v = open(dir);
    let mut head = Vec::new();
    for uid in ["obj-a", "obj-b", "obj-c"] {
        head = std::fs::read(head_path(dir)).unwrap();
        v.import(rec(uid, uid.as_bytes()), Zeroizing::new(vec![1; 32]), None)
            .await
            .unwrap();
    }
    drop(v);
    let log = std::fs::read(log_path(dir)).unwrap();
    assert_eq!(frames(&log).len(), 3);
    let keys = std::fs::read(dir.join(slots::KEYS_FILE)).unwrap();
    Crashed { log, keys, head }
}

#[tokio::test]
async fn damage_before_the_tail_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_frames(dir.path()).await.log;
    let (first, len) = frames(&log)[0];
    let mut bad = log.clone();
    bad[first + FRAME_HEADER_LEN + len / 2] ^= 0x40;
    std::fs::write(log_path(dir.path()), &bad).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("checksum and data follows"), "{msg}");
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), bad);

    // A damaged frame header in the middle, too.
    let mut bad = log.clone();
    bad[first + 1] ^= 0x01;
    std::fs::write(log_path(dir.path()), &bad).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("header"), "{msg}");
}

#[tokio::test]
async fn tampered_records_with_valid_checksums_are_refused_even_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_frames(dir.path()).await.log;
    let f = frames(&log);
    // Records start with rec_len(4) seq(8) op(1) uid_len(2): the uid follows at 15.
    let uid_at = |frame: (usize, usize)| frame.0 + FRAME_HEADER_LEN + 15;
    // Swap the uids of obj-a and obj-b: each ciphertext now claims the other's uid.
    let mut swapped = log.clone();
    swapped[uid_at(f[0])..uid_at(f[0]) + 5].copy_from_slice(b"obj-b");
    swapped[uid_at(f[1])..uid_at(f[1]) + 5].copy_from_slice(b"obj-a");
    reseal_frame(&mut swapped, f[0].0);
    reseal_frame(&mut swapped, f[1].0);
    std::fs::write(log_path(dir.path()), &swapped).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("fails its chain MAC"), "{msg}");

    // Flip a ciphertext bit in the last frame and fix its CRC: not a torn write, so refused.
    let mut tampered = log.clone();
    let last = f[2];
    tampered[last.0 + FRAME_HEADER_LEN + last.1 - 3] ^= 1;
    reseal_frame(&mut tampered, last.0);
    std::fs::write(log_path(dir.path()), &tampered).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("fails its chain MAC"), "{msg}");
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), tampered);

    // Drop the middle frame: the chain breaks.
    let mut gap = log[..f[1].0].to_vec();
    gap.extend_from_slice(&log[f[2].0..]);
    std::fs::write(log_path(dir.path()), &gap).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("fails its chain MAC"), "{msg}");
}

#[tokio::test]
async fn torn_tails_past_the_head_are_cut_and_the_vault_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = three_frames(dir.path()).await;
    let log = crashed.log.clone();
    let (last, last_len) = frames(&log)[2];
    let end = last + FRAME_HEADER_LEN + last_len;
    let torn_images: Vec<(&str, Vec<u8>, bool)> = vec![
        // (what, image, whether obj-c survives)
        ("frame cut short", log[..end - 7].to_vec(), false),
        ("header cut short", log[..last + 5].to_vec(), false),
        (
            "header zero-filled",
            {
                let mut b = log.clone();
                b[last + 6..].fill(0);
                b
            },
            false,
        ),
        (
            "zeros after a clean end",
            {
                let mut b = log.clone();
                b.resize(end + 8192, 0);
                b
            },
            true,
        ),
        (
            "partial next header",
            {
                let mut b = log.clone();
                b.extend_from_slice(&[9, 0, 0]);
                b
            },
            true,
        ),
    ];
    // Torn at the head (the third frame was acknowledged): refused, not cut.
    let cut = &log[..end - 7];
    std::fs::write(log_path(dir.path()), cut).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(
        msg.contains("torn frame after 2 frames") && msg.contains("head records 3 frames"),
        "{msg}"
    );
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), cut);
    for (what, image, c_survives) in torn_images {
        crashed.restore(dir.path(), &image);
        let v = open_with(dir.path(), MasterKeySource::VaultDir)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let expected_len = if c_survives { end } else { last };
        assert_eq!(
            std::fs::metadata(log_path(dir.path())).unwrap().len(),
            expected_len as u64,
            "{what}"
        );
        assert_eq!(
            v.stats().torn_tail_bytes,
            (image.len() - expected_len) as u64,
            "{what}"
        );
        assert_eq!(v.read_material("obj-a").await.unwrap().len(), 32, "{what}");
        assert_eq!(v.read_material("obj-c").await.is_ok(), c_survives, "{what}");
        // Appends continue the sequence and survive a reopen.
        v.import(rec("after", b""), Zeroizing::new(vec![2; 16]), None)
            .await
            .unwrap();
        drop(v);
        let v = open(dir.path());
        assert_eq!(v.stats().objects, if c_survives { 4 } else { 3 }, "{what}");
    }
}

/// A last frame that is all on disk but fails its checksum is a torn write only if a sector of
/// it reads as zeros (never written before the crash); otherwise it is damage (a bit flip), and
/// cutting it would silently drop acknowledged writes: the vault refuses to open and says how to
/// cut it deliberately.
#[tokio::test]
async fn a_complete_last_frame_is_cut_only_with_an_unwritten_sector() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    v.import(rec("small", b"s"), Zeroizing::new(vec![1; 32]), None)
        .await
        .unwrap();
    // The frame of "big" is past this head: as if a crash came before its head update.
    let head = std::fs::read(head_path(dir.path())).unwrap();
    // Material large enough for the last frame to span several 512-byte sectors.
    v.import(rec("big", b"b"), Zeroizing::new(vec![7; 3000]), None)
        .await
        .unwrap();
    drop(v);
    let log = std::fs::read(log_path(dir.path())).unwrap();
    let crashed = Crashed {
        log: log.clone(),
        keys: std::fs::read(dir.path().join(slots::KEYS_FILE)).unwrap(),
        head,
    };
    let (last, len) = frames(&log)[1];
    let payload = last + FRAME_HEADER_LEN;
    let end = payload + len;
    let first_sector = payload.next_multiple_of(512);
    let last_sector = (end - 1) / 512 * 512;
    assert!(first_sector + 512 <= last_sector && end - last_sector >= 16);

    let torn_images: Vec<(&str, Vec<u8>)> = vec![
        ("a whole sector inside the frame unwritten", {
            let mut b = log.clone();
            b[first_sector..first_sector + 512].fill(0);
            b
        }),
        ("the frame's last sector unwritten", {
            let mut b = log.clone();
            b[last_sector..].fill(0);
            b.resize(end + 4096, 0);
            b
        }),
    ];
    for (what, image) in torn_images {
        crashed.restore(dir.path(), &image);
        let v = open_with(dir.path(), MasterKeySource::VaultDir)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            v.stats().torn_tail_bytes,
            (image.len() - last) as u64,
            "{what}"
        );
        assert!(v.read_material("small").await.is_ok(), "{what}");
        assert!(v.read_material("big").await.is_err(), "{what}");
    }

    let flipped = {
        let mut b = log.clone();
        b[payload + len / 2] ^= 0x04;
        b
    };
    let flipped_then_zeros = {
        let mut b = flipped.clone();
        b.resize(end + 4096, 0);
        b
    };
    for (what, image) in [
        ("bit flip", flipped),
        ("bit flip, zeros after", flipped_then_zeros),
    ] {
        std::fs::write(log_path(dir.path()), &image).unwrap();
        let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
        assert!(
            msg.contains("all of it is on disk") && msg.contains(&format!("truncate -s {last}")),
            "{what}: {msg}"
        );
        assert_eq!(
            std::fs::read(log_path(dir.path())).unwrap(),
            image,
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_group_committed_and_all_persist() {
    const WRITERS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let v = Arc::new(open(dir.path()));
    let mut tasks = JoinSet::new();
    for i in 0..WRITERS {
        let v = Arc::clone(&v);
        tasks.spawn(async move {
            v.generate(
                rec(&format!("k{i}"), format!("meta{i}").as_bytes()),
                spec(KeyAlgorithm::Aes, 256),
            )
            .await
        });
    }
    // Racing creates of one uid: exactly one wins.
    for _ in 0..20 {
        let v = Arc::clone(&v);
        tasks.spawn(async move {
            v.generate(rec("contended", b""), spec(KeyAlgorithm::Aes, 128))
                .await
        });
    }
    let mut won = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(()) => won += 1,
            Err(BackendError::AlreadyExists(uid)) => assert_eq!(uid, "contended"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, WRITERS + 1);
    let stats = v.stats();
    assert_eq!(stats.records, WRITERS as u64 + 1);
    assert!(
        stats.commits < stats.records / 2,
        "group commit should batch: {stats:?}"
    );
    let before = snapshot(&v).await;
    drop(v);
    let v = open(dir.path());
    assert_eq!(v.stats().objects, WRITERS + 1);
    assert_eq!(snapshot(&v).await, before);
}

#[tokio::test]
async fn compaction_preserves_content() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    for i in 0..50 {
        v.generate(rec(&format!("k{i}"), b"v0"), spec(KeyAlgorithm::Aes, 128))
            .await
            .unwrap();
    }
    for round in 1..5 {
        for i in 0..50 {
            v.update_meta(&format!("k{i}"), format!("v{round}").into_bytes().into(), 0)
                .await
                .unwrap();
        }
    }
    for i in 0..10 {
        let tombstone = (i % 2 == 0).then(|| bytes::Bytes::from_static(b"gone"));
        v.destroy(&format!("k{i}"), tombstone, 0).await.unwrap();
    }
    let before = snapshot(&v).await;
    let grown = v.stats();
    v.compact().await.unwrap();
    let compacted = v.stats();
    assert_eq!(compacted.compactions, 1);
    assert!(
        compacted.log_bytes * 4 < grown.log_bytes,
        "{grown:?} -> {compacted:?}"
    );
    assert_eq!(
        compacted.log_bytes,
        std::fs::metadata(log_path(dir.path())).unwrap().len()
    );
    assert_eq!(snapshot(&v).await, before);
    // Writes after a compaction land in the new log.
    v.update_meta("k10", b"after".to_vec().into(), 0)
        .await
        .unwrap();
    let before = snapshot(&v).await;
    drop(v);
    let v = open(dir.path());
    assert_eq!(snapshot(&v).await, before);
    assert!(!dir.path().join(format::TMP_LOG_FILE).exists());
}

#[tokio::test]
async fn compaction_starts_by_itself_when_the_log_is_mostly_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    v.generate(rec("k", b""), spec(KeyAlgorithm::Aes, 256))
        .await
        .unwrap();
    let meta = vec![0xab; 512 * 1024];
    let rounds = COMPACT_MIN_LOG_BYTES as usize / meta.len() + 4;
    for i in 0..rounds {
        let mut m = meta.clone();
        m[0] = i as u8;
        v.update_meta("k", m.into(), 0).await.unwrap();
    }
    // The compaction runs on a thread of its own: wait for its switch (seconds at most here;
    // the bound only turns a compaction that never happens into a failure, not a hang).
    let waited = std::time::Instant::now();
    while v.stats().compactions == 0 && waited.elapsed() < std::time::Duration::from_secs(60) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let stats = v.stats();
    assert!(stats.compactions >= 1, "{stats:?}");
    assert!(stats.log_bytes < COMPACT_MIN_LOG_BYTES, "{stats:?}");
    let before = snapshot(&v).await;
    drop(v);
    assert_eq!(snapshot(&open(dir.path())).await, before);
}

/// Writes committed while a compaction writes its new log (between its copy of the objects
/// and its switch) are served at once and are in the new log: updates, destructions with and
/// without a tombstone of copied objects, creations, and a creation removed again, which the
/// copy never held.
#[tokio::test]
async fn writes_during_a_compaction_reach_the_new_log() {
    let dir = tempfile::tempdir().unwrap();
    let v = Arc::new(open(dir.path()));
    for i in 0..20 {
        v.generate(rec(&format!("k{i}"), b"v0"), spec(KeyAlgorithm::Aes, 128))
            .await
            .unwrap();
    }
    let (copied_tx, copied) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    *v.shared.compaction_hold.lock().unwrap() = Some(super::writer::CompactionHold {
        copied: copied_tx,
        go: go_rx,
    });
    let compaction = tokio::spawn({
        let v = Arc::clone(&v);
        async move { v.compact().await }
    });
    tokio::task::spawn_blocking(move || copied.recv())
        .await
        .unwrap()
        .unwrap();
    v.update_meta("k1", b"after the copy".to_vec().into(), 0)
        .await
        .unwrap();
    v.destroy("k2", Some(bytes::Bytes::from_static(b"gone")), 0)
        .await
        .unwrap();
    v.destroy("k3", None, 0).await.unwrap();
    v.generate(rec("new", b"born after"), spec(KeyAlgorithm::Aes, 256))
        .await
        .unwrap();
    v.generate(rec("brief", b"here and gone"), spec(KeyAlgorithm::Aes, 256))
        .await
        .unwrap();
    v.destroy("brief", None, 0).await.unwrap();
    assert_eq!(v.stats().compactions, 0, "the switch waits for the new log");
    let during = snapshot(&v).await;
    go.send(()).unwrap();
    compaction.await.unwrap().unwrap();
    let stats = v.stats();
    assert_eq!(stats.compactions, 1, "{stats:?}");
    assert_eq!(snapshot(&v).await, during);
    let v = Arc::into_inner(v).unwrap();
    drop(v);
    let reopened = open(dir.path());
    assert_eq!(snapshot(&reopened).await, during);
    assert!(!dir.path().join(format::TMP_LOG_FILE).exists());
}

#[tokio::test]
async fn a_vault_opens_only_once_and_leftovers_are_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    let msg = err_text(Vault::open(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("in use"), "{msg}");
    drop(v);
    std::fs::write(dir.path().join(format::TMP_LOG_FILE), b"half a compaction").unwrap();
    drop(open(dir.path()));
    assert!(!dir.path().join(format::TMP_LOG_FILE).exists());
}

/// Opening 100,000 objects: run with
/// `cargo test -p kmip-backends --release -- --ignored --nocapture open_100k`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow in debug builds; measures open time of a large vault"]
async fn open_100k_objects() {
    const OBJECTS: usize = 100_000;
    const IN_FLIGHT: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let v = Arc::new(open(dir.path()));
    let started = Instant::now();
    let mut tasks: JoinSet<Result<(), BackendError>> = JoinSet::new();
    for i in 0..OBJECTS {
        if tasks.len() >= IN_FLIGHT {
            tasks.join_next().await.unwrap().unwrap().unwrap();
        }
        let v = Arc::clone(&v);
        tasks.spawn(async move {
            v.generate(
                rec(&format!("{i:08}-0000-4000-8000-000000000000"), &[0x5a; 120]),
                spec(KeyAlgorithm::Aes, 256),
            )
            .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let stats = v.stats();
    println!(
        "wrote {OBJECTS} objects in {:?}: {stats:?}",
        started.elapsed()
    );
    drop(v);
    let started = Instant::now();
    let v = open(dir.path());
    let elapsed = started.elapsed();
    println!("opened {} objects in {elapsed:?}", v.stats().objects);
    assert_eq!(v.stats().objects, OBJECTS);
    assert!(elapsed.as_secs() < 10, "open took {elapsed:?}");
}

/// Set in the child process of [`acknowledged_writes_survive_kill_9`] to the vault directory.
const CRASH_CHILD_ENV: &str = "KMIP_VAULT_CRASH_CHILD_DIR";
/// Upper bound on the child's writes, so it stops by itself if never killed.
const CRASH_CHILD_MAX_WRITES: usize = 20_000;
/// Acknowledgements the parent waits for before killing the child.
const CRASH_ACKS_BEFORE_KILL: usize = 300;

/// The child: writes concurrently and prints each uid once its write is acknowledged.
fn crash_child(dir: &Path) {
    use std::io::Write;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let v = Arc::new(open(dir));
        let mut tasks = JoinSet::new();
        for t in 0..16 {
            let v = Arc::clone(&v);
            tasks.spawn(async move {
                for i in (t..CRASH_CHILD_MAX_WRITES).step_by(16) {
                    let uid = format!("k{i}");
                    v.generate(rec(&uid, uid.as_bytes()), spec(KeyAlgorithm::Aes, 256))
                        .await
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {uid}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    use std::io::BufRead;
    if let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "vault::tests::acknowledged_writes_survive_kill_9",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        if let Some(uid) = line.unwrap().strip_prefix("ack ") {
            acked.push(uid.to_owned());
            if acked.len() == CRASH_ACKS_BEFORE_KILL {
                // Child::kill sends SIGKILL: no destructors, no flushing.
                child.kill().unwrap();
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), CRASH_ACKS_BEFORE_KILL, "child ended early");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let v = open(dir.path());
        for uid in &acked {
            assert_eq!(v.read_material(uid).await.unwrap().len(), 32, "{uid} lost");
        }
        // Writes in flight at the kill may or may not have landed, but nothing else exists.
        assert!(v.stats().objects >= acked.len());
        assert!(v.stats().objects < CRASH_CHILD_MAX_WRITES);
    });
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn master_key_of(dir: &Path) -> keyfile::MasterKey {
    let bytes = std::fs::read(dir.join(DEFAULT_KEY_FILE)).unwrap();
    Zeroizing::new(bytes.try_into().unwrap())
}

/// Asserts that no file in `dir` yields `secret`, neither raw nor decrypted with the master key
/// (every record, every key slot), and that the scan does find `kept`.
fn assert_unrecoverable(dir: &Path, master: &keyfile::MasterKey, secret: &[u8], kept: &[u8]) {
    let found = format::recoverable_plaintexts(dir, master);
    assert!(
        found.iter().any(|p| contains(p, kept)),
        "the scan must find live material"
    );
    assert!(
        !found.iter().any(|p| contains(p, secret)),
        "destroyed material decrypts from a file in {}",
        dir.display()
    );
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        assert!(
            !contains(&std::fs::read(&path).unwrap(), secret),
            "destroyed material in clear in {}",
            path.display()
        );
    }
}

#[tokio::test]
async fn destroyed_material_is_recoverable_from_no_file() {
    const DOOMED: &[u8; 32] = b"doomed-key-material-0123456789ab";
    const DELETED: &[u8; 32] = b"deleted-key-material-0123456789a";
    const KEPT: &[u8; 32] = b"kept-key-material-0123456789abcd";
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    for (uid, m) in [("doomed", DOOMED), ("deleted", DELETED), ("kept", KEPT)] {
        v.import(rec(uid, b"m"), Zeroizing::new(m.to_vec()), None)
            .await
            .unwrap();
    }
    v.update_meta("doomed", b"m2".to_vec().into(), 0)
        .await
        .unwrap();
    v.destroy("doomed", Some(b"tombstone".to_vec().into()), 0)
        .await
        .unwrap();
    v.destroy("deleted", None, 0).await.unwrap();
    let master = master_key_of(dir.path());
    assert_unrecoverable(dir.path(), &master, DOOMED, KEPT);
    assert_unrecoverable(dir.path(), &master, DELETED, KEPT);
    drop(v);
    let v = open(dir.path());
    assert_eq!(&v.read_material("kept").await.unwrap()[..], KEPT);
    assert!(v.read_material("doomed").await.is_err());
    drop(v);
    assert_unrecoverable(dir.path(), &master, DOOMED, KEPT);
}

/// Four commits: a and b created, b's metadata updated, a destroyed.
async fn four_frames(dir: &Path) -> Vec<u8> {
    let v = open(dir);
    v.import(rec("a", b"a"), Zeroizing::new(vec![1; 32]), None)
        .await
        .unwrap();
    v.import(rec("b", b"b"), Zeroizing::new(vec![2; 32]), None)
        .await
        .unwrap();
    v.update_meta("b", b"b2".to_vec().into(), 0).await.unwrap();
    v.destroy("a", Some(b"destroyed".to_vec().into()), 0)
        .await
        .unwrap();
    drop(v);
    let log = std::fs::read(log_path(dir)).unwrap();
    assert_eq!(frames(&log).len(), 4);
    log
}

#[tokio::test]
async fn cutting_the_last_frames_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = four_frames(dir.path()).await;
    let cut = &log[..frames(&log)[2].0];
    std::fs::write(log_path(dir.path()), cut).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("accept-restore"), "{msg}");
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), cut);
}

#[tokio::test]
async fn an_older_copy_of_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    v.import(rec("a", b"a"), Zeroizing::new(vec![1; 32]), None)
        .await
        .unwrap();
    let old = std::fs::read(log_path(dir.path())).unwrap();
    v.destroy("a", Some(b"destroyed".to_vec().into()), 0)
        .await
        .unwrap();
    drop(v);
    std::fs::write(log_path(dir.path()), &old).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("accept-restore"), "{msg}");
}

#[tokio::test]
async fn accept_restore_takes_a_cut_or_older_log_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let log = four_frames(dir.path()).await;
    let head = head_path(dir.path());
    // Cut the last two frames (the destroy of a among them): refused, then accepted.
    std::fs::write(log_path(dir.path()), &log[..frames(&log)[2].0]).unwrap();
    assert!(err_text(open_with(dir.path(), MasterKeySource::VaultDir)).contains("accept-restore"));
    let msg = Vault::accept_restore(dir.path(), MasterKeySource::VaultDir, &head).unwrap();
    assert!(msg.contains("where it recorded 4 frames"), "{msg}");
    assert!(msg.contains("1 of them without key material"), "{msg}");
    let v = open(dir.path());
    // a is back as the log had it, but its key slot was zeroed by the destroy: a restored log
    // does not bring back a shredded key.
    let a = v
        .load_all()
        .await
        .unwrap()
        .into_iter()
        .find(|r| &*r.uid == "a");
    assert_eq!(a.unwrap().meta, &b"a"[..]);
    assert!(v.read_material("a").await.is_err());
    assert_eq!(v.read_material("b").await.unwrap().len(), 32);
}

#[tokio::test]
async fn a_log_from_before_a_compaction_is_refused_and_accepted_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    v.import(rec("a", b"a"), Zeroizing::new(vec![1; 32]), None)
        .await
        .unwrap();
    let old = std::fs::read(log_path(dir.path())).unwrap();
    v.compact().await.unwrap();
    v.update_meta("a", b"a2".to_vec().into(), 0).await.unwrap();
    drop(v);
    std::fs::write(log_path(dir.path()), &old).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(
        msg.contains("another salt") && msg.contains("accept-restore"),
        "{msg}"
    );
    Vault::accept_restore(
        dir.path(),
        MasterKeySource::VaultDir,
        &head_path(dir.path()),
    )
    .unwrap();
    let v = open(dir.path());
    assert_eq!(v.load_all().await.unwrap()[0].meta, &b"a"[..]);
}

#[tokio::test]
async fn a_crash_between_the_log_fsync_and_the_head_update_opens() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    v.import(rec("a", b"a"), Zeroizing::new(vec![1; 32]), None)
        .await
        .unwrap();
    let head = std::fs::read(head_path(dir.path())).unwrap();
    v.import(rec("b", b"b"), Zeroizing::new(vec![2; 32]), None)
        .await
        .unwrap();
    drop(v);
    // The frame of b is on disk; the head still names the end of a's frame.
    std::fs::write(head_path(dir.path()), &head).unwrap();
    let v = open(dir.path());
    assert_eq!(v.read_material("b").await.unwrap().len(), 32);
    drop(v);
    // The open re-anchored the head: cutting b's frame now is refused.
    let log = std::fs::read(log_path(dir.path())).unwrap();
    std::fs::write(log_path(dir.path()), &log[..frames(&log)[1].0]).unwrap();
    assert!(err_text(open_with(dir.path(), MasterKeySource::VaultDir)).contains("accept-restore"));
}

#[tokio::test]
async fn a_missing_head_is_refused_unless_the_log_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    std::fs::remove_file(head_path(dir.path())).unwrap();
    // No frame was ever written: nothing can have been lost.
    let v = open(dir.path());
    v.import(rec("a", b"a"), Zeroizing::new(vec![1; 32]), None)
        .await
        .unwrap();
    drop(v);
    std::fs::remove_file(head_path(dir.path())).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(
        msg.contains("head file is missing") && msg.contains("accept-restore"),
        "{msg}"
    );
    // A deleted log with the head still there is not silently replaced by an empty vault.
    Vault::accept_restore(
        dir.path(),
        MasterKeySource::VaultDir,
        &head_path(dir.path()),
    )
    .unwrap();
    std::fs::remove_file(log_path(dir.path())).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("log is missing"), "{msg}");
}

#[tokio::test]
async fn shredding_a_crash_interrupted_is_finished_at_open() {
    const DOOMED: &[u8; 32] = b"doomed-key-material-0123456789ab";
    const KEPT: &[u8; 32] = b"kept-key-material-0123456789abcd";
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    v.import(rec("doomed", b"m"), Zeroizing::new(DOOMED.to_vec()), None)
        .await
        .unwrap();
    v.import(rec("kept", b"m"), Zeroizing::new(KEPT.to_vec()), None)
        .await
        .unwrap();
    let keys_before = std::fs::read(dir.path().join(slots::KEYS_FILE)).unwrap();
    v.destroy("doomed", None, 0).await.unwrap();
    drop(v);
    // The crash came after the tombstone's fsync, before the slot was zeroed.
    std::fs::write(dir.path().join(slots::KEYS_FILE), &keys_before).unwrap();
    let master = master_key_of(dir.path());
    assert!(format::recoverable_plaintexts(dir.path(), &master)
        .iter()
        .any(|p| contains(p, DOOMED)));
    let v = open(dir.path());
    assert_eq!(v.stats().slots_shredded_at_open, 1);
    assert_unrecoverable(dir.path(), &master, DOOMED, KEPT);
}

fn slot_of(v: &Vault, uid: &str) -> u32 {
    v.shared.read_objects()[uid].key.as_ref().unwrap().slot
}

#[tokio::test]
async fn a_slot_is_reused_only_once_no_record_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    v.import(rec("a", b""), Zeroizing::new(vec![1; 32]), None)
        .await
        .unwrap();
    let a = slot_of(&v, "a");
    v.destroy("a", Some(b"gone".to_vec().into()), 0)
        .await
        .unwrap();
    v.import(rec("b", b""), Zeroizing::new(vec![2; 32]), None)
        .await
        .unwrap();
    assert_ne!(slot_of(&v, "b"), a, "a's records are still in the log");
    drop(v);
    // Also after a reopen, which rebuilds the free list from the log.
    let v = open(dir.path());
    v.import(rec("c", b""), Zeroizing::new(vec![3; 32]), None)
        .await
        .unwrap();
    assert_ne!(slot_of(&v, "c"), a);
    v.compact().await.unwrap();
    v.import(rec("d", b""), Zeroizing::new(vec![4; 32]), None)
        .await
        .unwrap();
    assert_eq!(
        slot_of(&v, "d"),
        a,
        "after compaction no record names a's slot"
    );
    drop(v);
    let v = open(dir.path());
    for uid in ["b", "c", "d"] {
        assert_eq!(v.read_material(uid).await.unwrap().len(), 32);
    }
}

/// Copies the version-1 fixture (written by the version-1 code) into a fresh directory.
fn v1_vault() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault-v1");
    for name in [DEFAULT_KEY_FILE, LOG_FILE] {
        let to = dir.path().join(name);
        std::fs::copy(fixture.join(name), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    dir
}

#[tokio::test]
async fn a_version_1_vault_is_upgraded_and_its_destroyed_keys_are_gone() {
    const DESTROYED: &[u8] = b"DESTROYED-V1-KEY-0123456789abcde";
    const DELETED: &[u8] = b"DELETED-V1-KEY-0123456789abcdefg";
    let dir = v1_vault();
    let master = master_key_of(dir.path());
    assert!(format::recoverable_plaintexts(dir.path(), &master)
        .iter()
        .any(|p| contains(p, DESTROYED)));
    for round in 0..2 {
        let v = open(dir.path());
        let mut all = v.load_all().await.unwrap();
        all.sort_by(|a, b| a.uid.cmp(&b.uid));
        let uids: Vec<_> = all.iter().map(|r| &*r.uid).collect();
        assert_eq!(
            uids,
            ["aes-live", "destroyed", "hmac-live", "secret"],
            "round {round}"
        );
        assert_eq!(&v.read_material("aes-live").await.unwrap()[..], &[0x11; 32]);
        let aes = v.shared.read_objects()["aes-live"].spec.clone().unwrap();
        assert_eq!(aes.label.as_deref(), Some("label-aes"));
        assert_eq!(aes.bits, 256);
        assert_eq!(
            &v.read_material("hmac-live").await.unwrap()[..],
            &[0x22; 32]
        );
        assert_eq!(all[2].meta, &b"meta-hmac-2"[..]);
        assert_eq!(
            &v.read_material("secret").await.unwrap()[..],
            b"v1-secret-password"
        );
        assert_eq!(all[1].meta, &b"tombstone"[..]);
        assert!(v.read_material("destroyed").await.is_err());
        drop(v);
        let log = std::fs::read(log_path(dir.path())).unwrap();
        assert_eq!(
            u32::from_le_bytes(log[8..12].try_into().unwrap()),
            format::FORMAT_VERSION
        );
        assert_unrecoverable(dir.path(), &master, DESTROYED, b"v1-secret-password");
        assert_unrecoverable(dir.path(), &master, DELETED, b"v1-secret-password");
    }
    // The upgraded vault is anchored: an older copy of it is refused.
    let log = std::fs::read(log_path(dir.path())).unwrap();
    let v = open(dir.path());
    v.update_meta("secret", b"m".to_vec().into(), 0)
        .await
        .unwrap();
    // New objects get slots of their own: the upgraded ones keep theirs.
    for i in 0..4 {
        v.import(
            rec(&format!("new{i}"), b""),
            Zeroizing::new(vec![i; 32]),
            None,
        )
        .await
        .unwrap();
    }
    drop(v);
    let v = open(dir.path());
    assert_eq!(&v.read_material("aes-live").await.unwrap()[..], &[0x11; 32]);
    assert_eq!(
        &v.read_material("hmac-live").await.unwrap()[..],
        &[0x22; 32]
    );
    assert_eq!(
        &v.read_material("secret").await.unwrap()[..],
        b"v1-secret-password"
    );
    assert_eq!(&v.read_material("new3").await.unwrap()[..], &[3; 32]);
    v.update_meta("secret", b"m2".to_vec().into(), 0)
        .await
        .unwrap();
    drop(v);
    std::fs::write(log_path(dir.path()), &log).unwrap();
    assert!(err_text(open_with(dir.path(), MasterKeySource::VaultDir)).contains("accept-restore"));
}

#[tokio::test]
async fn a_version_1_log_put_back_after_the_upgrade_is_refused() {
    let dir = v1_vault();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault-v1");
    let v = open(dir.path());
    v.update_meta("secret", b"m".to_vec().into(), 0)
        .await
        .unwrap();
    drop(v);
    std::fs::copy(fixture.join(LOG_FILE), log_path(dir.path())).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(
        msg.contains("version-1 log") && msg.contains("accept-restore"),
        "{msg}"
    );
}

/// Commit latency of sequential writes (one request per group commit, so each pays every
/// fsync): `KMIP_VAULT_BENCH_DIR=/some/disk cargo test -p kmip-backends --lib -- --ignored
/// --nocapture sequential_commit_latency`.
#[tokio::test]
#[ignore = "measures fsync cost; run by hand on the disk in question"]
async fn sequential_commit_latency() {
    const OPS: usize = 300;
    let base = std::env::var("KMIP_VAULT_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let v = open(dir.path());
    let uid = |i: usize| format!("{i:08}-0000-4000-8000-000000000000");
    let started = Instant::now();
    for i in 0..OPS {
        v.generate(rec(&uid(i), &[0x5a; 120]), spec(KeyAlgorithm::Aes, 256))
            .await
            .unwrap();
    }
    let create = started.elapsed() / OPS as u32;
    let started = Instant::now();
    for i in 0..OPS {
        v.update_meta(&uid(i), vec![0x5b; 120].into(), 0)
            .await
            .unwrap();
    }
    let update = started.elapsed() / OPS as u32;
    let started = Instant::now();
    for i in 0..OPS {
        v.destroy(&uid(i), Some(vec![0x5c; 120].into()), 0)
            .await
            .unwrap();
    }
    let destroy = started.elapsed() / OPS as u32;
    println!("per sequential op: create {create:?}, update_meta {update:?}, destroy {destroy:?}");
}

#[tokio::test]
async fn a_torn_head_write_leaves_the_other_copy_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    for uid in ["a", "b", "c"] {
        v.import(rec(uid, b""), Zeroizing::new(vec![1; 32]), None)
            .await
            .unwrap();
    }
    drop(v);
    let head = std::fs::read(head_path(dir.path())).unwrap();
    assert_eq!(head.len(), 1024);
    // Either copy torn (the newer one: the log is one frame past the older one, never
    // acknowledged as far as the head knows, and kept).
    for copy in [0, 512] {
        let mut torn = head.clone();
        torn[copy + 30] ^= 0xff;
        std::fs::write(head_path(dir.path()), &torn).unwrap();
        let v = open(dir.path());
        assert_eq!(v.stats().objects, 3);
        drop(v);
    }
    let mut both = std::fs::read(head_path(dir.path())).unwrap();
    both[30] ^= 0xff;
    both[512 + 30] ^= 0xff;
    std::fs::write(head_path(dir.path()), &both).unwrap();
    let msg = err_text(open_with(dir.path(), MasterKeySource::VaultDir));
    assert!(msg.contains("no copy authenticates"), "{msg}");
    Vault::accept_restore(
        dir.path(),
        MasterKeySource::VaultDir,
        &head_path(dir.path()),
    )
    .unwrap();
    assert_eq!(open(dir.path()).stats().objects, 3);
}

#[tokio::test]
async fn an_upgrade_interrupted_before_its_rename_runs_again() {
    let dir = v1_vault();
    let master = master_key_of(dir.path());
    // What a crash after the head named the new log as `next`, before the rename, leaves: the
    // version-1 log, a half-made new log and key slots, and that head.
    std::fs::write(dir.path().join(format::TMP_LOG_FILE), b"half a log").unwrap();
    std::fs::write(dir.path().join(slots::KEYS_FILE), b"stale slots").unwrap();
    let elsewhere = head::Position {
        salt: [7; 32],
        frames: 1,
        log_len: 500,
        mac: [9; 32],
    };
    drop(head::Head::create(&head_path(dir.path()), &master, None, Some(elsewhere)).unwrap());
    let v = open(dir.path());
    assert_eq!(&v.read_material("aes-live").await.unwrap()[..], &[0x11; 32]);
    assert_eq!(v.stats().objects, 4);
    drop(v);
    assert!(!dir.path().join(format::TMP_LOG_FILE).exists());
    assert_unrecoverable(
        dir.path(),
        &master,
        b"DESTROYED-V1-KEY-0123456789abcde",
        b"v1-secret-password",
    );
}

/// A compaction that cannot write its new log leaves the old one in use: the caller hears why,
/// writes go on, and a later compaction succeeds.
#[tokio::test]
async fn a_failed_compaction_keeps_the_old_log_and_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path());
    v.generate(rec("k", b"v0"), spec(KeyAlgorithm::Aes, 256))
        .await
        .unwrap();
    // A directory where the new log would be written: creating the file fails.
    let blocker = dir.path().join(format::TMP_LOG_FILE);
    std::fs::create_dir(&blocker).unwrap();
    assert!(v.compact().await.is_err());
    std::fs::remove_dir(&blocker).unwrap();
    v.update_meta("k", b"after the failure".to_vec().into(), 0)
        .await
        .unwrap();
    assert_eq!(v.stats().compactions, 0);
    v.compact().await.unwrap();
    assert_eq!(v.stats().compactions, 1);
    let before = snapshot(&v).await;
    drop(v);
    assert_eq!(snapshot(&open(dir.path())).await, before);
}
