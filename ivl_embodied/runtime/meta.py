"""What an exported vision graph computes, carried inside the artifact.

The ONNX file stores it in ``metadata_props`` (string key/values); a TensorRT engine stores
it in a JSON sidecar ``<engine>.json`` next to the engine, copied from the ONNX file it was
built from. Every backend checks incoming tiles against it and stamps ``encoder_id`` on the
:class:`~ivl_embodied.embeddings.payload.VisualEmbeddings` it returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

GRAPH_FORMAT = "ivl_embodied.vision_graph/1"
INPUT_NAME = "pixel_values"
OUTPUT_FULL = "embeds_full"  # [N, T256, D]  pixel shuffle 0.5 -> mlp1
OUTPUT_PROB = "p_compress"  # [N]           router softmax[:, 1] (Flash only)
OUTPUT_COMPRESSED = "embeds_compressed"  # [N, T64, D]  pixel shuffle 0.25 -> mlp2 (Flash only)
SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class GraphMeta:
    """Shapes and identity of one exported vision graph."""

    tile_size: int
    vision_hidden_size: int
    text_hidden_size: int
    tokens_full: int
    tokens_compressed: int  # 0 when the graph has no ViR outputs
    with_vir: bool
    encoder_id: str
    format: str = GRAPH_FORMAT

    def __post_init__(self) -> None:
        if self.format != GRAPH_FORMAT:
            raise ValueError(f"unknown vision graph format {self.format!r}; expected {GRAPH_FORMAT!r}")
        for name in ("tile_size", "vision_hidden_size", "text_hidden_size", "tokens_full"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.with_vir and self.tokens_compressed <= 0:
            raise ValueError(f"a ViR graph needs tokens_compressed > 0, got {self.tokens_compressed!r}")
        if not self.with_vir and self.tokens_compressed != 0:
            raise ValueError(f"a graph without ViR has tokens_compressed 0, got {self.tokens_compressed!r}")

    @property
    def output_names(self) -> tuple[str, ...]:
        return (OUTPUT_FULL, OUTPUT_PROB, OUTPUT_COMPRESSED) if self.with_vir else (OUTPUT_FULL,)

    def to_props(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` (prefixed ``ivl.``)."""
        return {f"ivl.{k}": json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> GraphMeta:
        mine = {k[4:]: v for k, v in props.items() if k.startswith("ivl.")}
        if not mine:
            raise ValueError(
                f"{source} has no ivl_embodied metadata; export it with `ivl-embodied export onnx`"
            )
        try:
            return cls(**{k: json.loads(v) for k, v in mine.items()})
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"{source} has malformed ivl_embodied metadata {mine}: {e}") from e

    @classmethod
    def from_encoder_config(cls, config) -> GraphMeta:
        """From a :class:`~ivl_embodied.vision.encoder.VisionEncoderConfig`."""
        return cls(
            tile_size=config.tile_size,
            vision_hidden_size=int(config.vision_config.hidden_size),
            text_hidden_size=int(config.text_hidden_size),
            tokens_full=config.tokens_full,
            tokens_compressed=config.tokens_compressed if config.with_vir else 0,
            with_vir=bool(config.with_vir),
            encoder_id=str(config.encoder_id),
        )


def sidecar_path(engine: str | Path) -> Path:
    p = Path(engine)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def write_sidecar(engine: str | Path, meta: GraphMeta, build: Mapping | None = None) -> Path:
    """``<engine>.json``: the graph metadata plus how the engine was built."""
    out = sidecar_path(engine)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"graph": asdict(meta), "build": dict(build or {})}, indent=2))
    return out


def read_sidecar(engine: str | Path) -> tuple[GraphMeta, dict]:
    p = sidecar_path(engine)
    if not p.is_file():
        raise FileNotFoundError(
            f"engine metadata {str(p)!r} is missing; engines built by `ivl-embodied export trt` write it "
            f"next to the engine (copy it along with {Path(engine).name!r})"
        )
    data = json.loads(p.read_text())
    if "graph" not in data:
        raise ValueError(f"{str(p)!r} has no 'graph' section: {sorted(data)}")
    return GraphMeta(**data["graph"]), dict(data.get("build", {}))
