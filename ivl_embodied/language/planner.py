"""Language side: Qwen3 fed with ``inputs_embeds`` where the prompt has visual tokens.

The prompt follows InternVL3.5's chat template; the user turn's ``<image>`` becomes
``<img>`` + ``<IMG_CONTEXT>`` x n + ``</img>`` with n = rows of the received embeddings
(the sum of per-tile token counts, so ViR-compressed tiles take fewer placeholders).
The embedding rows are spliced in at the ``<IMG_CONTEXT>`` positions exactly as
transformers' ``InternVLModel`` does (``masked_scatter``), so logits match its forward.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ivl_embodied.embeddings.payload import VisualEmbeddings
from ivl_embodied.language.constrained import PlanRestriction, TokenConstraint
from ivl_embodied.plan.schema import Plan, PlanParseError, parse_plan

logger = logging.getLogger(__name__)

IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
DEFAULT_SYSTEM_PROMPT = (
    "You are a robot task planner. Answer with the plan only: a JSON array of steps "
    "with action, object, box, target, target_box; boxes in 0-1000 coordinates."
)


@dataclass(frozen=True)
class PlannerConfig:
    """Prompt layout; ``system_prompt=None`` leaves the system turn out."""

    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT

    def __post_init__(self) -> None:
        if self.system_prompt is not None and (IM_END in self.system_prompt or IMG_CONTEXT in self.system_prompt):
            raise ValueError(f"system_prompt must not contain special tokens: {self.system_prompt!r}")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding: greedy when ``temperature == 0``; ``constrained`` forces parseable plans."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0
    seed: int | None = None
    constrained: bool = True
    max_time_s: float | None = None  # stop decoding after this long (the plan is then None, stopped "max_time")

    def __post_init__(self) -> None:
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ValueError(f"max_time_s must be > 0 or None, got {self.max_time_s!r}")
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= 8192:
            raise ValueError(f"max_new_tokens must be an int in 1..8192, got {self.max_new_tokens!r}")
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k!r}")


@dataclass(frozen=True)
class PlanOutput:
    text: str
    token_ids: tuple[int, ...]
    plan: Plan | None = None
    error: str | None = None
    stopped: str = "eos"  # "eos" | "plan_complete" | "max_new_tokens" | "max_time"
    timings: dict[str, float] = field(default_factory=dict)  # prefill_ms, decode_ms, prompt_tokens
    logprob: float = 0.0  # sum of the model's log-probabilities of the generated tokens (ranks candidates)


def build_prompt(instruction: str, num_image_tokens: int, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> str:
    """InternVL3.5 chat prompt with the image placeholders expanded, ending at the assistant turn."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    for special in (IMG_CONTEXT, IMG_START, IMG_END, IM_START, IM_END):
        if special in instruction:
            raise ValueError(f"instruction must not contain the special token {special!r}: {instruction!r}")
    image = IMG_START + IMG_CONTEXT * num_image_tokens + IMG_END
    system = f"{IM_START}system\n{system_prompt}{IM_END}\n" if system_prompt is not None else ""
    return f"{system}{IM_START}user\n{image}\n{instruction}{IM_END}\n{IM_START}assistant\n"


DECODERS = ("auto", "hf", "static", "static-int8")
"""How :meth:`LanguagePlanner.generate` runs the model token by token: ``hf`` = transformers' forward with
its dynamic cache; ``static`` = :class:`~ivl_embodied.language.fast_decode.StaticDecoder` on the model's
weights (same tokens, less overhead per token); ``static-int8`` = the static decoder with int8 weights (CPU;
a quarter of the bytes per token, tokens may differ); ``auto`` = ``static`` where the model is one it
supports (Qwen3), else ``hf``."""


