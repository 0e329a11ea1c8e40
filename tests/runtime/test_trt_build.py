"""TensorRT engine build: the configuration plan (pure), the calls made on the TensorRT 10 API
(against a recording stand-in -- real TensorRT is not installable here), the CLI, the sidecar."""

from __future__ import annotations

import argparse
import json
import sys
import types

import pytest
import torch

from ivl_embodied.export import cli as export_cli
from ivl_embodied.export.onnx_export import read_onnx_metadata
from ivl_embodied.export.trt_build import (
    EngineBuildSettings,
    build_engine,
    plan_engine_build,
    trtexec_command,
)
from ivl_embodied.runtime import BackendUnavailableError
from ivl_embodied.runtime.meta import GraphMeta, read_sidecar

META = GraphMeta(tile_size=448, vision_hidden_size=1024, text_hidden_size=1024, tokens_full=256,
                 tokens_compressed=64, with_vir=True, encoder_id="InternVL3_5-1B-Flash+vir")


def test_plan_profiles_precision_workspace():
    plan = plan_engine_build(META, EngineBuildSettings(precision="fp16", max_tiles=6))
    assert plan.input_name == "pixel_values"
    assert plan.min_shape == (1, 3, 448, 448)
    assert plan.opt_shape == plan.max_shape == (7, 3, 448, 448)  # 6 grid tiles + thumbnail
    assert plan.builder_flags == ("FP16",)
    assert plan.workspace_bytes == 2048 * 2**20
    assert plan.output_names == ("embeds_full", "p_compress", "embeds_compressed")

    plan = plan_engine_build(META, EngineBuildSettings(precision="bf16", max_tiles=12, opt_tiles=5,
                                                       workspace_mib=512, optimization_level=5))
    assert (plan.min_shape[0], plan.opt_shape[0], plan.max_shape[0]) == (1, 5, 13)
    assert plan.builder_flags == ("BF16",) and plan.workspace_bytes == 512 * 2**20
    assert plan.optimization_level == 5
    assert plan_engine_build(META, EngineBuildSettings(precision="fp32")).builder_flags == ()
    one = plan_engine_build(META, EngineBuildSettings(max_tiles=1))  # one tile never gets a thumbnail
    assert one.max_shape[0] == one.opt_shape[0] == 1


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"precision": "int8"}, "'int8'"), ({"max_tiles": 0}, "got 0"), ({"max_tiles": 65}, "got 65"),
     ({"max_tiles": 6, "opt_tiles": 8}, "1..7"), ({"workspace_mib": 10}, "got 10"),
     ({"optimization_level": 9}, "got 9")],
)
def test_build_settings_validation(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        EngineBuildSettings(**kwargs)


def test_trtexec_command_spells_the_same_plan():
    plan = plan_engine_build(META, EngineBuildSettings(precision="fp16", max_tiles=6, opt_tiles=3))
    cmd = trtexec_command(plan, "v.onnx", "v.engine")
    assert cmd[:3] == ["trtexec", "--onnx=v.onnx", "--saveEngine=v.engine"]
    assert "--minShapes=pixel_values:1x3x448x448" in cmd
    assert "--optShapes=pixel_values:3x3x448x448" in cmd
    assert "--maxShapes=pixel_values:7x3x448x448" in cmd
    assert "--memPoolSize=workspace:2048M" in cmd and "--fp16" in cmd and "--bf16" not in cmd


class _Recorder:
    """Stand-in for the ``tensorrt`` module: records what build_engine asks of the API."""

    def __init__(self, parse_ok: bool = True, build_ok: bool = True):
        self.calls: list[tuple] = []
        rec = self

        class Logger:
            WARNING = "W"

            def __init__(self, level):
                rec.calls.append(("Logger", level))

        class Profile:
            def set_shape(self, name, mn, opt, mx):
                rec.calls.append(("set_shape", name, tuple(mn), tuple(opt), tuple(mx)))

        class Config:
            def set_memory_pool_limit(self, pool, size):
                rec.calls.append(("pool", pool, size))

            def set_flag(self, flag):
                rec.calls.append(("flag", flag))

            def add_optimization_profile(self, profile):
                rec.calls.append(("add_profile",))

            def __setattr__(self, name, value):
                rec.calls.append(("config." + name, value))

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                rec.calls.append(("create_network", flags))
                return "network"

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                rec.calls.append(("build", network))
                return memoryview(b"ENGINE") if build_ok else None

        class OnnxParser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                assert network == "network"

            def parse_from_file(self, path):
                rec.calls.append(("parse", path))
                return parse_ok

            def get_error(self, i):
                return "In node 3: unsupported op Foo"

        self.module = types.SimpleNamespace(
            __version__="10.3.0", Logger=Logger, Builder=Builder, OnnxParser=OnnxParser,
            MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
            BuilderFlag=types.SimpleNamespace(FP16="FLAG_FP16", BF16="FLAG_BF16"),
        )


def test_build_engine_drives_the_tensorrt_api(flash_onnx, tmp_path, monkeypatch):
    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", rec.module)
    out = build_engine(flash_onnx, tmp_path / "engines" / "v.engine",
                       EngineBuildSettings(precision="bf16", max_tiles=6, workspace_mib=256))
    assert out.read_bytes() == b"ENGINE"
    names = [c[0] for c in rec.calls]
    assert names.index("parse") < names.index("pool") < names.index("set_shape") < names.index("build")
    assert ("create_network", 0) in rec.calls
    assert ("pool", "WORKSPACE", 256 * 2**20) in rec.calls
    assert ("flag", "FLAG_BF16") in rec.calls and ("flag", "FLAG_FP16") not in rec.calls
    assert ("set_shape", "pixel_values", (1, 3, 56, 56), (7, 3, 56, 56), (7, 3, 56, 56)) in rec.calls
    assert ("config.builder_optimization_level", 3) in rec.calls and ("add_profile",) in rec.calls
    meta, build = read_sidecar(out)
    assert meta == read_onnx_metadata(flash_onnx)
    assert build["precision"] == "bf16" and build["tensorrt_version"] == "10.3.0"
    assert build["max_shape"] == [7, 3, 56, 56]


def test_build_engine_reports_parser_and_builder_failures(flash_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", _Recorder(parse_ok=False).module)
    with pytest.raises(RuntimeError, match="unsupported op Foo"):
        build_engine(flash_onnx, tmp_path / "a.engine", EngineBuildSettings())
    monkeypatch.setitem(sys.modules, "tensorrt", _Recorder(build_ok=False).module)
    with pytest.raises(RuntimeError, match="failed to build"):
        build_engine(flash_onnx, tmp_path / "b.engine", EngineBuildSettings())
    assert not (tmp_path / "b.engine").exists()


def test_build_engine_without_tensorrt_or_with_an_old_one(flash_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="import tensorrt failed"):
        build_engine(flash_onnx, tmp_path / "v.engine", EngineBuildSettings())
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(BackendUnavailableError, match="8.6.1"):
        build_engine(flash_onnx, tmp_path / "v.engine", EngineBuildSettings())


def test_tensorrt_backend_needs_cuda_and_sidecar(flash_onnx, tmp_path, monkeypatch):
    from ivl_embodied.runtime import make_vision_backend
    from ivl_embodied.runtime.trt_backend import torch_dtype

    monkeypatch.setitem(sys.modules, "tensorrt", _Recorder().module)
    engine = tmp_path / "v.engine"
    engine.write_bytes(b"ENGINE")
    with pytest.raises(ValueError, match="CUDA device, got device 'cpu'"):
        make_vision_backend("tensorrt", engine, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="needs a CUDA GPU"):
            make_vision_backend("tensorrt", engine)
    with pytest.raises(FileNotFoundError, match=r"v\.engine\.json"):
        read_sidecar(engine)
    dt = types.SimpleNamespace(DataType=types.SimpleNamespace(FLOAT=0, HALF=1, BF16=2, INT32=3))
    assert [torch_dtype(dt, i) for i in range(4)] == [torch.float32, torch.float16, torch.bfloat16, torch.int32]
    with pytest.raises(TypeError, match="7"):
        torch_dtype(dt, 7)


def _cli(argv):
    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    return export_cli.run(parser.parse_args(argv))


def test_cli_export_onnx_then_trtexec_recipe(tiny_flash_ckpt, tmp_path, capsys):
    onnx_path = tmp_path / "v.onnx"
    assert _cli(["onnx", "--vision", str(tiny_flash_ckpt), "--out", str(onnx_path), "--opset", "18"]) == 0
    assert read_onnx_metadata(onnx_path).with_vir
    capsys.readouterr()
    engine = tmp_path / "v.engine"
    assert _cli(["trt", "--onnx", str(onnx_path), "--out", str(engine), "--bf16", "--max-tiles", "4",
                 "--print-trtexec"]) == 0
    cmd = capsys.readouterr().out.strip()
    assert cmd.startswith("trtexec ") and "--bf16" in cmd and "--maxShapes=pixel_values:5x3x56x56" in cmd
    meta, build = read_sidecar(engine)  # written so a trtexec-built engine is usable by the backend
    assert meta.encoder_id == read_onnx_metadata(onnx_path).encoder_id and build["built_with"] == "trtexec"
    assert json.loads((tmp_path / "v.engine.json").read_text())["build"]["precision"] == "bf16"
    with pytest.raises(SystemExit):
        _cli(["trt", "--onnx", str(onnx_path), "--out", str(engine), "--fp16", "--bf16"])
