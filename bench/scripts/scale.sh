#!/usr/bin/env bash
# Cost growth with the number of objects (bench/README.md, "Scale"): for each size in SIZES, a
# release gateway on a fresh vault is preloaded with that many named AES-256 keys (each in an
# Object Group of 10 and an `x-bench-bucket` of 100, and read once), then measured:
#   locate-attr  Locate by algorithm, length and bucket: 100 hits, two filter attributes matching
#                every key (the indexed-Locate goal: p99 <= 10 ms at a million);
#   get, locate  (by Name and by Object Group), lifecycle: throughput and latency;
#   RSS          of the gateway empty, after the preload (before any Locate fills the bounded
#                Locate cache), and after a restart, with the bytes per object they imply;
#   start-up     the restart's `open_ms` (backend open + indexes, logged by the gateway) and the
#                wall time until the listener is ready.
# Prints one table row per size and the load average around each. JSON reports go to $OUT.
# Needs: `cargo build --release -p kmip-gateway -p kmip-bench` (or BIN=target/debug), python3.
# Settings: SIZES (default "1000 10000 100000 1000000"), DURATION (s per scenario, default 5),
# CONNECTIONS (4), CONCURRENCY (8), PRELOAD_CONCURRENCY (32), OUT.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(cd "${BIN:-$ROOT/target/release}" && pwd)
SIZES=${SIZES:-1000 10000 100000 1000000}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-4}
CONCURRENCY=${CONCURRENCY:-8}
PRELOAD_CONCURRENCY=${PRELOAD_CONCURRENCY:-32}
# How long a gateway may take to open its store before the run is abandoned.
readonly START_TIMEOUT_S=300
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
GW_PID=""
cleanup() {
  [ -n "$GW_PID" ] && kill -9 "$GW_PID" 2>/dev/null || true
  rm -rf "$WORK/gw"
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Starts (or restarts) the gateway in $WORK/gw; sets GW_ADDR and GW_PID. The first start makes the
# development PKI; the configuration lifts the per-user object limit above the largest size.
start_gateway() {
  local dir=$WORK/gw log
  mkdir -p "$dir"
  log=$dir/log.$(date +%s%N)
  if [ ! -f "$dir/gateway.toml" ]; then
    (cd "$dir" && exec "$BIN/kmip-gateway" serve --listen 127.0.0.1:0 --admin-listen off >/dev/null 2>"$dir/pki.log") &
    GW_PID=$!
    wait_ready "$dir/pki.log"
    stop_gateway
    cat >"$dir/gateway.toml" <<CONF
listen = "127.0.0.1:0"
data_dir = "$dir/kmip-gateway-data"
[tls]
cert = "$dir/kmip-gateway-data/pki/server.pem"
key = "$dir/kmip-gateway-data/pki/server.key"
[[users]]
name = "purefa"
cas = ["$dir/kmip-gateway-data/pki/ca.pem"]
[limits]
max_objects_per_user = 100000000
CONF
  fi
  START_NS=$(date +%s%N)
  (cd "$dir" && NO_COLOR=1 exec "$BIN/kmip-gateway" serve --config "$dir/gateway.toml" \
      --admin-listen off >/dev/null 2>"$log") &
  GW_PID=$!
  wait_ready "$log"
  READY_MS=$(( ($(date +%s%N) - START_NS) / 1000000 ))
  OPEN_MS=$(grep -o 'open_ms=[0-9]*' "$log" | tail -1 | cut -d= -f2)
}

wait_ready() {
  GW_ADDR=""
  for _ in $(seq $((START_TIMEOUT_S * 10))); do
    GW_ADDR=$(grep -o "KMIP listener ready addr=[0-9.:]*" "$1" 2>/dev/null | sed "s/.*addr=//" || true)
    [ -n "$GW_ADDR" ] && return 0
    kill -0 "$GW_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$1"
  exit 1
}

# A clean stop (SIGTERM: in-flight requests finish, the vault closes).
stop_gateway() {
  kill "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
  GW_PID=""
}

bench() {
  local name=$1; shift
  P=$WORK/gw/kmip-gateway-data/pki
  "$BIN/kmip-bench" --quiet --target "$GW_ADDR" --ca "$P/ca.pem" --cert "$P/client-purefa.pem" \
    --key "$P/client-purefa.key" --json "$OUT/$name.json" "$@" >"$OUT/$name.txt"
  local errors
  errors=$(field "$OUT/$name.json" errors)
  [ "$errors" = 0 ] || echo "WARNING: $name had $errors errors (see $OUT/$name.txt)" >&2
}

field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["result"]; print(eval(sys.argv[2], {}, r))' "$@"; }

printf '| objects | preload s | get/s | locate/s | locate-attr p50 / p99 µs | lifecycle/s | RSS empty MB | RSS loaded MB | bytes/object | RSS after restart MB | open ms | ready ms | load avg |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for n in $SIZES; do
  rm -rf "$WORK/gw"
  start_gateway
  load_before=$(loadavg)
  rss0=$(rss_kb "$GW_PID")
  t0=$(date +%s)
  # The preload alone (and one Locate), so that "loaded" is the objects' memory, before Locate
  # results fill the cache (up to its 64 MiB bound, whatever the number of objects).
  bench "preload-$n" --scenario locate-attr --preload "$n" --preload-concurrency "$PRELOAD_CONCURRENCY" \
    --fixture-save "$WORK/fixture.json" --count 1
  preload_s=$(( $(date +%s) - t0 ))
  rss1=$(rss_kb "$GW_PID")
  bench "attr-$n" --scenario locate-attr --fixture-load "$WORK/fixture.json" \
    --connections "$CONNECTIONS" --concurrency "$CONCURRENCY" --duration "$DURATION"
  for s in get locate; do
    bench "$s-$n" --scenario "$s" --fixture-load "$WORK/fixture.json" --connections "$CONNECTIONS" \
      --concurrency "$CONCURRENCY" --duration "$DURATION"
  done
  bench "lifecycle-$n" --scenario lifecycle --connections "$CONNECTIONS" --concurrency "$CONCURRENCY" \
    --duration "$DURATION"
  stop_gateway
  start_gateway
  sleep 1
  rss2=$(rss_kb "$GW_PID")
  stop_gateway
  printf '| %s | %s | %.0f | %.0f | %s / %s | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %s | %s → %s |\n' \
    "$n" "$preload_s" "$(field "$OUT/get-$n.json" throughput_per_s)" \
    "$(field "$OUT/locate-$n.json" throughput_per_s)" \
    "$(field "$OUT/attr-$n.json" 'latency_us["p50"]')" "$(field "$OUT/attr-$n.json" 'latency_us["p99"]')" \
    "$(field "$OUT/lifecycle-$n.json" throughput_per_s)" \
    "$(echo "$rss0 / 1024" | bc -l)" "$(echo "$rss1 / 1024" | bc -l)" \
    "$(echo "($rss1 - $rss0) * 1024 / $n" | bc -l)" "$(echo "$rss2 / 1024" | bc -l)" \
    "$OPEN_MS" "$READY_MS" "$load_before" "$(loadavg)"
done
echo "JSON reports in $OUT"
