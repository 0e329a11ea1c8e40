"""The thin base every ivl_embodied node builds on.

A node class declares its parameters with defaults, gets a transport node from the factory
(rclpy on a ROS 2 machine, Cyclone DDS elsewhere), and sets up publishers/subscriptions in
:meth:`NodeBase.setup`. :func:`main` runs a node class the way ``ros2 run`` would: ROS arguments
(``--ros-args --params-file F -p name:=value -r from:=to -r __ns:=/ns -r __node:=name --log-level L``;
anything else exits 2 naming it), spin until SIGINT/SIGTERM, then :meth:`NodeBase.close` and a clean
shutdown (exit status 0). Every node also has ``use_sim_time`` (stamps from ``/clock`` when true).

    class EchoNode(NodeBase):
        NAME = "echo_node"
        PARAMETERS = {"topic": "/chatter"}

        def setup(self):
            self.node.create_subscription("std_msgs/msg/String", self.params["topic"], self.on_msg)

    def main(args=None):
        return run_node(EchoNode, args)
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any, ClassVar

from ivl_embodied.transport import TransportNode, make_node
from ivl_embodied.transport.naming import NodeNames
from ivl_embodied.transport.params import ParameterFileError, RosArgs, resolve_parameters

LOG = logging.getLogger(__name__)


class NodeBase:
    """Declares :attr:`PARAMETERS` on a transport node and wires :meth:`setup`/:meth:`close`."""

    NAME: ClassVar[str] = ""
    PARAMETERS: ClassVar[dict[str, Any]] = {}

    def __init__(self, node: TransportNode):
        self.node = node
        self.logger = node.logger
        # every ROS 2 node has use_sim_time: stamps from /clock instead of the wall clock
        declared = {"use_sim_time": False, **self.PARAMETERS}
        self.params: dict[str, Any] = {name: node.declare_parameter(name, default)
                                       for name, default in declared.items()}
        if self.params["use_sim_time"]:
            node.use_sim_time()
        unknown = node.undeclared_overrides()
        if unknown:
            self.logger.warning("ignoring parameters %s: node %s does not declare them", unknown, node.name)
        self.setup()

    @classmethod
    def create(cls, parameters: dict[str, Any] | None = None, backend: str | None = None,
               name: str | None = None, names: NodeNames | None = None, rosout: bool = True) -> NodeBase:
        """Build the node on a fresh transport node (tests call this, then callbacks directly).
        ``names`` (name, namespace, remaps from ``--ros-args``) wins over ``name``."""
        node_name = names.name if names else name or cls.NAME
        if not node_name:
            raise ValueError(f"{cls.__name__}.NAME is empty: give the node a ROS name")
        transport = make_node(node_name, backend=backend, parameters=parameters, names=names, rosout=rosout)
        try:
            return cls(transport)
        except BaseException:
            transport.shutdown()
            raise

    def setup(self) -> None:
        """Create publishers, subscriptions and timers (override)."""

    def close(self) -> None:
        """Release resources before the transport shuts down (override)."""

    def spin(self) -> None:
        self.node.spin()

    def shutdown(self) -> None:
        try:
            self.close()
        finally:
            self.node.shutdown()


def run_node(node_cls: type[NodeBase], args: list[str] | None = None, backend: str | None = None) -> int:
    """Run ``node_cls`` until SIGINT/SIGTERM; returns the process exit status."""
    argv = list(sys.argv[1:] if args is None else args)
    try:
        overrides, ros = resolve_parameters(node_cls.NAME, argv)
        if ros.remaining:
            raise ParameterFileError(f"unknown arguments {list(ros.remaining)}: a node takes only ROS arguments "
                                     "(--ros-args -p NAME:=VALUE --params-file FILE -r FROM:=TO --log-level LEVEL)")
    except ParameterFileError as exc:
        print(f"{node_cls.NAME}: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(ros)
    instance = node_cls.create(overrides, backend=backend, names=ros.node_names(node_cls.NAME),
                               rosout=ros.rosout_logs)
    stop_signal: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop_signal.append(signum)
        instance.node.request_shutdown()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        instance.logger.info("%s running on %s", instance.node.name, instance.node.backend)
        instance.spin()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        instance.shutdown()
    if stop_signal:
        instance.logger.info("%s shut down cleanly on %s", node_cls.NAME, signal.Signals(stop_signal[0]).name)
    return 0


def configure_logging(ros: RosArgs) -> None:
    """Console logging as ``--ros-args`` says: ``--log-level [logger:=]level`` (a node's name is
    its logger), ``--disable-stdout-logs``."""
    root = logging.getLogger()
    if not root.handlers:
        if ros.stdout_logs:
            logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
        else:
            root.addHandler(logging.NullHandler())
    for name, level in ros.log_levels.items():
        if not name:
            root.setLevel(level)
        else:  # a node's name (its own logger is ivl_embodied.node.NAME), or any Python logger's
            logging.getLogger(f"ivl_embodied.node.{name}" if "." not in name else name).setLevel(level)


def main(node_cls: type[NodeBase], args: list[str] | None = None) -> int:
    """Alias of :func:`run_node` for ``def main(args=None): return base.main(MyNode, args)``."""
    return run_node(node_cls, args)
