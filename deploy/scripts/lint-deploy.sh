#!/usr/bin/env bash
# Checks the deployment files: YAML parses and the Kubernetes objects refer to each
# other consistently (deploy/scripts/lint_deploy.py; deploy/k8s/postgres also against
# the high-availability rules), the Dockerfile has its basic structure, the Grafana
# dashboards parse and chart only metrics the code emits, the shell scripts (deploy/,
# bench/scripts/, scripts/) parse and pass shellcheck when it is installed, the
# HAProxy and keepalived examples have the required shape (and pass `haproxy -c` and
# `keepalived --config-test` when those are installed), and the systemd unit passes
# `systemd-analyze verify` and an offline security review (when systemd-analyze exists:
# it comes with the systemd package, which containers usually lack; that check is then
# skipped, saying so).
# Needs only what deploy/scripts/install-test-deps.sh installs. Exits non-zero on any
# problem.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
unit="$repo/deploy/systemd/kmip-gateway.service"
# systemd-analyze's exposure score in tenths: 2.0 is the top of its "OK" band.
readonly MAX_SYSTEMD_EXPOSURE=20
failed=0

fail() {
    echo "lint-deploy: $*" >&2
    failed=1
}

has_yaml() { "$1" -c 'import yaml' 2>/dev/null; }

python=""
if [ -x "$repo/.venv/bin/python" ] && has_yaml "$repo/.venv/bin/python"; then
    python="$repo/.venv/bin/python"
elif command -v python3 >/dev/null && has_yaml python3; then
    python=python3
elif [ -x "$repo/.venv/bin/python" ]; then
    echo "lint-deploy: installing pyyaml into $repo/.venv" >&2
    "$repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check pyyaml
    python="$repo/.venv/bin/python"
else
    fail "no Python with PyYAML: run deploy/scripts/install-test-deps.sh first"
fi
if [ -n "$python" ]; then
    "$python" "$repo/deploy/scripts/lint_deploy.py" "$repo" || failed=1
fi

while IFS= read -r -d '' script; do
    bash -n "$script" || fail "$script does not parse"
    if command -v shellcheck >/dev/null; then
        shellcheck -x "$script" || fail "$script: shellcheck"
    fi
done < <(find "$repo/deploy" "$repo/bench/scripts" "$repo/scripts" -name '*.sh' -print0)

if command -v systemd-analyze >/dev/null; then
    work=$(mktemp -d)
    trap 'rm -rf -- "$work"' EXIT
    # verify checks that ExecStart's binary exists; on a machine without the
    # installed gateway, check the unit with /bin/true in its place.
    checked="$work/kmip-gateway.service"
    if [ -x /usr/local/bin/kmip-gateway ]; then
        cp -- "$unit" "$checked"
    else
        sed 's#^ExecStart=/usr/local/bin/kmip-gateway #ExecStart=/bin/true #' "$unit" >"$checked"
    fi
    out=$(systemd-analyze verify "$checked" 2>&1) || fail "systemd-analyze verify: $out"
    # verify exits 0 on some warnings; any output is a finding.
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
    systemd-analyze security --offline=true --threshold="$MAX_SYSTEMD_EXPOSURE" "$checked" >/dev/null 2>&1 ||
        fail "systemd-analyze security: exposure above the OK band (run systemd-analyze security --offline=true on $unit)"
    # The unit with each of its drop-ins (the postgres backend's), found through the unit path.
    for dropin in "$unit.d"/*.conf; do
        [ -e "$dropin" ] || continue
        rm -rf -- "$work/kmip-gateway.service.d"
        mkdir "$work/kmip-gateway.service.d"
        cp -- "$dropin" "$work/kmip-gateway.service.d/"
        out=$(SYSTEMD_UNIT_PATH="$work:" systemd-analyze verify "$checked" 2>&1) ||
            fail "systemd-analyze verify with $dropin: $out"
        [ -z "$out" ] || fail "systemd-analyze verify with $dropin: $out"
        SYSTEMD_UNIT_PATH="$work:" systemd-analyze security --offline=true \
            --threshold="$MAX_SYSTEMD_EXPOSURE" "$checked" >/dev/null 2>&1 ||
            fail "systemd-analyze security with $dropin: exposure above the OK band"
    done
else
    echo "lint-deploy: SKIPPED the systemd unit check: systemd-analyze not found" \
        "(package systemd); $unit was not verified" >&2
fi

grep -q '^ExecReload=.*-HUP' "$unit" || fail "$unit: ExecReload must send SIGHUP"

# The bare-metal balancer examples, by the programs themselves when installed (lint_deploy.py
# checks their structure either way).
if command -v haproxy >/dev/null; then
    out=$(haproxy -c -q -f "$repo/deploy/haproxy/haproxy.cfg" 2>&1) ||
        fail "haproxy -c: $out"
else
    echo "lint-deploy: SKIPPED haproxy -c: haproxy not found (package haproxy)" >&2
fi
if command -v keepalived >/dev/null; then
    out=$(keepalived --config-test -f "$repo/deploy/keepalived/keepalived.conf" 2>&1) ||
        fail "keepalived --config-test: $out"
else
    echo "lint-deploy: SKIPPED keepalived --config-test: keepalived not found (package keepalived)" >&2
fi

if [ "$failed" -ne 0 ]; then
    echo "lint-deploy: FAILED" >&2
    exit 1
fi
echo "lint-deploy: OK" >&2
