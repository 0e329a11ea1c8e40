"""Threads by placement: co-located nodes split the cores instead of each taking all of them."""

from __future__ import annotations

import pytest

from ivl_embodied.runtime import threads


def test_compute_nodes_split_the_cores_and_the_others_get_one():
    four = ["sim_node", "vision_node", "planner_node", "executor_node"]
    assert threads.shares(four, cores=2) == {"sim_node": 1, "vision_node": 1, "planner_node": 1, "executor_node": 1}
    assert threads.shares(four, cores=16)["planner_node"] == 8
    assert threads.shares(["planner_node"], cores=16) == {"planner_node": 16}  # alone on a workstation
    assert threads.shares(["sim_node", "executor_node"], cores=8) == {"sim_node": 1, "executor_node": 1}
    assert threads.shares(["vision_node", "planner_node"], cores=3) == {"vision_node": 1, "planner_node": 1}
    with pytest.raises(ValueError, match="cores"):
        threads.shares(four, cores=0)


def test_a_node_takes_its_parameter_then_its_share_then_every_core(monkeypatch):
    monkeypatch.delenv(threads.SHARE_ENV, raising=False)
    assert threads.node_threads(0) == threads.available_cores()
    monkeypatch.setenv(threads.SHARE_ENV, "1")
    assert threads.node_threads(0) == 1
    assert threads.node_threads(3) == 3  # the `threads` parameter overrides the share
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be"):
            threads.node_threads(bad)
    monkeypatch.setenv(threads.SHARE_ENV, "many")
    with pytest.raises(ValueError, match="'many'"):
        threads.node_threads(0)


def test_the_launcher_gives_each_node_its_share_and_says_so(caplog):
    import logging

    from ivl_embodied.launcher import load_graph, placement_envs

    with caplog.at_level(logging.INFO, logger="ivl_embodied.launcher"):
        envs = placement_envs(list(load_graph().nodes), {"KEEP": "1"})
    cores = threads.available_cores()
    compute = max(1, cores // 2)
    assert envs["planner_node"][threads.SHARE_ENV] == str(compute) == envs["vision_node"]["OMP_NUM_THREADS"]
    assert envs["sim_node"][threads.SHARE_ENV] == "1" and envs["sim_node"]["KEEP"] == "1"
    assert f"planner_node {compute} thread(s)" in caplog.text
