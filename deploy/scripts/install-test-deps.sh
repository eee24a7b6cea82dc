#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian (bookworm) machine:
#   - apt: softhsm2 (PKCS#11 backend tests), opensc (pkcs11-tool, used by
#     deploy/softhsm/setup-token.sh), python3-venv when no venv can be made;
#   - a Python venv at <repo>/.venv with PyKMIP (reference client and peer server) and
#     PyYAML (deploy/scripts/lint-deploy.sh).
# Idempotent and quick when everything is present: apt-get update only runs when
# something has to be installed. Runs as root, or through sudo otherwise.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
venv="$repo/.venv"

log() { echo "install-test-deps: $*" >&2; }
die() {
    log "$*"
    exit 1
}

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    as_root=()
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for pkg in softhsm2 opensc; do
    installed "$pkg" || missing+=("$pkg")
done
# Debian splits venv/ensurepip out of python3; the venv below needs both.
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3 python3-venv)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] && [ "${#as_root[@]}" -eq 0 ]; then
        die "need root or sudo to install: ${missing[*]}"
    fi
    log "installing ${missing[*]}"
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    python3 -m venv "$venv"
fi
# find_spec locates the package without importing it (a full import takes seconds).
if ! "$venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("kmip") is None)'; then
    log "installing pykmip into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check pykmip
    "$venv/bin/python" -c 'import kmip.pie.client' || die "pykmip does not import from $venv"
fi
if ! "$venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("yaml") is None)'; then
    log "installing pyyaml into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check pyyaml
fi

command -v pkcs11-tool >/dev/null || die "pkcs11-tool missing after installation"
# The tests load the module from $SOFTHSM2_MODULE when set (tests/src/softhsm_module.rs).
softhsm_module=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -r "$softhsm_module" ] || die "$softhsm_module missing after installation (set SOFTHSM2_MODULE?)"
log "ready: softhsm2, opensc, $venv with pykmip and pyyaml"
