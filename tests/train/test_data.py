"""``train data``: deterministic from seeds, cached, never heldout, images already tiled."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ivl_embodied.train.config import DataConfig
from ivl_embodied.train.data import PlanDataset, build_dataset, render_example
from ivl_embodied.train.tokenizer import check_tokenizer, train_planner_tokenizer


def test_same_config_gives_same_content_hash(tiny_data, tmp_path):
    out, config = tiny_data
    first = json.loads((out / "manifest.json").read_text())
    again = build_dataset(tmp_path / "again", config, progress=False)
    assert again["content_hash"] == first["content_hash"]
    assert again["examples"] == 12 and len(first["shards"]) == 3  # 5 + 5 + 2


def test_second_run_reuses_the_cache(tiny_data, monkeypatch):
    out, config = tiny_data
    import ivl_embodied.train.data as data

    def refuse(*a, **k):
        raise AssertionError("the cache was not reused: a scene was rendered again")

    monkeypatch.setattr(data, "render_example", refuse)
    assert build_dataset(out, config, progress=False)["examples"] == 12


def test_corrupt_shard_is_detected(tiny_data, tmp_path):
    out, config = tiny_data
    copy = tmp_path / "copy"
    build_dataset(copy, config, progress=False)
    shard = copy / "shard-00001.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 0xFF
    shard.write_bytes(bytes(raw))
    from ivl_embodied.train.data import cache_is_valid

    assert not cache_is_valid(copy, config)


def test_a_larger_or_interrupted_build_renders_only_the_shards_it_lacks(tiny_data, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    import ivl_embodied.train.data as data

    out, config = tiny_data
    work = tmp_path / "grow"
    shutil.copytree(out, work)
    rendered = []
    real = data.render_example
    monkeypatch.setattr(data, "render_example", lambda task, cfg: (rendered.append(task.seed), real(task, cfg))[1])

    bigger = dataclasses.replace(config, episodes=15)  # shards 0 and 1 (5 + 5) are the same tasks
    meta = build_dataset(work, bigger, progress=False)
    assert sorted(rendered) == list(range(10, 15)), "only the last shard (seeds 10..14) is new"
    assert (meta["rendered"], meta["reused"], meta["examples"]) == (5, 10, 15)
    fresh = build_dataset(tmp_path / "fresh", bigger, progress=False)
    assert fresh["content_hash"] == meta["content_hash"]  # growing gives exactly a fresh build

    # an interrupted build: shard 1's sidecar never got written, shard 0 was damaged on disk
    (work / "manifest.json").unlink()
    (work / "shard-00001.json").unlink()
    raw = bytearray((work / "shard-00000.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (work / "shard-00000.safetensors").write_bytes(bytes(raw))
    rendered.clear()
    assert build_dataset(work, bigger, progress=False)["content_hash"] == fresh["content_hash"]
    assert sorted(rendered) == list(range(10)), "shards 0 and 1 are rendered again, shard 2 reused"


def test_images_are_tiled_and_match_a_fresh_render(tiny_data):
    from ivl_embodied.sim.tasks import generate_split

    out, config = tiny_data
    ds = PlanDataset(out)
    assert ds.images.shape == (12, 1, 56, 56, 3) and str(ds.images.dtype) == "torch.uint8"
    task = generate_split("train", 12)[7]
    img, ex = render_example(task, config)
    assert np.array_equal(img, ds.images[7].numpy())
    assert ex.plan == ds.examples[7].plan and ex.seed == task.seed
    # the planner sees exactly what tile_image would give it
    assert ds.pixel_values([7]).shape == (1, 3, 56, 56)


def test_no_heldout_combos_or_templates(tiny_data):
    from ivl_embodied.sim.tasks import TEMPLATES, Entity, generate_split, is_heldout_combo

    out, _ = tiny_data
    ds = PlanDataset(out)
    heldout = {t.instruction for t in generate_split("heldout")}
    for e in ds.examples:
        g = e.goal
        assert not is_heldout_combo(g["type"], Entity(**g["object"]), Entity(**g["target"]))
        assert e.instruction not in heldout
        seen = TEMPLATES[g["type"]][0]
        obj = f'{g["object"]["color"]} {g["object"]["shape"]}'
        tgt = f'{g["target"]["color"]} {g["target"]["shape"]}'
        assert e.instruction in {t.format(obj=obj, tgt=tgt) for t in seen}


def test_heldout_split_is_refused():
    with pytest.raises(ValueError, match="heldout"):
        DataConfig(split="heldout")


def test_tokenizer_keeps_special_and_single_byte_tokens(tiny_data):
    from tokenizers import pre_tokenizers

    from ivl_embodied.checkpoints.tiny import SPECIAL_TOKENS

    tok = train_planner_tokenizer(PlanDataset(tiny_data[0]).corpus(), vocab_size=400)
    vocab = tok.get_vocab()
    assert all(s in vocab for s in SPECIAL_TOKENS)
    assert all(c in vocab for c in pre_tokenizers.ByteLevel.alphabet())  # all 256 bytes
    plan = '[{"action":"pick","object":"red cube","box":[412,530,470,596]}]'
    ids = tok(plan, add_special_tokens=False)["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    assert tok.decode(ids) == plan
    assert "4" in pieces and "412" not in pieces  # coordinates are digit by digit
    assert len(tok) > 300  # merges were learnt


def test_check_tokenizer_rejects_a_tokenizer_without_specials():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(["put the red cube"], trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    with pytest.raises(ValueError, match="special"):
        check_tokenizer(PreTrainedTokenizerFast(tokenizer_object=raw))
