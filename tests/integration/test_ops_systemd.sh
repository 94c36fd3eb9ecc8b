#!/usr/bin/env bash
# deploy/systemd: the units parse and verify (systemd-analyze verify, with the built
# binaries in place of /usr/local/bin), keep the hardening the operations guide promises,
# and the sysusers/tmpfiles fragments are well formed. Skips when systemd-analyze is absent.
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 0; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for u in cpx-gateway.service cpx-adapter@.service; do
  sed -e "s#/usr/local/bin/cpx-gateway#$BUILD/gateway/cpx-gateway#g" \
      -e "s#/usr/local/bin/cpx-adapter#$BUILD/adapters/cpx-adapter#g" "$SRC/deploy/systemd/$u" > "$T/$u"
done
cp "$T/cpx-adapter@.service" "$T/cpx-adapter@education.service"
out=$(systemd-analyze verify --man=no "$T/cpx-gateway.service" "$T/cpx-adapter@education.service" 2>&1 || true)
# Warnings about the host (users not created here) are fine; unit syntax errors are not.
if echo "$out" | grep -Ei "unknown (key|section)|failed to parse|invalid|not executable|bad message" ; then
  fail "systemd-analyze verify: $out"
fi
echo "ok - systemd-analyze verify: ${out:-clean}"

g=$SRC/deploy/systemd/cpx-gateway.service
for want in "User=cpx-gateway" "NoNewPrivileges=yes" "ProtectSystem=strict" "PrivateTmp=yes" \
            "ReadWritePaths=/var/lib/cpx/gateway" "CapabilityBoundingSet=" "KillSignal=SIGTERM"; do
  grep -qx "$want" "$g" || fail "gateway unit lacks $want"
done
[ "$(grep -c '^ReadWritePaths=' "$g")" = 1 ] || fail "gateway unit: only the data folder may be writable"
a=$SRC/deploy/systemd/cpx-adapter@.service
for want in "DynamicUser=yes" "NoNewPrivileges=yes" "ProtectSystem=strict" "PrivateTmp=yes" \
            "StateDirectory=cpx/adapters/%i"; do
  grep -qx "$want" "$a" || fail "adapter unit lacks $want"
done
grep -q '^d /etc/cpx/keys *0700 cpx-gateway' "$SRC/deploy/systemd/cpx.tmpfiles.conf" || fail "keys folder not 0700 gateway-only"
grep -q '^u cpx-gateway ' "$SRC/deploy/systemd/cpx.sysusers.conf" || fail "no gateway user"
if command -v systemd-sysusers >/dev/null; then
  mkdir -p "$T/root/etc"
  systemd-sysusers --root="$T/root" "$SRC/deploy/systemd/cpx.sysusers.conf" || fail "sysusers fragment"
  grep -q '^cpx-gateway:' "$T/root/etc/passwd" || fail "sysusers did not create cpx-gateway"
  echo "ok - sysusers creates cpx-gateway in a scratch root"
fi
if command -v systemd-tmpfiles >/dev/null; then
  systemd-tmpfiles --root="$T/root" --create "$SRC/deploy/systemd/cpx.tmpfiles.conf" 2>"$T/tmpf.err" || true
  grep -Ei "syntax|unknown|invalid" "$T/tmpf.err" && fail "tmpfiles fragment"
  [ -d "$T/root/etc/cpx/keys" ] && [ "$(stat -c %a "$T/root/etc/cpx/keys")" = 700 ] || fail "keys folder mode"
  echo "ok - tmpfiles creates /etc/cpx/keys 0700 in a scratch root"
fi
# The gateway accepts the --check the unit runs before starting.
"$BUILD/gateway/cpx-gateway" --config /nonexistent --check >/dev/null 2>&1 && fail "--check accepted a missing file"
echo "ok - systemd units"
