#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian (bookworm) machine:
#   - apt: softhsm2 (PKCS#11 backend tests), opensc (pkcs11-tool, used by
#     deploy/softhsm/setup-token.sh), python3-venv when no venv can be made, postgresql (its
#     server binaries only: each test runs initdb/pg_ctl in a folder of its own, so Debian's
#     default cluster is never created, and never started);
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

# Debian's postgresql package creates and starts a cluster `main` on port 5432 unless
# createcluster.conf says otherwise. The tests start their own clusters on free ports; a shared
# system server would only be a second, unexpected database on the machine. Written before
# the package is installed, and only when no createcluster.conf exists (an operator's is left
# alone).
createcluster_conf=/etc/postgresql-common/createcluster.conf
clusters_before=""
installing_postgresql=false
no_default_cluster() {
    installing_postgresql=true
    clusters_before=$(list_clusters)
    [ -e "$createcluster_conf" ] && return 0
    log "writing $createcluster_conf: create_main_cluster = false"
    "${as_root[@]}" mkdir -p "$(dirname "$createcluster_conf")"
    printf '%s\n' "# Written by kmip-gateway's deploy/scripts/install-test-deps.sh: the tests" \
        "# start their own throwaway clusters; no default cluster on port 5432." \
        "create_main_cluster = false" |
        "${as_root[@]}" tee "$createcluster_conf" >/dev/null
}

# "VERSION NAME" of every cluster postgresql-common knows (none before it is installed).
list_clusters() {
    if [ -d /etc/postgresql ]; then
        find /etc/postgresql -mindepth 3 -maxdepth 3 -name postgresql.conf |
            awk -F/ '{ print $4 " " $5 }' | sort
    fi
}

# A cluster that appeared with this run's install (createcluster.conf kept from an older
# install, say) is stopped and set to start manually, so it never runs beside the tests'.
stop_new_clusters() {
    local version name
    "$installing_postgresql" || return 0
    while read -r version name; do
        [ -n "$version" ] || continue
        grep -qxF "$version $name" <<<"$clusters_before" && continue
        log "stopping the cluster $version/$name the package created; it starts only by hand now"
        "${as_root[@]}" pg_ctlcluster "$version" "$name" stop 2>/dev/null || true
        echo manual | "${as_root[@]}" tee "/etc/postgresql/$version/$name/start.conf" >/dev/null
    done < <(list_clusters)
}

missing=()
for pkg in softhsm2 opensc postgresql; do
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
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
        no_default_cluster
    fi
    "${as_root[@]}" apt-get update -qq
    # UCF_FORCE_CONFFOLD: keep the createcluster.conf written above when postgresql-common's
    # own is installed over it.
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
stop_new_clusters

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
# The tests find initdb as kmip_e2e::postgres::pg_bindir() does: $PG_BINDIR, else the newest
# /usr/lib/postgresql/<version>/bin.
pg_bindir=${PG_BINDIR:-$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' \
    -printf '%h\n' 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$pg_bindir" ] || [ ! -x "$pg_bindir/initdb" ] || [ ! -x "$pg_bindir/pg_ctl" ]; then
    die "no PostgreSQL server binaries (initdb, pg_ctl) after installation (set PG_BINDIR?)"
fi
log "ready: softhsm2, opensc, postgresql ($pg_bindir), $venv with pykmip and pyyaml"
