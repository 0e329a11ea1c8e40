"""ONNX exports of the shared tiny checkpoints (tests/conftest.py), made once per session."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def plain_onnx(tiny_ckpt, tmp_path_factory):
    from ivl_embodied.export.onnx_export import export_onnx

    return export_onnx(tiny_ckpt, tmp_path_factory.mktemp("rt_onnx") / "plain.onnx")


@pytest.fixture(scope="session")
def flash_onnx(tiny_flash_ckpt, tmp_path_factory):
    from ivl_embodied.export.onnx_export import export_onnx

    return export_onnx(tiny_flash_ckpt, tmp_path_factory.mktemp("rt_onnx") / "flash.onnx")
