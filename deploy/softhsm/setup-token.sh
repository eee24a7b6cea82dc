#!/usr/bin/env bash
# Creates a private SoftHSM2 configuration in DIR and a token labelled LABEL in it,
# for the gateway's pkcs11 backend and its tests. Idempotent: an existing token
# with that label is left alone.
#
#   deploy/softhsm/setup-token.sh DIR LABEL
#   export "$(deploy/softhsm/setup-token.sh DIR LABEL)"
#
# PINs: the user PIN is $KMIP_SOFTHSM_PIN if set, else the content of DIR/user.pin
# (created with random digits, mode 0600, on first use); the SO PIN likewise from
# $KMIP_SOFTHSM_SO_PIN or DIR/so.pin. PINs reach pkcs11-tool through the
# environment (its `env:NAME` syntax), never through the command line, so they
# do not show in `ps`.
#
# Stdout carries exactly one line, SOFTHSM2_CONF=<absolute path>; messages go to stderr.
# Needs pkcs11-tool (opensc) and the SoftHSM2 module (softhsm2).
set -euo pipefail

# PKCS#11 token labels are 32 bytes, space padded.
readonly MAX_LABEL_LEN=32
# 16 decimal digits ≈ 53 bits: far beyond guessing through SoftHSM's login.
readonly PIN_DIGITS=16
readonly MODULE="${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"

die() {
    echo "setup-token: $*" >&2
    exit 1
}

[ $# -eq 2 ] || die "usage: $0 DIR LABEL"
label=$2
[ -n "$label" ] || die "LABEL must not be empty"
[ "${#label}" -le "$MAX_LABEL_LEN" ] || die "LABEL is longer than $MAX_LABEL_LEN characters"
[[ "$label" != *[[:cntrl:]]* ]] || die "LABEL must not contain control characters"
command -v pkcs11-tool >/dev/null || die "pkcs11-tool not found: apt-get install opensc"
[ -r "$MODULE" ] || die "SoftHSM2 module $MODULE not found: apt-get install softhsm2 (or set SOFTHSM2_MODULE)"

mkdir -p -- "$1"
dir=$(cd -- "$1" && pwd -P)
chmod 0700 "$dir"
mkdir -p "$dir/tokens"
chmod 0700 "$dir/tokens"
conf="$dir/softhsm2.conf"

# Serialise concurrent runs on the same DIR (two would both see "no token").
exec 9>"$dir/.setup.lock"
flock 9

if [ ! -e "$conf" ]; then
    tmp=$(mktemp "$dir/.softhsm2.conf.XXXXXX")
    cat >"$tmp" <<EOF
# Private SoftHSM2 configuration written by deploy/softhsm/setup-token.sh
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
    chmod 0600 "$tmp"
    mv -- "$tmp" "$conf"
fi
export SOFTHSM2_CONF="$conf"

random_digits() {
    local out="" byte
    while [ "${#out}" -lt "$PIN_DIGITS" ]; do
        for byte in $(od -An -v -tu1 -N64 /dev/urandom); do
            # Rejecting 250..255 keeps the digits uniform.
            if [ "$byte" -lt 250 ] && [ "${#out}" -lt "$PIN_DIGITS" ]; then
                out+=$((byte % 10))
            fi
        done
    done
    printf '%s' "$out"
}

# pin_into VAR FILE: exports VAR from itself if set, else from FILE (created if absent).
pin_into() {
    local var=$1 file=$2 tmp
    if [ -n "${!var:-}" ]; then
        export "${var?}"
        return
    fi
    if [ ! -e "$file" ]; then
        tmp=$(umask 077 && mktemp "$file.XXXXXX")
        random_digits >"$tmp"
        chmod 0600 "$tmp"
        mv -- "$tmp" "$file"
        echo "setup-token: wrote a new random PIN to $file" >&2
    fi
    local value
    value=$(<"$file")
    [ -n "$value" ] || die "$file is empty"
    printf -v "$var" '%s' "$value"
    export "${var?}"
}

pkcs11() {
    pkcs11-tool --module "$MODULE" "$@"
}

# Prints "<flags>" of the token with our label, or nothing if there is none.
token_flags() {
    pkcs11 --list-slots 2>/dev/null | awk -v want="$label" '
        /^Slot / { in_token = 0 }
        /^  token label/ {
            value = $0
            sub(/^[^:]*: /, "", value)
            sub(/[ ]+$/, "", value)
            in_token = (value == want)
        }
        in_token && /^  token flags/ { sub(/^[^:]*: /, ""); print; exit }
    '
}

first_free_slot_index() {
    pkcs11 --list-slots 2>/dev/null | awk '
        /^Slot / { index_ += 1 }
        /token state: +uninitialized/ { print index_ - 1; exit }
    '
}

pin_into KMIP_SOFTHSM_PIN "$dir/user.pin"
pin_into KMIP_SOFTHSM_SO_PIN "$dir/so.pin"

flags=$(token_flags)
if [ -z "$flags" ]; then
    slot=$(first_free_slot_index)
    [ -n "$slot" ] || die "SoftHSM2 offers no free slot in $dir/tokens"
    pkcs11 --slot-index "$slot" --init-token --label "$label" --so-pin env:KMIP_SOFTHSM_SO_PIN >/dev/null
    echo "setup-token: initialised token '$label'" >&2
    flags=$(token_flags)
    [ -n "$flags" ] || die "token '$label' does not show after initialisation"
else
    echo "setup-token: token '$label' already exists; left unchanged" >&2
fi

# A run interrupted between the two steps leaves a token without a user PIN: finish it.
if ! [[ "$flags" =~ (^|, )PIN\ initialized(,|$) ]]; then
    pkcs11 --token-label "$label" --login --login-type so --so-pin env:KMIP_SOFTHSM_SO_PIN \
        --init-pin --pin env:KMIP_SOFTHSM_PIN >/dev/null
    echo "setup-token: set the user PIN of '$label'" >&2
fi

# Proves the user PIN we hold opens the token (a stale user.pin would otherwise surface later).
pkcs11 --token-label "$label" --login --pin env:KMIP_SOFTHSM_PIN --list-objects >/dev/null 2>&1 ||
    die "the user PIN does not open token '$label' (check \$KMIP_SOFTHSM_PIN or $dir/user.pin)"

echo "SOFTHSM2_CONF=$conf"
