"""Hand-computed checks of the Cascade RL / ViCO losses and the GSPO advantages."""

from __future__ import annotations

import math

import pytest
import torch

from ivl_embodied.train.advantages import group_advantages
from ivl_embodied.train.losses import (
    MPOWeights,
    RunningRewardShift,
    answer_logits,
    bco_pair_loss,
    dpo_sigmoid_loss,
    gspo_loss,
    masked_sum,
    mpo_loss,
    pad_token_logps,
    router_labels,
    router_loss,
    sft_loss,
    vico_consistency_loss,
)

LOG2 = math.log(2.0)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))  # -logσ(-x)


# -- MPO ---------------------------------------------------------------------------------------
def _mpo_inputs() -> dict[str, torch.Tensor]:
    chosen = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]], requires_grad=True)  # [2, 3]
    chosen_mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    rejected = torch.tensor([[-3.0, -1.0], [-2.0, -2.0]], requires_grad=True)  # [2, 2]
    rejected_mask = torch.ones(2, 2, dtype=torch.long)
    return {
        "policy_chosen_token_logps": chosen,
        "chosen_mask": chosen_mask,
        "policy_rejected_token_logps": rejected,
        "rejected_mask": rejected_mask,
    }


def test_mpo_equal_logps_gives_log2_terms() -> None:
    x = _mpo_inputs()
    ref_c = masked_sum(x["policy_chosen_token_logps"].detach(), x["chosen_mask"])
    ref_r = masked_sum(x["policy_rejected_token_logps"].detach(), x["rejected_mask"])
    out = mpo_loss(**x, ref_chosen_logps=ref_c, ref_rejected_logps=ref_r, beta=0.1)
    assert out.preference.item() == pytest.approx(LOG2, abs=1e-7)
    assert out.quality.item() == pytest.approx(2 * LOG2, abs=1e-7)
    sft = (1.0 + 2.0 + 0.5) / 3  # per chosen token over the batch, not a mean of per-sequence means
    assert out.generation.item() == pytest.approx(sft, abs=1e-7)
    assert out.total.item() == pytest.approx(0.8 * LOG2 + 0.2 * 2 * LOG2 + sft, abs=1e-6)
    assert torch.equal(out.chosen_rewards, torch.zeros(2))


def test_mpo_hand_computed_pair_and_weights() -> None:
    # one pair: chosen logratio 2, rejected logratio -1, beta 0.5
    chosen = torch.tensor([[-1.0]])
    rejected = torch.tensor([[-4.0]])
    out = mpo_loss(
        chosen, torch.ones(1, 1), rejected, torch.ones(1, 1),
        ref_chosen_logps=torch.tensor([-3.0]), ref_rejected_logps=torch.tensor([-3.0]),
        beta=0.5, weights=MPOWeights(preference=2.0, quality=3.0, generation=0.5),
    )
    dpo = softplus(-0.5 * 3.0)
    bco = softplus(-1.0) + softplus(-0.5)  # -logσ(1.0) - logσ(0.5)
    assert out.preference.item() == pytest.approx(dpo, abs=1e-6)
    assert out.quality.item() == pytest.approx(bco, abs=1e-6)
    assert out.generation.item() == pytest.approx(1.0, abs=1e-7)
    assert out.total.item() == pytest.approx(2.0 * dpo + 3.0 * bco + 0.5 * 1.0, abs=1e-6)


def test_bco_reward_shift_and_running_mean() -> None:
    c, r = torch.tensor([2.0]), torch.tensor([-1.0])
    loss = bco_pair_loss(c, r, beta=0.5, reward_shift=0.25)
    assert loss.item() == pytest.approx(softplus(-(1.0 - 0.25)) + softplus(-0.5 - 0.25), abs=1e-6)
    assert dpo_sigmoid_loss(c, r, beta=0.5).item() == pytest.approx(softplus(-1.5), abs=1e-6)
    shift = RunningRewardShift()
    assert shift.update(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])) == pytest.approx(1.0)
    assert shift.update(torch.tensor([-2.0]), torch.tensor([0.0])) == pytest.approx(0.0)  # (1 + -1) / 2
    assert shift.count == 2


