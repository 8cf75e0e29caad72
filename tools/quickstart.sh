#!/usr/bin/env bash
# The quick start's first command: install packages, build, and run the main job on the local
# backend (a card cover image and an 8 s background clip, written to ./gemstream-out).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh"
"$root/tools/build.sh"
build=${GEMSTREAM_BUILD_DIR:-$root/build}
exec "$build/tools/gemstream/gemstream" demo --out "${1:-$root/gemstream-out}"
