"""Tiny checkpoints and their ONNX exports, made once per session (56-px tiles)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def plain_ckpt(tmp_path_factory):
    from ivl_embodied.model.tiny import save_tiny_internvl

    return save_tiny_internvl(tmp_path_factory.mktemp("rt_plain") / "internvl", seed=0, tile_size=56)


@pytest.fixture(scope="session")
def flash_ckpt(tmp_path_factory):
    from ivl_embodied.model.tiny import save_tiny_internvl

    return save_tiny_internvl(tmp_path_factory.mktemp("rt_flash") / "internvl", seed=1, tile_size=56, with_vir=True)


@pytest.fixture(scope="session")
def plain_onnx(plain_ckpt, tmp_path_factory):
    from ivl_embodied.export.onnx_export import export_onnx

    return export_onnx(plain_ckpt, tmp_path_factory.mktemp("rt_onnx") / "plain.onnx")


@pytest.fixture(scope="session")
def flash_onnx(flash_ckpt, tmp_path_factory):
    from ivl_embodied.export.onnx_export import export_onnx

    return export_onnx(flash_ckpt, tmp_path_factory.mktemp("rt_onnx") / "flash.onnx")
