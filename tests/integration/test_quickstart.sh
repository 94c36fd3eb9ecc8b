#!/usr/bin/env bash
# The README's first command, end to end: keys, enrolment, a real gateway on loopback,
# a day of reports/referrals/dispositions through it; every submission answered, every
# department that was sent something received it, and the signed log verifies. Then the
# Jiangyin adapters with their synthetic local systems: every local record acknowledged,
# deliveries in the town outboxes, the Civil Affairs callback and the police database.
set -euo pipefail
build=${1:?build dir}
src=${CPX_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
run=$(mktemp -d)
chmod 711 "$run"  # the postgres user passes through to the police database in run/qs/pg
cleanup() { pkill -f "cpx-gateway --config $run/" 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
# The quickstart listens on PORT and PORT+11..14, +21..24 (+30 is PostgreSQL's, unix
# socket only). A kernel-chosen ephemeral port left PORT+N inside the ephemeral range,
# where the machine's own outgoing connections took it now and then ("Address already
# in use" from an adapter): take a base below that range whose every port binds now.
port=$(/usr/bin/python3 - <<'PY'
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    base = random.randrange(10000, max(10001, lo - 40))
    socks = []
    try:
        for off in [0] + list(range(11, 15)) + list(range(21, 25)):
            s = socket.socket()
            s.bind(("127.0.0.1", base + off))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
PY
)
out=$run/out.txt
CPX_RUN=$run/qs CPX_PORT=$port CPX_BUILD=$build CPX_PREBUILT=1 CPX_REPORTS=30 CPX_QUICKSTART_EXIT=1 \
  "$src/deploy/quickstart.sh" >"$out" 2>&1 || { cat "$out"; exit 1; }
fail() { echo "FAIL: $*"; cat "$out"; exit 1; }
grep -q ' 0 unanswered' "$out" || fail "some submissions were not answered"
grep -qE '^ok: [0-9]+ leaves' "$out" || fail "audit verify did not pass"
# police received the danger reports, civil affairs the dispositions, towns their reports
awk '$1=="POLICE" && $5>0 {found=1} END {exit !found}' "$out" || fail "POLICE received nothing"
awk '$1=="CIVIL_AFFAIRS" && $5>0 {found=1} END {exit !found}' "$out" || fail "CIVIL_AFFAIRS received nothing"
awk '$1 ~ /^TOWN_/ && $5>0 {n++} END {exit !(n>=3)}' "$out" || fail "town offices received nothing"
grep -q 'disposition  *CIVIL_AFFAIRS' "$out" || fail "no disposition reached CIVIL_AFFAIRS"
grep -q '(queued)' "$out" && fail "a delivery to a connected department stayed queued"
# the adapters: local records in, each acknowledged, none left pending or refused
for d in POLICE:5 EDUCATION:3 WOMENS_FED:2 JUSTICE:1 HEALTH:1 CIVIL_AFFAIRS:1 TOWN_HUASHI:1; do
  grep -qE "^  ${d%%:*} +spooled=${d##*:} acked=${d##*:} nacked=0 .* pending=0" "$out" ||
    fail "adapter ${d%%:*}: not every local record acknowledged"
done
grep -q 'receipt education/exchange/done/dropouts-.*"acknowledged":3,.*"rejected":0' "$out" ||
  fail "no receipt for the GB18030 dropout roster"
grep -qE '^  town-huashi +outbox/ +from POLICE +IMMEDIATE discovery_report +陈小雨' "$out" ||
  fail "the police incident did not reach the town office's outbox"
grep -qE '^  civil_affairs callback +from TOWN_HUASHI .*follow_up' "$out" ||
  fail "the town's GBK home-visit record did not reach the Civil Affairs callback"
grep -qE '^  police +db table +from HEALTH +IMMEDIATE discovery_report +无名女婴' "$out" ||
  fail "the hospital report did not land in the police database"
grep -q 'rejected .*errors:' "$out" && fail "a synthetic record was refused"
echo "quickstart ok: $(grep -c '^[0-9]' "$out") messages"
