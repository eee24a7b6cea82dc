#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's: installs what the tests need
# (SoftHSM2, OpenSC and PostgreSQL's server binaries from apt, PyKMIP and PyYAML in .venv from pip,
# cargo-deny from crates.io)
# idempotently, then runs the checks cheapest first and every test tier. Every cargo command is
# --locked: a Cargo.lock that does not match the manifests fails instead of being rewritten.
# Exit status is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/scripts/install-test-deps.sh
bash deploy/scripts/lint-deploy.sh

export PATH="$PWD/.venv/bin:$PATH"
export KMIP_PYTHON="$PWD/.venv/bin/python"

# Times each step, so CI logs show where the minutes go.
step() {
    local start=$SECONDS
    echo "==> $*" >&2
    "$@"
    echo "==> $((SECONDS - start)) s: $*" >&2
}

step cargo fmt --all -- --check
# Licences, duplicate versions, sources (advisories only with a local RustSec copy: see the script).
step bash scripts/deny.sh
# incompatible_msrv (on by default; named so that it stays denied) flags std APIs newer than the
# rust-version every member inherits.
step cargo clippy --locked --workspace --all-targets -- -D warnings -D clippy::incompatible_msrv
# --keep-going: every crate's doc warnings in one run, not only the first failing crate's.
step env RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --keep-going
# The lock file against rust-version, and a compile with that toolchain when rustup has it.
step bash scripts/msrv.sh
step cargo build --locked --workspace --release --bins
step cargo test --locked --workspace --release --no-fail-fast
# The fuzz crate's fmt and clippy, then each fuzz target briefly on its corpus (stable Rust).
step bash scripts/fuzz-smoke.sh
