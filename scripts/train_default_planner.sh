#!/usr/bin/env bash
# Reproduce the shipped default planner (ivl_embodied/default_planner) from nothing:
#
#   bash scripts/train_default_planner.sh [OUT] [--ship]
#
# One command: the typed recipe `default-planner` (ivl_embodied/train/recipe.py) says every step:
# data (20 000 scenes) -> SFT phase 1 (8000 steps) -> phases 2-4 (box digits weighted 3x,
# box-attention on each box's first digit; 6000 / 3600 / 2000 steps) -> MPO, GSPO, ViCO and the
# router on phase 4 for the README's table -> full-loop evaluations (OUT/eval/, OUT/eval.md).
# With --ship, phase 4 is copied into the package, where `--planner default` and the demo find it.
# Rerun after an interrupt: finished steps are skipped, an interrupted one resumes from its last
# checkpoint. About 5.5 h on a 2-core CPU (benchmarks/cascade_cpu_2026-11-30/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/default_planner}
SHIP=${2:-}
if [ -n "$SHIP" ] && [ "$SHIP" != "--ship" ]; then
  echo "usage: $0 [OUT] [--ship]  (got $SHIP)" >&2
  exit 2
fi
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
exec python3 -m ivl_embodied.cli train recipe default-planner --out "$OUT" --no-progress $SHIP
