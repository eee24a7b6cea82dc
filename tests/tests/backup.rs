//! The operator's safety nets around the data folder, through the real binary: `serve --config`
//! refuses a missing or empty data folder (it would serve an empty vault) and says what to run;
//! `init` creates it.

use kmip_e2e::{binary_path, gateway_cli, GatewayOptions, GatewayProcess};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A vault site in `dir`: a development PKI in `dir/pki` and `dir/gateway.toml` naming
/// `dir/data` as its data folder (not created). Returns the configuration file.
fn vault_site(dir: &Path) -> PathBuf {
    let pki = dir.join("pki");
    kmip_gateway::tooling::pki::dev_pki(&pki).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [[users]]\nname = \"purefa\"\ncas = [{ca:?}]\n",
            data = dir.join("data").display().to_string(),
            cert = pki.join("server.pem").display().to_string(),
            key = pki.join("server.key").display().to_string(),
            ca = pki.join("ca.pem").display().to_string(),
        ),
    )
    .unwrap();
    config
}

/// How long a refusal may take: it comes before anything is opened, so far less; a gateway
/// that starts instead is killed then and fails the test.
const REFUSAL_WITHIN: Duration = Duration::from_secs(60);

/// Runs `kmip-gateway serve --config F`, which must refuse to start: exit code and stderr.
fn serve_refused(config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(binary_path("kmip-gateway"))
        .args(["serve", "--admin-listen", "off", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + REFUSAL_WITHIN;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kmip-gateway serve started on an uninitialised data folder");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

fn stop(mut gw: GatewayProcess) {
    gw.terminate();
    let status = gw.wait_exit(SHUTDOWN_GRACE).expect("exit after SIGTERM");
    assert!(status.success(), "exit {status:?}\n{}", gw.log());
}

#[test]
fn serve_refuses_a_missing_or_empty_data_folder_until_init() {
    let dir = tempfile::tempdir().unwrap();
    let config = vault_site(dir.path());
    let data = dir.path().join("data");
    let init_command = format!("kmip-gateway init --config {}", config.display());

    let (code, err) = serve_refused(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the data folder {} does not exist",
            data.display()
        )) && err.contains(&init_command)
            && err.contains("kmip-gateway restore"),
        "{err}"
    );
    assert!(!data.exists(), "a refused start must not create the folder");

    std::fs::create_dir(&data).unwrap();
    let (code, err) = serve_refused(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("is empty") && err.contains(&init_command),
        "{err}"
    );

    // A folder with other things in it but no vault (its vault lost or elsewhere).
    std::fs::create_dir(data.join("audit")).unwrap();
    let (code, err) = serve_refused(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("holds no vault") && err.contains(&init_command),
        "{err}"
    );

    let (ok, out) = gateway_cli(&["init", "--config", config.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("created an empty vault"), "{out}");
    let (ok, again) = gateway_cli(&["init", "--config", config.to_str().unwrap()]);
    assert!(
        ok && again.contains("already initialised: nothing changed"),
        "{again}"
    );

    let gw = GatewayProcess::start_with(&GatewayOptions {
        extra_args: vec!["--config".into(), config.display().to_string()],
        no_init: true,
        ..GatewayOptions::default()
    });
    stop(gw);
}

#[test]
fn the_embedded_default_initialises_its_first_run_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let options = GatewayOptions {
        extra_args: vec![
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
        ],
        ..GatewayOptions::default()
    };
    let first = GatewayProcess::start_with(&options);
    let said = "does not exist: initialising it (embedded default";
    assert!(first.log().contains(said), "{}", first.log());
    stop(first);
    let second = GatewayProcess::start_with(&options);
    assert!(
        !second.log().contains("initialising it"),
        "{}",
        second.log()
    );
    stop(second);
}
