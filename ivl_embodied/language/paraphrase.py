"""Instructions as people type them: sentence frames, synonyms, politeness, casing and light typos.

:func:`paraphrase` writes one task (goal type, object, target) the way an operator might: an
imperative, a question, a statement of what they want, or shorthand; the words for colours and
kinds drawn from the vocabulary's synonyms (:mod:`ivl_embodied.plan.vocabulary`); filler and
politeness around it; random casing and punctuation; sometimes one typo.

``held_out=False`` (training) never uses the held-out frames or words; ``held_out=True`` uses only
them for the frame and for at least one of the two things named, so a suite written with it
(:func:`ivl_embodied.sim.tasks.unseen_phrasing_suite`) measures phrasings the planner was not trained on.
"""

from __future__ import annotations

import numpy as np

from ivl_embodied.plan.vocabulary import COLOR_WORDS, HELD_OUT_COLOR_WORDS, HELD_OUT_KIND_WORDS, KIND_WORDS

FRAMES: dict[str, dict[str, tuple[str, ...]]] = {  # goal -> {"train": ..., "held_out": ...}; {o}/{t} = phrases
    "place_in": {
        "train": ("put the {o} in the {t}", "place the {o} into the {t}", "move the {o} to the {t}",
                  "can you put the {o} inside the {t}", "the {o} goes in the {t}", "drop the {o} into the {t}",
                  "the {o} has to go in the {t}", "{o} -> {t}", "{o} into {t}"),
        "held_out": ("could you tuck the {o} away in the {t}", "stash the {o} inside the {t}",
                     "the {t} needs the {o} in it", "would you mind dropping the {o} into the {t}",
                     "{o} in the {t}, please", "load the {o} into the {t}"),
    },
    "stack": {
        "train": ("stack the {o} on the {t}", "put the {o} on top of the {t}", "place the {o} onto the {t}",
                  "set the {o} on the {t}", "can you stack the {o} on the {t}", "{o} on {t}",
                  "the {o} goes on top of the {t}"),
        "held_out": ("balance the {o} on top of the {t}", "could you pile the {o} onto the {t}",
                     "the {o} belongs on top of the {t}", "make a stack: the {o} over the {t}",
                     "{o} atop the {t}, please"),
    },
    "push_to": {
        "train": ("push the {o} into the {t}", "slide the {o} to the {t}", "nudge the {o} into the {t}",
                  "can you push the {o} over to the {t}", "shove the {o} onto the {t}",
                  "push {o} to {t}", "slide the {o} into the {t}, don't pick it up"),
        "held_out": ("drag the {o} along the table into the {t} without lifting it",
                     "could you scoot the {o} over to the {t}", "roll the {o} into the {t}",
                     "the {o} should end up in the {t}, pushed not lifted",
                     "push the {o} to the {t} but don't pick it up"),
    },
}
PREFIXES = {"train": ("", "", "please ", "hey robot, ", "ok, ", "now ", "next, "),
            "held_out": ("", "", "hi there, ", "alright, ", "whenever you're ready, ", "robot: ")}
SUFFIXES = {"train": ("", "", ".", "!", " please", " thanks"),
            "held_out": ("", "", "?", " please.", " thank you!", " asap", " when you can")}


def _word(table: dict[str, tuple[str, ...]], name: str, held_out_words: tuple[str, ...], held_out: bool | None,
          rng: np.random.Generator) -> str:
    words = table[name]
    if held_out is True:
        pool = [w for w in words if w in held_out_words] or list(words[1:] or words)
    elif held_out is False:
        pool = [w for w in words if w not in held_out_words]
    else:
        pool = list(words)
    return pool[rng.integers(len(pool))]


def _typo(text: str, rng: np.random.Generator) -> str:
    """Swap two neighbouring letters inside one word of >= 5 letters (if there is one)."""
    words = text.split(" ")
    long_ = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long_:
        return text
    i = long_[rng.integers(len(long_))]
    w = words[i]
    j = int(rng.integers(1, len(w) - 2))
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def paraphrase(goal: str, obj: tuple[str, str], target: tuple[str, str], rng: np.random.Generator,
               held_out: bool = False, typo_prob: float = 0.15) -> str:
    """One way to ask for ``goal`` with ``obj`` / ``target`` as (colour, kind) pairs."""
    split = "held_out" if held_out else "train"
    # held out: the frame, and the words of at least one of the two things
    fresh = rng.integers(3) if held_out else -1  # 0: object words, 1: target words, 2: both

    def name(thing: tuple[str, str], which: int) -> str:
        use = held_out and fresh in (which, 2)
        c = _word(COLOR_WORDS, thing[0], HELD_OUT_COLOR_WORDS, True if use else (None if held_out else False), rng)
        k = _word(KIND_WORDS, thing[1], HELD_OUT_KIND_WORDS, True if use else (None if held_out else False), rng)
        return f"{c} {k}"

    frames = FRAMES[goal][split]
    text = frames[rng.integers(len(frames))].format(o=name(obj, 0), t=name(target, 1))
    prefix, suffix = PREFIXES[split], SUFFIXES[split]
    text = prefix[rng.integers(len(prefix))] + text + suffix[rng.integers(len(suffix))]
    if rng.random() < typo_prob:
        text = _typo(text, rng)
    casing = rng.integers(4)
    if casing == 1:
        text = text[0].upper() + text[1:]
    elif casing == 2:
        text = text.upper() if rng.random() < 0.3 else text.capitalize()
    return text
