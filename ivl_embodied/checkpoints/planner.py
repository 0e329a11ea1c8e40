"""A learned planner behind the simulator's planner seam: ``plan(rgb, instruction) -> text``.

Runs the vision side and the language side in one process (what ``sim-eval`` and RL
rollouts need); the nodes run the same two halves in separate processes.

``make_planner(name)``: ``default`` is the planner shipped in
``ivl_embodied/default_planner``; any other name is a local directory holding either a
whole InternVL3.5 checkpoint or the two split halves as ``vision/`` and ``language/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ivl_embodied.checkpoints.internvl import load_language, load_vision
from ivl_embodied.language.constrained import PlanRestriction
from ivl_embodied.language.instruction import InstructionRefused, Refusal, read_instruction
from ivl_embodied.language.planner import GenerationSettings, PlanOutput, plan_candidates
from ivl_embodied.vision.tiling import TilingConfig, tile_image
from ivl_embodied.vision.vir import ViRPolicy

DEFAULT_PLANNER_DIR = Path(__file__).resolve().parent.parent / "default_planner"


def planner_dirs(name: str | Path) -> tuple[Path, Path]:
    """(vision dir, language dir) for a planner name: ``default``, a split pair, or a whole checkpoint."""
    root = DEFAULT_PLANNER_DIR if str(name) == "default" else Path(name).expanduser()
    if not root.is_dir():
        hint = (" (train it with `ivl-embodied train recipe default-planner --out DIR --ship`)"
                if str(name) == "default" else "")
        raise FileNotFoundError(f"planner directory {str(root)!r} does not exist{hint}")
    if (root / "vision").is_dir() and (root / "language").is_dir():
        return root / "vision", root / "language"
    if (root / "config.json").is_file():
        return root, root
    raise FileNotFoundError(
        f"{str(root)!r} holds neither vision/ + language/ nor a whole checkpoint (config.json)")


@dataclass
class ModelPlanner:
    """Image + instruction → plan text, through the vision encoder and the language planner."""

    vision_dir: Path
    language_dir: Path
    device: str = "cpu"
    max_tiles: int = 1
    policy: ViRPolicy = field(default_factory=lambda: ViRPolicy("full"))
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    last: PlanOutput | None = None
    visual_tokens: list[int] = field(default_factory=list)
    tile_tokens: list[tuple[int, ...]] = field(default_factory=list)  # per image: tokens of each tile
    read_instructions: bool = True  # read the operator's words first (refusals, canonical task)
    samples: int = 8  # sampled alternatives offered after the greedy plan (per view)
    mirrored_view: bool = True  # also plan on the mirrored frame (alternatives only; see candidates())

    def __post_init__(self) -> None:
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.encoder = load_vision(self.vision_dir, dtype=dtype, device=self.device)
        self.planner = load_language(self.language_dir, dtype=dtype, device=self.device)
        if self.policy.mode != "full" and not self.encoder.config.with_vir:
            raise ValueError(f"ViR mode {self.policy.mode!r} needs a checkpoint with a router (mlp2)")
        self.tiling = TilingConfig(tile_size=self.encoder.config.tile_size, max_tiles=self.max_tiles)

    def reset(self, task=None, world=None) -> None:
        """Learned planners see only the image; nothing to reset."""

    @torch.no_grad()
    def plan(self, rgb: np.ndarray, instruction: str) -> str:
        """The greedy plan (see :meth:`candidates`)."""
        return next(iter(self.candidates(rgb, instruction)))

    @torch.no_grad()
    def candidates(self, rgb: np.ndarray, instruction: str):
        """Plans for this frame, best first: the greedy plan, then the alternatives ranked by the model's
        own log-probability (generated only if the caller asks for more): ``samples`` sampled plans, and
        with ``mirrored_view`` the greedy and sampled plans made on the left-right mirrored frame, their
        boxes mirrored back (:func:`~ivl_embodied.plan.schema.mirror_plan`). The tabletop and camera are
        symmetric about the image's vertical midline and SFT trains on mirrored scenes, so the mirrored
        frame is a second look at the same scene: where the model boxes the wrong thing in one view it
        often boxes the right one in the other (measured in ``benchmarks/operator_language_2026-12-01``).

        With ``read_instructions`` the operator's words are read first
        (:func:`~ivl_embodied.language.instruction.read_instruction`): a refusal raises
        :class:`~ivl_embodied.language.instruction.InstructionRefused`; an understood task is planned
        from its canonical words, with decoding held to its actions and phrases."""
        restriction = None
        if self.read_instructions:
            task = read_instruction(instruction)
            if isinstance(task, Refusal):
                raise InstructionRefused(task)
            instruction = task.instruction
            restriction = PlanRestriction.for_task(task.goal, task.object, task.target)
        emb = self.encoder.encode(tile_image(rgb, self.tiling), self.policy)
        self.visual_tokens.append(emb.num_tokens)
        self.tile_tokens.append(emb.tokens_per_tile)
        views = [(emb, False)]
        if self.mirrored_view:
            flipped = np.ascontiguousarray(rgb[:, ::-1])
            views.append((lambda: self.encoder.encode(tile_image(flipped, self.tiling), self.policy), True))
        for out in plan_candidates(self.planner, views, instruction, self.settings, restriction, self.samples):
            self.last = out
            yield out.text


def planner_max_tiles(vision_dir: str | Path, default: int) -> int:
    """The tile budget a planner was trained with (``ivl_planner.json`` beside its vision side,
    written by ``ivl-embodied train``), or ``default`` for checkpoints without one."""
    import json

    meta = Path(vision_dir) / "ivl_planner.json"
    return int(json.loads(meta.read_text()).get("max_tiles", default)) if meta.is_file() else default


def make_planner(name: str, device: str = "cpu", vir: str = "full", max_tiles: int | None = None) -> ModelPlanner:
    vision, language = planner_dirs(name)
    tiles = planner_max_tiles(vision, default=1) if max_tiles is None else max_tiles
    return ModelPlanner(vision, language, device=device, max_tiles=tiles, policy=ViRPolicy(vir))


def resolve_checkpoint(value: str, side: str) -> Path:
    """Directory of the ``side`` ('vision' | 'language') for a node's ``checkpoint`` parameter.

    ``default`` is the planner shipped with the package; a directory holding ``vision/`` and
    ``language/`` gives that half; any other directory (a split half, or a whole InternVL3.5
    ``-HF`` checkpoint) is used as it is and the loader checks what it holds.
    """
    if side not in ("vision", "language"):
        raise ValueError(f"side must be 'vision' or 'language', got {side!r}")
    path = Path(value).expanduser()
    if value == "default" or (path / "vision").is_dir():
        vision, language = planner_dirs(value)
        return vision if side == "vision" else language
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {value!r} does not exist")
    return path
