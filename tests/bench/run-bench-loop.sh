#!/usr/bin/env bash
# Benchmark of `gemstream loop` against the equivalent ffmpeg command (xfade/acrossfade, the
# same encoders and settings) on an 8 s 720p24 Veo clip from the local backend.
# Usage: tests/bench/run-bench-loop.sh [REPEATS]   (after tools/build.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${GEMSTREAM_BUILD_DIR:-$root/build}
work=$(mktemp -d /tmp/gemstream-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
env -u GOOGLE_API_KEY -u GEMINI_API_KEY -u GEMSTREAM_BASE_URL \
  "$build/tools/gemstream/gemstream" video "peaceful beach sunset" --mood calm \
  --poll-interval 200ms -o "$work/clip.mp4" >/dev/null 2>&1
"$build/tests/bench/bench_loop" "$build/tools/gemstream/gemstream" "$work/clip.mp4" "$work" "${1:-3}"
