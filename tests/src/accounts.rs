//! The non-root system account the tests run services as (the gateway in the walkthroughs,
//! PostgreSQL, which refuses root), created when missing and never removed.

use std::process::Command;
use std::sync::Mutex;

/// The system user and group the tests run services as.
pub const SERVICE_USER: &str = "kmipgw-test";

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        == Some("0")
}

/// The id of `name` in the `passwd` or `group` database, if it exists.
pub fn getent(db: &str, name: &str) -> Option<u32> {
    let out = Command::new("getent").args([db, name]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    out.status
        .success()
        .then(|| text.split(':').nth(2).unwrap().parse().unwrap())
}

/// Creates [`SERVICE_USER`] and its group unless they exist; returns (uid, gid). One thread of
/// the process creates it while others wait: concurrent `useradd`s can fail on the
/// password-file lock.
pub fn service_account() -> (u32, u32) {
    static CREATING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    if getent("passwd", SERVICE_USER).is_none() {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ])
            .status()
            .unwrap();
        // 9: created meanwhile by another test process.
        assert!(status.success() || status.code() == Some(9), "{status}");
    }
    (
        getent("passwd", SERVICE_USER).unwrap(),
        getent("group", SERVICE_USER).unwrap(),
    )
}
