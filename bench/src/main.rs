//! `kmip-bench`: a KMIP load generator (scenarios modelled on real clients, closed or open loop,
//! hdrhistogram latencies, A/B comparison of two servers), a bare-TLS baseline server and a raw
//! PKCS#11 read baseline.
#![forbid(unsafe_code)]

mod cryptoki_read;
mod echo;
mod ops;
mod plot;
mod progress;
mod run;
mod stats;

use clap::{Args, Parser, Subcommand};
use kmip_gateway::client::ClientTls;
use kmip_wire::model::ProtocolVersion;
use ops::Targets;
use plot::{Run, Side};
use run::{
    Fixture, Limit, Mix, RunError, Scenario, Spec, DEFAULT_PRELOAD, DEFAULT_PRELOAD_CONCURRENCY,
};
use serde_json::json;
use stats::Stats;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    about = "Load generator for KMIP servers",
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Bare mutual-TLS accept loop (handshake, then close): the baseline of `--scenario
    /// tls-handshake`. With `--echo`: the baseline of `--scenario echo`.
    TlsEchoServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Keep each connection and answer every framed request with one pre-encoded Get
        /// response (an AES-256 key), decoding nothing.
        #[arg(long)]
        echo: bool,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        ca: PathBuf,
    },
    /// Raw PKCS#11 baseline of `get` on a PKCS#11 backend: plain threads, one session each,
    /// reading CKA_VALUE of AES keys by cached handle (the keys, labelled
    /// `kmip-bench-cryptoki-read`, are found or generated once as token objects).
    CryptokiRead(CryptokiReadArgs),
    /// Draws the figures of earlier `--json` reports on the same axes (e.g. the gateway's get
    /// against cryptoki-read): the 1st, 3rd, … report in A's colours, the 2nd, 4th, … in B's.
    Plot(PlotReportsArgs),
}

