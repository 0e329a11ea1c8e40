"""GSPO: simulator rewards, the direction of the update, zero-advantage groups, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ivl_embodied.plan.schema import Plan, format_plan, parse_plan
from ivl_embodied.train.config import ModelConfig, OptimConfig, TrainConfig
from ivl_embodied.train.data import PlanDataset
from ivl_embodied.train.gspo import (
    GSPOConfig,
    GSPOPolicy,
    collect_rollout,
    score_token_ids,
    train_gspo,
)
from ivl_embodied.train.rewards import RewardWeights, grounding_score, plan_reward


def _task(ex) -> dict:
    return {"seed": ex.seed, "instruction": ex.instruction, "goal": ex.goal}


# -- rewards ---------------------------------------------------------------------------------
def test_reward_oracle_plan_is_max_and_wrong_object_is_low(tiny_data):
    ds = PlanDataset(tiny_data[0])
    ex = ds.examples[0]
    w = RewardWeights()
    best = plan_reward(ex.plan, _task(ex), ex.plan, w)  # executes the oracle plan in the sim
    assert (best.parsed, best.grounding, best.success) == (1.0, 1.0, 1.0), best
    assert best.reward == pytest.approx(w.max_reward) == pytest.approx(1.0)
    # the same plan, IoU only: deterministic and much cheaper
    fast = plan_reward(ex.plan, _task(ex), ex.plan, RewardWeights(execute=False))
    assert fast.reward == pytest.approx(0.5) and not fast.executed
    # wrong object: every box moved onto a far-away region of the image
    ref = parse_plan(ex.plan)
    far = (0, 0, 40, 40)
    wrong = Plan(tuple(type(s)(s.action, s.object, far if s.box else None, s.target, far if s.target_box else None)
                       for s in ref.steps))
    low = plan_reward(format_plan(wrong), _task(ex), ex.plan, RewardWeights(execute=False))
    assert low.parsed == 1.0 and low.grounding < 0.05 and low.reward < fast.reward
    # unparseable text: 0 overall
    bad = plan_reward('[{"action":"fly"}]', _task(ex), ex.plan, w)
    assert bad.reward == 0.0 and bad.parsed == 0.0 and "unparseable" in bad.reason


def test_sim_reward_in_two_processes_equals_one_and_memoises(tiny_data):
    """A rollout's plans simulated by a 2-process pool score exactly as in this process, in order;
    repeated plans are simulated once."""
    from ivl_embodied.train.gspo import SimReward

    ds = PlanDataset(tiny_data[0])
    items = [(0, ds.examples[0].plan), (1, ds.examples[1].plan), (0, "not a plan"), (0, ds.examples[0].plan),
             (1, ds.examples[0].plan)]  # the last: another scene's boxes
    one = SimReward(ds, RewardWeights()).many(items)
    pooled = SimReward(ds, RewardWeights(), workers=2)
    try:
        two = pooled.many(items)
        assert two == one
        assert len(pooled.cache) == len(set(items))
        assert pooled(0, ds.examples[0].plan) == one[0]  # from the cache
    finally:
        pooled.close()
    assert one[0].success == 1.0 and one[2].parsed == 0.0
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        SimReward(ds, RewardWeights(), workers=0)


def test_grounding_score_matches_by_step_and_role_and_charges_extra_boxes():
    ref = parse_plan('[{"action":"pick","object":"red cube","box":[100,100,200,200]},'
                     '{"action":"place","object":"red cube","target":"green bowl","target_box":[300,300,400,400]}]')
    assert grounding_score(ref, ref) == 1.0
    swapped = parse_plan('[{"action":"pick","object":"red cube","box":[300,300,400,400]},'
                         '{"action":"place","object":"red cube","target":"green bowl","target_box":[100,100,200,200]}]')
    assert grounding_score(swapped, ref) == 0.0  # right boxes in the wrong roles earn nothing
    extra = parse_plan(format_plan(ref)[:-1] + ',{"action":"pick","object":"x","box":[0,0,9,9]}]')
    assert grounding_score(extra, ref) == pytest.approx(2 / 3)


# -- the GSPO step ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_init(tiny_data, tmp_path_factory):
    """A random tiny planner saved in the SFT layout (what --init takes)."""
    from ivl_embodied.train.sft import SFTModel, build_planner_modules, save_planner
    from ivl_embodied.train.tokenizer import train_planner_tokenizer

    ds = PlanDataset(tiny_data[0])
    torch.manual_seed(0)
    cfg = ModelConfig(tile_size=56, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64,
                      text_layers=2, text_heads=4, text_kv_heads=2, vocab_size=400)
    model = SFTModel(*build_planner_modules(cfg, train_planner_tokenizer(ds.corpus(), cfg.vocab_size)))
    out = tmp_path_factory.mktemp("gspo") / "init"
    save_planner(model, out)
    return out


def _policy(init, cfg: GSPOConfig) -> GSPOPolicy:
    from ivl_embodied.checkpoints.internvl import load_language, load_vision

    return GSPOPolicy(load_vision(init / "vision"), load_language(init / "language"), 1, cfg)


def _target_logp(policy: GSPOPolicy, ds: PlanDataset, idx: int, token_ids) -> float:
    with torch.no_grad():
        vis = policy.visuals(ds.pixel_values([idx]))
        return float(score_token_ids(policy.planner, vis, [ds.examples[idx].instruction], [token_ids])[0].sum())


def _gspo_steps(init, ds, reward_sign: float, steps: int = 3) -> tuple[list[float], list[float]]:
    """A few GSPO steps on prompt 0, reward = ±(fraction of the oracle plan's characters matched in place).

    Returns the log-probs of the first rollout's most and least rewarded samples, before and after.
    """
    cfg = GSPOConfig(group_size=8, max_new_tokens=120)
    policy = _policy(init, cfg)
    pv, ins, oracle = ds.pixel_values([0]), [ds.examples[0].instruction], ds.examples[0].plan

    def reward(i: int, text: str) -> float:
        same = sum(a == b for a, b in zip(text, oracle, strict=False))
        return reward_sign * same / max(len(text), len(oracle))

    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3, weight_decay=0.0)
    probe = None
    for step in range(steps):
        ro = collect_rollout(policy, pv, ins, [0], cfg, reward, (0, step))
        if probe is None:
            r = ro.rewards * reward_sign  # similarity to the oracle plan, whatever the sign
            probe = [ro.token_ids[int(r.argmax())], ro.token_ids[int(r.argmin())]]  # most, least similar
            before = [_target_logp(policy, ds, 0, t) for t in probe]
        loss, _ = policy({"pixel_values": pv, "instructions": ins, "rollout": ro})
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, [_target_logp(policy, ds, 0, t) for t in probe]


def test_gspo_raises_the_probability_of_the_rewarded_plan(tiny_data, tiny_init):
    ds = PlanDataset(tiny_data[0])
    (best0, worst0), (best1, worst1) = _gspo_steps(tiny_init, ds, +1.0)
    assert best1 > best0 + 1.0 and worst1 < worst0 - 1.0, (best0, best1, worst0, worst1)
    # the flipped reward: the same first rollout, the same two plans, pushed the other way
    (fbest0, fworst0), (fbest1, fworst1) = _gspo_steps(tiny_init, ds, -1.0)
    assert (fbest0, fworst0) == pytest.approx((best0, worst0))
    assert fbest1 < fbest0 - 1.0 and fworst1 > fworst0 + 1.0


def test_all_equal_rewards_give_zero_gradient(tiny_data, tiny_init):
    ds = PlanDataset(tiny_data[0])
    cfg = GSPOConfig(group_size=4, max_new_tokens=120)
    policy = _policy(tiny_init, cfg)
    pv, ins = ds.pixel_values([0, 1]), [ds.examples[i].instruction for i in (0, 1)]
    ro = collect_rollout(policy, pv, ins, [0, 1], cfg, lambda i, t: 0.7, (0, 0))
    assert torch.equal(ro.advantages, torch.zeros(8))
    loss, m = policy({"pixel_values": pv, "instructions": ins, "rollout": ro})
    loss.backward()
    grads = [p.grad for p in policy.parameters() if p.requires_grad]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    assert m["zero_adv_groups"] == 1.0 and m["ratio_dev_max"] < 1e-4  # π_old == π_θ before any update


def test_train_gspo_no_update_on_equal_rewards_and_exact_resume(tiny_data, tiny_init, tmp_path):
    data_dir, _ = tiny_data
    cfg = GSPOConfig(group_size=3, max_new_tokens=120, epochs=2)
    train = TrainConfig(steps=4, batch_size=2, eval_interval=1000, checkpoint_interval=1000, log_interval=1,
                        holdout=4, eval_examples=0, device="cpu")
    optim = OptimConfig(lr=1e-3, warmup_steps=0, weight_decay=0.0)

    def reward(i: int, text: str) -> float:  # deterministic, varies within a group
        return float(sum(map(ord, text)) % 7)

    kw = dict(gspo_cfg=cfg, train_cfg=train, optim_cfg=optim, reward_fn=reward, progress=False)
    # all-equal rewards: the weights do not move (no KL, no weight decay, zero advantages)
    flat = tmp_path / "flat"
    train_gspo(tiny_init, data_dir, flat, **{**kw, "reward_fn": lambda i, t: 1.0, "train_cfg": TrainConfig(
        **{**train.__dict__, "steps": 1})})
    for side in ("vision", "language"):
        init_w = load_file(str(tiny_init / side / "model.safetensors"))
        flat_w = load_file(str(flat / side / "model.safetensors"))
        assert all(torch.equal(init_w[k], flat_w[k]) for k in init_w), side
    # uninterrupted vs. stopped after step 1 (between the two epochs of a rollout) and resumed
    full, part = tmp_path / "full", tmp_path / "part"
    train_gspo(tiny_init, data_dir, full, **kw)
    train_gspo(tiny_init, data_dir, part, stop_after=1, **kw)
    assert (part / "rollouts").is_dir()
    train_gspo(tiny_init, data_dir, part, resume=True, **kw)
    a = load_file(str(full / "ckpt-0000004" / "model.safetensors"))
    b = load_file(str(part / "ckpt-0000004" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    init_lm = load_file(str(tiny_init / "language" / "model.safetensors"))
    full_lm = load_file(str(full / "language" / "model.safetensors"))
    assert any(not torch.equal(init_lm[k], full_lm[k]) for k in init_lm)  # it did train
    rows = json.loads((full / "metrics.json").read_text())
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4]
    assert (full / "vision" / "ivl_planner.json").is_file()
