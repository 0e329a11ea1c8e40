"""``ivl-embodied``: each command imports only its own module, so help and errors answer at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "mujoco", "open3d", "cyclonedds")


def _imported_after(argv: list[str]) -> set[str]:
    script = (
        "import sys\n"
        "from ivl_embodied.cli import build_parser\n"
        f"p = build_parser({argv!r})\n"
        "try:\n"
        f"    p.parse_args({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('@@', *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
        "print('@@', *[m for m in sys.modules if m.startswith('ivl_embodied.train.')], file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return {m for line in out.stderr.splitlines() if line.startswith("@@") for m in line.split()[1:]}


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train"], ["demo", "--help"]])
def test_help_imports_no_heavy_library(argv):
    imported = _imported_after(argv)
    assert not imported & set(HEAVY), imported
    stages = ("data", "sft", "mpo", "gspo", "vico", "router")
    assert not {m for m in imported if m.split(".")[-1] in stages}, imported


def test_train_stage_help_imports_only_that_stage():
    imported = _imported_after(["train", "vico", "--help"])
    stages = {m.split(".")[-1] for m in imported if m.startswith("ivl_embodied.train.")}
    assert "vico" in stages and not stages & {"mpo", "gspo", "router", "recipe"}, stages
