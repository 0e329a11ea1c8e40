"""Paraphrases and grounding targets used by SFT (ivl_embodied/rl/augment.py)."""

import re

import numpy as np
import pytest
import torch

from ivl_embodied.sim.tasks import TEMPLATES
from ivl_embodied.train.augment import (
    COLOR_CLASSES,
    IGNORE,
    KIND_CLASSES,
    LINKS,
    PREFIXES,
    SUFFIXES,
    VERBS,
    mirror_boxes,
    paraphrase,
    plan_for_goal,
    retarget,
    token_targets,
)

GOAL = {"type": "push_to", "object": {"color": "red", "shape": "cube"}, "target": {"color": "blue", "shape": "zone"}}


def _words(texts) -> set[str]:
    return {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}


def test_paraphrase_vocabulary_shares_no_word_with_heldout_only_phrasings():
    train = _words(t for seen, _ in TEMPLATES.values() for t in seen)
    heldout_only = _words(t for _, unseen in TEMPLATES.values() for t in unseen) - train
    assert heldout_only  # the split really has unseen words
    assert not (_words(PREFIXES + VERBS + LINKS + SUFFIXES) & heldout_only)


def test_operator_phrasings_in_training_share_no_word_with_either_held_out_set():
    """SFT's operator phrasings (training frames, synonyms) leave both the held-out split's templates and the
    unseen-phrasing suite's frames and words unseen."""
    from ivl_embodied.language.paraphrase import FRAMES
    from ivl_embodied.language.paraphrase import PREFIXES as OP_PREFIXES
    from ivl_embodied.language.paraphrase import SUFFIXES as OP_SUFFIXES
    from ivl_embodied.plan.vocabulary import HELD_OUT_COLOR_WORDS, HELD_OUT_KIND_WORDS

    train = _words(t for seen, _ in TEMPLATES.values() for t in seen)
    heldout_only = _words(t for _, unseen in TEMPLATES.values() for t in unseen) - train
    op_train = _words([f for g in FRAMES.values() for f in g["train"]] + list(OP_PREFIXES["train"])
                      + list(OP_SUFFIXES["train"]))
    sft_words = _words(PREFIXES + VERBS + LINKS + SUFFIXES)
    suite_only = _words(f for g in FRAMES.values() for f in g["held_out"]) - op_train - train - sft_words
    held = heldout_only | suite_only | set(HELD_OUT_COLOR_WORDS) | set(HELD_OUT_KIND_WORDS)
    seen_operator = 0
    for s in range(400):
        text = paraphrase(GOAL, "push the red cube into the blue zone", np.random.default_rng(s), 1.0)
        assert not (_words([text]) & held), text
        seen_operator += "red cube" not in text.lower()  # a synonym or a typo: the operator branch
    assert seen_operator > 40


def test_paraphrase_keeps_object_then_target_and_is_deterministic():
    from ivl_embodied.language.instruction import read_instruction

    outs = [paraphrase(GOAL, "push the red cube into the blue zone", np.random.default_rng(s), 1.0) for s in range(50)]
    for text in outs:
        low = text.lower()
        if "red cube" in low and "blue zone" in low:
            assert low.index("red cube") < low.index("blue zone"), text
        else:  # an operator's phrasing (synonyms): the reader finds the same object and target in it
            read = read_instruction(text)
            assert (read.object, read.target) == ("red cube", "blue zone"), (text, read)
    assert len(set(outs)) > 10
    again = [paraphrase(GOAL, "push the red cube into the blue zone", np.random.default_rng(s), 1.0) for s in range(50)]
    assert outs == again


def test_paraphrase_probability_zero_keeps_the_instruction_and_bad_probability_is_named():
    rng = np.random.default_rng(0)
    assert all(paraphrase(GOAL, "orig", rng, 0.0) == "orig" for _ in range(20))
    with pytest.raises(ValueError, match="1.5"):
        paraphrase(GOAL, "orig", rng, 1.5)


