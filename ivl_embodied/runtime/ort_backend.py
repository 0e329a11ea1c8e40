"""``onnxruntime`` backend: an ``ivl-embodied export onnx`` graph in an InferenceSession.

CPU here; on a GPU machine with ``onnxruntime-gpu`` the CUDA (and, when asked, TensorRT)
execution providers are used. Routing and assembly are shared (:func:`assemble_embeddings`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
    GraphMeta,
)
from ivl_embodied.vision.tiling import Tiles
from ivl_embodied.vision.vir import ViRPolicy

logger = logging.getLogger(__name__)


def ort_providers(device: str, available: Sequence[str]) -> list:
    """Execution providers for ``device``: 'cpu', 'cuda[:i]' or 'tensorrt[:i]' (ORT's TRT EP).

    GPU devices keep CPU as the last fallback for ops the GPU providers lack.
    """
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind not in ("cuda", "tensorrt") or (index and not index.isdigit()):
        raise ValueError(f"onnxruntime device must be 'cpu', 'cuda[:N]' or 'tensorrt[:N]', got {device!r}")
    opts = {"device_id": int(index or 0)}
    wanted = ["CUDAExecutionProvider"] if kind == "cuda" else ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise BackendUnavailableError(
            f"onnxruntime device {device!r} needs {missing}, but this onnxruntime has {list(available)} "
            f"(install onnxruntime-gpu, or use device 'cpu')"
        )
    return [(p, dict(opts)) for p in wanted] + ["CPUExecutionProvider"]


class OrtVisionBackend(VisionBackend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0):
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = ort_providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as e:  # ORT raises its own pybind exception types; re-raise with the path
            raise ValueError(f"onnxruntime could not load {str(self.path)!r}: {e}") from e
        self.meta = GraphMeta.from_props(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or sorted(outputs) != sorted(self.meta.output_names):
            raise ValueError(f"{str(self.path)!r} has inputs {inputs} / outputs {outputs}; expected "
                             f"[{INPUT_NAME!r}] / {list(self.meta.output_names)}")
        logger.info("onnxruntime vision backend: %s (%s, ViR=%s)", self.path,
                    self.session.get_providers()[0], self.meta.with_vir)

    def run_graph(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """[N, 3, T, T] -> the graph's named outputs as CPU torch tensors."""
        if self.session is None:
            raise RuntimeError("onnxruntime vision backend is closed")
        x = np.ascontiguousarray(pixel_values.detach().to("cpu", torch.float32).numpy())
        names = list(self.meta.output_names)
        outs = self.session.run(names, {INPUT_NAME: x})
        return {n: torch.from_numpy(o) for n, o in zip(names, outs, strict=True)}

    def encode(self, tiles: Tiles, policy: ViRPolicy | None = None) -> VisualEmbeddings:
        check_tiles(tiles, self.meta)
        out = self.run_graph(tiles.pixel_values)
        return assemble_embeddings(
            tiles, policy, self.meta, out[OUTPUT_FULL], out.get(OUTPUT_PROB), out.get(OUTPUT_COMPRESSED)
        )

    def close(self) -> None:
        self.session = None