class LanguagePlanner(nn.Module):
    """A causal LM (``Qwen3ForCausalLM``) + tokenizer that plans from visual embeddings."""

    def __init__(self, lm: nn.Module, tokenizer, config: PlannerConfig = PlannerConfig(), decoder: str = "auto"):
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.config = config
        self.image_token_id = self._special_id(IMG_CONTEXT)
        self.stop_ids = {self._special_id(IM_END)}
        if tokenizer.eos_token_id is not None:
            self.stop_ids.add(int(tokenizer.eos_token_id))
        self._constraint: TokenConstraint | None = None
        self._static = None  # the StaticDecoder, built on first use
        self._decode_lock = threading.Lock()  # one static cache: one generation at a time
        self.set_decoder(decoder)

    def __getstate__(self) -> dict:
        """Copies (reference models) start without the caches (decoder, constraint tables), rebuilt on use."""
        return {**super().__getstate__(), "_static": None, "_decode_lock": None, "_constraint": None}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._decode_lock = threading.Lock()

    def set_decoder(self, decoder: str) -> str:
        """Choose how :meth:`generate` decodes (one of :data:`DECODERS`); returns the one in effect."""
        from ivl_embodied.language.fast_decode import check_supported

        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if decoder == "auto":
            try:
                check_supported(self.lm.config)
                decoder = "static"
            except (ValueError, AttributeError):
                decoder = "hf"
        elif decoder != "hf":
            check_supported(self.lm.config, self._static_weights(decoder), self.device)
        self.decoder, self._static = decoder, None
        return decoder

    @staticmethod
    def _static_weights(decoder: str) -> str:
        return "int8" if decoder == "static-int8" else "model"

    def _decoding(self, embeds: torch.Tensor, max_new_tokens: int):
        """Prefill ``embeds`` [1, L, D]: the last position's logits [V] (fp32, CPU) and ``step(token) -> logits``."""
        if self.decoder == "hf":
            out = self.lm(inputs_embeds=embeds, use_cache=True)
            cache = [out.past_key_values]

            def step(tok: int) -> torch.Tensor:
                o = self.lm(input_ids=torch.tensor([[tok]], device=self.device), past_key_values=cache[0],
                            use_cache=True)
                cache[0] = o.past_key_values
                return o.logits[0, -1].float().cpu()

            return out.logits[0, -1].float().cpu(), step  # the copy waits for the device
        from ivl_embodied.language.fast_decode import StaticDecoder

        if self._static is None or self._static.stale(self.lm):  # built once; again after training steps
            self._static = StaticDecoder(self.lm, weights=self._static_weights(self.decoder))
        dec, table = self._static, self.lm.get_input_embeddings()
        dec.reserve(embeds.shape[1] + max_new_tokens)
        return dec.prefill(embeds).float().cpu(), lambda tok: dec.step(tok, table).float().cpu()

    def _special_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {token!r} token")
        return int(tid)

    @property
    def hidden_size(self) -> int:
        return int(self.lm.get_input_embeddings().weight.shape[1])

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    # -- prompt assembly ---------------------------------------------------------------
    def _visual(self, visual: VisualEmbeddings | torch.Tensor) -> torch.Tensor:
        emb = visual.embeddings if isinstance(visual, VisualEmbeddings) else visual
        if emb.ndim != 2 or emb.shape[1] != self.hidden_size:
            raise ValueError(
                f"visual embeddings have shape {tuple(emb.shape)} but the language model's hidden size is "
                f"{self.hidden_size}: vision and language sides do not belong together"
            )
        return emb

    def prompt_ids(self, visual: VisualEmbeddings | torch.Tensor, instruction: str) -> list[int]:
        rows = self._visual(visual).shape[0]
        text = build_prompt(instruction, rows, self.config.system_prompt)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def splice(self, input_ids: torch.Tensor, visuals: Sequence[torch.Tensor]) -> torch.Tensor:
        """Embed ``input_ids`` [B, L] and put each sample's visual rows at its IMG_CONTEXT slots."""
        embeds = self.lm.get_input_embeddings()(input_ids)  # [B, L, D]
        mask = input_ids == self.image_token_id  # [B, L]
        for b, vis in enumerate(visuals):
            n = int(mask[b].sum())
            if n != vis.shape[0]:
                raise ValueError(
                    f"sample {b}: prompt has {n} {IMG_CONTEXT} placeholders but {vis.shape[0]} embedding rows"
                )
        rows = torch.cat([v.to(embeds.device, embeds.dtype) for v in visuals], dim=0)  # [sum n, D]
        return embeds.masked_scatter(mask.unsqueeze(-1), rows)  # [B, L, D]

    # -- forward passes ----------------------------------------------------------------
    @torch.no_grad()
    def next_token_logits(self, visual: VisualEmbeddings | torch.Tensor, instruction: str) -> torch.Tensor:
        """Logits [V] for the first assistant token."""
        ids = torch.tensor([self.prompt_ids(visual, instruction)], device=self.device)  # [1, L]
        embeds = self.splice(ids, [self._visual(visual)])  # [1, L, D]
        return self.lm(inputs_embeds=embeds).logits[0, -1]  # [V]

    def forward_batch(
        self,
        visuals: Sequence[VisualEmbeddings | torch.Tensor],
        instructions: Sequence[str],
        responses: Sequence[str],
        add_end: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced batch: (logits [B, L, V], labels [B, L] with -100 off the responses)."""
        if not len(visuals) == len(instructions) == len(responses) > 0:
            raise ValueError(f"need equal non-empty batches, got {len(visuals)}/{len(instructions)}/{len(responses)}")
        vis = [self._visual(v) for v in visuals]
        seqs, labels = [], []
        for v, ins, resp in zip(vis, instructions, responses, strict=True):
            prompt = self.prompt_ids(v, ins)
            answer = list(self.tokenizer(resp + (IM_END if add_end else ""), add_special_tokens=False)["input_ids"])
            seqs.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        length = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), length), pad, dtype=torch.long)  # [B, L] right-padded
        lab = torch.full((len(seqs), length), -100, dtype=torch.long)  # [B, L]
        att = torch.zeros((len(seqs), length), dtype=torch.long)  # [B, L]
        for b, (s, lab_b) in enumerate(zip(seqs, labels, strict=True)):
            ids[b, : len(s)], lab[b, : len(lab_b)], att[b, : len(s)] = torch.tensor(s), torch.tensor(lab_b), 1
        ids, lab, att = ids.to(self.device), lab.to(self.device), att.to(self.device)
        embeds = self.splice(ids, vis)  # [B, L, D]
        logits = self.lm(inputs_embeds=embeds, attention_mask=att).logits  # [B, L, V]
        return logits, lab

    def score(
        self,
        visuals: Sequence[VisualEmbeddings | torch.Tensor],
        instructions: Sequence[str],
        plan_texts: Sequence[str],
        add_end: bool = True,
    ) -> list[torch.Tensor]:
        """Per-token log-probs of each plan text (+ ``<|im_end|>``); differentiable."""
        logits, labels = self.forward_batch(visuals, instructions, plan_texts, add_end)
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, L-1, V] predicts token t+1
        target = labels[:, 1:]  # [B, L-1]
        mask = target != -100
        tok_logp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [B, L-1]
        return [tok_logp[b][mask[b]] for b in range(tok_logp.shape[0])]

    # -- generation --------------------------------------------------------------------
    def constraint(self) -> TokenConstraint:
        if self._constraint is None:
            vocab = self.lm.get_output_embeddings().weight.shape[0]
            special = set(self.tokenizer.all_special_ids) | set(self.tokenizer.added_tokens_decoder)
            texts: list[str | None] = []
            for i in range(vocab):
                if i >= len(self.tokenizer) or i in special:
                    texts.append(None)
                else:
                    texts.append(self.tokenizer.decode([i], skip_special_tokens=False,
                                                       clean_up_tokenization_spaces=False))
            self._constraint = TokenConstraint(texts)
        return self._constraint

    @torch.no_grad()
    def generate(
        self, visual: VisualEmbeddings | torch.Tensor, instruction: str,
        settings: GenerationSettings = GenerationSettings(), restriction: PlanRestriction | None = None,
    ) -> PlanOutput:
        """Decode a plan with the KV cache; constrained output always parses. ``restriction``
        narrows the actions and phrases the plan may use (default: the whole vocabulary)."""
        constraint = self.constraint() if settings.constrained else None
        if constraint is not None and restriction is not None:
            constraint = constraint.restricted(restriction)
        elif restriction is not None:
            raise ValueError("a PlanRestriction needs constrained decoding (settings.constrained=True)")
        if constraint is not None and settings.max_new_tokens < constraint.min_plan_chars:
            raise ValueError(
                f"max_new_tokens {settings.max_new_tokens} is below the shortest plan "
                f"({constraint.min_plan_chars} single-character tokens)"
            )
        with self._decode_lock:
            return self._generate(visual, instruction, settings, constraint)

    def _generate(self, visual, instruction: str, settings: GenerationSettings,
                  constraint: TokenConstraint | None) -> PlanOutput:
        gen = torch.Generator().manual_seed(settings.seed) if settings.seed is not None else None
        t0 = time.perf_counter()
        ids = torch.tensor([self.prompt_ids(visual, instruction)], device=self.device)  # [1, L]
        logits, step_with = self._decoding(self.splice(ids, [self._visual(visual)]), settings.max_new_tokens)
        t_prefill = time.perf_counter()
        state = constraint.start() if constraint else None
        tokens: list[int] = []
        pieces: list[str] = []
        logprob = 0.0
        stopped = "max_new_tokens"
        for step in range(settings.max_new_tokens):
            if settings.max_time_s is not None and time.perf_counter() - t0 > settings.max_time_s:
                stopped = "max_time"
                break
            scores = self._scores(logits, settings, gen)
            if constraint is not None:
                tok, state = constraint.choose(scores, state, settings.max_new_tokens - step)
                pieces.append(constraint.token_texts[tok])
            else:
                tok = int(torch.argmax(scores))
                if tok in self.stop_ids:
                    stopped = "eos"
                    break
            tokens.append(tok)
            logprob += float(torch.log_softmax(logits, dim=-1)[tok])  # the model's own, before any mask
            if constraint is not None and constraint.automaton.is_done(state):
                stopped = "plan_complete"
                break
            logits = step_with(tok)  # [V]
        text = "".join(pieces) if constraint is not None else self.tokenizer.decode(tokens, skip_special_tokens=True)
        t_end = time.perf_counter()
        timings = {"prefill_ms": 1e3 * (t_prefill - t0), "decode_ms": 1e3 * (t_end - t_prefill),
                   "prompt_tokens": float(ids.shape[1])}
        if stopped == "max_time":
            why = f"planning stopped after {t_end - t0:.1f} s (max_time_s={settings.max_time_s})"
            return PlanOutput(text, tuple(tokens), None, why, stopped, timings, logprob)
        try:
            return PlanOutput(text, tuple(tokens), parse_plan(text), None, stopped, timings, logprob)
        except PlanParseError as e:
            if constraint is not None:
                raise AssertionError(f"constrained decoding produced unparseable text {text!r}: {e}") from e
            return PlanOutput(text, tuple(tokens), None, str(e), stopped, timings, logprob)

    @staticmethod
    def _scores(logits: torch.Tensor, settings: GenerationSettings, gen: torch.Generator | None) -> torch.Tensor:
        """Greedy: the logits. Sampling: logits/T (+top-k) + Gumbel noise, whose argmax is a sample.

        Under the constraint, top-k applies first; if none of the top k is allowed, the
        remaining allowed tokens are taken in arbitrary order.
        """
        if settings.temperature == 0.0:
            return logits
        scores = logits / settings.temperature
        if settings.top_k:
            kth = torch.topk(scores, min(settings.top_k, scores.shape[0])).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        u = torch.rand(scores.shape, generator=gen).clamp_(1e-20, 1.0 - 1e-7)  # keep the noise finite
        return scores - torch.log(-torch.log(u))


def planning_input(instruction: str, read: bool = True) -> tuple[str, PlanRestriction | None]:
    """The words a planner decodes from, and the restriction of its plans: the operator's words read
    (:func:`~ivl_embodied.language.instruction.read_instruction`: canonical words, the task's actions and
    phrases only), or, with ``read=False``, the words as typed and no restriction. A task that cannot be read
    raises :class:`~ivl_embodied.language.instruction.InstructionRefused` (its ``refusal`` says why)."""
    from ivl_embodied.language.instruction import InstructionRefused, Refusal, read_instruction

    if not read:
        return instruction, None
    task = read_instruction(instruction)
    if isinstance(task, Refusal):
        raise InstructionRefused(task)
    return task.instruction, PlanRestriction.for_task(task.goal, task.object, task.target)


def plan_candidates(planner: LanguagePlanner, views, instruction: str, settings: GenerationSettings,
                    restriction: PlanRestriction | None = None, samples: int = 8, cancelled=None):
    """Plans for one frame, best first (a generator: nothing past what the caller takes is decoded).

    ``views``: ``(embeddings, mirrored)`` pairs, the frame as encoded first; ``embeddings`` may be a
    callable that encodes on first use (a second view costs nothing while the first plan passes; it
    may return None when the view cannot be had, and is then skipped), and
    ``mirrored`` says the view is the frame flipped left-right, whose plans have their boxes mirrored
    back (:func:`~ivl_embodied.plan.schema.mirror_plan`). First the greedy plan of the first view; then
    every other view's greedy plan and ``samples`` sampled plans per view (temperature 1, seeds
    0..samples-1), without repeats, ranked by the model's own log-probability: the alternatives
    InternVL3.5's parallel thinking draws, for a critic (the executor's scene check) to choose from.
    ``cancelled()`` (optional) is asked before each decoding; once true, nothing more is yielded."""
    from dataclasses import replace

    from ivl_embodied.plan.schema import format_plan, mirror_plan

    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples!r}")
    views = [(v if callable(v) else (lambda v=v: v), bool(m)) for v, m in views]
    if not views:
        raise ValueError("plan_candidates needs at least one view of the frame")
    sampled = [replace(settings, temperature=1.0, seed=seed) for seed in range(samples)]

    def decode(visual, mirrored: bool, how: GenerationSettings) -> PlanOutput | None:
        out = planner.generate(visual, instruction, how, restriction)
        if mirrored:
            if out.plan is None:  # nothing to mirror back; an unparseable plan is refused anyway
                return None
            plan = mirror_plan(out.plan)
            out = replace(out, text=format_plan(plan), plan=plan)
        return out

    first, first_mirrored = views[0]
    first_visual = first()
    best = decode(first_visual, first_mirrored, settings)
    if best is not None:
        yield best
    seen = {best.text} if best is not None else set()
    alternatives: list[PlanOutput] = []
    for k, (view, mirrored) in enumerate(views):
        visual = first_visual if k == 0 else view()
        if visual is None:
            continue
        for how in (sampled if k == 0 else [settings, *sampled]):
            if cancelled is not None and cancelled():
                return
            out = decode(visual, mirrored, how)
            if out is not None and out.text not in seen:
                seen.add(out.text)
                alternatives.append(out)
    yield from sorted(alternatives, key=lambda o: -o.logprob)
