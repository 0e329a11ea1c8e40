"""Being a ROS 2 graph citizen without rcl: ``ros_discovery_info`` and ``/rosout``.

ROS 2 tools do not learn node names from DDS: every rmw implementation publishes, per DDS
participant, an ``rmw_dds_common/msg/ParticipantEntitiesInfo`` on the DDS topic
``ros_discovery_info`` (no ``rt/`` prefix; reliable, transient local, keep last 1) listing each
node of the participant with the GIDs of its readers and writers. A GID is the entity's 16-byte
RTPS GUID (12-byte prefix, 4-byte entity id), as both rmw_cyclonedds and rmw_fastrtps copy it, so
a tool matches the endpoints it discovers through DDS to our nodes. Without this a real rclpy's
``get_node_names_and_namespaces()`` (``ros2 node list``, rqt_graph) lists none of our nodes.

Log records of a node's logger also go to ``/rosout`` as ``rcl_interfaces/msg/Log`` (rcl's QoS:
reliable, transient local, depth 1000), so ``ros2 topic echo /rosout`` and rqt_console show them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from ivl_embodied.transport import cyclone_types
from ivl_embodied.transport.naming import NodeNames
from ivl_embodied.transport.qos import QosProfile

DISCOVERY_TOPIC = "ros_discovery_info"
DISCOVERY_TYPE = "rmw_dds_common/msg/ParticipantEntitiesInfo"
DISCOVERY_QOS = QosProfile("reliable", 1, "transient_local")
ROSOUT_TOPIC = "/rosout"
LOG_TYPE = "rcl_interfaces/msg/Log"
ROSOUT_QOS = QosProfile("reliable", 1000, "transient_local")


def gid(guid: bytes) -> Any:
    """``rmw_dds_common/msg/Gid`` of a 16-byte DDS GUID."""
    if len(guid) != 16:
        raise ValueError(f"a DDS GUID has 16 bytes, got {len(guid)}")
    return cyclone_types.msg_type("rmw_dds_common/msg/Gid")(data=bytes(guid))


def participant_entities(participant: bytes, names: NodeNames, readers: list[bytes],
                         writers: list[bytes]) -> Any:
    """The ``ParticipantEntitiesInfo`` of a participant holding one node."""
    node = cyclone_types.msg_type("rmw_dds_common/msg/NodeEntitiesInfo")(
        node_namespace=names.namespace, node_name=names.name,
        reader_gid_seq=[gid(g) for g in readers], writer_gid_seq=[gid(g) for g in writers])
    return cyclone_types.msg_type(DISCOVERY_TYPE)(gid=gid(participant), node_entities_info_seq=[node])


def logger_name(names: NodeNames) -> str:
    """rcl's logger name of a node: its fully qualified name with dots (``robot1.executor_node``)."""
    return names.fully_qualified_name.lstrip("/").replace("/", ".")


class RosoutHandler(logging.Handler):
    """Publishes a node logger's records on ``/rosout`` (``logging`` levels are ROS's: 10..50)."""

    def __init__(self, publisher: Any, names: NodeNames):
        super().__init__(logging.DEBUG)
        self.publisher = publisher
        self.name_ = logger_name(names)
        self.Log = cyclone_types.msg_type(LOG_TYPE)
        self._busy = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._busy:  # a record logged while publishing one (a failing write) is not re-published
            return
        self._busy = True
        try:
            from ivl_embodied.transport.convert import ns_to_stamp

            level = min(50, max(10, record.levelno // 10 * 10))
            self.publisher.publish(self.Log(
                stamp=ns_to_stamp(int(record.created * 1e9) if record.created else time.time_ns()),
                level=level, name=self.name_, msg=record.getMessage(), file=os.path.basename(record.pathname),
                function=record.funcName or "", line=record.lineno or 0))
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
        finally:
            self._busy = False
