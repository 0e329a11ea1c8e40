"""sim_node: the MuJoCo robot behind the same topics as a real arm with an RGB-D camera.

Publishes what a RealSense driver + ros2_control would: ``/camera/color/image_raw`` (rgb8),
``/camera/depth/image_raw`` (32FC1 metres, same stamp), ``/camera/color/camera_info``,
``/joint_states`` (arm joints + the gripper's joints), ``/tf_static`` (base_link → camera
optical frame) and ``/clock`` (simulated time). Accepts
``trajectory_msgs/JointTrajectory`` on ``/arm_controller/joint_trajectory`` (joints in any order) and a
``std_msgs/Float64MultiArray`` of the gripper joints' positions on ``/gripper_controller/commands``, as
ros2_control's ``joint_trajectory_controller`` and ``forward_command_controller`` take them.

The controllers enforce their own limits, whoever commands them, as ``ros2_control`` controllers
with joint limits do: trajectories beyond the arm's joint range, speed or acceleration are refused,
and while ``/ivl/estop`` (or the executor's latched ``/ivl/estop_state``) says e-stopped the arm
holds where it is and every arm and gripper command is refused until ``/ivl/estop`` false. A
trajectory in progress is stopped (the arm holds) when the executor's heartbeat
(``/ivl/executor/heartbeat``, 10 Hz) has been silent for ``heartbeat_timeout_s``: a killed executor
does not leave the arm finishing its last command.

Physics runs in (scaled) real time on a timer; the scene comes from a task record (a split or
a user's JSONL file) and the task's success predicate is logged and published on
``/ivl/sim/goal_reached`` (std_msgs/Bool) so a demo can tell whether the robot did it.
"""

from __future__ import annotations

import sys
import time

from ivl_embodied.nodes.base import NodeBase, run_node
from ivl_embodied.nodes.status import subscribe_estop
from ivl_embodied.transport import QosProfile, msg_type
from ivl_embodied.transport.convert import (
    MessageError,
    camera_info_to_msg,
    image_to_msg,
    joint_state_to_msg,
    matrix_to_transform_stamped,
    msg_to_gripper,
    msg_to_trajectory,
    ns_to_stamp,
    s_to_ns,
)

TF_STATIC_QOS = QosProfile("reliable", 1, "transient_local")
CLOCK_QOS = QosProfile("best_effort", 1, "volatile")


