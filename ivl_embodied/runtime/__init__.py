"""ivl_embodied.runtime: vision backends for the camera-side node (torch / onnxruntime / TensorRT).

::

    from ivl_embodied.runtime import make_vision_backend
    backend = make_vision_backend("onnxruntime", "trt_engines/vision.onnx")   # or "torch", ckpt dir
    emb = backend.encode(tiles, ViRPolicy("auto"))                          # VisualEmbeddings

Every backend returns the same :class:`~ivl_embodied.embeddings.payload.VisualEmbeddings`
(metadata, tile order, ViR rule); heavy runtimes are imported only when their backend is made.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VisionBackend": "base", "BackendUnavailableError": "base", "assemble_embeddings": "base",
    "make_vision_backend": "factory", "BackendSpec": "factory", "BACKENDS": "factory",
    "GraphMeta": "meta",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
