"""Where a node's ``checkpoint`` parameter points: ``default`` or a directory."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PLANNER_DIR = Path(__file__).resolve().parent.parent / "default_planner"


def resolve_checkpoint(value: str, side: str) -> Path:
    """Directory of the ``side`` ('vision' | 'language') for a ``checkpoint`` parameter.

    ``default`` is the planner shipped in ``ivl_embodied/default_planner/{vision,language}``;
    any other value is a local directory: a split side directory, or a whole InternVL3.5
    ``-HF`` directory (the loaders take what they need from it).
    """
    if side not in ("vision", "language"):
        raise ValueError(f"side must be 'vision' or 'language', got {side!r}")
    if value == "default":
        path = DEFAULT_PLANNER_DIR / side
        if not path.is_dir():
            raise FileNotFoundError(
                f"the default planner's {side} side is not in {path}; train it with "
                "`ivl-embodied train cascade` or pass checkpoint:=DIR"
            )
        return path
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {value!r} does not exist")
    return path
