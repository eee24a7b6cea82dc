#!/usr/bin/env bash
# The postgres backend against the vault, side by side in one run (bench/README.md, "PostgreSQL"):
# a throwaway PostgreSQL cluster (initdb in a temporary folder as a non-root user, a free port,
# fsync on), two gateways on it and one on the vault, all with the same PKI and settings; then
# kmip-bench's get, locate and lifecycle against
#   vault     the vault gateway,
#   pg1       one postgres gateway,
#   pg2       both postgres gateways (--target A,B: connections alternate, keys are preloaded
#             through the first, so half the reads are cross-instance),
#   pg1-conn  a third postgres gateway with read_your_writes = "connection" (the cost of the
#             default per-message catch-up, on Locate above all),
# in that order within each round, and prints a table (throughput, p50, p99, errors, ratio to
# the vault).
# Needs: `cargo build --release -p kmip-gateway -p kmip-bench` (or BIN=target/debug), PostgreSQL's
# server binaries ($PG_BINDIR, else the newest /usr/lib/postgresql/<version>/bin: `apt-get
# install postgresql`), python3. As root, PostgreSQL runs as $PG_OS_USER (default kmipgw-test,
# the test suite's service account, created if missing); otherwise as the current user.
# Settings: DURATION (s per run, default 5), ROUNDS (default 2), PRELOAD (keys for get and
# locate, default 1000), CONNECTIONS (4), CONCURRENCY (8), SCENARIOS ("get locate lifecycle"),
# TARGETS ("vault pg1 pg2 pg1-conn"), OUT (JSON reports; default a temporary folder, printed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
PRELOAD=${PRELOAD:-1000}
CONNECTIONS=${CONNECTIONS:-4}
CONCURRENCY=${CONCURRENCY:-8}
SCENARIOS=${SCENARIOS:-get locate lifecycle}
TARGETS=${TARGETS:-vault pg1 pg2 pg1-conn}
PG_OS_USER=${PG_OS_USER:-kmipgw-test}
# How long PostgreSQL and each gateway may take to come up before the run is abandoned.
readonly START_TIMEOUT_S=120

WORK=$(mktemp -d)
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
PG=$WORK/pg
PG_DATA=$PG/data
PIDS=()
PG_STARTED=false

die() {
  echo "postgres.sh: $*" >&2
  exit 1
}

for exe in kmip-gateway kmip-bench; do
  [ -x "$BIN/$exe" ] || die "$BIN/$exe missing: cargo build --release -p kmip-gateway -p kmip-bench (or set BIN)"
