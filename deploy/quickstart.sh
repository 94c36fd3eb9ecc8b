#!/usr/bin/env bash
# cpx quickstart: on a fresh Debian 12 machine, installs what is missing, builds, makes
# keys and configuration for the Jiangyin demo agencies in ./run/quickstart, starts the
# gateway, sends a realistic day of reports, referrals and dispositions through it and
# prints what was routed where. The gateway then stays in the foreground until Ctrl-C.
#
#   ./deploy/quickstart.sh            # port 7400, folder ./run/quickstart
#   CPX_PORT=7500 CPX_RUN=/tmp/cpx ./deploy/quickstart.sh
#   CPX_QUICKSTART_EXIT=1 ./deploy/quickstart.sh   # stop after the demo (for tests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=${CPX_RUN:-$ROOT/run/quickstart}
PORT=${CPX_PORT:-7400}
REPORTS=${CPX_REPORTS:-40}
BUILD=${CPX_BUILD:-$ROOT/build}

say() { printf '\n== %s\n' "$*"; }

. "$ROOT/deploy/lib/deps.sh"
cpx_install_deps

say "building into $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target cpx-gateway cpxctl >/dev/null
CPXCTL=$BUILD/tools/cpxctl
GATEWAY=$BUILD/gateway/cpx-gateway

mkdir -p "$RUN/keys" "$RUN/data"
chmod 700 "$RUN" "$RUN/keys"
mapfile -t DEPTS < <(grep -v -e '^#' -e '^$' "$ROOT/deploy/jiangyin/departments.txt")

say "keys for the gateway and ${#DEPTS[@]} departments in $RUN/keys"
for d in GATEWAY "${DEPTS[@]}"; do
  [ -f "$RUN/keys/$d.sign.key" ] || "$CPXCTL" keygen "$d" --dir "$RUN/keys" >/dev/null
done

cat > "$RUN/gateway.yaml" <<YAML
# cpx-gateway configuration written by deploy/quickstart.sh
endpoint: tcp://127.0.0.1:$PORT
data_dir: data
map_size: 1073741824
keys:
  curve_secret: keys/GATEWAY.curve.key
  signing_key: keys/GATEWAY.sign.key
routes: $ROOT/deploy/jiangyin/routes.yaml
heartbeat_ms: 2000
offline_after_ms: 10000
YAML

say "enrolling departments"
for d in "${DEPTS[@]}"; do
  "$CPXCTL" enroll --data "$RUN/data" --gateway-key "$RUN/keys/GATEWAY.sign.key" "$d" \
      --curve-pub "$RUN/keys/$d.curve.pub" --sign-pub "$RUN/keys/$d.sign.pub" >/dev/null 2>&1 || true
done
"$CPXCTL" status --data "$RUN/data" >/dev/null 2>&1 || true

say "starting cpx-gateway on 127.0.0.1:$PORT (log: $RUN/gateway.log)"
"$GATEWAY" --config "$RUN/gateway.yaml" >>"$RUN/gateway.log" 2>&1 &
GW=$!
stop() { kill -TERM "$GW" 2>/dev/null || true; wait "$GW" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 50); do
  kill -0 "$GW" 2>/dev/null || { tail -n 20 "$RUN/gateway.log"; echo "gateway failed to start"; exit 1; }
  grep -q 'msg="ready"\|msg=ready' "$RUN/gateway.log" 2>/dev/null && break
  sleep 0.2
done

say "a day of reports through the exchange"
"$CPXCTL" demo --keys "$RUN/keys" --endpoint "tcp://127.0.0.1:$PORT" --reports "$REPORTS"

say "the signed exchange log"
"$CPXCTL" audit head --data "$RUN/data" || true
"$CPXCTL" audit verify --data "$RUN/data" --gateway-key "$RUN/keys/GATEWAY.sign.pub" || true

cat <<TXT

The gateway is running (pid $GW). In another terminal:
  $CPXCTL status --data $RUN/data
  $CPXCTL audit tail --data $RUN/data -n 20
  $CPXCTL audit verify --data $RUN/data --gateway-key $RUN/keys/GATEWAY.sign.pub
Ctrl-C stops it (it finishes the batch and signs the last head).
TXT
[ "${CPX_QUICKSTART_EXIT:-0}" = 1 ] && exit 0
trap - EXIT
trap 'kill -TERM "$GW" 2>/dev/null' INT TERM
wait "$GW" || true
wait "$GW" 2>/dev/null || true
