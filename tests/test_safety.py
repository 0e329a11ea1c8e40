from dataclasses import dataclass

import numpy as np
import pytest

from ivl_embodied.plan import Plan, Step
from ivl_embodied.plan.safety import SafetyGate, SafetyLimits


@dataclass
class Pt:
    positions: tuple
    velocities: tuple
    time_from_start: float


@dataclass
class Traj:
    joint_names: tuple
    points: tuple


def _traj(dq: float, duration: float, q0=0.0) -> Traj:
    # rest-to-rest cubic: peak speed 1.5 dq / T, peak acceleration 6 dq / T^2
    return Traj(("a", "b"), (Pt((q0, 0.0), (0.0, 0.0), 0.0), Pt((q0 + dq, 0.0), (0.0, 0.0), duration)))


def _plan(action="pick"):
    if action == "pick":
        return Plan((Step("pick", "red cube", (1, 2, 3, 4)),))
    return Plan((Step("push", "red cube", (1, 2, 3, 4), "green zone", (5, 6, 7, 8)),))


def test_whitelist_names_action():
    gate = SafetyGate(SafetyLimits(allowed_actions=("pick", "place")))
    assert gate.check_plan(_plan("pick"), 10.0, 10.1).ok
    v = gate.check_plan(_plan("push"), 10.0, 10.1)
    assert not v.ok and "'push'" in str(v)


def test_staleness():
    gate = SafetyGate(SafetyLimits(max_data_age_s=0.5))
    assert gate.check_plan(_plan(), 10.0, 10.4).ok
    v = gate.check_plan(_plan(), 10.0, 10.7)
    assert not v.ok and "0.70 s old" in str(v)


def test_workspace_bounds_name_axis_and_value():
    gate = SafetyGate(SafetyLimits(workspace_min=(0.2, -0.4, 0.0), workspace_max=(0.8, 0.4, 0.5)))
    assert gate.check_target("red cube", [0.5, 0.0, 0.02]).ok
    v = gate.check_target("red cube", [0.95, 0.0, 0.02])
    assert not v.ok and "x = 0.950" in str(v) and "red cube" in str(v)
    v = gate.check_target("red cube", [0.5, -0.41, -0.1])
    assert len(v.reasons) == 2
    assert not gate.check_target("x", [np.nan, 0, 0]).ok


def test_estop_latches_until_reset():
    gate = SafetyGate()
    gate.engage_estop("operator")
    assert not gate.check_plan(_plan(), 1.0, 1.0).ok
    assert "e-stop" in str(gate.check_target("t", [0.5, 0, 0.1]))
    assert not gate.check_trajectory(_traj(0.1, 2.0)).ok
    gate.engage_estop("second")  # still the first reason
    assert "operator" in str(gate.check_target("t", [0.5, 0, 0.1]))
    gate.reset_estop()
    assert gate.check_plan(_plan(), 1.0, 1.0).ok


def test_trajectory_speed_and_acceleration():
    gate = SafetyGate(SafetyLimits(max_joint_speed=1.0, max_joint_accel=4.0))
    assert gate.check_trajectory(_traj(1.0, 2.0)).ok  # 0.75 rad/s, 1.5 rad/s^2
    v = gate.check_trajectory(_traj(1.0, 1.3))  # 1.15 rad/s, 3.55 rad/s^2
    assert not v.ok and "a speed 1.15" in str(v) and "acceleration" not in str(v)
    v = gate.check_trajectory(_traj(0.5, 0.8))  # 0.94 rad/s, 4.69 rad/s^2
    assert not v.ok and "acceleration 4.69" in str(v) and "speed" not in str(v)


def test_joint_limits():
    gate = SafetyGate(SafetyLimits(joint_lower=(-1.0, -1.0), joint_upper=(1.0, 1.0)))
    assert gate.check_trajectory(_traj(0.5, 3.0)).ok
    v = gate.check_trajectory(_traj(0.5, 3.0, q0=0.7))
    assert not v.ok and "a = 1.200" in str(v)


@pytest.mark.parametrize("kw,needle", [
    ({"allowed_actions": ("fly",)}, "fly"),
    ({"max_joint_speed": -1.0}, "-1.0"),
    ({"workspace_min": (1.0, 0, 0), "workspace_max": (0.5, 1, 1)}, "1.0"),
    ({"joint_lower": (0.0,)}, "both"),
])
def test_limits_validation_quotes_value(kw, needle):
    with pytest.raises(ValueError, match=needle):
        SafetyLimits(**kw)
