"""Training data from the simulator: camera image + instruction + oracle plan per task record.

``ivl-embodied train data --split train --episodes N --out DIR`` takes the first N records of
:func:`~ivl_embodied.sim.tasks.generate_split` (the shipped ``train.jsonl`` is its first 300;
beyond that the same generator keeps drawing train-split combos and templates with new seeds,
never heldout ones), builds each scene exactly as :func:`~ivl_embodied.sim.episode.run_episode`
does (settle, then look), renders the 640x480 RGB camera, computes the oracle plan and stores the
image **already tiled** for the planner (uint8 ``[T, tile, tile, 3]``, InternVL's bicubic
``dynamic_preprocess``), so training never re-renders or re-tiles.

Layout of DIR::

    manifest.json        format, config, per-shard sha256, content hash, render speed
    records.jsonl        one {"seed", "instruction", "goal", "plan", "objects"} per example, in order
    shard-00000.safetensors   "images": uint8 [n, T, tile, tile, 3]
    shard-00000.json          that shard's key, sha256 and records (what resuming reads)

Everything is a function of the config (seeds come from the task records), so a second run with
the same config finds a valid manifest and reuses the cache; shards are verified by hash. Each
shard is keyed by its task records and the render settings, so an interrupted build resumes from
its finished shards, and a larger build into the same directory (more ``episodes``, same
``shard_size``) renders only the shards it does not have yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ivl_embodied.train.config import DataConfig, to_dict

logger = logging.getLogger(__name__)

DATA_FORMAT = "ivl_embodied.train.data/2"


@dataclass(frozen=True)
class Example:
    seed: int
    instruction: str
    goal: dict
    plan: str
    objects: tuple = ()  # every object in view: {"name": "red cube", "box": [x1, y1, x2, y2]} (0..1000)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render_example(task, config: DataConfig) -> tuple[np.ndarray, Example]:
    """One task record -> (tiles uint8 [T, s, s, 3], example). Same view as ``run_episode``."""
    from ivl_embodied.plan.schema import format_plan
    from ivl_embodied.sim.oracle import object_box, oracle_plan
    from ivl_embodied.sim.sim_robot import SimRobot
    from ivl_embodied.sim.tasks import scene_for
    from ivl_embodied.sim.world import SimWorld
    from ivl_embodied.vision.tiling import TilingConfig, split_tiles, to_rgb_image

    world = SimWorld(scene_for(task))
    try:
        SimRobot(world).hold(config.settle_s)  # objects settle on the table, as in an episode
        rgb = world.render_rgb()  # [480, 640, 3] uint8
        plan = format_plan(oracle_plan(world, task.goal))
        objects = tuple({"name": o.phrase, "box": list(object_box(world, o))} for o in world.scene.objects)
    finally:
        world.close()
    tiles, _, _ = split_tiles(to_rgb_image(rgb), TilingConfig(tile_size=config.tile_size, max_tiles=config.max_tiles))
    images = np.stack([np.asarray(t, dtype=np.uint8) for t in tiles])  # [T, s, s, 3]
    return images, Example(task.seed, task.instruction, task.goal.to_dict(), plan, objects)


def _shard_key(task_json: list[str], config: DataConfig) -> str:
    """What a shard's content depends on: its task records and the render settings."""
    key = {"format": DATA_FORMAT, "tasks": task_json, "tile_size": config.tile_size,
           "max_tiles": config.max_tiles, "settle_s": config.settle_s}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _finished_shard(index: int, task_json: list[str], config: DataConfig, out: Path):
    """(shard, records, sha, 0.0) if ``out`` already holds this shard intact, else None."""
    side, path = out / f"shard-{index:05d}.json", out / f"shard-{index:05d}.safetensors"
    if not (side.is_file() and path.is_file()):
        return None
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError:
        return None
    if meta.get("key") != _shard_key(task_json, config) or _sha256(path) != meta.get("sha256"):
        return None
    return index, meta["records"], meta["sha256"], 0.0


