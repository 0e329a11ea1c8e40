"""``make_vision_backend(name, path, device)``: the one place backends are chosen (lazily imported)."""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivl_embodied.runtime.base import VisionBackend

logger = logging.getLogger(__name__)

# name -> (module, class, what `path` is, default device)
BACKENDS: dict[str, tuple[str, str, str, str]] = {
    "torch": ("torch_backend", "TorchVisionBackend", "checkpoint directory", "cpu"),
    "onnxruntime": ("ort_backend", "OrtVisionBackend", ".onnx file", "cpu"),
    "tensorrt": ("trt_backend", "TensorRTVisionBackend", ".engine file", "cuda:0"),
}
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|tensorrt(:\d+)?)$")


@dataclass(frozen=True)
class BackendSpec:
    """Which backend, on what artifact, on which device (``None`` = the backend's default)."""

    name: str
    path: Path
    device: str | None = None

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"unknown vision backend {self.name!r}; choose one of {sorted(BACKENDS)}")
        object.__setattr__(self, "path", Path(self.path))
        what = BACKENDS[self.name][2]
        if not self.path.exists():
            raise FileNotFoundError(f"{self.name} backend: {what} {str(self.path)!r} does not exist")
        if (self.name == "torch") != self.path.is_dir():
            raise ValueError(f"{self.name} backend takes a {what}, got {str(self.path)!r}")
        if self.device is not None and not _DEVICE.match(self.device):
            raise ValueError(f"device must be 'cpu', 'cuda[:N]' or (onnxruntime) 'tensorrt[:N]', got {self.device!r}")
        if self.device is not None and self.device.startswith("tensorrt") and self.name != "onnxruntime":
            raise ValueError(f"device {self.device!r} is onnxruntime's TensorRT provider; backend is {self.name!r}")


def make_vision_backend(name: str, path: str | Path, device: str | None = None, **options: Any) -> VisionBackend:
    """``torch`` (checkpoint dir), ``onnxruntime`` (.onnx) or ``tensorrt`` (.engine + .engine.json).

    ``options`` go to the backend: ``dtype`` (torch), ``threads`` (onnxruntime).
    """
    spec = BackendSpec(name, Path(path), device)
    module, cls, _, default_device = BACKENDS[spec.name]
    backend_cls = getattr(importlib.import_module(f".{module}", __package__), cls)
    backend = backend_cls(spec.path, device=spec.device or default_device, **options)
    logger.debug("made %s vision backend from %s", spec.name, spec.path)
    return backend
