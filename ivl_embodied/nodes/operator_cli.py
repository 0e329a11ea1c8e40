"""operator: type tasks, see their progress.

    ros2 run ivl_embodied operator "put the red cube in the green bowl"
    ros2 run ivl_embodied operator            # interactive: one task per line

Publishes ``TaskRequest`` on /ivl/task and prints every ``TaskStatus`` of that task until
it succeeds, fails or is rejected (or ``--timeout`` seconds pass: exit status 2). On the rclpy
backend, where the executor serves the ``ExecuteTask`` action, it sends each task as a goal of
``/ivl/execute_task`` instead and prints the feedback; Ctrl-C then cancels the goal (the arm holds).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from ivl_embodied.nodes.status import (
    CAMERA_NOT_READY,
    CAMERA_RETRIES,
    PLANNER_HEARTBEAT,
    STATUS,
    STATUS_QOS,
    TERMINAL,
    follow_planner,
    state_name,
)
from ivl_embodied.transport import make_node, msg_type
from ivl_embodied.transport.convert import header
from ivl_embodied.transport.params import ParameterFileError, parse_ros_args


def run_task(node, pub, statuses: list, instruction: str, timeout: float, out=sys.stdout,
             retries: int = CAMERA_RETRIES) -> str:
    """Send one task and follow it; returns its final state name (or 'TIMEOUT'). A refusal for want of a
    current view (the camera just started or restarted) is asked again a second later, ``retries`` times."""
    task_id = uuid.uuid4().hex[:8]

    def send() -> None:
        pub.publish(msg_type("ivl_embodied_msgs/msg/TaskRequest")(
            header=header(node.now_ns()), task_id=task_id, instruction=instruction))

    send()
    print(f"task {task_id}: {instruction}", file=out, flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and node.ok:
        node.spin_once(0.05)
        while statuses:
            s = statuses.pop(0)
            if s.task_id != task_id:
                continue
            name = state_name(s.state)
            attempt = f" attempt {s.attempt}" if s.attempt > 1 else ""
            if name == "REJECTED" and s.reason in CAMERA_NOT_READY and retries > 0:
                retries -= 1
                print(f"  [{name}] {s.message}; asking again in 1 s", file=out, flush=True)
                node.spin_until(lambda: False, 1.0)
                send()
                continue
            print(f"  [{name}{attempt}] {s.message}", file=out, flush=True)
            if name in TERMINAL:
                return name
    print(f"  no final status within {timeout:.0f} s", file=out, flush=True)
    return "TIMEOUT"


def run_goal(node, client, instruction: str, timeout: float, out=sys.stdout) -> str:
    """Send one task as an ExecuteTask goal and follow its feedback; Ctrl-C cancels it."""
    from ivl_embodied_msgs.action import ExecuteTask

    def feedback(f) -> None:
        f = f.feedback
        attempt = f" attempt {f.attempt}" if f.attempt > 1 else ""
        print(f"  [{f.state_name}{attempt}] {f.message}", file=out, flush=True)

    sent = client.send_goal_async(ExecuteTask.Goal(instruction=instruction), feedback_callback=feedback)
    if not node.spin_until(sent.done, 10) or not sent.result().accepted:
        print("  goal not accepted", file=out, flush=True)
        return "REJECTED"
    handle = sent.result()
    result = handle.get_result_async()
    try:
        if not node.spin_until(result.done, timeout):
            print(f"  no result within {timeout:.0f} s; cancelling", file=out, flush=True)
            node.spin_until(handle.cancel_goal_async().done, 10)
            return "TIMEOUT"
    except KeyboardInterrupt:
        print("  cancelling", file=out, flush=True)
        node.spin_until(handle.cancel_goal_async().done, 10)
        node.spin_until(result.done, 30)
        if not result.done():
            return "TIMEOUT"
    r = result.result().result
    state = "SUCCEEDED" if r.success else "CANCELLED" if r.reason == "cancelled" else "FAILED"
    print(f"task {r.task_id}: [{state}] {r.message}", file=out, flush=True)
    return state


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="operator", description=__doc__.splitlines()[0])
    parser.add_argument("instruction", nargs="*", help="the task; none = read tasks from stdin")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--task-topic", default="ivl/task")
    parser.add_argument("--status-topic", default="ivl/task_status")
    parser.add_argument("--wait-subscribers", type=float, default=10.0,
                        help="seconds to wait for the planner to subscribe")
    ns, rest = parser.parse_known_args(args)
    try:  # --ros-args: namespace and remaps, as for every node (-r __ns:=/robot1 talks to that robot)
        ros = parse_ros_args(rest)
    except ParameterFileError as exc:
        parser.error(str(exc))
    if ros.remaining:
        parser.error(f"unrecognized arguments: {' '.join(ros.remaining)}")
    names = ros.node_names(f"operator_{uuid.uuid4().hex[:6]}")
    node = make_node(names.name, names=names)
    try:
        pub = node.create_publisher("ivl_embodied_msgs/msg/TaskRequest", ns.task_topic)
        statuses: list = []
        node.create_subscription(STATUS, ns.status_topic, statuses.append, STATUS_QOS)
        beats = follow_planner(node)
        try:
            node.wait_for_subscribers(ns.task_topic, ns.wait_subscribers)
        except TimeoutError:
            print(f"no planner subscribed to {node.resolve_topic(ns.task_topic)} within {ns.wait_subscribers:.0f} s",
                  file=sys.stderr)
            return 2
        if not node.spin_until(lambda: bool(beats), timeout=ns.wait_subscribers):
            print(f"no planner heartbeat on {node.resolve_topic(PLANNER_HEARTBEAT)} within {ns.wait_subscribers:.0f} s",
                  file=sys.stderr)
            return 2
        client = None
        if node.backend == "rclpy":  # the executor serves tasks as an action there
            from rclpy.action import ActionClient

            from ivl_embodied_msgs.action import ExecuteTask

            client = ActionClient(node.rclpy_node, ExecuteTask, node.resolve_topic("ivl/execute_task"))
            if not client.wait_for_server(timeout_sec=ns.wait_subscribers):
                client = None  # an executor without it: the topics work the same
        tasks = [" ".join(ns.instruction)] if ns.instruction else (line.strip() for line in sys.stdin)
        final = "SUCCEEDED"
        for text in tasks:
            if text:
                final = (run_goal(node, client, text, ns.timeout) if client is not None
                         else run_task(node, pub, statuses, text, ns.timeout))
        return {"SUCCEEDED": 0, "TIMEOUT": 2}.get(final, 1)
    finally:
        node.shutdown()


if __name__ == "__main__":
    sys.exit(main())