def _render_shard(job: tuple[int, list[str], dict, str]) -> tuple[int, list[dict], str, float]:
    """Worker: render one shard's task records and write it; returns (shard, records, sha, seconds)."""
    from safetensors.numpy import save_file

    from ivl_embodied.sim.tasks import parse_task

    index, task_json, cfg, out = job
    config = DataConfig(**cfg)
    t0 = time.perf_counter()
    images, records = [], []
    for line in task_json:
        img, ex = render_example(parse_task(json.loads(line)), config)
        images.append(img)
        records.append(ex.__dict__)
    path = Path(out) / f"shard-{index:05d}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file({"images": np.stack(images)}, str(tmp))  # [n, T, s, s, 3]
    os.replace(tmp, path)
    sha = _sha256(path)
    side = path.with_suffix(".json")
    tmp = side.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"key": _shard_key(task_json, config), "sha256": sha, "records": records}))
    os.replace(tmp, side)  # written last: a shard without its sidecar is rendered again
    return index, records, sha, time.perf_counter() - t0


def _fingerprint(config: DataConfig) -> str:
    from ivl_embodied.sim import tasks

    key = {"format": DATA_FORMAT, "config": to_dict(config), "task_generator": tasks.SPLIT_SEED_BASE}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cache_is_valid(out: Path, config: DataConfig) -> bool:
    """Whether ``out`` holds this config's data with every shard matching its recorded hash."""
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return False
    meta = json.loads(manifest.read_text())
    if meta.get("format") != DATA_FORMAT or meta.get("fingerprint") != _fingerprint(config):
        return False
    for shard in meta["shards"]:
        p = out / shard["file"]
        if not p.is_file() or _sha256(p) != shard["sha256"]:
            logger.warning("cache shard %s is missing or corrupt; re-rendering", p)
            return False
    return (out / "records.jsonl").is_file()


