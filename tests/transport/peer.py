"""Child process for the cross-process tests: publishes large messages until killed.

    python peer.py large SECONDS   # Image 640x480 rgb8 (sensor_data) + VisualEmbedding (large_latest)

Prints one JSON line with the sha256 of each payload, then publishes every 0.2 s.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np

from ivl_embodied.transport import make_node, msg_type


def make_image(seed: int = 1):
    data = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return msg_type("sensor_msgs/msg/Image")(height=480, width=640, encoding="rgb8", step=640 * 3, data=data)


def make_embedding(seed: int = 2):
    VE = msg_type("ivl_embodied_msgs/msg/VisualEmbedding")
    tokens = [256] * 7
    # bf16 values: the top 16 bits of float32 values, row-major [1792, 1024]
    f32 = np.random.default_rng(seed).standard_normal((sum(tokens), 1024), dtype=np.float32)
    bf16 = (f32.view(np.uint32) >> 16).astype(np.uint16)
    return VE(source_width=1344, source_height=896, grid_cols=3, grid_rows=2, has_thumbnail=True,
              tile_size=448, tokens_per_tile=tokens, hidden_size=1024, dtype=VE.DTYPE_BFLOAT16,
              encoder_id="test", data=bf16.view(np.uint8).reshape(-1))


def main(argv: list[str]) -> int:
    mode, seconds = argv[0], float(argv[1])
    assert mode == "large", mode
    node = make_node("large_peer")
    img, emb = make_image(), make_embedding()
    pub_img = node.create_publisher("sensor_msgs/msg/Image", "/camera/color/image_raw", "sensor_data")
    pub_emb = node.create_publisher("ivl_embodied_msgs/msg/VisualEmbedding", "/ivl/visual_embeddings", "large_latest")
    print(json.dumps({"image": hashlib.sha256(bytes(img.data)).hexdigest(),
                      "embedding": hashlib.sha256(bytes(emb.data)).hexdigest(),
                      "embedding_bytes": len(bytes(emb.data))}), flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pub_img.publish(img)
        pub_emb.publish(emb)
        node.spin_once(0.2)
    node.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
