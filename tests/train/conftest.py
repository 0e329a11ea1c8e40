"""Shared fixtures for the Cascade RL tests: one tiny rendered dataset per session."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

_TINY_MODEL = dict(tile_size=56, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64, text_layers=2,
                  text_heads=4, text_kv_heads=2, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """12 train-split examples at 56-px tiles (rendered once, ~2 s)."""
    from ivl_embodied.train.config import DataConfig
    from ivl_embodied.train.data import build_dataset

    out = tmp_path_factory.mktemp("rl") / "data"
    config = DataConfig(split="train", episodes=12, tile_size=56, shard_size=5, workers=1)
    build_dataset(out, config, progress=False)
    return out, config


@pytest.fixture
def tiny_model() -> dict:
    """ModelConfig fields of a ~0.2 M-parameter planner at 56-px tiles."""
    return dict(_TINY_MODEL)
