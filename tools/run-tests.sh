#!/usr/bin/env bash
# The quick start's second command (and CI's): install packages, build, run every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh"
"$root/tools/build.sh" -DGEMSTREAM_WERROR=ON
build=${GEMSTREAM_BUILD_DIR:-$root/build}
cd "$build"
ctest --output-on-failure -j 2 "$@"
