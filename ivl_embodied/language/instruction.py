"""Reading an operator's instruction: what is to be moved where, or why the stack refuses.

:func:`read_instruction` maps a person's words onto the stack's vocabulary
(:mod:`ivl_embodied.plan.vocabulary`) and returns either an :class:`Understood` task (the object
and target phrases, the goal type, and a canonical instruction the planner was trained on) or a
:class:`Refusal` whose message says what was not understood and what the stack does understand.

It reads, in order:

1. **length and language**: empty or over-long text, and text that is not English (letters
   outside ASCII, or too few English words) is refused;
2. **out of scope**: requests to change safety settings, coordinates and units, or motions that
   name no object (``"move the arm to x = 2 m"``) are refused;
3. **negation**: a clause with *not / don't / never / stop ...* does not ask for anything; when
   no clause remains that does (``"stop"``, ``"do not move anything"``) the instruction is
   refused. A negated *pick up / lift* beside a push keeps the push (``"don't pick it up"``);
4. **things named**: colour words followed (within two words) by a kind word, with synonyms and
   light typos (one edit on words of five letters or more). A kind without a colour, or a
   colour without a kind, is refused, naming the words;
5. **roles**: the thing after *in / into / on / onto / to / inside / above / over ...* is the
   target, the other one the object; two *different* things for one role (``"... use the green
   cube instead"``) are refused, naming both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ivl_embodied.plan.vocabulary import (
    COLOR_WORDS,
    GOAL_KINDS,
    KIND_WORDS,
    describe,
    goal_for_target,
    phrase,
)

MAX_INSTRUCTION_CHARS = 300

CANONICAL_TEMPLATES = {  # goal -> the first train-split template of that goal (sim/tasks.py TEMPLATES)
    "place_in": "put the {obj} in the {tgt}",
    "stack": "stack the {obj} on the {tgt}",
    "push_to": "push the {obj} into the {tgt}",
}

NEGATIONS = ("not", "don't", "dont", "do not", "never", "no", "stop", "halt", "freeze", "cancel", "abort",
             "nothing", "nowhere", "neither", "nor", "without")
TARGET_MARKERS = ("in", "into", "inside", "on", "onto", "upon", "to", "toward", "towards", "at", "above", "over",
                  "within", "atop", "top")
LIFT_WORDS = ("pick", "lift", "lifting", "picking", "raise", "grab", "grabbing")
PUSH_WORDS = ("push", "pushing", "slide", "sliding", "shove", "nudge", "drag", "dragging", "scoot", "roll")
UNSAFE_WORDS = ("safety", "limit", "limits", "override", "disable", "bypass", "ignore", "unsafe", "max speed",
                "full speed", "faster")
UNITS = re.compile(r"\d+(\.\d+)?\s*(m|cm|mm|meter|meters|metre|metres|deg|degrees|rad)\b|\b[xyz]\s*=")
FUNCTION_WORDS = frozenset("""
a an the it its it's this that these those them they one ones of and or but then so also too very just please
kindly thanks thank you could would can will you i we me my your our us let lets let's want need like should
must have has get go put place set drop move moving take bring carry pick up down lift over onto into in on to
at by for from with inside above atop top below under next near beside off out of right left all way now again
quickly carefully gently slowly make sure there here where which what is are be being been was were do does
stack stacked stacking tower build pile heap push pushing slide shove nudge drag roll shift transfer relocate
position deposit sitting sit rest resting goes go grab grabbing drive toward towards across along around
without lifting picking ok okay hey robot yes task your next first finally small big little large tiny
""".split())


@dataclass(frozen=True)
class Understood:
    goal: str  # place_in | stack | push_to
    object: str  # canonical phrase
    target: str  # canonical phrase
    instruction: str  # canonical words for the planner

    @property
    def actions(self) -> tuple[str, ...]:
        return ("push",) if self.goal == "push_to" else ("pick", "place")


@dataclass(frozen=True)
class Refusal:
    reason: str  # "bad_instruction" | "not_english" | "out_of_scope" | "negation" | "unknown_words" | "conflict"
    message: str


class InstructionRefused(ValueError):
    """Raised by planners that read instructions: ``refusal`` says why and what is understood."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message)
        self.refusal = refusal


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SYNONYMS: dict[str, tuple[str, str]] = {}  # word (or two-word phrase) -> ("color" | "kind", canonical)
for _c, _ws in COLOR_WORDS.items():
    _SYNONYMS.update({w: ("color", _c) for w in _ws})
