"""executor_node: ActionPlan → safety gate → 3D grounding from depth → skills → controllers.

Runs next to the robot. For each plan it takes the RGB-D frame whose stamp equals the plan's
``embedding_stamp`` (the image the plan was made from), so grounding sees what the planner
saw; executes on a worker thread (the spinning thread keeps sensor data flowing) and reports
on ``/ivl/task_status``. One task at a time: a plan for another task arriving meanwhile is rejected.

The scene is the critic: a plan whose boxes do not hold what it names is refused before any motion,
and the executor asks the planner for the frame's next alternative (``TaskRequest.candidate``); a
motion whose goal a fresh frame does not show is retried with a plan made from a new frame
(``TaskRequest.attempt``), up to ``max_attempts``. SUCCEEDED means the goal was seen reached.
``/ivl/estop`` (std_msgs/Bool) true latches the e-stop: the arm holds where it is and every
further trajectory and gripper command is refused until ``/ivl/estop`` false resets it. The latch
survives the process (``estop_latch_file``): an executor restarted while e-stopped starts e-stopped.
``/ivl/estop_state`` (transient local, so late joiners get it) says whether it is latched.

Once a plan's steps are grounded and checked, before anything moves, the plan goes out on ``/ivl/grounded_plan``
with each step's pose filled (where it acts: the object a pick takes, the target a place or push brings it to).
With ``dry_run`` true the executor stops there: it has no trajectory or gripper publisher at all, and each task
ends REJECTED ``dry_run`` with the grounded poses in its message (how a recording from a real camera is
checked before an arm moves: ``ivl-embodied replay --through-stack``).

``/ivl/cancel`` (std_msgs/String: a task id) cancels a task: a running one holds the arm where it is
at once (no trajectory or gripper command is sent after the hold) and ends CANCELLED; one not yet
planned ends CANCELLED and its plan, when it comes, is ignored. On the rclpy backend the node also
serves the ``ivl_embodied_msgs/action/ExecuteTask`` action on ``/ivl/execute_task``
(:mod:`ivl_embodied.nodes.task_action`).
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time

from ivl_embodied.nodes.base import NodeBase, run_node
from ivl_embodied.nodes.status import StatusPublisher, Watchdog, subscribe_estop
from ivl_embodied.transport import QosProfile, msg_type
from ivl_embodied.transport.convert import header, ns_to_stamp, s_to_ns, stamp_to_ns


class ExecutorNode(NodeBase):
    NAME = "executor_node"
    PARAMETERS = {
        "plan_topic": "ivl/plan",
        "status_topic": "ivl/task_status",
        "estop_topic": "ivl/estop",
        "estop_state_topic": "ivl/estop_state",
        "heartbeat_topic": "ivl/executor/heartbeat",  # 10 Hz; the controller side stops motion without it
        "planner_heartbeat_topic": "ivl/planner/heartbeat",
        "watchdog_timeout_s": 3.0,  # tasks of a planner silent (or restarted) this long are FAILED node_lost
        # where the latch outlives the process: "auto" = $ROS_HOME (or ~/.ros)/ivl_embodied/estop_latched,
        # "" = in memory only (a restart forgets it)
        "estop_latch_file": "auto",
        "rgb_topic": "camera/color/image_raw",
        "depth_topic": "camera/depth/image_raw",
        "camera_info_topic": "camera/color/camera_info",
        "joint_states_topic": "joint_states",
        "tf_static_topic": "/tf_static",
        "tf_topic": "/tf",  # transforms that move (a hand-eye calibration's, an arm-mounted camera's)
        # a fixed camera's pose from a calibration file (YAML: parent, child, translation [m], rotation [x, y, z, w]),
        # for a camera whose pose nothing publishes ("" = none)
        "camera_calibration_file": "",
        "trajectory_topic": "arm_controller/joint_trajectory",
        "gripper_topic": "gripper_controller/commands",
        # ros2_control's actions instead of the topics (rclpy backend, control_msgs; "" = the topic): a trajectory
        # counts only when the controller's result says SUCCESSFUL. e.g. arm_controller/follow_joint_trajectory,
        # gripper_controller/gripper_cmd (a gripper_action_controller's GripperCommand)
        "trajectory_action": "",
        "gripper_action": "",
        "allowed_actions": ["pick", "place", "push"],
        "max_joint_speed": 1.5,
        "max_plan_age_s": 10.0,
        "frame_wait_s": 2.0,
        "task_topic": "ivl/task",  # follow-up requests to the planner (alternatives, retries)
        "max_attempts": 3,  # executions of a task whose goal a fresh frame does not show, then FAILED
        "max_candidates": 17,  # plans tried per frame (greedy, 8 sampled, the mirrored view's 1 + 8)
        "plan_wait_s": 60.0,  # how long to wait for the planner's answer to a follow-up request (the first
        # alternative costs the planner all of them: 17 decodings, about 12 s on a 2-core CPU)
        "base_frame": "base_link",
        "cancel_topic": "ivl/cancel",  # std_msgs/String: the id of a task to cancel
        "action_name": "ivl/execute_task",  # the ExecuteTask action (rclpy backend; "" = none)
        "grounded_plan_topic": "ivl/grounded_plan",  # each plan with its steps' grounded poses, before motion
        "dry_run": False,  # check and ground plans, publish the poses, send no command at all
        "robot": "ivl_arm6",  # the arm: a name of config/robots/ or a YAML file of that form
        # the description from a robot_state_publisher (its URDF, transient local) instead of the robot file's;
        # the robot file still names the joints, home, gripper and the tool frame in the URDF ("" = the file's)
        "robot_description_topic": "",
        "robot_description_wait_s": 10.0,
    }

    def setup(self) -> None:
        from ivl_embodied.nodes.topic_robot import TopicRobot, TopicRobotConfig, calibration_transform
        from ivl_embodied.plan.safety import SafetyGate, SafetyLimits
        from ivl_embodied.robot.arm import load_arm
        from ivl_embodied.robot.executor import Executor, ExecutorConfig

        p = self.params
        arm = load_arm(p["robot"])  # config/robots/NAME.yaml (or a YAML file): its description, tool, gripper
        if p["robot_description_topic"]:
            arm = self._described(arm, p["robot_description_topic"], float(p["robot_description_wait_s"]))
        arm.check()
        self.gate = SafetyGate(SafetyLimits(allowed_actions=tuple(p["allowed_actions"]),
                                            max_data_age_s=float(p["max_plan_age_s"])),
                               latch_file=estop_latch_file(p["estop_latch_file"]))
        topics = tuple((key, p[f"{key}_topic"]) for key in
                       ("rgb", "depth", "camera_info", "joint_states", "tf_static", "tf", "trajectory", "gripper"))
        # frames as old as the oldest plan the gate accepts, plus the time a plan may take to arrive
        history_s = float(p["max_plan_age_s"]) + float(p["frame_wait_s"])
        actions = None
        if (p["trajectory_action"] or p["gripper_action"]) and not p["dry_run"]:
            from ivl_embodied.nodes.controller_actions import ControllerClients

            actions = ControllerClients(self.node, p["trajectory_action"], p["gripper_action"])
            self.logger.info("controllers: FollowJointTrajectory on %s, GripperCommand on %s",
                             actions.trajectory_name if actions.trajectory else "- (the topic)",
                             actions.gripper_name if actions.gripper else "- (the topic)")
        self.robot = TopicRobot(self.node, TopicRobotConfig(arm=arm, base_frame=p["base_frame"], topics=topics,
                                                            frame_history_s=history_s, commands=not p["dry_run"],
                                                            finger_joints=arm.gripper_joints), actions=actions)
        if p["camera_calibration_file"]:
            self.robot.add_transform(*calibration_transform(p["camera_calibration_file"]))
        self.executor = Executor(self.robot, self.gate,
                                 limits=arm.trajectory_limits(max_joint_speed=float(p["max_joint_speed"])),
                                 config=ExecutorConfig(dry_run=bool(p["dry_run"])))
        self.grounded_pub = self.node.create_publisher("ivl_embodied_msgs/msg/ActionPlan", p["grounded_plan_topic"])
        if p["dry_run"]:
            self.logger.warning("dry run: plans are checked and grounded, nothing is sent to the robot")
        self.busy: str | None = None
        self.awaiting: tuple[int, int] | None = None  # (attempt, candidate) asked of the planner
        self.replies: queue.Queue = queue.Queue()
        self.task_pub = self.node.create_publisher("ivl_embodied_msgs/msg/TaskRequest", p["task_topic"])
        self.worker: threading.Thread | None = None
        self.status = StatusPublisher(self.node, p["status_topic"])
        self.node.create_subscription("ivl_embodied_msgs/msg/ActionPlan", p["plan_topic"], self.on_plan)
        subscribe_estop(self.node, p["estop_topic"], self.on_estop)
        self.estop_state = self.node.create_publisher("std_msgs/msg/Bool", p["estop_state_topic"],
                                                      QosProfile("reliable", 1, "transient_local"))
        self.publish_estop_state()
        self.watchdog = Watchdog(self.node, self.NAME, self.status, p["status_topic"], p["heartbeat_topic"],
                                 "planner", p["planner_heartbeat_topic"], float(p["watchdog_timeout_s"]),
                                 task_topic=p["task_topic"])
        if self.gate.estopped:
            self.logger.error("E-STOP still latched: %s; every motion is refused until %s false",
                              self.gate.estop_reasons()[0], p["estop_topic"])
        self.cancelled: str | None = None  # the running task, once cancelled
        self.ended: collections.deque[str] = collections.deque(maxlen=256)  # tasks with a final status
        self.node.create_subscription("std_msgs/msg/String", p["cancel_topic"], lambda m: self.cancel(m.data))
        self.action = None
        if p["action_name"] and self.node.backend == "rclpy":
            from ivl_embodied.nodes.task_action import TaskActionServer

            self.action = TaskActionServer(self.node, p["action_name"], p["task_topic"], p["status_topic"],
                                           p["planner_heartbeat_topic"], cancel=self.cancel)

    def cancel(self, task_id: str) -> bool:
        """Cancel ``task_id``: a running task's arm holds now and no motion follows; a task not yet
        here ends CANCELLED (its plan will be ignored). False for a task that already ended."""
        if not task_id or task_id in self.ended:
            return False
        if self.busy == task_id:
            self.cancelled = task_id
            self.robot.halt(f"task {task_id} cancelled")  # returns once the hold is sent
            self.replies.put(None)  # a wait for the planner's next plan ends now
            self.logger.warning("task %s cancelled: holding position", task_id)
        else:  # queued or being planned: the planner's plan for it will be ignored
            self._end(task_id, "CANCELLED", "cancelled before execution", reason="cancelled")
        return True

    def _end(self, task_id: str, state: str, message: str, **kw) -> None:
        self.ended.append(task_id)
        self.status(task_id, state, message, **kw)

    def publish_estop_state(self) -> None:
        self.estop_state.publish(msg_type("std_msgs/msg/Bool")(data=self.gate.estopped))

    def on_estop(self, msg) -> None:
        if msg.data:
            first = not self.gate.estopped
            self.gate.engage_estop(f"e-stop on {self.params['estop_topic']}")  # (re)written to the latch file
            self.hold_position()
            if first:
                self.logger.warning("E-STOP engaged: holding position, refusing every motion")
        elif self.gate.estopped:
            self.gate.reset_estop()
            self.logger.info("e-stop reset")
        self.publish_estop_state()

    def _described(self, arm, topic: str, wait_s: float):
        """``arm`` with the URDF a robot_state_publisher publishes on ``topic`` as its description."""
        import tempfile
        from pathlib import Path

        from ivl_embodied.robot.arm import arm_from_urdf

        urdf: list[str] = []
        self.node.create_subscription("std_msgs/msg/String", topic, lambda m: urdf.append(m.data),
                                      QosProfile("reliable", 1, "transient_local"))
        if not self.node.spin_until(lambda: bool(urdf), wait_s):
            raise ValueError(f"no robot description on {self.node.resolve_topic(topic)} within {wait_s:.0f} s "
                             "(robot_description_wait_s): is robot_state_publisher running?")
        arm = arm_from_urdf(urdf[-1], arm, Path(tempfile.mkdtemp(prefix="ivl_robot_description_")))
        self.logger.info("arm %s from the URDF on %s (%d joints driven)", arm.name, topic, len(arm.joint_names))
        return arm

    def hold_position(self) -> None:
        self.robot.hold()

    def on_plan(self, msg) -> None:
        task_id = msg.task_id
        if task_id in self.ended:
            self.logger.info("ignoring a plan for task %s: it already ended", task_id)
            return
        if self.busy is not None:
            if task_id == self.busy and self.awaiting == (msg.attempt, msg.candidate):
                self.replies.put(msg)  # the plan this task's worker asked the planner for
            elif task_id != self.busy:
                self._end(task_id, "REJECTED", f"executor busy with task {self.busy}", reason="busy",
                            attempt=msg.attempt)
            return
        if msg.attempt > 1 or msg.candidate > 0:
            self.logger.warning("ignoring plan for task %s attempt %d candidate %d: no such request is open",
                                task_id, msg.attempt, msg.candidate)
            return
        self.busy, self.awaiting, self.cancelled = task_id, None, None
        self.robot.resume()
        self.replies = queue.Queue()
        self.worker = threading.Thread(target=self._run_task, args=(msg,), name=f"execute-{task_id}", daemon=True)
        self.worker.start()

    def _ask(self, plan_msg, attempt: int, candidate: int, not_before_ns: int = 0):
        """Ask the planner for another plan of this task; the ActionPlan it answers with, or None."""
        self.awaiting = (attempt, candidate)
        self.task_pub.publish(msg_type("ivl_embodied_msgs/msg/TaskRequest")(
            header=header(self.node.now_ns()), task_id=plan_msg.task_id, instruction=plan_msg.instruction,
            attempt=attempt, candidate=candidate, not_before=ns_to_stamp(not_before_ns)))
        try:
            return self.replies.get(timeout=float(self.params["plan_wait_s"]))
        except queue.Empty:
            return None
        finally:
            self.awaiting = None

    def _observation(self, image_ns: int):
        """The RGB-D frame stamped ``image_ns`` (it may still be in flight when the plan arrives)."""
        from ivl_embodied.nodes.topic_robot import RobotUnavailable

        deadline = time.monotonic() + self.params["frame_wait_s"]
        while True:
            try:
                return self.robot.get_observation(stamp_ns=image_ns or None)
            except RobotUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _final(self, task_id: str, state: str, message: str, **kw) -> None:
        """A task's final status; CANCELLED, whatever the task got to, once it was cancelled."""
        if self.cancelled == task_id:
            state, kw["reason"] = "CANCELLED", "cancelled"
            message = f"cancelled; the arm held where it was ({message})" if message != "cancelled" else \
                "cancelled; the arm held where it was"
        self._end(task_id, state, message, **kw)

    def _run_task(self, first) -> None:
        """Up to ``max_attempts`` attempts, each on a fresh frame: try the planner's plans for the frame
        until one passes the checks before moving (at most ``max_candidates``), execute it and verify
        the goal. A miss after a motion is retried from a new frame; the status says which attempt."""
        from ivl_embodied.nodes.topic_robot import RobotUnavailable
        from ivl_embodied.plan.schema import format_plan
        from ivl_embodied.transport.convert import msg_to_plan, plan_to_msg

        task_id, msg, attempt, candidate, executed, replanned = first.task_id, first, 1, 0, 0, False
        max_attempts, max_candidates = int(self.params["max_attempts"]), int(self.params["max_candidates"])
        try:
            while True:
                if self.cancelled == task_id:
                    self._final(task_id, "CANCELLED", "cancelled", attempt=attempt)
                    return
                if self.gate.estopped:  # before anything else: no frame, no grounding, nothing
                    self._final(task_id, "FAILED" if executed else "REJECTED",
                                f"plan refused: {self.gate.estop_reasons()[0]}", reason="estop", attempt=attempt)
                    return
                try:
                    plan_text = format_plan(msg_to_plan(msg))
                except ValueError as e:
                    report, plan_text = None, f"malformed plan: {e}"
                else:
                    try:
                        # An alternative is grounded in the newest frame: nothing moved since its own frame (the
                        # plans before it were refused before any motion), its boxes still name the same places,
                        # the scene check sees the scene as it is now, and a slow planner's alternatives do not
                        # go stale while they are decoded.
                        obs = (self.robot.fresh_observation() if candidate > 0
                               else self._observation(stamp_to_ns(msg.embedding_stamp)))
                    except RobotUnavailable as e:
                        # A first plan made from a recent frame this node never received (its camera subscription
                        # matched a restarted camera later than the vision node's did): the planner plans again,
                        # once, from a frame this node has. A frame too old to keep is the plan's staleness, not that.
                        have = self.robot.frame_stamps() if candidate == 0 and not replanned else []
                        frame_ns = stamp_to_ns(msg.embedding_stamp)
                        try:
                            recent = self.robot.now() - frame_ns / 1e9 <= float(self.params["max_plan_age_s"])
                        except RobotUnavailable:
                            recent = False
                        if have and frame_ns not in have and recent and attempt < max_attempts:
                            replanned = True
                            self.status(task_id, "EXECUTING", f"the plan's frame is not here ({e}); planning "
                                                              "again from a frame this executor has", attempt=attempt)
                            answer = self._ask(msg, attempt + 1, 0, max(have))
                            if answer is not None and len(answer.steps) > 0:
                                msg, attempt, candidate = answer, attempt + 1, 0
                                continue
                        self._final(task_id, "FAILED" if executed else "REJECTED", f"cannot ground the plan: {e}",
                                    reason="no_observation", attempt=attempt)
                        return
                    self.status(task_id, "EXECUTING", f"candidate {candidate + 1}: {plan_text}", attempt=attempt)
                    n_steps = len(msg.steps)

                    def on_step(i, step, attempt=attempt, n_steps=n_steps):
                        self.status(task_id, "EXECUTING", f"step {i + 1}/{n_steps}: {step.action} {step.object!r}",
                                    attempt=attempt, step=i + 1)

                    def on_grounded(plan, poses, msg=msg):
                        self.grounded_pub.publish(plan_to_msg(
                            plan, task_id, msg.instruction, msg.raw_text, stamp=self.node.now_ns(),
                            frame_id=self.params["base_frame"], embedding_stamp=msg.embedding_stamp,
                            attempt=msg.attempt, candidate=msg.candidate, poses=poses))

                    report = self.executor.execute(plan_text, obs, on_step=on_step, on_grounded=on_grounded)
                if report is not None and report.stage == "dry_run":
                    self._final(task_id, "REJECTED", report.reason, reason="dry_run", attempt=attempt)
                    return
                if report is not None and report.ok:
                    self._final(task_id, "SUCCEEDED", f"{len(report.steps)} steps done; the goal is seen reached",
                                attempt=attempt)
                    return
                why = plan_text if report is None else f"[{report.stage}] {report.reason}"
                reason = ("estop" if self.gate.estopped else "refused" if report is None else
                          "scene_mismatch" if report.stage == "check" else "not_verified" if report.stage == "verify"
                          else "refused" if not report.moved else "execution")
                nxt, not_before = None, 0
                if self.gate.estopped:
                    pass
                elif report is None or not report.moved:  # refused before moving: the frame's next plan
                    if candidate + 1 < max_candidates:
                        nxt = (attempt, candidate + 1)
                else:
                    executed += 1
                    if report.stage == "verify" and attempt < max_attempts:
                        fresh = self.robot.fresh_observation()  # the scene after the missed attempt
                        not_before = s_to_ns(fresh.stamp)
                        self.status(task_id, "EXECUTING", f"attempt {attempt} missed its goal ({report.reason}); "
                                                          f"planning again from a new frame", attempt=attempt)
                        nxt = (attempt + 1, 0)
                if nxt is not None:
                    if nxt[0] == attempt:
                        self.status(task_id, "EXECUTING", f"candidate {candidate + 1} refused before moving ({why}); "
                                                          f"asking the planner for another plan", attempt=attempt)
                    answer = self._ask(msg, *nxt, not_before)
                    if answer is not None and len(answer.steps) > 0:
                        msg, (attempt, candidate) = answer, nxt
                        continue
                    why += ("; no answer from the planner within plan_wait_s" if answer is None
                            else f"; no other plan: {answer.raw_text}")
                refused = executed == 0 and not (report is not None and report.moved)
                self._final(task_id, "REJECTED" if refused else "FAILED", why, reason=reason, attempt=attempt)
                return
        except RobotUnavailable as e:
            self._final(task_id, "FAILED", str(e), reason="robot_unavailable", attempt=attempt)
        except Exception as e:  # a bug or an input nobody foresaw: the task still ends with a status
            self.logger.exception("task %s: execution raised", task_id)
            self.hold_position()
            self._final(task_id, "FAILED", f"execution raised {type(e).__name__}: {e}", reason="internal_error",
                        attempt=attempt)
        finally:
            self.busy = None

    def close(self) -> None:
        if self.worker is not None and self.worker.is_alive():
            self.gate.engage_estop("executor shutting down", persist=False)  # not an operator's e-stop
            self.hold_position()  # stopped mid-task: the arm holds instead of finishing the motion
            self.worker.join(timeout=5.0)


def estop_latch_file(value: str):
    """The e-stop latch file for the ``estop_latch_file`` parameter (None: in memory only)."""
    import os
    from pathlib import Path

    if not value:
        return None
    if value == "auto":
        return Path(os.environ.get("ROS_HOME") or "~/.ros").expanduser() / "ivl_embodied" / "estop_latched"
    return Path(value).expanduser()


def main(args: list[str] | None = None) -> int:
    return run_node(ExecutorNode, args)


if __name__ == "__main__":
    sys.exit(main())
