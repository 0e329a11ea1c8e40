"""Every post-SFT stage under FSDP2 over 2 gloo processes (SFT's equality with DDP / gradient
accumulation and its resume are in test_sft.py): MPO, GSPO (generation inside the step, where ranks
produce different lengths), ViCO and the router (whose report reads the gathered weights)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mujoco")

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(stage: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "ivl_embodied.cli", "train", stage, *args, "--fsdp",
         "--no-progress", "--device", "cpu", "--steps", "2", "--checkpoint-interval", "1", "--holdout", "4"],
        env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_mpo_gspo_vico_router_run_sharded(tiny_data, tiny_model, tmp_path):
    from ivl_embodied.train.config import ModelConfig
    from ivl_embodied.train.data import PlanDataset
    from ivl_embodied.train.sft import SFTModel, build_planner_modules, save_planner
    from ivl_embodied.train.tokenizer import train_planner_tokenizer

    data_dir, _ = tiny_data
    tok = train_planner_tokenizer(PlanDataset(data_dir).corpus(), 400)
    save_planner(SFTModel(*build_planner_modules(ModelConfig(**tiny_model), tok)), tmp_path / "init")
    common = ["--data", str(data_dir)]
    runs = {
        "mpo": _torchrun("mpo", *common, "--init", str(tmp_path / "init"), "--out", str(tmp_path / "mpo"),
                         "--prompts", "2", "--samples", "1", "--batch-size", "1", "--eval-examples", "1"),
        "gspo": _torchrun("gspo", *common, "--init", str(tmp_path / "init"), "--out", str(tmp_path / "gspo"),
                          "--group-size", "2", "--batch-size", "1", "--eval-examples", "1", "--no-execute"),
        "vico": _torchrun("vico", *common, "--init", str(tmp_path / "init"), "--out", str(tmp_path / "vico"),
                          "--batch-size", "1"),
    }
    runs["router"] = _torchrun("router", *common, "--init", str(tmp_path / "vico"), "--out",
                               str(tmp_path / "router"), "--batch-size", "2", "--label-examples", "4")
    for stage, r in runs.items():
        assert r.returncode == 0, (stage, r.stderr[-3000:])
        assert "FSDP2 over 2 processes" in r.stderr, stage
        assert (tmp_path / stage / "vision").is_dir() and (tmp_path / stage / "language" / "config.json").is_file()
        rows = json.loads((tmp_path / stage / "metrics.json").read_text())
        assert max(r["step"] for r in rows) == 2, stage
    assert json.loads((tmp_path / "router" / "router_report.json").read_text())["train_tiles"] == 4
