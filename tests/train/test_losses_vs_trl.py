"""MPO and GSPO against TRL's own loss code on identical inputs.

MPO: a real ``DPOTrainer`` (``loss_type=["sigmoid", "bco_pair", "sft"]``,
``loss_weights=[0.8, 0.2, 1.0]``) around a tiny random Llama and a perturbed copy as reference;
``DPOTrainer._compute_loss`` runs TRL's fused-LM-head forward on a hand-built chosen/rejected
batch, and ours gets the per-token log-probs of the same models on the same batch.

GSPO: a real ``GRPOTrainer`` (``importance_sampling_level="sequence"``, ``beta=0``,
``loss_type="grpo"``, ε = 3e-4 / 4e-4) whose per-token log-prob forward is replaced by the
test's tensor, so ``GRPOTrainer._compute_loss`` runs on exactly our inputs. Both trainers are
put in eval mode, where TRL does not divide by the gradient-accumulation steps.
"""

from __future__ import annotations

import copy

import pytest
import torch

trl = pytest.importorskip("trl")
pytest.importorskip("datasets")

from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from ivl_embodied.train.advantages import group_advantages  # noqa: E402
from ivl_embodied.train.losses import gspo_loss, masked_sum, mpo_loss  # noqa: E402

ATOL = 1e-6
VOCAB = ["<pad>", "<eos>", "a", "b", "c", "d", "e", "f"]


def _tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def _tiny_llama(seed: int) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="module")
def dpo_trainer(tmp_path_factory: pytest.TempPathFactory):
    model = _tiny_llama(0)
    ref = copy.deepcopy(model)
    with torch.no_grad():  # a reference that differs from the policy, so log-ratios are not 0
        g = torch.Generator().manual_seed(1)
        for p in ref.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    args = trl.DPOConfig(
        output_dir=str(tmp_path_factory.mktemp("dpo")), loss_type=["sigmoid", "bco_pair", "sft"],
        loss_weights=[0.8, 0.2, 1.0], use_cpu=True, bf16=False, report_to="none", beta=0.1,
    )
    ds = Dataset.from_dict({"prompt": ["a b"], "chosen": [" c"], "rejected": [" d"]})
    trainer = trl.DPOTrainer(model=model, ref_model=ref, args=args, processing_class=_tokenizer(), train_dataset=ds)
    trainer.model.eval()
    return trainer


