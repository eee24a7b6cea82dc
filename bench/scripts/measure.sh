#!/usr/bin/env bash
# Reproduces the results table of bench/README.md: the release gateway (vault backend) alone and
# compared with PyKMIP's server, plus the bare-TLS baseline and idle connections.
# Needs: `cargo build --release -p kmip-gateway -p kmip-bench` and `.venv/bin/pykmip-server`
# (python3 -m venv .venv && .venv/bin/pip install pykmip), or PYKMIP=path/to/pykmip-server.
# Writes JSON to $OUT (default: a fresh temporary folder, printed at the end), and next to each
# NAME.json the figures NAME.svg (latency percentile curves) and NAME-throughput.svg (per
# second). Each server runs in a fresh folder per scenario.
# PARTS selects what runs (default: all of "alone get256 health echo idle pykmip"). The SoftHSM
# figures come from measure-softhsm.sh. PARTS=cosmian compares with Cosmian KMS, built out of
# tree (never part of this repository): COSMIAN=path/to/cosmian_kms (its non-FIPS server build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
PYKMIP=${PYKMIP:-$ROOT/.venv/bin/pykmip-server}
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/results}
DURATION=${DURATION:-5}
PARTS=${PARTS:-alone get256 health echo idle pykmip}
part() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do stop "$p"; done
  rm -rf "$WORK/gw"* "$WORK/py"* "$WORK/ck"*
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" || true

# Shared development PKI: created by a first gateway, then copied into every server's folder.
PKI=$WORK/pki

# Starts a gateway in a fresh folder; sets GW_ADDR and GW_PID. With a second argument (TOML
# lines for [limits]), the gateway runs on a configuration file equal to the embedded default
# plus those limits; that needs the shared PKI to exist already.
start_gateway() {
  local dir=$WORK/gw-$1 config=()
  mkdir -p "$dir/kmip-gateway-data"
  [ -d "$PKI" ] && cp -r "$PKI" "$dir/kmip-gateway-data/pki"
  if [ -n "${2:-}" ]; then
    local data=$dir/kmip-gateway-data
    cat >"$dir/gateway.toml" <<CONF
listen = "127.0.0.1:0"
data_dir = "$data"
[tls]
cert = "$data/pki/server.pem"
key = "$data/pki/server.key"
[[users]]
name = "purefa"
cas = ["$data/pki/ca.pem"]
[limits]
$2
CONF
    config=(--config "$dir/gateway.toml")
    # A configuration file's data folder is created by `init`, never by `serve`.
    "$BIN/kmip-gateway" init --config "$dir/gateway.toml" >"$dir/init.log" 2>&1 ||
      { cat "$dir/init.log"; exit 1; }
  fi
  (cd "$dir" && NO_COLOR=1 exec "$BIN/kmip-gateway" serve "${config[@]}" --listen 127.0.0.1:0 \
      --admin-listen off >/dev/null 2>"$dir/log") &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 600); do
    GW_ADDR=$(grep -o "KMIP listener ready addr=[0-9.:]*" "$dir/log" 2>/dev/null | sed "s/.*addr=//" || true)
    [ -n "$GW_ADDR" ] && break
    sleep 0.1
  done
  [ -n "$GW_ADDR" ] || { cat "$dir/log"; exit 1; }
  [ -d "$PKI" ] || cp -r "$dir/kmip-gateway-data/pki" "$PKI"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to 30 s for a server to listen on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 300); do
    ss -ltn | grep -q "127.0.0.1:$1 " && break
    sleep 0.1
  done
}

# Starts PyKMIP's server with a fresh database; sets PY_ADDR and PY_PID.
start_pykmip() {
  local dir=$WORK/py-$1 port
  port=$(free_port)
  mkdir -p "$dir/policies"
  cat >"$dir/server.conf" <<CONF
[server]
hostname=127.0.0.1
port=$port
certificate_path=$PKI/server.pem
key_path=$PKI/server.key
ca_path=$PKI/ca.pem
auth_suite=TLS1.2
enable_tls_client_auth=True
database_path=$dir/pykmip.db
policy_path=$dir/policies
logging_level=WARNING
CONF
  "$PYKMIP" -f "$dir/server.conf" -l "$dir/server.log" >"$dir/out.log" 2>&1 &
  PY_PID=$!
  PIDS+=("$PY_PID")
  wait_port "$port"
  PY_ADDR=127.0.0.1:$port
}

