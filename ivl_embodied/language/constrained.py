"""Token-level constrained decoding into canonical plan text.

:class:`PlanAutomaton` is a character-level acceptor of *prefixes* of canonical plan text,
built from :mod:`ivl_embodied.plan.schema`'s constants: fixed key order per action,
optional keys, object and target phrases from the vocabulary only (canonical ``"<colour> <kind>"``
phrases of the kinds each role allows: :class:`PlanRestriction`; no digit, bracket or free text can
stand there), box integers 0..1000 without leading zeros and with ``x1 <= x2``, ``y1 <= y2``, at
most ``MAX_STEPS`` steps. Every accepted complete text parses with
:func:`~ivl_embodied.plan.schema.parse_plan`. :meth:`PlanRestriction.for_task` narrows the actions
and phrases to one understood task, so the planner decides only where things are.

:class:`TokenConstraint` turns it into a decoder: at each step the tokens are visited in
descending score order (the logits for greedy; logits/T + Gumbel noise for sampling,
which is an exact sample from the masked softmax) and the first token whose text keeps
the prefix valid *and* leaves a completion that fits the remaining token budget is taken.
The budget check counts one token per character, so it needs single-character tokens for
the plan alphabet (checked on construction); generation ends when the plan is complete.

Why not xgrammar: an EBNF grammar cannot state ``x1 <= x2`` without enumerating number
pairs, so grammar-masked output could still fail ``parse_plan``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from ivl_embodied.plan.schema import (
    ACTIONS,
    GROUNDING_MAX,
    KEY_ORDER,
    MAX_PHRASE_CHARS,
    MAX_STEPS,
    OPTIONAL_KEYS,
    REQUIRED_KEYS,
)
from ivl_embodied.plan.vocabulary import CONTAINERS, GRASPABLE, ZONES, canonical_phrases

ALPHABET = tuple(chr(c) for c in range(0x20, 0x7F))
PHRASE_CHARS = frozenset(ALPHABET) - {'"', "\\"}
_BOX_KEYS = ("box", "target_box")
_KEYS = {a: tuple(k for k in KEY_ORDER if k in REQUIRED_KEYS[a] or k in OPTIONAL_KEYS[a]) for a in ACTIONS}



def _default_phrases() -> dict[tuple[str, str], tuple[str, ...]]:
    movable, graspable = canonical_phrases(("cube", "cylinder")), canonical_phrases(GRASPABLE)
    return {("pick", "object"): graspable, ("place", "object"): graspable,
            ("place", "target"): canonical_phrases(CONTAINERS) + movable,
            ("push", "object"): movable, ("push", "target"): canonical_phrases(ZONES)}


@dataclass(frozen=True)
class PlanRestriction:
    """Which actions a plan may use and which phrases may fill each (action, key)."""

    actions: tuple[str, ...] = ACTIONS
    phrases: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=_default_phrases)

    def __post_init__(self) -> None:
        bad = [a for a in self.actions if a not in ACTIONS]
        if bad or not self.actions:
            raise ValueError(f"actions must be a non-empty subset of {ACTIONS}, got {self.actions!r}")
        for a in self.actions:
            for key in ("object", "target"):
                if key in _KEYS[a] and not self.phrases.get((a, key)):
                    raise ValueError(f"no phrase allowed for {a}.{key}")
        for (a, key), options in self.phrases.items():
            for text in options:
                if not text or len(text) > MAX_PHRASE_CHARS or not set(text) <= PHRASE_CHARS or text[0] == " ":
                    raise ValueError(f"{a}.{key} phrase {text!r} cannot appear in plan text")
        object.__setattr__(self, "phrases", MappingProxyType({k: tuple(v) for k, v in self.phrases.items()}))

    @classmethod
    def for_task(cls, goal: str, obj: str, target: str) -> PlanRestriction:
        """Only the actions of ``goal`` (pick + place, or push) and only these two phrases."""
        if goal == "push_to":
            return cls(("push",), {("push", "object"): (obj,), ("push", "target"): (target,)})
        if goal in ("place_in", "stack"):
            return cls(("pick", "place"), {("pick", "object"): (obj,), ("place", "object"): (obj,),
                                           ("place", "target"): (target,)})
        raise ValueError(f"unknown goal {goal!r}")


# A state is a tuple: (mode, n_steps, action, key_index, payload...)
#   ("lit", n, action, j, pos, alts)   alts: tuple of (literal, target)
#   ("phrase", n, action, j, text)
#   ("num", n, action, j, values, digits)
#   ("done",)
State = tuple


def _number_feasible(digits: str, lo: int) -> bool:
    """Does some integer in [lo, 1000] without leading zeros start with ``digits``?"""
    if len(digits) > 1 and digits[0] == "0":
        return False
    for length in range(len(digits), len(str(GROUNDING_MAX)) + 1):
        if digits == "0" and length > 1:
            break
        pad = length - len(digits)
        low, high = int(digits + "0" * pad), int(digits + "9" * pad)
        if max(low, lo) <= min(high, GROUNDING_MAX):
            return True
    return False


def _extra_digits(digits: str, lo: int) -> int:
    """Fewest digits to append to a feasible ``digits`` to reach a value >= lo."""
    for pad in range(0, 5):
        if int(digits + "9" * pad) >= lo:
            return pad
    raise AssertionError(f"infeasible number prefix {digits!r} >= {lo}")


class PlanAutomaton:
    """Character-level acceptor of canonical plan-text prefixes (see module docstring)."""

    def __init__(self, restriction: PlanRestriction | None = None):
        self.restriction = restriction or PlanRestriction()

    def _phrases(self, action: str, j: int) -> tuple[str, ...]:
        return self.restriction.phrases.get((action, _KEYS[action][j]), ())

    def start(self) -> State:
        return ("lit", 0, None, 0, 0, (('[{"action":"', ("action",)),))

    @staticmethod
    def is_done(state: State) -> bool:
        return state[0] == "done"

    # -- transitions -------------------------------------------------------------------
    def _options_after_key(self, action: str, j: int) -> tuple:
        keys = _KEYS[action]
        opts = []
        for jj in range(j + 1, len(keys)):
            k = keys[jj]
            opts.append((f',"{k}":' + ("[" if k in _BOX_KEYS else '"'), ("value", jj)))
            if k in REQUIRED_KEYS[action]:
                break
        else:
            opts.append(("}", ("step_end",)))
        return tuple(opts)

    def _enter(self, target: tuple, n: int, action: str | None, j: int) -> State:
        kind = target[0]
        if kind == "action":
            return ("lit", n, None, 0, 0, tuple((a + '"', ("after", a)) for a in self.restriction.actions))
        if kind == "after":
            return ("lit", n, target[1], 0, 0, self._options_after_key(target[1], 0))
        if kind == "value":
            jj = target[1]
            if _KEYS[action][jj] in _BOX_KEYS:
                return ("num", n, action, jj, (), "")
            return ("phrase", n, action, jj, "")
        if kind == "step_end":
            opts = [("]", ("done",))]
            if n + 1 < MAX_STEPS:
                opts.append((',{"action":"', ("action",)))
            return ("lit", n + 1, None, 0, 0, tuple(opts))
        if kind == "done":
            return ("done",)
        raise AssertionError(target)

    def _after_value(self, n: int, action: str, j: int) -> State:
        return ("lit", n, action, j, 0, self._options_after_key(action, j))

    def step(self, state: State, ch: str) -> State | None:
        """State after one more character, or None when the prefix becomes invalid."""
        mode = state[0]
        if mode == "lit":
            _, n, action, j, pos, alts = state
            alts = tuple(a for a in alts if a[0][pos] == ch)
            if not alts:
                return None
            if len(alts[0][0]) == pos + 1:  # literals are prefix-free: this one is complete
                return self._enter(alts[0][1], n, action, j)
            return ("lit", n, action, j, pos + 1, alts)
        if mode == "phrase":
            _, n, action, j, text = state
            if ch == '"':
                return self._after_value(n, action, j) if text in self._phrases(action, j) else None
            if not any(p.startswith(text + ch) for p in self._phrases(action, j)):
                return None
            return ("phrase", n, action, j, text + ch)
        if mode == "num":
            _, n, action, j, values, digits = state
            i = len(values)
            lo = values[i - 2] if i >= 2 else 0  # x2 >= x1, y2 >= y1
            if ch.isdigit() and ch.isascii():
                return ("num", n, action, j, values, digits + ch) if _number_feasible(digits + ch, lo) else None
            if not digits or not lo <= int(digits) <= GROUNDING_MAX:
                return None
            if ch == "," and i < 3:
                return ("num", n, action, j, values + (int(digits),), "")
            if ch == "]" and i == 3:
                return self._after_value(n, action, j)
            return None
        return None  # "done" accepts nothing more

    def feed(self, state: State, text: str) -> State | None:
        for ch in text:
            state = self.step(state, ch)
            if state is None:
                return None
        return state

    # -- shortest completion -----------------------------------------------------------
    def _min_target(self, target: tuple, n: int, action: str | None) -> int:
        kind = target[0]
        if kind == "action":
            return min(len(a) + 1 + self._min_after_key(a, 0) for a in self.restriction.actions)
        if kind == "after":
            return self._min_after_key(target[1], 0)
        if kind == "value":
            jj = target[1]
            body = (len("0,0,0,0]") if _KEYS[action][jj] in _BOX_KEYS
                    else min(len(p) for p in self._phrases(action, jj)) + 1)
            return body + self._min_after_key(action, jj)
        if kind == "step_end":
            return 1  # "]" is always allowed after a step
        return 0  # done

    def _min_after_key(self, action: str, j: int) -> int:
        return min(len(lit) + self._min_target(t, 0, action) for lit, t in self._options_after_key(action, j))

    def min_chars_to_finish(self, state: State) -> int:
        """Length of the shortest valid completion of ``state`` (0 when done)."""
        mode = state[0]
        if mode == "done":
            return 0
        if mode == "lit":
            _, n, action, _, pos, alts = state
            return min(len(lit) - pos + self._min_target(t, n, action) for lit, t in alts)
        if mode == "phrase":
            _, _, action, j, text = state
            rest = min(len(p) - len(text) for p in self._phrases(action, j) if p.startswith(text))
            return rest + 1 + self._min_after_key(action, j)
        _, _, action, j, values, digits = state
        vals = list(values)
        i = len(vals)
        lo = vals[i - 2] if i >= 2 else 0
        if digits:
            cost, v = _extra_digits(digits, lo), max(int(digits), lo)
        else:
            cost, v = len(str(lo)), lo
        vals.append(v)
        for k in range(i + 1, 4):  # later numbers take their lower bound
            vals.append(vals[k - 2] if k >= 2 else 0)
            cost += len(str(vals[k]))
        return cost + (4 - i) + self._min_after_key(action, j)

    def allowed_chars(self, state: State) -> list[str]:
        return [c for c in ALPHABET if self.step(state, c) is not None]


class TokenConstraint:
    """Chooses, step by step, the best-scoring token that keeps the plan completable."""

    def __init__(self, token_texts: Sequence[str | None], restriction: PlanRestriction | None = None):
        """``token_texts[i]``: decoded text of token id i, or None for tokens never allowed."""
        self.automaton = PlanAutomaton(restriction)
        self.token_texts = [t if t and all(c in PHRASE_CHARS or c in '"\\' for c in t) else None for t in token_texts]
        first = [ord(t[0]) if t else -1 for t in self.token_texts]
        self.first_codes = torch.tensor(first, dtype=torch.long)  # [V]
        singles = {t for t in self.token_texts if t is not None and len(t) == 1}
        phrases = "".join(p for options in self.automaton.restriction.phrases.values() for p in options)
        needed = set("".join(lit for a in ACTIONS for lit in (a, *_KEYS[a])) + '[]{}",:0123456789' + phrases)
        missing = sorted(needed - singles)
        if missing:
            raise ValueError(f"tokenizer lacks single-character tokens for {missing}; constrained decoding needs them")
        self.min_plan_chars = self.automaton.min_chars_to_finish(self.automaton.start())

    def start(self) -> State:
        return self.automaton.start()

    def restricted(self, restriction: PlanRestriction) -> TokenConstraint:
        """The same token tables with another :class:`PlanRestriction` (cheap: no re-tokenising)."""
        other = object.__new__(TokenConstraint)
        other.__dict__.update(self.__dict__)
        other.automaton = PlanAutomaton(restriction)
        other.min_plan_chars = other.automaton.min_chars_to_finish(other.automaton.start())
        return other

    def choose(self, scores: torch.Tensor, state: State, budget: int) -> tuple[int, State]:
        """Pick a token from ``scores`` [V]; ``budget`` = tokens left including this one."""
        allowed = torch.tensor([ord(c) for c in self.automaton.allowed_chars(state)], dtype=torch.long)
        n = min(scores.shape[-1], self.first_codes.shape[0])
        candidates = torch.isin(self.first_codes[:n], allowed).nonzero().squeeze(1)  # [K] token ids
        cand_scores = scores[:n].float()[candidates]  # [K]
        cand_scores = torch.nan_to_num(cand_scores, nan=float("-inf"))
        order = candidates[torch.argsort(cand_scores, descending=True, stable=True)]  # -inf ones come last
        for tok in order.tolist():
            new = self.automaton.feed(state, self.token_texts[tok])
            if new is not None and self.automaton.min_chars_to_finish(new) <= budget - 1:
                return tok, new
        raise RuntimeError(f"no token continues the plan within budget {budget} (state {state[:2]})")
