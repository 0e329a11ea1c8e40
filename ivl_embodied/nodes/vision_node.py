"""vision_node: camera image → tiles → InternViT (+ ViR) → bf16 embeddings on DDS.

Runs on the camera side (edge GPU). Keeps only the latest image, encodes at most
``rate_hz`` times per second, refuses images older than ``max_input_age_s``.

On request (a ``std_msgs/Header`` on ``mirror_request_topic`` naming a frame by its stamp) it
encodes that frame flipped left-right and publishes it on ``mirrored_topic`` with the frame's stamp:
the planner's second look at a scene whose first plans the executor refused. It keeps the last
``kept_frames`` frames it encoded for this; nothing is encoded twice unless asked.
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np

from ivl_embodied.checkpoints.planner import resolve_checkpoint
from ivl_embodied.nodes.base import NodeBase, run_node
from ivl_embodied.transport.convert import MessageError, msg_to_image, payload_to_msg, stamp_to_ns

EMBEDDING = "ivl_embodied_msgs/msg/VisualEmbedding"
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
VIR_MODES = {"auto": "auto", "all256": "full", "all64": "compressed"}
DEFAULT_MAX_TILES = 6  # for checkpoints that do not say what they were trained with


class VisionNode(NodeBase):
    NAME = "vision_node"
    PARAMETERS = {
        "checkpoint": "default",
        "backend": "torch",  # torch | onnxruntime | tensorrt
        "engine": "",  # .onnx (onnxruntime) or .engine (tensorrt); torch uses `checkpoint`
        "device": "cpu",
        "dtype": "bfloat16",
        "max_num_tiles": 0,  # 0: what the checkpoint was trained with (ivl_planner.json), else 6
        "vir_mode": "auto",
        "vir_relative": 0.5,
        "vir_absolute": 0.5,
        "image_topic": "camera/color/image_raw",
        "embedding_topic": "ivl/visual_embeddings",
        "mirrored_topic": "ivl/visual_embeddings_mirrored",  # "" = never encode a mirrored frame
        "mirror_request_topic": "ivl/vision/mirror_request",
        "kept_frames": 30,  # frames kept (by stamp) for mirror requests: 15 s at 2 Hz
        "rate_hz": 2.0,
        "max_input_age_s": 2.0,
        "threads": 0,  # CPU threads for the encoder; 0 = this node's share of the cores ($IVL_CPU_SHARE, else all)
    }

    def setup(self) -> None:
        from ivl_embodied.runtime import make_vision_backend
        from ivl_embodied.runtime.threads import configure_torch
        from ivl_embodied.vision.vir import ViRPolicy

        p = self.params
        self.threads = configure_torch(p["threads"])
        self.logger.info("%d CPU thread(s) for the encoder", self.threads)
        if p["dtype"] not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {p['dtype']!r}")
        if p["vir_mode"] not in VIR_MODES:
            raise ValueError(f"vir_mode must be one of {sorted(VIR_MODES)}, got {p['vir_mode']!r}")
        if isinstance(p["max_num_tiles"], bool) or not isinstance(p["max_num_tiles"], int) or p["max_num_tiles"] < 0:
            raise ValueError(f"max_num_tiles must be an int >= 0 (0: the checkpoint's own), got {p['max_num_tiles']!r}")
        self.max_tiles = p["max_num_tiles"] or DEFAULT_MAX_TILES
        if p["backend"] == "torch":
            path = resolve_checkpoint(p["checkpoint"], "vision")
            if not p["max_num_tiles"]:
                from ivl_embodied.checkpoints.planner import planner_max_tiles

                self.max_tiles = planner_max_tiles(path, default=DEFAULT_MAX_TILES)
        elif not p["engine"]:
            raise ValueError(f"backend {p['backend']!r} needs the `engine` parameter (an exported .onnx/.engine)")
        else:
            path = p["engine"]
        options = {"threads": self.threads} if p["backend"] == "onnxruntime" else {}
        self.backend = make_vision_backend(p["backend"], path, device=p["device"], **options)  # bf16 on CUDA
        mode = VIR_MODES[p["vir_mode"]]
        if mode != "full" and not self.backend.with_vir:
            self.logger.warning("checkpoint has no ViR router/mlp2: vir_mode %r falls back to all256", p["vir_mode"])
            mode = "full"
        self.policy = ViRPolicy(mode, relative=p["vir_relative"], absolute=p["vir_absolute"])
        shipped = getattr(getattr(getattr(self.backend, "encoder", None), "config", None), "vir_policy", None)
        if p["vir_mode"] == "auto" and mode != "full" and shipped is not None:
            self.policy = shipped  # the routing the checkpoint was released with (InternVL3.5-Flash: flash_*)
            self.logger.info("ViR policy from the checkpoint: %s", shipped)
        self.latest = None  # (Image msg, monotonic receipt time); only the newest is kept
        self.published = 0
        self.pub = self.node.create_publisher(EMBEDDING, p["embedding_topic"], "large_latest")
        self.mirrored_pub = None
        self.kept: collections.OrderedDict = collections.OrderedDict()  # stamp ns -> RGB frame it encoded
        if p["mirrored_topic"]:
            self.mirrored_pub = self.node.create_publisher(EMBEDDING, p["mirrored_topic"], "large_latest")
            self.node.create_subscription("std_msgs/msg/Header", p["mirror_request_topic"], self.on_mirror_request)
        self.node.create_subscription("sensor_msgs/msg/Image", p["image_topic"], self.on_image, "sensor_data")
        self.node.create_timer(1.0 / p["rate_hz"], self.on_timer)

    def close(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()

    def on_image(self, msg) -> None:
        self.latest = (msg, time.monotonic())

    def on_timer(self) -> None:
        if self.latest is None:
            return
        msg, received = self.latest
        self.latest = None
        age = time.monotonic() - received
        max_age = self.params["max_input_age_s"]
        if max_age > 0 and age > max_age:
            self.logger.warning("dropping image %.2f s old (max_input_age_s=%.2f)", age, max_age)
            return
        self.encode_and_publish(msg)

    def tiling(self):
        from ivl_embodied.vision.tiling import TilingConfig

        return TilingConfig(tile_size=self.backend.tile_size, max_tiles=self.max_tiles)

    def on_mirror_request(self, msg) -> None:
        """Encode the kept frame stamped ``msg.stamp`` flipped left-right; publish it with that stamp."""
        from ivl_embodied.vision.tiling import tile_image

        stamp = stamp_to_ns(msg.stamp)
        if stamp not in self.kept:
            self.logger.warning("mirror request for a frame stamped %d ns that is no longer kept (kept_frames=%d)",
                                stamp, self.params["kept_frames"])
            return
        rgb, frame_id = self.kept[stamp]
        emb = self.backend.encode(tile_image(np.ascontiguousarray(rgb[:, ::-1]), self.tiling()), self.policy)
        self.mirrored_pub.publish(payload_to_msg(emb.to_payload(DTYPES[self.params["dtype"]]), stamp, frame_id))

    def encode_and_publish(self, msg) -> None:
        from ivl_embodied.vision.tiling import tile_image

        try:
            rgb = msg_to_image(msg)
            if rgb.ndim != 3:
                raise MessageError(f"vision_node needs a colour image, got encoding {msg.encoding!r}")
        except MessageError as e:
            self.logger.error("dropping image on %s: %s", self.params["image_topic"], e)
            return
        t0 = time.perf_counter()
        emb = self.backend.encode(tile_image(rgb, self.tiling()), self.policy)
        stamp = stamp_to_ns(msg.header.stamp)
        self.pub.publish(payload_to_msg(emb.to_payload(DTYPES[self.params["dtype"]]), stamp, msg.header.frame_id))
        if self.mirrored_pub is not None:
            self.kept[stamp] = (rgb, msg.header.frame_id)
            while len(self.kept) > max(1, int(self.params["kept_frames"])):
                self.kept.popitem(last=False)
        self.published += 1
        self.logger.debug("encoded %dx%d into %d tokens %s in %.1f ms", rgb.shape[1], rgb.shape[0],
                          emb.num_tokens, list(emb.tokens_per_tile), 1e3 * (time.perf_counter() - t0))


def main(args: list[str] | None = None) -> int:
    return run_node(VisionNode, args)


if __name__ == "__main__":
    sys.exit(main())
