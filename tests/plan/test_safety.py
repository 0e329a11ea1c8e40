import numpy as np
import pytest

from ivl_embodied.plan import Plan, Step
from ivl_embodied.plan.safety import SafetyGate, SafetyLimits


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
    assert gate.estop_reasons() == ["e-stop latched (operator)"]
    gate.engage_estop("second")  # still the first reason
    assert "operator" in str(gate.check_target("t", [0.5, 0, 0.1]))
    gate.reset_estop()
    assert gate.check_plan(_plan(), 1.0, 1.0).ok and gate.estop_reasons() == []


@pytest.mark.parametrize("kw,needle", [
    ({"allowed_actions": ("fly",)}, "fly"),
    ({"max_data_age_s": -1.0}, "-1.0"),
    ({"workspace_min": (1.0, 0, 0), "workspace_max": (0.5, 1, 1)}, "1.0"),
])
def test_limits_validation_quotes_value(kw, needle):
    with pytest.raises(ValueError, match=needle):
        SafetyLimits(**kw)


def test_estop_latch_outlives_the_gate_through_its_file(tmp_path):
    latch = tmp_path / "state" / "estop_latched"
    gate = SafetyGate(latch_file=latch)
    assert not gate.estopped and not latch.exists()
    gate.engage_estop("operator pressed it")
    assert latch.exists() and "operator pressed it" in latch.read_text()
    restarted = SafetyGate(latch_file=latch)  # a new process, never reset
    assert restarted.estopped
    assert "operator pressed it" in restarted.estop_reasons()[0] and "before this process started" in \
        restarted.estop_reasons()[0]
    restarted.reset_estop()
    assert not latch.exists() and not SafetyGate(latch_file=latch).estopped
    SafetyGate(latch_file=latch).engage_estop("shutting down", persist=False)  # an internal stop: not kept
    assert not latch.exists() and not SafetyGate(latch_file=latch).estopped