def test_token_targets_by_hand():
    objects = [
        {"name": "red cube", "box": [5, 5, 35, 35]},  # centre (20, 20): cell (0, 0) of a 4x4 grid on 0..100
        {"name": "blue zone", "box": [55, 55, 95, 95]},  # centre (75, 75): cell (3, 3); touches (2..3, 2..3)
        {"name": "green sphere", "box": [60, 5, 70, 15]},  # centre (65, 10): cell (0, 2)
        {"name": "yellow bowl", "box": [62, 8, 72, 20]},  # centre (67, 14): also cell (0, 2) -> ambiguous
    ]
    t = token_targets(objects, grid=4, box_max=100)
    color = t["color"].reshape(4, 4)
    assert color[0, 0] == COLOR_CLASSES.index("red")
    assert t["kind"].reshape(4, 4)[0, 0] == KIND_CLASSES.index("cube")
    assert color[3, 3] == COLOR_CLASSES.index("blue")
    assert color[2, 2] == IGNORE and color[2, 3] == IGNORE and color[3, 2] == IGNORE  # touched, no centre
    assert color[0, 2] == IGNORE and not t["has_box"][2]  # two centres
    assert color[1, 1] == IGNORE and color[2, 0] == 0 and color[3, 0] == 0  # touched; background
    assert t["has_box"].sum() == 2
    np.testing.assert_allclose(t["box"][15], [0.55, 0.55, 0.95, 0.95])
    with pytest.raises(ValueError, match="80, 10, 20, 40"):
        token_targets([{"name": "red cube", "box": [80, 10, 20, 40]}], grid=4, box_max=100)


def test_grounding_head_groups_patch_cells_by_token_like_pixel_shuffle():
    from ivl_embodied.train.sft import GroundingHead
    from ivl_embodied.vision.encoder import pixel_shuffle

    side = 4
    patch_ids = torch.arange(side * side).reshape(1, side * side)  # row-major patch index
    grouped = GroundingHead.per_token(patch_ids, side)  # [1, 4 tokens, 4 cells]
    # the same patches as pixel shuffle puts into each token (its channels, in blocks of C)
    feats = patch_ids.reshape(1, side, side, 1).float()
    shuffled = pixel_shuffle(feats, 0.5).reshape(1, -1, 4)
    assert sorted(grouped[0, 1].tolist()) == sorted(shuffled[0, 1].long().tolist()) == [2, 3, 6, 7]
    for tok in range(4):
        assert sorted(grouped[0, tok].tolist()) == sorted(shuffled[0, tok].long().tolist())


def test_mirror_boxes_by_hand_and_twice_is_identity():
    plan = ('[{"action":"pick","object":"red cube","box":[100,200,150,260]},'
            '{"action":"place","object":"red cube","target":"blue bowl","target_box":[600,300,900,420]}]')
    objects = [{"name": "red cube", "box": [100, 200, 150, 260]}, {"name": "blue bowl", "box": [600, 300, 900, 420]}]
    m_plan, m_obj = mirror_boxes(plan, objects)
    assert m_plan == ('[{"action":"pick","object":"red cube","box":[850,200,900,260]},'
                      '{"action":"place","object":"red cube","target":"blue bowl","target_box":[100,300,400,420]}]')
    assert m_obj == [{"name": "red cube", "box": [850, 200, 900, 260]}, {"name": "blue bowl", "box": [100, 300,
                                                                                                      400, 420]}]
    assert objects[0]["box"] == [100, 200, 150, 260], "the records are not modified in place"
    assert mirror_boxes(*mirror_boxes(plan, objects)) == (plan, objects)
    with pytest.raises(ValueError, match=r"\[500,1,400,2\]"):
        mirror_boxes('[{"action":"pick","object":"red cube","box":[500,1,400,2]}]', [])
    with pytest.raises(ValueError, match="green cube"):
        mirror_boxes(plan, [{"name": "green cube", "box": [0, 0, 1200, 5]}])


