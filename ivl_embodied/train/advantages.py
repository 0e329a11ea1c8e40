"""Group-normalised advantages for GSPO (and GRPO): ``A_i = (r_i - mean_g) / (std_g + eps)``.

Rewards arrive flat, ``[num_groups * group_size]``, with each group's samples contiguous (the
layout TRL's GRPO trainer uses: ``rewards.view(-1, G)``). The standard deviation is the sample
one (Bessel-corrected), as TRL's ``nanstd`` computes it, and ``eps = 1e-4`` as in TRL.

Degenerate groups get an explicit rule instead of whatever the arithmetic happens to give:
a group whose rewards are all equal (including a group of one) carries no preference signal, so
every sample in it gets advantage exactly 0. (TRL reaches 0 for equal groups via ``0 / (0 + eps)``
only when the float mean is exact, and for ``G = 1`` via ``nan_to_num``.)
"""

from __future__ import annotations

import torch

__all__ = ["group_advantages"]


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """``[B]`` rewards, groups of ``group_size`` contiguous samples -> ``[B]`` advantages."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"group_size {group_size} does not divide the batch of {rewards.numel()} rewards")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if torch.isnan(rewards).any():
        raise ValueError(f"rewards contain NaN: {rewards.tolist()}")
    grouped = rewards.float().view(-1, group_size)  # [num_groups, G]
    mean = grouped.mean(dim=1, keepdim=True)  # [num_groups, 1]
    if group_size > 1:
        std = grouped.std(dim=1, keepdim=True, unbiased=True)  # [num_groups, 1] sample std, as TRL
    else:
        std = torch.zeros_like(mean)  # [num_groups, 1]
    advantages = (grouped - mean) / (std + eps)  # [num_groups, G]
    # All-equal groups (and groups of one): no signal, advantage exactly zero.
    constant = (grouped == grouped[:, :1]).all(dim=1, keepdim=True)  # [num_groups, 1]
    advantages = torch.where(constant, torch.zeros_like(advantages), advantages)  # [num_groups, G]
    return advantages.view(-1).to(rewards.dtype if rewards.is_floating_point() else torch.float32)  # [B]
