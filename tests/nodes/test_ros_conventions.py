"""ROS 2 conventions the nodes keep: a latched e-stop reaches a node started later; use_sim_time stamps from /clock."""

from __future__ import annotations

from ivl_embodied.transport import make_node, msg_type


def test_an_executor_started_after_the_estop_comes_up_latched(loopback_dds):
    from ivl_embodied.nodes.executor_node import ExecutorNode
    from ivl_embodied.nodes.status import ESTOP_LATCHED_QOS

    operator = make_node("estop_operator")
    pub = operator.create_publisher("std_msgs/msg/Bool", "ivl/estop", ESTOP_LATCHED_QOS)
    pub.publish(msg_type("std_msgs/msg/Bool")(data=True))
    node = ExecutorNode.create({"estop_latch_file": ""})  # no latch file: only the topic can tell it
    try:
        assert node.node.spin_until(lambda: node.gate.estopped, timeout=10)
        assert "e-stop on ivl/estop" in node.gate.estop_reasons()[0]
        pub.publish(msg_type("std_msgs/msg/Bool")(data=False))  # a reset reaches it the same way
        assert node.node.spin_until(lambda: not node.gate.estopped, timeout=10)
    finally:
        node.shutdown()
        operator.shutdown()


def test_with_use_sim_time_a_node_stamps_from_clock(loopback_dds):
    from ivl_embodied.nodes.executor_node import ExecutorNode
    from ivl_embodied.transport.convert import stamp_to_ns

    sim = make_node("clock_source")
    clock = sim.create_publisher("rosgraph_msgs/msg/Clock", "/clock", "sensor_data")
    node = ExecutorNode.create({"use_sim_time": True, "estop_latch_file": ""})
    wall = ExecutorNode.create({"estop_latch_file": ""}, name="wall_executor")
    try:
        Time = msg_type("builtin_interfaces/msg/Time")
        assert node.node.now_ns() == 0  # no /clock yet
        assert node.node.spin_until(
            lambda: (clock.publish(msg_type("rosgraph_msgs/msg/Clock")(clock=Time(sec=12, nanosec=5))),
                     node.node.now_ns())[1] == 12_000_000_005, timeout=10)
        assert wall.node.now_ns() > 1_700_000_000 * 10**9  # wall time
        sent = []
        node.status.publisher.publish = sent.append
        node.status("t", "REJECTED", "x", reason="busy")
        assert stamp_to_ns(sent[0].header.stamp) == 12_000_000_005
    finally:
        for n in (node, wall):
            n.shutdown()
        sim.shutdown()


def test_the_launcher_gives_a_graph_with_the_simulator_use_sim_time():
    from ivl_embodied.launcher import load_graph, with_sim_time

    nodes = load_graph().nodes
    assert with_sim_time(list(nodes), ["a:=1"]) == ["use_sim_time:=true", "a:=1"]
    assert with_sim_time([n for n in nodes if n.name != "sim_node"], []) == []
    assert with_sim_time(list(nodes), ["use_sim_time:=false"]) == ["use_sim_time:=false"]
