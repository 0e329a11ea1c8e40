"""The action-plan schema: the one text form the planner emits and everyone parses.

A plan is a compact JSON array of steps. Each step is an object whose keys come in
this fixed order (the canonical form the model is trained on and decodes into):

    [{"action":"pick","object":"red cube","box":[412,530,470,596]},
     {"action":"place","object":"red cube","target":"green bowl","target_box":[600,480,720,590]}]

* ``action``     -- one of :data:`ACTIONS`.
* ``object``     -- phrase naming the object acted on (non-empty).
* ``box``        -- box of ``object`` in InternVL's grounding frame: ``[x1, y1, x2, y2]``,
                    integers 0..1000 of the source image width/height, ``x1 <= x2``, ``y1 <= y2``.
* ``target``     -- phrase naming where the object goes (container, object to stack on,
                    region to push into).
* ``target_box`` -- box of ``target`` in the same frame.

Which keys a step must have depends on its action (:data:`REQUIRED_KEYS`); no other
keys are allowed. :func:`parse_plan` is strict: any deviation raises
:class:`PlanParseError` naming the offending token and its character offset.
:func:`format_plan` writes the canonical text, and ``parse_plan(format_plan(p)) == p``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

GROUNDING_MAX = 1000
"""Grounding boxes are normalised to 0..GROUNDING_MAX (InternVL's convention)."""

ACTIONS = ("pick", "place", "push")
"""Actions a plan may contain; the executor's safety gate holds its own whitelist."""

KEY_ORDER = ("action", "object", "box", "target", "target_box")
"""Canonical key order of a step in plan text."""

REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    # pick the object up; its box says where it is.
    "pick": ("action", "object", "box"),
    # put the held object on/into the target; the target's box says where.
    "place": ("action", "object", "target", "target_box"),
    # push the object (box) into the target region (target_box).
    "push": ("action", "object", "box", "target", "target_box"),
}

OPTIONAL_KEYS: dict[str, tuple[str, ...]] = {
    "pick": (),
    "place": ("box",),
    "push": (),
}

MAX_STEPS = 16
MAX_PHRASE_CHARS = 64


class PlanParseError(ValueError):
    """Plan text that does not follow the schema.

    ``token`` is the offending piece of text and ``offset`` its character offset in
    the plan text (``-1`` when the error is not tied to one place).
    """

    def __init__(self, message: str, token: str = "", offset: int = -1):
        where = f" at offset {offset}" if offset >= 0 else ""
        shown = f" (offending token {token!r}{where})" if token else where
        super().__init__(message + shown)
        self.token = token
        self.offset = offset


Box = tuple[int, int, int, int]


def validate_box(box: Any, what: str = "box") -> Box:
    """Return ``box`` as a 4-tuple of ints in the 0..1000 frame or raise ``ValueError``."""
    if isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 4:
        raise ValueError(f"{what} must be 4 integers [x1, y1, x2, y2], got {box!r}")
    out = []
    for v in box:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and (
            not math.isfinite(v) or v != int(v)
        ):
            raise ValueError(f"{what} values must be integers, got {v!r} in {box!r}")
        v = int(v)
        if not 0 <= v <= GROUNDING_MAX:
            raise ValueError(f"{what} value {v} outside 0..{GROUNDING_MAX} in {list(box)!r}")
        out.append(v)
    x1, y1, x2, y2 = out
    if x1 > x2 or y1 > y2:
        raise ValueError(f"{what} {out!r} has x1 > x2 or y1 > y2")
    return (x1, y1, x2, y2)


def _validate_phrase(phrase: Any, what: str) -> str:
    if not isinstance(phrase, str) or not phrase.strip():
        raise ValueError(f"{what} must be a non-empty string, got {phrase!r}")
    if len(phrase) > MAX_PHRASE_CHARS:
        raise ValueError(f"{what} longer than {MAX_PHRASE_CHARS} characters: {phrase!r}")
    return phrase