def _dpo_batch(seed: int, pairs: int = 3, length: int = 8) -> dict[str, torch.Tensor]:
    """TRL's collated layout: rows [chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}]."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, len(VOCAB), (2 * pairs, length), generator=g)  # [2B, L]
    att = torch.ones(2 * pairs, length, dtype=torch.long)  # [2B, L]
    att[1, 6:], att[pairs + 2, 5:] = 0, 0  # ragged chosen / rejected
    comp = torch.zeros_like(att)
    comp[:, 3:] = 1  # 3 prompt tokens
    comp *= att
    return {"input_ids": ids.masked_fill(att == 0, 0), "attention_mask": att, "completion_mask": comp}


def _token_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = batch["input_ids"]
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits  # [2B, L, V]
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [2B, L-1, V]
    tok = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # [2B, L-1]
    return tok, batch["completion_mask"][:, 1:]  # mask of the predicted tokens


def _ours(trainer, batch: dict[str, torch.Tensor]):
    pol, mask = _token_logps(trainer.model, batch)
    with torch.no_grad():
        ref, _ = _token_logps(trainer.ref_model, batch)
    b = pol.shape[0] // 2
    return mpo_loss(
        pol[:b], mask[:b], pol[b:], mask[b:],
        ref_chosen_logps=masked_sum(ref[:b], mask[:b]), ref_rejected_logps=masked_sum(ref[b:], mask[b:]),
        beta=trainer.beta,
    )


def _trl_loss(trainer, batch, loss_types, loss_weights) -> torch.Tensor:
    saved = trainer.loss_types, trainer.loss_weights
    trainer.loss_types, trainer.loss_weights = loss_types, loss_weights
    try:
        return trainer._compute_loss(trainer.model, dict(batch), return_outputs=False)
    finally:
        trainer.loss_types, trainer.loss_weights = saved


@pytest.mark.parametrize("seed", [0, 1])
def test_mpo_total_and_gradient_match_trl(dpo_trainer, seed: int) -> None:
    batch = _dpo_batch(seed)
    model = dpo_trainer.model
    model.zero_grad()
    theirs = dpo_trainer._compute_loss(model, dict(batch), return_outputs=False)
    theirs.backward()
    their_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ours = _ours(dpo_trainer, batch)
    ours.total.backward()
    assert ours.total.item() == pytest.approx(theirs.item(), abs=ATOL)
    for mine, ref in zip((p.grad for p in model.parameters()), their_grads, strict=True):
        assert torch.allclose(mine, ref, atol=ATOL)
    # the reference really differs, so the preference terms are not the trivial log 2
    assert abs(ours.preference.item() - 0.6931471805599453) > 1e-3


@pytest.mark.parametrize(
    ("loss_type", "component"), [("sigmoid", "preference"), ("bco_pair", "quality"), ("sft", "generation")]
)
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_mpo_components_match_trl(dpo_trainer, loss_type: str, component: str, beta: float) -> None:
    batch = _dpo_batch(2)
    saved_beta = dpo_trainer.beta
    dpo_trainer.beta = beta
    try:
        with torch.no_grad():
            theirs = _trl_loss(dpo_trainer, batch, [loss_type], [1.0])
            ours = getattr(_ours(dpo_trainer, batch), component)
    finally:
        dpo_trainer.beta = saved_beta
    assert ours.item() == pytest.approx(theirs.item(), abs=ATOL)


@pytest.fixture(scope="module")
def grpo_trainer(tmp_path_factory: pytest.TempPathFactory):
    args = trl.GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("grpo")), importance_sampling_level="sequence", beta=0.0,
        loss_type="grpo", epsilon=3e-4, epsilon_high=4e-4, use_cpu=True, bf16=False, report_to="none",
        num_generations=2, per_device_train_batch_size=2, max_completion_length=8,
    )
    trainer = trl.GRPOTrainer(
        model=_tiny_llama(0), reward_funcs=lambda completions, **_: [0.0] * len(completions), args=args,
        processing_class=_tokenizer(), train_dataset=Dataset.from_dict({"prompt": ["a b", "b c"]}),
    )
    trainer.model.eval()
    assert (trainer.epsilon_low, trainer.epsilon_high, trainer.beta) == (3e-4, 4e-4, 0.0)
    return trainer


def _trl_gspo(trainer, new, old, adv, mask) -> torch.Tensor:
    b, t = new.shape
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (new, torch.zeros(b, t), None)
    inputs = {
        "prompt_ids": torch.zeros(b, 2, dtype=torch.long), "prompt_mask": torch.ones(b, 2, dtype=torch.long),
        "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": mask,
        "advantages": adv, "old_per_token_logps": old,
    }
    try:
        return trainer._compute_loss(trainer.model, inputs)
    finally:
        del trainer._get_per_token_logps_and_entropies


@pytest.mark.parametrize(("seed", "scale"), [(0, 1e-4), (1, 5e-4), (2, 2e-3)])
def test_gspo_loss_and_gradient_match_trl(grpo_trainer, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    b, t = 6, 7
    old = -2 * torch.rand(b, t, generator=g)
    base = old + scale * torch.randn(b, t, generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 4:], mask[3, 1:], mask[5, 6:] = 0, 0, 0
    adv = group_advantages(torch.rand(b, generator=g), group_size=2)

    new_theirs = base.clone().requires_grad_(True)
    theirs = _trl_gspo(grpo_trainer, new_theirs, old, adv, mask)
    theirs.backward()
    new_ours = base.clone().requires_grad_(True)
    ours = gspo_loss(new_ours, old, adv, mask)
    ours.loss.backward()
    assert ours.loss.item() == pytest.approx(theirs.item(), abs=ATOL)
    assert torch.allclose(new_ours.grad, new_theirs.grad, atol=ATOL)
    if scale >= 2e-3:
        assert ours.clipped.any()  # this case exercises the clip


def test_gspo_empty_sequence_normalisation_differs_from_trl_by_valid_fraction(grpo_trainer) -> None:
    """TRL's "grpo" averages over all B rows (an empty one counts as 0); we average over non-empty rows."""
    g = torch.Generator().manual_seed(3)
    old = -torch.rand(4, 5, generator=g)
    new = old + 1e-4 * torch.randn(4, 5, generator=g)
    mask = torch.ones(4, 5, dtype=torch.long)
    mask[2] = 0
    adv = torch.tensor([1.0, -0.5, 3.0, 0.25])
    theirs = _trl_gspo(grpo_trainer, new, old, adv, mask)
    ours = gspo_loss(new, old, adv, mask).loss
    assert ours.item() * 3 / 4 == pytest.approx(theirs.item(), abs=ATOL)
    assert abs(ours.item() - theirs.item()) > 1e-3


def test_group_advantages_match_trl_formula() -> None:
    """TRL: (r - group mean) / (nanstd(group) + 1e-4), nanstd Bessel-corrected."""
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([0.3, 1.2, -0.4, 2.0, 0.0, 0.5, 0.5, 0.7])
    grouped = rewards.view(-1, 4)
    theirs = (grouped - grouped.mean(1, keepdim=True)) / (nanstd(grouped, dim=1).unsqueeze(1) + 1e-4)
    assert torch.allclose(group_advantages(rewards, group_size=4), theirs.view(-1), atol=ATOL)