for _k, _ws in KIND_WORDS.items():
    _SYNONYMS.update({w: ("kind", _k) for w in _ws})
for _w in list(_SYNONYMS):  # plurals: "blocks", "boxes"
    kind, canon = _SYNONYMS[_w]
    if kind == "kind" and " " not in _w:
        _SYNONYMS.setdefault(_w + "s", (kind, canon))
        _SYNONYMS.setdefault(_w + "es", (kind, canon))
_KNOWN = FUNCTION_WORDS | set(_SYNONYMS) | set(NEGATIONS) | set(LIFT_WORDS) | set(PUSH_WORDS)


def _edit1(a: str, b: str) -> bool:
    """Are ``a`` and ``b`` one insertion, deletion, substitution or swap of neighbours apart?"""
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _correct(word: str) -> str:
    """The vocabulary word one typo away from ``word`` (words of >= 4 letters), else ``word``."""
    if word in _KNOWN or len(word) < 4:
        return word
    hits = sorted({w for w in _SYNONYMS if " " not in w and len(w) >= 4 and _edit1(word, w)}, key=len)
    return hits[0] if hits and len({_SYNONYMS[h] for h in hits}) == 1 else word


def _tokens(text: str) -> list[str]:
    return [_correct(w) for w in _WORD.findall(text.lower().replace("’", "'"))]


def _mentions(words: list[str]) -> tuple[list[tuple[int, str, str]], list[str]]:
    """Things named: (word index, colour, kind) and the words that named half a thing."""
    found, loose = [], []
    i = 0
    while i < len(words):
        two = " ".join(words[i:i + 2])
        if two in _SYNONYMS and _SYNONYMS[two][0] == "kind":
            sense, span = _SYNONYMS[two], 2
        else:
            sense, span = _SYNONYMS.get(words[i]), 1
        if sense and sense[0] == "color":
            for j in range(i + 1, min(i + 4, len(words))):  # "red cube", "red little cube", "red shiny little cube"
                two = " ".join(words[j:j + 2])
                k = _SYNONYMS.get(two) if two in _SYNONYMS else _SYNONYMS.get(words[j])
                if k and k[0] == "kind":
                    found.append((i, sense[1], k[1]))
                    i = j + (2 if two in _SYNONYMS else 1)
                    break
                if k and k[0] == "color":
                    break
            else:
                if not (i + 1 < len(words) and words[i + 1] in ("one", "ones")):
                    loose.append(words[i])
                else:
                    loose.append(f"{words[i]} one")
                i += 1
            continue
        if sense and sense[0] == "kind":
            loose.append(" ".join(words[i:i + span]))
        i += span
    return found, loose


def _clauses(text: str) -> list[str]:
    # "without ..." negates what follows it only: "drag it into the zone without lifting it"
    parts = re.split(r"[,;.!?]|\b(?:but|then|and then|instead of)\b|(?=\bwithout\b)", text.lower())
    return [c for c in parts if c and c.strip()]


def _negated(clause: str) -> bool:
    words = _WORD.findall(clause.replace("’", "'"))
    joined = " ".join(words)
    return any(n in words for n in NEGATIONS if " " not in n) or "do not" in joined


def _fits(obj_kind: str, target_kind: str) -> bool:
    try:
        return obj_kind in GOAL_KINDS[goal_for_target(target_kind)][0]
    except ValueError:
        return False