def build_dataset(out: str | Path, config: DataConfig | None = None, progress: bool = True) -> dict:
    """Render (or reuse) the dataset for ``config`` in ``out``; returns the manifest."""
    config = config or DataConfig()
    from tqdm import tqdm

    from ivl_embodied.sim.tasks import generate_split

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cache_is_valid(out, config):
        meta = json.loads((out / "manifest.json").read_text())
        logger.info("reusing cached data in %s (%d examples, hash %s)", out, meta["examples"], meta["content_hash"])
        return meta
    (out / "manifest.json").unlink(missing_ok=True)  # a half-written dataset is never valid
    tasks = generate_split(config.split, config.episodes)
    jobs = [
        (i // config.shard_size, [t.to_json() for t in tasks[i : i + config.shard_size]], to_dict(config), str(out))
        for i in range(0, len(tasks), config.shard_size)
    ]
    t0 = time.perf_counter()
    results = [r for j in jobs if (r := _finished_shard(j[0], j[1], config, out)) is not None]
    done = {r[0] for r in results}
    todo = [j for j in jobs if j[0] not in done]
    if done:
        logger.info("reusing %d finished shards in %s; rendering %d", len(done), out, len(todo))
    bar = tqdm(total=sum(len(j[1]) for j in todo), desc="render", unit="img", disable=not progress)
    if config.workers > 1 and len(todo) > 1:
        # spawn: a fresh interpreter per worker, so no GL context is inherited through fork
        with mp.get_context("spawn").Pool(min(config.workers, len(todo))) as pool:
            for r in pool.imap_unordered(_render_shard, todo):
                results.append(r)
                bar.update(len(r[1]))
    else:
        for job in todo:
            results.append(_render_shard(job))
            bar.update(len(results[-1][1]))
    bar.close()
    wall = time.perf_counter() - t0
    rendered = sum(len(r[1]) for r in results if r[0] not in done)
    results.sort(key=lambda r: r[0])
    records = [rec for r in results for rec in r[1]]
    (out / "records.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    shards = [{"file": f"shard-{r[0]:05d}.safetensors", "examples": len(r[1]), "sha256": r[2]} for r in results]
    content = hashlib.sha256()
    content.update(_sha256(out / "records.jsonl").encode())
    for s in shards:
        content.update(s["sha256"].encode())
    meta = {
        "format": DATA_FORMAT, "fingerprint": _fingerprint(config), "config": to_dict(config),
        "examples": len(records), "shards": shards, "content_hash": content.hexdigest(),
        "render_wall_s": round(wall, 2), "rendered": rendered, "reused": len(records) - rendered,
        "images_per_s": round(rendered / wall, 2) if rendered else None,
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out / "manifest.json")
    logger.info("rendered %d examples (%d reused) in %.1f s into %s", rendered, len(records) - rendered, wall, out)
    return meta


class PlanDataset:
    """The cached data in memory: uint8 tiles [N, T, s, s, 3] + instructions + plan texts."""

    def __init__(self, root: str | Path):
        from safetensors.numpy import load_file

        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{str(self.root)!r} has no manifest.json: run `ivl-embodied train data` first")
        self.manifest = json.loads(manifest.read_text())
        if self.manifest.get("format") != DATA_FORMAT:
            raise ValueError(f"unknown data format {self.manifest.get('format')!r}; expected {DATA_FORMAT!r}")
        self.images = torch.from_numpy(np.concatenate(
            [load_file(str(self.root / s["file"]))["images"] for s in self.manifest["shards"]]))  # [N, T, s, s, 3]
        lines = (self.root / "records.jsonl").read_text().splitlines()
        self.examples = [Example(**{**r, "objects": tuple(r.get("objects", ()))})
                         for r in (json.loads(line) for line in lines if line.strip())]
        if len(self.examples) != self.images.shape[0]:
            raise ValueError(f"{self.root}: {len(self.examples)} records but {self.images.shape[0]} images")
        self.tile_size = int(self.manifest["config"]["tile_size"])
        self.max_tiles = int(self.manifest["config"]["max_tiles"])

    def __len__(self) -> int:
        return len(self.examples)

    def pixel_values(self, indices) -> torch.Tensor:
        """Normalised tiles of ``indices``: [sum T, 3, s, s] float32 (what ``tile_image`` yields)."""
        from ivl_embodied.vision.tiling import IMAGENET_MEAN, IMAGENET_STD

        x = self.images[torch.as_tensor(indices)]  # [B, T, s, s, 3] uint8
        x = x.reshape(-1, *x.shape[2:]).permute(0, 3, 1, 2).float() / 255.0  # [B*T, 3, s, s]
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    @property
    def tiles_per_image(self) -> int:
        return int(self.images.shape[1])

    def corpus(self) -> list[str]:
        return [e.instruction for e in self.examples] + [e.plan for e in self.examples]


def add_arguments(parser) -> None:
    parser.add_argument("--split", default="train", choices=("train", "val"))
    parser.add_argument("--episodes", type=int, default=DataConfig.episodes, help="task records to render")
    parser.add_argument("--out", required=True, help="dataset directory (reused when it already matches)")
    parser.add_argument("--tile-size", type=int, default=DataConfig.tile_size)
    parser.add_argument("--max-tiles", type=int, default=DataConfig.max_tiles)
    parser.add_argument("--workers", type=int, default=DataConfig.workers)
    parser.add_argument("--shard-size", type=int, default=DataConfig.shard_size)


def run(args) -> int:
    config = DataConfig(split=args.split, episodes=args.episodes, tile_size=args.tile_size,
                        max_tiles=args.max_tiles, workers=args.workers, shard_size=args.shard_size)
    meta = build_dataset(args.out, config)
    print(json.dumps({k: meta[k] for k in ("examples", "content_hash", "render_wall_s", "images_per_s")}))
    return 0
