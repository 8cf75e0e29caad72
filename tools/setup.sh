#!/usr/bin/env bash
# Installs every Debian 12 package gemstream needs to build, run and test.
# Idempotent and non-interactive; run as root or with sudo available.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config git
  # engine and plugin dependencies
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  libwebsockets-dev libssl-dev libopus-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  nlohmann-json3-dev libcurl4-openssl-dev libsqlite3-dev libhiredis-dev
  # runtime: the elements our pipelines link with, and the tools
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  flite flite1-dev pocketsphinx libpocketsphinx-dev pocketsphinx-en-us
  ffmpeg ca-certificates
  # tests (openssl: a self-signed certificate for the gateway's TLS test; redis-server: the
  # gateway's shared job store; chromium and its driver: the kiosk page's browser test)
  libgtest-dev libgmock-dev openssl redis-server chromium chromium-driver
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
