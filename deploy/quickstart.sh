#!/usr/bin/env bash
# cpx quickstart: on a fresh Debian 12 machine, installs what is missing, builds, makes
# keys and configuration for the Jiangyin demo agencies in ./run/quickstart, starts the
# gateway, sends a realistic day of reports, referrals and dispositions through it and
# prints what was routed where. Then it starts the Jiangyin adapters
# (deploy/jiangyin/adapters: POLICE on a PostgreSQL 110 table started in the run folder,
# EDUCATION's GB18030 dropout roster, WOMENS_FED, JUSTICE and two town offices on spool
# folders, HEALTH, CIVIL_AFFAIRS, COURT and PROCURATORATE on webhooks), feeds each some
# synthetic local records and shows them flowing through. Everything then stays up in
# the foreground until Ctrl-C.
#
#   ./deploy/quickstart.sh            # port 7400, folder ./run/quickstart
#   CPX_PORT=7500 CPX_RUN=/tmp/cpx ./deploy/quickstart.sh
#   CPX_QUICKSTART_EXIT=1 ./deploy/quickstart.sh   # stop after the tour (for tests)
#   CPX_ADAPTERS=0 ./deploy/quickstart.sh          # the gateway and the demo only
# Ports: the gateway on CPX_PORT, webhooks on CPX_PORT+11..14, local callbacks on
# CPX_PORT+21..24, PostgreSQL only on a unix socket in the run folder.
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
# CPX_PREBUILT=1: use the binaries already in $BUILD as they are (the test suite runs
# this script against the build under test, while other tests use the same binaries)
if [ "${CPX_PREBUILT:-0}" != 1 ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target cpx-gateway cpx-signer cpxctl cpx-adapter >/dev/null
fi
CPXCTL=$BUILD/tools/cpxctl
GATEWAY=$BUILD/gateway/cpx-gateway

mkdir -p "$RUN/keys" "$RUN/data"
chmod 700 "$RUN/keys"
# 711: the postgres user (PostgreSQL refuses to run as root) may pass through to run/pg
chmod 711 "$RUN"
mapfile -t DEPTS < <(grep -v -e '^#' -e '^$' "$ROOT/deploy/jiangyin/departments.txt")

say "keys for the gateway and ${#DEPTS[@]} departments in $RUN/keys"
for d in GATEWAY "${DEPTS[@]}"; do
  [ -f "$RUN/keys/$d.sign.key" ] || "$CPXCTL" keygen "$d" --dir "$RUN/keys" >/dev/null
done

# the sealed-records vault: its key and the pseudonym key apart from the data and the
# signing key; the Jiangyin sealing policy with this run's key paths
[ -f "$RUN/keys/vault.key" ] || "$CPXCTL" sealed keygen --dir "$RUN/keys" >/dev/null
sed -e 's|^vault_key: [^ ]*|vault_key: keys/vault.key|' \
    -e 's|^pseudonym_key: [^ ]*|pseudonym_key: keys/pseudonym.key|' \
    "$ROOT/deploy/jiangyin/sealed.yaml" > "$RUN/sealed.yaml"
# case tracking with the Jiangyin policy: its keys in this run's key folder (made on
# first start), the shipped view profiles
sed -e 's|^  index: [^ ]*|  index: keys/CASES.index.key|' \
    -e 's|^  records: [^ ]*|  records: keys/CASES.records.key|' \
    -e "s|^views: [^ ]*|views: $ROOT/deploy/jiangyin/views.yaml|" \
    "$ROOT/deploy/jiangyin/casepolicy.yaml" > "$RUN/casepolicy.yaml"

cat > "$RUN/gateway.yaml" <<YAML
# cpx-gateway configuration written by deploy/quickstart.sh
endpoint: tcp://127.0.0.1:$PORT
data_dir: data
map_size: 1073741824
keys:
  curve_secret: keys/GATEWAY.curve.key
  signing_key: keys/GATEWAY.sign.key
  store_key: keys/GATEWAY.store.key   # made by the gateway at first start
routes: $ROOT/deploy/jiangyin/routes.yaml
heartbeat_ms: 2000
offline_after_ms: 10000
sealed: sealed.yaml
cases: casepolicy.yaml
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
PIDS=()
PG_CTL=
stop() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$PG_CTL" ] && $PG_CTL -m fast stop >/dev/null 2>&1 || true
  kill -TERM "$GW" 2>/dev/null || true; wait "$GW" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 50); do
  kill -0 "$GW" 2>/dev/null || { tail -n 20 "$RUN/gateway.log"; echo "gateway failed to start"; exit 1; }
  grep -q 'msg="ready"\|msg=ready' "$RUN/gateway.log" 2>/dev/null && break
  sleep 0.2
done

say "a day of reports through the exchange"
"$CPXCTL" demo --keys "$RUN/keys" --endpoint "tcp://127.0.0.1:$PORT" --reports "$REPORTS" | tee "$RUN/demo.txt"

say "the signed exchange log"
"$CPXCTL" audit head --data "$RUN/data" || true
"$CPXCTL" audit verify --data "$RUN/data" --gateway-key "$RUN/keys/GATEWAY.sign.pub" || true

[ "${CPX_ADAPTERS:-1}" = 1 ] && . "$ROOT/deploy/jiangyin/adapters/quickstart-adapters.sh"

cat <<TXT

The gateway is running (pid $GW). In another terminal:
  $CPXCTL status --data $RUN/data
  $CPXCTL audit tail --data $RUN/data -n 20
  $CPXCTL audit verify --data $RUN/data --gateway-key $RUN/keys/GATEWAY.sign.pub
TXT
[ "${CPX_ADAPTERS:-1}" = 1 ] && cat <<TXT
  $BUILD/adapters/cpx-adapter --config $RUN/adapters/education.yaml --status
  ls $RUN/var/*/exchange/outbox      # deliveries to the file adapters
  drop more files into $RUN/var/*/exchange/inbox, or insert into the 110 table:
  psql "$PG_CONNINFO" -c 'select incident_no, minor_name from incidents_110'
TXT
echo "Ctrl-C stops everything (the gateway finishes the batch and signs the last head)."
[ "${CPX_QUICKSTART_EXIT:-0}" = 1 ] && exit 0
trap 'stop; exit 0' INT TERM
wait "$GW" || true
