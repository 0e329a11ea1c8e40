"""console_node: the operator console, a web page on the workstation (``ivl-embodied console``).

    ivl-embodied console                       # http://127.0.0.1:8080/?token=... (printed at start)
    ros2 run ivl_embodied console_node --ros-args -p port:=8090

The page shows the live camera with the current plan drawn on it (each step's boxes and phrases, and the
3D poses the executor grounded them to), a box to type a task, the task's states and attempts as they
happen, the plan text, Cancel, E-stop and its reset, and what the stack understands. It is a client like any
other: tasks go out on ``/ivl/task`` and are followed on ``/ivl/task_status``, cancels on ``/ivl/cancel``,
the e-stop on ``/ivl/estop`` (latched for executors that start later); it reads ``/ivl/plan``,
``/ivl/grounded_plan``, ``/ivl/estop_state``, the camera and the planner's and executor's heartbeats.

It listens on 127.0.0.1 with a fresh token by default (``token: auto``); a ``host`` other than loopback needs
a token. Library: :mod:`ivl_embodied.console`.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time

from ivl_embodied.nodes.base import NodeBase, run_node
from ivl_embodied.nodes.status import ESTOP_LATCHED_QOS, REQUEST_QOS, STATUS, STATUS_QOS, state_name
from ivl_embodied.transport import QosProfile, msg_type
from ivl_embodied.transport.convert import header, msg_to_image, stamp_to_ns


def plan_msg_dict(msg) -> dict:
    """An ``ActionPlan`` as the console draws it (steps' poses where the executor grounded them)."""
    from ivl_embodied.console.state import plan_dict

    steps = []
    for s in msg.steps:
        p = s.pose.position
        steps.append({"action": s.action, "object": s.object, "target": s.target, "box": [int(v) for v in s.box],
                      "target_box": [int(v) for v in s.target_box],
                      "pose": [round(float(p.x), 4), round(float(p.y), 4), round(float(p.z), 4)]
                      if s.has_pose else None})
    return plan_dict(msg.task_id, msg.instruction, msg.attempt, msg.candidate, steps, msg.raw_text,
                     stamp_to_ns(msg.embedding_stamp) / 1e9)


class ConsoleNode(NodeBase):
    NAME = "console_node"
    PARAMETERS = {
        "host": "127.0.0.1",  # where the page is served; anything but loopback needs a token
        "port": 8080,  # 0: any free port (the URL printed says which)
        "token": "auto",  # auto: a fresh random one per start; "": none (loopback only)
        "frame_hz": 5.0,  # camera frames pushed to each browser per second, at most
        "jpeg_quality": 80,
        "task_topic": "ivl/task",
        "status_topic": "ivl/task_status",
        "plan_topic": "ivl/plan",
        "grounded_plan_topic": "ivl/grounded_plan",
        "cancel_topic": "ivl/cancel",
        "estop_topic": "ivl/estop",
        "estop_state_topic": "ivl/estop_state",
        "rgb_topic": "camera/color/image_raw",
        "planner_heartbeat_topic": "ivl/planner/heartbeat",
        "executor_heartbeat_topic": "ivl/executor/heartbeat",
    }

    def setup(self) -> None:
        from ivl_embodied.console.server import ConsoleServer
        from ivl_embodied.console.state import Console

        p, n = self.params, self.node
        self.task_pub = n.create_publisher("ivl_embodied_msgs/msg/TaskRequest", p["task_topic"], REQUEST_QOS)
        self.cancel_pub = n.create_publisher("std_msgs/msg/String", p["cancel_topic"])
        self.estop_pub = n.create_publisher("std_msgs/msg/Bool", p["estop_topic"], ESTOP_LATCHED_QOS)
        self.console = Console(self)
        self._frame = None  # the newest camera message (decoded only when a browser gets it)
        self._frame_lock = threading.Lock()
        token = secrets.token_urlsafe(16) if p["token"] == "auto" else str(p["token"])
        self.server = ConsoleServer(self.console, str(p["host"]), int(p["port"]), token, frames=self.frame,
                                    frame_hz=float(p["frame_hz"]), jpeg_quality=int(p["jpeg_quality"]))
        n.create_subscription(STATUS, p["status_topic"], self.on_status, STATUS_QOS)
        n.create_subscription("ivl_embodied_msgs/msg/ActionPlan", p["plan_topic"],
                              lambda m: self.server.broadcast(self.console.on_plan(plan_msg_dict(m))))
        n.create_subscription("ivl_embodied_msgs/msg/ActionPlan", p["grounded_plan_topic"],
                              lambda m: self.server.broadcast(self.console.on_grounded(plan_msg_dict(m))))
        n.create_subscription("std_msgs/msg/Bool", p["estop_state_topic"],
                              lambda m: self.server.broadcast(self.console.on_estop(m.data)),
                              QosProfile("reliable", 1, "transient_local"))
        n.create_subscription("sensor_msgs/msg/Image", p["rgb_topic"], self.on_image, "sensor_data")
        for who in ("planner", "executor"):
            n.create_subscription("std_msgs/msg/Header", p[f"{who}_heartbeat_topic"],
                                  lambda _m, who=who: self.console.heard(who, time.monotonic()))
        url = self.server.start()
        self.logger.info("operator console: open %s", url)
        print(f"operator console: open {url}", flush=True)

    # -- from the graph -------------------------------------------------------------------------

    def on_status(self, msg) -> None:
        self.server.broadcast(self.console.on_status(msg.task_id, state_name(msg.state), msg.message, msg.reason,
                                                     msg.attempt, msg.step, time.monotonic(),
                                                     stamp_to_ns(msg.header.stamp) / 1e9))

    def on_image(self, msg) -> None:
        with self._frame_lock:
            self._frame = msg
        self.console.heard("camera", time.monotonic(), (int(msg.width), int(msg.height)))

    def frame(self):
        """(stamp, RGB array) of the newest camera frame, or None (the server thread calls this)."""
        with self._frame_lock:
            msg = self._frame
        if msg is None:
            return None
        return stamp_to_ns(msg.header.stamp), msg_to_image(msg)

    # -- to the graph (the console's Sink) ------------------------------------------------------

    def send_task(self, task_id: str, instruction: str) -> None:
        self.task_pub.publish(msg_type("ivl_embodied_msgs/msg/TaskRequest")(
            header=header(self.node.now_ns()), task_id=task_id, instruction=instruction))
        self.logger.info("task %s sent: %s", task_id, instruction)

    def send_cancel(self, task_id: str) -> None:
        self.cancel_pub.publish(msg_type("std_msgs/msg/String")(data=task_id))
        self.logger.info("cancel of task %s sent", task_id)

    def send_estop(self, engage: bool) -> None:
        self.estop_pub.publish(msg_type("std_msgs/msg/Bool")(data=bool(engage)))
        self.logger.warning("e-stop %s from the console", "engaged" if engage else "reset")

    def close(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()


def main(args: list[str] | None = None) -> int:
    return run_node(ConsoleNode, args)


# -- ivl-embodied console -----------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (not loopback: needs a token)")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--token", default="auto", help="auto (a fresh one, printed in the URL) | a token | '' (none)")


def run(args) -> int:
    from ivl_embodied.console.server import check_exposure

    try:
        check_exposure(args.host, args.token)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_node(ConsoleNode, ["--ros-args", "-p", f"host:={args.host}", "-p", f"port:={args.port}",
                                  "-p", f"token:='{args.token}'"])


if __name__ == "__main__":
    sys.exit(main())
