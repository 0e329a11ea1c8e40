"""Success of an unseen-phrasing run by phrasing group: the sentence frame's kind (imperative,
question, statement, shorthand) and how many of the colour and kind words were held-out words.

    python3 benchmarks/operator_language_2026-12-01/groups.py unseen_phrasing-default-attempts3.json

The suite does not record which frame wrote each instruction, so each instruction is matched to the
held-out frame of its goal type it is most similar to (difflib, after the named things are blanked);
typos and politeness do not move an instruction to another frame's kind.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections import defaultdict

from ivl_embodied.language.paraphrase import FRAMES
from ivl_embodied.plan.vocabulary import HELD_OUT_COLOR_WORDS, HELD_OUT_KIND_WORDS

KIND_OF_FRAME = {  # every held-out frame, by the kind of sentence it is
    "could you tuck the {o} away in the {t}": "question", "stash the {o} inside the {t}": "imperative",
    "the {t} needs the {o} in it": "statement", "would you mind dropping the {o} into the {t}": "question",
    "{o} in the {t}, please": "shorthand", "load the {o} into the {t}": "imperative",
    "balance the {o} on top of the {t}": "imperative", "could you pile the {o} onto the {t}": "question",
    "the {o} belongs on top of the {t}": "statement", "make a stack: the {o} over the {t}": "shorthand",
    "{o} atop the {t}, please": "shorthand",
    "drag the {o} along the table into the {t} without lifting it": "imperative",
    "could you scoot the {o} over to the {t}": "question", "roll the {o} into the {t}": "imperative",
    "the {o} should end up in the {t}, pushed not lifted": "statement",
    "push the {o} to the {t} but don't pick it up": "imperative",
}
HELD_OUT = set(HELD_OUT_COLOR_WORDS) | set(HELD_OUT_KIND_WORDS)


def frame_kind(goal: str, instruction: str) -> str:
    text = instruction.lower()
    frames = FRAMES[goal]["held_out"]
    best = max(frames, key=lambda f: difflib.SequenceMatcher(None, text, f.replace("{o}", "").replace("{t}", ""))
               .ratio())
    return KIND_OF_FRAME[best]


def held_out_words(instruction: str) -> str:
    """How many of the instruction's colour and kind words are held-out words (0: a typo hid them)."""
    n = sum(w in HELD_OUT for w in re.findall(r"[a-z]+", instruction.lower()))
    return "1-2 of 4" if n in (1, 2) else "3-4 of 4" if n >= 3 else "0 (a typo hid it)"


def main(path: str) -> None:
    detail = json.load(open(path))["episodes_detail"]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for e in detail:
        groups[("frame", frame_kind(e["goal"]["type"], e["instruction"]))].append(e)
        groups[("held-out words", held_out_words(e["instruction"]))].append(e)
        groups[("goal", e["goal"]["type"])].append(e)
    print("| group | episodes | success (≤ 3 attempts) | first attempt | false successes |")
    print("|---|---|---|---|---|")
    for (axis, name), eps in sorted(groups.items()):
        ok = sum(e["success"] for e in eps)
        first = sum(e["success"] and e["attempts"] == 1 for e in eps)
        print(f"| {axis}: {name} | {len(eps)} | {ok / len(eps):.1%} | {first / len(eps):.1%} | "
              f"{sum(e['false_success'] for e in eps)} |")


if __name__ == "__main__":
    main(sys.argv[1])