@dataclass(frozen=True)
class Step:
    """One plan step; see the module docstring for the meaning of each field."""

    action: str
    object: str
    box: Box | None = None
    target: str | None = None
    target_box: Box | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTIONS}")
        _validate_phrase(self.object, "object")
        if self.box is not None:
            object.__setattr__(self, "box", validate_box(self.box, "box"))
        if self.target is not None:
            _validate_phrase(self.target, "target")
        if self.target_box is not None:
            object.__setattr__(self, "target_box", validate_box(self.target_box, "target_box"))
        present = {k for k in KEY_ORDER if getattr(self, k) is not None}
        missing = [k for k in REQUIRED_KEYS[self.action] if k not in present]
        if missing:
            raise ValueError(f"{self.action!r} step is missing {missing}")
        allowed = set(REQUIRED_KEYS[self.action]) | set(OPTIONAL_KEYS[self.action])
        extra = sorted(present - allowed)
        if extra:
            raise ValueError(f"{self.action!r} step must not have {extra}")

    def to_dict(self) -> dict[str, Any]:
        """The step as an ordered dict in canonical key order (absent keys left out)."""
        d: dict[str, Any] = {}
        for k in KEY_ORDER:
            v = getattr(self, k)
            if v is not None:
                d[k] = list(v) if isinstance(v, tuple) else v
        return d


