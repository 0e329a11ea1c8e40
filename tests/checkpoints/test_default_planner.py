"""The shipped default planner: in the package, small, safetensors only, found by ``default``, tiled
as it was trained, and doing the job through the full loop on a task file written by hand (seeds
outside every split, phrasings of our own)."""

from __future__ import annotations

import json

import pytest

from ivl_embodied.checkpoints.planner import DEFAULT_PLANNER_DIR, planner_dirs, planner_max_tiles

HAND_WRITTEN = [
    {"seed": 9100001, "instruction": "please put the red cube into the green bowl",
     "goal": {"type": "place_in", "object": {"color": "red", "shape": "cube"},
              "target": {"color": "green", "shape": "bowl"}}},
    {"seed": 9100002, "instruction": "stack the blue cylinder on top of the yellow cube",
     "goal": {"type": "stack", "object": {"color": "blue", "shape": "cylinder"},
              "target": {"color": "yellow", "shape": "cube"}}},
    {"seed": 9100003, "instruction": "push the orange cube into the purple zone",
     "goal": {"type": "push_to", "object": {"color": "orange", "shape": "cube"},
              "target": {"color": "purple", "shape": "zone"}}},
]


def test_default_planner_is_shipped_small_and_in_safetensors():
    files = [p for p in DEFAULT_PLANNER_DIR.rglob("*") if p.is_file()]
    assert files, f"no default planner in {DEFAULT_PLANNER_DIR}"
    assert sum(p.stat().st_size for p in files) <= 40 * 2**20  # the budget: 40 MB in all
    assert {p.suffix for p in files} == {".json", ".safetensors"}  # no pickles
    vision, language = planner_dirs("default")
    assert (vision, language) == (DEFAULT_PLANNER_DIR / "vision", DEFAULT_PLANNER_DIR / "language")
    assert planner_max_tiles(vision, default=6) == 1  # the vision node tiles as training did


def test_sim_eval_runs_the_default_planner_on_a_hand_written_task_file(tmp_path, capsys):
    pytest.importorskip("mujoco")
    from ivl_embodied.cli import main

    tasks = tmp_path / "mine.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in HAND_WRITTEN))
    rc = main(["sim-eval", "--planner", "default", "--tasks", str(tasks), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["planner"] == "default" and out["episodes"] == len(HAND_WRITTEN)
    assert out["visual_tokens_per_image"] == 36.0  # one 168-px tile
    # all three succeed on our machine; one miss is allowed for float drift on other CPUs
    assert rc == 0 and out["success_rate"] >= 2 / 3, out["failures"]
