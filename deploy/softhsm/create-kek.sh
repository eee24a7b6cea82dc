#!/usr/bin/env bash
# Creates the key encryption key (KEK) of the postgres backend's envelope encryption on a
# SoftHSM2 token made by setup-token.sh: an AES-256 secret key labelled KEY_LABEL, a token
# object that is private, sensitive and never extractable, allowed to wrap and unwrap.
# Idempotent: an existing AES key with that label is left alone; any other object holding
# the label is refused.
#
#   deploy/softhsm/create-kek.sh DIR TOKEN_LABEL KEY_LABEL
#
# DIR is setup-token.sh's folder (its softhsm2.conf is used); the user PIN is $KMIP_SOFTHSM_PIN
# if set, else the content of DIR/user.pin, handed to pkcs11-tool through the environment.
# The gateway then names it: [backend.kek] kind = "pkcs11", token_label, key_label.
# A rotated KEK needs a new KEY_LABEL: the label is the KEK's id stored with every data key.
# On a hardware HSM, create the same kind of key with the vendor's tool.
set -euo pipefail

# PKCS#11 labels the gateway accepts: what fits one line of pkcs11-tool's listing.
readonly MAX_LABEL_LEN=64
readonly MODULE="${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"

die() {
    echo "create-kek: $*" >&2
    exit 1
}

[ $# -eq 3 ] || die "usage: $0 DIR TOKEN_LABEL KEY_LABEL"
dir=$1 token=$2 key=$3
[ -n "$key" ] || die "KEY_LABEL must not be empty"
[ "${#key}" -le "$MAX_LABEL_LEN" ] || die "KEY_LABEL is longer than $MAX_LABEL_LEN characters"
[[ "$key" != *[[:cntrl:]]* ]] || die "KEY_LABEL must not contain control characters"
[ -r "$dir/softhsm2.conf" ] || die "$dir/softhsm2.conf not found: run setup-token.sh $dir $token first"
command -v pkcs11-tool >/dev/null || die "pkcs11-tool not found: apt-get install opensc"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
if [ -z "${KMIP_SOFTHSM_PIN:-}" ]; then
    [ -r "$dir/user.pin" ] || die "no user PIN: set KMIP_SOFTHSM_PIN or create $dir/user.pin"
    KMIP_SOFTHSM_PIN=$(<"$dir/user.pin")
fi
export KMIP_SOFTHSM_PIN

pkcs11() {
    pkcs11-tool --module "$MODULE" --token-label "$token" --login --pin env:KMIP_SOFTHSM_PIN "$@"
}

# Serialise concurrent runs (two would both see "no key").
exec 9>"$dir/.create-kek.lock"
flock 9

# Prints the first line ("<kind> Object; <type>") of every object labelled KEY_LABEL.
objects_labelled() {
    pkcs11 --list-objects 2>/dev/null | awk -v want="$key" '
        /^[A-Za-z].* Object/ { header = $0 }
        /^  label:/ {
            value = $0
            sub(/^  label: +/, "", value)
            if (value == want) print header
        }
    '
}

found=$(objects_labelled) || die "cannot list the objects of token '$token' (wrong PIN or token?)"
if [ -n "$found" ]; then
    [ "$(wc -l <<<"$found")" -eq 1 ] || die "several objects on '$token' are labelled '$key'; labels must be unique"
    [[ "$found" == "Secret Key Object; AES length 32" ]] ||
        die "'$key' on '$token' is not an AES-256 key ($found); choose another label"
    echo "create-kek: the AES-256 key '$key' already exists on '$token'; left unchanged" >&2
    exit 0
fi
pkcs11 --keygen --key-type AES:32 --label "$key" --usage-wrap --sensitive --private >/dev/null 2>&1 ||
    die "generating '$key' on '$token' failed"
[ "$(objects_labelled)" = "Secret Key Object; AES length 32" ] ||
    die "'$key' does not show on '$token' after generation"
echo "create-kek: created the AES-256 key '$key' on '$token'" >&2
