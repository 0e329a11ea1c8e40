"""Cascade RL and ViCO losses: MPO (offline), GSPO (online), ViCO consistency, ViR router labels.

Plain functions over named tensors. Conventions:

* ``B`` sequences (or preference pairs), ``T`` completion tokens, ``V`` vocabulary, ``N`` tiles.
* Per-token log-probs come with a mask of the same shape (bool or 0/1); masked-out positions
  never reach the result, whatever they hold (``torch.where``, not multiplication, so even
  ``inf`` padding is harmless).
* Masked means use an explicit normaliser ``mask.sum().clamp(min=1)``.
* Shape mismatches raise ``ValueError`` naming both shapes; NaN inputs raise ``ValueError``.

Formulas (see each function for details):

* MPO = 0.8·DPO-sigmoid + 0.2·BCO-pair + 1.0·SFT, term for term as TRL 1.16's ``DPOTrainer``
  with ``loss_type=["sigmoid", "bco_pair", "sft"]`` (``reward_shift=0`` reproduces TRL 1.16,
  which dropped BCO's running shift δ; pass δ from :class:`RunningRewardShift` for the paper's form).
* GSPO: ``s_i = exp(masked-mean_t(logπ_θ - logπ_old))``,
  ``loss = mean_i -min(s_i·A_i, clip(s_i, 1-ε_low, 1+ε_high)·A_i)``.
* ViCO: ``KL(π_ref(·|256 tokens) ‖ π(·|mixed 256/64))`` per answer token, masked mean.
* Router labels: compress (1) when ``L64 / L256 < τ``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "GSPOLoss",
    "MPOLoss",
    "MPOWeights",
    "RouterLabels",
    "RunningRewardShift",
    "answer_logits",
    "bco_pair_loss",
    "dpo_sigmoid_loss",
    "gspo_loss",
    "masked_sum",
    "mpo_loss",
    "pad_token_logps",
    "router_labels",
    "router_loss",
    "sequence_log_ratio",
    "sft_loss",
    "vico_consistency_loss",
]


# -- checks ----------------------------------------------------------------------------------
def _same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} shape {tuple(a.shape)} != {name_b} shape {tuple(b.shape)}")


def _no_nan(name: str, t: torch.Tensor) -> None:
    if t.is_floating_point() and torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN (shape {tuple(t.shape)})")


def _dim(name: str, t: torch.Tensor, dim: int) -> None:
    if t.dim() != dim:
        raise ValueError(f"{name} must be {dim}-D, got shape {tuple(t.shape)}")


def _bool_mask(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


# -- token log-prob helpers ------------------------------------------------------------------
def pad_token_logps(token_logps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged per-token log-probs (``LanguagePlanner.score``) -> ``([B, T], mask [B, T])``."""
    if not token_logps:
        raise ValueError("need at least one sequence of token log-probs")
    for i, t in enumerate(token_logps):
        _dim(f"token_logps[{i}]", t, 1)
    length = max(t.numel() for t in token_logps)
    padded = torch.stack([F.pad(t, (0,
                                    length - t.numel())) for t in token_logps])  # [B, T] right-padded, differentiable
    mask = torch.zeros((len(token_logps), length), dtype=torch.bool, device=padded.device)  # [B, T]
    for b, t in enumerate(token_logps):
        mask[b, : t.numel()] = True
    return padded, mask


