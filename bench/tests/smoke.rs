//! Runs every scenario of the real `kmip-bench` binary briefly (count-bounded) against the real
//! gateway, and `tls-handshake` against the bench's own bare-TLS server: no errors, some
//! throughput. Timings are not asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use kmip_e2e::{Backend, GatewayHome, GatewayProcess};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_kmip-bench");

/// Kills the echo server when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bench(gw: &GatewayProcess, target: &str, args: &[&str]) -> Value {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = bench_command(gw, target, args, out.path());
    assert!(
        output.status.success(),
        "kmip-bench {args:?} failed: {}\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        gw.log()
    );
    serde_json::from_str(&std::fs::read_to_string(out.path()).unwrap()).unwrap()
}

fn bench_command(
    gw: &GatewayProcess,
    target: &str,
    args: &[&str],
    json: &Path,
) -> std::process::Output {
    Command::new(BENCH)
        .arg("--target")
        .arg(target)
        .arg("--ca")
        .arg(gw.ca_cert())
        .arg("--cert")
        .arg(gw.client_cert())
        .arg("--key")
        .arg(gw.client_key())
        .arg("--server-name")
        .arg(gw.server_name())
        .arg("--json")
        .arg(json)
        .args(args)
        .output()
        .unwrap()
}

fn assert_clean(report: &Value, what: &str) {
    let result = &report["result"];
    assert_eq!(result["errors"], 0, "{what}: {result:#}");
    assert!(result["ok"].as_u64().unwrap() > 0, "{what}: {result:#}");
    assert!(
        result["throughput_per_s"].as_f64().unwrap() > 0.0,
        "{what}: {result:#}"
    );
    assert!(result["latency_us"]["p99"].as_u64().unwrap() > 0, "{what}");
}