# Starts Cosmian KMS's KMIP socket server (SQLite, mutual TLS on the shared PKI, the client's CN
# as its user, warnings only: its per-request log lines cost it throughput); sets CK_ADDR and
# CK_PID.
start_cosmian() {
  local dir=$WORK/ck-$1 port
  port=$(free_port)
  mkdir -p "$dir/db" "$dir/tmp"
  (cd "$dir" && KMS_RUST_LOG=warn exec "$COSMIAN" --database-type sqlite --sqlite-path "$dir/db" \
      --root-data-path "$dir" --tmp-path "$dir/tmp" --hostname 127.0.0.1 --port "$(free_port)" \
      --socket-server-start --socket-server-hostname 127.0.0.1 --socket-server-port "$port" \
      --tls-cert-file "$PKI/server.pem" --tls-key-file "$PKI/server.key" \
      --clients-ca-cert-file "$PKI/ca.pem" >"$dir/log" 2>&1) &
  CK_PID=$!
  PIDS+=("$CK_PID")
  wait_port "$port"
  CK_ADDR=127.0.0.1:$port
}

# PyKMIP serves each connection in a child process that outlives its parent: kill children first.
stop() {
  pkill -9 -P "$1" 2>/dev/null || true
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

bench() {
  local name=$1; shift
  echo "### $name: kmip-bench $*"
  "$BIN/kmip-bench" --ca "$PKI/ca.pem" --cert "$PKI/client-purefa.pem" \
    --key "$PKI/client-purefa.key" --json "$OUT/$name.json" --plot "$OUT/$name.svg" \
    --plot-throughput "$OUT/$name-throughput.svg" "$@"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# The development PKI, made by a first gateway.
start_gateway pki
stop "$GW_PID"

# Gateway alone.
if part alone; then
start_gateway get
bench gw-get --target "$GW_ADDR" --scenario get --preload 1000 --connections 4 --concurrency 8 --duration "$DURATION"
stop "$GW_PID"
start_gateway lifecycle
bench gw-lifecycle --target "$GW_ADDR" --scenario lifecycle --connections 4 --concurrency 8 --duration "$DURATION"
stop "$GW_PID"
start_gateway locate
bench gw-locate-10k --target "$GW_ADDR" --scenario locate --preload 10000 --connections 4 --concurrency 8 --duration "$DURATION"
stop "$GW_PID"
fi

# get at 256 connections below saturation: a closed loop finds the maximum, then an open loop
# (--rate) at 70 % of it measures the latency spread p99/p50.
if part get256; then
# All 256 connections come from 127.0.0.1: lift the per-source limit to the total.
start_gateway get256 "max_connections_per_source = 10000"
bench gw-get-256-closed --target "$GW_ADDR" --scenario get --preload 1000 --connections 256 \
  --concurrency 256 --duration "$DURATION"
RATE=$(python3 -c 'import json,sys; print(round(0.7 * json.load(open(sys.argv[1]))["result"]["throughput_per_s"]))' "$OUT/gw-get-256-closed.json")
bench gw-get-256-open --target "$GW_ADDR" --scenario get --preload 1000 --connections 256 \
  --concurrency 256 --rate "$RATE" --duration "$DURATION"
python3 - "$OUT/gw-get-256-open.json" <<'PY'
import json, sys
l = json.load(open(sys.argv[1]))["result"]["latency_us"]
print(f"get, 256 connections, open loop: p50 {l['p50']} us, p99 {l['p99']} us, p99/p50 {l['p99'] / l['p50']:.2f} (goal <= 5)")
PY
stop "$GW_PID"
fi

# health (new TLS connection + Locate per request) vs the bare mutual-TLS handshake, in
# alternating rounds (gateway, echo server, gateway, echo server); the ratio uses the sums.
if part health; then
start_gateway health
"$BIN/kmip-bench" tls-echo-server --listen 127.0.0.1:0 --cert "$PKI/server.pem" \
  --key "$PKI/server.key" --ca "$PKI/ca.pem" 2>"$WORK/echo.log" &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
sleep 1
ECHO_ADDR=$(sed -n 's/.*addr=//p' "$WORK/echo.log")
for round in 1 2; do
  bench "gw-health-r$round" --target "$GW_ADDR" --scenario health --preload 100 --concurrency 8 \
    --duration "$DURATION"
  bench "tls-handshake-r$round" --target "$ECHO_ADDR" --scenario tls-handshake --concurrency 8 \
    --duration "$DURATION"
done
python3 - "$OUT" <<'PY'
import json, sys
rate = lambda n: sum(json.load(open(f"{sys.argv[1]}/{n}-r{r}.json"))["result"]["throughput_per_s"] for r in (1, 2))
print(f"health / tls-handshake: {rate('gw-health'):.0f} / {rate('tls-handshake'):.0f} = {rate('gw-health') / rate('tls-handshake'):.2f} (goal >= 0.8)")
PY
stop "$ECHO_PID"
stop "$GW_PID"
fi

# get and locate on persistent connections vs the request limit: an echo server that answers
# each framed request with a pre-encoded Get response. Rounds alternate (gateway, echo, gateway,
# echo) so that drift in the machine's load hits both; the ratios use the sums.
if part echo; then
start_gateway echo-gw
"$BIN/kmip-bench" tls-echo-server --echo --listen 127.0.0.1:0 --cert "$PKI/server.pem" \
  --key "$PKI/server.key" --ca "$PKI/ca.pem" 2>"$WORK/echo-req.log" &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
sleep 1
ECHO_ADDR=$(sed -n 's/.*addr=//p' "$WORK/echo-req.log")
for round in 1 2; do
  bench "gw-get-r$round" --target "$GW_ADDR" --scenario get --preload 1000 --connections 4 \
    --concurrency 4 --duration "$DURATION"
  bench "gw-locate-r$round" --target "$GW_ADDR" --scenario locate --preload 1000 --connections 4 \
    --concurrency 4 --duration "$DURATION"
  bench "echo-r$round" --target "$ECHO_ADDR" --scenario echo --connections 4 --concurrency 4 \
    --duration "$DURATION"
done
python3 - "$OUT" <<'PY'
import json, sys
rate = lambda n: sum(json.load(open(f"{sys.argv[1]}/{n}-r{r}.json"))["result"]["throughput_per_s"] for r in (1, 2))
echo = rate("echo")
for op in ("get", "locate"):
    print(f"{op} / echo: {rate('gw-' + op):.0f} / {echo:.0f} = {rate('gw-' + op) / echo:.2f} (goal >= 0.8)")
PY
stop "$ECHO_PID"
stop "$GW_PID"
fi

# Idle connections: server RSS per connection.
if part idle; then
for n in 1000 10000; do
  # Every bench connection comes from 127.0.0.1: lift the per-source limits to the totals.
  start_gateway "idle-$n" "max_connections_per_source = 10000
max_handshakes_per_source = 256"
  bench "gw-idle-$n" --target "$GW_ADDR" --scenario idle --connections "$n" --concurrency 16 \
    --count 1 --server-pid "$GW_PID"
  stop "$GW_PID"
done
fi

# Gateway (A) vs PyKMIP (B), alternating rounds A, B, A, B. PyKMIP is slow to preload and its
# Locate is linear: the comparison uses 100 keys for get and 1,000 for locate.
if part pykmip; then
for s in "get --preload 100" "lifecycle" "locate --preload 1000"; do
  name=${s%% *}
  start_gateway "cmp-$name"
  start_pykmip "cmp-$name"
  # shellcheck disable=SC2086
  bench "cmp-$name" --target "$GW_ADDR" --compare "$PY_ADDR" --scenario $s \
    --connections 4 --concurrency 4 --duration "$DURATION"
  stop "$GW_PID"
  stop "$PY_PID"
done
fi

# Gateway (A) vs Cosmian KMS (B), alternating rounds; each on a fresh store per scenario.
if part cosmian; then
: "${COSMIAN:?PARTS=cosmian needs COSMIAN=path/to/cosmian_kms}"
# Lifecycle also at 32 in flight: durable writes share group commits as clients add up.
for s in "lifecycle 4" "lifecycle 32" "get 4 --preload 1000"; do
  read -r scenario n rest <<<"$s"
  name=$scenario-$n
  start_gateway "ck-$name"
  start_cosmian "$name"
  # shellcheck disable=SC2086
  bench "ck-$name" --target "$GW_ADDR" --compare "$CK_ADDR" --scenario "$scenario" $rest \
    --connections "$n" --concurrency "$n" --duration "$DURATION"
  stop "$GW_PID"
  stop "$CK_PID"
done
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "JSON results in $OUT"
