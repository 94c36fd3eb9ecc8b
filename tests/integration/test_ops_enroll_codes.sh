#!/usr/bin/env bash
# cpxctl enroll / revoke refuse department codes the registry must not hold: GATEWAY
# (the gateway's own code: the sender of the leaves it writes and the name of its key
# files) and codes outside the validator's rule [A-Z][A-Z0-9_]{1,31}. Each refusal names
# the argument and the rule, exits 2 and writes nothing (same registry, same log size);
# the codes at the bounds are enrolled.
set -euo pipefail
BUILD=${1:?usage: test_ops_enroll_codes.sh BUILD_DIR}
CPXCTL="$BUILD/tools/cpxctl"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

LONG=ABCDEFGHIJKLMNOPQRSTUVWXYZ_12345      # 32 characters: the longest code
TOO_LONG=${LONG}6                          # 33
mkdir keys
for k in GATEWAY POLICE HK "$LONG" SPARE; do
    "$CPXCTL" keygen "$k" --dir keys >/dev/null
done
enroll() { # enroll CODE KEYNAME [args...]
    local code=$1 key=$2
    shift 2
    "$CPXCTL" enroll --data data --gateway-key keys/GATEWAY.sign.key "$code" \
        --curve-pub "keys/$key.curve.pub" --sign-pub "keys/$key.sign.pub" "$@"
}
tree_size() { "$CPXCTL" audit head --data data | sed -n 's/^tree size *\([0-9][0-9]*\)$/\1/p'; }

enroll POLICE POLICE >/dev/null || fail "enroll POLICE"
size0=$(tree_size)
[ -n "$size0" ] && [ "$size0" -gt 0 ] || fail "no signed head after the first enrolment"

# refused(rc expected-stderr-substring cmd...)
refused() {
    local want=$1
    shift
    local rc=0
    "$@" >out 2>err || rc=$?
    [ "$rc" = 2 ] || fail "$* exited $rc, want 2 ($(cat err))"
    grep -qF -- "$want" err || fail "$*: stderr lacks '$want': $(cat err)"
    [ ! -s out ] || fail "$*: printed on stdout: $(cat out)"
    ok "refused: $* -> $(head -1 err)"
}
refused 'DEPT "GATEWAY": reserved: GATEWAY is the gateway'"'"'s own code' enroll GATEWAY SPARE
grep -q 'choose another code' err || fail "enroll GATEWAY: no hint"
refused '--supervisor "GATEWAY": reserved' enroll SPARE SPARE --supervisor GATEWAY
refused 'DEPT "A": dept_code: must be 2 to 32 characters' enroll A SPARE
refused 'DEPT "police": dept_code' enroll police SPARE
refused 'DEPT "TOWN-HUASHI": dept_code' enroll TOWN-HUASHI SPARE
refused 'DEPT "9TOWN": dept_code' enroll 9TOWN SPARE
refused "DEPT \"$TOO_LONG\": dept_code" enroll "$TOO_LONG" SPARE
refused '--supervisor "x": dept_code' enroll SPARE SPARE --supervisor x
refused 'DEPT "GATEWAY": reserved' "$CPXCTL" revoke --data data --gateway-key keys/GATEWAY.sign.key GATEWAY
grep -q 'cpxctl gateway-key rotate' err || fail "revoke GATEWAY: no pointer to gateway-key rotate"
refused 'DEPT "P": dept_code' "$CPXCTL" revoke --data data --gateway-key keys/GATEWAY.sign.key P
refused 'DEPT "../POLICE": dept_code' "$CPXCTL" revoke --data data --gateway-key keys/GATEWAY.sign.key ../POLICE

[ "$(tree_size)" = "$size0" ] || fail "a refusal appended to the log ($size0 -> $(tree_size))"
"$CPXCTL" status --data data >status.out
grep -q 'dept=POLICE' status.out || fail "POLICE not in status: $(cat status.out)"
if grep -q -e 'dept=GATEWAY' -e 'dept=SPARE' -e 'dept=A ' status.out; then
    fail "a refused code reached the registry: $(cat status.out)"
fi
ok "nothing written by the refusals (tree size $size0)"

# the bounds are accepted, and a well-formed unknown code is 'not enrolled', not a format error
enroll HK HK >/dev/null || fail "2-character code refused"
enroll "$LONG" "$LONG" --supervisor POLICE >/dev/null || fail "32-character code refused"
rc=0
"$CPXCTL" revoke --data data --gateway-key keys/GATEWAY.sign.key NOSUCH >out 2>err || rc=$?
[ "$rc" != 0 ] && grep -q 'NOSUCH is not enrolled' err || fail "revoke NOSUCH: rc=$rc $(cat err)"
"$CPXCTL" revoke --data data --gateway-key keys/GATEWAY.sign.key HK >/dev/null || fail "revoke HK"
"$CPXCTL" audit verify --data data --gateway-key keys/GATEWAY.sign.pub >/dev/null || fail "audit verify"
ok "codes at the bounds enrolled and revoked; the log verifies"
echo "all passed"