#[test]
fn every_scenario_runs_cleanly_against_the_gateway() {
    let gw = GatewayProcess::start();
    let target = gw.addr().to_string();
    let common = ["--count", "40", "--connections", "2", "--concurrency", "4"];
    for scenario in ["rdl-boot", "health", "lifecycle", "get", "locate", "mixed"] {
        let mut args = vec!["--scenario", scenario, "--preload", "25"];
        args.extend(common);
        assert_clean(&bench(&gw, &target, &args), scenario);
    }
    // 250 keys: two full buckets of 100 and one of 50, each found exactly (any other count is
    // an error of the run), although algorithm and length match all 250.
    let fixture = tempfile::NamedTempFile::new().unwrap();
    let fixture_path = fixture.path().to_str().unwrap();
    let mut args = vec!["--scenario", "locate-attr", "--preload", "250"];
    args.extend([
        "--preload-concurrency",
        "16",
        "--fixture-save",
        fixture_path,
    ]);
    args.extend(common);
    assert_clean(&bench(&gw, &target, &args), "locate-attr");
    // The saved keys are measured again without a preload.
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.path()).unwrap()).unwrap();
    assert_eq!(saved["uids"].as_array().unwrap().len(), 250);
    for scenario in ["get", "locate", "locate-attr"] {
        let mut args = vec!["--scenario", scenario, "--fixture-load", fixture_path];
        args.extend(common);
        let report = bench(&gw, &target, &args);
        assert_clean(&report, &format!("{scenario} --fixture-load"));
    }
    // Keys preloaded by another scenario carry no bucket (PyKMIP refuses custom attributes):
    // locate-attr refuses them rather than count every Locate as an error.
    let plain = tempfile::NamedTempFile::new().unwrap();
    let plain_path = plain.path().to_str().unwrap();
    let mut args = vec![
        "--scenario",
        "get",
        "--preload",
        "5",
        "--fixture-save",
        plain_path,
    ];
    args.extend(common);
    assert_clean(&bench(&gw, &target, &args), "get --fixture-save");
    let json = tempfile::NamedTempFile::new().unwrap();
    let refused = bench_command(
        &gw,
        &target,
        &[
            "--scenario",
            "locate-attr",
            "--fixture-load",
            plain_path,
            "--count",
            "5",
        ],
        json.path(),
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("x-bench-bucket"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Open loop: 40 iterations due at 200/s.
    let mut args = vec!["--scenario", "get", "--preload", "5", "--rate", "200"];
    args.extend(common);
    assert_clean(&bench(&gw, &target, &args), "get --rate");

    let pid = gw.pid().to_string();
    let idle = bench(
        &gw,
        &target,
        &[
            "--scenario",
            "idle",
            "--connections",
            "20",
            "--concurrency",
            "4",
            "--count",
            "1",
            "--server-pid",
            &pid,
        ],
    );
    assert_clean(&idle, "idle");
    assert_eq!(idle["result"]["extra"]["connections_open"], 20);
    assert!(
        idle["result"]["extra"]["server_rss_after_kb"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn compare_runs_both_targets_and_reports_ratios() {
    let gw = GatewayProcess::start();
    let target = gw.addr().to_string();
    let report = bench(
        &gw,
        &target,
        &[
            "--scenario",
            "get",
            "--preload",
            "5",
            "--count",
            "20",
            "--compare",
            &target,
        ],
    );
    for side in ["a", "b"] {
        assert_eq!(report[side]["result"]["errors"], 0, "{report:#}");
        // Two rounds of 20 per target.
        assert_eq!(report[side]["result"]["ok"], 40, "{report:#}");
    }
    assert!(
        report["ratio_a_over_b"]["throughput_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// `--target A,B` spreads the connections over both gateways (two connections each here). Two
/// vault gateways share the PKI but not their keys, so the scenario is lifecycle, which reads
/// only what its own connection created.
#[test]
fn a_target_list_spreads_connections_over_every_gateway() {
    let home_a = GatewayHome::new(Backend::Vault);
    let gw_a = home_a.start();
    let home_b = GatewayHome::new(Backend::Vault);
    copy_dir(&home_a.pki_dir(), &home_b.pki_dir());
    let gw_b = home_b.start();
    let targets = format!("{},{}", gw_a.addr(), gw_b.addr());
    let args = [
        "--scenario",
        "lifecycle",
        "--count",
        "40",
        "--connections",
        "4",
        "--concurrency",
        "4",
    ];
    let report = bench(&gw_a, &targets, &args);
    assert_clean(&report, "lifecycle over two targets");
    assert_eq!(report["target"], targets.as_str(), "{report:#}");
    // The gateway logs each authenticated connection once, from its own task: wait for both.
    let deadline = Instant::now() + Duration::from_secs(30);
    for gw in [&gw_a, &gw_b] {
        while gw.log().matches("client connected").count() < 2 {
            assert!(
                Instant::now() < deadline,
                "{} did not get two of the four connections:\n{}",
                gw.addr(),
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Element names and text contents of an SVG, read with a real XML parser (fails the test if
/// the file is not well-formed XML).
fn parse_svg(path: &std::path::Path) -> (Vec<String>, Vec<String>) {
    use quick_xml::events::Event;
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let (mut elements, mut texts) = (Vec::new(), Vec::new());
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                elements.push(e.name().as_ref().to_owned());
            }
            Ok(Event::Text(t)) => {
                // Entity references arrive as their own events; the plots' texts need none.
                let t: &str = &t;
                if !t.trim().is_empty() {
                    texts.push(t.trim().to_owned());
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{} is not well-formed XML: {e}", path.display()),
        }
    }
    assert_eq!(elements.first().map(String::as_str), Some("svg"), "{text}");
    (elements, texts)
}

fn lines(elements: &[String]) -> usize {
    elements.iter().filter(|e| *e == "polyline").count()
}

#[test]
fn plots_of_a_comparison_carry_both_targets() {
    let gw = GatewayProcess::start();
    let target = gw.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (latency, throughput) = (dir.path().join("lat.svg"), dir.path().join("tput.svg"));
    let latency_arg = latency.to_str().unwrap();
    let throughput_arg = throughput.to_str().unwrap();
    let report = bench(
        &gw,
        &target,
        &[
            "--scenario",
            "get",
            "--preload",
            "5",
            "--count",
            "200",
            "--compare",
            &target,
            "--plot",
            latency_arg,
            "--plot-throughput",
            throughput_arg,
        ],
    );
    let (a, b) = (format!("A {target}"), format!("B {target}"));
    for path in [&latency, &throughput] {
        let (elements, texts) = parse_svg(path);
        let title = texts.iter().find(|t| t.contains("A/B"));
        assert!(
            title.is_some(),
            "{}: no A/B title in {texts:?}",
            path.display()
        );
        for side in [&a, &b] {
            assert!(
                texts.iter().any(|t| t.starts_with(side.as_str())),
                "{}: no legend entry {side:?} in {texts:?}",
                path.display()
            );
        }
        // One line per target (get has one operation per iteration).
        assert!(lines(&elements) >= 2, "{}: {elements:?}", path.display());
    }

    // The same figure again from the JSON report, by `kmip-bench plot`.
    let json = dir.path().join("cmp.json");
    std::fs::write(&json, report.to_string()).unwrap();
    let replot = dir.path().join("replot.svg");
    let output = Command::new(BENCH)
        .arg("plot")
        .arg(&json)
        .arg("--plot")
        .arg(&replot)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (elements, texts) = parse_svg(&replot);
    for side in ["cmp A: iteration", "cmp B: iteration"] {
        assert!(texts.iter().any(|t| t == side), "no {side:?} in {texts:?}");
    }
    assert!(lines(&elements) >= 2, "{elements:?}");

    // A single run of a multi-operation scenario: the iteration and every operation.
    bench(
        &gw,
        &target,
        &[
            "--scenario",
            "lifecycle",
            "--count",
            "20",
            "--plot",
            latency_arg,
        ],
    );
    let (elements, texts) = parse_svg(&latency);
    for label in [
        "iteration",
        "Create",
        "Activate",
        "Get",
        "Revoke",
        "Destroy",
    ] {
        let entry = format!("{target}: {label}");
        assert!(texts.contains(&entry), "no {entry:?} in {texts:?}");
    }
    assert!(lines(&elements) >= 6, "{elements:?}");
}

/// Runs `command` under `script`, which gives it a pseudo-terminal; returns what it printed.
fn on_a_terminal(command: &str) -> String {
    let output = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        // indicatif draws nothing on a terminal it believes dumb (CI has no TERM at all).
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs a command on a pseudo-terminal");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{command}: {text}");
    text
}

#[test]
fn progress_bars_only_on_a_terminal_and_not_with_quiet() {
    let gw = GatewayProcess::start();
    let target = gw.addr().to_string();
    let args = ["--scenario", "get", "--preload", "20", "--count", "50"];
    // Piped stderr: nothing but what a failure would print.
    let piped = Command::new(BENCH)
        .arg("--target")
        .arg(&target)
        .arg("--ca")
        .arg(gw.ca_cert())
        .arg("--cert")
        .arg(gw.client_cert())
        .arg("--key")
        .arg(gw.client_key())
        .arg("--server-name")
        .arg(gw.server_name())
        .args(args)
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert_eq!(String::from_utf8_lossy(&piped.stderr), "");

    let quote = |p: &std::path::Path| format!("'{}'", p.display());
    let command = format!(
        "{BENCH} --target {target} --ca {} --cert {} --key {} --server-name {} {}",
        quote(&gw.ca_cert()),
        quote(&gw.client_cert()),
        quote(&gw.client_key()),
        gw.server_name(),
        args.join(" ")
    );
    // On a terminal: the preload's and the round's final states stay on screen.
    let shown = on_a_terminal(&command);
    assert!(shown.contains(&format!("preload {target}")), "{shown}");
    assert!(shown.contains("20/20"), "{shown}");
    assert!(shown.contains(&format!("Get {target}")), "{shown}");
    assert!(shown.contains("50/50"), "{shown}");
    assert!(shown.contains("ETA"), "{shown}");

    let quiet = on_a_terminal(&format!("{command} --quiet"));
    assert!(!quiet.contains("ETA"), "{quiet}");
    assert!(!quiet.contains("preload"), "{quiet}");
}

/// Starts `kmip-bench tls-echo-server` with the gateway's server certificate and `extra`
/// arguments; returns its address and the guard that kills it.
fn echo_server(gw: &GatewayProcess, extra: &[&str]) -> (String, KillOnDrop) {
    let pki = gw.pki_dir();
    let mut child = Command::new(BENCH)
        .args(["tls-echo-server", "--listen", "127.0.0.1:0", "--cert"])
        .arg(pki.join("server.pem"))
        .arg("--key")
        .arg(pki.join("server.key"))
        .arg("--ca")
        .arg(gw.ca_cert())
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let guard = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("TLS echo listener ready addr=")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (addr, guard)
}

#[test]
fn tls_handshake_baseline_against_the_echo_server() {
    let gw = GatewayProcess::start();
    let (addr, echo) = echo_server(&gw, &[]);
    let report = bench(
        &gw,
        &addr,
        &[
            "--scenario",
            "tls-handshake",
            "--count",
            "40",
            "--concurrency",
            "2",
        ],
    );
    assert_clean(&report, "tls-handshake");
    drop(echo);
}

/// `echo` runs Gets over persistent connections against `--echo`, which answers each with a
/// decodable Get response; without `--echo` the server closes after the handshake and every
/// Get fails.
#[test]
fn echo_baseline_answers_gets_on_persistent_connections() {
    let gw = GatewayProcess::start();
    let (addr, echo) = echo_server(&gw, &["--echo"]);
    let args = [
        "--scenario",
        "echo",
        "--count",
        "200",
        "--connections",
        "2",
        "--concurrency",
        "4",
    ];
    let report = bench(&gw, &addr, &args);
    assert_clean(&report, "echo");
    assert_eq!(report["result"]["ok"], 200, "{report:#}");
    drop(echo);

    let (closing, _guard) = echo_server(&gw, &[]);
    let output = Command::new(BENCH)
        .args(["--target", &closing, "--server-name", gw.server_name()])
        .arg("--ca")
        .arg(gw.ca_cert())
        .arg("--cert")
        .arg(gw.client_cert())
        .arg("--key")
        .arg(gw.client_key())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success() || !text.contains("errors 0"),
        "Gets against a server that only shakes hands cannot succeed:\n{text}"
    );
}

/// Runs `kmip-bench cryptoki-read` on the token of `conf`; returns its JSON report.
fn cryptoki_read(conf: &std::path::Path, pin_file: &std::path::Path, args: &[&str]) -> Value {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(BENCH)
        .args(["cryptoki-read", "--module"])
        .arg(kmip_e2e::softhsm_module())
        .args(["--token-label", "smoke"])
        .arg("--pin-file")
        .arg(pin_file)
        .arg("--json")
        .arg(out.path())
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kmip-bench cryptoki-read {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out.path()).unwrap()).unwrap()
}

#[test]
fn cryptoki_read_baseline_on_a_throwaway_token() {
    let found = Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "softhsm2-util not found: this test needs SoftHSM2 (apt-get install softhsm2)"
    );
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let pin_file = dir.path().join("user.pin");
    std::fs::write(&pin_file, "271828\n").unwrap();
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "smoke"])
        .args(["--pin", "271828", "--so-pin", "314159"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&init.stderr)
    );

    // First run generates the keys, the second finds and reuses them.
    for generated in [4, 0] {
        let report = cryptoki_read(
            &conf,
            &pin_file,
            &["--keys", "4", "--concurrency", "2", "--count", "300"],
        );
        assert_clean(&report, "cryptoki-read");
        let result = &report["result"];
        assert_eq!(result["ok"], 300, "{result:#}");
        assert_eq!(result["extra"]["keys"], 4, "{result:#}");
        assert_eq!(result["extra"]["keys_generated"], generated, "{result:#}");
    }

    // A wrong PIN is an error, not a run of failed reads.
    std::fs::write(&pin_file, "000000\n").unwrap();
    let output = Command::new(BENCH)
        .args(["cryptoki-read", "--module"])
        .arg(kmip_e2e::softhsm_module())
        .args(["--token-label", "smoke"])
        .arg("--pin-file")
        .arg(&pin_file)
        .args(["--count", "10"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("login"), "{stderr}");
    assert!(!stderr.contains("000000"), "the PIN leaked: {stderr}");
}
