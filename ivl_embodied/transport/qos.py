"""QoS profiles shared by both backends (ROS 2's presets plus one for multi-MB payloads).

* ``DEFAULT``     — reliable, keep-last 10, volatile: rclpy's default (``qos_profile_default``);
                    commands, plans, task status.
* ``SENSOR_DATA`` — best effort, keep-last 5, volatile: ROS 2's ``qos_profile_sensor_data``;
                    camera images, joint states, clock — a lost frame is replaced by the next.
* ``LARGE_LATEST``— reliable, keep-last **1**, volatile: visual embeddings (≈3.7 MB) and other
                    multi-MB messages that only matter while fresh. Reliable because a multi-MB
                    sample is split into ~60 fragments and best effort drops the whole sample
                    when one fragment is lost (likely on Wi-Fi or with small socket buffers);
                    with reliability the missing fragments are re-sent. Depth 1 because a newer
                    embedding supersedes an older one: the writer never queues more than one
                    pending sample (a slow reader cannot make it buffer tens of MB, and a
                    reliable writer with depth 1 does not block: it replaces the unacknowledged
                    sample), and the reader keeps only the latest.

Writers never auto-dispose (``autodispose=False``, as rmw_cyclonedds does); all profiles are
volatile, so late joiners get no history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RELIABILITIES = ("reliable", "best_effort")
DURABILITIES = ("volatile", "transient_local")


@dataclass(frozen=True)
class QosProfile:
    """Reliability, keep-last depth and durability of one publisher or subscription."""

    reliability: str = "reliable"
    depth: int = 10
    durability: str = "volatile"

    def __post_init__(self) -> None:
        if self.reliability not in RELIABILITIES:
            raise ValueError(f"reliability must be one of {RELIABILITIES}, got {self.reliability!r}")
        if self.durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, got {self.durability!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or not 1 <= self.depth <= 10_000:
            raise ValueError(f"depth must be an int in 1..10000 (keep-last), got {self.depth!r}")


DEFAULT = QosProfile("reliable", 10, "volatile")
SENSOR_DATA = QosProfile("best_effort", 5, "volatile")
LARGE_LATEST = QosProfile("reliable", 1, "volatile")

PROFILES: dict[str, QosProfile] = {
    "default": DEFAULT,
    "sensor_data": SENSOR_DATA,
    "large_latest": LARGE_LATEST,
}


def resolve(qos: QosProfile | str | int | None) -> QosProfile:
    """A profile from a profile, a profile name, a depth (reliable keep-last N, like rclpy) or None."""
    if qos is None:
        return DEFAULT
    if isinstance(qos, QosProfile):
        return qos
    if isinstance(qos, str):
        if qos not in PROFILES:
            raise ValueError(f"unknown QoS profile {qos!r}; known: {sorted(PROFILES)}")
        return PROFILES[qos]
    if isinstance(qos, int) and not isinstance(qos, bool):
        return QosProfile("reliable", qos, "volatile")
    raise TypeError(f"QoS must be a QosProfile, a profile name or a depth, got {qos!r}")


def to_cyclone(profile: QosProfile, writer: bool) -> Any:
    """The ``cyclonedds.qos.Qos`` for a writer or reader with ``profile``."""
    from cyclonedds.core import Policy, Qos
    from cyclonedds.util import duration

    policies = [
        Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
        if profile.reliability == "reliable"
        else Policy.Reliability.BestEffort,
        Policy.History.KeepLast(profile.depth),
        Policy.Durability.Volatile if profile.durability == "volatile" else Policy.Durability.TransientLocal,
    ]
    if writer:
        policies.append(Policy.WriterDataLifecycle(autodispose=False))
        # Plain CDR (XCDR1) only: what ROS 2 speaks.
        policies.append(Policy.DataRepresentation(use_cdrv0_representation=True))
    return Qos(*policies)


def to_rclpy(profile: QosProfile) -> Any:
    """The ``rclpy.qos.QoSProfile`` equivalent of ``profile``."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=profile.depth,
        reliability=ReliabilityPolicy.RELIABLE
        if profile.reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE
        if profile.durability == "volatile"
        else DurabilityPolicy.TRANSIENT_LOCAL,
    )
