"""ivl_embodied.export: vision side -> ONNX (:mod:`.onnx_export`) -> TensorRT engine (:mod:`.trt_build`).

CLI: ``ivl-embodied export onnx|trt`` (:mod:`.cli`). Heavy imports happen inside the functions.
"""
