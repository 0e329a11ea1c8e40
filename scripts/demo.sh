#!/usr/bin/env bash
# Set up (idempotently) and run the main job: the whole stack on the simulated robot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
exec python3 -m ivl_embodied.cli demo "$@"
