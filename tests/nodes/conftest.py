"""Tiny InternVL checkpoints split into a vision side and a language side (DvD)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def split_tiny(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from ivl_embodied.checkpoints.internvl import split_checkpoint
    from ivl_embodied.checkpoints.tiny import save_tiny_internvl

    root = tmp_path_factory.mktemp("dvd")
    src = save_tiny_internvl(root / "full", seed=3, tile_size=56, with_vir=True)
    vision, language = split_checkpoint(src, root / "vision", root / "language")
    return {"full": src, "vision": vision, "language": language}
