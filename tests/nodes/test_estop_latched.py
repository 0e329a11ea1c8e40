"""An e-stop sent before the executor started still stops it: /ivl/estop is heard transient-local."""

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
