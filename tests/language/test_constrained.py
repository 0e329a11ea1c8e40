"""Constrained decoding: every output of a random tiny model parses with parse_plan."""

from __future__ import annotations

import random

import pytest
import torch

from ivl_embodied.language.constrained import PlanAutomaton, PlanRestriction, TokenConstraint
from ivl_embodied.language.planner import GenerationSettings
from ivl_embodied.plan.schema import format_plan, parse_plan
from ivl_embodied.plan.vocabulary import KINDS, canonical_phrases

INSTRUCTION = "put the red cube in the green bowl"


def test_automaton_accepts_canonical_plans_and_rejects_violations():
    a = PlanAutomaton()
    good = ('[{"action":"pick","object":"red cube","box":[412,530,470,596]},'
            '{"action":"place","object":"red cube","target":"green bowl","target_box":[600,480,720,590]},'
            '{"action":"place","object":"blue sphere","box":[0,0,1000,1000],"target":"orange tray",'
            '"target_box":[5,5,5,5]},{"action":"push","object":"yellow cylinder","box":[1,2,3,4],'
            '"target":"purple zone","target_box":[9,9,10,10]}]')
    state = a.feed(a.start(), good)
    assert state is not None and a.is_done(state)
    assert format_plan(parse_plan(good)) == good
    prefix = '[{"action":"pick","object":"red cube","box":['
    for bad in ["[{\"object\"", '[{"action":"fly"', '[{"action":"pick","box"', '[{"action":"pick","object":""',
                '[{"action":"pick","object":" red', prefix + "01", prefix + "1001", prefix + "500,0,499,",
                prefix + "500,0,4", prefix + "0,7,0,6]", prefix + "1.5", '[{"action":"pick","object":"red\\"',
                '[{"action":"place","object":"red cube","box":[0,0,0,0]}']:
        assert a.feed(a.start(), bad) is None, bad
    assert a.feed(a.start(), prefix + "500,0,5") is not None  # 5xx can still reach >= 500


def test_min_chars_to_finish_is_exact_along_random_walks():
    a = PlanAutomaton()
    for seed in range(200):
        rng = random.Random(seed)
        state, text = a.start(), ""
        while not a.is_done(state):
            m = a.min_chars_to_finish(state)
            nexts = [(c, a.step(state, c)) for c in a.allowed_chars(state)]
            assert m >= 1 and min(a.min_chars_to_finish(s) for _, s in nexts) == m - 1
            c, state = rng.choice(nexts)
            text += c
        parse_plan(text)


def test_constraint_needs_single_character_tokens():
    texts = [chr(c) for c in range(0x20, 0x7F) if chr(c) != ":"]
    with pytest.raises(ValueError, match=r"\[':'\]"):
        TokenConstraint(texts)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.5])
def test_random_model_outputs_always_parse(tiny_planner, temperature):
    vis = torch.randn(12, tiny_planner.hidden_size)
    seeds = range(1) if temperature == 0.0 else range(12)
    for seed in seeds:
        out = tiny_planner.generate(vis, INSTRUCTION, GenerationSettings(max_new_tokens=160, temperature=temperature,
                                                                         seed=seed, top_k=50 if seed % 2 else 0))
        plan = parse_plan(out.text)
        assert plan == out.plan and out.stopped == "plan_complete" and len(out.token_ids) <= 160
        assert tiny_planner.tokenizer.decode(list(out.token_ids)) == out.text


def test_tight_budget_still_parses(tiny_planner):
    c = tiny_planner.constraint()
    vis = torch.randn(4, tiny_planner.hidden_size)
    for seed in range(4):
        out = tiny_planner.generate(vis, INSTRUCTION, GenerationSettings(max_new_tokens=c.min_plan_chars,
                                                                         temperature=1.0, seed=seed))
        parse_plan(out.text)
        assert len(out.token_ids) <= c.min_plan_chars
    with pytest.raises(ValueError, match="max_new_tokens 20 is below"):
        tiny_planner.generate(vis, INSTRUCTION, GenerationSettings(max_new_tokens=20))


