"""Child process for the signal test: a NodeBase node that reports when it is spinning."""

from __future__ import annotations

import sys

from ivl_embodied.nodes.base import NodeBase, run_node


class TickNode(NodeBase):
    NAME = "tick_node"
    PARAMETERS = {"period": 1.0, "topic": "/tick"}

    def setup(self) -> None:
        self.pub = self.node.create_publisher("std_msgs/msg/String", self.params["topic"])
        self.node.create_timer(self.params["period"], self.on_tick)
        self.ticks = 0

    def on_tick(self) -> None:
        self.ticks += 1
        if self.ticks == 1:
            sys.stdout.write(f"READY period={self.params['period']} topic={self.params['topic']}\n")
            sys.stdout.flush()

    def close(self) -> None:
        sys.stdout.write("CLOSED\n")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(run_node(TickNode))
