"""ONNX vision graph -> TensorRT 10 engine (run this on the device that will use the engine).

:func:`plan_engine_build` is the whole configuration as a pure function (tested without
TensorRT): optimisation-profile shapes for the dynamic tile batch, precision flags, workspace.
:func:`build_engine` applies a plan with the ``tensorrt`` Python API; :func:`trtexec_command`
spells the same plan as ``trtexec`` flags.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ivl_embodied.runtime.meta import INPUT_NAME, GraphMeta, write_sidecar

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": (), "fp16": ("FP16",), "bf16": ("BF16",)}
MAX_TILES_LIMIT = 64  # TilingConfig's upper bound


@dataclass(frozen=True)
class EngineBuildSettings:
    """How to build: ``max_tiles`` is tiling's max_num_tiles; the profile adds one for the thumbnail.

    ``opt_tiles`` (batch TensorRT tunes kernels for) defaults to the largest batch.
    """

    precision: str = "fp16"
    max_tiles: int = 12
    opt_tiles: int | None = None
    workspace_mib: int = 2048
    optimization_level: int = 3

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.max_tiles, int) or not 1 <= self.max_tiles <= MAX_TILES_LIMIT:
            raise ValueError(f"max_tiles must be an int in 1..{MAX_TILES_LIMIT}, got {self.max_tiles!r}")
        if self.opt_tiles is not None and (
            not isinstance(self.opt_tiles, int) or not 1 <= self.opt_tiles <= self.max_batch
        ):
            raise ValueError(f"opt_tiles must be an int in 1..{self.max_batch} (max_tiles + thumbnail), "
                             f"got {self.opt_tiles!r}")
        if not isinstance(self.workspace_mib, int) or self.workspace_mib < 64:
            raise ValueError(f"workspace_mib must be an int >= 64, got {self.workspace_mib!r}")
        if self.optimization_level not in range(6):
            raise ValueError(f"optimization_level must be 0..5, got {self.optimization_level!r}")

    @property
    def max_batch(self) -> int:
        """Largest tile batch: ``max_tiles`` grid tiles + 1 thumbnail (only added when > 1 tile)."""
        return self.max_tiles + 1 if self.max_tiles > 1 else 1


@dataclass(frozen=True)
class EngineBuildPlan:
    """Everything :func:`build_engine` sets on the builder, as plain values."""

    input_name: str
    min_shape: tuple[int, int, int, int]
    opt_shape: tuple[int, int, int, int]
    max_shape: tuple[int, int, int, int]
    builder_flags: tuple[str, ...]  # names in tensorrt.BuilderFlag
    workspace_bytes: int
    optimization_level: int
    precision: str
    output_names: tuple[str, ...]


def plan_engine_build(meta: GraphMeta, settings: EngineBuildSettings) -> EngineBuildPlan:
    """Profile min/opt/max for ``[N, 3, T, T]``, precision flags and workspace for one graph."""
    t = meta.tile_size
    opt = settings.opt_tiles or settings.max_batch
    return EngineBuildPlan(
        input_name=INPUT_NAME,
        min_shape=(1, 3, t, t),
        opt_shape=(opt, 3, t, t),
        max_shape=(settings.max_batch, 3, t, t),
        builder_flags=PRECISIONS[settings.precision],
        workspace_bytes=settings.workspace_mib * 1024 * 1024,
        optimization_level=settings.optimization_level,
        precision=settings.precision,
        output_names=meta.output_names,
    )


def trtexec_command(plan: EngineBuildPlan, onnx_path: str | Path, engine_path: str | Path) -> list[str]:
    """The same build as ``trtexec`` arguments (TensorRT 10's trtexec)."""

    def dims(shape: tuple[int, ...]) -> str:
        return f"{plan.input_name}:{'x'.join(map(str, shape))}"

    cmd = [
        "trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
        f"--minShapes={dims(plan.min_shape)}", f"--optShapes={dims(plan.opt_shape)}",
        f"--maxShapes={dims(plan.max_shape)}",
        f"--memPoolSize=workspace:{plan.workspace_bytes // (1024 * 1024)}M",
        f"--builderOptimizationLevel={plan.optimization_level}",
    ]
    cmd += [f"--{flag.lower()}" for flag in plan.builder_flags]  # --fp16 / --bf16
    return cmd


def build_engine(onnx_path: str | Path, out: str | Path, settings: EngineBuildSettings) -> Path:
    """Parse the ONNX graph, configure the builder from the plan, write ``out`` + ``out.json``."""
    from ivl_embodied.export.onnx_export import read_onnx_metadata
    from ivl_embodied.runtime.trt_backend import import_tensorrt

    meta = read_onnx_metadata(onnx_path)  # also checks the file exists and is ours
    plan = plan_engine_build(meta, settings)
    trt = import_tensorrt()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT could not parse {str(onnx_path)!r}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.builder_optimization_level = plan.optimization_level
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    profile.set_shape(plan.input_name, plan.min_shape, plan.opt_shape, plan.max_shape)
    config.add_optimization_profile(profile)
    logger.info("building TensorRT %s engine (%s, tiles %d..%d, opt %d) -- this takes minutes",
                trt.__version__, plan.precision, plan.min_shape[0], plan.max_shape[0], plan.opt_shape[0])
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {str(onnx_path)!r} (see its log above)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(serialized))
    write_sidecar(out, meta, {**asdict(plan), "tensorrt_version": trt.__version__, "onnx": str(onnx_path)})
    logger.info("wrote %s (%.1f MB) and its metadata %s.json", out, out.stat().st_size / 1e6, out.name)
    return out
