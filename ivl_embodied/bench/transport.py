"""``ivl-embodied bench transport``: DDS vs plain TCP between two processes on loopback.

Payloads: a 640×480 rgb8 ``sensor_msgs/Image`` (921 600 B of pixels) and a ``VisualEmbedding``
of 7 tiles × 256 tokens × 1024 hidden bf16 (3 670 016 B). For each transport and payload:

* **latency** — ``--count`` messages sent ``--interval-ms`` apart; one-way latency =
  receiver's ``time.monotonic_ns()`` when the decoded message is in its callback − sender's
  ``time.monotonic_ns()`` just before serialization (CLOCK_MONOTONIC is one system-wide clock
  on Linux, so the two processes' readings are comparable). DDS numbers include our Python
  CDR serialization and decoding; TCP sends the same pre-serialized CDR bytes, length-prefixed.
* **throughput** — ``--count`` messages back to back; received bytes (and messages) divided by
  the time from the first to the last arrival. DDS uses the default QoS here (reliable,
  keep-last 10): the writer may overwrite samples the reader has not yet taken, so
  ``received`` can be below ``sent``.

The receiver is a child process (``python -m ivl_embodied.bench.transport --worker``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from ivl_embodied.transport.convert import ns_to_s, ns_to_stamp, stamp_to_ns

LOG = logging.getLogger(__name__)

TOPICS = {"image_640x480_rgb8": "/bench/image", "visual_embedding_7x256x1024_bf16": "/bench/embedding"}
TYPES = {"image_640x480_rgb8": "sensor_msgs/msg/Image",
         "visual_embedding_7x256x1024_bf16": "ivl_embodied_msgs/msg/VisualEmbedding"}
PHASES = ("lat", "thr")
FRAME = struct.Struct("<QQB")  # payload length, send monotonic ns, phase index


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--count", type=int, default=200, help="messages per payload and phase (default 200)")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="gap between latency messages")
    parser.add_argument("--cyclone-config", default="loopback",
                        help="shipped Cyclone config used when CYCLONEDDS_URI is unset (default loopback)")


def make_payloads() -> dict[str, Any]:
    import numpy as np

    from ivl_embodied.transport import msg_type

    rng = np.random.default_rng(0)
    img = msg_type("sensor_msgs/msg/Image")(
        height=480, width=640, encoding="rgb8", step=1920,
        data=rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    VE = msg_type("ivl_embodied_msgs/msg/VisualEmbedding")
    emb = VE(source_width=1344, source_height=896, grid_cols=3, grid_rows=2, has_thumbnail=True,
             tile_size=448, tokens_per_tile=[256] * 7, hidden_size=1024, dtype=VE.DTYPE_BFLOAT16,
             encoder_id="bench", data=rng.integers(0, 256, 7 * 256 * 1024 * 2, dtype=np.uint8))
    return {"image_640x480_rgb8": img, "visual_embedding_7x256x1024_bf16": emb}


def _stamp(msg: Any, phase: str) -> None:
    msg.header.stamp = ns_to_stamp(time.monotonic_ns())
    msg.header.frame_id = phase


# --------------------------------------------------------------------------- receiver (child)


def _worker(count: int) -> int:
    from ivl_embodied.transport import make_node

    records: dict[str, dict[str, list]] = {f"{t}:{k}:{p}": [] for t in ("dds", "tcp") for k in TOPICS for p in PHASES}

    def on_msg(key: str):
        def cb(msg: Any) -> None:
            now = time.monotonic_ns()
            sent = stamp_to_ns(msg.header.stamp)
            records[f"dds:{key}:{msg.header.frame_id}"].append((now - sent, now, len(msg.data)))
        return cb

    node = make_node("bench_receiver")
    for key, topic in TOPICS.items():
        node.create_subscription(TYPES[key], topic, on_msg(key), "default")
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def tcp_loop() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = conn.makefile("rb", buffering=1 << 20)
        keys = list(TOPICS)
        while True:
            head = f.read(FRAME.size + 1)
            if len(head) < FRAME.size + 1:
                break
            n, sent, phase = FRAME.unpack(head[: FRAME.size])
            body = f.read(n)
            now = time.monotonic_ns()
            records[f"tcp:{keys[head[-1]]}:{PHASES[phase]}"].append((now - sent, now, len(body)))
        done.set()

    threading.Thread(target=tcp_loop, daemon=True).start()
    sys.stdout.write(json.dumps({"port": server.getsockname()[1]}) + "\n")
    sys.stdout.flush()
    deadline = time.monotonic() + 600
    while not done.is_set() and time.monotonic() < deadline:
        node.spin_once(0.05)
    node.spin_until(lambda: False, 0.3)
    node.shutdown()
    sys.stdout.write(json.dumps(records) + "\n")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------- sender (parent)


def _stats(rows: list, sent: int, phase: str) -> dict[str, Any]:
    import numpy as np

    if not rows:
        return {"received": 0, "sent": sent}
    if phase == "lat":
        lat = np.array([r[0] for r in rows]) / 1e6
        return {"p50": round(float(np.percentile(lat, 50)), 3), "p99": round(float(np.percentile(lat, 99)), 3),
                "received": len(rows), "sent": sent}
    times = sorted(r[1] for r in rows)
    span = ns_to_s(times[-1] - times[0])
    nbytes = sum(r[2] for r in rows[1:])  # bytes that arrived within the measured span
    if span <= 0:
        return {"received": len(rows), "sent": sent}
    return {"MB_per_s": round(nbytes / span / 1e6, 1), "msgs_per_s": round((len(rows) - 1) / span, 1),
            "received": len(rows), "sent": sent}


def run(args: argparse.Namespace) -> int:
    from ivl_embodied.transport import cyclone_types, make_node, serialize
    from ivl_embodied.transport.factory import cyclone_config_uri

    if args.count < 2:
        raise SystemExit(f"--count must be >= 2, got {args.count}")
    env = dict(os.environ)
    env.setdefault("CYCLONEDDS_URI", cyclone_config_uri(args.cyclone_config))
    env.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(100, 200)))
    env["IVL_TRANSPORT"] = env.get("IVL_TRANSPORT", "cyclonedds")
    os.environ.update({k: env[k] for k in ("CYCLONEDDS_URI", "ROS_DOMAIN_ID", "IVL_TRANSPORT")})
    payloads = make_payloads()
    child = subprocess.Popen([sys.executable, "-m", "ivl_embodied.bench.transport", "--worker", str(args.count)],
                             stdout=subprocess.PIPE, env=env, text=True)
    node = make_node("bench_sender")
    t0 = time.monotonic()
    try:
        port = json.loads(child.stdout.readline())["port"]
        pubs = {k: node.create_publisher(TYPES[k], TOPICS[k], "default") for k in TOPICS}
        for k in TOPICS:
            node.wait_for_subscribers(TOPICS[k], timeout=30)
        time.sleep(0.5)  # let the reader side finish matching too
        gap = args.interval_ms / 1e3
        for key, msg in payloads.items():
            for phase in PHASES:
                for _ in range(args.count):
                    _stamp(msg, phase)
                    pubs[key].publish(msg)
                    if phase == "lat":
                        time.sleep(gap)
                time.sleep(0.3)
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for ki, msg in enumerate(payloads.values()):
                body = serialize(msg)
                for pi, phase in enumerate(PHASES):
                    for _ in range(args.count):
                        sock.sendall(FRAME.pack(len(body), time.monotonic_ns(), pi) + bytes([ki]))
                        sock.sendall(body)
                        if phase == "lat":
                            time.sleep(gap)
        records = json.loads(child.stdout.readline())
        child.wait(30)
    finally:
        node.shutdown()
        if child.poll() is None:
            child.kill()
    result: dict[str, Any] = {
        "benchmark": "transport",
        "clock": "one-way latency from time.monotonic_ns() (CLOCK_MONOTONIC, system-wide on Linux) in two processes",
        "count": args.count,
        "latency_interval_ms": args.interval_ms,
        "cyclonedds_uri": env["CYCLONEDDS_URI"],
        "cyclonedds_version": cyclone_types.cyclonedds_version(),
        "bulk_uint8_path": bool(cyclone_types._BULK_STATE.get("ok")),
        "dds_qos": "reliable, keep-last 10, volatile",
        "payload_bytes": {k: len(serialize(m)) for k, m in payloads.items()},
        "results": {},
        "wall_s": None,
    }
    for transport in ("dds", "tcp"):
        result["results"][transport] = {
            key: {"latency_ms": _stats(records[f"{transport}:{key}:lat"], args.count, "lat"),
                  "throughput": _stats(records[f"{transport}:{key}:thr"], args.count, "thr")}
            for key in TOPICS
        }
    result["wall_s"] = round(time.monotonic() - t0, 1)
    if args.json:
        print(json.dumps(result))
    else:
        print(_table(result))
    return 0


def _table(result: dict[str, Any]) -> str:
    lines = [f"transport bench: {result['count']} msgs/phase, {result['clock']}",
             f"{'transport':<10}{'payload':<36}{'p50 ms':>9}{'p99 ms':>9}{'MB/s':>9}{'msgs/s':>9}{'recv/sent':>11}"]
    for transport, per in result["results"].items():
        for key, r in per.items():
            lat, thr = r["latency_ms"], r["throughput"]
            lines.append(
                f"{transport:<10}{key:<36}{lat.get('p50', float('nan')):>9.2f}{lat.get('p99', float('nan')):>9.2f}"
                f"{thr.get('MB_per_s', float('nan')):>9.1f}{thr.get('msgs_per_s', float('nan')):>9.1f}"
                f"{thr['received']:>6}/{thr['sent']:<4}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        sys.exit(_worker(int(sys.argv[2])))
    sys.exit("usage: ivl-embodied bench transport [--json] (this module's --worker mode is internal)")
