#!/usr/bin/env bash
# cpx: install what is missing, build (normal + ASan/UBSan + fuzz), run every test.
# Usage: ./deploy/test.sh [--quick]   (--quick: normal build and its tests only)
# Exits non-zero on any failure. Safe to run repeatedly; builds go to build*/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
JOBS=$(nproc 2>/dev/null || echo 2)
FUZZ_SECONDS=${CPX_FUZZ_SECONDS:-20}

say() { printf '\n== %s\n' "$*"; }

# ---- 1. Debian packages (only the missing ones, non-interactive) -------------------
. "$ROOT/deploy/lib/deps.sh"
cpx_install_deps

# ---- 2. builds and tests -------------------------------------------------------------
build_and_test() { # dir, cmake args...
  local dir=$1; shift
  say "configure $dir $*"
  cmake -S "$ROOT" -B "$ROOT/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  say "build $dir"
  cmake --build "$ROOT/$dir" -j"$JOBS"
  say "test $dir"
  (cd "$ROOT/$dir" && ctest --output-on-failure -j"$JOBS")
}

build_and_test build
[ $QUICK -eq 1 ] && exit 0

ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  build_and_test build-asan -DCPX_SANITIZE=ON

# ---- 3. fuzz harnesses, a short bounded run each on its committed corpus ---------------
say "fuzz build"
cmake -S "$ROOT" -B "$ROOT/build-fuzz" -DCPX_FUZZ=ON -DCMAKE_C_COMPILER=clang \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build-fuzz" -j"$JOBS"
shopt -s nullglob
fuzzers=("$ROOT"/build-fuzz/tests/fuzz_*)
for f in "${fuzzers[@]}"; do
  # harness executables only (the build dir also holds generated sources and artifacts)
  case $(basename "$f") in *.*|*-crash-*|*-leak-*|*-timeout-*|*-oom-*) continue ;; esac
  [ -f "$f" ] && [ -x "$f" ] || continue
  name=$(basename "$f"); corpus="$ROOT/tests/fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  [ -d "$corpus" ] && cp -r "$corpus/." "$work/"
  say "fuzz $name for ${FUZZ_SECONDS}s"
  (cd "$work" && "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$ROOT/build-fuzz/$name-" "$work" 2>&1 | tail -n 12)
  rm -rf "$work"; trap - EXIT
done
say "all builds, tests and fuzz runs passed"
