"""Alternatives for the scene critic: greedy first, then every view's plans ranked by log-probability,
mirrored views' boxes mirrored back, nothing decoded past what is taken."""

from __future__ import annotations

import itertools

import pytest

from ivl_embodied.language.planner import GenerationSettings, PlanOutput, plan_candidates
from ivl_embodied.plan.schema import Plan, Step, format_plan, mirror_box, mirror_plan, parse_plan


def _plan(x: int) -> Plan:
    return Plan((Step("pick", "red cube", (x, 100, x + 50, 160)),
                 Step("place", "red cube", target="green bowl", target_box=(600, 300, 700, 400))))


class FakePlanner:
    """generate(view, ...) -> a plan whose pick box starts at x = the view's base + the sampling seed."""

    def __init__(self):
        self.calls = []

    def generate(self, visual, instruction, settings, restriction=None):
        self.calls.append((visual, settings.temperature, settings.seed))
        seed = -1 if settings.temperature == 0 else settings.seed
        x = visual + (0 if seed == -1 else 10 * (seed % 2))  # seeds 0, 2, 4 repeat: duplicates are dropped
        plan = _plan(x)
        return PlanOutput(format_plan(plan), (), plan, logprob=-(x % 97) - 0.5 * (seed + 1))


def test_greedy_first_then_both_views_ranked_with_mirrored_boxes_mapped_back():
    fake = FakePlanner()
    views = [(100, False), (lambda: 300, True)]
    outs = list(plan_candidates(fake, views, "put the red cube in the green bowl", GenerationSettings(), samples=4))
    assert outs[0].text == format_plan(_plan(100))  # the first view's greedy plan, whatever its rank
    rest = outs[1:]
    assert [o.logprob for o in rest] == sorted((o.logprob for o in rest), reverse=True)
    texts = [o.text for o in outs]
    assert len(texts) == len(set(texts)) == 1 + 1 + 2  # view 1: greedy + seed parity 1; view 2: greedy + 2
    mirrored = {format_plan(mirror_plan(_plan(x))) for x in (300, 310)}
    assert mirrored <= set(texts)  # plans made on the flipped frame come back in the frame's coordinates
    assert mirror_box(mirror_box((300, 100, 350, 160))) == (300, 100, 350, 160)
    assert parse_plan(format_plan(mirror_plan(_plan(300)))).steps[0].box == (650, 100, 700, 160)
    assert all(o.plan is not None and format_plan(o.plan) == o.text for o in outs)


def test_nothing_is_decoded_or_encoded_past_what_is_taken():
    fake = FakePlanner()
    encoded = []

    def second_view():
        encoded.append(1)
        return 300

    gen = plan_candidates(fake, [(100, False), (second_view, True)], "x", GenerationSettings(), samples=8)
    next(gen)
    assert len(fake.calls) == 1 and not encoded  # the greedy plan only; the mirrored view never encoded
    list(itertools.islice(gen, 1))
    assert encoded == [1] and len(fake.calls) == 1 + 8 + 9


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="samples must be >= 0, got -1"):
        next(plan_candidates(FakePlanner(), [(1, False)], "x", GenerationSettings(), samples=-1))
    with pytest.raises(ValueError, match="at least one view"):
        next(plan_candidates(FakePlanner(), [], "x", GenerationSettings()))


def test_a_view_that_cannot_be_had_is_skipped():
    outs = list(plan_candidates(FakePlanner(), [(100, False), (lambda: None, True)], "x", GenerationSettings(),
                                samples=4))
    assert [o.text for o in outs] == [format_plan(_plan(100)), format_plan(_plan(110))]


def test_decoding_stops_at_the_time_limit_with_no_plan(tiny_planner):
    import torch

    visual = torch.randn(6, 64) * 3
    out = tiny_planner.generate(visual, "put the red cube in the green bowl",
                                GenerationSettings(max_new_tokens=120, max_time_s=1e-9))
    assert out.plan is None and out.stopped == "max_time" and "max_time_s=1e-09" in out.error
    full = tiny_planner.generate(visual, "put the red cube in the green bowl", GenerationSettings(max_new_tokens=120))
    assert full.plan is not None and full.stopped != "max_time"
    with pytest.raises(ValueError, match="max_time_s must be > 0"):
        GenerationSettings(max_time_s=0.0)
