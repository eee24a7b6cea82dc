//! `kmip-conformance`: runs OASIS KMIP XML test vectors against a KMIP server, or checks the
//! codec on them. Prints `PASS name` / `FAIL name: difference` per file, then `N passed, M failed`;
//! exits non-zero when any file failed.
#![forbid(unsafe_code)]

use clap::Parser;
use kmip_gateway::client::conformance::{
    collect_files, display_name, read_vector_file, run_file, Target,
};
use kmip_gateway::client::{ClientTls, Encoding, Transport};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kmip-conformance",
    version,
    about = "Runs OASIS KMIP XML test vectors against a KMIP server"
)]
struct Cli {
    /// Server address HOST:PORT (not with --codec-only).
    #[arg(
        long,
        required_unless_present = "codec_only",
        conflicts_with = "codec_only"
    )]
    server: Option<String>,
    /// CA certificate(s) the server certificate must chain to (PEM).
    #[arg(long, required_unless_present = "codec_only")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, required_unless_present = "codec_only")]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, required_unless_present = "codec_only")]
    key: Option<PathBuf>,
    /// Name the server certificate must be valid for (default: the host part of --server).
    #[arg(long)]
    server_name: Option<String>,
    /// Speak KMIP over HTTPS (`POST /kmip`) to --server, the gateway's `[https] listen`.
    #[arg(long, conflicts_with = "codec_only")]
    https: bool,
    /// Message encoding over HTTPS: ttlv, xml or json (TTLV alone on the KMIP port).
    #[arg(long, value_enum, default_value = "ttlv", requires = "https")]
    encoding: EncodingArg,
    /// No server: check the codec round trip (XML → TTLV → XML) of each file.
    #[arg(long)]
    codec_only: bool,
    /// Vector files, or folders (every *.xml in them, in name order).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EncodingArg {
    Ttlv,
    Xml,
    Json,
}

/// Exit status for a usage or setup problem (as opposed to failed vectors).
const EXIT_SETUP: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let files = match collect_files(&cli.paths) {
        Ok(f) if f.is_empty() => {
            eprintln!("kmip-conformance: no vector files found");
            return ExitCode::from(EXIT_SETUP);
        }
        Ok(f) => f,
        Err(e) => {
            eprintln!("kmip-conformance: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let results: Vec<Result<(), String>> = if cli.codec_only {
        files
            .iter()
            .map(|f| {
                read_vector_file(f)
                    .map_err(|e| e.to_string())
                    .and_then(|text| kmip_wire::compare::codec_roundtrip_document(&text))
                    .map(|_| ())
            })
            .collect()
    } else {
        match run_against_server(&cli, &files) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kmip-conformance: {e}");
                return ExitCode::from(EXIT_SETUP);
            }
        }
    };
    let mut failed = 0;
    for (file, result) in files.iter().zip(&results) {
        match result {
            Ok(()) => println!("PASS {}", display_name(file)),
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e}", display_name(file));
            }
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_against_server(cli: &Cli, files: &[PathBuf]) -> Result<Vec<Result<(), String>>, String> {
    // clap guarantees these unless --codec-only.
    let (Some(server), Some(ca), Some(cert), Some(key)) =
        (&cli.server, &cli.ca, &cli.cert, &cli.key)
    else {
        return Err("--server, --ca, --cert and --key are required".into());
    };
    let tls = ClientTls::from_files(ca, cert, key).map_err(|e| e.to_string())?;
    let server_name = match &cli.server_name {
        Some(n) => n.clone(),
        None => host_of(server).to_owned(),
    };
    let encoding = match cli.encoding {
        EncodingArg::Ttlv => Encoding::Ttlv,
        EncodingArg::Xml => Encoding::Xml,
        EncodingArg::Json => Encoding::Json,
    };
    let target = Target {
        addr: server.clone(),
        server_name,
        tls,
        transport: if cli.https {
            Transport::Https(encoding)
        } else {
            Transport::Ttlv
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(async {
        let mut results = Vec::with_capacity(files.len());
        for f in files {
            results.push(run_file(f, &target).await.map_err(|e| e.to_string()));
        }
        results
    }))
}

/// The host part of HOST:PORT (`[v6]:port` included).
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}
