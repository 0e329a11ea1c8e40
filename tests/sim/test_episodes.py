import json

import numpy as np
import pytest

from ivl_embodied.perception.grounding import GroundedObject
from ivl_embodied.plan.safety import SafetyGate, SafetyLimits
from ivl_embodied.robot.executor import Executor
from ivl_embodied.robot.skills import SkillFailure, Skills
from ivl_embodied.sim import eval_cli
from ivl_embodied.sim.episode import run_episode
from ivl_embodied.sim.planners import make_planner
from ivl_embodied.sim.sim_robot import SimRobot
from ivl_embodied.sim.tasks import load_split, parse_task, scene_for
from ivl_embodied.sim.world import HOME_Q, SimWorld


@pytest.mark.parametrize("index", [0, 1, 2])  # heldout is round-robin: place_in, stack, push_to
def test_oracle_episode_succeeds(index):
    task = load_split("heldout")[index]
    r = run_episode(task, make_planner("oracle"))
    assert r.success, r.reason
    assert r.execution["ok"] and all(s["status"] == "ok" for s in r.execution["steps"])


def _world():
    task = parse_task({"seed": 5, "instruction": "x", "goal": {
        "type": "place_in", "object": {"color": "red", "shape": "cube"},
        "target": {"color": "green", "shape": "bowl"}}})
    return SimWorld(scene_for(task))


def test_unreachable_target_fails_with_reason_and_bounded_time():
    w = _world()
    robot = SimRobot(w)
    far = GroundedObject(np.array([1.4, 0.0, 0.02]), 0.04, 0.0, np.array([0.04, 0.04, 0.04]), 100, False)
    with pytest.raises(SkillFailure,
                       match=r"pick 'red cube' \(approach\): IK failed: target \[1.4, 0.0, 0.12\].*unreachable"):
        Skills(robot).pick("red cube", far)
    assert np.abs(w.arm_q() - HOME_Q).max() < 0.05  # nothing was sent
    w.close()


def test_missed_grasp_and_refusals_end_episode_with_reason():
    w = _world()
    robot = SimRobot(w)
    robot.hold(0.2)
    obs = robot.get_observation()
    empty = GroundedObject(np.array([0.45, 0.3, 0.02]), 0.04, 0.0, np.array([0.04, 0.04, 0.04]), 100, False)
    w_free = all(np.linalg.norm(np.array(o.xy) - [0.45, 0.3]) > 0.06 for o in w.scene.objects)
    if w_free:
        with pytest.raises(SkillFailure, match="grasp missed"):
            Skills(robot).pick("ghost", empty)
    # executor: a box over the far table edge grounds outside the workspace -> safety refusal
    ex = Executor(robot, SafetyGate(SafetyLimits(workspace_max=(0.7, 0.45, 0.45))))
    plan = '[{"action":"pick","object":"far thing","box":[480,0,520,30]}]'
    rep = ex.execute(plan, robot.get_observation())
    assert not rep.ok and rep.stage == "safety" and "outside workspace" in rep.reason
    # unparsable and stale plans are refused before anything moves
    rep = ex.execute('[{"action":"fly"}]', obs)
    assert rep.stage == "parse" and "'fly'" in rep.reason
    robot.hold(3.0)
    rep = ex.execute('[{"action":"pick","object":"a","box":[1,2,3,4]}]', obs)
    assert rep.stage == "safety" and "old" in rep.reason
    w.close()


def test_sim_eval_cli_on_user_task_file(tmp_path, capsys):
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"seed": 42, "instruction": "put the blue sphere in the yellow tray", "goal": {
        "type": "place_in", "object": {"color": "blue", "shape": "sphere"},
        "target": {"color": "yellow", "shape": "tray"}}}) + "\n")
    parser = __import__("argparse").ArgumentParser()
    eval_cli.add_arguments(parser)
    rec = tmp_path / "rec"
    assert eval_cli.run(parser.parse_args(["--tasks", str(f), "--json", "--record", str(rec)])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["episodes"] == 1 and out["success_rate"] == 1.0, out
    assert (rec / "episode_000042.mp4").stat().st_size > 1000
    trace = json.loads((rec / "episode_000042.json").read_text())
    assert trace["success"] and trace["frames"] > 10 and "blue sphere" in trace["object_tracks"]
    (drawn,) = trace["drawn_plans"]  # the oracle's one plan, drawn on the video from the frame it was made on
    assert drawn["from_frame"] < trace["frames"] and drawn["plan"] == trace["plan"]
    assert drawn["caption"] == "attempt 1, candidate 1: put the blue sphere in the yellow tray"
    _assert_box_drawn(rec / "episode_000042.mp4", drawn)
    f.write_text('{"seed": 1, "instruction": "x", "goal": {"type": "place_in"}}\n')
    assert eval_cli.run(parser.parse_args(["--tasks", str(f), "--json"])) == 2
    assert "mine.jsonl:1" in capsys.readouterr().err


def _assert_box_drawn(video, drawn) -> None:
    """The first step's box edge is in the first step's colour in the video (H.264: colours within a margin)."""
    import imageio.v2 as imageio

    from ivl_embodied.plan.draw import COLOURS, box_pixels
    from ivl_embodied.plan.schema import parse_plan

    frames = imageio.mimread(video, memtest=False)
    frame = np.asarray(frames[min(len(frames) - 1, drawn["from_frame"] + 2)]).astype(int)
    x1, y1, x2, y2 = box_pixels(parse_plan(drawn["plan"]).steps[0].box, frame.shape[1], frame.shape[0])
    edge = frame[y1 + 2:y2 - 2, x1].mean(axis=0)  # the left edge, 3 px wide: its middle column
    assert np.abs(edge - np.array(COLOURS[0])).max() < 60, edge
    assert not np.abs(frame[y1 + 2:y2 - 2, 0].mean(axis=0) - np.array(COLOURS[0])).max() < 60  # not everywhere


def test_missing_planner_directory_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")  # learned planners live in ivl_embodied.model
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_planner(str(tmp_path / "no_such_planner"))
