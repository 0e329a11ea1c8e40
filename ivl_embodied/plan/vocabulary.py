"""What the stack can talk about: colours, kinds of thing, and the words people use for them.

A plan names things by their **canonical phrase**, ``"<colour> <kind>"`` (``"red cube"``); no other
text may stand where a plan names an object (the decoder is held to :func:`canonical_phrases`).
Operators use other words: :data:`COLOR_WORDS` and :data:`KIND_WORDS` map each canonical name to
the words that mean it (the canonical name first). The same tables drive the instruction
reader (refusals say what the stack understands), the training paraphrases and the decoder.

``HELD_OUT_*`` words are understood but never used in training instructions, so an evaluation
suite phrased with them measures words the planner has not been trained on.
"""

from __future__ import annotations

COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
GRASPABLE = ("cube", "cylinder", "sphere")
CONTAINERS = ("bowl", "tray")
ZONES = ("zone",)
KINDS = GRASPABLE + CONTAINERS + ZONES

COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "ruby", "cherry"),
    "green": ("green", "emerald", "lime", "jade"),
    "blue": ("blue", "azure", "cobalt", "navy", "sapphire"),
    "yellow": ("yellow", "golden", "gold", "lemon", "mustard"),
    "purple": ("purple", "violet", "lilac", "lavender", "plum"),
    "orange": ("orange", "tangerine", "amber", "apricot"),
}
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "cube": ("cube", "block", "brick", "dice", "cuboid"),
    "cylinder": ("cylinder", "can", "tube", "pillar", "puck"),
    "sphere": ("sphere", "ball", "orb", "marble", "globe"),
    "bowl": ("bowl", "basin", "dish", "pot"),
    "tray": ("tray", "platter", "box lid", "tub"),
    "zone": ("zone", "area", "region", "patch", "spot", "square", "mat"),
}
HELD_OUT_COLOR_WORDS = ("scarlet", "cobalt", "jade", "lilac", "apricot", "lemon")
HELD_OUT_KIND_WORDS = ("brick", "puck", "orb", "basin", "platter", "patch")

# Which kinds may fill which role of which goal (a plan that breaks these cannot be executed).
GOAL_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # goal -> (object kinds, target kinds)
    "place_in": (GRASPABLE, CONTAINERS),
    "stack": (("cube", "cylinder"), ("cube", "cylinder")),
    "push_to": (("cube", "cylinder"), ZONES),
}


def phrase(color: str, kind: str) -> str:
    """The canonical phrase of a colour and a kind; ``ValueError`` for names outside the vocabulary."""
    if color not in COLORS:
        raise ValueError(f"colour {color!r} is not one of {COLORS}")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    return f"{color} {kind}"


def canonical_phrases(kinds: tuple[str, ...] = KINDS) -> tuple[str, ...]:
    """Every canonical phrase of the given kinds, in a fixed order."""
    return tuple(phrase(c, k) for k in kinds for c in COLORS)


def split_phrase(text: str) -> tuple[str, str]:
    """``"red cube"`` -> ``("red", "cube")``; ``ValueError`` naming the text when it is not canonical."""
    parts = text.split(" ")
    if len(parts) != 2 or parts[0] not in COLORS or parts[1] not in KINDS:
        raise ValueError(f"{text!r} is not a canonical phrase (a colour of {COLORS} and a kind of {KINDS})")
    return parts[0], parts[1]


def goal_for_target(kind: str) -> str:
    """The goal type a target kind implies: container -> place_in, zone -> push_to, cube/cylinder -> stack."""
    for goal, (_, targets) in GOAL_KINDS.items():
        if kind in targets:
            return goal
    raise ValueError(f"nothing can be put on, in or pushed into a {kind}")


def describe() -> str:
    """One line an operator can act on: what the stack understands."""
    return (f"I understand pick/place/push tasks with objects named by colour ({', '.join(COLORS)}) and kind "
            f"({', '.join(KINDS)}), e.g. 'put the red cube in the green bowl'")