def test_mpo_padding_is_ignored_and_reference_gets_no_grad() -> None:
    x = _mpo_inputs()
    ref_c = torch.tensor([-2.5, -1.0], requires_grad=True)
    ref_r = torch.tensor([-3.5, -4.5], requires_grad=True)
    base = mpo_loss(**x, ref_chosen_logps=ref_c, ref_rejected_logps=ref_r)
    garbage = x["policy_chosen_token_logps"].detach().clone()
    garbage[0, 2], garbage[1, 1:] = -math.inf, 1e6  # padded positions
    x2 = dict(x, policy_chosen_token_logps=garbage.requires_grad_(True))
    other = mpo_loss(**x2, ref_chosen_logps=ref_c, ref_rejected_logps=ref_r)
    assert other.total.item() == pytest.approx(base.total.item(), abs=1e-7)
    base.total.backward()
    assert ref_c.grad is None and ref_r.grad is None
    grad = x["policy_chosen_token_logps"].grad
    assert grad is not None and grad[0, 2] == 0 and (grad[1, 1:] == 0).all() and grad[0, 0] != 0


def test_sft_all_masked_is_zero_not_nan() -> None:
    assert sft_loss(torch.zeros(2, 3), torch.zeros(2, 3)).item() == 0.0


def test_pad_token_logps_round_trip() -> None:
    a = torch.tensor([-1.0, -2.0], requires_grad=True)
    b = torch.tensor([-0.5])
    padded, mask = pad_token_logps([a, b])
    assert padded.shape == (2, 2) and mask.tolist() == [[True, True], [True, False]]
    assert masked_sum(padded, mask).tolist() == [-3.0, -0.5]
    padded.sum().backward()
    assert a.grad is not None


def test_mpo_errors() -> None:
    x = _mpo_inputs()
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 2\)"):
        mpo_loss(**dict(x, chosen_mask=torch.ones(2, 2)), ref_chosen_logps=torch.zeros(2),
                 ref_rejected_logps=torch.zeros(2))
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        mpo_loss(**x, ref_chosen_logps=torch.zeros(3), ref_rejected_logps=torch.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        mpo_loss(**x, ref_chosen_logps=torch.tensor([0.0, math.nan]), ref_rejected_logps=torch.zeros(2))
    nan_tokens = x["policy_rejected_token_logps"].detach().clone()
    nan_tokens[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        mpo_loss(**dict(x, policy_rejected_token_logps=nan_tokens), ref_chosen_logps=torch.zeros(2),
                 ref_rejected_logps=torch.zeros(2))
    with pytest.raises(ValueError, match="-1"):
        MPOWeights(preference=-1.0)


# -- GSPO advantages ----------------------------------------------------------------------------
def test_group_advantages_hand_computed() -> None:
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 4.0]), group_size=3)
    # group 1: mean 2, sample std 1; group 2: mean 4/3, sample std sqrt(16/3)
    s2 = math.sqrt(16 / 3)
    expected = [-1 / 1.0001, 0.0, 1 / 1.0001, (-4 / 3) / (s2 + 1e-4), (-4 / 3) / (s2 + 1e-4), (8 / 3) / (s2 + 1e-4)]
    assert adv.tolist() == pytest.approx(expected, abs=1e-6)


def test_group_advantages_all_equal_groups_are_zero() -> None:
    adv = group_advantages(torch.tensor([0.9, 0.9, 0.9, 5.0, 5.0, 5.0]), group_size=3)
    assert torch.equal(adv, torch.zeros(6))  # exactly zero, even where the float mean is inexact
    assert torch.equal(group_advantages(torch.tensor([3.0, -1.0]), group_size=1), torch.zeros(2))


def test_group_advantages_errors() -> None:
    with pytest.raises(ValueError, match="group_size 4"):
        group_advantages(torch.zeros(6), group_size=4)
    with pytest.raises(ValueError, match="NaN"):
        group_advantages(torch.tensor([1.0, math.nan]), group_size=2)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        group_advantages(torch.zeros(2, 3), group_size=3)