def test_mirrored_batch_flips_pixels_plans_and_grounding_cells(tiny_data):
    from ivl_embodied.train.data import PlanDataset
    from ivl_embodied.train.sft import make_batch_fn

    ds = PlanDataset(tiny_data[0])
    idx = [0, 1, 2, 3]
    plain = make_batch_fn(ds, seed=0, paraphrase_prob=0.0, grounding=True, grid=4)(idx)
    flipped = make_batch_fn(ds, seed=0, paraphrase_prob=0.0, grounding=True, grid=4, mirror_prob=1.0)(idx)
    assert torch.equal(flipped["pixel_values"], plain["pixel_values"].flip(-1))
    assert flipped["plans"] == [mirror_boxes(ds.examples[i].plan, ds.examples[i].objects)[0] for i in idx]
    assert flipped["plans"] != plain["plans"]
    # an object whose centre is in column c of the 4x4 grid lands in column 3 - c (unless it sits on a border)
    for b in range(len(idx)):
        for o in ds.examples[idx[b]].objects:
            cx = (o["box"][0] + o["box"][2]) / 2
            if abs(cx - 250 * round(cx / 250)) < 5:
                continue
            col, row = int(cx // 250), int(((o["box"][1] + o["box"][3]) / 2) // 250)
            if plain["grounding"]["has_box"][b, row * 4 + col]:
                assert flipped["grounding"]["has_box"][b, row * 4 + 3 - col]
                assert flipped["grounding"]["color"][b, row * 4 + 3 - col] == plain["grounding"]["color"][b,
                                                                                                          row * 4 + col]
    half = make_batch_fn(ds, seed=0, paraphrase_prob=0.0, grounding=False, grid=4, mirror_prob=0.5)
    assert half(idx)["plans"] == half(idx)["plans"], "the same indices give the same batch (resume)"
    with pytest.raises(ValueError, match="1.5"):
        make_batch_fn(ds, seed=0, paraphrase_prob=0.0, grounding=False, grid=4, mirror_prob=1.5)


def test_plan_for_goal_reproduces_the_recorded_oracle_plans(tiny_data):
    from ivl_embodied.train.data import PlanDataset

    ds = PlanDataset(tiny_data[0])
    assert {e.goal["type"] for e in ds.examples} == {"place_in", "stack", "push_to"}
    for e in ds.examples:
        assert plan_for_goal(e.goal, e.objects) == e.plan
    with pytest.raises(ValueError, match="pink cube"):
        plan_for_goal({"type": "stack", "object": {"color": "pink", "shape": "cube"},
                       "target": {"color": "red", "shape": "cube"}}, ds.examples[0].objects)


def test_retarget_draws_other_allowed_tasks_and_never_a_heldout_combination():
    from ivl_embodied.plan.schema import parse_plan
    from ivl_embodied.sim.tasks import OBJECT_SHAPES, TARGET_SHAPES, Entity, is_heldout_combo

    names = [f"{c} {k}" for c in ("red", "green", "blue", "yellow", "purple", "orange")
             for k in ("cube", "cylinder", "sphere", "bowl", "tray", "zone")]
    objects = [{"name": n, "box": [10 * i, 20, 10 * i + 8, 40]} for i, n in enumerate(names)]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        goal, plan = retarget(objects, rng)
        a, b = Entity(**goal["object"]), Entity(**goal["target"])
        assert a != b and a.shape in OBJECT_SHAPES[goal["type"]] and b.shape in TARGET_SHAPES[goal["type"]]
        assert not is_heldout_combo(goal["type"], a, b)
        steps = parse_plan(plan).steps
        assert steps[0].object == a.phrase and list(steps[0].box) == objects[names.index(a.phrase)]["box"]
        assert (steps[-1].target, list(steps[-1].target_box)) == (b.phrase, objects[names.index(b.phrase)]["box"])
        seen.add((goal["type"], a, b))
    assert {t for t, _, _ in seen} == {"place_in", "stack", "push_to"} and len(seen) > 200
    # a scene with one graspable thing and nothing to put it in or on supports no task
    assert retarget([{"name": "red sphere", "box": [1, 2, 3, 4]}, {"name": "blue sphere", "box": [5, 6, 7, 8]}],
                    rng) is None


def test_retargeted_batches_name_the_new_objects_and_box_them(tiny_data):
    from ivl_embodied.language.instruction import read_instruction
    from ivl_embodied.plan.schema import parse_plan
    from ivl_embodied.train.data import PlanDataset
    from ivl_embodied.train.sft import make_batch_fn

    ds = PlanDataset(tiny_data[0])
    idx = list(range(12))
    batch = make_batch_fn(ds, seed=3, paraphrase_prob=0.0, grounding=False, grid=4, retarget_prob=1.0)(idx)
    changed = 0
    for i, text, plan in zip(idx, batch["instructions"], batch["plans"], strict=True):
        steps = parse_plan(plan).steps
        obj, tgt = steps[0].object, steps[-1].target
        if obj in text.lower() and tgt in text.lower():
            assert text.lower().index(obj) < text.lower().rindex(tgt), (text, plan)  # object named first
        else:  # an operator's phrasing (synonyms): what the instruction reader understands of it
            read = read_instruction(text)
            assert (read.object, read.target) == (obj, tgt), (text, plan, read)
        boxes = {o["name"]: o["box"] for o in ds.examples[i].objects}
        assert list(steps[0].box) == boxes[obj] and list(steps[-1].target_box) == boxes[tgt]
        changed += plan != ds.examples[i].plan
    assert changed >= 8
    none = make_batch_fn(ds, seed=3, paraphrase_prob=0.0, grounding=False, grid=4, retarget_prob=0.0)(idx)
    assert none["plans"] == [ds.examples[i].plan for i in idx]
