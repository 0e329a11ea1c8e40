"""The task suite: goals, instructions, JSONL task files, fixed splits and success predicates.

A task record is one JSON object per line::

    {"seed": 17, "instruction": "put the red cube in the green bowl",
     "goal": {"type": "place_in", "object": {"color": "red", "shape": "cube"},
              "target": {"color": "green", "shape": "bowl"}}}

Goal types: ``place_in`` (graspable object into a bowl/tray), ``stack`` (cube/cylinder onto a
cube/cylinder) and ``push_to`` (cube/cylinder pushed into a zone on the table). The scene is built
from ``seed`` + ``goal`` (:func:`scene_for`), so anyone can write new task files.

Splits (:func:`generate_split`): ``heldout`` uses only (object, target) colour/shape combinations
and instruction templates that ``train``/``val`` never use.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivl_embodied.language.paraphrase import paraphrase
from ivl_embodied.plan.vocabulary import COLORS as COLOR_NAMES
from ivl_embodied.sim.randomize import RandomizationConfig, sample_scene
from ivl_embodied.sim.world import ASSET_DIR, COLORS, CONTAINERS, GRASPABLE, SceneSpec, SimWorld

TASK_DIR = ASSET_DIR / "tasks"
SPLITS = ("train", "val", "heldout")
SUITES = ("unseen_phrasing",)  # evaluation-only task files (ivl_embodied.language.paraphrase)
GOAL_TYPES = ("place_in", "stack", "push_to")
OBJECT_SHAPES = {"place_in": GRASPABLE, "stack": ("cube", "cylinder"), "push_to": ("cube", "cylinder")}
TARGET_SHAPES = {"place_in": CONTAINERS, "stack": ("cube", "cylinder"), "push_to": ("zone",)}
TEMPLATES = {  # (templates for train/val, templates reserved for heldout)
    "place_in": ((
        "put the {obj} in the {tgt}", "place the {obj} into the {tgt}", "move the {obj} to the {tgt}",
        "pick up the {obj} and drop it in the {tgt}", "the {obj} goes in the {tgt}",
        "can you put the {obj} inside the {tgt}?", "Put the {obj} in the {tgt}.",
    ), ("grab the {obj} and deposit it in the {tgt}", "I want the {obj} sitting in the {tgt}")),
    "stack": ((
        "stack the {obj} on the {tgt}", "put the {obj} on top of the {tgt}", "place the {obj} onto the {tgt}",
        "set the {obj} on the {tgt}", "pick up the {obj} and stack it on the {tgt}",
    ), ("build a tower with the {obj} above the {tgt}", "the {obj} should rest on top of the {tgt}")),
    "push_to": ((
        "push the {obj} into the {tgt}", "slide the {obj} to the {tgt}", "shove the {obj} onto the {tgt}",
        "nudge the {obj} into the {tgt}", "push the {obj} over to the {tgt}",
    ), ("without lifting it, move the {obj} into the {tgt}", "drive the {obj} over to the {tgt} by pushing")),
}
SPLIT_SIZES = {"train": 300, "val": 100, "heldout": 100}
SPLIT_SEED_BASE = {"train": 0, "val": 100_000, "heldout": 200_000}


class TaskError(ValueError):
    """A task record that does not follow the format; the message names the field and value."""


@dataclass(frozen=True)
class Entity:
    color: str
    shape: str

    @property
    def phrase(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Goal:
    type: str
    object: Entity
    target: Entity

    def to_dict(self) -> dict:
        return {"type": self.type, "object": {"color": self.object.color, "shape": self.object.shape},
                "target": {"color": self.target.color, "shape": self.target.shape}}


@dataclass(frozen=True)
class Task:
    seed: int
    instruction: str
    goal: Goal

    def to_json(self) -> str:
        return json.dumps({"seed": self.seed, "instruction": self.instruction, "goal": self.goal.to_dict()})


def _entity(d, field: str, shapes: tuple[str, ...]) -> Entity:
    if not isinstance(d, dict):
        raise TaskError(f"field {field!r} must be an object with color and shape, got {d!r}")
    extra = sorted(set(d) - {"color", "shape"})
    if extra:
        raise TaskError(f"field {field!r} has unknown keys {extra}")
    color, shape = d.get("color"), d.get("shape")
    if color not in COLORS:
        raise TaskError(f"field '{field}.color': {color!r} is not one of {sorted(COLORS)}")
    if shape not in shapes:
        raise TaskError(f"field '{field}.shape': {shape!r} is not one of {list(shapes)}")
    return Entity(color, shape)


def parse_task(record) -> Task:
    """Validate one record (a dict) and return it as a :class:`Task`."""
    if not isinstance(record, dict):
        raise TaskError(f"a task record must be a JSON object, got {type(record).__name__}")
    extra = sorted(set(record) - {"seed", "instruction", "goal", "id"})
    if extra:
        raise TaskError(f"unknown fields {extra}; allowed: seed, instruction, goal, id")
    seed = record.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise TaskError(f"field 'seed': {seed!r} must be an integer in [0, 2**32)")
    instr = record.get("instruction")
    if not isinstance(instr, str) or not instr.strip() or len(instr) > 300:
        raise TaskError(f"field 'instruction': {instr!r} must be a non-empty string of <= 300 characters")
    goal = record.get("goal")
    if not isinstance(goal, dict):
        raise TaskError(f"field 'goal': {goal!r} must be an object")
    extra = sorted(set(goal) - {"type", "object", "target"})
    if extra:
        raise TaskError(f"field 'goal' has unknown keys {extra}")
    gtype = goal.get("type")
    if gtype not in GOAL_TYPES:
        raise TaskError(f"field 'goal.type': {gtype!r} is not one of {list(GOAL_TYPES)}")
    obj = _entity(goal.get("object"), "goal.object", OBJECT_SHAPES[gtype])
    tgt = _entity(goal.get("target"), "goal.target", TARGET_SHAPES[gtype])
    if obj == tgt:
        raise TaskError(f"field 'goal.target': {tgt.phrase!r} is the same thing as goal.object")
    return Task(seed, instr, Goal(gtype, obj, tgt))


def load_tasks(path) -> list[Task]:
    """Read and validate a JSONL task file; errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"task file {str(path)!r} does not exist")
    tasks = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
        try:
            tasks.append(parse_task(rec))
        except TaskError as e:
            raise TaskError(f"{path}:{n}: {e}") from None
    if not tasks:
        raise TaskError(f"task file {str(path)!r} holds no records")
    return tasks


