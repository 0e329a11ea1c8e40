"""Models loaded from the shared tiny checkpoints (tests/conftest.py), once per session."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_planner(tiny_ckpt):
    from ivl_embodied.model.checkpoints import load_language

    return load_language(tiny_ckpt)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_ckpt):
    from ivl_embodied.model.checkpoints import load_vision

    return load_vision(tiny_ckpt)


@pytest.fixture(scope="session")
def flash_encoder(tiny_flash_ckpt):
    from ivl_embodied.model.checkpoints import load_vision

    return load_vision(tiny_flash_ckpt)
