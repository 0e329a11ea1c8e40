"""A plain rclpy program (ROS 2 Jazzy, Fast DDS) that looks at our graph as ROS 2 tools do.

Run by the tests in tests/ros2 with the peer's Python; prints one JSON line at the end.

    probe.py graph NODE... [--decode] [--timeout S]
        Wait until get_node_names_and_namespaces() lists every NODE (``/ns/name``), print READY,
        report each node's publishers and subscriptions; with --decode, subscribe to every topic
        those nodes publish (with real rclpy message classes, not raw bytes) and count what
        decodes, until a line arrives on stdin.
    probe.py action INSTRUCTION [--cancel-at-step N]
        Wait for the ExecuteTask server and two visual embeddings, send INSTRUCTION as a goal with a
        real rclpy ActionClient, record its feedback and result; with --cancel-at-step, cancel it once
        feedback says step N runs, and record every trajectory command and joint state heard after
        the cancel was accepted.
    probe.py controllers
        As a plain FollowJointTrajectory / GripperCommand client of the simulated controllers: a trajectory far
        faster than the controller's limits, one naming a joint the arm lacks, one that moves the first joint a
        little, in the joints' reversed order, a slow one cancelled after 0.5 s, and a gripper goal; report each
        result (and how far the first joint moved).
    probe.py params NODE NAME VALUE BAD_VALUE
        get NAME through the node's parameter services, set it to VALUE, try BAD_VALUE (must be
        refused), and report the /parameter_events seen.
"""

from __future__ import annotations

import argparse
import importlib
import json
import select
import sys
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile


def _split(fqn: str) -> tuple[str, str]:
    ns, _, name = fqn.rpartition("/")
    return name, ns or "/"


def _msg_class(type_name: str):
    pkg, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _spin_until(node: Node, pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return pred()


def graph(node: Node, args) -> dict:
    wanted = [_split(n) for n in args.nodes]
    listed = lambda: set(node.get_node_names_and_namespaces())  # noqa: E731
    if not _spin_until(node, lambda: set(wanted) <= listed(), args.timeout):
        return {"ok": False, "listed": sorted(map(list, listed())), "wanted": args.nodes}
    # endpoints are discovered a moment after the node itself, and a node still setting up adds more: wait until
    # every node's endpoints have stayed the same for 2 s (at most 30 s)
    def endpoints():
        return [(sorted(map(tuple, node.get_publisher_names_and_types_by_node(n, ns))),
                 sorted(map(tuple, node.get_subscriber_names_and_types_by_node(n, ns)))) for n, ns in wanted]

    _spin_until(node, lambda: all(node.get_publisher_names_and_types_by_node(n, ns) for n, ns in wanted), 10)
    seen, since, end = endpoints(), time.monotonic(), time.monotonic() + 30
    while time.monotonic() - since < 2.0 and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.25)
        now = endpoints()
        if now != seen:
            seen, since = now, time.monotonic()
    report: dict = {"ok": True, "listed": sorted(map(list, listed())), "nodes": {}}
    topics: dict[str, str] = {}
    for name, ns in wanted:
        pubs = node.get_publisher_names_and_types_by_node(name, ns)
        subs = node.get_subscriber_names_and_types_by_node(name, ns)
        report["nodes"][f"{ns.rstrip('/')}/{name}"] = {"publishers": {t: ty for t, ty in pubs},
                                                       "subscriptions": {t: ty for t, ty in subs}}
        for t, ty in pubs:
            topics[t] = ty[0]
    got: dict[str, list] = {}
    if args.decode:
        for topic, type_name in sorted(topics.items()):
            if "/_action/" in topic:  # an action's own topics (hidden from `ros2 topic list`)
                continue
            info = node.get_publishers_info_by_topic(topic)
            qos = info[0].qos_profile if info else QoSProfile(depth=10)
            qos = QoSProfile(reliability=qos.reliability, durability=qos.durability, depth=50)
            cls = _msg_class(type_name)

            def on_msg(msg, topic=topic):
                detail = None
                if hasattr(msg, "height") and hasattr(msg, "encoding"):
                    detail = [msg.width, msg.height, msg.encoding]
                elif hasattr(msg, "tokens_per_tile") and hasattr(msg, "hidden_size"):
                    detail = [sum(msg.tokens_per_tile), msg.hidden_size, len(msg.data)]
                got.setdefault(topic, []).append(detail)

            node.create_subscription(cls, topic, on_msg, qos)
    print("READY", flush=True)
    if args.decode:
        while not select.select([sys.stdin], [], [], 0)[0]:
            rclpy.spin_once(node, timeout_sec=0.05)
        report["decoded"] = {t: {"count": len(v), "first": v[0]} for t, v in got.items()}
        report["published_topics"] = topics
    return report


