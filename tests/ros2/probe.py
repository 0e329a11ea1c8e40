"""A plain rclpy program (ROS 2 Jazzy, Fast DDS) that looks at our graph as ROS 2 tools do.

Run by the tests in tests/ros2 with the peer's Python; prints one JSON line at the end.

    probe.py graph NODE... [--decode] [--timeout S]
        Wait until get_node_names_and_namespaces() lists every NODE (``/ns/name``), print READY,
        report each node's publishers and subscriptions; with --decode, subscribe to every topic
        those nodes publish (with real rclpy message classes, not raw bytes) and count what
        decodes, until a line arrives on stdin.
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
    # endpoints are discovered a moment after the node itself
    _spin_until(node, lambda: all(node.get_publisher_names_and_types_by_node(n, ns) for n, ns in wanted), 10)
    time.sleep(1.0)
    rclpy.spin_once(node, timeout_sec=0.1)
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


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("graph")
    g.add_argument("nodes", nargs="+")
    g.add_argument("--decode", action="store_true")
    g.add_argument("--timeout", type=float, default=60)
    q = sub.add_parser("params")
    for a in ("node", "name", "value", "bad_value"):
        q.add_argument(a)
    args = p.parse_args()
    rclpy.init()
    node = Node("ros2_probe")
    try:
        report = graph(node, args) if args.cmd == "graph" else params(node, args)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
