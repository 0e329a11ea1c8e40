"""Plan ↔ ActionPlan message, including the wire round trip."""

from __future__ import annotations

import pytest

pytest.importorskip("cyclonedds")
pytest.importorskip("rosbags")

from ivl_embodied.plan.schema import Plan, Step, format_plan  # noqa: E402
from ivl_embodied.transport import deserialize, msg_type, serialize  # noqa: E402
from ivl_embodied.transport.convert import msg_to_plan, plan_to_msg  # noqa: E402


def _plan() -> Plan:
    return Plan((
        Step("pick", "red cube", (100, 200, 150, 260)),
        Step("place", "red cube", target="green bowl", target_box=(600, 480, 720, 590)),
        Step("place", "red cube", (1, 2, 3, 4), "grüne Schale", (0, 0, 1000, 1000)),
        Step("push", "blue ball", (0, 0, 1000, 1000), "left region", (0, 0, 10, 10)),
    ))


def test_round_trip_through_the_wire() -> None:
    plan = _plan()
    msg = plan_to_msg(plan, "t-1", "put the red cube in the green bowl", format_plan(plan),
                      prefill_ms=12.5, decode_ms=80.0, generated_tokens=42, stamp=1_700_000_000_123_456_789,
                      frame_id="camera", embedding_stamp=5)
    back = deserialize("ivl_embodied_msgs/msg/ActionPlan", serialize(msg))
    assert msg_to_plan(back) == plan
    assert (back.task_id, back.instruction, back.raw_text) == ("t-1", "put the red cube in the green bowl",
                                                               format_plan(plan))
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (1_700_000_000,
                                                                                        123_456_789, "camera")
    assert (back.embedding_stamp.sec, back.embedding_stamp.nanosec) == (0, 5)
    assert (back.prefill_ms, back.decode_ms, back.generated_tokens) == (12.5, 80.0, 42)


def test_absent_values_are_empty_fields() -> None:
    msg = plan_to_msg(_plan(), "t", "i", "r")
    pick, place = msg.steps[0], msg.steps[1]
    assert pick.target == "" and pick.target_box == [] and pick.box == [100, 200, 150, 260]
    assert place.box == [] and place.target == "green bowl" and place.has_pose is False
    plan = msg_to_plan(msg)
    assert plan.steps[0].target is None and plan.steps[0].target_box is None
    assert plan.steps[1].box is None


def test_message_without_steps_is_not_a_plan() -> None:
    msg = plan_to_msg(_plan(), "t", "i", "[]")
    msg.steps = []
    with pytest.raises(ValueError, match="at least one step"):
        msg_to_plan(msg)


def test_invalid_messages_name_the_step() -> None:
    Step_ = msg_type("ivl_embodied_msgs/msg/PlanStep")
    msg = plan_to_msg(_plan(), "t", "i", "r")
    msg.steps.append(Step_(action="pick", object="cube", box=[1, 2, 3]))
    with pytest.raises(ValueError, match="step 4.*box must have 4 values"):
        msg_to_plan(msg)
    msg.steps[-1] = Step_(action="fly", object="cube", box=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="step 4.*unknown action 'fly'"):
        msg_to_plan(msg)
    msg.steps[-1] = Step_(action="pick", object="cube", box=[1, 2, 3, 1001])
    with pytest.raises(ValueError, match="step 4.*1001"):
        msg_to_plan(msg)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="prefill_ms .* -1"):
        plan_to_msg(_plan(), "t", "i", "r", prefill_ms=-1)
    with pytest.raises(ValueError, match="generated_tokens"):
        plan_to_msg(_plan(), "t", "i", "r", generated_tokens=2**32)
    with pytest.raises(TypeError, match="stamp"):
        plan_to_msg(_plan(), "t", "i", "r", stamp=-3)
    with pytest.raises(TypeError, match="Plan"):
        plan_to_msg([], "t", "i", "r")
