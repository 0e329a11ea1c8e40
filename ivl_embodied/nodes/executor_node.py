"""executor_node: ActionPlan → safety gate → 3D grounding from depth → skills → controllers.

Runs next to the robot. For each plan it takes the RGB-D frame whose stamp equals the plan's
``embedding_stamp`` (the image the plan was made from), so grounding sees what the planner
saw; executes on a worker thread (the spinning thread keeps sensor data flowing) and reports
on ``/ivl/task_status``. One plan at a time: a plan arriving while another runs is rejected.
``/ivl/estop`` (std_msgs/Bool) true latches the e-stop: the arm holds where it is and every
further trajectory is refused until ``/ivl/estop`` false resets it.
"""

from __future__ import annotations

import sys
import threading
import time

from ivl_embodied.nodes.base import NodeBase, run_node
from ivl_embodied.nodes.status import StatusPublisher
from ivl_embodied.transport.convert import stamp_to_ns, trajectory_to_msg


class ExecutorNode(NodeBase):
    NAME = "executor_node"
    PARAMETERS = {
        "plan_topic": "/ivl/plan",
        "status_topic": "/ivl/task_status",
        "estop_topic": "/ivl/estop",
        "rgb_topic": "/camera/color/image_raw",
        "depth_topic": "/camera/depth/image_raw",
        "camera_info_topic": "/camera/color/camera_info",
        "joint_states_topic": "/joint_states",
        "tf_static_topic": "/tf_static",
        "trajectory_topic": "/arm_controller/joint_trajectory",
        "gripper_topic": "/gripper_controller/commands",
        "allowed_actions": ["pick", "place", "push"],
        "max_joint_speed": 1.5,
        "max_plan_age_s": 10.0,
        "frame_wait_s": 2.0,
        "base_frame": "base_link",
    }

    def setup(self) -> None:
        from ivl_embodied.nodes.topic_robot import TopicRobot, TopicRobotConfig
        from ivl_embodied.plan.safety import SafetyGate, SafetyLimits
        from ivl_embodied.robot.executor import Executor
        from ivl_embodied.sim.world import ARM  # the arm's description (our MuJoCo arm)

        p = self.params
        self.gate = SafetyGate(SafetyLimits(allowed_actions=tuple(p["allowed_actions"]),
                                            max_data_age_s=float(p["max_plan_age_s"])))
        topics = tuple((key, p[f"{key}_topic"]) for key in
                       ("rgb", "depth", "camera_info", "joint_states", "tf_static", "trajectory", "gripper"))
        self.robot = TopicRobot(self.node, TopicRobotConfig(arm=ARM, base_frame=p["base_frame"], topics=topics))
        self.executor = Executor(self.robot, self.gate,
                                 limits=ARM.trajectory_limits(max_joint_speed=float(p["max_joint_speed"])))
        self.busy: str | None = None
        self.worker: threading.Thread | None = None
        self.status = StatusPublisher(self.node, p["status_topic"])
        self.node.create_subscription("ivl_embodied_msgs/msg/ActionPlan", p["plan_topic"], self.on_plan)
        self.node.create_subscription("std_msgs/msg/Bool", p["estop_topic"], self.on_estop)

    def on_estop(self, msg) -> None:
        if msg.data and not self.gate.estopped:
            self.gate.engage_estop(f"e-stop on {self.params['estop_topic']}")
            self.hold_position()
            self.logger.warning("E-STOP engaged: holding position, refusing every motion")
        elif not msg.data and self.gate.estopped:
            self.gate.reset_estop()
            self.logger.info("e-stop reset")

    def hold_position(self) -> None:
        from ivl_embodied.robot.interface import JointTrajectory, JointTrajectoryPoint

        try:
            q = self.robot.get_observation(with_images=False).joint_state.position
        except Exception as e:  # no joint state yet: nothing is moving that we commanded
            self.logger.warning("cannot command hold: %s", e)
            return
        hold = JointTrajectory(self.robot.arm_joint_names,
                               (JointTrajectoryPoint(tuple(q), (0.0,) * len(q), 0.0),))
        self.robot.pub_traj.publish(trajectory_to_msg(hold))

    def on_plan(self, msg) -> None:
        from ivl_embodied.plan.schema import format_plan
        from ivl_embodied.transport.convert import msg_to_plan

        task_id = msg.task_id
        if self.busy is not None:
            self.status(task_id, "REJECTED", f"executor busy with task {self.busy}", reason="busy")
            return
        try:
            plan_text = format_plan(msg_to_plan(msg))
        except ValueError as e:
            self.status(task_id, "REJECTED", f"malformed plan: {e}", reason="refused")
            return
        self.busy = task_id
        self.worker = threading.Thread(target=self._execute, args=(task_id, plan_text,
                                                                   stamp_to_ns(msg.embedding_stamp)),
                                       name=f"execute-{task_id}", daemon=True)
        self.worker.start()

    def _execute(self, task_id: str, plan_text: str, image_ns: int) -> None:
        from ivl_embodied.nodes.topic_robot import RobotUnavailable

        try:
            deadline = time.monotonic() + self.params["frame_wait_s"]
            while True:  # the frame may still be in flight when the plan arrives
                try:
                    obs = self.robot.get_observation(stamp_ns=image_ns or None)
                    break
                except RobotUnavailable as e:
                    if time.monotonic() > deadline:
                        self.status(task_id, "REJECTED", f"cannot ground the plan: {e}",
                                    reason="no_observation")
                        return
                    time.sleep(0.05)
            self.status(task_id, "EXECUTING", plan_text)
            report = self.executor.execute(plan_text, obs)
            if report.ok:
                self.status(task_id, "SUCCEEDED", f"{len(report.steps)} steps done")
            else:
                refused = not report.moved
                reason = ("estop" if self.gate.estopped else "scene_mismatch" if report.stage == "check"
                          else "not_verified" if report.stage == "verify" else "refused" if refused else "execution")
                self.status(task_id, "REJECTED" if refused else "FAILED", f"[{report.stage}] {report.reason}",
                            reason=reason)
        except RobotUnavailable as e:
            self.status(task_id, "FAILED", str(e), reason="robot_unavailable")
        finally:
            self.busy = None

    def close(self) -> None:
        if self.worker is not None and self.worker.is_alive():
            self.gate.engage_estop("executor shutting down")
            self.worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node(ExecutorNode, args)


if __name__ == "__main__":
    sys.exit(main())