# -- GSPO loss ------------------------------------------------------------------------------------
def test_gspo_ratio_one_gives_minus_mean_advantage_and_hand_gradient() -> None:
    old = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.7, 0.0]])
    new = old.clone().requires_grad_(True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([2.0, -1.0])
    out = gspo_loss(new, old, adv, mask)
    assert out.loss.item() == pytest.approx(-0.5, abs=1e-7)
    assert out.ratio.tolist() == [1.0, 1.0] and not out.clipped.any()
    out.loss.backward()
    # d/d logp_it of -s_i A_i / B = -A_i s_i / (n_i B)
    expected = torch.tensor([[-2 / 6] * 3, [1 / 4, 1 / 4, 0.0]])
    assert torch.allclose(new.grad, expected, atol=1e-7)


def test_gspo_clipping_engages_beyond_bounds_with_zero_gradient() -> None:
    old = torch.zeros(4, 2)
    # sequence log-ratios: +1e-3 (above 1+4e-4), -1e-3 (below 1-3e-4), +1e-4 (inside), -1e-3 (A<0)
    shift = torch.tensor([1e-3, -1e-3, 1e-4, 1e-3])
    new = (old + shift[:, None]).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    out = gspo_loss(new, old, adv, torch.ones(4, 2))
    assert out.clipped.tolist() == [True, True, False, False]
    s = torch.exp(shift)
    per_seq = [-(1 + 4e-4) * 1.0, (1 - 3e-4) * 1.0, -float(s[2]), float(s[3])]
    assert out.loss.item() == pytest.approx(sum(per_seq) / 4, abs=1e-7)
    out.loss.backward()
    assert (new.grad[:2] == 0).all()  # clipped: no gradient
    assert (new.grad[2:] != 0).all()  # pessimistic unclipped branch keeps its gradient
    # A<0 with s above the upper bound: the unclipped branch is the pessimistic one (not clipped)
    assert new.grad[3, 0].item() == pytest.approx(float(s[3]) / (2 * 4), abs=1e-7)


def test_gspo_padding_tokens_do_not_change_the_result() -> None:
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(3, 5, generator=g)
    new = old + 2e-4 * torch.randn(3, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    adv = torch.tensor([0.3, -1.0, 0.8])
    base = gspo_loss(new, old, adv, mask).loss
    new2, old2 = new.clone(), old.clone()
    new2[mask == 0], old2[mask == 0] = 5.0, -math.inf
    assert gspo_loss(new2, old2, adv, mask).loss.item() == pytest.approx(base.item(), abs=1e-7)
    # unmasking those tokens does change it (so the mask is what made the difference)
    assert gspo_loss(new2, old2.clamp(min=-9), adv, torch.ones(3, 5)).loss.item() != pytest.approx(base.item(),
                                                                                                   abs=1e-4)


def test_gspo_empty_sequence_left_out_of_the_mean() -> None:
    old = torch.zeros(2, 2)
    out = gspo_loss(old.clone(), old, torch.tensor([2.0, 100.0]), torch.tensor([[1, 1], [0, 0]]))
    assert out.loss.item() == pytest.approx(-2.0)
    assert gspo_loss(old, old, torch.tensor([1.0, 1.0]), torch.zeros(2, 2)).loss.item() == 0.0


def test_gspo_errors() -> None:
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        gspo_loss(z, torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        gspo_loss(z, z, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        gspo_loss(z, z, torch.tensor([0.0, math.nan]), torch.ones(2, 3))
    with pytest.raises(ValueError, match="epsilon"):
        gspo_loss(z, z, torch.zeros(2), torch.ones(2, 3), epsilon_low=1.5)


# -- ViCO consistency ----------------------------------------------------------------------------
def test_vico_identical_logits_give_zero() -> None:
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(0))
    loss = vico_consistency_loss(logits.clone().requires_grad_(True), logits, torch.ones(2, 4))
    assert abs(loss.item()) < 1e-7


def test_vico_two_token_hand_case_and_mask() -> None:
    ln3, ln9 = math.log(3.0), math.log(9.0)
    ref = torch.tensor([[[0.0, 0.0], [ln3, 0.0], [9.0, -9.0]]])  # [1, 3, 2]
    pol = torch.tensor([[[ln9, 0.0], [0.0, 0.0], [-9.0, 9.0]]])  # third token is masked out
    mask = torch.tensor([[1, 1, 0]])
    kl1 = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # p_ref=(.5,.5), q=(.9,.1)
    kl2 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # p_ref=(.75,.25), q=(.5,.5)
    loss = vico_consistency_loss(pol, ref, mask)
    assert loss.item() == pytest.approx((kl1 + kl2) / 2, abs=1e-6)
    reverse = (0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
               + 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    assert abs(loss.item() - reverse / 2) > 1e-2  # the direction is KL(ref || policy), not the reverse
    assert vico_consistency_loss(pol, ref, torch.ones(1, 3)).item() > loss.item() + 1.0


def test_vico_gradient_flows_only_into_the_policy() -> None:
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(2, 3, 5, generator=g, requires_grad=True)
    pol = torch.randn(2, 3, 5, generator=g, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    vico_consistency_loss(pol, ref, mask).backward()
    assert ref.grad is None
    assert pol.grad is not None and pol.grad[0, 0].abs().sum() > 0
    assert (pol.grad[0, 2] == 0).all() and (pol.grad[1, 1:] == 0).all()


def test_answer_logits_aligns_runs_with_different_prompt_lengths() -> None:
    # run A: prompt of 2, answer tokens at 2..3; run B: prompt of 4, answer at 4..5
    la = torch.tensor([[-100, -100, 7, 8]])
    lb = torch.tensor([[-100, -100, -100, -100, 7, 8]])
    logits_a = torch.arange(4.0).view(1, 4, 1).expand(1, 4, 3)
    logits_b = torch.arange(6.0).view(1, 6, 1).expand(1, 6, 3)
    ans_a, mask_a = answer_logits(logits_a, la)
    ans_b, mask_b = answer_logits(logits_b, lb)
    assert ans_a[0, :, 0].tolist() == [1.0, 2.0] and ans_b[0, :, 0].tolist() == [3.0, 4.0]
    assert mask_a.tolist() == mask_b.tolist() == [[True, True]]


def test_vico_errors() -> None:
    with pytest.raises(ValueError, match=r"\(1, 2, 3\).*\(1, 2, 4\)"):
        vico_consistency_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        vico_consistency_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        vico_consistency_loss(torch.full((1, 2, 3), math.nan), torch.zeros(1, 2, 3), torch.ones(1, 2))


# -- router labels and loss -----------------------------------------------------------------------
def test_router_labels_hand_computed_with_zero_losses() -> None:
    l64 = torch.tensor([1.0, 2.0, 0.5, 0.0, 1.0, 1.05])
    l256 = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    out = router_labels(l64, l256, tau=1.05)
    assert out.ratio.tolist() == pytest.approx([1.0, 2.0, 0.5, 1.0, math.inf, 1.05])
    assert out.labels.tolist() == [1, 0, 1, 1, 0, 0]  # ratio == τ keeps 256 (strict <)
    assert not torch.isnan(out.ratio).any()
    assert router_labels(l64, l256, tau=0.9).labels.tolist() == [0, 0, 1, 0, 0, 0]


def test_router_labels_errors() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        router_labels(torch.tensor([-0.1]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        router_labels(torch.tensor([math.nan]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        router_labels(torch.zeros(2), torch.zeros(3))


def test_router_loss_probs_logits_and_class_balance() -> None:
    probs = torch.tensor([[0.25, 0.75], [0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    labels = torch.tensor([1, 0, 1, 1])
    nll = [-math.log(0.75), -math.log(0.9), -math.log(0.5), -math.log(0.8)]
    assert router_loss(probs, labels).item() == pytest.approx(sum(nll) / 4, abs=1e-6)
    balanced = ((nll[0] + nll[2] + nll[3]) / 3 + nll[1]) / 2
    assert router_loss(probs, labels, class_balanced=True).item() == pytest.approx(balanced, abs=1e-6)
    logits = torch.log(probs) + 3.0
    assert router_loss(logits, labels, from_logits=True).item() == pytest.approx(sum(nll) / 4, abs=1e-6)
    logits.requires_grad_(True)
    router_loss(logits, labels, from_logits=True).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="probabilities"):
        router_loss(logits.detach(), labels)
    with pytest.raises(ValueError, match=r"\(4, 2\).*\(3,\)"):
        router_loss(probs, labels[:3])
    with pytest.raises(ValueError, match="0/1"):
        router_loss(probs, torch.tensor([1, 0, 2, 1]))