def load_split(split: str) -> list[Task]:
    """A shipped split (``train``, ``val``, ``heldout``) or evaluation suite (``unseen_phrasing``)."""
    if split not in SPLITS + SUITES:
        raise TaskError(f"unknown split {split!r}; expected one of {SPLITS + SUITES}")
    return load_tasks(TASK_DIR / f"{split}.jsonl")


# -- scenes and success -----------------------------------------------------------------
def scene_for(task: Task, config: RandomizationConfig | None = None) -> SceneSpec:
    """The scene of ``task``: deterministic in (seed, goal); goal object is obj0, target obj1."""
    g = task.goal
    required = [(g.object.color, g.object.shape), (g.target.color, g.target.shape)]
    rng = np.random.default_rng([task.seed, zlib.crc32(json.dumps(g.to_dict(), sort_keys=True).encode())])
    return sample_scene(required, rng, config, push_pair=(0, 1) if g.type == "push_to" else None)


def success(world: SimWorld, goal: Goal) -> tuple[bool, str]:
    """Whether the goal holds in the world's current state, and a short why."""
    sc = world.scene
    obj = sc.find(goal.object.color, goal.object.shape)
    tgt = sc.find(goal.target.color, goal.target.shape)
    p, q = world.body_pos(obj.name), world.body_pos(tgt.name)
    if world.touching(obj.name):
        return False, f"{obj.phrase} is still held by the gripper"
    c, s = math.cos(-tgt.yaw), math.sin(-tgt.yaw)
    dx, dy = p[0] - q[0], p[1] - q[1]
    lx, ly = c * dx - s * dy, s * dx + c * dy  # object in the target's frame
    if goal.type == "place_in":
        if tgt.kind == "bowl":
            inside = math.hypot(lx, ly) < tgt.size[0]
        else:
            inside = abs(lx) < tgt.size[0] and abs(ly) < tgt.size[1]
        low = p[2] < tgt.height + 0.5 * obj.height
        return bool(inside and low), (f"{obj.phrase} at {np.round(p, 3).tolist()}, "
                                      f"{tgt.phrase} at {np.round(q, 3).tolist()}")
    if goal.type == "stack":
        dz = p[2] - q[2]
        want = 0.5 * (obj.height + tgt.height)
        on = abs(dz - want) < 0.012 and math.hypot(dx, dy) < 0.025 and abs(q[2] - 0.5 * tgt.height) < 0.006
        return bool(on), (f"{obj.phrase} {dz * 1000:.0f} mm above {tgt.phrase} (want {want * 1000:.0f}), "
                          f"offset {math.hypot(dx, dy) * 1000:.0f} mm")
    inside = abs(lx) < tgt.size[0] and abs(ly) < tgt.size[0]
    return bool(inside), (f"{obj.phrase} offset ({lx * 1000:.0f}, {ly * 1000:.0f}) mm from the {tgt.phrase} centre "
                          f"(half size {tgt.size[0] * 1000:.0f} mm)")


