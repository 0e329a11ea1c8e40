"""ONNX export of the vision side: valid graph, metadata, dynamic tile batch, parity with torch."""

from __future__ import annotations

import onnx
import pytest
import torch

from ivl_embodied.checkpoints.internvl import load_vision
from ivl_embodied.export.onnx_export import (
    OnnxExportSettings,
    VisionGraph,
    compare_with_torch,
    read_onnx_metadata,
)
from ivl_embodied.runtime.meta import (
    INPUT_NAME,
    OUTPUT_COMPRESSED,
    OUTPUT_FULL,
    OUTPUT_PROB,
    GraphMeta,
)

ATOL_FP32 = 1e-4  # onnxruntime CPU vs torch CPU, fp32; observed ~1e-7


CKPT = {"plain": "tiny_ckpt", "flash": "tiny_flash_ckpt"}  # fixtures in tests/conftest.py


@pytest.mark.parametrize("kind", ["plain", "flash"])
def test_export_is_valid_onnx_with_metadata(kind, request):
    path = request.getfixturevalue(f"{kind}_onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.name == "vit_full"
    assert model.opset_import[0].version >= 17
    inp = model.graph.input[0]
    assert inp.name == INPUT_NAME
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "tiles" and [d.dim_value for d in dims[1:]] == [3, 56, 56]
    expected_outputs = [OUTPUT_FULL, OUTPUT_PROB, OUTPUT_COMPRESSED] if kind == "flash" else [OUTPUT_FULL]
    assert [o.name for o in model.graph.output] == expected_outputs
    assert all(o.type.tensor_type.shape.dim[0].dim_param == "tiles" for o in model.graph.output)

    meta = read_onnx_metadata(path)
    encoder = load_vision(request.getfixturevalue(CKPT[kind]))
    assert meta == GraphMeta.from_encoder_config(encoder.config)
    assert meta.with_vir is (kind == "flash")
    assert (meta.tile_size, meta.vision_hidden_size, meta.text_hidden_size) == (56, 64, 64)
    assert (meta.tokens_full, meta.tokens_compressed) == ((4, 1) if kind == "flash" else (4, 0))
    assert meta.encoder_id.endswith("+vir") == (kind == "flash")


@pytest.mark.parametrize("kind", ["plain", "flash"])
def test_onnxruntime_matches_torch_for_dynamic_tile_counts(kind, request):
    encoder = load_vision(request.getfixturevalue(CKPT[kind]))
    diffs = compare_with_torch(encoder, request.getfixturevalue(f"{kind}_onnx"), tile_counts=(1, 3, 7))
    assert set(diffs) == set(GraphMeta.from_encoder_config(encoder.config).output_names)
    assert max(diffs.values()) <= ATOL_FP32, diffs


def test_graph_matches_encoder_forward(tiny_flash_ckpt):
    """The exported computation is the encoder's own paths, tile by tile."""
    encoder = load_vision(tiny_flash_ckpt)
    x = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        full, p, comp = VisionGraph(encoder)(x)
        grid = encoder.vit_features(x)  # [3, 4, 4, C]
        probs = encoder.vision_router(grid.reshape(3, 16, -1))  # [3, 2]
        ref_full, _ = encoder(x)  # policy 'full'
    torch.testing.assert_close(full.reshape(-1, full.shape[-1]), ref_full)
    torch.testing.assert_close(p, probs[:, 1])
    torch.testing.assert_close(comp, encoder.project_compressed(grid))


def test_export_settings_and_foreign_onnx_errors(tmp_path):
    with pytest.raises(ValueError, match="got 13"):
        OnnxExportSettings(opset=13)
    with pytest.raises(ValueError, match="got 1"):
        OnnxExportSettings(example_tiles=1)
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([node], "g", [x], [y])), str(foreign))
    with pytest.raises(ValueError, match="no ivl_embodied metadata"):
        read_onnx_metadata(foreign)
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        read_onnx_metadata(tmp_path / "nope.onnx")
