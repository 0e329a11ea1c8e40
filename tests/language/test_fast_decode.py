"""The static decoder computes what transformers computes: same greedy tokens as ``generate``, logits
equal to float rounding, on random Qwen3 configs and on the shipped planner."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from ivl_embodied.language import fast_decode
from ivl_embodied.language.fast_decode import StaticDecoder
from ivl_embodied.language.planner import GenerationSettings


def _lm(seed: int = 0, **overrides) -> torch.nn.Module:
    cfg = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=24, max_position_embeddings=512, tie_word_embeddings=True)
    cfg.update(overrides)
    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_config(Qwen3Config(**cfg)).eval()
    with torch.no_grad():  # larger than the init's 0.02 so that greedy tokens are far from ties
        for p in lm.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.2)
    return lm


def _greedy(dec: StaticDecoder, lm, ids: torch.Tensor, n: int) -> tuple[list[int], list[torch.Tensor]]:
    table = lm.get_input_embeddings()
    logits = dec.prefill(table(ids))
    tokens, all_logits = [], [logits]
    for _ in range(n):
        tokens.append(int(logits.argmax()))
        logits = dec.step(tokens[-1], table)
        all_logits.append(logits)
    return tokens, all_logits


@pytest.mark.parametrize("overrides", [
    {},  # 4 query heads on 2 kv heads
    {"num_key_value_heads": 4},  # no grouping
    {"num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 16, "tie_word_embeddings": False},
    {"num_hidden_layers": 3, "rope_parameters": {"rope_type": "default", "rope_theta": 500.0}},
])
@pytest.mark.parametrize("fuse", [True, False])
def test_greedy_tokens_and_logits_equal_transformers(overrides, fuse, monkeypatch):
    monkeypatch.setattr(fast_decode, "FUSE_MAX_BYTES", 1 << 40 if fuse else 0)
    lm = _lm(**overrides)
    ids = torch.randint(0, 97, (1, 40), generator=torch.Generator().manual_seed(1))
    dec = StaticDecoder(lm, max_len=16)  # smaller than the sequence: the cache grows on the way
    assert dec.fused is fuse
    tokens, logits = _greedy(dec, lm, ids, 24)
    with torch.no_grad():
        ref = lm.generate(ids, max_new_tokens=24, min_new_tokens=24, do_sample=False, eos_token_id=None,
                          pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    assert tokens == ref.sequences[0, 40:].tolist()
    for ours, theirs in zip(logits, ref.logits, strict=False):
        torch.testing.assert_close(ours, theirs[0], rtol=1e-4, atol=1e-4)
    # a second sequence on the same decoder starts afresh
    assert _greedy(dec, lm, ids, 24)[0] == tokens


def test_int8_weights_decode_what_transformers_decodes_on_the_same_int8_weights():
    """The int8 decoder against transformers' generate on a copy of the model whose linears are int8
    (:func:`int8_model`): the same tokens, logits equal to float rounding; and it is not the fp32 model."""
    lm = _lm(hidden_size=128, intermediate_size=256, head_dim=32)
    ids = torch.randint(0, 97, (1, 40), generator=torch.Generator().manual_seed(1))
    q = fast_decode.int8_model(lm)
    assert isinstance(q.lm_head, fast_decode.Int8Linear) and isinstance(lm.lm_head, torch.nn.Linear)
    tokens, logits = _greedy(StaticDecoder(lm, weights="int8"), lm, ids, 24)
    with torch.no_grad():
        ref = q.generate(ids, max_new_tokens=24, min_new_tokens=24, do_sample=False, eos_token_id=None,
                         pad_token_id=0, output_logits=True, return_dict_in_generate=True)
        fp32 = lm.generate(ids, max_new_tokens=24, min_new_tokens=24, do_sample=False, eos_token_id=None,
                           pad_token_id=0)
    assert tokens == ref.sequences[0, 40:].tolist()
    for ours, theirs in zip(logits, ref.logits, strict=False):
        torch.testing.assert_close(ours, theirs[0], rtol=1e-4, atol=1e-4)
    assert tokens != fp32[0, 40:].tolist()  # int8 is another model: here they part within 24 tokens


def test_int8_weights_stay_close_to_the_model():
    lm = _lm(hidden_size=128, intermediate_size=256, head_dim=32)
    ids = torch.randint(0, 97, (1, 30), generator=torch.Generator().manual_seed(2))
    exact, int8 = StaticDecoder(lm), StaticDecoder(lm, weights="int8")
    a, b = exact.prefill(lm.get_input_embeddings()(ids)), int8.prefill(lm.get_input_embeddings()(ids))
    assert not torch.equal(a, b)  # it really is another computation
    assert float((a - b).abs().max()) < 0.08 * float(a.abs().max())
    assert float(torch.cosine_similarity(a, b, dim=0)) > 0.995
    assert int(b.argmax()) in a.topk(2).indices.tolist()  # here the first two are 5.25 and 5.21


def test_unsupported_settings_are_named_and_auto_falls_back():
    from ivl_embodied.language.planner import LanguagePlanner

    lm = _lm(attention_bias=True)
    with pytest.raises(ValueError, match="attention_bias=True"):
        StaticDecoder(lm)
    with pytest.raises(ValueError, match="weights must be one of"):
        StaticDecoder(_lm(), weights="int4")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        StaticDecoder(_lm(max_position_embeddings=32)).prefill(torch.zeros(1, 40, 64))

    class Tok:  # just enough of a tokenizer for the planner's constructor
        unk_token_id, eos_token_id = 0, None

        def convert_tokens_to_ids(self, token):
            return 5

    assert LanguagePlanner(lm, Tok()).decoder == "hf"
    assert LanguagePlanner(_lm(), Tok()).decoder == "static"
    with pytest.raises(ValueError, match="attention_bias"):
        LanguagePlanner(lm, Tok(), decoder="static")
    with pytest.raises(ValueError, match="decoder must be one of"):
        LanguagePlanner(_lm(), Tok(), decoder="fast")


@pytest.fixture(scope="module")
def shipped():
    from ivl_embodied.checkpoints.internvl import load_language
    from ivl_embodied.checkpoints.planner import resolve_checkpoint

    return load_language(resolve_checkpoint("default", "language"))


def test_the_shipped_planner_plans_the_same_with_either_decoder(shipped):
    torch.manual_seed(0)
    views = [torch.randn(16, shipped.hidden_size) for _ in range(3)]
    instructions = ["put the red cube in the green bowl", "push the blue block to the yellow zone",
                    "stack the green cube on the red cylinder"]
    settings = [GenerationSettings(max_new_tokens=160), GenerationSettings(max_new_tokens=40, constrained=False),
                GenerationSettings(max_new_tokens=160, temperature=1.0, seed=3)]
    outs = {}
    for decoder in ("hf", "static"):
        shipped.set_decoder(decoder)
        outs[decoder] = [shipped.generate(v, i, s) for v, i in zip(views, instructions, strict=True)
                         for s in settings]
    shipped.set_decoder("auto")
    for a, b in zip(outs["hf"], outs["static"], strict=True):
        assert a.token_ids == b.token_ids and a.text == b.text
        assert b.logprob == pytest.approx(a.logprob, abs=1e-3)


def test_a_trained_or_copied_planner_decodes_with_its_current_weights(shipped):
    planner = copy.deepcopy(shipped)  # a reference model: copies without the original's decoder state
    vis = torch.randn(16, planner.hidden_size, generator=torch.Generator().manual_seed(4))
    settings = GenerationSettings(max_new_tokens=30, constrained=False)
    planner.generate(vis, "put the red cube in the green bowl", settings)
    with torch.no_grad():  # an optimizer step, in place
        for p in planner.lm.parameters():
            p.mul_(1.5)
    after = planner.generate(vis, "put the red cube in the green bowl", settings)
    planner.set_decoder("hf")
    assert planner.generate(vis, "put the red cube in the green bowl", settings).token_ids == after.token_ids
