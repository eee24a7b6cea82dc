//! Secrets and processes, against the real binary: secrets taken from the environment are gone
//! from it, the PIN file must be private, a PIN refused by the token is not tried again (the HSM
//! user is not locked out), and `kmip-gateway reload` never signals a process that is not the
//! gateway named by the pid file.

use kmip_e2e::{
    gateway_cli, Backend, GatewayHome, GatewayOptions, GatewayProcess, SOFTHSM_TOKEN_LABEL,
};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous bound for anything the gateway does in the background (a watchdog round is 2 s).
const WAIT_BOUND: Duration = Duration::from_secs(60);
/// Watchdog rounds watched for login retries: the gateway's `RECOVERY_INTERVAL` is 2 s.
const WATCHED_ROUNDS: Duration = Duration::from_secs(12);

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn master_key_env_is_removed_from_the_process_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    kmip_gateway::tooling::pki::dev_pki(&pki).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n\
             [backend]\nkind = \"vault\"\nmaster_key_env = \"KMIP_E2E_MASTER_KEY\"\n",
            data = dir.path().join("data").display().to_string(),
            cert = pki.join("server.pem").display().to_string(),
            key = pki.join("server.key").display().to_string(),
            ca = pki.join("ca.pem").display().to_string(),
        ),
    )
    .unwrap();
    let key = "5eC7e7".repeat(10) + "a1b2";
    let gw = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), config.display().to_string()],
        env: vec![("KMIP_E2E_MASTER_KEY".into(), key.clone())],
        ..GatewayOptions::default()
    });
    let environ = std::fs::read(format!("/proc/{}/environ", gw.pid())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ
            .to_ascii_lowercase()
            .contains(&key.to_ascii_lowercase()),
        "/proc/PID/environ shows the master key"
    );
    assert!(
        !environ.split('\0').any(
            |v| v.starts_with("KMIP_E2E_MASTER_KEY=") && v.len() > "KMIP_E2E_MASTER_KEY=".len()
        ),
        "the variable still has a value"
    );
    // Still the vault's key: it was read before it was removed.
    assert!(gw.log().contains("backend opened"), "{}", gw.log());
}

