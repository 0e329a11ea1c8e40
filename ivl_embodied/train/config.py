"""Frozen, validated configs for the Cascade RL pipeline: one dataclass per concern.

``ModelConfig`` fixes the default planner's architecture and input resolution. It was picked
by measurement on the 2-core dev CPU (forward + backward + AdamW, batch 16, no system prompt):

=========================  ======  =======  ===========
ViT / LLM                  tile    tokens   steps/s
=========================  ======  =======  ===========
6x192 / 4x192 (4.8 M)      224 px  64       1.8
6x192 / 4x192 (4.8 M)      168 px  36       3.0
4x128 / 4x192 (2.9 M)      168 px  36       4.7
=========================  ======  =======  ===========

168-px tiles with ``max_tiles=1`` (the whole 640x480 frame squashed into one tile) keep
objects at 10-21 x 14-28 px (1-2 ViT patches) while running ~1.7x faster than 224 px; the
4.8 M model is ~19 MB in fp32, well under the 40 MB budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ivl_embodied.sim.world import SETTLE_S

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("fp32", "bf16")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of the default planner (an InternVL3.5-shaped ViT + MLP projector + Qwen3)."""

    tile_size: int = 168
    max_tiles: int = 1
    patch_size: int = 14
    vision_hidden: int = 192
    vision_layers: int = 6
    vision_heads: int = 4
    text_hidden: int = 192
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    vocab_size: int = 640
    system_prompt: str | None = None  # no system turn: shorter sequences for a single-purpose planner

    def __post_init__(self) -> None:
        for name in ("tile_size", "max_tiles", "patch_size", "vision_hidden", "vision_layers", "vision_heads",
                     "text_hidden", "text_layers", "text_heads", "text_kv_heads", "vocab_size"):
            _positive_int(name, getattr(self, name))
        if self.tile_size % (2 * self.patch_size):
            raise ValueError(
                f"tile_size {self.tile_size} must be a multiple of 2 x patch_size {self.patch_size} "
                "(pixel shuffle 0.5)")
        if self.vision_hidden % self.vision_heads:
            raise ValueError(f"vision_hidden {self.vision_hidden} is not divisible by vision_heads {self.vision_heads}")
        if self.text_hidden % self.text_heads or self.text_heads % self.text_kv_heads:
            raise ValueError(
                f"text_hidden {self.text_hidden} / text_heads {self.text_heads} / text_kv_heads "
                f"{self.text_kv_heads} must divide evenly")
        if self.vocab_size < 256 + 8:
            raise ValueError(f"vocab_size {self.vocab_size} must hold 256 byte tokens + specials (>= 264)")
        if self.max_tiles > 64:
            raise ValueError(f"max_tiles must be <= 64, got {self.max_tiles!r}")

    @property
    def tokens_per_tile(self) -> int:
        return (self.tile_size // self.patch_size // 2) ** 2


@dataclass(frozen=True)
class DataConfig:
    """What ``train data`` renders: ``episodes`` task records of ``split`` at ``tile_size``."""

    split: str = "train"
    episodes: int = 20_000
    tile_size: int = 168
    max_tiles: int = 1
    shard_size: int = 256
    workers: int = 2
    settle_s: float = SETTLE_S  # what run_episode lets the objects settle before the planner looks

    def __post_init__(self) -> None:
        if self.split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val' (heldout is never trained on), got {self.split!r}")
        for name in ("episodes", "tile_size", "max_tiles", "shard_size", "workers"):
            _positive_int(name, getattr(self, name))
        if self.episodes >= 100_000:
            raise ValueError("episodes must be < 100000 (train seeds would reach the val seed range), "
                             f"got {self.episodes}")
        if not 0.0 <= self.settle_s <= 5.0:
            raise ValueError(f"settle_s must be in 0..5, got {self.settle_s!r}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``; global-norm clipping."""

    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in 0..1, got {self.min_lr_ratio!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas must be in [0, 1), got ({self.beta1!r}, {self.beta2!r})")
        if not self.grad_clip >= 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip!r}")


@dataclass(frozen=True)
class TrainConfig:
    """The loop: ``steps`` optimizer steps of ``batch_size x grad_accum`` samples per process."""

    steps: int = 8_000
    batch_size: int = 16
    grad_accum: int = 1
    eval_interval: int = 1000
    checkpoint_interval: int = 500
    log_interval: int = 50
    eval_examples: int = 16  # held-back examples decoded at each eval
    holdout: int = 64  # examples at the end of the data that are never trained on
    seed: int = 0
    device: str = "auto"
    dtype: str = "fp32"
    keep_checkpoints: int = 2
    fsdp: bool = False  # shard parameters, gradients and optimizer state over the processes (FSDP2)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_interval", "checkpoint_interval", "log_interval",
                     "keep_checkpoints"):
            _positive_int(name, getattr(self, name))
        for name in ("eval_examples", "holdout", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.eval_examples > self.holdout:
            raise ValueError(f"eval_examples {self.eval_examples} must be <= holdout {self.holdout}")


def to_dict(config) -> dict:
    return asdict(config)


def add_run_arguments(parser, train: TrainConfig, optim: OptimConfig, init_help: str | None = None,
                      data_help: str = "dataset directory from `train data`") -> None:
    """The arguments every training stage shares, with this stage's defaults: where the run reads
    and writes (``--init`` when ``init_help`` is given, ``--data``, ``--out``, resume/stop), the loop
    (:class:`TrainConfig`) and the optimiser (:class:`OptimConfig`). See :func:`configs_from_args`."""
    if init_help is not None:
        parser.add_argument("--init", required=True, help=init_help)
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--out", required=True, help="run directory: checkpoints, metrics, plots, final planner")
    parser.add_argument("--resume", action="store_true", help="continue from OUT's latest checkpoint")
    parser.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after this step")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = parser.add_argument_group("loop")
    g.add_argument("--steps", type=int, default=train.steps)
    g.add_argument("--batch-size", type=int, default=train.batch_size, help="per process and micro-step")
    g.add_argument("--grad-accum", type=int, default=train.grad_accum)
    g.add_argument("--eval-interval", type=int, default=train.eval_interval)
    g.add_argument("--checkpoint-interval", type=int, default=train.checkpoint_interval)
    g.add_argument("--log-interval", type=int, default=train.log_interval)
    g.add_argument("--eval-examples", type=int, default=train.eval_examples, help="held-back examples decoded per eval")
    g.add_argument("--holdout", type=int, default=train.holdout, help="last examples of the data, never trained on")
    g.add_argument("--seed", type=int, default=train.seed)
    g.add_argument("--device", default=train.device, choices=("auto", "cpu", "cuda"))
    g.add_argument("--dtype", default=train.dtype, choices=("fp32", "bf16"))
    g.add_argument("--fsdp", action="store_true",
                   help="fully shard the model over the torchrun processes (FSDP2, one unit per transformer layer)")
    g = parser.add_argument_group("optimizer")
    g.add_argument("--lr", type=float, default=optim.lr)
    g.add_argument("--warmup-steps", type=int, default=optim.warmup_steps)
    g.add_argument("--weight-decay", type=float, default=optim.weight_decay)
    g.add_argument("--grad-clip", type=float, default=optim.grad_clip, help="0 disables clipping")


def configs_from_args(args) -> tuple[TrainConfig, OptimConfig]:
    """The :class:`TrainConfig` and :class:`OptimConfig` of :func:`add_run_arguments`' arguments."""
    train = TrainConfig(steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                        eval_interval=args.eval_interval, checkpoint_interval=args.checkpoint_interval,
                        log_interval=args.log_interval, eval_examples=args.eval_examples, holdout=args.holdout,
                        seed=args.seed, device=args.device, dtype=args.dtype, fsdp=args.fsdp)
    optim = OptimConfig(lr=args.lr, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
                        grad_clip=args.grad_clip)
    return train, optim
