"""The main job: ``ivl-embodied demo`` runs the node graph on the simulated robot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("mujoco")


def _demo(env, out, *extra):
    return subprocess.run([sys.executable, "-m", "ivl_embodied.cli", "demo", "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_demo_with_oracle_plans_succeeds_and_records(loopback_dds, tmp_path):
    res = _demo(loopback_dds, tmp_path, "--planner", "oracle", "--tasks", "2", "--realtime-factor", "3")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    (task,) = summary["tasks"]
    assert task["ok"] and task["verdict"] and task["status"] == "SUCCEEDED" and task["goal_reached"]
    assert (tmp_path / "task_002.mp4").stat().st_size > 10_000


@pytest.mark.slow
def test_demo_full_graph_with_an_untrained_planner_ends_cleanly(loopback_dds, tmp_path):
    """vision_node → planner_node → executor_node with random weights: the plan is nonsense, and
    the task must end with a named reason from the executor (not a hang, not a crash)."""
    from ivl_embodied.checkpoints.tiny import save_tiny_internvl

    ck = save_tiny_internvl(tmp_path / "ck", tile_size=56)
    res = _demo(loopback_dds, tmp_path / "out", "--planner", str(ck), "--tasks", "0", "--timeout", "90",
                "--require-success")
    assert res.returncode == 3, res.stdout[-3000:] + res.stderr[-3000:]  # a verdict, and it was failure
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (task,) = summary["tasks"]
    assert task["verdict"] and summary["stack_failures"] == []
    assert not task["ok"] and not task["goal_reached"]
    assert task["status"] in ("FAILED", "REJECTED"), task
    assert task["message"].startswith("[") or "cannot ground" in task["message"], task["message"]


@pytest.mark.slow
def test_a_demo_recording_decodes_replays_its_plans_and_checks_them_through_a_dry_run_stack(loopback_dds, tmp_path):
    """The demo with the shipped planner, recorded to MCAP: an independent ROS 2 decoder reads every recorded
    message back; the recorded embeddings, planned again by the same checkpoint, give the recorded plans exactly;
    the recorded camera played through vision → planner → a dry-run executor grounds the task's plan where the
    simulator has the objects, and not one trajectory or gripper command is published."""
    from ivl_embodied.replay import replay_embeddings, replay_through_stack

    rec = tmp_path / "rec.mcap"
    res = _demo(loopback_dds, tmp_path / "out", "--tasks", "1", "--timeout", "120", "--record", str(rec))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (task,) = json.loads((tmp_path / "out" / "summary.json").read_text())["tasks"]
    _check_recording(rec, task, "demo1")

    from ivl_embodied.checkpoints.internvl import load_language
    from ivl_embodied.checkpoints.planner import resolve_checkpoint

    replayed = replay_embeddings(rec, load_language(resolve_checkpoint("default", "language")))
    assert replayed and all(r["same"] for r in replayed), replayed

    result = replay_through_stack(rec, "default", rate=2.0, timeout=240)
    assert result["commands"] == {"/arm_controller/joint_trajectory": 0, "/gripper_controller/commands": 0}
    assert result["played"]["/camera/color/image_raw"] > 0 and not result["nodes_died"], result
    (t,) = result["tasks"]
    assert (t["task_id"], t["final"], t["reason"]) == ("demo1", "REJECTED", "dry_run"), t
    assert "nothing was sent to the robot" in t["message"] and t["recorded_plan"]
    # the grounded poses are where the simulator put the objects (from depth, not from the simulator)
    from ivl_embodied.sim.tasks import load_split, scene_for
    from ivl_embodied.sim.world import SimWorld

    world = SimWorld(scene_for(load_split("heldout")[1]))
    try:
        world.settle()
        for step in t["grounded"]:
            phrase = step["object"] if step["action"] == "pick" else step["target"]
            body = world.body_pos(world.scene.find(*phrase.split()).name)
            assert abs(step["pose"][0] - body[0]) < 0.03 and abs(step["pose"][1] - body[1]) < 0.03, (step, body)
    finally:
        world.close()


def _check_recording(path, task, task_id) -> None:
    pytest.importorskip("mcap_ros2")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        seen: dict[str, list] = {}
        for _schema, channel, _message, msg in reader.iter_decoded_messages():
            seen.setdefault(channel.topic, []).append(msg)
    for topic in ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info", "/joint_states",
                  "/tf_static", "/ivl/visual_embeddings", "/ivl/task", "/ivl/plan", "/ivl/grounded_plan",
                  "/ivl/task_status", "/ivl/estop_state"):
        assert seen.get(topic), (topic, sorted(seen))
    for rgb in seen["/camera/color/image_raw"]:
        assert (rgb.encoding, len(rgb.data)) == ("rgb8", rgb.height * rgb.step) and rgb.step == 3 * rgb.width
    info = seen["/camera/color/camera_info"][0]
    assert (rgb.width, rgb.height) == (info.width, info.height) == (640, 480)
    for depth in seen["/camera/depth/image_raw"]:
        assert depth.encoding in ("32FC1", "16UC1") and (depth.width, depth.height) == (640, 480)
    for emb in seen["/ivl/visual_embeddings"]:
        size = {0: 2, 1: 2, 2: 4}[emb.dtype]
        assert len(emb.data) == sum(emb.tokens_per_tile) * emb.hidden_size * size > 0
    from ivl_embodied.nodes.status import state_name

    final = [s for s in seen["/ivl/task_status"] if s.task_id == task_id and state_name(s.state) == task["status"]]
    assert final and final[-1].message == task["message"], [(s.task_id, s.state) for s in seen["/ivl/task_status"]]
    assert seen["/ivl/plan"][0].task_id == task_id and seen["/ivl/task"][0].instruction


def test_exit_status_separates_task_failures_from_stack_failures():
    from ivl_embodied.demo import exit_status

    ok = {"ok": True, "verdict": True}
    failed = {"ok": False, "verdict": True}  # the stack ran; the task did not succeed
    broken = {"ok": False, "verdict": False}  # no robot / no embeddings / no final status / node died
    assert exit_status([ok, failed]) == 0
    assert exit_status([ok, failed], require_success=True) == 3
    assert exit_status([ok, ok], require_success=True) == 0
    assert exit_status([ok, broken]) == 1 and exit_status([broken], require_success=True) == 1
    assert exit_status([]) == 1


class _Node:
    def spin_until(self, cond, timeout):
        return cond()


class _Driver:
    node = _Node()
    frames: list = []
    goal: list = []
    statuses: list = []
    plans: list = []


def test_no_robot_is_a_stack_failure_with_a_full_result():
    from ivl_embodied.demo import run_task

    r = run_task(_Driver(), task=None, task_id="t", planner="oracle", timeout=1.0)
    assert r["status"] == "NO_ROBOT" and r["verdict"] is False and r["ok"] is False
    assert r["frames"] == [] and r["goal_reached"] is False and "wall_s" in r


def test_a_task_refused_for_want_of_a_current_view_is_asked_again_then_followed_to_its_end():
    """The camera just restarted: the planner refuses the first request (stale embeddings), the demo
    sends it again and follows the second to its verified end; a wrong task is not re-sent."""
    from types import SimpleNamespace

    from ivl_embodied.demo import run_task
    from ivl_embodied.transport import msg_type

    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")

    class Node:
        def __init__(self, answers):
            self.answers, self.pending, self.statuses = answers, [], []

        def spin_until(self, cond, timeout):
            return cond()

        def spin_once(self, timeout):  # the planner's answer arrives with the next spin
            self.statuses.extend(self.pending)
            self.pending.clear()

    class Pub:
        def __init__(self, driver):
            self.driver = driver

        def publish(self, msg):
            state, reason = self.driver.node.answers.pop(0)
            self.driver.sent.append(msg.task_id)
            self.driver.node.pending.append(S(task_id=msg.task_id, state=state, reason=reason, message=reason))

    def driver(answers):
        Image = msg_type("sensor_msgs/msg/Image")
        frame = Image(height=1, width=1, encoding="rgb8", step=3, data=bytes(3))
        node = Node(answers)
        d = SimpleNamespace(node=node, frames=[frame, frame], goal=[True], planner_beats=[1], embeddings=2,
                            statuses=node.statuses, sent=[], plans=[])
        d.task_pub = Pub(d)
        return d

    task = SimpleNamespace(instruction="put the red cube in the bowl")
    d = driver([(S.STATE_REJECTED, "stale_embeddings"), (S.STATE_SUCCEEDED, "")])
    r = run_task(d, task, "t1", "default", timeout=5.0)
    assert d.sent == ["t1", "t1"] and r["status"] == "SUCCEEDED" and r["ok"], r
    d = driver([(S.STATE_REJECTED, "unknown_words"), (S.STATE_SUCCEEDED, "")])
    r = run_task(d, task, "t2", "default", timeout=5.0)
    assert d.sent == ["t2"] and r["status"] == "REJECTED" and not r["ok"], r
