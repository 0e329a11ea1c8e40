#!/usr/bin/env bash
# Set up (idempotently), lint (ruff, line length enforced: pyproject.toml) and run the whole test
# suite. Exit code: ruff's if it finds anything, else pytest's, with "no tests collected" (5)
# treated as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
python3 -m ruff check .
set +e
python3 -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "[test] pytest collected no tests: failing" >&2; exit 1; fi
exit $rc
