"""``bench planner`` and ``bench dvd`` run end to end on the shipped planner and report what they claim."""

from __future__ import annotations

import argparse

import pytest


def test_bench_planner_compares_decoders_on_the_same_prompt():
    from ivl_embodied.bench.planner import bench_config

    r = bench_config("shipped", repeats=1)
    m = r["methods"]
    assert set(m) == {"hf", "static", "static-int8", "hf-int8"}
    assert all(v["decode_tokens_per_s"] > 0 and v["prefill_ms"] > 0 for v in m.values())
    assert m["hf"]["decode_vs_hf"] == 1.0
    assert m["static"]["tokens_equal_to_hf"] == r["new_tokens"]  # the model's own weights: the same tokens
    assert m["hf-int8"]["tokens_equal_to_hf_int8"] == r["new_tokens"]
    assert m["static"]["extra_bytes"]["kv_cache"] > 0 and m["hf"]["extra_bytes"] is None
    assert r["plans"]["same_plan"] and r["plans"]["plan_ms_static"] > 0


@pytest.mark.slow
def test_bench_dvd_pipelines_two_processes_over_the_transport(loopback_dds):
    from ivl_embodied.bench.dvd import bench_config

    args = argparse.Namespace(requests=3, repeats=1, tiles=0, new_tokens=0, stage_threads=1, serial_threads=-1,
                              timeout=120.0)
    r = bench_config("shipped", args)
    assert r["requests"] == 3 and r["visual_tokens"] > 0
    assert r["serial_s"] > 0 and r["pipelined_s"] > 0 and r["ratio"] == pytest.approx(
        r["serial_s"] / r["pipelined_s"], abs=0.02)
    assert 1.0 < r["bound_n"] <= r["bound"] <= 2.0
    assert r["plans_equal_in_length"]  # the planner got every frame, in order, and planned each
    assert "serial_all_cores" not in r
