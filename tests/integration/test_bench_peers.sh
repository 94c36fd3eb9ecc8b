#!/usr/bin/env bash
# Smoke test of the comparison benchmark: the ZeroMQ baselines run, every message
# arrives intact (the program checks byte for byte) and the table is printed.
set -euo pipefail
build=${1:?build dir}
out=$("$build/tests/bench_peers" --only zmq --count 2000 2>&1) || { echo "$out"; exit 1; }
echo "$out"
grep -q 'zmq-curve' <<<"$out"
