#!/usr/bin/env bash
# Lints the fuzz crate (gateway/fuzz: outside the workspace) and runs each of its targets for a
# short bounded time on its committed corpus, on the stable toolchain. Any crash, timeout or
# out-of-memory fails (exit status non-zero); the input is kept in gateway/fuzz/artifacts/<target>/.
#
# cargo-fuzz needs nightly (-Zsanitizer), so the targets are built here with the flags it would
# pass for `--sanitizer none`: coverage instrumentation (sancov, stable `-C` flags), `--cfg
# fuzzing`, debug assertions, and `--target <host>` so that build scripts and proc macros are
# built without them. The build has its own target folder (gateway/fuzz/target, git-ignored).
#
# Environment: FUZZ_SECONDS (default 20) per target; FUZZ_TARGET_DIR to put the build elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzz=gateway/fuzz
manifest=$fuzz/Cargo.toml
seconds=${FUZZ_SECONDS:-20}
target_dir=${FUZZ_TARGET_DIR:-$PWD/$fuzz/target}
host=$(rustc -vV | sed -n 's/^host: //p')
log() { echo "fuzz-smoke: $*" >&2; }

# Every build below shares these flags (also clippy: one set of compiled dependencies).
export RUSTFLAGS="--cfg fuzzing -Cdebug-assertions -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
cargo_fuzz() {
    local command=$1
    shift
    cargo "$command" --locked --manifest-path "$manifest" --release --target "$host" \
        --target-dir "$target_dir" --features request-path "$@"
}

cargo fmt --manifest-path "$manifest" -- --check
cargo_fuzz clippy --all-targets -- -D warnings
cargo_fuzz build --bins

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in decode model request_path; do
    mkdir -p "$fuzz/artifacts/$name" "$work/$name"
    log "$name: ${seconds}s on $(find "$fuzz/corpus/$name" -type f | wc -l) corpus inputs"
    # New inputs go to a scratch folder (the first one named): the committed corpus stays as is.
    if ! "$target_dir/$host/release/$name" "$work/$name" "$fuzz/corpus/$name" \
        -max_total_time="$seconds" -max_len=4096 -timeout=60 -rss_limit_mb=4096 \
        -artifact_prefix="$fuzz/artifacts/$name/" -print_final_stats=1 >"$work/$name.log" 2>&1; then
        tail -n 60 "$work/$name.log" >&2
        log "$name FAILED: the input is in $fuzz/artifacts/$name/ (reproduce: run the binary on it)"
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$work/$name.log" |
        sed "s/^/fuzz-smoke: $name: /" >&2
done
log "all targets ran without a finding"
