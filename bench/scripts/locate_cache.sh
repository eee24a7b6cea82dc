#!/usr/bin/env bash
# Reproduces the "Locate cache" section of bench/README.md: two release gateways on the vault
# backend, A with the default Locate cache and B with `[locate_cache] max_entries = 0` (cache
# off), the same kmip-bench scenario against both in alternating rounds (A, B, A, B).
# Needs: `cargo build --release -p kmip-gateway -p kmip-bench`. Writes JSON and the gateways'
# cache counters to $OUT (default: a fresh temporary folder, printed at the end).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/results}
DURATION=${DURATION:-5}
PRELOAD=${PRELOAD:-10000}
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK/gw"* "$WORK/pki"
}
trap cleanup EXIT

# Waits for "<what> ready addr=HOST:PORT" in log $1 and prints the address.
ready_addr() {
  local log=$1 what=$2 addr=""
  for _ in $(seq 600); do
    addr=$(grep -o "$what ready addr=[0-9.:]*" "$log" | sed 's/.*addr=//' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log" >&2; exit 1; }
  echo "$addr"
}

# The development PKI of a first gateway (embedded default), shared by both gateways below.
mkdir -p "$WORK/gw-pki"
(cd "$WORK/gw-pki" && NO_COLOR=1 exec "$BIN/kmip-gateway" serve --listen 127.0.0.1:0 \
  --admin-listen off >/dev/null 2>log) &
PIDS+=("$!")
ready_addr "$WORK/gw-pki/log" "KMIP listener" >/dev/null
cp -r "$WORK/gw-pki/kmip-gateway-data/pki" "$WORK/pki"
PKI=$WORK/pki

# Starts gateway $1 with extra configuration $2; sets ADDR_$1 and ADMIN_$1.
start_gateway() {
  local name=$1 extra=$2 dir=$WORK/gw-$1
  mkdir -p "$dir"
  cat >"$dir/gateway.toml" <<CONF
listen = "127.0.0.1:0"
data_dir = "$dir/data"
[tls]
cert = "$PKI/server.pem"
key = "$PKI/server.key"
[[users]]
name = "purefa"
cas = ["$PKI/ca.pem"]
$extra
CONF
  # A configuration file's data folder is created by `init`, never by `serve`.
  "$BIN/kmip-gateway" init --config "$dir/gateway.toml" >"$dir/init.log" 2>&1 ||
    { cat "$dir/init.log"; exit 1; }
  (cd "$dir" && NO_COLOR=1 exec "$BIN/kmip-gateway" serve --config "$dir/gateway.toml" \
    --admin-listen 127.0.0.1:0 >/dev/null 2>log) &
  PIDS+=("$!")
  printf -v "ADDR_$name" '%s' "$(ready_addr "$dir/log" "KMIP listener")"
  printf -v "ADMIN_$name" '%s' "$(ready_addr "$dir/log" "admin listener")"
}

start_gateway A ""
start_gateway B $'[locate_cache]\nmax_entries = 0'

counters() {
  curl -s "http://$1/metrics" | grep -E '^kmip_locate_cache_(hits|misses|evictions|invalidations)_total' || true
}

bench() {
  local name=$1; shift
  echo "### $name: kmip-bench --target A --compare B $*"
  "$BIN/kmip-bench" --target "$ADDR_A" --compare "$ADDR_B" --ca "$PKI/ca.pem" \
    --cert "$PKI/client-purefa.pem" --key "$PKI/client-purefa.key" \
    --duration "$DURATION" --rounds 2 --json "$OUT/$name.json" "$@"
  echo "A counters after $name:"; counters "$ADMIN_A" | tee "$OUT/$name.counters"
}

# 1. $PRELOAD named keys (groups of 10) created with 8 connections, then Locate by a random Name
#    or Object Group among them: A's cache fills as names repeat.
bench random --scenario locate --preload "$PRELOAD" --connections 4 --concurrency 4
# 2. The same Name and the same Object Group over and over (one more key preloaded; the store
#    keeps the keys of run 1): every Locate after the first is a hit on A.
bench same-c1 --scenario locate --preload 1 --connections 1 --concurrency 1
bench same-c4 --scenario locate --preload 1 --connections 4 --concurrency 4
# 3. Locates between Creates: each Create adds an object, which invalidates every cached result,
#    so A's Locates are misses plus the cache's bookkeeping.
bench after-write --scenario mixed --mix locate=1,create=1 --preload 1 --connections 4 \
  --concurrency 4
echo "JSON results in $OUT"