def read_instruction(text: str) -> Understood | Refusal:
    """The task an instruction asks for, or why it is refused (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        return Refusal("bad_instruction", "the instruction is empty. " + describe())
    if len(text) > MAX_INSTRUCTION_CHARS:
        return Refusal("bad_instruction", f"the instruction has {len(text)} characters (at most "
                                          f"{MAX_INSTRUCTION_CHARS}). " + describe())
    if any(ch.isalpha() and not ch.isascii() for ch in text):
        return Refusal("not_english", "I only understand English instructions. " + describe())
    words = _tokens(text)
    low = " ".join(words)
    if UNITS.search(text.lower()) or any(re.search(rf"\b{re.escape(w)}\b", low) for w in UNSAFE_WORDS):
        return Refusal("out_of_scope", "I do not take coordinates, speeds or changes to the safety limits. "
                       + describe())
    if not words or sum(w in _KNOWN for w in words) < 0.5 * len(words):
        unknown = [w for w in words if w not in _KNOWN][:6]
        return Refusal("not_english", f"I do not understand the words {unknown}. " + describe())

    positive, lift_negated = [], False
    for clause in _clauses(text):
        if _negated(clause):
            cw = set(_tokens(clause))
            lift_negated |= bool(cw & set(LIFT_WORDS))
            continue
        positive.append(clause)
    if not positive:
        return Refusal("negation", "the instruction asks for nothing to be done, so nothing will move. " + describe())
    pos_words = _tokens(" ".join(positive))
    found, loose = _mentions(pos_words)
    if loose and len({(c, k) for _, c, k in found}) < 2:
        return Refusal("unknown_words", f"I could not tell which thing {loose!r} means: name each one by colour "
                                        f"and kind. " + describe())
    things = list(dict.fromkeys((c, k) for _, c, k in found))  # distinct, in order
    if len(things) < 2:
        named = [phrase(*t) for t in things]
        return Refusal("unknown_words", f"I need an object and where it goes; I found {named or 'nothing'}. "
                                        + describe())

    target_idx = [n for n, (i, _, _) in enumerate(found)
                  if any(w in TARGET_MARKERS for w in pos_words[max(0, i - 3):i])]
    roles: dict[str, set] = {"object": set(), "target": set()}
    for n, (_, c, k) in enumerate(found):
        roles["target" if n in target_idx else "object"].add((c, k))
    if not roles["target"] and len(things) == 2:  # no marker: the order that makes sense, else first -> last
        a, b = things
        fits = [(o, t) for o, t in ((a, b), (b, a)) if _fits(o[1], t[1])]
        o, t = fits[0] if fits else (a, b)
        roles = {"object": {o}, "target": {t}}
    if not roles["object"] and len(roles["target"]) == 2:  # "into the bowl, the cube" style: order decides
        roles = {"object": {things[1]}, "target": {things[0]}} if len(things) == 2 else roles
    for role, names in roles.items():
        if len(names) != 1:
            shown = sorted(phrase(*t) for t in names) or "nothing"
            return Refusal("conflict", f"the instruction names {shown} for the {role}; name one thing to move and "
                                       f"one place for it")
    (obj,), (tgt,) = roles["object"], roles["target"]
    if obj == tgt:
        return Refusal("conflict", f"the {phrase(*obj)} cannot go onto itself")
    try:
        goal = goal_for_target(tgt[1])
    except ValueError as e:
        return Refusal("out_of_scope", f"{e} ({phrase(*tgt)}). " + describe())
    if lift_negated and goal != "push_to":
        return Refusal("out_of_scope", f"a {phrase(*obj)} can only reach a {tgt[1]} by lifting it, and the "
                                       f"instruction says not to lift it")
    if obj[1] not in GOAL_KINDS[goal][0]:
        how = {"place_in": "put into", "stack": "stacked", "push_to": "pushed"}[goal]
        return Refusal("out_of_scope", f"a {obj[1]} cannot be {how} here (only {', '.join(GOAL_KINDS[goal][0])})")
    o, t = phrase(*obj), phrase(*tgt)
    return Understood(goal, o, t, CANONICAL_TEMPLATES[goal].format(obj=o, tgt=t))
