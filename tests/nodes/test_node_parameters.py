"""The shipped parameter file and the nodes agree: no parameter is set that a node does not
declare (it would be silently ignored), and every value has the declared type."""

import pytest

from ivl_embodied.launcher import load_graph
from ivl_embodied.transport.interface import _check_param_type
from ivl_embodied.transport.params import resolve_parameters


def _node_classes():
    from ivl_embodied.nodes.executor_node import ExecutorNode
    from ivl_embodied.nodes.planner_node import PlannerNode
    from ivl_embodied.nodes.sim_node import SimNode
    from ivl_embodied.nodes.vision_node import VisionNode

    return {c.NAME: c for c in (VisionNode, PlannerNode, ExecutorNode, SimNode)}


def test_graph_nodes_are_the_node_classes():
    assert {n.name for n in load_graph().nodes} == set(_node_classes())


@pytest.mark.parametrize("name", ["vision_node", "planner_node", "executor_node", "sim_node"])
def test_shipped_parameters_are_declared_with_their_types(name):
    cls = _node_classes()[name]
    overrides, _ = resolve_parameters(name, ["--ros-args", "--params-file", str(load_graph().params_file)])
    assert overrides, f"no section for {name} in the parameter file"
    assert set(overrides) <= set(cls.PARAMETERS), set(overrides) - set(cls.PARAMETERS)
    for key, value in overrides.items():
        _check_param_type(key, cls.PARAMETERS[key], value)