class SimNode(NodeBase):
    NAME = "sim_node"
    PARAMETERS = {
        "task_file": "",
        "split": "val",
        "task_index": 0,
        "camera_rate_hz": 5.0,
        "joint_state_rate_hz": 50.0,
        "realtime_factor": 1.0,
        "max_steps_per_tick": 200,
        "base_frame": "base_link",
        "estop_topic": "ivl/estop",
        "estop_state_topic": "ivl/estop_state",
        "heartbeat_topic": "ivl/executor/heartbeat",
        "heartbeat_timeout_s": 0.5,  # a trajectory is stopped when the executor falls silent this long (0 = off)
        "robot": "ivl_arm6",  # the arm: a name of config/robots/ or a robot YAML file (its description sim-ready)
        # ros2_control's actions on the same controllers, as a real arm's serve them (rclpy backend, control_msgs;
        # "" = not served): e.g. arm_controller/follow_joint_trajectory, gripper_controller/gripper_cmd
        "trajectory_action": "",
        "gripper_action": "",
    }

    def setup(self) -> None:
        from ivl_embodied.sim.controller import JointTrajectoryController
        from ivl_embodied.sim.tasks import load_split, load_tasks, scene_for
        from ivl_embodied.sim.world import SimWorld, sim_arm

        p = self.params
        tasks = load_tasks(p["task_file"]) if p["task_file"] else load_split(p["split"])
        if not 0 <= p["task_index"] < len(tasks):
            raise ValueError(f"task_index {p['task_index']} outside 0..{len(tasks) - 1}")
        self.task = tasks[p["task_index"]]
        if not p["realtime_factor"] > 0:
            raise ValueError(f"realtime_factor must be > 0, got {p['realtime_factor']!r}")
        self.world = SimWorld(scene_for(self.task), sim_arm(p["robot"]))
        self.controller = JointTrajectoryController(self.world)
        self.actions = None
        if p["trajectory_action"] or p["gripper_action"]:
            from ivl_embodied.nodes.controller_actions import ControllerServers
            from ivl_embodied.robot.interface import GOAL_TOLERANCE_RAD, TRAJECTORY_SETTLE_S

            self.actions = ControllerServers(self.node, self.controller, p["trajectory_action"], p["gripper_action"],
                                             GOAL_TOLERANCE_RAD, TRAJECTORY_SETTLE_S)
        self.dt = float(self.world.model.opt.timestep)
        self.goal_reached = False
        self.logger.info("scene for task seed %d: %r", self.task.seed, self.task.instruction)

        n = self.node
        self.pub_rgb = n.create_publisher("sensor_msgs/msg/Image", "camera/color/image_raw", "sensor_data")
        self.pub_depth = n.create_publisher("sensor_msgs/msg/Image", "camera/depth/image_raw", "sensor_data")
        self.pub_info = n.create_publisher("sensor_msgs/msg/CameraInfo", "camera/color/camera_info", "sensor_data")
        self.pub_joints = n.create_publisher("sensor_msgs/msg/JointState", "joint_states")
        self.pub_tf = n.create_publisher("tf2_msgs/msg/TFMessage", "/tf_static", TF_STATIC_QOS)
        self.pub_clock = n.create_publisher("rosgraph_msgs/msg/Clock", "/clock", CLOCK_QOS)
        self.pub_goal = n.create_publisher("std_msgs/msg/Bool", "ivl/sim/goal_reached")
        self.pub_task = n.create_publisher("std_msgs/msg/String", "ivl/sim/task_instruction",
                                           QosProfile("reliable", 1, "transient_local"))
        n.create_subscription("trajectory_msgs/msg/JointTrajectory", "arm_controller/joint_trajectory",
                              self.on_trajectory)
        n.create_subscription("std_msgs/msg/Float64MultiArray", "gripper_controller/commands", self.on_gripper)
        subscribe_estop(n, p["estop_topic"], lambda m: self.on_estop(m, p["estop_topic"]))
        self.last_beat: float | None = None  # monotonic time of the executor's last heartbeat
        n.create_subscription("std_msgs/msg/Header", p["heartbeat_topic"], self.on_heartbeat)
        n.create_subscription("std_msgs/msg/Bool", p["estop_state_topic"],
                              lambda m: self.on_estop(m, p["estop_state_topic"], reset=False),
                              QosProfile("reliable", 1, "transient_local"))

        self.world.settle()  # before anyone looks
        self.publish_static()
        self._wall0, self._sim0 = time.monotonic(), self.world.time
        n.create_timer(0.01, self.on_physics)
        n.create_timer(1.0 / p["camera_rate_hz"], self.on_camera)
        n.create_timer(1.0 / p["joint_state_rate_hz"], self.on_joint_states)
        n.create_timer(0.5, self.on_goal_check)

    # -- clock --------------------------------------------------------------------------
    def sim_ns(self) -> int:
        return s_to_ns(self.world.time)

    def on_physics(self) -> None:
        """Step physics up to where (scaled) wall-clock time says it should be, bounded per tick."""
        target = self._sim0 + (time.monotonic() - self._wall0) * self.params["realtime_factor"]
        steps = min(int((target - self.world.time) / self.dt), self.params["max_steps_per_tick"])
        self.check_heartbeat()
        for _ in range(max(steps, 0)):
            self.controller.update()
            self.world.step(1)
        if self.actions is not None:
            self.actions.tick()  # action goals check their controllers
        if steps >= self.params["max_steps_per_tick"]:  # we fell behind: do not try to catch up later
            self._wall0, self._sim0 = time.monotonic(), self.world.time
        self.pub_clock.publish(msg_type("rosgraph_msgs/msg/Clock")(clock=ns_to_stamp(self.sim_ns())))

    # -- publications ---------------------------------------------------------------------
    def publish_static(self) -> None:
        info = self.world.camera_info()
        tf = matrix_to_transform_stamped(info.t_base_camera, self.params["base_frame"], info.frame_id, self.sim_ns())
        self.pub_tf.publish(msg_type("tf2_msgs/msg/TFMessage")(transforms=[tf]))
        self.pub_task.publish(msg_type("std_msgs/msg/String")(data=self.task.instruction))

    def on_camera(self) -> None:
        stamp = self.sim_ns()
        info = self.world.camera_info()
        self.pub_rgb.publish(image_to_msg(self.world.render_rgb(), stamp, info.frame_id))
        self.pub_depth.publish(image_to_msg(self.world.render_depth(), stamp, info.frame_id))
        self.pub_info.publish(camera_info_to_msg(info, stamp))

    def on_joint_states(self) -> None:
        w = self.world
        fingers = w.arm.gripper_joints  # each finger's travel in m, or a linkage gripper's driven joint
        names = list(w.arm.joint_names) + list(fingers)
        pos = list(w.arm_q()) + [float(q) for q in w.data.qpos[w.finger_qpos_adr]]
        vel = list(w.arm_qd()) + [float(v) for v in w.data.qvel[w.finger_dof_adr]]
        self.pub_joints.publish(joint_state_to_msg(names, pos, vel, self.sim_ns()))

    def on_goal_check(self) -> None:
        from ivl_embodied.sim.tasks import success

        ok, why = success(self.world, self.task.goal)
        if ok != self.goal_reached:
            self.logger.info("goal %s: %s", "reached" if ok else "no longer met", why or self.task.instruction)
        self.goal_reached = ok
        self.pub_goal.publish(msg_type("std_msgs/msg/Bool")(data=bool(ok)))

    # -- commands -------------------------------------------------------------------------
    def on_trajectory(self, msg) -> None:
        try:
            traj = msg_to_trajectory(msg)
        except MessageError as e:
            self.logger.error("rejected trajectory: %s", e)
            return
        refused = self.controller.command(traj)
        if refused:
            self.logger.error("rejected trajectory: %s", refused)

    def on_heartbeat(self, _msg) -> None:
        self.last_beat = time.monotonic()

    def check_heartbeat(self) -> None:
        """A trajectory in progress whose commander fell silent (killed, hung, cut off) is stopped."""
        timeout = self.params["heartbeat_timeout_s"]
        if timeout <= 0 or not self.controller.moving:
            return
        if self.last_beat is None or time.monotonic() - self.last_beat > timeout:
            self.controller.hold()
            self.logger.error("stopped the arm's trajectory: no heartbeat on %s for %.1f s (heartbeat_timeout_s)",
                              self.params["heartbeat_topic"], timeout)

    def on_estop(self, msg, topic: str, reset: bool = True) -> None:
        """True: hold and refuse everything; false on the e-stop topic itself: accept commands again
        (the executor's state topic only ever stops the controller)."""
        if msg.data and self.controller.stopped is None:
            self.controller.estop(f"e-stop on {topic}")
            self.logger.warning("controllers e-stopped (%s): holding, refusing every command", topic)
        elif not msg.data and reset and self.controller.stopped is not None:
            self.controller.release()
            self.logger.info("controllers released (%s false)", topic)

    def on_gripper(self, msg) -> None:
        try:
            arm = self.world.arm
            self.controller.command_gripper(arm.opening(msg_to_gripper(msg, len(arm.gripper_joints))))
        except (MessageError, ValueError) as e:
            self.logger.error("rejected gripper command: %s", e)

    def close(self) -> None:
        world = getattr(self, "world", None)
        if world is not None:
            world.close()


def main(args: list[str] | None = None) -> int:
    return run_node(SimNode, args)


if __name__ == "__main__":
    sys.exit(main())