def masked_sum(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` per-token log-probs, ``[B, T]`` mask -> ``[B]`` sequence log-probs."""
    _dim("token_logps", token_logps, 2)
    _same_shape("token_logps", token_logps, "mask", mask)
    _no_nan("token_logps", token_logps)
    keep = _bool_mask(mask)
    return torch.where(keep, token_logps, torch.zeros_like(token_logps)).sum(dim=-1)  # [B]


# -- MPO (offline RL) --------------------------------------------------------------------------
@dataclass(frozen=True)
class MPOWeights:
    """InternVL3.5's MPO mix: preference (DPO-sigmoid), quality (BCO-pair), generation (SFT)."""

    preference: float = 0.8
    quality: float = 0.2
    generation: float = 1.0

    def __post_init__(self) -> None:
        for name in ("preference", "quality", "generation"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"MPO weight {name} must be finite and >= 0, got {value}")


class MPOLoss(NamedTuple):
    total: torch.Tensor  # [] weighted sum
    preference: torch.Tensor  # [] DPO-sigmoid, mean over pairs
    quality: torch.Tensor  # [] BCO-pair, mean over pairs
    generation: torch.Tensor  # [] SFT NLL per chosen token
    chosen_rewards: torch.Tensor  # [B] β·(logπ - logπ_ref)(chosen), detached
    rejected_rewards: torch.Tensor  # [B] β·(logπ - logπ_ref)(rejected), detached


def dpo_sigmoid_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair DPO: ``-logσ(β·(chosen_logratio - rejected_logratio))`` -> ``[B]`` (no label smoothing)."""
    _same_shape("chosen_logratios", chosen_logratios, "rejected_logratios", rejected_logratios)
    return -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))  # [B]


def bco_pair_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    beta: float,
    reward_shift: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Per-pair BCO: ``-logσ(r_c - δ) - logσ(-(r_r - δ))`` with ``r = β·logratio`` -> ``[B]``.

    ``reward_shift`` is δ. TRL 1.16 computes this term with δ = 0; the BCO paper (and TRL before
    it removed ``RunningMoments``) uses the running mean of past rewards, see
    :class:`RunningRewardShift`. δ is treated as a constant (detached).
    """
    _same_shape("chosen_logratios", chosen_logratios, "rejected_logratios", rejected_logratios)
    delta = torch.as_tensor(reward_shift, dtype=chosen_logratios.dtype, device=chosen_logratios.device).detach()
    _no_nan("reward_shift", delta)
    chosen_rewards = beta * chosen_logratios  # [B]
    rejected_rewards = beta * rejected_logratios  # [B]
    return -F.logsigmoid(chosen_rewards - delta) - F.logsigmoid(-(rejected_rewards - delta))  # [B]


def sft_loss(chosen_token_logps: torch.Tensor, chosen_mask: torch.Tensor) -> torch.Tensor:
    """NLL of the chosen responses per token over the whole batch (TRL's ``sft`` term) -> ``[]``.

    ``-Σ_{b,t} mask·logp / Σ mask``: long responses weigh more than short ones, as in TRL
    (``-logps[mask].mean()``). An all-masked batch gives 0 where TRL would give NaN.
    """
    _dim("chosen_token_logps", chosen_token_logps, 2)
    _same_shape("chosen_token_logps", chosen_token_logps, "chosen_mask", chosen_mask)
    _no_nan("chosen_token_logps", chosen_token_logps)
    keep = _bool_mask(chosen_mask)
    nll = torch.where(keep, -chosen_token_logps, torch.zeros_like(chosen_token_logps))  # [B, T]
    return nll.sum() / keep.sum().clamp(min=1)


class RunningRewardShift:
    """BCO's δ: running mean of the per-batch mean reward ``mean(cat(chosen_r, rejected_r))``.

    Each call to :meth:`update` adds one batch (weight 1, as TRL's old ``RunningMoments`` did
    with the scalar batch mean) and returns the mean *including* that batch, which is the δ TRL
    used for the same step. Call ``update`` once per optimiser step on detached rewards.
    """

    def __init__(self) -> None:
        self.mean = 0.0
        self.count = 0

    def update(self, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> float:
        _no_nan("chosen_rewards", chosen_rewards)
        _no_nan("rejected_rewards", rejected_rewards)
        batch_mean = float(torch.cat([chosen_rewards.detach().flatten(), rejected_rewards.detach().flatten()]).mean())
        self.count += 1
        self.mean += (batch_mean - self.mean) / self.count
        return self.mean


def mpo_loss(
    policy_chosen_token_logps: torch.Tensor,
    chosen_mask: torch.Tensor,
    policy_rejected_token_logps: torch.Tensor,
    rejected_mask: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    reward_shift: float | torch.Tensor = 0.0,
    weights: MPOWeights = MPOWeights(),
) -> MPOLoss:
    """Mixed Preference Optimisation = w_p·DPO-sigmoid + w_q·BCO-pair + w_g·SFT.

    Args:
        policy_chosen_token_logps: ``[B, Tc]`` per-token log-probs of the chosen responses.
        chosen_mask: ``[B, Tc]`` which of those are response tokens.
        policy_rejected_token_logps: ``[B, Tr]``; rejected_mask: ``[B, Tr]``.
        ref_chosen_logps, ref_rejected_logps: ``[B]`` summed log-probs under the frozen
            reference (use :func:`masked_sum` on per-token ones); detached here.
        beta: DPO/BCO temperature (TRL's default 0.1).
        reward_shift: BCO's δ (0 = TRL 1.16).
    """
    for name, t in (("ref_chosen_logps", ref_chosen_logps), ("ref_rejected_logps", ref_rejected_logps)):
        _dim(name, t, 1)
        _no_nan(name, t)
    if beta <= 0 or not math.isfinite(beta):
        raise ValueError(f"beta must be finite and > 0, got {beta}")
    chosen_logps = masked_sum(policy_chosen_token_logps, chosen_mask)  # [B]
    rejected_logps = masked_sum(policy_rejected_token_logps, rejected_mask)  # [B]
    _same_shape("chosen sequence logps", chosen_logps, "ref_chosen_logps", ref_chosen_logps)
    _same_shape("rejected sequence logps", rejected_logps, "ref_rejected_logps", ref_rejected_logps)
    chosen_logratios = chosen_logps - ref_chosen_logps.detach()  # [B]
    rejected_logratios = rejected_logps - ref_rejected_logps.detach()  # [B]

    preference = dpo_sigmoid_loss(chosen_logratios, rejected_logratios, beta).mean()
    quality = bco_pair_loss(chosen_logratios, rejected_logratios, beta, reward_shift).mean()
    generation = sft_loss(policy_chosen_token_logps, chosen_mask)
    total = weights.preference * preference + weights.quality * quality + weights.generation * generation
    return MPOLoss(
        total=total,
        preference=preference,
        quality=quality,
        generation=generation,
        chosen_rewards=(beta * chosen_logratios).detach(),
        rejected_rewards=(beta * rejected_logratios).detach(),
    )


# -- GSPO (online RL) --------------------------------------------------------------------------
class GSPOLoss(NamedTuple):
    loss: torch.Tensor  # [] mean over non-empty sequences
    ratio: torch.Tensor  # [B] sequence importance ratio s_i (1 for empty sequences)
    clipped: torch.Tensor  # [B] bool: the clipped branch was taken (no gradient through s_i)


def sequence_log_ratio(token_logps: torch.Tensor, old_token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` x2, mask ``[B, T]`` -> ``[B]`` masked mean of ``logπ_θ - logπ_old`` per sequence."""
    _dim("token_logps", token_logps, 2)
    _same_shape("token_logps", token_logps, "old_token_logps", old_token_logps)
    _same_shape("token_logps", token_logps, "mask", mask)
    _no_nan("token_logps", token_logps)
    _no_nan("old_token_logps", old_token_logps)
    keep = _bool_mask(mask)
    diff = torch.where(keep, token_logps - old_token_logps.detach(), torch.zeros_like(token_logps))  # [B, T]
    return diff.sum(dim=-1) / keep.sum(dim=-1).clamp(min=1)  # [B]


def gspo_loss(
    token_logps: torch.Tensor,
    old_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon_low: float = 3e-4,
    epsilon_high: float = 4e-4,
) -> GSPOLoss:
    """Group Sequence Policy Optimisation (Zheng et al. 2025), no KL, no reference model.

    ``s_i = exp(Σ_t m_it (logπ_θ - logπ_old)_it / Σ_t m_it)``;
    ``loss = Σ_i v_i · -min(s_i·A_i, clip(s_i, 1-ε_low, 1+ε_high)·A_i) / Σ_i v_i`` where
    ``v_i`` marks sequences with at least one token (an empty sequence has nothing to train, so it
    is left out of the mean; TRL instead counts it as a 0 in the mean). Defaults are the paper's
    ε_low = 3e-4, ε_high = 4e-4.

    Args:
        token_logps: ``[B, T]`` current policy, differentiable.
        old_token_logps: ``[B, T]`` the sampling policy (detached here).
        advantages: ``[B]`` (see :func:`ivl_embodied.train.advantages.group_advantages`).
        mask: ``[B, T]`` completion tokens.
    """
    if not (0 <= epsilon_low < 1 and epsilon_high >= 0):
        raise ValueError(f"need 0 <= epsilon_low < 1 and epsilon_high >= 0, got {epsilon_low}, {epsilon_high}")
    _dim("advantages", advantages, 1)
    if advantages.shape[0] != token_logps.shape[0]:
        raise ValueError(f"advantages shape {tuple(advantages.shape)} != token_logps shape "
                         f"{tuple(token_logps.shape)} batch")
    _no_nan("advantages", advantages)
    log_ratio = sequence_log_ratio(token_logps, old_token_logps, mask)  # [B]
    ratio = torch.exp(log_ratio)  # [B] s_i
    clipped_ratio = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # [B]
    unclipped_obj = ratio * advantages  # [B]
    clipped_obj = clipped_ratio * advantages  # [B]
    per_sequence = -torch.min(unclipped_obj, clipped_obj)  # [B]
    valid = _bool_mask(mask).any(dim=-1)  # [B]
    per_sequence = torch.where(valid, per_sequence, torch.zeros_like(per_sequence))  # [B]
    loss = per_sequence.sum() / valid.sum().clamp(min=1)
    clipped = (clipped_obj < unclipped_obj) & valid  # [B]
    return GSPOLoss(loss=loss, ratio=ratio.detach(), clipped=clipped)


# -- ViCO consistency ----------------------------------------------------------------------------
def answer_logits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather the logits that predict answer tokens, left-aligned.

    ``logits [B, L, V]`` and ``labels [B, L]`` (``-100`` off the answer, as ``forward_batch``
    returns them) -> ``(answer_logits [B, A, V], mask [B, A])``, ``A`` = longest answer. The
    logit at position ``t`` predicts label ``t+1``. This lines up the 256-token and the
    mixed 256/64-token runs, whose prompts differ in length, answer token by answer token.
    """
    _dim("logits", logits, 3)
    _dim("labels", labels, 2)
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits shape {tuple(logits.shape)} does not match labels shape {tuple(labels.shape)}")
    predicts = labels[:, 1:] != -100  # [B, L-1] position t predicts an answer token
    counts = predicts.sum(dim=-1)  # [B]
    length = int(counts.max()) if counts.numel() else 0
    out = logits.new_zeros((logits.shape[0], length, logits.shape[2]))  # [B, A, V]
    mask = torch.zeros((logits.shape[0], length), dtype=torch.bool, device=logits.device)  # [B, A]
    rows = []
    for b in range(logits.shape[0]):
        sel = logits[b, :-1][predicts[b]]  # [A_b, V]
        rows.append(F.pad(sel, (0, 0, 0, length - sel.shape[0])))  # [A, V]
        mask[b, : sel.shape[0]] = True
    if rows:
        out = torch.stack(rows)  # [B, A, V]
    return out, mask


def vico_consistency_loss(policy_logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``KL(π_ref ‖ π_θ)`` per answer token, masked mean -> ``[]``.

    ``π_ref`` = the model with every tile at 256 tokens (``ref_logits``, detached: the target),
    ``π_θ`` = the model with a per-tile random 256/64 choice (``policy_logits``). Both
    ``[B, A, V]`` aligned on answer tokens (see :func:`answer_logits`); ``mask [B, A]``.
    ``KL_t = Σ_v p_ref,v (log p_ref,v - log p_θ,v)``; computed in float32.
    """
    _dim("policy_logits", policy_logits, 3)
    _same_shape("policy_logits", policy_logits, "ref_logits", ref_logits)
    if mask.shape != policy_logits.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} != policy_logits shape {tuple(policy_logits.shape)}[:2]")
    _no_nan("policy_logits", policy_logits)
    _no_nan("ref_logits", ref_logits)
    ref_logp = torch.log_softmax(ref_logits.detach().float(), dim=-1)  # [B, A, V]
    pol_logp = torch.log_softmax(policy_logits.float(), dim=-1)  # [B, A, V]
    kl = F.kl_div(pol_logp, ref_logp, reduction="none", log_target=True).sum(dim=-1)  # [B, A]
    keep = _bool_mask(mask)
    kl = torch.where(keep, kl, torch.zeros_like(kl))  # [B, A]
    return kl.sum() / keep.sum().clamp(min=1)


# -- ViR router labels ---------------------------------------------------------------------------
DEFAULT_ROUTER_TAU = 1.05


class RouterLabels(NamedTuple):
    labels: torch.Tensor  # [N] long: 1 = compress to 64 tokens, 0 = keep 256
    ratio: torch.Tensor  # [N] L64 / L256 (1 when both are 0, inf when only L256 is 0)


def router_labels(loss_64: torch.Tensor, loss_256: torch.Tensor, tau: float = DEFAULT_ROUTER_TAU) -> RouterLabels:
    """ViCO router targets: compress (1) when ``r = L(y|64) / L(y|256) < τ``.

    ``r`` near 1 means compressing costs nothing. InternVL3.5 thresholds this ratio; the default
    τ = 1.05 (compress when it raises the answer NLL by less than 5 %) is this project's choice,
    not a number taken from the paper. Zero losses: ``L256 = L64 = 0`` gives ``r = 1`` (compression
    costs nothing), ``L256 = 0 < L64`` gives ``r = inf`` (keep); no division by zero. Losses are
    NLLs, so negative values raise.
    """
    _dim("loss_64", loss_64, 1)
    _same_shape("loss_64", loss_64, "loss_256", loss_256)
    _no_nan("loss_64", loss_64)
    _no_nan("loss_256", loss_256)
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be finite and > 0, got {tau}")
    if (loss_64 < 0).any() or (loss_256 < 0).any():
        raise ValueError(f"NLL losses must be >= 0, got loss_64={loss_64.tolist()} loss_256={loss_256.tolist()}")
    l64, l256 = loss_64.detach().float(), loss_256.detach().float()  # [N]
    safe = torch.where(l256 > 0, l256, torch.ones_like(l256))  # [N] avoids 0/0
    ratio = torch.where(
        l256 > 0,
        l64 / safe,
        torch.where(l64 > 0, torch.full_like(l64, math.inf), torch.ones_like(l64)),
    )  # [N]
    return RouterLabels(labels=(ratio < tau).long(), ratio=ratio)


def router_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    from_logits: bool = False,
    class_balanced: bool = False,
) -> torch.Tensor:
    """Cross-entropy of the router's ``[N, 2]`` output against ``[N]`` labels (1 = compress).

    ``scores`` are softmax probabilities (``VisualResolutionRouter.forward``) unless
    ``from_logits``. Plain: mean over tiles. Class-balanced: the mean of the per-class mean
    losses over the classes present, so a rare class weighs as much as a common one.
    """
    _dim("scores", scores, 2)
    if scores.shape[1] != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores shape {tuple(scores.shape)} must be [N, 2] with labels [N], "
                         f"got labels shape {tuple(labels.shape)}")
    _no_nan("scores", scores)
    if labels.is_floating_point() or ((labels != 0) & (labels != 1)).any():
        raise ValueError(f"labels must be integer 0/1, got {labels.tolist()}")
    if from_logits:
        logp = torch.log_softmax(scores.float(), dim=-1)  # [N, 2]
    else:
        if (scores < 0).any() or not torch.allclose(scores.sum(-1), torch.ones_like(scores[:, 0]), atol=1e-4):
            raise ValueError("scores must be probabilities (rows >= 0 summing to 1); pass from_logits=True for logits")
        logp = torch.log(scores.float().clamp(min=torch.finfo(torch.float32).tiny))  # [N, 2]
    nll = -logp.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)  # [N]
    if not class_balanced:
        return nll.mean()
    per_class = []
    for c in (0, 1):
        sel = labels == c  # [N]
        if sel.any():
            per_class.append(nll[sel].mean())
    return torch.stack(per_class).mean()
