#!/usr/bin/env bash
# cargo-deny on the workspace's dependency tree, with the policy in deny.toml: licences, bans
# (duplicate versions only warn) and sources (crates.io only). Installs cargo-deny from crates.io
# when it is missing or older than the version below.
#
# Advisories: the RustSec database is a git repository on GitHub, which CI machines cannot
# reach, so `cargo deny check advisories` runs only when a copy is already in the folder
# deny.toml names ($KMIP_ADVISORY_DBS, default $CARGO_HOME/advisory-dbs: e.g. made elsewhere by
# `cargo deny fetch` and copied in); it is never fetched here, and otherwise skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."

# The version deny.toml is written for.
want=0.20.2
cargo_home=${CARGO_HOME:-$HOME/.cargo}
log() { echo "deny: $*" >&2; }

have=$(cargo deny --version 2>/dev/null | awk '{ print $2 }' || true)
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n 1)" != "$want" ]; then
    log "installing cargo-deny $want (found: ${have:-none})"
    cargo install --locked cargo-deny --version "$want"
fi

cargo deny --locked check licenses bans sources

db_root=${KMIP_ADVISORY_DBS:-$cargo_home/advisory-dbs}
# A database clone holds one folder per crate under crates/.
if [ -n "$(find "$db_root" -mindepth 2 -maxdepth 2 -type d -name crates 2>/dev/null)" ]; then
    cargo deny --locked check --disable-fetch advisories
else
    log "advisories skipped: no RustSec database in $db_root (it is cloned from GitHub, which" \
        "this machine cannot reach; copy one there or set KMIP_ADVISORY_DBS)"
fi
