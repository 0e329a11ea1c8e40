"""The console's model: what a browser is shown, and what its commands ask of the graph."""

from __future__ import annotations

import pytest

from ivl_embodied.console.state import MAX_TASKS, CommandError, Console, plan_dict


class Sink:
    def __init__(self):
        self.sent: list[tuple] = []

    def send_task(self, task_id, instruction):
        self.sent.append(("task", task_id, instruction))

    def send_cancel(self, task_id):
        self.sent.append(("cancel", task_id))

    def send_estop(self, engage):
        self.sent.append(("estop", engage))


def console(retries=2):
    ids = iter(f"t{i}" for i in range(1000))
    sink = Sink()
    return Console(sink, retries=retries, new_id=lambda: next(ids)), sink


def test_a_typed_task_is_sent_with_a_fresh_id_and_shown_at_once():
    c, sink = console()
    (event,) = c.command({"op": "task", "instruction": "  put the red cube in the green bowl "}, now=0.0)
    assert sink.sent == [("task", "t0", "put the red cube in the green bowl")]
    assert event["type"] == "task" and event["task"]["task_id"] == "t0" and event["task"]["mine"]
    assert event["task"]["states"][-1]["state"] == "SENT" and event["task"]["final"] is None


@pytest.mark.parametrize("command, words", [
    ({"op": "task", "instruction": "   "}, "type a task"),
    ({"op": "task", "instruction": 3}, "type a task"),
    ({"op": "task", "instruction": "x" * 1000}, "at most"),
    ({"op": "cancel", "task_id": "nope"}, "no task 'nope'"),
    ({"op": "estop", "engage": "yes"}, "true or false"),
    ({"op": "drive", "speed": 9}, "unknown command 'drive'"),
    (["task"], "JSON object"),
])
def test_bad_commands_are_refused_naming_the_value_and_send_nothing(command, words):
    c, sink = console()
    with pytest.raises(CommandError, match=words):
        c.command(command, now=0.0)
    assert sink.sent == []


def test_a_refusal_for_want_of_a_view_is_asked_again_a_second_later_a_bounded_number_of_times():
    c, sink = console(retries=2)
    c.command({"op": "task", "instruction": "put the red cube in the green bowl"}, now=0.0)
    for i in range(2):
        (event,) = c.on_status("t0", "REJECTED", "no visual embeddings yet", "no_embeddings", 0, 0, now=10.0 * i)
        assert event["task"]["final"] is None and event["task"]["retrying"]
        assert "asking again" in event["task"]["states"][-1]["message"]
        c.tick(10.0 * i + 0.5)
        assert len(sink.sent) == 1 + i  # not yet
        c.tick(10.0 * i + 1.0)
        assert sink.sent[-1] == ("task", "t0", "put the red cube in the green bowl") and len(sink.sent) == 2 + i
    (event,) = c.on_status("t0", "REJECTED", "no visual embeddings yet", "no_embeddings", 0, 0, now=30.0)
    assert event["task"]["final"] == "REJECTED" and not event["task"]["retrying"]  # retries spent
    c.tick(100.0)
    assert len(sink.sent) == 3


def test_other_refusals_end_the_task_and_tasks_of_other_clients_are_shown_but_not_asked_again():
    c, sink = console()
    (event,) = c.on_status("cli1", "REJECTED", "no visual embeddings yet", "no_embeddings", 0, 0, now=0.0)
    assert event["task"]["final"] == "REJECTED" and not event["task"]["mine"]
    c.command({"op": "task", "instruction": "lift the red cube"}, now=0.0)
    (event,) = c.on_status("t0", "REJECTED", "plan refused: e-stop latched", "estop", 1, 0, now=0.0)
    assert event["task"]["final"] == "REJECTED"
    c.tick(5.0)
    assert sink.sent == [("task", "t0", "lift the red cube")]


def test_plans_and_grounded_poses_attach_to_their_task_and_late_progress_does_not_reopen_it():
    c, sink = console()
    c.command({"op": "task", "instruction": "put the red cube in the green bowl"}, now=0.0)
    steps = [{"action": "pick", "object": "red cube", "target": "", "box": [1, 2, 3, 4], "target_box": [],
              "pose": None}]
    c.on_plan(plan_dict("t0", "put the red cube in the green bowl", 1, 0, steps, "[...]", 1.5))
    grounded = [{**steps[0], "pose": [0.4, -0.1, 0.03]}]
    (event,) = c.on_grounded(plan_dict("t0", "put the red cube in the green bowl", 1, 0, grounded, "[...]", 1.5))
    task = event["task"]
    assert task["plans"][0]["steps"][0]["box"] == [1, 2, 3, 4] and task["grounded"]["steps"][0]["pose"][0] == 0.4
    c.on_status("t0", "CANCELLED", "cancelled", "cancelled", 1, 1, now=1.0)
    assert c.on_status("t0", "EXECUTING", "step 2/2", "", 1, 2, now=1.1) == []
    with pytest.raises(CommandError, match="already ended CANCELLED"):
        c.command({"op": "cancel", "task_id": "t0"}, now=2.0)


def test_cancel_and_estop_go_to_the_graph():
    c, sink = console()
    c.command({"op": "task", "instruction": "put the red cube in the green bowl"}, now=0.0)
    c.command({"op": "cancel", "task_id": "t0"}, now=0.1)
    c.command({"op": "estop", "engage": True}, now=0.2)
    c.command({"op": "estop", "engage": False}, now=0.3)
    assert sink.sent[1:] == [("cancel", "t0"), ("estop", True), ("estop", False)]
    assert c.on_estop(True) == [{"type": "estop", "latched": True}]


def test_views_are_bounded_and_the_snapshot_says_what_the_stack_understands():
    c, _ = console()
    for i in range(MAX_TASKS + 10):
        c.on_status(f"x{i}", "SUCCEEDED", "done", "", 1, 0, now=0.0)
    assert len(c.tasks) == MAX_TASKS and "x0" not in c.tasks
    c.heard("camera", 10.0, (640, 480))
    snap = c.snapshot(now=12.0)
    assert snap["health"]["ages"] == {"camera": 2.0, "planner": None, "executor": None}
    assert snap["health"]["camera_size"] == (640, 480)
    assert "red" in snap["vocabulary"]["colors"] and "bowl" in snap["vocabulary"]["containers"]
    assert "pick" in snap["vocabulary"]["line"]


def test_statuses_that_crossed_on_the_way_are_shown_in_stamp_order():
    c, _ = console()
    c.command({"op": "task", "instruction": "lift the red cube"}, now=0.0)
    c.on_status("t0", "RECEIVED", "", "", 1, 0, now=0.0, stamp=1.0)
    c.on_status("t0", "EXECUTING", "candidate 1", "", 1, 0, now=0.1, stamp=1.3)  # the executor's, heard first
    (event,) = c.on_status("t0", "PLANNED", "[...]", "", 1, 0, now=0.2, stamp=1.2)
    assert [s["state"] for s in event["task"]["states"]] == ["SENT", "RECEIVED", "PLANNED", "EXECUTING"]
