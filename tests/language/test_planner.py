"""Planner: prompt layout, splice errors, KV-cache decoding, batched scoring with label masks."""

from __future__ import annotations

import pytest
import torch

from ivl_embodied.language.planner import IMG_CONTEXT, GenerationSettings, build_prompt

INSTRUCTION = "put the red cube in the green bowl"


def test_prompt_follows_internvl_chat_template():
    p = build_prompt("pick it", 3, "SYS")
    assert p == ("<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n<img>" + "<IMG_CONTEXT>" * 3
                 + "</img>\npick it<|im_end|>\n<|im_start|>assistant\n")
    assert build_prompt("pick it", 1, None).startswith("<|im_start|>user\n<img><IMG_CONTEXT></img>")
    with pytest.raises(ValueError, match="'<IMG_CONTEXT>'"):
        build_prompt("look " + IMG_CONTEXT, 3)
    with pytest.raises(ValueError, match="non-empty"):
        build_prompt("  ", 3)


def test_hidden_size_and_placeholder_mismatch_are_named(tiny_planner):
    with pytest.raises(ValueError, match=r"shape \(5, 32\) but the language model's hidden size is 64"):
        tiny_planner.next_token_logits(torch.randn(5, 32), INSTRUCTION)
    ids = torch.tensor([tiny_planner.prompt_ids(torch.randn(5, 64), INSTRUCTION)])
    with pytest.raises(ValueError, match="prompt has 5 <IMG_CONTEXT> placeholders but 4 embedding rows"):
        tiny_planner.splice(ids, [torch.randn(4, 64)])


def test_prompt_ids_tokenize_specials_as_single_tokens(tiny_planner):
    ids = tiny_planner.prompt_ids(torch.randn(7, 64), INSTRUCTION)
    assert ids.count(tiny_planner.image_token_id) == 7
    tok = tiny_planner.tokenizer
    tail = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    assert tail[0] == tok.convert_tokens_to_ids("<|im_start|>") and ids[-len(tail):] == tail
    assert ids.count(tok.convert_tokens_to_ids("<img>")) == 1 and ids.count(tok.convert_tokens_to_ids("</img>")) == 1


def test_kv_cache_greedy_equals_full_recompute(tiny_planner):
    torch.manual_seed(0)
    vis = torch.randn(6, 64) * 3
    out = tiny_planner.generate(vis, INSTRUCTION, GenerationSettings(max_new_tokens=12, constrained=False))
    ids = torch.tensor([tiny_planner.prompt_ids(vis, INSTRUCTION)])
    expected = []
    with torch.no_grad():
        for _ in range(len(out.token_ids)):
            embeds = tiny_planner.splice(ids, [vis])
            tok = int(tiny_planner.lm(inputs_embeds=embeds).logits[0, -1].argmax())
            expected.append(tok)
            ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)
    assert list(out.token_ids) == expected
    assert out.stopped in ("eos", "max_new_tokens")
    if out.plan is None:
        assert out.error  # unconstrained text from a random model rarely parses: the error is kept


def test_score_masks_prompt_and_batches_like_single(tiny_planner):
    plans = ['[{"action":"pick","object":"red cube","box":[1,2,3,4]}]',
             '[{"action":"push","object":"a","box":[0,0,9,9],"target":"b","target_box":[5,5,6,6]}]']
    vis = [torch.randn(4, 64), torch.randn(8, 64)]
    batched = tiny_planner.score(vis, [INSTRUCTION, "push a to b"], plans)
    for i, (v, ins) in enumerate(zip(vis, [INSTRUCTION, "push a to b"], strict=True)):
        single = tiny_planner.score([v], [ins], [plans[i]])[0]
        n = len(tiny_planner.tokenizer(plans[i] + "<|im_end|>", add_special_tokens=False)["input_ids"])
        assert batched[i].shape == (n,) == single.shape
        torch.testing.assert_close(batched[i], single, rtol=0, atol=1e-5)
    # first scored token's log-prob equals log_softmax of the next-token logits
    first = torch.log_softmax(tiny_planner.next_token_logits(vis[0], INSTRUCTION), -1)
    first_tok = tiny_planner.tokenizer(plans[0], add_special_tokens=False)["input_ids"][0]
    torch.testing.assert_close(batched[0][0], first[first_tok], rtol=0, atol=1e-5)
    logits, labels = tiny_planner.forward_batch(vis, [INSTRUCTION, "x"], plans)
    n_prompt = len(tiny_planner.prompt_ids(vis[0], INSTRUCTION))
    assert (labels[0, :n_prompt] == -100).all() and (labels[0, n_prompt:][: len(batched[0])] != -100).all()
    assert batched[1].requires_grad  # usable for MPO/GSPO losses


def test_generate_measures_prefill_and_decode(tiny_planner, monkeypatch):
    """``PlanOutput.timings`` are the wall times of the prompt's forward pass (prefill) and of the
    token-by-token loop after it (decode), read from the clock around them."""
    import ivl_embodied.language.planner as planner_mod

    clock = iter(float(t) for t in range(100, 1000))  # each call: one more second
    monkeypatch.setattr(planner_mod.time, "perf_counter", lambda: next(clock))
    vis = torch.randn(6, 64)
    out = tiny_planner.generate(vis, INSTRUCTION, GenerationSettings(max_new_tokens=12, constrained=False))
    assert out.timings["prefill_ms"] == 1000.0  # t0 -> after the prompt's forward: one tick
    assert out.timings["decode_ms"] == 1000.0  # after the prompt -> after the loop: one tick
    assert out.timings["prompt_tokens"] == len(tiny_planner.prompt_ids(vis, INSTRUCTION))
    monkeypatch.undo()
    real = tiny_planner.generate(vis, INSTRUCTION)
    assert real.timings["prefill_ms"] > 0 and real.timings["decode_ms"] > 0
