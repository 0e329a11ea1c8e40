"""Shared tiny checkpoints for the model tests (saved once per session)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A tiny InternVL3.5 saved with transformers' own save_pretrained (56-px tiles, no ViR)."""
    from ivl_embodied.model.tiny import save_tiny_internvl

    return save_tiny_internvl(tmp_path_factory.mktemp("tiny") / "internvl", seed=0, tile_size=56)


@pytest.fixture(scope="session")
def tiny_flash_ckpt(tmp_path_factory):
    """The same with Flash extras (mlp2 + router) under model.mlp2.* / model.vision_router.*."""
    from ivl_embodied.model.tiny import save_tiny_internvl

    return save_tiny_internvl(tmp_path_factory.mktemp("flash") / "internvl", seed=1, tile_size=56, with_vir=True)


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