@dataclass(frozen=True)
class Plan:
    """An ordered list of steps."""

    steps: tuple[Step, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps:
            raise ValueError("a plan needs at least one step")
        if len(self.steps) > MAX_STEPS:
            raise ValueError(f"a plan has at most {MAX_STEPS} steps, got {len(self.steps)}")
        for s in self.steps:
            if not isinstance(s, Step):
                raise TypeError(f"plan steps must be Step, got {type(s).__name__}")


def mirror_box(box: Box, box_max: int = GROUNDING_MAX) -> Box:
    """``box`` in the left-right mirrored image: ``[x1, y1, x2, y2]`` -> ``[max - x2, y1, max - x1, y2]``."""
    x1, y1, x2, y2 = validate_box(box)
    return (box_max - x2, y1, box_max - x1, y2)


def mirror_plan(plan: Plan) -> Plan:
    """``plan`` with every box mirrored (:func:`mirror_box`): a plan made on the mirrored image, in the
    original image's frame (and back)."""
    return Plan(tuple(replace(s, box=None if s.box is None else mirror_box(s.box),
                              target_box=None if s.target_box is None else mirror_box(s.target_box))
                      for s in plan.steps))


def format_plan(plan: Plan) -> str:
    """Canonical compact text of ``plan`` (no spaces after separators, fixed key order)."""
    return json.dumps(
        [s.to_dict() for s in plan.steps], separators=(",", ":"), ensure_ascii=False
    )


# -- strict parser -------------------------------------------------------------------
# A tiny recursive-descent parser over exactly the JSON subset the schema allows, so
# that an error can name the offending token and where it is, and so that key order,
# duplicate keys and non-integer numbers are caught instead of silently accepted.


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    # lexical helpers
    def _ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def _token_here(self) -> str:
        if self.i >= len(self.s):
            return "<end of text>"
        j = self.i + 1
        if self.s[self.i].isalnum() or self.s[self.i] in "-_":
            while j < len(self.s) and (self.s[j].isalnum() or self.s[j] in "_."):
                j += 1
        return self.s[self.i : j]

    def _fail(self, message: str) -> PlanParseError:
        return PlanParseError(message, self._token_here(), self.i)

    def _expect(self, ch: str) -> None:
        self._ws()
        if self.i >= len(self.s) or self.s[self.i] != ch:
            raise self._fail(f"expected {ch!r}")
        self.i += 1

    def _peek(self) -> str:
        self._ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def _string(self) -> tuple[str, int]:
        self._ws()
        start = self.i
        if self._peek() != '"':
            raise self._fail("expected a string")
        try:
            value, end = json.decoder.scanstring(self.s, self.i + 1)
        except json.JSONDecodeError as e:
            raise PlanParseError(f"bad string: {e.msg}", self.s[start : start + 16], start) from None
        self.i = end
        return value, start

    def _int(self) -> tuple[int, int]:
        self._ws()
        start = self.i
        j = self.i
        if j < len(self.s) and self.s[j] == "-":
            j += 1
        while j < len(self.s) and self.s[j].isdigit():
            j += 1
        if j < len(self.s) and self.s[j] in ".eE":
            while j < len(self.s) and (self.s[j].isalnum() or self.s[j] in ".+-"):
                j += 1
            raise PlanParseError("box values must be integers", self.s[start:j], start)
        digits = self.s[start:j]
        if digits in ("", "-"):
            raise self._fail("expected an integer")
        self.i = j
        return int(digits), start

    # grammar
    def plan(self) -> Plan:
        self._expect("[")
        steps: list[Step] = []
        if self._peek() == "]":
            raise self._fail("a plan needs at least one step")
        while True:
            steps.append(self.step())
            if self._peek() == ",":
                self.i += 1
                continue
            self._expect("]")
            break
        self._ws()
        if self.i != len(self.s):
            raise self._fail("unexpected text after the plan")
        if len(steps) > MAX_STEPS:
            raise PlanParseError(f"a plan has at most {MAX_STEPS} steps, got {len(steps)}")
        return Plan(tuple(steps))

    def step(self) -> Step:
        self._ws()
        step_start = self.i
        self._expect("{")
        values: dict[str, Any] = {}
        last_rank = -1
        while True:
            key, kpos = self._string()
            if key not in KEY_ORDER:
                raise PlanParseError(f"unknown key; expected one of {KEY_ORDER}", key, kpos)
            if key in values:
                raise PlanParseError("duplicate key", key, kpos)
            rank = KEY_ORDER.index(key)
            if rank < last_rank:
                raise PlanParseError(f"key out of order; keys go in the order {KEY_ORDER}", key, kpos)
            last_rank = rank
            self._expect(":")
            if key in ("box", "target_box"):
                values[key] = self.box(key)
            else:
                val, vpos = self._string()
                if key == "action" and val not in ACTIONS:
                    raise PlanParseError(f"unknown action; expected one of {ACTIONS}", val, vpos)
                if key != "action":
                    try:
                        _validate_phrase(val, key)
                    except ValueError as e:
                        raise PlanParseError(str(e), val, vpos) from None
                values[key] = val
            if self._peek() == ",":
                self.i += 1
                continue
            self._expect("}")
            break
        if "action" not in values:
            raise PlanParseError("step has no 'action'", self.s[step_start : step_start + 24], step_start)
        try:
            return Step(**values)
        except ValueError as e:
            raise PlanParseError(str(e), self.s[step_start : self.i], step_start) from None

    def box(self, what: str) -> Box:
        self._expect("[")
        vals = []
        for n in range(4):
            v, vpos = self._int()
            if not 0 <= v <= GROUNDING_MAX:
                raise PlanParseError(f"{what} value outside 0..{GROUNDING_MAX}", str(v), vpos)
            vals.append(v)
            if n < 3:
                self._expect(",")
        self._expect("]")
        x1, y1, x2, y2 = vals
        if x1 > x2 or y1 > y2:
            raise PlanParseError(f"{what} has x1 > x2 or y1 > y2", str(vals), self.i)
        return (x1, y1, x2, y2)


def parse_plan(text: str) -> Plan:
    """Parse plan text strictly; raise :class:`PlanParseError` naming the bad token."""
    if not isinstance(text, str):
        raise PlanParseError(f"plan text must be str, got {type(text).__name__}")
    return _Parser(text).plan()


def plan_json_schema() -> dict[str, Any]:
    """JSON Schema of plan text, for grammar-constrained decoders.

    Key order is not expressible in JSON Schema; decoders that follow ``properties``
    order (as most do) produce the canonical order.
    """
    box = {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": GROUNDING_MAX},
        "minItems": 4,
        "maxItems": 4,
    }
    phrase = {"type": "string", "minLength": 1, "maxLength": MAX_PHRASE_CHARS}
    variants = []
    for action in ACTIONS:
        keys = [k for k in KEY_ORDER if k in REQUIRED_KEYS[action] or k in OPTIONAL_KEYS[action]]
        props: dict[str, Any] = {}
        for k in keys:
            if k == "action":
                props[k] = {"const": action}
            elif k in ("box", "target_box"):
                props[k] = box
            else:
                props[k] = phrase
        variants.append(
            {
                "type": "object",
                "properties": props,
                "required": list(REQUIRED_KEYS[action]),
                "additionalProperties": False,
            }
        )
    return {
        "type": "array",
        "items": {"anyOf": variants},
        "minItems": 1,
        "maxItems": MAX_STEPS,
    }
