//! Throwaway PostgreSQL clusters for the tests: Debian's `postgresql` binaries, `initdb` in a
//! temporary folder owned by [`SERVICE_USER`] (PostgreSQL refuses to run as root), a free port
//! on 127.0.0.1, password authentication (SCRAM) for the user `kmip`, the database `kmip`. A
//! cluster is stopped (immediately) and its folder removed when dropped.

use crate::accounts::{service_account, SERVICE_USER};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The database role and database the gateway uses.
pub const PG_USER: &str = "kmip";
pub const PG_DATABASE: &str = "kmip";

/// How long a cluster may take to start, recover after a kill, or catch a standby up: far above
/// the usual second, for a loaded CI machine.
const PG_TIMEOUT: Duration = Duration::from_secs(120);

/// The folder of PostgreSQL's server binaries: `$PG_BINDIR` if set, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub fn pg_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL is not installed (apt-get install postgresql; scripts/test-all.sh does)",
        )
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/<version>/bin/initdb")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut raw = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut raw)
        .unwrap();
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// The processes whose parent is `pid` (from `/proc/<pid>/stat`: the parent follows the
/// state after the parenthesised command name).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// One PostgreSQL cluster (a primary, or a streaming standby of one).
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    bin: PathBuf,
}

impl PgCluster {
    /// Initialises and starts a new primary with the database `kmip`.
    pub fn start() -> PgCluster {
        let cluster = PgCluster::new_dir();
        let pwfile = cluster.dir().join("initdb.pw");
        std::fs::write(&pwfile, &cluster.password).unwrap();
        cluster.chown(&pwfile);
        cluster.run_as_owner(
            "initdb",
            &[
                "-D",
                cluster.data().to_str().unwrap(),
                "-U",
                PG_USER,
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        std::fs::remove_file(&pwfile).unwrap();
        cluster.configure();
        cluster.pg_ctl_start();
        cluster.psql_db("postgres", &format!("CREATE DATABASE {PG_DATABASE}"));
        cluster
    }

    fn new_dir() -> PgCluster {
        let (uid, gid) = service_account();
        let dir = tempfile::Builder::new()
            .prefix("kmip-pg-")
            .tempdir()
            .unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        PgCluster {
            dir,
            port: free_port(),
            password: random_hex(16),
            bin: pg_bindir(),
        }
    }

    /// Settings kept in the cluster's own configuration, so restarts and promotions keep them.
    /// `fsync` is off: the tests kill processes, never the machine, and the page cache
    /// survives a process kill, so what a crash test checks is unchanged.
    fn configure(&self) {
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             fsync = off\nmax_connections = 200\nwal_level = replica\nmax_wal_senders = 10\n\
             hot_standby = on\nlog_min_messages = warning\n",
            port = self.port,
            dir = self.dir().display(),
        );
        let path = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
    }

    fn chown(&self, path: &Path) {
        let (uid, gid) = service_account();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }

    /// Runs one of PostgreSQL's programs as [`SERVICE_USER`]; panics with its output on failure.
    fn run_as_owner(&self, program: &str, args: &[&str]) -> Output {
        let out = self.try_run_as_owner(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn try_run_as_owner(&self, program: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", SERVICE_USER, "--"])
            .arg(self.bin.join(program))
            .args(args)
            .env("PGPASSWORD", &self.password)
            .current_dir(self.dir())
            .output()
            .unwrap()
    }

    fn pg_ctl_start(&self) {
        let deadline = Instant::now() + PG_TIMEOUT;
        loop {
            let out = self.try_run_as_owner(
                "pg_ctl",
                &[
                    "-D",
                    self.data().to_str().unwrap(),
                    "-l",
                    self.log_path().to_str().unwrap(),
                    "-w",
                    "-t",
                    &PG_TIMEOUT.as_secs().to_string(),
                    "start",
                ],
            );
            if out.status.success() {
                return;
            }
            // After a SIGKILL the old server's children may still hold its shared memory for a
            // moment: the new start is refused until they are gone.
            assert!(
                Instant::now() < deadline,
                "pg_ctl start failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("postgres.log")
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The connection URI of this cluster's `kmip` database (no password in it).
    pub fn url(&self) -> String {
        format!(
            "postgresql://{PG_USER}@127.0.0.1:{}/{PG_DATABASE}?sslmode=disable",
            self.port
        )
    }

    /// `host:port` as a multi-host URI lists it.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Writes the password to `path` (0600), as an operator's `password_file`.
    pub fn write_password_file(&self, path: &Path) {
        std::fs::write(path, format!("{}\n", self.password)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Runs SQL in the `kmip` database; the unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db(PG_DATABASE, sql)
    }

    /// Like [`PgCluster::psql`], returning the failure instead of panicking.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.try_psql_db(PG_DATABASE, sql)
    }

    fn psql_db(&self, db: &str, sql: &str) -> String {
        self.try_psql_db(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?} failed: {e}"))
    }

    fn try_psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let out = self.try_run_as_owner(
            "psql",
            &[
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                PG_USER,
                "-d",
                db,
                "-c",
                sql,
            ],
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILLs the postmaster (a crash: no shutdown checkpoint); its backends exit on their own.
    pub fn kill(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    /// SIGKILLs the postmaster and every process it started, as when its host dies: after
    /// [`PgCluster::kill`] alone, backends already connected go on committing (and a walsender
    /// on replicating) until they notice, so a "dead" primary would still acknowledge writes.
    /// The postmaster is stopped first so that it forks nothing while its children are listed.
    pub fn crash(&self) {
        let Some(pid) = self.pid() else {
            return;
        };
        let signal = |sig: &str, pids: &[u32]| {
            if !pids.is_empty() {
                let _ = Command::new("kill")
                    .arg(sig)
                    .args(pids.iter().map(u32::to_string))
                    .status();
            }
        };
        signal("-STOP", &[pid]);
        signal("-KILL", &children_of(pid));
        signal("-KILL", &[pid]);
    }

    /// Starts the server again (after [`PgCluster::kill`] or [`PgCluster::stop`]); it recovers
    /// from its WAL first.
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// A fast, clean stop.
    pub fn stop(&self) {
        self.try_run_as_owner(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// A new cluster streaming from this one, made the *synchronous* standby: from now on a
    /// commit on this primary returns only once the standby has the WAL, so a promoted standby
    /// holds every acknowledged write.
    pub fn start_sync_standby(&self) -> PgCluster {
        let mut standby = PgCluster::new_dir();
        standby.password = self.password.clone();
        let port = self.port.to_string();
        standby.run_as_owner(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                PG_USER,
                "-D",
                standby.data().to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                // An immediate checkpoint: the default spread one takes minutes.
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        // pg_basebackup copied the primary's settings; the standby's own come after them.
        standby.configure();
        // The primary connection settings -R wrote name the standby for the primary's view.
        let auto = standby.data().join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&auto).unwrap();
        text.push_str("cluster_name = 'standby'\n");
        text = text.replace(
            "primary_conninfo = '",
            "primary_conninfo = 'application_name=standby ",
        );
        std::fs::write(&auto, text).unwrap();
        standby.pg_ctl_start();
        self.psql("ALTER SYSTEM SET synchronous_standby_names = 'standby'");
        self.psql("SELECT pg_reload_conf()");
        let deadline = Instant::now() + PG_TIMEOUT;
        while self
            .psql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'")
            != "sync"
        {
            assert!(
                Instant::now() < deadline,
                "the standby never became synchronous:\n{}",
                standby.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        standby
    }

    /// Promotes this standby to a primary and waits until it accepts writes.
    pub fn promote(&self) {
        self.run_as_owner(
            "pg_ctl",
            &["-D", self.data().to_str().unwrap(), "-w", "promote"],
        );
        let deadline = Instant::now() + PG_TIMEOUT;
        while self.try_psql("SELECT pg_is_in_recovery()").as_deref() != Ok("f") {
            assert!(
                Instant::now() < deadline,
                "promotion never finished:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.try_run_as_owner(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: a cluster starts as the service user with password authentication,
    /// takes a synchronous standby that sees committed rows, survives a SIGKILL, and a promoted
    /// standby accepts writes.
    #[test]
    fn a_cluster_starts_streams_to_a_sync_standby_recovers_and_promotes() {
        if !crate::accounts::is_root() {
            eprintln!("skipped: needs root to run PostgreSQL as {SERVICE_USER}");
            return;
        }
        let primary = PgCluster::start();
        primary.psql("CREATE TABLE t (v int)");
        let standby = primary.start_sync_standby();
        primary.psql("INSERT INTO t VALUES (1)");
        assert_eq!(standby.psql("SELECT count(*) FROM t"), "1");
        primary.kill();
        primary.restart();
        assert_eq!(primary.psql("SELECT count(*) FROM t"), "1");
        primary.kill();
        standby.promote();
        standby.psql("INSERT INTO t VALUES (2)");
        assert_eq!(standby.psql("SELECT count(*) FROM t"), "2");
        assert!(standby.url().contains(&standby.port().to_string()));
    }

    /// `crash` kills the postmaster and each of its processes (none is left running), and the
    /// cluster recovers what it had committed.
    #[test]
    fn a_crash_leaves_no_process_of_the_cluster_running() {
        if !crate::accounts::is_root() {
            eprintln!("skipped: needs root to run PostgreSQL as {SERVICE_USER}");
            return;
        }
        let cluster = PgCluster::start();
        cluster.psql("CREATE TABLE t (v int)");
        cluster.psql("INSERT INTO t VALUES (1)");
        let postmaster = cluster.pid().unwrap();
        let mut processes = children_of(postmaster);
        assert!(!processes.is_empty(), "the postmaster has no children");
        processes.push(postmaster);
        cluster.crash();
        // Dead: gone, or a zombie waiting for whoever reaps orphans here.
        let running = |pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
                    Some(state != "Z" && state != "X")
                })
                .unwrap_or(false)
        };
        let deadline = Instant::now() + PG_TIMEOUT;
        while processes.iter().any(running) {
            assert!(Instant::now() < deadline, "processes left: {processes:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster.restart();
        assert_eq!(cluster.psql("SELECT count(*) FROM t"), "1");
    }
}
