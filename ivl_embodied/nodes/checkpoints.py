"""Where a node's ``checkpoint`` parameter points."""

from __future__ import annotations

from pathlib import Path


def resolve_checkpoint(value: str, side: str) -> Path:
    """Directory of the ``side`` ('vision' | 'language') for a ``checkpoint`` parameter.

    ``default`` is the planner shipped with the package; a directory holding ``vision/`` and
    ``language/`` gives that half; any other directory (a split half, or a whole InternVL3.5
    ``-HF`` checkpoint) is used as it is and the loader checks what it holds.
    """
    from ivl_embodied.model.agent import planner_dirs

    if side not in ("vision", "language"):
        raise ValueError(f"side must be 'vision' or 'language', got {side!r}")
    path = Path(value).expanduser()
    if value == "default" or (path / "vision").is_dir():
        vision, language = planner_dirs(value)
        return vision if side == "vision" else language
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {value!r} does not exist")
    return path
