"""executor_node's attempts, callbacks called directly: a plan refused before moving makes it ask the
planner for the frame's next alternative; a motion whose goal is not seen makes it plan again from a
new frame; the task's status says which attempt, and SUCCEEDED only when the goal was seen."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ivl_embodied.plan.schema import Plan, Step
from ivl_embodied.robot.executor import ExecutionReport
from ivl_embodied.transport import msg_type
from ivl_embodied.transport.convert import plan_to_msg, stamp_to_ns

S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
PLAN = Plan((Step("pick", "red cube", (400, 400, 450, 450)),
             Step("place", "red cube", target="green bowl", target_box=(600, 300, 700, 400))))


class Capture:
    def __init__(self, on_publish=None):
        self.msgs, self.on_publish = [], on_publish

    def publish(self, msg):
        self.msgs.append(msg)
        if self.on_publish is not None:
            self.on_publish(msg)


class ScriptedExecutor:
    """Executor.execute answering with the next scripted report."""

    def __init__(self, reports):
        self.reports, self.plans = list(reports), []

    def execute(self, plan_text, obs, on_step=None, on_grounded=None):
        self.plans.append((plan_text, obs.stamp))
        report = self.reports.pop(0)
        if on_grounded is not None and report is not REFUSED:  # grounded and checked: where each step acts
            on_grounded(PLAN, [[0.4, -0.1, 0.02], [0.45, 0.2, 0.03]])
        return report() if callable(report) else report


class FakeRobot:
    def get_observation(self, with_images=True, stamp_ns=None):
        return SimpleNamespace(stamp=(stamp_ns or 0) / 1e9)

    def fresh_observation(self, timeout_s=3.0):
        return SimpleNamespace(stamp=7.0)

    def __init__(self):
        self.calls = []

    def halt(self, reason):
        self.calls.append(("halt", reason))

    def resume(self):
        self.calls.append(("resume",))

    def hold(self):
        self.calls.append(("hold",))


REFUSED = ExecutionReport(False, "check", "'red cube': what stands in its box is green")
MISSED = ExecutionReport(False, "verify", "goal not verified: red cube not found inside the container", moved=True)
DONE = ExecutionReport(True, "done", "", moved=True, verified=True)


@pytest.fixture
def executor_node(loopback_dds):
    from ivl_embodied.nodes.executor_node import ExecutorNode

    node = ExecutorNode.create({"plan_wait_s": 2.0})
    node.robot = FakeRobot()
    node.status.publisher = Capture()
    yield node
    node.shutdown()


def _run(node, reports, answer):
    """Run one task whose first plan is ``PLAN``; ``answer(request)`` is the planner: an ActionPlan or None."""
    node.executor = ScriptedExecutor(reports)
    requests = []

    def planner(request):
        requests.append(request)
        reply = answer(request)
        if reply is not None:
            node.on_plan(reply)

    node.task_pub = Capture(planner)
    node.on_plan(plan_to_msg(PLAN, "t", "put the red cube in the green bowl", "", embedding_stamp=1_000_000_000))
    node.worker.join(timeout=10)
    assert not node.worker.is_alive() and node.busy is None
    statuses = [(s.state, s.attempt, s.reason, s.message) for s in node.status.publisher.msgs]
    return requests, statuses


def _plan_for(request, stamp_ns=2_000_000_000):
    return plan_to_msg(PLAN, request.task_id, request.instruction, "", embedding_stamp=stamp_ns,
                       attempt=request.attempt, candidate=request.candidate)


def test_refused_then_missed_then_done_is_succeeded_on_attempt_2(executor_node):
    requests, statuses = _run(executor_node, [REFUSED, MISSED, DONE], _plan_for)
    assert [(r.attempt, r.candidate) for r in requests] == [(1, 1), (2, 0)]
    assert stamp_to_ns(requests[1].not_before) == 7_000_000_000  # plan again from a frame after the miss
    assert statuses[-1][:3] == (S.STATE_SUCCEEDED, 2, "")
    assert [s[:2] for s in statuses[:-1]] == [(S.STATE_EXECUTING, 1)] * 4 + [(S.STATE_EXECUTING, 2)]
    assert "candidate 1 refused before moving" in statuses[1][3] and "asking the planner" in statuses[1][3]
    assert "attempt 1 missed its goal" in statuses[3][3]
    # a first plan is grounded in the frame it was made from; an alternative in the newest frame (nothing moved)
    assert [stamp for _, stamp in executor_node.executor.plans] == [1.0, 7.0, 2.0]


def test_no_alternative_passing_the_scene_check_is_rejected_without_motion(executor_node):
    def planner(request):  # one alternative, then none
        return _plan_for(request) if request.candidate == 1 else msg_type("ivl_embodied_msgs/msg/ActionPlan")(
            task_id=request.task_id, raw_text="no further alternative: 2 distinct plans", attempt=request.attempt,
            candidate=request.candidate)

    requests, statuses = _run(executor_node, [REFUSED, REFUSED], planner)
    assert [(r.attempt, r.candidate) for r in requests] == [(1, 1), (1, 2)]
    state, attempt, reason, message = statuses[-1]
    assert (state, attempt, reason) == (S.STATE_REJECTED, 1, "scene_mismatch")
    assert "what stands in its box is green" in message and "no other plan: no further alternative" in message


def test_a_dry_run_ends_rejected_dry_run_after_publishing_the_grounded_plan_and_asks_for_nothing(executor_node):
    executor_node.grounded_pub = Capture()
    dry = ExecutionReport(False, "dry_run", "dry run: the plan passed its checks and was grounded: pick 'red cube' "
                                            "at (0.400, -0.100, 0.020) m; ...; nothing was sent to the robot")
    requests, statuses = _run(executor_node, [dry], _plan_for)
    assert requests == []  # not "refused before moving": no alternative is asked for
    state, attempt, reason, message = statuses[-1]
    assert (state, attempt, reason) == (S.STATE_REJECTED, 1, "dry_run") and "nothing was sent" in message
    (grounded,) = executor_node.grounded_pub.msgs
    assert grounded.task_id == "t" and [s.has_pose for s in grounded.steps] == [True, True]
    assert grounded.steps[1].pose.position.y == 0.2 and stamp_to_ns(grounded.embedding_stamp) == 1_000_000_000
    assert grounded.header.frame_id == "base_link"


def test_a_dry_run_executor_has_no_command_publishers(loopback_dds):
    from ivl_embodied.nodes.executor_node import ExecutorNode
    from ivl_embodied.nodes.topic_robot import DRY_RUN
    from ivl_embodied.robot.interface import GripperCommand

    node = ExecutorNode.create({"dry_run": True})
    try:
        assert node.robot.pub_traj is None and node.robot.pub_grip is None and node.executor.cfg.dry_run
        assert node.robot.send_gripper(GripperCommand(0.04)).reason == DRY_RUN
        assert node.robot.hold() is False
    finally:
        node.shutdown()


class FrameNotHere(FakeRobot):
    """A robot whose executor never received the frames stamped ``missing`` (its camera subscription matched
    late); it has frames at 4 s and 5 s."""

    def __init__(self, missing):
        super().__init__()
        self.missing = missing

    def get_observation(self, with_images=True, stamp_ns=None):
        from ivl_embodied.nodes.topic_robot import RobotUnavailable

        if stamp_ns in self.missing:
            raise RobotUnavailable(f"no RGB-D frame stamped {stamp_ns / 1e9:.3f} s (have 4.000..5.000 s)")
        return super().get_observation(with_images, stamp_ns)

    def frame_stamps(self):
        return [4_000_000_000, 5_000_000_000]

    def now(self):
        return 5.0


def test_a_plan_from_a_frame_the_executor_never_received_is_planned_again_from_one_it_has(executor_node):
    executor_node.robot = FrameNotHere({1_000_000_000})
    executor_node.params["frame_wait_s"] = 0.2
    requests, statuses = _run(executor_node, [DONE], lambda r: _plan_for(r, stamp_ns=5_000_000_000))
    assert [(r.attempt, r.candidate, stamp_to_ns(r.not_before)) for r in requests] == [(2, 0, 5_000_000_000)]
    assert "the plan's frame is not here" in statuses[0][3] and "1.000 s" in statuses[0][3]
    assert statuses[-1][:3] == (S.STATE_SUCCEEDED, 2, "")
    assert [stamp for _, stamp in executor_node.executor.plans] == [5.0]


def test_a_frame_still_not_here_after_planning_again_is_rejected_no_observation(executor_node):
    executor_node.robot = FrameNotHere({1_000_000_000, 2_000_000_000})
    executor_node.params["frame_wait_s"] = 0.2
    requests, statuses = _run(executor_node, [], _plan_for)  # the new plan's frame (2 s) is not here either
    assert len(requests) == 1  # once, not again and again
    state, attempt, reason, message = statuses[-1]
    assert (state, attempt, reason) == (S.STATE_REJECTED, 2, "no_observation") and "2.000 s" in message


def test_a_plan_from_a_frame_too_old_to_keep_is_not_planned_again(executor_node):
    """Under a burst a plan can be made from a frame older than max_plan_age_s: that is staleness, refused at once
    (asking the busy planner again made a 100-task burst wait behind its queue)."""
    executor_node.robot = FrameNotHere({1_000_000_000})
    executor_node.robot.now = lambda: 20.0
    executor_node.params["frame_wait_s"] = 0.2
    requests, statuses = _run(executor_node, [], _plan_for)
    assert requests == [] and statuses[-1][:3] == (S.STATE_REJECTED, 1, "no_observation")


def test_goal_missed_on_every_attempt_is_failed_with_the_evidence(executor_node):
    requests, statuses = _run(executor_node, [MISSED, MISSED, MISSED], _plan_for)
    assert [(r.attempt, r.candidate) for r in requests] == [(2, 0), (3, 0)]
    state, attempt, reason, message = statuses[-1]
    assert (state, attempt, reason) == (S.STATE_FAILED, 3, "not_verified") and "not found inside" in message
    assert not any(s[0] == S.STATE_SUCCEEDED for s in statuses)


def test_a_silent_planner_ends_the_task_after_plan_wait_s(executor_node):
    executor_node.params["plan_wait_s"] = 0.2
    requests, statuses = _run(executor_node, [REFUSED], lambda request: None)
    assert len(requests) == 1 and statuses[-1][:3] == (S.STATE_REJECTED, 1, "scene_mismatch")
    assert "no answer from the planner" in statuses[-1][3]


def test_plans_of_other_tasks_are_refused_while_busy_and_stray_follow_ups_ignored(executor_node):
    import threading

    gate = threading.Event()

    class Slow(ScriptedExecutor):
        def execute(self, plan_text, obs, on_step=None, on_grounded=None):
            gate.wait(5)
            return super().execute(plan_text, obs)

    executor_node.executor = Slow([DONE])
    executor_node.task_pub = Capture()
    executor_node.on_plan(plan_to_msg(PLAN, "t", "x", "", embedding_stamp=1))
    executor_node.on_plan(plan_to_msg(PLAN, "other", "x", ""))
    executor_node.on_plan(plan_to_msg(PLAN, "t", "x", "", attempt=1, candidate=3))  # nobody asked for it
    gate.set()
    executor_node.worker.join(timeout=10)
    msgs = executor_node.status.publisher.msgs
    assert [(m.task_id, m.state, m.reason) for m in msgs if m.task_id == "other"] == [("other", S.STATE_REJECTED,
                                                                                        "busy")]
    assert msgs[-1].task_id == "t" and msgs[-1].state == S.STATE_SUCCEEDED
    assert len(executor_node.executor.plans) == 1


def test_a_task_cancelled_while_it_moves_ends_cancelled_and_the_arm_is_halted(executor_node):
    def cancelled_mid_motion():
        assert executor_node.cancel("t") is True
        return ExecutionReport(False, "skill", "step 0 (pick 'red cube'): halted: task t cancelled", moved=True)

    requests, statuses = _run(executor_node, [cancelled_mid_motion], _plan_for)
    assert requests == []  # no retry, no alternative
    assert statuses[-1][:3] == (S.STATE_CANCELLED, 1, "cancelled")
    assert "the arm held where it was" in statuses[-1][3]
    assert executor_node.robot.calls == [("resume",), ("halt", "task t cancelled")]
    assert executor_node.cancel("t") is False  # it has ended


def test_a_task_cancelled_before_its_plan_ends_cancelled_and_its_plan_is_ignored(executor_node):
    assert executor_node.cancel("early") is True
    ((state, _, reason, _),) = [(s.state, s.attempt, s.reason, s.message) for s in executor_node.status.publisher.msgs]
    assert (state, reason) == (S.STATE_CANCELLED, "cancelled")
    executor_node.on_plan(plan_to_msg(PLAN, "early", "put the red cube in the green bowl", "",
                                      embedding_stamp=1_000_000_000))
    assert executor_node.worker is None and executor_node.busy is None
    assert len(executor_node.status.publisher.msgs) == 1
