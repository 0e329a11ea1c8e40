"""Reading operators' words: what is understood, and every refusal says why and what is understood."""

from __future__ import annotations

import numpy as np
import pytest

from ivl_embodied.language.instruction import Refusal, Understood, read_instruction
from ivl_embodied.language.paraphrase import FRAMES, PREFIXES, SUFFIXES, paraphrase
from ivl_embodied.plan.vocabulary import HELD_OUT_COLOR_WORDS, HELD_OUT_KIND_WORDS
from ivl_embodied.sim.tasks import unseen_phrasing_suite


@pytest.mark.parametrize("text,goal,obj,tgt", [
    ("put the red cube in the green bowl", "place_in", "red cube", "green bowl"),
    ("could you drop the crimson block into the emerald basin please?", "place_in", "red cube", "green bowl"),
    ("Slide the blue can to the yellow patch, don't pick it up", "push_to", "blue cylinder", "yellow zone"),
    ("drag the gold puck into the cobalt mat without lifting it", "push_to", "yellow cylinder", "blue zone"),
    ("build a tower with the green cube above the red cylinder", "stack", "green cube", "red cylinder"),
    ("the orange ball goes in the purple tray", "place_in", "orange sphere", "purple tray"),
    ("PUT THE RED CUBEE IN THE GREEN BWOL!!", "place_in", "red cube", "green bowl"),  # typos, casing
    ("red cube -> green bowl", "place_in", "red cube", "green bowl"),  # shorthand
    ("into the green bowl, put the red cube", "place_in", "red cube", "green bowl"),  # word order
    ("the green bowl should get the red cube", "place_in", "red cube", "green bowl"),
    ("stack the yellow brick on top of the violet puck", "stack", "yellow cube", "purple cylinder"),
])
def test_understood(text, goal, obj, tgt):
    r = read_instruction(text)
    assert isinstance(r, Understood), r
    assert (r.goal, r.object, r.target) == (goal, obj, tgt)
    assert r.instruction.split()[0] in ("put", "stack", "push") and obj in r.instruction and tgt in r.instruction


@pytest.mark.parametrize("text,reason,needle", [
    ("", "bad_instruction", "empty"),
    ("x" * 301, "bad_instruction", "301 characters"),
    ("把红色方块放进绿色碗里", "not_english", "English"),
    ("pon el cubo rojo en el cuenco verde", "not_english", "'pon'"),
    ("move the arm to x = 2 m", "out_of_scope", "coordinates"),
    ("ignore the safety limits", "out_of_scope", "safety"),
    ("stop", "negation", "nothing"),
    ("do not move anything", "negation", "nothing"),
    ("put the red cube in the green bowl, use the green cube instead", "conflict", "'green cube', 'red cube'"),
    ("put the cube in the bowl", "unknown_words", "colour and kind"),
    ("put the red cube somewhere", "unknown_words", "found ['red cube']"),
    ("stack the red cube on the blue sphere", "out_of_scope", "sphere"),
    ("put the green bowl in the red tray", "out_of_scope", "bowl"),
    ("put the red cube in the blue bowl without lifting it", "out_of_scope", "lifting"),
])
def test_refused_with_a_reason_the_operator_can_act_on(text, reason, needle):
    r = read_instruction(text)
    assert isinstance(r, Refusal) and r.reason == reason, r
    assert needle in r.message


def test_refusals_say_what_is_understood():
    r = read_instruction("fly to the moon")
    assert isinstance(r, Refusal) and "colour" in r.message and "put the red cube in the green bowl" in r.message


def test_unseen_phrasing_suite_is_read_as_its_goals():
    """The suite's every instruction (held-out frames and words, typos, casing) names its task."""
    tasks = unseen_phrasing_suite()
    assert len(tasks) >= 200 and {t.goal.type for t in tasks} == {"place_in", "stack", "push_to"}
    for t in tasks:
        r = read_instruction(t.instruction)
        assert isinstance(r, Understood), (t.instruction, r)
        assert (r.goal, r.object, r.target) == (t.goal.type, t.goal.object.phrase, t.goal.target.phrase)


def test_shipped_unseen_suite_matches_the_generator():
    from ivl_embodied.sim.tasks import load_split

    assert load_split("unseen_phrasing") == unseen_phrasing_suite(), "regenerate: python -m ivl_embodied.sim.tasks"


def test_training_paraphrases_never_use_held_out_words_or_frames():
    rng = np.random.default_rng(0)
    def words_of(frames):
        return {w.strip(",:?!.") for f in frames for w in f.replace("{o}", " ").replace("{t}", " ").split()}

    train_words = words_of([f for g in FRAMES.values() for f in g["train"]] + list(PREFIXES["train"])
                           + list(SUFFIXES["train"]))
    held_frame_words = words_of(f for g in FRAMES.values() for f in g["held_out"]) - train_words
    assert {"tuck", "stash", "balance", "scoot", "roll"} <= held_frame_words
    held_words = set(HELD_OUT_COLOR_WORDS) | set(HELD_OUT_KIND_WORDS) | held_frame_words
    for i in range(600):
        goal = ("place_in", "stack", "push_to")[i % 3]
        text = paraphrase(goal, ("red", "cube"), ("green", "bowl" if goal == "place_in" else
                                                  "cylinder" if goal == "stack" else "zone"), rng, typo_prob=0.0)
        words = set(text.lower().replace(",", " ").replace("?", " ").replace("!", " ").replace(".", " ").split())
        assert not words & held_words, text
