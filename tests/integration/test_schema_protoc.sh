#!/usr/bin/env bash
# The schema must load as a whole in Google's protoc (what a foreign agency's client
# uses): enum value names unique across cpx.v1, imports resolvable, Python classes
# importable together.
set -euo pipefail
src=${CPX_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
protoc --python_out="$tmp" -I "$src/schemas" "$src"/schemas/cpx/v1/*.proto
cd "$tmp"
/usr/bin/python3 - <<'PY'
from cpx.v1 import envelope_pb2, frames_pb2, audit_pb2, bodies_pb2, common_pb2
e = envelope_pb2.Envelope(sender="POLICE", body_kind=envelope_pb2.BODY_REFERRAL)
e.referral.to = "CIVIL_AFFAIRS"
assert e.WhichOneof("body") == "referral"
# body_kind values equal the body field numbers (signed, checked by envsign)
for v in envelope_pb2.BodyKind.DESCRIPTOR.values:
    if v.number:
        f = envelope_pb2.Envelope.DESCRIPTOR.fields_by_number[v.number]
        assert f.containing_oneof is not None and f.containing_oneof.name == "body", v.name
        assert v.name == "BODY_" + f.name.upper(), (v.name, f.name)
print("schema ok:", len(envelope_pb2.BodyKind.DESCRIPTOR.values) - 1, "body kinds")
PY
