"""Record the graph's topics to MCAP (ROS 2 profile): ``ivl-embodied record OUT.mcap``.

Subscribes to each topic of ``topics`` (``name:type`` entries; the defaults are what the stack consumes and
produces: camera, depth, camera info, joint states, ``/tf_static`` and ``/tf``, the visual embeddings, tasks, plans and
grounded plans, task status, trajectories, gripper commands, cancels, the e-stop and its state) and writes
every sample's CDR bytes as they arrived, untouched, with the time it was received. Sensor topics are read
best-effort (that matches every publisher), the stack's own topics reliably, ``/tf_static``, the task status
and the e-stop state transient-local (a recorder started late still gets what they keep). Stopping the node
(SIGINT) writes the file's index.
Library: :mod:`ivl_embodied.transport.mcap_io`.
"""

from __future__ import annotations

import argparse
import sys
import time

from ivl_embodied.nodes.base import NodeBase, run_node
from ivl_embodied.nodes.status import STATUS_QOS
from ivl_embodied.transport import QosProfile

DEFAULT_TOPICS = (
    "camera/color/image_raw:sensor_msgs/msg/Image",
    "camera/depth/image_raw:sensor_msgs/msg/Image",
    "camera/color/camera_info:sensor_msgs/msg/CameraInfo",
    "joint_states:sensor_msgs/msg/JointState",
    "/tf_static:tf2_msgs/msg/TFMessage",
    "/tf:tf2_msgs/msg/TFMessage",
    "ivl/visual_embeddings:ivl_embodied_msgs/msg/VisualEmbedding",
    "ivl/task:ivl_embodied_msgs/msg/TaskRequest",
    "ivl/plan:ivl_embodied_msgs/msg/ActionPlan",
    "ivl/grounded_plan:ivl_embodied_msgs/msg/ActionPlan",
    "ivl/task_status:ivl_embodied_msgs/msg/TaskStatus",
    "arm_controller/joint_trajectory:trajectory_msgs/msg/JointTrajectory",
    "gripper_controller/commands:std_msgs/msg/Float64MultiArray",
    "ivl/estop:std_msgs/msg/Bool",
    "ivl/estop_state:std_msgs/msg/Bool",
    "ivl/cancel:std_msgs/msg/String",
)
BEST_EFFORT = QosProfile("best_effort", 16, "volatile")
RELIABLE = QosProfile("reliable", 64, "volatile")
LATCHED = {"/tf_static": QosProfile("reliable", 1, "transient_local"), "ivl/task_status": STATUS_QOS,
           "ivl/estop_state": QosProfile("reliable", 1, "transient_local")}
SENSOR_PREFIXES = ("camera/",)


def parse_topics(entries: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """``name:pkg/msg/Type`` entries as (name, type) pairs; a malformed entry raises naming it."""
    out = []
    for e in entries:
        name, sep, type_name = str(e).rpartition(":")
        if not sep or not name or type_name.count("/") != 2:
            raise ValueError(f"topic entries are NAME:pkg/msg/Type, got {e!r}")
        out.append((name, type_name))
    return out


class RecorderNode(NodeBase):
    NAME = "recorder_node"
    PARAMETERS = {
        "output": "",  # the .mcap file to write
        "topics": list(DEFAULT_TOPICS),  # NAME:pkg/msg/Type; relative names take the node's namespace
        "compression": "lz4",  # none | lz4 | zstd (chunks; lz4 keeps up with the camera on one core)
        "duration_s": 0.0,  # stop after this long (0: until stopped)
    }

    def setup(self) -> None:
        from ivl_embodied.transport.mcap_io import McapWriter

        p = self.params
        if not p["output"]:
            raise ValueError("the recorder needs `output`: the .mcap file to write")
        topics = parse_topics(p["topics"])
        self.writer = McapWriter(p["output"], p["compression"])
        self.started = time.monotonic()
        for name, type_name in topics:
            qos = LATCHED.get(name) or (BEST_EFFORT if name.startswith(SENSOR_PREFIXES) else RELIABLE)
            resolved = self.node.resolve_topic(name)
            self.writer.channel(resolved, type_name)  # every topic has its channel, even with no message
            self.node.create_subscription(type_name, name, self._writes(resolved, type_name), qos, raw=True)
        if p["duration_s"] > 0:
            self.node.create_timer(float(p["duration_s"]), self.node.request_shutdown)
        self.logger.info("recording %d topics to %s", len(topics), p["output"])

    def _writes(self, topic: str, type_name: str):
        def on_raw(data: bytes) -> None:
            if not self.writer.closed:
                self.writer.write(topic, type_name, data, time.time_ns())

        return on_raw

    def close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
            counts = ", ".join(f"{t} {n}" for t, n in sorted(writer.counts.items())) or "nothing"
            self.logger.info("wrote %s after %.1f s: %s", writer.path, time.monotonic() - self.started, counts)


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args)


# -- ivl-embodied record ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="the .mcap file to write")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to record (default: until Ctrl-C)")
    parser.add_argument("--topics", nargs="+", default=None, metavar="NAME:TYPE",
                        help="topics to record (default: camera, depth, joints, embeddings, tasks, plans, status, "
                             "commands)")
    parser.add_argument("--compression", choices=("none", "lz4", "zstd"), default="lz4")


def run(args: argparse.Namespace) -> int:
    from ivl_embodied.transport.mcap_io import recording_path

    try:
        recording_path(args.output)  # refuse a bad name before anything starts
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    argv = ["--ros-args", "-p", f"output:={args.output}", "-p", f"duration_s:={float(args.duration)}",
            "-p", f"compression:={args.compression}"]
    if args.topics:
        try:
            parse_topics(args.topics)  # refuse a malformed entry before anything starts
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        argv += ["-p", "topics:=[" + ",".join(f"'{t}'" for t in args.topics) + "]"]
    return run_node(RecorderNode, argv)


if __name__ == "__main__":
    sys.exit(main())
