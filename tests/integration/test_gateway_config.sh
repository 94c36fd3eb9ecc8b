#!/bin/bash
# cpx-gateway refuses invalid configuration and routing rules with file:line:column,
# and accepts the shipped Jiangyin configuration.
set -u
B=${1:?build dir}
SRC=${CPX_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
GW=$B/gateway/cpx-gateway
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
expect() {  # expect NAME PATTERN -- config text on stdin
    local name=$1 pat=$2
    cat > "$T/$name.yaml"
    out=$("$GW" --config "$T/$name.yaml" --check 2>&1); rc=$?
    if [ $rc -ne 0 ] && echo "$out" | grep -Eq -- "$pat"; then echo "ok   $name: $out"
    else echo "FAIL $name (rc=$rc): $out"; fail=1; fi
}
base='endpoint: tcp://127.0.0.1:0
data_dir: data
keys:
  curve_secret: k.key
  signing_key: s.key
  store_key: st.key'
expect unknown_key "unknown_key.yaml:7:1: unknown key 'bogus'" <<< "$base
bogus: 1"
expect negative "negative.yaml:8:12: retry.base_ms: expected a non-negative integer" <<< "$base
retry:
  base_ms: -3"
expect range "range.yaml:7:15: heartbeat_ms: 10 is out of range" <<< "$base
heartbeat_ms: 10"
expect syntax "syntax.yaml:[0-9]+:[0-9]+: " <<< "endpoint: [tcp://x"
expect missing "missing.yaml:1:1: keys.curve_secret: required" <<< 'endpoint: tcp://127.0.0.1:0
data_dir: d'
expect store_key "store_key.yaml:1:1: keys.store_key: required" <<< 'endpoint: tcp://127.0.0.1:0
data_dir: d
keys: {curve_secret: c.key, signing_key: s.key}'
expect store_key_own "store_key_own.yaml:1:1: keys.store_key: must be a key file of its own" <<< 'endpoint: tcp://127.0.0.1:0
data_dir: d
keys: {curve_secret: c.key, signing_key: s.key, store_key: s.key}'
expect endpoint "endpoint.yaml:1:11: endpoint: must start with tcp:// or ipc://" <<< 'endpoint: udp://x'
expect offline "offline.yaml:8:19: offline_after_ms: must be greater than heartbeat_ms" <<< "$base
heartbeat_ms: 1000
offline_after_ms: 500"
expect size_unit "map_size: unexpected 'GB' after the number" <<< "$base
map_size: 4GB"
expect prefill_unit "prefill: unexpected 'MB' after the number" <<< "$base
prefill: 32MB"
expect head_interval "head_interval.yaml:7:16: head_interval: only batch" <<< "$base
head_interval: 10"
printf 'rules:\n  - name: x\n    bogus: [\n' > "$T/bad_routes.yaml"
expect routes "bad_routes.yaml:[0-9]+:[0-9]+" <<< "$base
routes: bad_routes.yaml"
# a bad configuration also stops a real start (exit 2, nothing bound)
"$GW" --config "$T/unknown_key.yaml" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && echo "ok   refuses to start (exit 2)" || { echo "FAIL start exit $rc"; fail=1; }
out=$("$GW" --config "$SRC/deploy/jiangyin/gateway.yaml" --check 2>&1) \
    && echo "ok   shipped gateway.yaml + routes.yaml: $out" || { echo "FAIL shipped config: $out"; fail=1; }
exit $fail
