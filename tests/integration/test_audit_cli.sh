#!/usr/bin/env bash
# cpxctl audit end to end: a demo log verifies; the documented stock-OpenSSL command
# verifies a real head and refuses a tampered one; proofs check offline against signed
# heads (and fail for the wrong head); an export verifies with no store; timeline/tail
# print. (Tampering with the store itself: tests/unit/test_audit_tamper.c.)
set -euo pipefail
BUILD=${1:?usage: test_audit_cli.sh BUILD_DIR}
CPXCTL="$BUILD/tools/cpxctl"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

openssl genpkey -algorithm ed25519 -out gw.pem 2>/dev/null
openssl pkey -in gw.pem -pubout -out gw.sign.pub
"$CPXCTL" audit demo-log --data data --key gw.pem -n 4000 --batch 500 >/dev/null

"$CPXCTL" audit verify --data data --gateway-key gw.sign.pub > verify.out || fail "clean verify"
grep -q '^ok: 4000 leaves' verify.out || fail "verify summary: $(cat verify.out)"
"$CPXCTL" audit verify --data data --gateway-key gw.sign.pub --json | grep -q '"ok":true' \
    || fail "verify --json"

# --- the exact command of docs/audit-format.md -----------------------------------------
"$CPXCTL" audit head --data data --out-signing-bytes head.bin --out-sig head.sig --out sth.bin \
    > head.out
[ "$(stat -c %s head.bin)" = 101 ] || fail "signing bytes are not 101 bytes"
openssl pkeyutl -verify -pubin -inkey gw.sign.pub -rawin -in head.bin -sigfile head.sig \
    || fail "openssl did not verify a real head"
cp head.bin head.bad
printf '\x01' | dd of=head.bad bs=1 seek=60 conv=notrunc 2>/dev/null
if openssl pkeyutl -verify -pubin -inkey gw.sign.pub -rawin -in head.bad -sigfile head.sig \
    >/dev/null 2>&1; then
    fail "openssl verified a tampered head"
fi

# --- proofs, checked offline ------------------------------------------------------------
"$CPXCTL" audit prove 1234 --data data --tree-size 4000 --out incl.bin > incl.json
grep -q '"leaf_index":1234,"tree_size":4000' incl.json || fail "prove json"
"$CPXCTL" audit check-proof --proof incl.bin --head sth.bin --gateway-key gw.sign.pub \
    || fail "inclusion proof against the latest head"
"$CPXCTL" audit head --data data --size 1000 --json --out sth1000.bin > h1000.json
OLD=$(grep -o '"tree_size":[0-9]*' h1000.json | cut -d: -f2)
[ "$OLD" -ge 1000 ] && [ "$OLD" -lt 4000 ] || fail "head --size 1000 gave $OLD"
if "$CPXCTL" audit check-proof --proof incl.bin --head sth1000.bin --gateway-key gw.sign.pub \
    >/dev/null; then
    fail "a proof for size 4000 checked against the head of size 1000"
fi
openssl genpkey -algorithm ed25519 -out other.pem 2>/dev/null
openssl pkey -in other.pem -pubout -out other.pub
if "$CPXCTL" audit check-proof --proof incl.bin --head sth.bin --gateway-key other.pub \
    >/dev/null; then
    fail "a head checked under another key"
fi
"$CPXCTL" audit consistency "$OLD" 4000 --data data --out cons.bin | grep -q "\"first_size\":$OLD" \
    || fail "consistency json"
"$CPXCTL" audit check-proof --proof cons.bin --old-head sth1000.bin --head sth.bin \
    --gateway-key gw.sign.pub || fail "consistency proof"
"$CPXCTL" audit consistency 999 4000 --data data --out cons999.bin >/dev/null
if "$CPXCTL" audit check-proof --proof cons999.bin --old-head sth1000.bin --head sth.bin \
    --gateway-key gw.sign.pub >/dev/null; then
    fail "a consistency proof for the wrong old size"
fi

# --- export: verifies alone; a flipped byte fails ---------------------------------------
"$CPXCTL" audit export --data data --from 1500 --to 3000 --out bundle.cpxa >/dev/null
"$CPXCTL" audit verify --export bundle.cpxa --gateway-key gw.sign.pub > exp.out \
    || fail "export verify: $(cat exp.out)"
grep -q 'leaves \[1500, 30[0-9][0-9])' exp.out || fail "export range: $(cat exp.out)"
size=$(stat -c %s bundle.cpxa)
cp bundle.cpxa bad.cpxa
printf '\xff' | dd of=bad.cpxa bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
set +e
"$CPXCTL" audit verify --export bad.cpxa --gateway-key gw.sign.pub > bad.out
rc=$?
set -e
[ $rc = 1 ] || fail "tampered export: exit $rc: $(cat bad.out)"

# --- human-readable views ---------------------------------------------------------------
"$CPXCTL" audit tail -n 3 --data data | grep -c . | grep -qx 3 || fail "tail -n 3"
"$CPXCTL" audit timeline JY-2026-000007 --data data | grep -q ACCEPTED || fail "timeline"

echo "test_audit_cli: ok"
