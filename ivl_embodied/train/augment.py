"""Training-time helpers that make the small planner generalise: instruction paraphrases, mirrored
scenes and dense grounding targets for its visual tokens.

**Paraphrases** (:func:`paraphrase`). The train split has 5-7 phrasings per goal type; the held-out
split uses phrasings never seen in training. A from-scratch model keys on whole templates unless it
is shown that what decides the plan is *which* objects are named, in which order: the first
colour-shape phrase is the object, the second the target, and the target's kind sets the action
(bowl/tray: pick + place; cube/cylinder: stack, i.e. pick + place; zone: push). So a fraction of
instructions is rewritten with another train template of the same goal type, with an operator's
phrasing (the paraphrase generator's training frames and the vocabulary's synonyms: *crimson
block*, *marble*, *dish* ...), or with a random frame of neutral words around the two phrases. The
word lists deliberately share no word with the held-out templates or with the held-out frames and
words of the unseen-phrasing suite (``tests/train/test_augment.py`` checks it), so held-out phrasings
stay unseen.

**Retargeted tasks** (:func:`retarget`). Each rendered scene comes with one task, so a model can
learn *this image → these boxes* without reading which objects the instruction names; on unseen
scenes it then boxes a plausible object of the right kind but the wrong colour. Every scene holds
several objects, so it supports other tasks too: pick any (object, target) pair the goal types
allow (never a held-out combination), phrase it with a train template or a neutral frame, and
write the oracle's plan from the recorded boxes (:func:`plan_for_goal`, which reproduces the
recorded oracle plans exactly). The image is the same; only the words and the boxes change, so
the model has to bind colour and kind words to image regions.

**Mirrored scenes** (:func:`mirror_boxes`). The tabletop, its workspace and the camera are symmetric
about the camera's vertical plane and no instruction names a side, so a scene flipped left-right
is another valid scene: flip the image and map every box ``[x1, y1, x2, y2]`` to
``[1000 - x2, y1, 1000 - x1, y2]``, in the plan and in the object records. That doubles the
distinct (scene, layout) pairs the planner sees, which matters because with a few thousand
scenes the grounding overfits: the model learns the training layouts instead of the words.

**Grounding targets** (:func:`token_targets`). With one tile per image, cell ``(r, c)`` of a
``G x G`` grid over the tile (SFT uses the ViT patch grid; each visual token holds 2x2 patches)
covers the same fraction of the 0..1000 box frame. Each object's box centre falls in one cell;
that cell's target is the object's colour, kind and box. Cells that no object
touches are background; cells an object overlaps without holding its centre (or holding two
centres) are ignored. SFT adds a linear head on the visual tokens for these targets (training only;
it is not part of the shipped planner), which teaches the ViT to say *what is where* within a few
hundred steps instead of waiting for the language model's box tokens to teach it.
"""

from __future__ import annotations

import re

import numpy as np

from ivl_embodied.plan.schema import mirror_box
from ivl_embodied.sim.world import COLORS, KINDS

COLOR_CLASSES = ("background",) + tuple(COLORS)
KIND_CLASSES = ("background",) + tuple(KINDS)
IGNORE = -100

PREFIXES = ("", "", "", "please ", "now ", "robot, ", "okay, ", "hey, ", "could you ", "go and ", "next, ",
            "quickly ", "carefully ", "then ", "your task: ")
VERBS = ("move", "bring", "get", "take", "carry", "transfer", "relocate", "shift", "send", "guide", "position",
         "get", "bring")
LINKS = ("to", "into", "onto", "on", "in", "toward", "at", "over to", "right to", "all the way to")
SUFFIXES = ("", "", "", ".", "!", "?", " please", " now", " thanks", " for me", ", thank you")


BOX_TEXT = re.compile(r'("(?:box|target_box)":\[)(\d+),(\d+),(\d+),(\d+)\]')


def mirror_boxes(plan: str, objects, box_max: int = 1000) -> tuple[str, list[dict]]:
    """The plan text and object records of the left-right mirrored image: each box's x range
    becomes ``box_max - x2 .. box_max - x1``. Everything else in the plan is kept byte for byte."""

    def flip(m: re.Match) -> str:
        try:
            x1, y1, x2, y2 = mirror_box(tuple(int(v) for v in m.groups()[1:]), box_max)
        except ValueError as e:
            raise ValueError(f"plan box {m.group(0)!r}: {e}") from None
        return f"{m.group(1)}{x1},{y1},{x2},{y2}]"

    mirrored = []
    for o in objects:
        try:
            mirrored.append({**o, "box": list(mirror_box(tuple(o["box"]), box_max))})
        except ValueError as e:
            raise ValueError(f"object {o.get('name')!r}: {e}") from None
    return BOX_TEXT.sub(flip, plan), mirrored


def plan_for_goal(goal: dict, objects) -> str:
    """The oracle's plan text for ``goal`` (a task goal dict) from the scene's object records:
    pick + place for ``place_in``/``stack``, one push for ``push_to``, with the recorded boxes."""
    from ivl_embodied.plan.schema import Plan, Step, format_plan

    boxes = {o["name"]: tuple(int(v) for v in o["box"]) for o in objects}
    obj, tgt = _phrase(goal["object"]), _phrase(goal["target"])
    for name in (obj, tgt):
        if name not in boxes:
            raise ValueError(f"goal names {name!r} but the scene has only {sorted(boxes)}")
    if goal["type"] == "push_to":
        return format_plan(Plan((Step("push", obj, boxes[obj], tgt, boxes[tgt]),)))
    return format_plan(Plan((Step("pick", obj, boxes[obj]), Step("place", obj, target=tgt, target_box=boxes[tgt]))))


