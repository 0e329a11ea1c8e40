"""The process-count rules shared by sim-eval, MPO pair building and GSPO rewards."""
import os

import pytest

from ivl_embodied.workers import check_workers, threads_per_worker, workers_from_flag


@pytest.mark.parametrize("bad", [0, -2, True, 1.5, "2", None])
def test_check_workers_names_the_bad_value(bad):
    with pytest.raises(ValueError, match=f"workers must be an int >= 1, got {bad!r}"):
        check_workers(bad)


def test_check_workers_returns_a_good_count():
    assert check_workers(3) == 3


def test_flag_zero_means_one_process_per_core(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert workers_from_flag("--pair-workers", 0) == 6
    assert workers_from_flag("--pair-workers", 2) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown core count: one process
    assert workers_from_flag("--pair-workers", 0) == 1


def test_negative_flag_exits_naming_the_flag():
    with pytest.raises(SystemExit, match="--reward-workers must be >= 0, got -1"):
        workers_from_flag("--reward-workers", -1)


def test_threads_split_the_cores_between_workers(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [threads_per_worker(w) for w in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]
    with pytest.raises(ValueError, match="got 0"):
        threads_per_worker(0)
