#!/usr/bin/env bash
# Signatures made by cpx verify with stock OpenSSL, and keys OpenSSL makes work in cpx.
# Usage: test_openssl_interop.sh BUILD_DIR
set -euo pipefail
BUILD=${1:?build dir}
CPXCTL="$BUILD/tools/cpxctl"
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
mode() { stat -c %a "$1"; }

# keygen: four files, secrets 0600, refuses to overwrite, bad department codes refused.
out=$("$CPXCTL" keygen POLICE --dir "$D")
echo "$out" | grep -Eq '^dept=POLICE key_id=[0-9a-f]{16} curve_public=.{40}$' || fail "keygen output: $out"
for f in sign.key sign.pub curve.key curve.pub; do [ -s "$D/POLICE.$f" ] || fail "missing $f"; done
[ "$(mode "$D/POLICE.sign.key")" = 600 ] || fail "sign.key mode $(mode "$D/POLICE.sign.key")"
[ "$(mode "$D/POLICE.curve.key")" = 600 ] || fail "curve.key mode"
[ "$(wc -c < "$D/POLICE.curve.pub")" = 41 ] || fail "curve.pub is not 40 Z85 chars + newline"
if "$CPXCTL" keygen POLICE --dir "$D" 2>/dev/null; then fail "keygen overwrote keys"; fi
if "$CPXCTL" keygen ../EVIL --dir "$D" 2>/dev/null; then fail "keygen took a path as DEPT"; fi

# The key id printed by keygen and keyid is SHA-256(raw public key)[0:8], as OpenSSL sees it.
id=$(echo "$out" | sed 's/.*key_id=\([0-9a-f]*\).*/\1/')
raw_id=$(openssl pkey -pubin -in "$D/POLICE.sign.pub" -outform DER | tail -c 32 | sha256sum | cut -c1-16)
[ "$id" = "$raw_id" ] || fail "key id $id != $raw_id"
"$CPXCTL" keyid "$D/POLICE.sign.pub" | grep -q "key_id=$id" || fail "keyid"
openssl pkey -in "$D/POLICE.sign.key" -noout 2>/dev/null || fail "openssl cannot read the private key"

# A raw signature verifies with openssl; a changed message does not.
printf 'report 320281: minor in immediate danger\n' > "$D/msg"
"$CPXCTL" sign-file "$D/POLICE.sign.key" "$D/msg" "$D/sig"
[ "$(wc -c < "$D/sig")" = 64 ] || fail "signature is not 64 bytes"
openssl pkeyutl -verify -pubin -inkey "$D/POLICE.sign.pub" -rawin -in "$D/msg" -sigfile "$D/sig" >/dev/null \
  || fail "openssl rejects a cpx signature"
printf 'report 320281: minor in immediate danger!\n' > "$D/msg2"
if openssl pkeyutl -verify -pubin -inkey "$D/POLICE.sign.pub" -rawin -in "$D/msg2" -sigfile "$D/sig" >/dev/null 2>&1; then
  fail "openssl accepted a signature over a changed message"
fi

# A key made by openssl signs in cpx, and the signature verifies in openssl.
openssl genpkey -algorithm ed25519 -out "$D/o.key" 2>/dev/null
chmod 600 "$D/o.key"
openssl pkey -in "$D/o.key" -pubout -out "$D/o.pub"
"$CPXCTL" sign-file "$D/o.key" "$D/msg" "$D/osig"
openssl pkeyutl -verify -pubin -inkey "$D/o.pub" -rawin -in "$D/msg" -sigfile "$D/osig" >/dev/null \
  || fail "openssl rejects a cpx signature made with an openssl key"
# ... and openssl's own signature matches cpx's (Ed25519 is deterministic).
openssl pkeyutl -sign -inkey "$D/o.key" -rawin -in "$D/msg" -out "$D/osig2"
cmp -s "$D/osig" "$D/osig2" || fail "cpx and openssl signatures differ"
# RSA keys are refused.
openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:1024 -out "$D/rsa.key" 2>/dev/null
if "$CPXCTL" sign-file "$D/rsa.key" "$D/msg" "$D/rsig" 2>/dev/null; then fail "signed with an RSA key"; fi

# An envelope: sign it with cpx, check the per-message signature with openssl alone.
/usr/bin/python3 - "$D/env.pb" <<'PY'
import sys
def varint(n):
    out = b""
    while True:
        b = n & 0x7f; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])
def field(num, wt, payload):
    key = varint(num << 3 | wt)
    return key + (varint(len(payload)) + payload if wt == 2 else payload)
referral = field(1, 2, b"EDUCATION") + field(2, 0, varint(2)) + field(3, 2, b"dropout follow-up")
env = (field(1, 2, bytes(range(16))) + field(2, 2, b"CIVIL_AFFAIRS") + field(5, 0, varint(1764374400000))
       + field(6, 0, varint(1)) + field(8, 0, varint(1)) + field(22, 2, referral))
open(sys.argv[1], "wb").write(env)
PY
"$CPXCTL" sign-envelope "$D/POLICE.sign.key" "$D/env.pb" "$D/env.signed.pb"
"$CPXCTL" sigmsg "$D/env.signed.pb" "$D/env.msg" "$D/env.sig"
[ "$(head -c 20 "$D/env.msg" | od -An -c | tr -d ' \n')" = 'cpx.v1.sig.envelope\0' ] || fail "signed message prefix"
[ "$(wc -c < "$D/env.msg")" = 52 ] || fail "signed message is not prefix + 32-byte digest"
openssl pkeyutl -verify -pubin -inkey "$D/POLICE.sign.pub" -rawin -in "$D/env.msg" -sigfile "$D/env.sig" >/dev/null \
  || fail "openssl rejects the envelope signature"
if openssl pkeyutl -verify -pubin -inkey "$D/o.pub" -rawin -in "$D/env.msg" -sigfile "$D/env.sig" >/dev/null 2>&1; then
  fail "envelope signature verified under the wrong key"
fi
echo "ok: openssl interop"