def test_greedy_constrained_takes_best_allowed_token(tiny_planner):
    """The first token is the argmax over tokens whose text can start a plan."""
    vis = torch.randn(4, tiny_planner.hidden_size)
    logits = tiny_planner.next_token_logits(vis, INSTRUCTION)
    c = tiny_planner.constraint()
    a = c.automaton
    allowed = [i for i, t in enumerate(c.token_texts) if t and a.feed(a.start(), t) is not None]
    best = max(allowed, key=lambda i: logits[i].item())
    out = tiny_planner.generate(vis, INSTRUCTION, GenerationSettings(max_new_tokens=120))
    assert out.token_ids[0] == best


@pytest.mark.parametrize("garbage", [
    ',008012,304,2,2]},{', "blue[{", "green6055,509,609,585,684]},{", "blue[[", "red", "red cubes", "a",
    "red  cube", "Red cube", "crimson block", "green bowl",  # a bowl is never picked
])
def test_object_phrases_are_vocabulary_phrases_only(garbage):
    a = PlanAutomaton()
    assert a.feed(a.start(), '[{"action":"pick","object":"' + garbage + '"') is None


def test_each_role_takes_the_kinds_it_can():
    a = PlanAutomaton()
    pick = '[{"action":"pick","object":"'
    for p in canonical_phrases(("cube", "cylinder", "sphere")):
        assert a.feed(a.start(), pick + p + '","box":[') is not None
    for p in canonical_phrases(("bowl", "tray", "zone")):
        assert a.feed(a.start(), pick + p + '"') is None
    push = '[{"action":"push","object":"red cube","box":[1,1,2,2],"target":"'
    assert a.feed(a.start(), push + 'red zone","target_box":[') is not None
    assert a.feed(a.start(), push + 'red bowl"') is None


def test_restriction_for_one_task_leaves_only_the_boxes_open():
    a = PlanAutomaton(PlanRestriction.for_task("place_in", "red cube", "green bowl"))
    ok = ('[{"action":"pick","object":"red cube","box":[1,2,3,4]},'
          '{"action":"place","object":"red cube","target":"green bowl","target_box":[5,6,7,8]}]')
    assert a.is_done(a.feed(a.start(), ok))
    assert a.feed(a.start(), '[{"action":"push"') is None
    assert a.feed(a.start(), '[{"action":"pick","object":"blue cube"') is None
    assert a.feed(a.start(), ok.replace('"target":"green bowl"', '"target":"red bowl"')) is None
    b = PlanAutomaton(PlanRestriction.for_task("push_to", "blue cylinder", "red zone"))
    assert b.feed(b.start(), '[{"action":"pick"') is None
    push = '[{"action":"push","object":"blue cylinder","box":[1,1,1,1],"target":"red zone"'
    assert b.feed(b.start(), push) is not None
    with pytest.raises(ValueError, match="unknown goal"):
        PlanRestriction.for_task("throw", "red cube", "green bowl")
    with pytest.raises(ValueError, match="cannot appear in plan text"):
        PlanRestriction(("pick",), {("pick", "object"): ('say "hi"',)})


@pytest.mark.parametrize("temperature", [0.0, 1.5])
def test_random_model_names_only_vocabulary_phrases(tiny_planner, temperature):
    vocabulary = set(canonical_phrases(KINDS))
    vis = torch.randn(8, tiny_planner.hidden_size)
    for seed in range(1 if temperature == 0.0 else 8):
        out = tiny_planner.generate(vis, "blue[{ ,008012 之", GenerationSettings(
            max_new_tokens=200, temperature=temperature, seed=seed))
        for step in out.plan.steps:
            assert step.object in vocabulary and (step.target is None or step.target in vocabulary), out.text


def test_random_model_under_a_task_restriction_plans_that_task(tiny_planner):
    vis = torch.randn(8, tiny_planner.hidden_size)
    r = PlanRestriction.for_task("stack", "green cube", "red cylinder")
    for seed in range(6):
        out = tiny_planner.generate(vis, INSTRUCTION, GenerationSettings(max_new_tokens=200, temperature=1.5,
                                                                         seed=seed), restriction=r)
        assert {s.action for s in out.plan.steps} <= {"pick", "place"}
        assert {s.object for s in out.plan.steps} == {"green cube"}
        assert {s.target for s in out.plan.steps if s.target} <= {"red cylinder"}
