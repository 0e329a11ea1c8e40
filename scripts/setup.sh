#!/usr/bin/env bash
# Set up everything ivl_embodied needs on Debian 12 (or Ubuntu) with Python >= 3.10.
# Idempotent: a second run only checks. Needs root (or sudo) for the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.setup-stamp

want=$(cat requirements.txt setup.py package.xml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$PY" -c "import ivl_embodied" 2>/dev/null; then
  echo "[setup] up to date"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# Debian packages: libusb/libgomp for open3d, Mesa EGL + OSMesa for headless MuJoCo
# rendering, ffmpeg for episode videos.
DEBS="libusb-1.0-0 libgomp1 libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libglib2.0-0 ffmpeg"
missing=""
for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "[setup] apt-get install$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# torch alone first, CPU build, so that no later package can pull a CUDA build.
"$PY" -m pip install -q "$(grep '^torch==' requirements.txt)"
"$PY" -m pip install -q -r requirements.txt
"$PY" -m pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$STAMP"
echo "[setup] done"
