#!/usr/bin/env bash
# The README's first command, end to end: keys, enrolment, a real gateway on loopback,
# a day of reports/referrals/dispositions through it; every submission answered, every
# department that was sent something received it, and the signed log verifies.
set -euo pipefail
build=${1:?build dir}
src=${CPX_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
run=$(mktemp -d)
cleanup() { pkill -f "cpx-gateway --config $run/" 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out=$run/out.txt
CPX_RUN=$run/qs CPX_PORT=$port CPX_BUILD=$build CPX_REPORTS=30 CPX_QUICKSTART_EXIT=1 \
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
echo "quickstart ok: $(grep -c '^[0-9]' "$out") messages"
