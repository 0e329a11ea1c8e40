"""``tensorrt`` backend: a serialized TensorRT 10 engine run with torch CUDA tensors.

The engine comes from ``ivl-embodied export trt`` (or ``trtexec``, see ``trt_engines/README.md``)
and must be built on the device that runs it (engines are tied to GPU + TensorRT version).
Its graph metadata sits next to it in ``<engine>.json``. Inputs and outputs are bound as torch
CUDA tensors (``set_tensor_address``) and run with ``execute_async_v3`` on a private stream.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ivl_embodied.embeddings.payload import VisualEmbeddings
from ivl_embodied.runtime.base import (
    BackendUnavailableError,
    VisionBackend,
    assemble_embeddings,
    check_tiles,
)
from ivl_embodied.runtime.meta import (
    INPUT_NAME,
    OUTPUT_COMPRESSED,
    OUTPUT_FULL,
    OUTPUT_PROB,
    read_sidecar,
)
from ivl_embodied.vision.tiling import Tiles
from ivl_embodied.vision.vir import ViRPolicy

logger = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a :class:`BackendUnavailableError` saying how to get it."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailableError(
            f"the 'tensorrt' backend needs NVIDIA TensorRT 10's Python package (import tensorrt failed: {e}). "
            "On a Jetson it ships with JetPack 6 (apt: python3-libnvinfer); on x86 GPUs `pip install tensorrt`. "
            "Without it use backend 'onnxruntime' or 'torch'."
        ) from e
    major = int(str(tensorrt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailableError(
            f"TensorRT {tensorrt.__version__} found; the 'tensorrt' backend is written for TensorRT >= 10 "
            "(named I/O tensors, execute_async_v3)"
        )
    return tensorrt


def torch_dtype(trt: Any, dt: Any) -> torch.dtype:
    """TensorRT DataType -> torch dtype for binding buffers."""
    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16,
             "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool}
    for name, td in table.items():
        if hasattr(trt.DataType, name) and dt == getattr(trt.DataType, name):
            return td
    raise TypeError(f"engine tensor type {dt} has no torch equivalent here")


class TensorRTVisionBackend(VisionBackend):
    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda:0"):
        trt = import_tensorrt()
        self.path = Path(path)
        if not str(device).startswith("cuda"):
            raise ValueError(f"the tensorrt backend runs on a CUDA device, got device {device!r}")
        if not torch.cuda.is_available():
            raise BackendUnavailableError("the tensorrt backend needs a CUDA GPU, but torch sees none")
        self.meta, self.build_info = read_sidecar(self.path)
        dev = torch.device(device)
        self.device = dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        torch.cuda.set_device(self.device)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT could not deserialize {str(self.path)!r}; engines only load on the GPU model and "
                f"TensorRT version that built them (built: {self.build_info.get('tensorrt_version', '?')}, "
                f"here: {trt.__version__}); rebuild it on this device"
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        expected = [INPUT_NAME, *self.meta.output_names]
        if sorted(names) != sorted(expected):
            raise ValueError(f"engine {str(self.path)!r} has tensors {names}; expected {expected}")
        if self.engine.get_tensor_mode(INPUT_NAME) != trt.TensorIOMode.INPUT:
            raise ValueError(f"engine tensor {INPUT_NAME!r} is not an input")
        _, _, max_shape = self.engine.get_tensor_profile_shape(INPUT_NAME, 0)  # (min, opt, max)
        self.max_batch = int(max_shape[0])
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        logger.info("tensorrt vision backend: %s on %s (up to %d tiles, %s)", self.path, self.device,
                    self.max_batch, self.build_info.get("precision", "?"))

    def run_graph(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """[N, 3, T, T] -> the engine's named outputs as CUDA tensors."""
        if self.context is None:
            raise RuntimeError("tensorrt vision backend is closed")
        trt, ctx = self._trt, self.context
        in_dtype = torch_dtype(trt, self.engine.get_tensor_dtype(INPUT_NAME))
        x = pixel_values.to(self.device, in_dtype).contiguous()  # [N, 3, T, T]
        if not ctx.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise ValueError(f"engine refused input shape {tuple(x.shape)} (profile max {self.max_batch} tiles)")
        ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
        outs: dict[str, torch.Tensor] = {}
        for name in self.meta.output_names:
            shape = tuple(ctx.get_tensor_shape(name))  # resolved from the input shape
            dtype = torch_dtype(trt, self.engine.get_tensor_dtype(name))
            outs[name] = torch.empty(shape, dtype=dtype, device=self.device)
            ctx.set_tensor_address(name, outs[name].data_ptr())
        # the copy of x was queued on torch's current stream; the engine runs on ours
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        if not ctx.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {tuple(x.shape)} tiles")
        self.stream.synchronize()
        return outs

    def encode(self, tiles: Tiles, policy: ViRPolicy | None = None) -> VisualEmbeddings:
        check_tiles(tiles, self.meta, max_batch=self.max_batch)
        out = self.run_graph(tiles.pixel_values)
        return assemble_embeddings(
            tiles, policy, self.meta, out[OUTPUT_FULL], out.get(OUTPUT_PROB), out.get(OUTPUT_COMPRESSED)
        )

    def close(self) -> None:
        # release in dependency order: context -> engine -> runtime
        self.context = None
        self.engine = None
        self._runtime = None
