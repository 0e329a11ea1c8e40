"""Shared fixtures: loopback-only Cyclone DDS on a random domain per test run."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

pytest.importorskip("cyclonedds")

from ivl_embodied.transport.factory import cyclone_config_uri  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# One random domain per test run, so parallel runs on the same host never cross.
DOMAIN_ID = random.SystemRandom().randint(100, 200)


@pytest.fixture(autouse=True)
def loopback_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("CYCLONEDDS_URI", cyclone_config_uri("loopback"))
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
    monkeypatch.setenv("IVL_TRANSPORT", "cyclonedds")
    return dict(os.environ)


@pytest.fixture
def child_env(loopback_env: dict[str, str]) -> dict[str, str]:
    """Environment for child processes: same domain/config, repo importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def python() -> str:
    return sys.executable