#[derive(Args)]
struct PlotReportsArgs {
    /// `--json` reports of kmip-bench (a comparison report brings both of its targets).
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Title of the figures (default: each report's name and throughput).
    #[arg(long)]
    title: Option<String>,
    #[command(flatten)]
    plots: PlotArgs,
}

#[derive(Args)]
struct CryptokiReadArgs {
    /// PKCS#11 module (shared library).
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    module: PathBuf,
    /// Label of the token (slot numbers are not stable).
    #[arg(long)]
    token_label: String,
    /// File holding the user PIN.
    #[arg(long)]
    pin_file: PathBuf,
    /// AES-256 keys read at random.
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Threads, one session each.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds of reading.
    #[arg(long, conflicts_with = "count")]
    duration: Option<f64>,
    /// Reads in all.
    #[arg(long)]
    count: Option<u64>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    plots: PlotArgs,
}

#[derive(Args)]
struct PlotArgs {
    /// Draw the latency percentile curve (log scale; per operation; A and B together with
    /// --compare) to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Draw operations per second over time (one point per second) to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot_throughput: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// Server address HOST:PORT (A in a comparison). Several, comma-separated, must be gateways
    /// of one store (one PostgreSQL database): connections go to them in turn, and keys are
    /// preloaded through the first, so reads on the others cross instances.
    #[arg(long, required = true, value_delimiter = ',')]
    target: Vec<String>,
    /// CA certificate(s) the server certificate must chain to (PEM).
    #[arg(long, required = true)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, required = true)]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, required = true)]
    key: Option<PathBuf>,
    /// Name the server certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    #[arg(long, value_enum, default_value = "get")]
    scenario: Scenario,
    /// KMIP protocol version of the requests (1.0 … 2.1).
    #[arg(long, default_value = "1.4", value_parser = parse_version)]
    version: ProtocolVersion,
    /// Persistent connections (idle: connections to hold open).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Concurrent requests in flight (tasks sharing the connections).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds per round.
    #[arg(long, conflicts_with = "count")]
    duration: Option<f64>,
    /// Scenario iterations per round.
    #[arg(long)]
    count: Option<u64>,
    /// Open loop: iterations started per second, whatever the server's speed.
    #[arg(long)]
    rate: Option<f64>,
    /// Keys created before measuring (get, locate, locate-attr, rdl-boot, health, mixed).
    #[arg(long, default_value_t = DEFAULT_PRELOAD)]
    preload: usize,
    /// Parallel requests while preloading.
    #[arg(long, default_value_t = DEFAULT_PRELOAD_CONCURRENCY)]
    preload_concurrency: usize,
    /// After preloading, write the keys' tag and identifiers to this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["fixture_load", "compare"])]
    fixture_save: Option<PathBuf>,
    /// Measure the keys a run with --fixture-save preloaded into the same server, instead of
    /// preloading (a million keys take minutes to create).
    #[arg(long, value_name = "FILE", conflicts_with = "compare")]
    fixture_load: Option<PathBuf>,
    /// Weights of the mixed scenario.
    #[arg(long, default_value = "get=8,locate=1,create=1")]
    mix: String,
    /// PID of the server, for the idle scenario's RSS per connection.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Second server (B): the same scenario runs against both, in alternating rounds. Several,
    /// comma-separated, as for --target.
    #[arg(long, value_delimiter = ',')]
    compare: Vec<String>,
    /// Rounds per target in a comparison (A, B, A, B, …).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    plots: PlotArgs,
    /// No progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long, short)]
    quiet: bool,
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    let bad = || format!("'{s}' is not a KMIP version such as 1.4 or 2.1");
    let (major, minor) = s.split_once('.').ok_or_else(bad)?;
    let v = ProtocolVersion::new(
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    );
    if v.is_known() {
        Ok(v)
    } else {
        Err(bad())
    }
}

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("missing --{0}")]
    Missing(&'static str),
    #[error(
        "--fixture-load {0}: its keys carry no x-bench-bucket; save them from a locate-attr run"
    )]
    NoBuckets(String),
    #[error("{0} needs --preload of at least 1")]
    NoPreload(&'static str),
    #[error("TLS setup: {0}")]
    Tls(#[from] kmip_gateway::client::ClientError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Echo(#[from] echo::EchoError),
    #[error(transparent)]
    Raw(#[from] cryptoki_read::RawError),
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("write {path}: {problem}")]
    Json { path: String, problem: String },
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    #[error("read report {path}: {problem}")]
    Report { path: String, problem: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // Blocking PKCS#11 calls on plain threads: no async runtime at all.
        Some(Command::CryptokiRead(args)) => cryptoki_read(args),
        Some(Command::Plot(args)) => plot_reports(args),
        Some(Command::TlsEchoServer {
            listen,
            echo,
            cert,
            key,
            ca,
        }) => runtime().and_then(|rt| {
            rt.block_on(echo::serve(&listen, &cert, &key, &ca, echo))
                .map_err(BenchError::from)
        }),
        None => runtime().and_then(|rt| rt.block_on(bench(cli.run))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kmip-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)
}

fn limit(count: Option<u64>, duration: Option<f64>) -> Limit {
    match (count, duration) {
        (Some(n), _) => Limit::Count(n),
        (None, Some(d)) => Limit::Duration(Duration::from_secs_f64(d.max(0.0))),
        (None, None) => Limit::Duration(Duration::from_secs(10)),
    }
}

fn cryptoki_read(args: CryptokiReadArgs) -> Result<(), BenchError> {
    let spec = cryptoki_read::RawSpec {
        module: args.module,
        token_label: args.token_label,
        pin_file: args.pin_file,
        keys: args.keys,
        concurrency: args.concurrency,
        limit: limit(args.count, args.duration),
    };
    let stats = cryptoki_read::run(&spec)?;
    stats.print(&format!(
        "cryptoki-read on token {:?} ({} keys, {} threads)",
        spec.token_label, spec.keys, spec.concurrency
    ));
    let report = json!({
        "run": {
            "scenario": "CryptokiRead",
            "module": spec.module.display().to_string(),
            "token_label": spec.token_label,
            "keys": spec.keys,
            "concurrency": spec.concurrency,
            "limit": format!("{:?}", spec.limit),
        },
        "result": stats.to_json(),
    });
    write_json(args.json, &report)?;
    draw(
        &args.plots,
        &format!(
            "cryptoki-read, {} keys, {} threads: {:.0}/s",
            spec.keys,
            spec.concurrency,
            stats.throughput()
        ),
        &[Run::from_stats(Side::A, "cryptoki-read".to_owned(), &stats)],
    )
}

/// Writes the figures asked for by `plots`.
fn draw(plots: &PlotArgs, title: &str, runs: &[Run]) -> Result<(), BenchError> {
    Ok(plot::draw(
        plots.plot.as_deref(),
        plots.plot_throughput.as_deref(),
        title,
        runs,
    )?)
}

/// `kmip-bench plot`: the figures of earlier `--json` reports, on the same axes.
fn plot_reports(args: PlotReportsArgs) -> Result<(), BenchError> {
    let mut runs = Vec::new();
    let mut names = Vec::new();
    for (i, path) in args.reports.iter().enumerate() {
        let bad = |problem: String| BenchError::Report {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let report: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let stem = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into(),
        );
        let tput = |r: &serde_json::Value| r["throughput_per_s"].as_f64().unwrap_or(0.0);
        if report["a"].is_object() {
            for (key, side) in [("a", Side::A), ("b", Side::B)] {
                let result = &report[key]["result"];
                let name = format!("{stem} {}", key.to_uppercase());
                names.push(format!("{name} {:.0}/s", tput(result)));
                runs.push(Run::from_json(side, name, result));
            }
        } else {
            let side = if i % 2 == 0 { Side::A } else { Side::B };
            names.push(format!("{stem} {:.0}/s", tput(&report["result"])));
            runs.push(Run::from_json(side, stem, &report["result"]));
        }
    }
    let title = args.title.unwrap_or_else(|| names.join(" vs "));
    draw(&args.plots, &title, &runs)
}

fn write_json(path: Option<PathBuf>, report: &serde_json::Value) -> Result<(), BenchError> {
    let Some(path) = path else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(report).map_err(|e| BenchError::Json {
        path: path.display().to_string(),
        problem: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(|e| BenchError::Json {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

async fn bench(args: RunArgs) -> Result<(), BenchError> {
    let tls = ClientTls::from_files(
        &args.ca.ok_or(BenchError::Missing("ca"))?,
        &args.cert.ok_or(BenchError::Missing("cert"))?,
        &args.key.ok_or(BenchError::Missing("key"))?,
    )?;
    let target_a = Targets::new(&args.target, &args.server_name, &tls, args.version)
        .ok_or(BenchError::Missing("target"))?;
    let spec = Spec {
        scenario: args.scenario,
        connections: args.connections,
        concurrency: args.concurrency,
        limit: limit(args.count, args.duration),
        rate: args.rate.filter(|r| *r > 0.0),
        mix: Mix::parse(&args.mix)?,
        server_pid: args.server_pid,
        progress: progress::wanted(args.quiet),
        preload_concurrency: args.preload_concurrency,
    };
    if args.preload == 0
        && matches!(
            spec.scenario,
            Scenario::RdlBoot
                | Scenario::Health
                | Scenario::Get
                | Scenario::Locate
                | Scenario::LocateAttr
                | Scenario::Mixed
        )
        && args.fixture_load.is_none()
    {
        return Err(BenchError::NoPreload("this scenario"));
    }
    let header = json!({
        "scenario": format!("{:?}", spec.scenario),
        "version": args.version.to_string(),
        "connections": spec.connections,
        "concurrency": spec.concurrency,
        "limit": format!("{:?}", spec.limit),
        "rate": spec.rate,
        "preload": if args.fixture_load.is_some() { 0 } else { args.preload },
        "fixture_load": args.fixture_load.as_ref().map(|p| p.display().to_string()),
    });
    match Targets::new(&args.compare, &args.server_name, &tls, args.version) {
        None => {
            let fixture = match &args.fixture_load {
                Some(path) => {
                    let fixture = Fixture::load(path)?;
                    if spec.scenario == Scenario::LocateAttr && !fixture.buckets {
                        return Err(BenchError::NoBuckets(path.display().to_string()));
                    }
                    fixture
                }
                None => run::preload(target_a.first(), &spec, args.preload).await?,
            };
            if let Some(path) = &args.fixture_save {
                fixture.save(path)?;
            }
            let fixture = Arc::new(fixture);
            let stats = run::round(&target_a, &fixture, &spec).await?;
            stats.print(&format!("{:?} against {}", spec.scenario, target_a.label()));
            let report =
                json!({ "run": header, "target": target_a.label(), "result": stats.to_json() });
            write_json(args.json, &report)?;
            let title = format!(
                "{:?} against {}: {:.0}/s",
                spec.scenario,
                target_a.label(),
                stats.throughput()
            );
            draw(
                &args.plots,
                &title,
                &[Run::from_stats(Side::A, target_a.label(), &stats)],
            )
        }
        Some(target_b) => {
            let fix_a = Arc::new(run::preload(target_a.first(), &spec, args.preload).await?);
            let fix_b = Arc::new(run::preload(target_b.first(), &spec, args.preload).await?);
            let (mut a, mut b) = (Stats::default(), Stats::default());
            for _ in 0..args.rounds.max(1) {
                merge_round(&mut a, run::round(&target_a, &fix_a, &spec).await?);
                merge_round(&mut b, run::round(&target_b, &fix_b, &spec).await?);
            }
            a.print(&format!(
                "A: {:?} against {}",
                spec.scenario,
                target_a.label()
            ));
            b.print(&format!(
                "B: {:?} against {}",
                spec.scenario,
                target_b.label()
            ));
            let ratio = stats::compare(&a, &b);
            let report = json!({
                "run": header,
                "a": { "target": target_a.label(), "result": a.to_json() },
                "b": { "target": target_b.label(), "result": b.to_json() },
                "ratio_a_over_b": ratio,
            });
            write_json(args.json, &report)?;
            let title = format!(
                "{:?}: throughput A/B {:.2}x (A {:.0}/s, B {:.0}/s)",
                spec.scenario,
                a.throughput() / b.throughput().max(f64::MIN_POSITIVE),
                a.throughput(),
                b.throughput()
            );
            draw(
                &args.plots,
                &title,
                &[
                    Run::from_stats(Side::A, format!("A {}", target_a.label()), &a),
                    Run::from_stats(Side::B, format!("B {}", target_b.label()), &b),
                ],
            )
        }
    }
}

/// Adds a round to a target's totals (elapsed time adds up, so throughput stays per second).
fn merge_round(total: &mut Stats, round: Stats) {
    total.merge(&round);
    total.elapsed += round.elapsed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("1.4"), Ok(ProtocolVersion::V1_4));
        assert_eq!(parse_version("2.1"), Ok(ProtocolVersion::V2_1));
        assert!(parse_version("1.9").is_err());
        assert!(parse_version("14").is_err());
    }

    #[test]
    fn mix_parses_and_rejects() {
        let m = Mix::parse("get=8,locate=1,create=1").unwrap();
        assert_eq!((m.get, m.locate, m.create), (8, 1, 1));
        assert!(Mix::parse("get=0").is_err());
        assert!(Mix::parse("delete=1").is_err());
        assert!(Mix::parse("get").is_err());
    }
}
