"""``ivl-embodied replay``'s reading of a recording: which tasks an operator gave, what can be played."""

from __future__ import annotations

import pytest

from ivl_embodied.plan.schema import Plan, Step
from ivl_embodied.transport import msg_type
from ivl_embodied.transport.convert import header, plan_to_msg
from ivl_embodied.transport.cyclone_types import serialize
from ivl_embodied.transport.mcap_io import McapWriter

pytest.importorskip("mcap")
REQUEST = "ivl_embodied_msgs/msg/TaskRequest"
PLAN = Plan((Step("pick", "red cube", (1, 2, 3, 4)),))


def _write(path, messages):
    with McapWriter(path) as out:
        for i, (topic, type_name, msg) in enumerate(messages):
            out.write(topic, type_name, serialize(msg), 1000 + i)


def test_the_operator_tasks_are_the_requests_that_are_not_follow_ups_with_their_first_plans(tmp_path):
    from ivl_embodied.replay import recorded_tasks

    R = msg_type(REQUEST)
    _write(tmp_path / "r.mcap", [
        ("/ivl/task", REQUEST, R(header=header(1), task_id="a", instruction="lift the red cube")),
        ("/ivl/plan", "ivl_embodied_msgs/msg/ActionPlan", plan_to_msg(PLAN, "a", "lift the red cube", "first")),
        ("/ivl/task", REQUEST, R(task_id="a", instruction="lift the red cube", attempt=1, candidate=1)),
        ("/ivl/plan", "ivl_embodied_msgs/msg/ActionPlan",
         plan_to_msg(PLAN, "a", "lift the red cube", "alternative", candidate=1)),
        ("/ivl/task", REQUEST, R(task_id="b", instruction="push it", attempt=2)),  # a retry, not an operator's
        # the demo's oracle plans come without a request
        ("/ivl/plan", "ivl_embodied_msgs/msg/ActionPlan", plan_to_msg(PLAN, "c", "pick the red cube", "(oracle)")),
    ])
    assert recorded_tasks(tmp_path / "r.mcap") == {
        "a": {"instruction": "lift the red cube", "plan": "first"},
        "c": {"instruction": "pick the red cube", "plan": "(oracle)"}}


def test_a_recording_without_a_camera_cannot_be_played_and_says_what_is_missing(tmp_path):
    from ivl_embodied.replay import Player

    R = msg_type(REQUEST)
    _write(tmp_path / "r.mcap", [("/ivl/task", REQUEST, R(task_id="a", instruction="lift the red cube"))])
    with pytest.raises(ValueError, match="no /camera/color/image_raw, /camera/depth/image_raw, "
                                         "/camera/color/camera_info to play"):
        Player(object(), tmp_path / "r.mcap", 1.0)
    with pytest.raises(ValueError, match="--rate must be > 0"):
        Player(object(), tmp_path / "r.mcap", 0.0)


def test_the_cli_refuses_a_missing_recording(tmp_path, capsys):
    from ivl_embodied.cli import main

    assert main(["replay", str(tmp_path / "none.mcap"), "--through-stack"]) == 2
    assert "no recording at" in capsys.readouterr().err
