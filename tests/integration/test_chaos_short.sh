#!/bin/bash
# The chaos suite's short run (tests/chaos/run --short) against the build dir $1: every
# fault, load and attack round must end with nothing lost, nothing applied twice and a
# verifying audit log; the runner exits non-zero otherwise.
set -euo pipefail
build=${1:?usage: test_chaos_short.sh BUILD_DIR}
src=${CPX_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
exec /usr/bin/python3 "$src/tests/chaos/run" --short --build "$build"