def params(node: Node, args) -> dict:
    from rcl_interfaces.msg import ParameterEvent
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    events = []
    node.create_subscription(ParameterEvent, "/parameter_events", events.append, 100)
    client = AsyncParameterClient(node, args.node)
    if not client.wait_for_services(timeout_sec=30):
        return {"ok": False, "why": f"no parameter services of {args.node}"}

    def call(future):
        _spin_until(node, future.done, 10)
        return future.result()

    value = json.loads(args.value)
    bad = json.loads(args.bad_value)
    before = call(client.get_parameters([args.name])).values[0]
    good = call(client.set_parameters([Parameter(args.name, value=value)])).results[0]
    after = call(client.get_parameters([args.name])).values[0]
    refused = call(client.set_parameters([Parameter(args.name, value=bad)])).results[0]
    names = call(client.list_parameters([], 1)).result.names
    _spin_until(node, lambda: any(args.name in [p.name for p in e.changed_parameters] for e in events), 5)
    changed = [[p.name for p in e.changed_parameters] for e in events if e.node == args.node]

    def plain(v):
        return Parameter.from_parameter_msg(type("P", (), {"name": args.name, "value": v})()).value

    return {"ok": True, "before": plain(before), "set_ok": good.successful, "after": plain(after),
            "bad_ok": refused.successful, "bad_reason": refused.reason, "names": list(names),
            "events_changed": changed}


def action(node: Node, args) -> dict:
    from rclpy.action import ActionClient
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from ivl_embodied_msgs.action import ExecuteTask
    from ivl_embodied_msgs.msg import VisualEmbedding

    embeddings, trajectories, joints = [], [], []
    node.create_subscription(VisualEmbedding, "/ivl/visual_embeddings", embeddings.append, 1)
    node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory",
                             lambda m: trajectories.append((time.monotonic(), m)), 10)
    node.create_subscription(JointState, "/joint_states", lambda m: joints.append((time.monotonic(), m)),
                             qos_profile_sensor_data)
    client = ActionClient(node, ExecuteTask, "/ivl/execute_task")
    if not client.wait_for_server(timeout_sec=120):
        return {"ok": False, "why": "no ExecuteTask server"}
    if not _spin_until(node, lambda: len(embeddings) >= 2, 120):
        return {"ok": False, "why": "no visual embeddings"}
    feedback, cancel = [], {}
    send = client.send_goal_async(ExecuteTask.Goal(instruction=args.instruction),
                                  feedback_callback=lambda f: feedback.append(f.feedback))
    _spin_until(node, send.done, 30)
    handle = send.result()
    if not handle.accepted:
        return {"ok": False, "why": "goal rejected"}
    result = handle.get_result_async()
    while not result.done():
        rclpy.spin_once(node, timeout_sec=0.02)
        if args.cancel_at_step and not cancel and any(f.step >= args.cancel_at_step for f in feedback):
            fut = handle.cancel_goal_async()
            _spin_until(node, fut.done, 30)
            cancel = {"at": time.monotonic(), "accepted": len(fut.result().goals_canceling) == 1}
    if cancel:  # what the arm did after the cancel was accepted
        _spin_until(node, lambda: False, 3.0)
    r = result.result()
    report = {"ok": True, "status": r.status, "success": r.result.success, "verified": r.result.verified,
              "message": r.result.message, "reason": r.result.reason, "task_id": r.result.task_id,
              "feedback": [[f.state_name, f.step, f.attempt, bool(f.plan)] for f in feedback]}
    if cancel:
        after = [m for t, m in trajectories if t > cancel["at"]]
        late = [m for t, m in joints if t > cancel["at"] + 1.0]  # a second after: the arm has stopped
        report.update(cancel_accepted=cancel["accepted"],
                      trajectories_after_cancel=[[len(m.points), max(map(abs, m.points[-1].velocities), default=0.0)]
                                                 for m in after],
                      max_speed_1s_after=max((max(map(abs, m.velocity), default=0.0) for m in late), default=None),
                      motion_after_1s=max((max(abs(a - b) for a, b in zip(late[0].position, m.position, strict=True))
                                           for m in late), default=None) if late else None)
    return report


