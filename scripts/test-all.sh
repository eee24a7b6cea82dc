#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's: installs what the tests need
# (SoftHSM2 and OpenSC from apt, PyKMIP and PyYAML in .venv from pip) idempotently, then runs the
# deployment-file lint, formatting, lint and every test tier. Exit status is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/scripts/install-test-deps.sh
bash deploy/scripts/lint-deploy.sh

export PATH="$PWD/.venv/bin:$PATH"
export KMIP_PYTHON="$PWD/.venv/bin/python"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --release --bins
cargo test --workspace --release --no-fail-fast