# -- generating the shipped splits ------------------------------------------------------
def is_heldout_combo(gtype: str, obj: Entity, tgt: Entity) -> bool:
    """Object–colour–target combinations reserved for ``heldout`` (a fixed ~20% of them)."""
    return zlib.crc32(f"{gtype}|{obj.phrase}|{tgt.phrase}".encode()) % 5 == 0


def generate_split(split: str, n: int | None = None) -> list[Task]:
    """Deterministic task list for ``split`` (what ``ivl_embodied/sim/assets/tasks/<split>.jsonl`` holds)."""
    if split not in SPLITS:
        raise TaskError(f"unknown split {split!r}; expected one of {SPLITS}")
    n = SPLIT_SIZES[split] if n is None else n
    rng = np.random.default_rng(zlib.crc32(split.encode()))
    colors = sorted(COLORS)
    tasks = []
    while len(tasks) < n:
        gtype = GOAL_TYPES[len(tasks) % len(GOAL_TYPES)]
        obj = Entity(colors[rng.integers(len(colors))], OBJECT_SHAPES[gtype][rng.integers(len(OBJECT_SHAPES[gtype]))])
        tgt = Entity(colors[rng.integers(len(colors))], TARGET_SHAPES[gtype][rng.integers(len(TARGET_SHAPES[gtype]))])
        if obj == tgt or is_heldout_combo(gtype, obj, tgt) != (split == "heldout"):
            continue
        seen, unseen = TEMPLATES[gtype]
        pool = unseen if split == "heldout" else seen
        text = pool[rng.integers(len(pool))].format(obj=obj.phrase, tgt=tgt.phrase)
        tasks.append(Task(SPLIT_SEED_BASE[split] + len(tasks), text, Goal(gtype, obj, tgt)))
    return tasks


def unseen_phrasing_suite(n: int = 240, seed: int = 7):
    """``n`` tasks (all three goal types, every colour/kind pair the goals allow) phrased only with
    held-out frames and words, on scenes of a seed range no split uses (300 000 + i)."""
    from ivl_embodied.sim.tasks import GOAL_TYPES, OBJECT_SHAPES, TARGET_SHAPES, Entity, Goal, Task

    rng = np.random.default_rng(seed)
    tasks = []
    while len(tasks) < n:
        goal = GOAL_TYPES[len(tasks) % len(GOAL_TYPES)]
        obj = (COLOR_NAMES[rng.integers(len(COLOR_NAMES))], OBJECT_SHAPES[goal][rng.integers(len(OBJECT_SHAPES[goal]))])
        tgt = (COLOR_NAMES[rng.integers(len(COLOR_NAMES))], TARGET_SHAPES[goal][rng.integers(len(TARGET_SHAPES[goal]))])
        if obj == tgt:
            continue
        text = paraphrase(goal, obj, tgt, rng, held_out=True)
        tasks.append(Task(300_000 + len(tasks), text, Goal(goal, Entity(*obj), Entity(*tgt))))
    return tasks


def write_splits(directory=TASK_DIR) -> None:
    """Regenerate ``ivl_embodied/sim/assets/tasks/*.jsonl`` (the splits and the unseen-phrasing suite):
    ``python3 -m ivl_embodied.sim.tasks``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        (directory / f"{split}.jsonl").write_text("".join(t.to_json() + "\n" for t in generate_split(split)))
    (directory / "unseen_phrasing.jsonl").write_text("".join(t.to_json() + "\n" for t in unseen_phrasing_suite()))


if __name__ == "__main__":
    write_splits()
