"""Trajectory spline maths and limit checks (robot/trajectory.py)."""

from dataclasses import dataclass

import numpy as np
import pytest

from ivl_embodied.robot.trajectory import (
    JointTrajectory,
    TrajectoryLimits,
    hermite,
    spline_velocities,
    time_parameterize,
    trajectory_violations,
)


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


def test_trajectory_speed_and_acceleration():
    limits = TrajectoryLimits(max_joint_speed=1.0, max_joint_accel=4.0)
    assert trajectory_violations(_traj(1.0, 2.0), limits) == []  # 0.75 rad/s, 1.5 rad/s^2
    v = " ".join(trajectory_violations(_traj(1.0, 1.3), limits))  # 1.15 rad/s, 3.55 rad/s^2
    assert "a speed 1.15" in v and "acceleration" not in v
    v = " ".join(trajectory_violations(_traj(0.5, 0.8), limits))  # 0.94 rad/s, 4.69 rad/s^2
    assert "acceleration 4.69" in v and "speed" not in v


def test_joint_limits():
    limits = TrajectoryLimits(joint_lower=(-1.0, -1.0), joint_upper=(1.0, 1.0))
    assert trajectory_violations(_traj(0.5, 3.0), limits) == []
    v = " ".join(trajectory_violations(_traj(0.5, 3.0, q0=0.7), limits))
    assert "a = 1.200" in v


def test_non_finite_trajectory_is_refused():
    t = Traj(("a",), (Pt((0.0,), (0.0,), 0.0), Pt((float("nan"),), (0.0,), 1.0)))
    assert trajectory_violations(t, TrajectoryLimits()) == ["trajectory has non-finite values"]


@pytest.mark.parametrize("kw,needle", [
    ({"max_joint_speed": -1.0}, "-1.0"),
    ({"joint_lower": (0.0,)}, "both"),
    ({"joint_lower": (1.0,), "joint_upper": (0.0,)}, "bad joint limits"),
])
def test_limits_validation_quotes_value(kw, needle):
    with pytest.raises(ValueError, match=needle):
        TrajectoryLimits(**kw)


def test_sample_matches_the_spline_and_holds_the_ends():
    qs = np.array([[0.0, 1.0], [0.5, 0.0], [1.0, 2.0]])
    times = np.array([0.0, 1.0, 3.0])
    traj = JointTrajectory.through(("a", "b"), qs, times)
    for i, t in enumerate(times):
        np.testing.assert_allclose(traj.sample(float(t))[0], qs[i], atol=1e-12)
    pos, vel = traj.sample(2.0)  # the middle of segment 1
    ref_pos, ref_vel, _ = hermite(qs, spline_velocities(qs, times), times, np.array([0.5]))
    np.testing.assert_allclose(pos, ref_pos[0, 1])
    np.testing.assert_allclose(vel, ref_vel[0, 1])
    np.testing.assert_allclose(traj.sample(10.0)[0], qs[-1])
    assert not traj.sample(10.0)[1].any()


def test_velocity_of_the_spline_is_the_derivative_of_its_position():
    rng = np.random.default_rng(0)
    q, v, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), np.array([0.0, 0.7, 1.5, 2.0])
    s, ds = np.array([0.3]), 1e-6
    p0, v0, a0 = hermite(q, v, t, s)
    p1, v1, _ = hermite(q, v, t, s + ds)
    h = np.diff(t)[None, :, None]
    np.testing.assert_allclose((p1 - p0) / (ds * h), v0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose((v1 - v0) / (ds * h), a0, rtol=1e-4, atol=1e-3)


def test_time_parameterize_respects_the_limits():
    qs = np.array([[0.0, 0.0], [0.3, -0.2], [0.9, 0.1], [1.0, 1.0]])
    times = time_parameterize(qs, np.full(3, 0.01), vmax=1.0, amax=3.0)
    traj = JointTrajectory.through(("a", "b"), qs, times)
    assert trajectory_violations(traj, TrajectoryLimits(max_joint_speed=1.0 * 1.05, max_joint_accel=3.0 * 1.05)) == []
