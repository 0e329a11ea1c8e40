"""The whole Cascade RL pipeline at CI scale: data → SFT → MPO → GSPO → ViCO → router."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mujoco")


@pytest.mark.slow
def test_cascade_runs_end_to_end_and_ships(tmp_path, monkeypatch, capsys):
    import ivl_embodied.model.agent as agent
    from ivl_embodied.cli import main
    from ivl_embodied.model.checkpoints import load_vision
    from ivl_embodied.rl.cascade import STAGE_ORDER

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(agent, "DEFAULT_PLANNER_DIR", shipped)
    out = tmp_path / "cascade"
    argv = ["train", "cascade", "--scale", "ci", "--out", str(out), "--device", "cpu", "--no-progress"]
    assert main([*argv, "--ship"]) == 0
    for stage in STAGE_ORDER[1:]:
        assert (out / stage / "language" / "config.json").is_file(), stage
    final = load_vision(out / "router" / "vision")
    assert final.config.with_vir  # ViCO added mlp2 + router; the router stage trained it
    assert (shipped / "vision").is_dir() and (shipped / "language").is_dir()

    # the closing evaluation: every stage on val and heldout, ViR off plus all-64 / routed
    from ivl_embodied.rl.cascade import EVAL_VIR

    evals = {p.name: p.stat().st_mtime_ns for p in (out / "eval").glob("*.json")}
    assert set(evals) == {f"{st}-{sp}-{v}.json" for st, modes in EVAL_VIR.items() for v in modes
                          for sp in ("val", "heldout")}
    routed = json.loads((out / "eval" / "router-heldout-auto.json").read_text())
    assert routed["episodes"] == 1 and 0.0 <= routed["compressed_tile_share"] <= 1.0
    compressed = json.loads((out / "eval" / "vico-heldout-compressed.json").read_text())
    assert compressed["compressed_tile_share"] == 1.0
    assert compressed["visual_tokens_per_image"] < compressed["full_tokens_per_image"]
    table = (out / "eval.md").read_text().splitlines()
    assert len(table) == 2 + sum(len(m) for m in EVAL_VIR.values()) and table[2].startswith("| sft | full |")

    weights = (out / "router" / "vision" / "model.safetensors").read_bytes()
    assert main(argv) == 0  # everything done: every stage is skipped, nothing changes
    assert (out / "router" / "vision" / "model.safetensors").read_bytes() == weights
    assert {p.name: p.stat().st_mtime_ns for p in (out / "eval").glob("*.json")} == evals  # not re-run

    capsys.readouterr()
    assert main(["sim-eval", "--planner", "default", "--split", "heldout", "--episodes", "1", "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 1 and report["planner"] == "default"
