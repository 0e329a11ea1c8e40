"""Paraphrases and grounding targets used by SFT (ivl_embodied/rl/augment.py)."""

import re

import numpy as np
import pytest
import torch

from ivl_embodied.rl.augment import (
    COLOR_CLASSES,
    IGNORE,
    KIND_CLASSES,
    LINKS,
    PREFIXES,
    SUFFIXES,
    VERBS,
    paraphrase,
    token_targets,
)
from ivl_embodied.sim.tasks import TEMPLATES

GOAL = {"type": "push_to", "object": {"color": "red", "shape": "cube"}, "target": {"color": "blue", "shape": "zone"}}


def _words(texts) -> set[str]:
    return {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}


def test_paraphrase_vocabulary_shares_no_word_with_heldout_only_phrasings():
    train = _words(t for seen, _ in TEMPLATES.values() for t in seen)
    heldout_only = _words(t for _, unseen in TEMPLATES.values() for t in unseen) - train
    assert heldout_only  # the split really has unseen words
    assert not (_words(PREFIXES + VERBS + LINKS + SUFFIXES) & heldout_only)


def test_paraphrase_keeps_object_then_target_and_is_deterministic():
    outs = [paraphrase(GOAL, "push the red cube into the blue zone", np.random.default_rng(s), 1.0) for s in range(50)]
    for text in outs:
        low = text.lower()
        assert low.index("red cube") < low.index("blue zone"), text
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
    from ivl_embodied.model.vision import pixel_shuffle
    from ivl_embodied.rl.sft import GroundingHead

    side = 4
    patch_ids = torch.arange(side * side).reshape(1, side * side)  # row-major patch index
    grouped = GroundingHead.per_token(patch_ids, side)  # [1, 4 tokens, 4 cells]
    # the same patches as pixel shuffle puts into each token (its channels, in blocks of C)
    feats = patch_ids.reshape(1, side, side, 1).float()
    shuffled = pixel_shuffle(feats, 0.5).reshape(1, -1, 4)
    assert sorted(grouped[0, 1].tolist()) == sorted(shuffled[0, 1].long().tolist()) == [2, 3, 6, 7]
    for tok in range(4):
        assert sorted(grouped[0, tok].tolist()) == sorted(shuffled[0, tok].long().tolist())
