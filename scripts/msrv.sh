#!/usr/bin/env bash
# Checks the workspace's declared minimum Rust version (`rust-version` in the root Cargo.toml)
# without downloading a toolchain of that version:
#   1. every workspace member inherits it (clippy's `incompatible_msrv` lint, run by
#      scripts/test-all.sh, reads it from each package: a member without it goes unchecked);
#   2. no package of Cargo.lock that a Linux build compiles declares a higher `rust-version`
#      (packages only built for other platforms, e.g. windows-*, or under `cfg(loom)`, do not
#      count: the gateway is Unix-only and runs on Linux);
#   3. when rustup has a toolchain named like that version (`1.91`, `1.91.0`), the workspace
#      is also checked with it (`cargo +<toolchain> check`), in its own target folder.
# Exit status is non-zero when any of these fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# The targets the gateway is built for: x86_64 and arm64 Linux.
targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu)
filters=()
for t in "${targets[@]}"; do filters+=(--filter-platform "$t"); done

metadata=$(mktemp)
trap 'rm -f "$metadata"' EXIT
cargo metadata --locked --format-version 1 "${filters[@]}" >"$metadata"

msrv=$(
    python3 - "$metadata" <<'EOF'
import json
import sys
import tomllib

def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

with open("Cargo.toml", "rb") as f:
    declared = tomllib.load(f)["workspace"]["package"]["rust-version"]
with open(sys.argv[1]) as f:
    meta = json.load(f)

members = set(meta["workspace_members"])
# --filter-platform leaves in the resolve only what those targets build.
built = {node["id"] for node in meta["resolve"]["nodes"]}
errors = []
for pkg in meta["packages"]:
    rv = pkg.get("rust_version")
    if pkg["id"] in members:
        if rv != declared:
            errors.append(f"{pkg['name']}: rust-version {rv!r}, not the workspace's {declared} "
                          "(add `rust-version.workspace = true`)")
    elif pkg["id"] in built and rv and version(rv) > version(declared):
        errors.append(f"{pkg['name']} {pkg['version']} needs Rust {rv} > {declared}")
for e in sorted(errors):
    print(f"msrv: {e}", file=sys.stderr)
if errors:
    sys.exit(f"msrv: raise rust-version in Cargo.toml to what the lock file needs, "
             f"or pin older dependencies")
print(declared)
EOF
)
echo "msrv: the lock file is within Rust $msrv" >&2

toolchain=""
if command -v rustup >/dev/null; then
    # Names look like `1.91.0-x86_64-unknown-linux-gnu`; `1.91` and `1.91.0` both match 1.91.
    toolchain=$(rustup toolchain list |
        awk -v v="$msrv" '{ n = $1; sub(/-.*/, "", n) } n == v || n == v ".0" { print $1; exit }')
fi
if [ -n "$toolchain" ]; then
    echo "msrv: cargo +$toolchain check --workspace --all-targets" >&2
    cargo "+$toolchain" check --workspace --all-targets --locked \
        --target-dir "${CARGO_TARGET_DIR:-target}/msrv"
else
    echo "msrv: no Rust $msrv toolchain installed (rustup toolchain list): compile check skipped" >&2
fi