done
PG_BINDIR=${PG_BINDIR:-$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' \
  -printf '%h\n' 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$PG_BINDIR" ] || [ ! -x "$PG_BINDIR/initdb" ]; then
  die "no PostgreSQL server binaries: apt-get install postgresql, or set PG_BINDIR"
fi

# PostgreSQL refuses to run as root: as root, its programs run as PG_OS_USER.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

cleanup() {
  local status=$? p log
  # A failed run shows what the gateways and the database said before their folders go.
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/gw-*/log "$PG/postgres.log"; do
      [ -f "$log" ] || continue
      echo "--- last lines of $log" >&2
      tail -n 20 "$log" >&2
    done
  fi
  for p in "${PIDS[@]}"; do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if "$PG_STARTED"; then
    as_pg "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  # Everything goes but the reports (kept in WORK/results unless OUT is elsewhere).
  find "$WORK" -mindepth 1 -maxdepth 1 ! -path "$OUT" -exec rm -rf {} +
  [ "$OUT" = "$WORK/results" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
random_hex() { od -An -tx1 -N "$1" /dev/urandom | tr -d ' \n'; }

# A private (0600) file holding $2.
secret_file() {
  (umask 077 && printf '%s\n' "$2" >"$1")
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- PostgreSQL --------------------------------------------------------------------------------
mkdir -p "$PG"
if [ "$(id -u)" -eq 0 ]; then
  if ! getent passwd "$PG_OS_USER" >/dev/null; then
    echo "creating the system user $PG_OS_USER (PostgreSQL refuses to run as root)" >&2
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  chown "$PG_OS_USER:" "$PG"
  # The server's folder lies inside WORK: let the user through (not read) it.
  chmod 0711 "$WORK"
fi
chmod 0700 "$PG"
PG_PORT=$(free_port)
PG_PASSWORD=$(random_hex 16)
# The inner shells expand their own arguments ($1); the password goes through a pipe, not argv.
# shellcheck disable=SC2016
printf '%s\n' "$PG_PASSWORD" | as_pg bash -c 'umask 077 && cat >"$1"' _ "$PG/initdb.pw"
as_pg "$PG_BINDIR/initdb" -D "$PG_DATA" -U kmip --auth=scram-sha-256 --pwfile="$PG/initdb.pw" \
  -E UTF8 >"$PG/initdb.log" 2>&1 || { cat "$PG/initdb.log"; die "initdb failed"; }
rm -f "$PG/initdb.pw"
# fsync stays on: the vault fsyncs every write, and so must the database it is compared with.
# shellcheck disable=SC2016
as_pg bash -c 'cat >>"$1"' _ "$PG_DATA/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG'
max_connections = 100
log_min_messages = warning
CONF
as_pg "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$PG/postgres.log" -w -t "$START_TIMEOUT_S" start >/dev/null ||
  { cat "$PG/postgres.log"; die "PostgreSQL did not start"; }
PG_STARTED=true
PGPASSWORD=$PG_PASSWORD as_pg "$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U kmip \
  -d postgres -c "CREATE DATABASE kmip" >/dev/null
echo "PostgreSQL $("$PG_BINDIR/postgres" --version | sed 's/^postgres (PostgreSQL) //') on 127.0.0.1:$PG_PORT ($PG_DATA)"

# --- Gateways ----------------------------------------------------------------------------------
# The development PKI, made by a gateway on the embedded default, then shared by all.
PKI=$WORK/pki
mkdir -p "$WORK/pkigen"
(cd "$WORK/pkigen" && NO_COLOR=1 exec "$BIN/kmip-gateway" serve --listen 127.0.0.1:0 \
  --admin-listen off >/dev/null 2>"$WORK/pkigen/log") &
PKIGEN_PID=$!
PIDS+=("$PKIGEN_PID")
for _ in $(seq $((START_TIMEOUT_S * 10))); do
  grep -q "KMIP listener ready" "$WORK/pkigen/log" 2>/dev/null && break
  sleep 0.1
done
grep -q "KMIP listener ready" "$WORK/pkigen/log" || { cat "$WORK/pkigen/log"; die "no PKI"; }
kill "$PKIGEN_PID"
wait "$PKIGEN_PID" 2>/dev/null || true
cp -r "$WORK/pkigen/kmip-gateway-data/pki" "$PKI"

DB_PASSWORD_FILE=$WORK/db.password
KEK_FILE=$WORK/kek.hex
secret_file "$DB_PASSWORD_FILE" "$PG_PASSWORD"
secret_file "$KEK_FILE" "$(random_hex 32)"

# gateway.toml of gateway $1 on backend $2 (vault | postgres) with read_your_writes $3.
write_config() {
  local dir=$WORK/gw-$1
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
[limits]
# Every bench connection comes from 127.0.0.1.
max_connections_per_source = 10000
CONF
  if [ "$2" = postgres ]; then
    cat >>"$dir/gateway.toml" <<CONF
[backend]
kind = "postgres"
url = "postgresql://kmip@127.0.0.1:$PG_PORT/kmip?sslmode=disable"
password_file = "$DB_PASSWORD_FILE"
pool_size = 8
read_your_writes = "$3"
[backend.kek]
kind = "file"
file = "$KEK_FILE"
CONF
  else
    printf '[backend]\nkind = "vault"\n' >>"$dir/gateway.toml"
  fi
}

# Starts gateway $1 (configured by write_config); sets GW_ADDR.
start_gateway() {
  local dir=$WORK/gw-$1
  NO_COLOR=1 "$BIN/kmip-gateway" init --config "$dir/gateway.toml" >"$dir/init.log" 2>&1 ||
    { cat "$dir/init.log"; die "kmip-gateway init ($1) failed"; }
  (cd "$dir" && NO_COLOR=1 exec "$BIN/kmip-gateway" serve --config "$dir/gateway.toml" \
    --admin-listen off >/dev/null 2>"$dir/log") &
  PIDS+=("$!")
  GW_ADDR=""
  for _ in $(seq $((START_TIMEOUT_S * 10))); do
    GW_ADDR=$(grep -o "KMIP listener ready addr=[0-9.:]*" "$dir/log" 2>/dev/null | sed "s/.*addr=//" || true)
    [ -n "$GW_ADDR" ] && break
    sleep 0.1
  done
  [ -n "$GW_ADDR" ] || { cat "$dir/log"; die "gateway $1 did not start"; }
}

wanted() { [[ " $TARGETS " == *" $1 "* ]]; }
for t in $TARGETS; do
  case $t in
    vault | pg1 | pg2 | pg1-conn) ;;
    *) die "unknown target $t (known: vault pg1 pg2 pg1-conn)" ;;
  esac
done
# Only the gateways the targets need.
declare -A ADDR
if wanted vault; then
  write_config vault vault request
  start_gateway vault
  ADDR[vault]=$GW_ADDR
fi
if wanted pg1 || wanted pg2; then
  write_config pg-a postgres request
  start_gateway pg-a
  ADDR[pg1]=$GW_ADDR
fi
if wanted pg2; then
  write_config pg-b postgres request
  start_gateway pg-b
  ADDR[pg2]=${ADDR[pg1]},$GW_ADDR
fi
if wanted pg1-conn; then
  write_config pg-conn postgres connection
  start_gateway pg-conn
  ADDR[pg1-conn]=$GW_ADDR
fi
for t in $TARGETS; do
  echo "$t: ${ADDR[$t]}"
done

# --- Runs --------------------------------------------------------------------------------------
bench() {
  local name=$1
  shift
  echo "### $name: kmip-bench $*"
  "$BIN/kmip-bench" --quiet --ca "$PKI/ca.pem" --cert "$PKI/client-purefa.pem" \
    --key "$PKI/client-purefa.key" --json "$OUT/$name.json" "$@"
}

for round in $(seq "$ROUNDS"); do
  for s in $SCENARIOS; do
    preload=()
    [ "$s" = lifecycle ] || preload=(--preload "$PRELOAD")
    for t in $TARGETS; do
      bench "$s-$t-r$round" --target "${ADDR[$t]}" --scenario "$s" "${preload[@]}" \
        --connections "$CONNECTIONS" --concurrency "$CONCURRENCY" --duration "$DURATION"
    done
  done
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" "$SCENARIOS" "$TARGETS" <<'PY'
import json, pathlib, statistics, sys
out, scenarios, targets = pathlib.Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
print()
print("| scenario | target | per s | p50 µs | p99 µs | errors | vs vault |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for s in scenarios:
    base = None
    for t in targets:
        runs = [json.loads(p.read_text())["result"] for p in sorted(out.glob(f"{s}-{t}-r*.json"))]
        if not runs:
            continue
        rate = statistics.mean(r["throughput_per_s"] for r in runs)
        p50 = statistics.median(r["latency_us"]["p50"] for r in runs)
        p99 = statistics.median(r["latency_us"]["p99"] for r in runs)
        errors = sum(r["errors"] for r in runs)
        if t == "vault":
            base = rate
        ratio = f"{rate / base:.2f}" if base else "-"
        print(f"| {s} | {t} | {rate:,.0f} | {p50} | {p99} | {errors} | {ratio} |")
PY
echo "JSON reports in $OUT"
