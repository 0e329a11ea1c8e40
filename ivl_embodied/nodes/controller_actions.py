"""ros2_control's action interfaces: ``control_msgs/action/FollowJointTrajectory`` and ``GripperCommand``.

A real arm's ``joint_trajectory_controller`` serves FollowJointTrajectory (on ``arm_controller/
follow_joint_trajectory``) and a ``gripper_action_controller`` serves GripperCommand (on ``gripper_controller/
gripper_cmd``); besides their topics, these actions say how a motion ended. :class:`ControllerClients` is the
executor's side: it sends a goal, waits for its result (bounded, and ended early by a halt, which cancels the goal)
and checks it: a trajectory counts only when the controller reports ``SUCCESSFUL``, a gripper command when it
reached its position or stalled on something it holds. :class:`ControllerServers` serves both on our simulated
controllers (``sim_node``), as ros2_control does, so the clients run against a real peer.

rclpy backend only (actions are not part of our Cyclone backend), with ``control_msgs`` in the ROS 2 environment.
The pure functions (:func:`trajectory_outcome`, :func:`gripper_outcome`) hold the checks and are tested without ROS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

SERVER_WAIT_S = 5.0  # how long a client waits for its action server to appear
ERROR_CODES = {0: "SUCCESSFUL", -1: "INVALID_GOAL", -2: "INVALID_JOINTS", -3: "OLD_HEADER_TIMESTAMP",
               -4: "PATH_TOLERANCE_VIOLATED", -5: "GOAL_TOLERANCE_VIOLATED"}
GOAL_STATUS = {0: "UNKNOWN", 1: "ACCEPTED", 2: "EXECUTING", 3: "CANCELING", 4: "SUCCEEDED", 5: "CANCELED",
               6: "ABORTED"}  # action_msgs/GoalStatus


def trajectory_outcome(status: int, error_code: int, error_string: str) -> str | None:
    """Why a FollowJointTrajectory result is not a success (None: the controller reports SUCCESSFUL)."""
    if status == 4 and error_code == 0:
        return None
    return (f"{GOAL_STATUS.get(status, status)}, error_code {error_code} "
            f"({ERROR_CODES.get(error_code, 'unknown')}){': ' + error_string if error_string else ''}")


def gripper_outcome(status: int, position: float, reached_goal: bool, stalled: bool) -> str | None:
    """Why a GripperCommand result is not a success (None: it reached its position, or stalled on what it holds)."""
    if status == 4 and (reached_goal or stalled):
        return None
    return f"{GOAL_STATUS.get(status, status)} at position {position:.4f} (reached_goal {reached_goal}, " \
           f"stalled {stalled})"


def _require(node: Any, **actions: str) -> None:
    """Refuse the actions named (a parameter's non-empty value) unless this node runs on rclpy with control_msgs."""
    for what in (name for name, value in actions.items() if value):
        _require_one(node, what)


def _require_one(node: Any, what: str) -> None:
    if node.backend != "rclpy":
        raise ValueError(f"{what} needs the rclpy backend (ros2_control's actions); this node runs on "
                         f"{node.backend}: set IVL_TRANSPORT=rclpy in a ROS 2 environment, or leave {what} empty "
                         f"for the controllers' topics")
    try:
        import control_msgs.action  # noqa: F401
    except ImportError as e:
        raise ValueError(f"{what} needs ros2_control's control_msgs in this ROS 2 environment ({e})") from None


class ControllerClients:
    """The executor's FollowJointTrajectory and GripperCommand clients ("" for either: not used)."""

    def __init__(self, node: Any, trajectory_action: str, gripper_action: str):
        _require(node, trajectory_action=trajectory_action, gripper_action=gripper_action)
        from rclpy.action import ActionClient

        self.node = node
        self.trajectory = self.gripper = None
        if trajectory_action:
            from control_msgs.action import FollowJointTrajectory

            self.FJT = FollowJointTrajectory
            self.trajectory_name = node.resolve_topic(trajectory_action)
            self.trajectory = ActionClient(node.rclpy_node, FollowJointTrajectory, self.trajectory_name)
        if gripper_action:
            from control_msgs.action import GripperCommand

            self.GC = GripperCommand
            self.gripper_name = node.resolve_topic(gripper_action)
            self.gripper = ActionClient(node.rclpy_node, GripperCommand, self.gripper_name)
        self._lock = threading.Lock()
        self._active: Any = None  # the running trajectory goal's handle

    @staticmethod
    def _wait(future: Any, deadline: float, halted: Callable[[], str | None]) -> str | None:
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        while not done.wait(0.05):
            why = halted()
            if why:
                return f"halted ({why})"
            if time.monotonic() > deadline:
                return "no result in time"
        return None

    def _run(self, client: Any, name: str, goal: Any, wall_s: float, halted, lock,
             track: bool) -> tuple[str | None, Any]:
        """Send ``goal`` (under ``lock``, the robot's halt lock: a goal is sent before a halt, which cancels it, or
        not at all) and wait for its result; (why it failed before a result, the result)."""
        if not client.wait_for_server(timeout_sec=min(wall_s, SERVER_WAIT_S)):
            return f"no action server on {name} within {min(wall_s, SERVER_WAIT_S):.0f} s", None
        deadline = time.monotonic() + wall_s
        with lock:
            why = halted()
            if why:
                return f"halted ({why})", None
            sent = client.send_goal_async(goal)
            if track:
                with self._lock:
                    self._active = sent
        try:
            why = self._wait(sent, deadline, halted)
            if why:
                sent.add_done_callback(_cancel_when_accepted)
                return f"{name}: goal not answered: {why}", None
            handle = sent.result()
            if not handle.accepted:
                return f"{name} rejected the goal", None
            result = handle.get_result_async()
            why = self._wait(result, deadline, halted)
        finally:
            if track:
                with self._lock:
                    self._active = None
        if why:
            handle.cancel_goal_async()
            return f"{name}: {why}", None
        return None, result.result()

    def follow(self, trajectory_msg: Any, wall_s: float, halted: Callable[[], str | None], lock) -> str | None:
        """Send a trajectory as a FollowJointTrajectory goal and wait for its result (at most ``wall_s``); None when
        the controller reports SUCCESSFUL, else why."""
        why, res = self._run(self.trajectory, self.trajectory_name, self.FJT.Goal(trajectory=trajectory_msg),
                             wall_s, halted, lock, track=True)
        if why:
            return why
        why = trajectory_outcome(res.status, res.result.error_code, res.result.error_string)
        return f"{self.trajectory_name}: {why}" if why else None

    def grip(self, position: float, max_effort: float, wall_s: float, halted: Callable[[], str | None],
             lock) -> str | None:
        """Send a GripperCommand goal (``position`` of the gripper's joint) and wait for its result; None when it
        reached the position or stalled (holding something), else why."""
        from control_msgs.msg import GripperCommand

        goal = self.GC.Goal(command=GripperCommand(position=float(position), max_effort=float(max_effort)))
        why, res = self._run(self.gripper, self.gripper_name, goal, wall_s, halted, lock, track=False)
        if why:
            return why
        r = res.result
        why = gripper_outcome(res.status, r.position, r.reached_goal, r.stalled)
        return f"{self.gripper_name}: {why}" if why else None

    def cancel(self) -> None:
        """Cancel the running trajectory goal, or the one being sent once it is accepted (the controller then holds
        where the arm is)."""
        with self._lock:
            sent = self._active
        if sent is not None:
            sent.add_done_callback(_cancel_when_accepted)


def _cancel_when_accepted(sent: Any) -> None:
    handle = sent.result()
    if handle is not None and handle.accepted:
        handle.cancel_goal_async()


class ControllerServers:
    """FollowJointTrajectory and GripperCommand on the simulated controllers of ``sim_node`` ("" for either: not
    served). Goals run as coroutines on the node's executor; :meth:`tick` (after each physics tick) wakes them."""

    def __init__(self, node: Any, controller: Any, trajectory_action: str, gripper_action: str,
                 goal_tolerance: float, settle_s: float):
        _require(node, trajectory_action=trajectory_action, gripper_action=gripper_action)
        from rclpy.action import ActionServer, CancelResponse, GoalResponse

        self.node, self.controller, self.world = node, controller, controller.world
        self.goal_tolerance, self.settle_s = goal_tolerance, settle_s
        self._waiting: list[Any] = []
        accept = lambda _goal: GoalResponse.ACCEPT  # noqa: E731 (every goal is checked when it runs)
        cancel = lambda _handle: CancelResponse.ACCEPT  # noqa: E731
        self.servers = []
        if trajectory_action:
            from control_msgs.action import FollowJointTrajectory

            self.FJT = FollowJointTrajectory
            self.servers.append(ActionServer(node.rclpy_node, FollowJointTrajectory,
                                             node.resolve_topic(trajectory_action), execute_callback=self.follow,
                                             goal_callback=accept, cancel_callback=cancel))
        if gripper_action:
            from control_msgs.action import GripperCommand

            self.GC = GripperCommand
            self.servers.append(ActionServer(node.rclpy_node, GripperCommand, node.resolve_topic(gripper_action),
                                             execute_callback=self.grip, goal_callback=accept,
                                             cancel_callback=cancel))

    def tick(self) -> None:
        waiting, self._waiting = self._waiting, []
        for f in waiting:
            if not f.done():
                f.set_result(None)

    async def _next_tick(self) -> None:
        from rclpy.task import Future

        f = Future()
        self._waiting.append(f)
        await f

    async def follow(self, handle: Any) -> Any:
        from ivl_embodied.transport.convert import MessageError, msg_to_trajectory, ns_to_s, stamp_to_ns

        R = self.FJT.Result
        goal = handle.request
        try:
            traj = msg_to_trajectory(goal.trajectory).in_order(self.controller.joints)
        except (MessageError, ValueError) as e:
            handle.abort()
            return R(error_code=R.INVALID_JOINTS, error_string=str(e))
        refused = self.controller.command(traj)
        if refused:
            handle.abort()
            return R(error_code=R.INVALID_GOAL, error_string=refused)
        active, target = self.controller.active, np.array(traj.points[-1].positions)
        tol = np.full(len(target), self.goal_tolerance)
        for t in goal.goal_tolerance:  # a tolerance > 0 for a joint overrides ours (0: the default)
            if t.name in self.controller.joints and t.position > 0:
                tol[self.controller.joints.index(t.name)] = t.position
        late = ns_to_s(stamp_to_ns(goal.goal_time_tolerance)) or self.settle_s
        end = self.world.time + traj.duration
        while True:
            await self._next_tick()
            if handle.is_cancel_requested:
                self.controller.hold()
                handle.canceled()
                return R(error_code=R.SUCCESSFUL, error_string="cancelled: holding")
            if self.controller.active is not active:  # a newer trajectory, a hold, an e-stop
                handle.abort()
                why = f"e-stopped ({self.controller.stopped})" if self.controller.stopped else "replaced or held"
                return R(error_code=R.INVALID_GOAL, error_string=f"trajectory stopped: {why}")
            if self.world.time < end:
                continue
            err = np.abs(self.world.arm_q() - target)
            if np.all(err <= tol) and np.abs(self.world.arm_qd()).max() < 0.05:
                handle.succeed()
                return R(error_code=R.SUCCESSFUL, error_string="")
            if self.world.time > end + late:
                j = int(np.argmax(err - tol))
                handle.abort()
                return R(error_code=R.GOAL_TOLERANCE_VIOLATED,
                         error_string=f"{self.controller.joints[j]} {err[j]:.4f} from its goal (tolerance "
                                      f"{tol[j]:.4f}) {late:.2f} s after the trajectory's end")

    async def grip(self, handle: Any) -> Any:
        R = self.GC.Result
        w, arm = self.world, self.world.arm
        n = len(arm.gripper_joints)
        opening = arm.opening([float(handle.request.command.position)] * n)
        try:
            self.controller.command_gripper(opening)
        except ValueError as e:
            self.node.logger.error("refused a GripperCommand goal: %s", e)
            handle.abort()
            return R(position=float(w.data.qpos[w.finger_qpos_adr[0]]), stalled=False, reached_goal=False)
        target = arm.gripper_position(opening)
        start, still_since = w.time, None
        while True:
            await self._next_tick()
            q, v = float(w.data.qpos[w.finger_qpos_adr[0]]), abs(float(w.data.qvel[w.finger_dof_adr[0]]))
            effort = abs(float(w.data.actuator_force[w.gripper_act]))
            reached = abs(q - target) < 0.02 * max(abs(target), 0.05)
            still_since = (still_since or w.time) if v < 1e-3 else None
            settled = still_since is not None and w.time - still_since > 0.05 and w.time - start > 0.1
            if handle.is_cancel_requested:
                handle.canceled()
                return R(position=q, effort=effort, stalled=False, reached_goal=reached)
            if settled:  # at its position, or stopped short of it on what it holds (allow_stalling, as for grasping)
                handle.succeed()
                return R(position=q, effort=effort, stalled=not reached, reached_goal=reached)
            if w.time - start > 2.0:
                handle.abort()
                return R(position=q, effort=effort, stalled=False, reached_goal=reached)
