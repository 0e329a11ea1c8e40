"""Every accepted task ends in a final state, also when the node handling it dies or restarts."""

from __future__ import annotations

import time

import pytest

from ivl_embodied.nodes.watchdog import TaskWatch, beat_id, parse_beat
from ivl_embodied.transport import msg_type


def test_a_silent_owner_fails_its_tasks_after_the_timeout():
    w = TaskWatch("executor", timeout_s=3.0)
    w.beat("a", 0.0)
    w.status("t1", "PLANNED", 1, 0.5)
    w.status("t1", "EXECUTING", 1, 1.0)
    w.status("t2", "PLANNING", 1, 1.0)  # the planner's: not watched here
    w.beat("a", 2.0)
    assert w.orphans(4.9) == []  # beat at 2.0: 2.9 s of silence
    ((task, attempt, why),) = w.orphans(5.1)
    assert (task, attempt) == ("t1", 1) and "stopped answering while the task was EXECUTING" in why
    assert w.orphans(10.0) == []  # reported once


def test_a_restarted_owner_fails_the_tasks_it_forgot_at_once():
    w = TaskWatch("planner", timeout_s=3.0)
    w.beat("first", 0.0)
    w.status("t", "PLANNING", 1, 0.1)
    w.beat("second", 0.5)  # killed and respawned: a new incarnation beats
    ((task, _, why),) = w.orphans(0.6)
    assert task == "t" and "restarted while the task was PLANNING" in why


def test_a_request_the_planner_never_acknowledged_is_lost_even_while_it_beats():
    w = TaskWatch("planner", timeout_s=2.0)
    w.beat("p", 0.0)
    w.status("heard", "REQUESTED", 1, 0.0)
    w.status("missed", "REQUESTED", 1, 0.0)
    w.status("heard", "RECEIVED", 1, 0.5)  # the planner queued it
    w.status("heard", "REQUESTED", 1, 0.6)  # a late copy of the request changes nothing
    for t in (1.0, 2.0, 2.9):
        w.beat("p", t)
    ((task, _, why),) = w.orphans(3.0)
    assert task == "missed" and "did not acknowledge" in why
    assert w.orphans(3.0) == []


def test_ended_or_handed_over_tasks_are_not_failed():
    w = TaskWatch("executor", timeout_s=1.0)
    w.status("done", "EXECUTING", 1, 0.0)
    w.status("done", "SUCCEEDED", 1, 0.5)
    w.status("back", "PLANNED", 1, 0.0)
    w.status("back", "PLANNING", 2, 0.2)  # a retry: the planner has it now
    assert w.orphans(5.0) == []
    w.status("nobody", "PLANNED", 1, 10.0)  # no executor has ever beaten
    ((task, _, why),) = w.orphans(11.5)
    assert task == "nobody" and "no executor node is running" in why
    with pytest.raises(ValueError, match="watched must be"):
        TaskWatch("vision")
    assert parse_beat(beat_id("planner_node", "abc")) == ("planner_node", "abc") and parse_beat("x") is None


S = msg_type("ivl_embodied_msgs/msg/TaskStatus")


@pytest.fixture
def executor(loopback_dds):
    """An executor node whose watchdog gives up after 0.3 s, and the statuses it publishes."""
    from ivl_embodied.nodes.executor_node import ExecutorNode

    node = ExecutorNode.create({"watchdog_timeout_s": 0.3})
    sent = []
    node.status.publisher.publish = sent.append
    yield node, sent
    node.shutdown()


def test_the_executor_fails_the_tasks_of_a_planner_that_died(executor):
    node, sent = executor
    Header = msg_type("std_msgs/msg/Header")
    node.watchdog.on_beat(Header(frame_id="planner_node/inc1"))
    node.watchdog.on_status(S(task_id="t", state=S.STATE_PLANNING, attempt=1))
    node.watchdog.check()
    assert sent == []
    time.sleep(0.4)  # the planner was killed: no more beats
    node.watchdog.check()
    ((msg),) = sent
    assert (msg.task_id, msg.state, msg.reason, msg.attempt) == ("t", S.STATE_FAILED, "node_lost", 1)


def test_a_task_sent_to_a_dead_planner_still_ends(executor):
    """Nobody says anything about a task whose planner is not running, unless the executor does."""
    node, sent = executor
    Request = msg_type("ivl_embodied_msgs/msg/TaskRequest")
    node.watchdog.on_request(Request(task_id="lost", instruction="put the red cube in the green bowl"))
    node.watchdog.on_request(Request(task_id="mine", instruction="x", attempt=2))  # a follow-up: not watched
    time.sleep(0.4)
    node.watchdog.check()
    ((msg),) = sent
    assert (msg.task_id, msg.state, msg.reason) == ("lost", S.STATE_FAILED, "node_lost")
    assert "did not acknowledge the task" in msg.message


def test_the_operator_waits_for_a_planner_not_for_any_task_subscriber(executor, capsys):
    """The executor's watchdog subscribes to /ivl/task too; an operator who took that for a planner sent
    tasks nobody would plan (the demo did, under load). Without a planner heartbeat nothing is sent."""
    from ivl_embodied.nodes.operator_cli import main

    node, sent = executor
    assert main(["put the red cube in the green bowl", "--wait-subscribers", "2"]) == 2
    assert "no planner heartbeat on /ivl/planner/heartbeat" in capsys.readouterr().err
