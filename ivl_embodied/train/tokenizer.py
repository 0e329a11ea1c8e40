"""The default planner's tokenizer: a byte-level BPE trained on the instruction + plan corpus.

Same construction as :func:`ivl_embodied.checkpoints.tiny.build_tokenizer` (HF ``tokenizers``,
InternVL's special tokens, all 256 byte tokens so the constrained decoder can always emit
any single character) plus one change for grounding: digits are pre-split one by one, so a
box coordinate is always three digit tokens (``412`` -> ``4 1 2``) instead of arbitrary
corpus-dependent merges; the model then learns one place-value code for every coordinate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from transformers import PreTrainedTokenizerFast

from ivl_embodied.checkpoints.tiny import SPECIAL_TOKENS

logger = logging.getLogger(__name__)


def train_planner_tokenizer(corpus: Iterable[str], vocab_size: int = 640) -> PreTrainedTokenizerFast:
    """Byte-level BPE over ``corpus`` with InternVL's special tokens and single-digit splitting."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [t for t in corpus if t]
    if not texts:
        raise ValueError("the tokenizer corpus is empty")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    check_tokenizer(out)
    logger.info("trained a %d-token byte-level BPE on %d texts", len(out), len(texts))
    return out


def check_tokenizer(tok: PreTrainedTokenizerFast) -> None:
    """Raise if a special token or a single-byte token is missing (the decoder needs both)."""
    from tokenizers import pre_tokenizers

    vocab = tok.get_vocab()
    missing = [s for s in SPECIAL_TOKENS if s not in vocab]
    if missing:
        raise ValueError(f"tokenizer lacks the special tokens {missing}")
    bytes_missing = [c for c in pre_tokenizers.ByteLevel.alphabet() if c not in vocab]
    if bytes_missing:
        raise ValueError(f"tokenizer lacks {len(bytes_missing)} single-byte tokens, e.g. {bytes_missing[:5]}")
