"""Training-time helpers that make the small planner generalise: instruction paraphrases and
dense grounding targets for its visual tokens.

**Paraphrases** (:func:`paraphrase`). The train split has 5-7 phrasings per goal type; the held-out
split uses phrasings never seen in training. A from-scratch model keys on whole templates unless it
is shown that what decides the plan is *which* objects are named, in which order: the first
colour-shape phrase is the object, the second the target, and the target's kind sets the action
(bowl/tray: pick + place; cube/cylinder: stack, i.e. pick + place; zone: push). So a fraction of
instructions is rewritten with another train template of the same goal type, or with a random
frame of neutral words around the two phrases. The word lists deliberately share no word with the
held-out templates (``tests/rl/test_augment.py`` checks it), so held-out phrasings stay unseen.

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

import numpy as np

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


def _phrase(entity: dict) -> str:
    return f"{entity['color']} {entity['shape']}"


def paraphrase(goal: dict, instruction: str, rng: np.random.Generator, prob: float) -> str:
    """``instruction`` unchanged with probability ``1 - prob``; otherwise a train-template or a
    random-frame rewording of ``goal`` (a task goal dict) naming the same object, then target."""
    from ivl_embodied.sim.tasks import TEMPLATES

    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"paraphrase probability must be in 0..1, got {prob!r}")
    if rng.random() >= prob:
        return instruction
    obj, tgt = _phrase(goal["object"]), _phrase(goal["target"])
    if rng.random() < 0.5:
        template = str(rng.choice(TEMPLATES[goal["type"]][0]))
        return template.format(obj=obj, tgt=tgt)
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