def retarget(objects, rng: np.random.Generator) -> tuple[dict, str] | None:
    """Another task for the same scene: (goal dict, oracle plan text), or None if the scene allows
    none. The goal type is drawn uniformly among those the scene supports, then the pair; held-out
    (type, object, target) combinations are never drawn."""
    from ivl_embodied.sim.tasks import (
        GOAL_TYPES,
        OBJECT_SHAPES,
        TARGET_SHAPES,
        Entity,
        is_heldout_combo,
    )

    ents = [Entity(*o["name"].split(" ", 1)) for o in objects]
    by_type = {}
    for gtype in GOAL_TYPES:
        pairs = [(a, b) for a in ents if a.shape in OBJECT_SHAPES[gtype]
                 for b in ents if b != a and b.shape in TARGET_SHAPES[gtype] and not is_heldout_combo(gtype, a, b)]
        if pairs:
            by_type[gtype] = pairs
    if not by_type:
        return None
    gtype = sorted(by_type)[rng.integers(len(by_type))]
    a, b = by_type[gtype][rng.integers(len(by_type[gtype]))]
    goal = {"type": gtype, "object": {"color": a.color, "shape": a.shape}, "target": {"color": b.color,
                                                                                      "shape": b.shape}}
    return goal, plan_for_goal(goal, objects)


def _phrase(entity: dict) -> str:
    return f"{entity['color']} {entity['shape']}"


def paraphrase(goal: dict, instruction: str, rng: np.random.Generator, prob: float) -> str:
    """``instruction`` unchanged with probability ``1 - prob``; otherwise a rewording of ``goal`` (a task
    goal dict) naming the same object, then target: a train template (40%), an operator's phrasing from
    :func:`ivl_embodied.language.paraphrase.paraphrase` with its training frames and the vocabulary's
    synonyms (30%), or a random frame of neutral words (30%)."""
    from ivl_embodied.language.paraphrase import paraphrase as operator_phrasing
    from ivl_embodied.sim.tasks import TEMPLATES

    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"paraphrase probability must be in 0..1, got {prob!r}")
    if rng.random() >= prob:
        return instruction
    obj, tgt = _phrase(goal["object"]), _phrase(goal["target"])
    kind = rng.random()
    if kind < 0.4:
        template = str(rng.choice(TEMPLATES[goal["type"]][0]))
        return template.format(obj=obj, tgt=tgt)
    if kind < 0.7:
        return operator_phrasing(goal["type"], (goal["object"]["color"], goal["object"]["shape"]),
                                 (goal["target"]["color"], goal["target"]["shape"]), rng, held_out=False)
    text = (f"{rng.choice(PREFIXES)}{rng.choice(VERBS)} the {obj} {rng.choice(LINKS)} the {tgt}"
            f"{rng.choice(SUFFIXES)}")
    return text[0].upper() + text[1:] if rng.random() < 0.3 else text


def token_targets(objects, grid: int, box_max: int = 1000) -> dict[str, np.ndarray]:
    """Per-cell targets for a ``grid x grid`` token map (row-major, as the projector emits tokens).

    ``objects``: ``[{"name": "red cube", "box": [x1, y1, x2, y2]}, ...]`` in the 0..``box_max`` frame.
    Returns ``color`` and ``kind`` class indices [grid*grid] (``IGNORE`` where unlabelled) and
    ``box`` [grid*grid, 4] in 0..1 with ``has_box`` [grid*grid] marking the cells that carry one.
    """
    cells = grid * grid
    color = np.zeros(cells, np.int64)
    kind = np.zeros(cells, np.int64)
    box = np.zeros((cells, 4), np.float32)
    owners: dict[int, list[int]] = {}
    step = box_max / grid
    for i, o in enumerate(objects):
        x1, y1, x2, y2 = o["box"]
        if not (0 <= x1 <= x2 <= box_max and 0 <= y1 <= y2 <= box_max):
            raise ValueError(f"object {o.get('name')!r} has box {o['box']!r} outside 0..{box_max} or unordered")
        c1, c2 = int(min(x1 // step, grid - 1)), int(min(x2 // step, grid - 1))
        r1, r2 = int(min(y1 // step, grid - 1)), int(min(y2 // step, grid - 1))
        for r in range(r1, r2 + 1):
            color[r * grid + c1 : r * grid + c2 + 1] = IGNORE  # touched: not background
            kind[r * grid + c1 : r * grid + c2 + 1] = IGNORE
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        cell = int(min(cy // step, grid - 1)) * grid + int(min(cx // step, grid - 1))
        owners.setdefault(cell, []).append(i)
    has_box = np.zeros(cells, bool)
    for cell, idx in owners.items():
        if len(idx) != 1:
            continue  # two centres in one cell: ambiguous, leave ignored
        o = objects[idx[0]]
        col, knd = o["name"].split(" ", 1)
        color[cell], kind[cell] = COLOR_CLASSES.index(col), KIND_CLASSES.index(knd)
        box[cell] = np.asarray(o["box"], np.float32) / box_max
        has_box[cell] = True
    return {"color": color, "kind": kind, "box": box, "has_box": has_box}
