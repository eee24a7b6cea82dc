#!/usr/bin/env bash
# The gateway as a KMIP proxy (bench/README.md, "The KMIP proxy"): a release gateway with
# `[backend] kind = "kmip"` in front of an upstream, against that upstream directly, with
# kmip-bench --compare (A = through the proxy, B = the upstream itself; alternating rounds):
#   get       Get of preloaded keys: what the proxy's extra hop costs (goal: p50 at most +30 %);
#   locate    Locate by Name and by Object Group: the proxy answers from its own store and cache
#             (goal: at least 10x the upstream's own Locate);
#   health    new TLS connection + one Locate.
# UPSTREAM=gateway (default: another kmip-gateway on its vault) or UPSTREAM=pykmip (PyKMIP's
# server, .venv/bin/pykmip-server, or PYKMIP=path). The proxy speaks to the upstream with the
# development PKI's client-purefa certificate; every process shares the 2 cores of this machine.
# Needs: `cargo build --release -p kmip-gateway -p kmip-bench` (or BIN=target/debug), python3.
# Settings: DURATION (s per round, default 5), ROUNDS (2), PRELOAD (1000; 100 with PyKMIP, whose
# Locate is linear), CONNECTIONS (4), CONCURRENCY (4), POOL (the proxy's pool_size, default 8),
# SCENARIOS ("get locate health"), OUT (JSON reports; default a temporary folder, printed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(cd "${BIN:-$ROOT/target/release}" && pwd)
PYKMIP=${PYKMIP:-$ROOT/.venv/bin/pykmip-server}
UPSTREAM=${UPSTREAM:-gateway}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-4}
CONCURRENCY=${CONCURRENCY:-4}
POOL=${POOL:-8}
SCENARIOS=${SCENARIOS:-get locate health}
case $UPSTREAM in
  gateway) PRELOAD=${PRELOAD:-1000} ;;
  pykmip) PRELOAD=${PRELOAD:-100} ;;
  *) echo "UPSTREAM must be gateway or pykmip" >&2; exit 2 ;;
esac
# How long a server may take to come up before the run is abandoned.
readonly START_TIMEOUT_S=60
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    pkill -9 -P "$p" 2>/dev/null || true
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK/up" "$WORK/proxy" "$WORK/py"
}
trap cleanup EXIT

# The address a server logged as ready in $1 (line containing $2).
ready_addr() {
  local addr=""
  for _ in $(seq $((START_TIMEOUT_S * 10))); do
    addr=$(grep -o "$2 ready addr=[0-9.:]*" "$1" 2>/dev/null | sed "s/.*addr=//" || true)
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    sleep 0.1
  done
  cat "$1" >&2
  return 1
}

# Upstream: a gateway on its embedded default (it makes the development PKI every process uses),
# or PyKMIP's server on that PKI.
mkdir -p "$WORK/up"
(cd "$WORK/up" && NO_COLOR=1 exec "$BIN/kmip-gateway" serve --listen 127.0.0.1:0 --admin-listen off \
  >/dev/null 2>"$WORK/up/log") &
PIDS+=("$!")
UP_ADDR=$(ready_addr "$WORK/up/log" "KMIP listener")
PKI=$WORK/up/kmip-gateway-data/pki
if [ "$UPSTREAM" = pykmip ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/py/policies"
  cat >"$WORK/py/server.conf" <<CONF
[server]
hostname=127.0.0.1
port=$port
certificate_path=$PKI/server.pem
key_path=$PKI/server.key
ca_path=$PKI/ca.pem
auth_suite=TLS1.2
enable_tls_client_auth=True
database_path=$WORK/py/pykmip.db
policy_path=$WORK/py/policies
logging_level=WARNING
CONF
  "$PYKMIP" -f "$WORK/py/server.conf" -l "$WORK/py/server.log" >"$WORK/py/out.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq $((START_TIMEOUT_S * 10))); do
    ss -ltn | grep -q "127.0.0.1:$port " && break
    sleep 0.1
  done
  UP_ADDR=127.0.0.1:$port
fi

# The proxy, on a configuration file (so `init` first).
mkdir -p "$WORK/proxy"
cat >"$WORK/proxy/gateway.toml" <<CONF
listen = "127.0.0.1:0"
data_dir = "$WORK/proxy/data"
[tls]
cert = "$PKI/server.pem"
key = "$PKI/server.key"
[[users]]
name = "purefa"
cas = ["$PKI/ca.pem"]
[backend]
kind = "kmip"
upstreams = ["$UP_ADDR"]
cert = "$PKI/client-purefa.pem"
key = "$PKI/client-purefa.key"
ca = "$PKI/ca.pem"
server_name = "localhost"
pool_size = $POOL
CONF
"$BIN/kmip-gateway" init --config "$WORK/proxy/gateway.toml" >"$WORK/proxy/init.log" 2>&1 ||
  { cat "$WORK/proxy/init.log"; exit 1; }
(cd "$WORK/proxy" && NO_COLOR=1 exec "$BIN/kmip-gateway" serve --config "$WORK/proxy/gateway.toml" \
  --admin-listen off >/dev/null 2>"$WORK/proxy/log") &
PIDS+=("$!")
PROXY_ADDR=$(ready_addr "$WORK/proxy/log" "KMIP listener")

echo "upstream ($UPSTREAM) $UP_ADDR, proxy $PROXY_ADDR (pool_size $POOL); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for s in $SCENARIOS; do
  "$BIN/kmip-bench" --quiet --target "$PROXY_ADDR" --compare "$UP_ADDR" --ca "$PKI/ca.pem" \
    --cert "$PKI/client-purefa.pem" --key "$PKI/client-purefa.key" --scenario "$s" \
    --preload "$PRELOAD" --connections "$CONNECTIONS" --concurrency "$CONCURRENCY" \
    --duration "$DURATION" --rounds "$ROUNDS" --json "$OUT/proxy-$s.json" >"$OUT/proxy-$s.txt"
done
python3 - "$OUT" "$SCENARIOS" <<'PY'
import json, sys
print("| scenario | proxy /s | upstream /s | throughput proxy/upstream | p50 proxy | p50 upstream | p50 proxy/upstream | errors (proxy, upstream) |")
print("|---|---|---|---|---|---|---|---|")
for s in sys.argv[2].split():
    r = json.load(open(f"{sys.argv[1]}/proxy-{s}.json"))
    a, b = r["a"]["result"], r["b"]["result"]
    print(f"| {s} | {a['throughput_per_s']:.0f} | {b['throughput_per_s']:.0f} | "
          f"{a['throughput_per_s'] / max(b['throughput_per_s'], 1e-9):.2f} | "
          f"{a['latency_us']['p50']} µs | {b['latency_us']['p50']} µs | "
          f"{a['latency_us']['p50'] / max(b['latency_us']['p50'], 1):.2f} | {a['errors']}, {b['errors']} |")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); JSON reports in $OUT"
