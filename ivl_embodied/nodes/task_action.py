"""The ``ivl_embodied_msgs/action/ExecuteTask`` action server (rclpy backend only).

A goal is a task in an operator's words. The server hands it to the stack exactly as any other
client does, as a ``TaskRequest`` on ``ivl/task`` whose ``task_id`` is taken from the goal's id,
and follows the stack's ``TaskStatus`` for it: each status is a feedback message (state, the plan
being executed, its step, the attempt), the final one the result. A cancel request calls the
executor's ``cancel`` before it is accepted, so by the time a client hears that its cancel was
accepted the arm has been told to hold and no further motion will be commanded.

Runs on the rclpy node's own executor (the node's spinning thread): ``execute`` is a coroutine that
waits on a future the status callback completes, so nothing blocks the spin.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ivl_embodied.nodes.status import CAMERA_NOT_READY, CAMERA_RETRIES, STATUS, STATUS_QOS, TERMINAL, state_name
from ivl_embodied.transport import msg_type
from ivl_embodied.transport.convert import header

LOG = logging.getLogger(__name__)
PLANNER_WAIT_S = 30.0  # a goal waits this long for a planner to listen, then aborts


def task_id_of(goal_uuid: Any) -> str:
    """The stack's task id of an action goal: ``goal_`` + the goal id's 16 bytes in hex."""
    return "goal_" + bytes(goal_uuid).hex()


def plan_of(message: str) -> str:
    """The plan JSON an EXECUTING status names ("candidate 2: [{...}]"), or ""."""
    head, sep, rest = message.partition(": ")
    if sep and head.startswith("candidate ") and rest.startswith("["):
        try:
            json.loads(rest)
        except ValueError:
            return ""
        return rest
    return ""


class TaskActionServer:
    def __init__(self, node: Any, action_name: str, task_topic: str, status_topic: str,
                 planner_heartbeat_topic: str, cancel: Callable[[str], bool]):
        from rclpy.action import ActionServer, CancelResponse, GoalResponse

        from ivl_embodied_msgs.action import ExecuteTask

        self.node, self.cancel_task = node, cancel
        self.Action = ExecuteTask
        self._accept, self._reject = GoalResponse.ACCEPT, GoalResponse.REJECT
        self._cancel_ok, self._cancel_no = CancelResponse.ACCEPT, CancelResponse.REJECT
        self.task_pub = node.create_publisher("ivl_embodied_msgs/msg/TaskRequest", task_topic)
        node.create_subscription(STATUS, status_topic, self.on_status, STATUS_QOS)
        self.last_beat = -1e9  # monotonic time of the planner's last heartbeat
        node.create_subscription("std_msgs/msg/Header", planner_heartbeat_topic, self._on_beat)
        self.goals: dict[str, dict] = {}  # task id -> {"handle", "future", "plan", "last"}
        self.name = node.resolve_topic(action_name)
        self.server = ActionServer(node.rclpy_node, ExecuteTask, self.name, execute_callback=self.execute,
                                   goal_callback=self.on_goal, cancel_callback=self.on_cancel)
        node.logger.info("serving %s (ivl_embodied_msgs/action/ExecuteTask)", self.name)

    def on_goal(self, goal: Any) -> Any:
        if not goal.instruction.strip():
            self.node.logger.warning("refused an ExecuteTask goal with an empty instruction")
            return self._reject
        return self._accept

    def on_cancel(self, handle: Any) -> Any:
        task_id = task_id_of(handle.goal_id.uuid)
        if task_id not in self.goals:
            return self._cancel_no
        self.cancel_task(task_id)  # the hold is sent when this returns
        return self._cancel_ok

    async def execute(self, handle: Any) -> Any:
        from rclpy.task import Future

        task_id = task_id_of(handle.goal_id.uuid)
        entry = {"handle": handle, "future": Future(), "plan": "", "step": 0, "retries": CAMERA_RETRIES}
        self.goals[task_id] = entry
        self.node.logger.info("ExecuteTask goal %s: %r", task_id, handle.request.instruction)
        if not await self._planner_listens(PLANNER_WAIT_S):
            self.goals.pop(task_id, None)
            handle.abort()
            return self.Action.Result(success=False, message=f"no planner listening on {self.task_pub.topic} "
                                      f"within {PLANNER_WAIT_S:.0f} s", reason="node_lost", task_id=task_id)
        self._send(task_id, handle.request.instruction)
        try:
            final = await entry["future"]
        finally:
            self.goals.pop(task_id, None)
        state = state_name(final.state)
        if state == "CANCELLED" and handle.is_cancel_requested:
            handle.canceled()
        elif state == "SUCCEEDED":
            handle.succeed()
        else:
            handle.abort()
        return self.Action.Result(success=state == "SUCCEEDED", verified=state == "SUCCEEDED",
                                  message=final.message, reason=final.reason, task_id=task_id,
                                  attempt=final.attempt)

    async def _planner_listens(self, timeout: float) -> bool:
        """Whether a planner beats and our task publisher has matched its subscription (a task sent
        before that would be lost: the topic is volatile). Waits up to ``timeout`` s."""
        from rclpy.task import Future

        ours = sum(1 for s in self.node._subs if s.topic == self.task_pub.topic)  # the watchdog's
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() - self.last_beat < 1.0 and self.task_pub.matched_subscribers > ours:
                return True
            if time.monotonic() > deadline:
                return False
            tick: Future = Future()
            timer = self._timer(0.1, lambda f=tick: f.done() or f.set_result(None))
            await tick
            self.node.rclpy_node.destroy_timer(timer)

    def _on_beat(self, _msg: Any) -> None:
        self.last_beat = time.monotonic()

    def _send(self, task_id: str, instruction: str) -> None:
        self.task_pub.publish(msg_type("ivl_embodied_msgs/msg/TaskRequest")(
            header=header(self.node.now_ns()), task_id=task_id, instruction=instruction))

    def _send_later(self, task_id: str, instruction: str, delay_s: float) -> None:
        def fire() -> None:
            self.node.rclpy_node.destroy_timer(timer)
            if task_id in self.goals and not self.goals[task_id]["future"].done():
                self._send(task_id, instruction)

        timer = self._timer(delay_s, fire)

    def _timer(self, period_s: float, callback: Callable[[], Any]) -> Any:
        """An rclpy timer on steady time (the node's clock may follow /clock)."""
        from rclpy.clock import Clock, ClockType

        return self.node.rclpy_node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def on_status(self, msg: Any) -> None:
        entry = self.goals.get(msg.task_id)
        if entry is None or entry["future"].done():
            return
        state = state_name(msg.state)
        entry["plan"] = plan_of(msg.message) or entry["plan"]
        if msg.step:
            entry["step"] = msg.step
        if state == "REJECTED" and msg.reason in CAMERA_NOT_READY and entry["retries"] > 0:
            # the planner has no current view yet (the camera just started or restarted): ask again
            entry["retries"] -= 1
            self._send_later(msg.task_id, entry["handle"].request.instruction, 1.0)
            msg.message = f"{msg.message}; asking again in 1 s"
        elif state in TERMINAL:
            entry["future"].set_result(msg)
            return
        entry["handle"].publish_feedback(self.Action.Feedback(
            state=msg.state, state_name=state, plan=entry["plan"], step=entry["step"], attempt=msg.attempt,
            message=msg.message))
