"""Typed recipes: validation, option checks, and the whole CI recipe (data → SFT → MPO → GSPO → ViCO → router)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mujoco")


@pytest.mark.slow
def test_ci_recipe_runs_end_to_end_and_ships(tmp_path, monkeypatch, capsys):
    import ivl_embodied.checkpoints.planner as agent
    from ivl_embodied.checkpoints.internvl import load_vision
    from ivl_embodied.cli import main
    from ivl_embodied.train.recipe import CI

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(agent, "DEFAULT_PLANNER_DIR", shipped)
    out = tmp_path / "recipe"
    argv = ["train", "recipe", "ci", "--out", str(out), "--device", "cpu", "--no-progress"]
    assert main([*argv, "--ship"]) == 0
    for step in CI.steps[1:]:
        assert (out / step.name / "language" / "config.json").is_file(), step.name
    final = load_vision(out / "router" / "vision")
    assert final.config.with_vir  # ViCO added mlp2 + router; the router stage trained it
    assert (shipped / "vision").is_dir() and (shipped / "language").is_dir()

    # the closing evaluation: every stage on val and heldout, ViR off plus all-64 / routed
    evals = {p.name: p.stat().st_mtime_ns for p in (out / "eval").glob("*.json")}
    assert set(evals) == {f"{e.step}-{sp}-{e.vir}.json" for e in CI.evaluations for sp in e.episodes}
    routed = json.loads((out / "eval" / "router-heldout-auto.json").read_text())
    assert routed["episodes"] == 1 and 0.0 <= routed["compressed_tile_share"] <= 1.0
    compressed = json.loads((out / "eval" / "vico-heldout-compressed.json").read_text())
    assert compressed["compressed_tile_share"] == 1.0
    assert compressed["visual_tokens_per_image"] < compressed["full_tokens_per_image"]
    table = (out / "eval.md").read_text().splitlines()
    assert len(table) == 2 + len(CI.evaluations) and table[2].startswith("| sft | full |")

    weights = (out / "router" / "vision" / "model.safetensors").read_bytes()
    assert main(argv) == 0  # everything done: every stage is skipped, nothing changes
    assert (out / "router" / "vision" / "model.safetensors").read_bytes() == weights
    assert {p.name: p.stat().st_mtime_ns for p in (out / "eval").glob("*.json")} == evals  # not re-run

    capsys.readouterr()
    assert main(["sim-eval", "--planner", "default", "--split", "heldout", "--episodes", "1", "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 1 and report["planner"] == "default"


def test_recipes_are_checked_on_construction():
    from ivl_embodied.train.recipe import Evaluation, Recipe, Step

    data = Step("data", "data")
    with pytest.raises(ValueError, match="first step must be the"):
        Recipe("r", (Step("sft", "sft"),))
    with pytest.raises(ValueError, match="'later', which is not an earlier planner step"):
        Recipe("r", (data, Step("a", "sft", "later"), Step("later", "sft")))
    with pytest.raises(ValueError, match="used twice"):
        Recipe("r", (data, Step("a", "sft"), Step("a", "sft")))
    with pytest.raises(ValueError, match="unknown step 'b'"):
        Recipe("r", (data, Step("a", "sft")), (Evaluation("b"),))
    with pytest.raises(ValueError, match="ship='data' is not a planner step"):
        Recipe("r", (data, Step("a", "sft")), ship="data")
    with pytest.raises(ValueError, match="stage 'mpo' needs an init step"):
        Step("m", "mpo")
    with pytest.raises(ValueError, match="'out' is set by the recipe"):
        Step("a", "sft", options={"out": "x"})
    with pytest.raises(ValueError, match="vir must be one of"):
        Evaluation("a", "half")
    with pytest.raises(ValueError, match="episodes must map"):
        Evaluation("a", episodes={"test": 3})


def test_step_options_are_typed_and_checked_against_the_stage(tmp_path):
    from ivl_embodied.train.recipe import DEFAULT_PLANNER, Step, step_args

    args = step_args(DEFAULT_PLANNER.step("sft2"), tmp_path, device="cpu")
    assert (args.steps, args.lr, args.box_weight, args.decision_weight, args.seed) == (6000, 3e-4, 3.0, 1.0, 1)
    assert args.init == str(tmp_path / "sft") and args.data == str(tmp_path / "data")
    assert args.out == str(tmp_path / "sft2") and args.device == "cpu" and args.resume is False
    (tmp_path / "sft2").mkdir()
    (tmp_path / "sft2" / "latest").write_text("step_00000010")
    assert step_args(DEFAULT_PLANNER.step("sft2"), tmp_path).resume is True  # interrupted: resume
    with pytest.raises(ValueError, match="stage 'sft' has no option 'box_wieght'"):
        step_args(Step("s", "sft", options={"box_wieght": 3.0}), tmp_path)
    with pytest.raises(ValueError, match="option 'steps' = '100' should be a int"):
        step_args(Step("s", "sft", options={"steps": "100"}), tmp_path)
    with pytest.raises(ValueError, match="option 'steps' = True should be a int"):
        step_args(Step("s", "sft", options={"steps": True}), tmp_path)
    assert step_args(Step("s", "sft", options={"lr": 1}), tmp_path).lr == 1.0  # an int where a float goes


def test_default_planner_recipe_is_the_shipped_lineage():
    from ivl_embodied.train.recipe import DEFAULT_PLANNER

    lineage, step = [], DEFAULT_PLANNER.step(DEFAULT_PLANNER.ship)
    while step is not None:
        lineage.append(step.name)
        step = DEFAULT_PLANNER.step(step.init) if step.init else None
    assert lineage == ["sft4", "sft3", "sft2", "sft"]


def test_recipe_cli_refuses_a_bad_until_before_running(tmp_path):
    from ivl_embodied.cli import main

    with pytest.raises(SystemExit, match="no step 'sft9'"):
        main(["train", "recipe", "ci", "--out", str(tmp_path / "r"), "--until", "sft9"])
    assert not (tmp_path / "r").exists()