def controllers(node: Node, args) -> dict:
    from builtin_interfaces.msg import Duration
    from control_msgs.action import FollowJointTrajectory, GripperCommand
    from control_msgs.msg import GripperCommand as Command
    from rclpy.action import ActionClient
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    joints = []
    node.create_subscription(JointState, "/joint_states", joints.append, 10)
    fjt = ActionClient(node, FollowJointTrajectory, "/arm_controller/follow_joint_trajectory")
    grip = ActionClient(node, GripperCommand, "/gripper_controller/gripper_cmd")
    if not (fjt.wait_for_server(timeout_sec=60) and grip.wait_for_server(timeout_sec=10)):
        return {"ok": False, "why": "no controller action servers"}
    if not _spin_until(node, lambda: bool(joints), 30):
        return {"ok": False, "why": "no joint states"}
    state = joints[-1]
    arm = [n for n in state.name if "finger" not in n and "knuckle" not in n]
    q = dict(zip(state.name, state.position, strict=True))

    def run(client, goal) -> list:
        send = client.send_goal_async(goal)
        _spin_until(node, send.done, 30)
        result = send.result().get_result_async()
        _spin_until(node, result.done, 60)
        r = result.result()
        return [r.status, *([r.result.error_code, r.result.error_string] if hasattr(r.result, "error_code")
                            else [r.result.position, r.result.reached_goal, r.result.stalled])]

    def traj(names, dq, seconds) -> FollowJointTrajectory.Goal:
        start = JointTrajectoryPoint(positions=[q.get(n, 0.0) for n in names], velocities=[0.0] * len(names))
        end = JointTrajectoryPoint(positions=[q.get(n, 0.0) + (dq if n == arm[0] else 0.0) for n in names],
                                   velocities=[0.0] * len(names),
                                   time_from_start=Duration(sec=int(seconds), nanosec=int(seconds % 1 * 1e9)))
        return FollowJointTrajectory.Goal(trajectory=JointTrajectory(joint_names=list(names), points=[start, end]))

    report = {"ok": True, "too_fast": run(fjt, traj(arm, 1.5, 0.2)),
              "foreign_joint": run(fjt, traj(["elbow"] + arm[1:], 0.1, 1.0)),
              "reversed_order": run(fjt, traj(list(reversed(arm)), 0.1, 1.0))}
    report["moved"] = joints[-1].position[joints[-1].name.index(arm[0])] - q[arm[0]]
    # a slow trajectory cancelled after 0.5 s: CANCELED, and the arm holds where it was
    q.update(zip(joints[-1].name, joints[-1].position, strict=True))
    send = fjt.send_goal_async(traj(arm, 0.4, 4.0))
    _spin_until(node, send.done, 30)
    handle = send.result()
    _spin_until(node, lambda: False, 0.5)
    cancel = handle.cancel_goal_async()
    _spin_until(node, cancel.done, 30)
    result = handle.get_result_async()
    _spin_until(node, result.done, 30)
    at = joints[-1].position[joints[-1].name.index(arm[0])]
    _spin_until(node, lambda: False, 1.0)
    report["cancelled"] = [result.result().status, at - q[arm[0]],
                           joints[-1].position[joints[-1].name.index(arm[0])] - at]
    report["gripper"] = run(grip, GripperCommand.Goal(command=Command(position=args.gripper_position,
                                                                      max_effort=20.0)))
    return report


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("graph")
    g.add_argument("nodes", nargs="+")
    g.add_argument("--decode", action="store_true")
    g.add_argument("--timeout", type=float, default=60)
    a = sub.add_parser("action")
    a.add_argument("instruction")
    a.add_argument("--cancel-at-step", type=int, default=0)
    c = sub.add_parser("controllers")
    c.add_argument("--gripper-position", type=float, default=0.4)
    q = sub.add_parser("params")
    for a in ("node", "name", "value", "bad_value"):
        q.add_argument(a)
    args = p.parse_args()
    rclpy.init()
    node = Node("ros2_probe")
    try:
        report = {"graph": graph, "action": action, "params": params, "controllers": controllers}[args.cmd](node, args)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
