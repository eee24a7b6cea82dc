#!/usr/bin/env bash
# cargo-deny on the workspace's dependency tree, with the policy in deny.toml: licences, bans
# (duplicate versions only warn) and sources (crates.io only). Installs cargo-deny from crates.io
# when it is missing or older than the version below.
#
# Advisories: the RustSec database is a git repository on GitHub, which CI machines cannot
# reach, so `cargo deny check advisories` runs only when a copy is already in the folder
# deny.toml names ($KMIP_ADVISORY_DBS, default $CARGO_HOME/advisory-dbs: e.g. made elsewhere by
# `cargo deny fetch` and copied in); it is never fetched here (--offline), and otherwise skipped
# with a note.
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

# Without the inclusion graphs, every duplicate version's tree would fill the log; run
# `cargo deny check bans` to see them.
cargo deny --locked check --hide-inclusion-graph licenses bans sources

db_root=${KMIP_ADVISORY_DBS:-$cargo_home/advisory-dbs}
# cargo-deny 0.20 keeps the clone of the default database in advisory-db-3157b0e258782691 (a hash
# of its URL); a clone holds one folder per crate under crates/.
if [ -d "$db_root/advisory-db-3157b0e258782691/crates" ]; then
    cargo deny --locked --offline check --hide-inclusion-graph advisories
else
    log "advisories skipped: no RustSec database in $db_root (it is cloned from GitHub, which" \
        "this machine cannot reach; copy one there or set KMIP_ADVISORY_DBS)"
fi
