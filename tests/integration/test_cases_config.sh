#!/bin/bash
# Case policy and view profiles are checked by `cpx-gateway --check`: every error names
# file:line:column and the key; the shipped Jiangyin files pass.
set -u
BUILD=${1:-build}
SRC=${CPX_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
GW="$BUILD/gateway/cpx-gateway"
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fail=0
expect() {  # expect WANT_RC SUBSTRING
    out=$("$GW" --config "$D/gw.yaml" --check 2>&1); rc=$?
    if [ "$rc" != "$1" ] || ! grep -qF -- "$2" <<<"$out"; then
        echo "FAIL rc=$rc want=$1 '$2': $out"; fail=1
    else
        echo "ok   $2"
    fi
}
printf 'endpoint: tcp://127.0.0.1:0\ndata_dir: data\nkeys: {curve_secret: x, signing_key: y, store_key: z}\ncases: cp.yaml\n' > "$D/gw.yaml"
cp "$SRC/deploy/jiangyin/views.yaml" "$D/views.yaml"
good='version: 1\nkeys: {index: a.key, records: b.key}\nviews: views.yaml\n'
printf "$good" > "$D/cp.yaml"
expect 0 "configuration ok"
printf "${good}escalation: {repeat: 0s}\n" > "$D/cp.yaml"
expect 2 "cp.yaml:4:22: escalation.repeat: bad duration '0s'"
printf "${good}referrals: {accept_within: {SOON: 1h}}\n" > "$D/cp.yaml"
expect 2 "referrals.accept_within: unknown priority 'SOON'"
printf "${good}rules: {medical_aid: {illnesses: [FLU]}}\n" > "$D/cp.yaml"
expect 2 "rules.medical_aid.illnesses: unknown Illness 'FLU'"
printf "${good}rules: {close_by: [lead]}\n" > "$D/cp.yaml"
expect 2 "rules.close_by: 'lead' is neither a department code nor \$lead"
printf 'version: 1\nviews: views.yaml\n' > "$D/cp.yaml"
expect 2 "keys: index and records key files are required"
printf "${good}colour: blue\n" > "$D/cp.yaml"
expect 2 "unknown key 'colour'"
printf "$good" > "$D/cp.yaml"
printf 'version: 1\nprofiles: {p: {withhold: {discovery_report: [nope]}}}\n' > "$D/views.yaml"
expect 2 "views.yaml:2:46: withhold.discovery_report: 'nope' is not a field of DiscoveryReport"
# the shipped Jiangyin policy (keys under run/ are created at start, not at --check)
printf 'endpoint: tcp://127.0.0.1:0\ndata_dir: data\nkeys: {curve_secret: x, signing_key: y, store_key: z}\ncases: %s\n' \
    "$SRC/deploy/jiangyin/casepolicy.yaml" > "$D/gw.yaml"
expect 0 "configuration ok"
exit $fail
