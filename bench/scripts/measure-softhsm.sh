#!/usr/bin/env bash
# Reproduces the SoftHSM figures of bench/README.md: every scenario against the release gateway
# on the PKCS#11 backend (SoftHSM2), and `get` over the gateway against the raw cryptoki baseline
# (`kmip-bench cryptoki-read`) on the same token, with the same number of keys and concurrency.
# Needs: `cargo build --release -p kmip-gateway -p kmip-bench`, softhsm2 and opensc (pkcs11-tool,
# used by deploy/softhsm/setup-token.sh). Writes JSON to $OUT (default: a fresh temporary
# folder, printed at the end), and next to each NAME.json the figures NAME.svg (latency
# percentile curves) and NAME-throughput.svg; the get/cryptoki-read comparison is also drawn on
# one pair of figures, hsm-get-vs-raw.svg and hsm-get-vs-raw-throughput.svg. Each scenario gets
# a fresh token and a fresh gateway folder.
#
#   DURATION   seconds per measured round (default 5)
#   KEYS       keys of the get / cryptoki-read comparison (default 100)
#   CONC       concurrency of that comparison: connections = tasks = threads (default 8)
#   PRELOAD    keys preloaded for rdl-boot, health, locate and mixed (default 100): each is a
#              SoftHSM keygen plus a companion object, about 20/s on this disk
#   PARTS      what to run: "compare" (get vs cryptoki-read), "scenarios" (default: both)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/results}
DURATION=${DURATION:-5}
KEYS=${KEYS:-100}
CONC=${CONC:-8}
PRELOAD=${PRELOAD:-100}
PARTS=${PARTS:-compare scenarios}
MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
LABEL=kmip-bench
mkdir -p "$OUT"
PIDS=()
stop() {
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  for p in "${PIDS[@]}"; do stop "$p"; done
  rm -rf "$WORK/gw"* "$WORK/hsm"*
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" || true
command -v softhsm2-util >/dev/null || { echo "softhsm2-util missing: apt-get install softhsm2 opensc" >&2; exit 1; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# The development PKI of a first (vault) gateway, shared by every gateway below.
PKI=$WORK/pki
(cd "$WORK" && mkdir -p gw-pki && cd gw-pki && NO_COLOR=1 exec "$BIN/kmip-gateway" serve \
   --listen 127.0.0.1:0 --admin-listen off >/dev/null 2>log) &
PKI_PID=$!
PIDS+=("$PKI_PID")
for _ in $(seq 600); do
  grep -q "KMIP listener ready" "$WORK/gw-pki/log" 2>/dev/null && break
  sleep 0.1
done
cp -r "$WORK/gw-pki/kmip-gateway-data/pki" "$PKI"
stop "$PKI_PID"

# Creates a fresh token in $WORK/hsm-NAME; sets HSM_DIR and exports SOFTHSM2_CONF.
make_token() {
  HSM_DIR=$WORK/hsm-$1
  export "$("$ROOT/deploy/softhsm/setup-token.sh" "$HSM_DIR" "$LABEL" 2>/dev/null)"
}

# Starts a gateway on the token in $HSM_DIR; sets GW_ADDR and GW_PID. A second argument holds
# TOML lines for [limits].
start_gateway() {
  local dir=$WORK/gw-$1
  mkdir -p "$dir/data"
  cat >"$dir/gateway.toml" <<CONF
listen = "127.0.0.1:0"
data_dir = "$dir/data"
[tls]
cert = "$PKI/server.pem"
key = "$PKI/server.key"
[[users]]
name = "purefa"
cas = ["$PKI/ca.pem"]
[audit]
enabled = true
[backend]
kind = "pkcs11"
module = "$MODULE"
token_label = "$LABEL"
pin_file = "$HSM_DIR/user.pin"
pool_size = $CONC
acquire_timeout_ms = 5000
[limits]
${2:-}
CONF
  # A configuration file's data folder is created by `init`, never by `serve`.
  "$BIN/kmip-gateway" init --config "$dir/gateway.toml" >"$dir/init.log" 2>&1 ||
    { cat "$dir/init.log"; exit 1; }
  (cd "$dir" && NO_COLOR=1 exec "$BIN/kmip-gateway" serve --config "$dir/gateway.toml" \
      --admin-listen off >/dev/null 2>"$dir/log") &
  GW_PID=$!
  PIDS+=("$GW_PID")
  GW_ADDR=
  for _ in $(seq 600); do
    GW_ADDR=$(grep -o 'KMIP listener ready addr=[0-9.:]*' "$dir/log" 2>/dev/null | sed 's/.*addr=//' || true)
    [ -n "$GW_ADDR" ] && break
    sleep 0.1
  done
  [ -n "$GW_ADDR" ] || { cat "$dir/log"; exit 1; }
}

bench() {
  local name=$1; shift
  echo "### $name: kmip-bench $*"
  "$BIN/kmip-bench" --ca "$PKI/ca.pem" --cert "$PKI/client-purefa.pem" \
    --key "$PKI/client-purefa.key" --json "$OUT/$name.json" --plot "$OUT/$name.svg" \
    --plot-throughput "$OUT/$name-throughput.svg" "$@"
}

raw() {
  local name=$1; shift
  echo "### $name: kmip-bench cryptoki-read $*"
  "$BIN/kmip-bench" cryptoki-read --module "$MODULE" --token-label "$LABEL" \
    --pin-file "$HSM_DIR/user.pin" --json "$OUT/$name.json" --plot "$OUT/$name.svg" \
    --plot-throughput "$OUT/$name-throughput.svg" "$@"
}


# get over the gateway vs raw C_GetAttributeValue on the same token, alternating (G, R, G, R).
# The raw keys are generated in the first raw run (not timed) and reused by the second.
if [[ " $PARTS " == *" compare "* ]]; then
make_token get
for round in 1 2; do
  start_gateway "get-$round"
  bench "hsm-get-$round" --target "$GW_ADDR" --scenario get --preload "$KEYS" \
    --connections "$CONC" --concurrency "$CONC" --duration "$DURATION"
  stop "$GW_PID"
  raw "hsm-raw-$round" --keys "$KEYS" --concurrency "$CONC" --duration "$DURATION"
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
t = lambda n: json.load(open(f"{out}/{n}.json"))["result"]["throughput_per_s"]
g = (t("hsm-get-1") + t("hsm-get-2")) / 2
r = (t("hsm-raw-1") + t("hsm-raw-2")) / 2
print(f"get over the gateway {g:.0f}/s, raw cryptoki {r:.0f}/s, ratio {g / r:.3f} (goal >= 0.8)")
PY
# Both on the same axes, in the order they ran (G, R, G, R).
"$BIN/kmip-bench" plot "$OUT/hsm-get-1.json" "$OUT/hsm-raw-1.json" "$OUT/hsm-get-2.json" \
  "$OUT/hsm-raw-2.json" --plot "$OUT/hsm-get-vs-raw.svg" \
  --plot-throughput "$OUT/hsm-get-vs-raw-throughput.svg"
fi

# Every scenario against the gateway on SoftHSM, each on a fresh token.
if [[ " $PARTS " == *" scenarios "* ]]; then
for s in "rdl-boot --preload $PRELOAD --concurrency 8" \
         "health --preload $PRELOAD --concurrency 8" \
         "lifecycle --connections 4 --concurrency 8" \
         "locate --preload $PRELOAD --connections 4 --concurrency 8" \
         "mixed --preload $PRELOAD --connections 4 --concurrency 8"; do
  name=${s%% *}
  make_token "$name"
  start_gateway "$name"
  # shellcheck disable=SC2086
  bench "hsm-$name" --target "$GW_ADDR" --scenario $s --duration "$DURATION"
  stop "$GW_PID"
done
make_token idle
# Every bench connection comes from 127.0.0.1: lift the per-source limits to the totals.
start_gateway idle "max_connections_per_source = 10000
max_handshakes_per_source = 256"
bench hsm-idle-1000 --target "$GW_ADDR" --scenario idle --connections 1000 --concurrency 16 \
  --count 1 --server-pid "$GW_PID"
stop "$GW_PID"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "JSON results in $OUT"
