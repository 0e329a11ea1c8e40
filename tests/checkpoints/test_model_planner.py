"""The learned planner behind the simulator's planner seam, and sim-eval with a checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ivl_embodied.checkpoints.planner import planner_dirs, resolve_checkpoint
from ivl_embodied.plan import parse_plan


def test_planner_dirs_resolution(tiny_ckpt, tmp_path):
    assert planner_dirs(tiny_ckpt) == (tiny_ckpt, tiny_ckpt)
    pair = tmp_path / "pair"
    (pair / "vision").mkdir(parents=True)
    (pair / "language").mkdir()
    assert planner_dirs(pair) == (pair / "vision", pair / "language")
    assert resolve_checkpoint(str(pair), "language") == pair / "language"
    with pytest.raises(FileNotFoundError, match="neither vision/"):
        planner_dirs(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        planner_dirs(tmp_path / "nope")
    with pytest.raises(ValueError, match="'both'"):
        resolve_checkpoint(str(pair), "both")


def test_model_planner_always_returns_a_plan(tiny_ckpt):
    from ivl_embodied.sim.planners import make_planner

    planner = make_planner(str(tiny_ckpt))
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    text = planner.plan(rgb, "put the red cube in the green bowl")
    parse_plan(text)
    assert planner.visual_tokens == [4]  # one 56-px tile, 4 tokens


def test_model_planner_alternatives_come_from_both_views(tiny_ckpt):
    from ivl_embodied.sim.planners import make_planner

    planner = make_planner(str(tiny_ckpt))
    planner.samples = 3
    rgb = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    texts = list(planner.candidates(rgb, "put the red cube in the green bowl"))
    assert texts[0] == planner.plan(rgb, "put the red cube in the green bowl")  # greedy first
    assert 1 <= len(texts) <= 1 + 3 + 4 and len(set(texts)) == len(texts)
    for text in texts:  # held to the task's phrases in both views
        assert {s.object for s in parse_plan(text).steps} == {"red cube"}
    assert planner.visual_tokens == [4, 4]  # one image per call; the mirrored view is not counted as one


def test_sim_eval_with_a_checkpoint_directory(tiny_ckpt, tmp_path, capsys):
    """An untrained planner fails the task, and the report says where: the loop runs end to end."""
    pytest.importorskip("mujoco")
    from ivl_embodied.cli import main

    ck = tmp_path / "ck"
    shutil.copytree(tiny_ckpt, ck)
    rc = main(["sim-eval", "--planner", str(ck), "--split", "val", "--episodes", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and out["episodes"] == 1 and out["planner"] == str(ck)
    if out["success_rate"] == 0.0:
        assert out["failures"][0]["stage"] in ("parse", "safety", "grounding", "check", "skill", "verify",
                                                "refused", "predicate")


def test_sim_eval_reports_visual_tokens_per_vir_mode(tiny_flash_ckpt, tmp_path, capsys):
    pytest.importorskip("mujoco")
    from ivl_embodied.cli import main

    shares = {}
    for vir in ("full", "compressed"):
        main(["sim-eval", "--planner", str(tiny_flash_ckpt), "--split", "val", "--episodes", "1",
              "--vir", vir, "--json"])
        out = json.loads(capsys.readouterr().out)
        shares[vir] = (out["compressed_tile_share"], out["visual_tokens_per_image"])
    assert shares["full"] == (0.0, 4.0)  # one 56-px tile: 4 tokens at full resolution
    assert shares["compressed"] == (1.0, 1.0)  # 75% fewer visual tokens


def test_parallel_evaluation_equals_one_process(tiny_flash_ckpt):
    """Two worker processes give the same episodes, in task order, and the same token figures."""
    pytest.importorskip("mujoco")
    from ivl_embodied.sim.eval_cli import evaluate
    from ivl_embodied.sim.tasks import load_split

    tasks = load_split("val")[:3]
    one, r1 = evaluate(str(tiny_flash_ckpt), tasks, "split:val", vir="compressed")
    two, r2 = evaluate(str(tiny_flash_ckpt), tasks, "split:val", vir="compressed", workers=2)
    assert [r.task.seed for r in r2] == [t.seed for t in tasks]
    assert [(r.success, r.stage, r.plan_text) for r in r2] == [(r.success, r.stage, r.plan_text) for r in r1]
    keys = ("episodes", "success_rate", "per_type", "failure_stages", "visual_tokens_per_image",
            "full_tokens_per_image", "compressed_tile_share")
    assert {k: two[k] for k in keys} == {k: one[k] for k in keys}
    assert two["visual_tokens_per_image"] == 1.0 and two["compressed_tile_share"] == 1.0


def test_parallel_evaluation_reports_a_planner_that_cannot_load(tmp_path):
    """A worker that cannot build its planner fails the evaluation (no endless pool respawns)."""
    pytest.importorskip("mujoco")
    from ivl_embodied.sim.eval_cli import evaluate
    from ivl_embodied.sim.tasks import load_split

    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(str(tmp_path / "missing"), load_split("val")[:2], "split:val", workers=2)
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        evaluate("oracle", load_split("val")[:2], "split:val", workers=0)
