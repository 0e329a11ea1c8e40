"""InternVL dynamic-resolution tiling (``dynamic_preprocess``), outside the model.

An image is resized to the tile grid (cols x rows, ``min_tiles <= cols*rows <= max_tiles``)
whose aspect ratio is closest to the image's, cut into ``tile_size`` square tiles in
row-major order, and -- only when there is more than one tile -- followed by a global
thumbnail (the whole image resized to one tile). On an aspect-ratio tie the grid that
comes later in area order wins when the image area exceeds ``0.5 * tile**2 * cols * rows``
(InternVL's rule, so small images do not get blown up onto large grids).
Tiles are resized bicubically with PIL and normalised with ImageNet mean/std.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_IMAGE_SIDE = 16384
"""Images with a side above this are refused as absurd (16K is already 2x 8K)."""


@dataclass(frozen=True)
class TilingConfig:
    """How images become tiles: ``tile_size`` px squares, ``min_tiles..max_tiles`` per image."""

    tile_size: int = 448
    min_tiles: int = 1
    max_tiles: int = 12
    use_thumbnail: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not isinstance(self.tile_size, int) or not 8 <= self.tile_size <= 4096:
            raise ValueError(f"tile_size must be an int in 8..4096, got {self.tile_size!r}")
        if not isinstance(self.min_tiles, int) or self.min_tiles < 1:
            raise ValueError(f"min_tiles must be an int >= 1, got {self.min_tiles!r}")
        if not isinstance(self.max_tiles, int) or not self.min_tiles <= self.max_tiles <= 64:
            raise ValueError(f"max_tiles must be an int in min_tiles..64, got {self.max_tiles!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean/std must be 3 values with std > 0, got {self.mean!r}/{self.std!r}")


@dataclass(frozen=True)
class Tiles:
    """Normalised tiles of one image (or one tile per frame of a video)."""

    pixel_values: torch.Tensor  # [num_tiles, 3, tile, tile] float32
    grid_cols: int
    grid_rows: int
    has_thumbnail: bool
    source_width: int
    source_height: int
    tile_size: int

    @property
    def num_tiles(self) -> int:
        return int(self.pixel_values.shape[0])


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """All (cols, rows) with ``min_tiles <= cols*rows <= max_tiles``, in InternVL's order.

    InternVL builds a set and sorts it by area (a stable sort), so grids of equal area
    keep the set's iteration order; we build it the same way so ties resolve identically.
    """
    grids = {
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    }
    return sorted(grids, key=lambda g: g[0] * g[1])


def choose_grid(width: int, height: int, config: TilingConfig) -> tuple[int, int]:
    """The (cols, rows) grid InternVL's ``find_closest_aspect_ratio`` picks for a WxH image."""
    aspect = width / height
    area = width * height
    best_diff = float("inf")
    best = (1, 1)
    for cols, rows in candidate_grids(config.min_tiles, config.max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best_diff, best = diff, (cols, rows)
        elif diff == best_diff and area > 0.5 * config.tile_size * config.tile_size * cols * rows:
            best = (cols, rows)
    return best


def to_rgb_image(image: Any) -> Image.Image:
    """Validate ``image`` (PIL or numpy HxW / HxWx1|3|4 uint8) and return an RGB PIL image."""
    if isinstance(image, Image.Image):
        w, h = image.size
        _check_size(w, h)
        return image if image.mode == "RGB" else image.convert("RGB")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a PIL image or numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.dtype.kind == "f" and np.isnan(image).any():
        raise ValueError(f"image contains NaN values (shape {image.shape}, dtype {image.dtype})")
    if image.dtype != np.uint8:
        raise ValueError(f"image dtype must be uint8, got {image.dtype} (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]  # [H, W, 1] -> [H, W]
    if image.ndim == 2:
        _check_size(image.shape[1], image.shape[0])
        return Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    _check_size(image.shape[1], image.shape[0])
    mode = "RGB" if image.shape[2] == 3 else "RGBA"
    pil = Image.fromarray(np.ascontiguousarray(image))  # uint8 HxWx3 -> RGB, HxWx4 -> RGBA
    return pil if mode == "RGB" else pil.convert("RGB")


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"image has zero size: {width}x{height}")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise ValueError(f"image size {width}x{height} is absurd (a side above {MAX_IMAGE_SIDE})")


def normalize(tile: Image.Image, config: TilingConfig) -> torch.Tensor:
    """RGB PIL tile -> [3, H, W] float32, ``(x/255 - mean) / std``."""
    arr = torch.from_numpy(np.asarray(tile, dtype=np.float32) / 255.0)  # [H, W, 3]
    arr = arr.permute(2, 0, 1)  # [3, H, W]
    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    return (arr - mean) / std


def split_tiles(image: Image.Image, config: TilingConfig) -> tuple[list[Image.Image], int, int]:
    """Resize to the chosen grid and cut tiles (row-major), thumbnail last when > 1 tile."""
    w, h = image.size
    cols, rows = choose_grid(w, h, config)
    s = config.tile_size
    resized = image.resize((s * cols, s * rows), Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * s, r * s, (c + 1) * s, (r + 1) * s)) for r in range(rows) for c in range(cols)
    ]
    if config.use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((s, s), Image.Resampling.BICUBIC))
    return tiles, cols, rows


def tile_image(image: Any, config: TilingConfig = TilingConfig()) -> Tiles:
    """Dynamic-resolution tiles of one image, ready for the vision encoder."""
    pil = to_rgb_image(image)
    tiles, cols, rows = split_tiles(pil, config)
    pixel_values = torch.stack([normalize(t, config) for t in tiles])  # [N, 3, s, s]
    logger.debug("tiled %dx%d image into %dx%d grid (+thumb=%s)", *pil.size, cols, rows, len(tiles) > cols * rows)
    return Tiles(
        pixel_values=pixel_values,
        grid_cols=cols,
        grid_rows=rows,
        has_thumbnail=len(tiles) > cols * rows,
        source_width=pil.size[0],
        source_height=pil.size[1],
        tile_size=config.tile_size,
    )


def tile_frames(frames: Sequence[Any], config: TilingConfig = TilingConfig()) -> Tiles:
    """Video / multi-frame form: each frame becomes one tile (InternVL's ``max_num=1``).

    The grid is reported as ``len(frames) x 1`` with no thumbnail; all frames must share a size.
    """
    if len(frames) == 0:
        raise ValueError("frames is empty: need at least one frame")
    pils = [to_rgb_image(f) for f in frames]
    sizes = {p.size for p in pils}
    if len(sizes) != 1:
        raise ValueError(f"all frames must have one size, got {sorted(sizes)}")
    s = config.tile_size
    pixel_values = torch.stack(
        [normalize(p.resize((s, s), Image.Resampling.BICUBIC), config) for p in pils]
    )  # [F, 3, s, s]
    w, h = pils[0].size
    return Tiles(pixel_values, len(pils), 1, False, w, h, s)