/// Kills a process that is not our child when dropped, also when the test fails.
struct PidGuard(u32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

/// Kills (SIGKILL) and reaps a helper process when dropped, also when the test fails.
struct Helper(std::process::Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn reload_never_signals_a_process_the_pid_file_does_not_belong_to() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("kmip-gateway.pid");
    let pid_arg = pid_file.to_str().unwrap();

    // A stale file: its pid is now an unrelated process.
    let mut sleeper = Helper(Command::new("sleep").arg("300").spawn().unwrap());
    std::fs::write(&pid_file, format!("{}\n", sleeper.0.id())).unwrap();
    let (ok, out) = gateway_cli(&["reload", "--pid-file", pid_arg]);
    assert!(!ok && out.contains("stale"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        matches!(sleeper.0.try_wait(), Ok(None)),
        "the unrelated process was signalled"
    );

    // Locked, but by a process that is not a gateway: `flock` holds the lock while the shell it
    // runs writes its pid and becomes `sleep` (exec keeps the pid, and the pid is flock's child).
    let mut locker = Helper(
        Command::new("flock")
            .arg(&pid_file)
            .args([
                "sh",
                "-c",
                "echo $$ > \"$1\"; exec sleep 300",
                "sh",
                pid_arg,
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + WAIT_BOUND;
    let locked_pid = loop {
        let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let pid: u32 = text.trim().parse().unwrap_or(0);
        if pid != 0
            && pid != sleeper.0.id()
            && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"))
        {
            break PidGuard(pid);
        }
        assert!(
            Instant::now() < deadline && matches!(locker.0.try_wait(), Ok(None)),
            "flock did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (ok, out) = gateway_cli(&["reload", "--pid-file", pid_arg]);
    assert!(!ok && out.contains("not a running"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        alive(locked_pid.0),
        "the process named by the pid file was signalled"
    );
    // Its end ends flock too.
    drop(locked_pid);
    let _ = locker.0.wait();

    // The gateway's own pid file works.
    let gw = GatewayProcess::start();
    let data_dir = gw.data_dir().display().to_string();
    let (ok, out) = gateway_cli(&["reload", "--data-dir", &data_dir]);
    assert!(ok && out.contains("SIGHUP sent"), "{out}");
}

#[test]
fn a_pin_file_readable_by_others_is_refused() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let pin = home.pin_file();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let failure = match home.try_start_with(&GatewayOptions::default()) {
        Ok(gw) => panic!("started with a world-readable PIN file:\n{}", gw.log()),
        Err(f) => f,
    };
    assert!(
        failure.log.contains("chmod 600") && failure.log.contains("user.pin"),
        "{}",
        failure.log
    );
    let real = std::fs::read_to_string(&pin).unwrap();
    assert!(!failure.log.contains(real.trim()), "the log shows the PIN");
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    drop(home.start());
}

/// Runs `pkcs11-tool` on the home's token with `pin` as the user PIN (through the environment);
/// whether it succeeded, and its output.
fn pkcs11_tool(home: &GatewayHome, pin: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(kmip_e2e::softhsm_module())
        .args(["--token-label", SOFTHSM_TOKEN_LABEL])
        .args(["--login", "--pin", "env:KMIP_E2E_PIN"])
        .args(args)
        .env("SOFTHSM2_CONF", home.softhsm_conf().unwrap())
        .env("KMIP_E2E_PIN", pin)
        .env("KMIP_E2E_NEW_PIN", "24682468")
        .output()
        .expect("run pkcs11-tool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `name{labels} value` of the gateway's metrics, 0 when absent.
fn metric(gw: &GatewayProcess, series: &str) -> f64 {
    let (_, text) = gw.admin_get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn wait_for(what: &str, gw: &GatewayProcess, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_BOUND;
    while !done() {
        assert!(Instant::now() < deadline, "{what}\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The user PIN changes on the HSM while the gateway runs; the token is then lost and comes back,
/// so the watchdog reopens it with the old PIN. It logs in once, is refused, and does not try
/// that PIN again (so the HSM user is not locked out); `/readyz` says why. Once the PIN file
/// holds the new PIN, it logs in and serves again.
#[test]
fn a_refused_pin_is_not_retried_and_the_token_is_not_locked() {
    let home = GatewayHome::new(Backend::SoftHsm);
    let old_pin = std::fs::read_to_string(home.pin_file()).unwrap();
    let old_pin = old_pin.trim_end();
    let new_pin = "24682468";
    let gw = home.start_with(&GatewayOptions {
        admin: true,
        ..GatewayOptions::default()
    });
    assert_eq!(gw.admin_get("/readyz").0, 200, "{}", gw.log());

    let (ok, out) = pkcs11_tool(
        &home,
        old_pin,
        &["--change-pin", "--new-pin", "env:KMIP_E2E_NEW_PIN"],
    );
    assert!(ok, "pkcs11-tool --change-pin: {out}");

    // Token lost and back: the watchdog must reopen it and log in again.
    let tokens = home.token_dir();
    let aside = home.dir().join("tokens-aside");
    std::fs::rename(&tokens, &aside).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    wait_for("readyz stays 200 without the token", &gw, || {
        gw.admin_get("/readyz").0 == 503
    });
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&aside, &tokens).unwrap();

    wait_for("no login with the old PIN was refused", &gw, || {
        gw.log().contains("PIN is incorrect")
    });
    let refused = "kmip_pkcs11_logins_total{result=\"pin_incorrect\"} ";
    std::thread::sleep(WATCHED_ROUNDS);
    let attempts = gw.log().matches("PIN is incorrect").count();
    assert_eq!(attempts, 1, "the old PIN was tried again:\n{}", gw.log());
    assert_eq!(metric(&gw, refused), 1.0, "{}", gw.log());
    let (code, body) = gw.admin_get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("PIN is incorrect") && body.contains("user.pin"),
        "readyz does not say why: {body}"
    );
    // The user is not locked: the new PIN logs in.
    let (ok, out) = pkcs11_tool(&home, new_pin, &["--list-objects"]);
    assert!(ok, "the new PIN does not log in: {out}");

    std::fs::write(home.pin_file(), format!("{new_pin}\n")).unwrap();
    wait_for("the new PIN in the PIN file was not used", &gw, || {
        gw.admin_get("/readyz").0 == 200
    });
    assert!(gw.log().contains("PIN file changed"), "{}", gw.log());
    assert_eq!(metric(&gw, refused), 1.0);
}
