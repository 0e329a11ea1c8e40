"""Small configurations of the InternVL3.5 architecture: tests, benches, our default planner.

Everything here uses the same transformers classes as the real checkpoints
(``InternVLForConditionalGeneration`` with an ``InternVLVisionConfig`` ViT and a Qwen3
text model), only with small dimensions, so the same loaders and split tools apply.
``build_tokenizer`` trains a byte-level BPE with HF ``tokenizers`` that has InternVL's
special tokens; the project's real planner tokenizer is trained the same way on the plan
corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    PreTrainedTokenizerFast,
    Qwen3Config,
)

from ivl_embodied.vision.encoder import CompressedProjector
from ivl_embodied.vision.vir import VisualResolutionRouter

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>")
_SEED_CORPUS = (
    '[{"action":"pick","object":"red cube","box":[412,530,470,596]},'
    '{"action":"place","object":"red cube","target":"green bowl","target_box":[600,480,720,590]},'
    '{"action":"push","object":"blue block","box":[1,20,300,4000],"target":"yellow zone","target_box":[0,5,60,789]}]',
    "system user assistant You are a robot task planner. put the red cube in the green bowl",
    "pick place push object target box target_box action 0123456789 , : [ ] { } \"",
)


def build_tokenizer(corpus: Iterable[str] = (), vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Byte-level BPE with InternVL's special tokens (every byte is a single token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_SEED_CORPUS) + list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )


def tiny_config(
    tokenizer: PreTrainedTokenizerFast,
    tile_size: int = 56,
    vision_hidden: int = 64,
    text_hidden: int = 64,
    layers: int = 2,
) -> InternVLConfig:
    """A tiny InternVL3.5-shaped config: ViT ``layers`` x ``vision_hidden``, Qwen3 ``layers`` x ``text_hidden``."""
    vision = InternVLVisionConfig(
        hidden_size=vision_hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * vision_hidden,
        image_size=tile_size,
        patch_size=14,
    )
    text = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=2 * text_hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=text_hidden // 4,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    return InternVLConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=(tile_size // 28) ** 2,
    )


def internvl3_5_1b_config(image_token_id: int = 151671) -> InternVLConfig:
    """InternVL3.5-1B shapes: InternViT-300M (24 x 1024, 448 px) + Qwen3-0.6B (28 x 1024)."""
    vision = InternVLVisionConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        image_size=448, patch_size=14,
    )
    text = Qwen3Config(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
        tie_word_embeddings=True,
    )
    return InternVLConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_id=image_token_id)


def save_tiny_internvl(
    out: str | Path, seed: int = 0, tile_size: int = 56, with_vir: bool = False, corpus: Iterable[str] = ()
) -> Path:
    """Save a random tiny ``InternVLForConditionalGeneration`` + tokenizer with transformers' own
    ``save_pretrained``; ``with_vir`` adds Flash extras (``model.mlp2.*``, ``model.vision_router.*``)."""
    out = Path(out)
    tokenizer = build_tokenizer(corpus)
    config = tiny_config(tokenizer, tile_size=tile_size)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    if with_vir:
        c, d = config.vision_config.hidden_size, config.text_config.hidden_size
        extras = {f"model.mlp2.{k}": v for k, v in CompressedProjector(16 * c, d).state_dict().items()}
        router = VisualResolutionRouter(c, heads=16)
        extras.update({f"model.vision_router.{k}": v for k, v in router.state_dict().items()})
        save_file({k: v.contiguous() for k, v in extras.items()}, str(out / "model-vir.safetensors"),
                  metadata={"format": "pt"})
        cfg = json.loads((out / "config.json").read_text())
        cfg["ivl_vir"] = {"router_heads": 16}
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out
