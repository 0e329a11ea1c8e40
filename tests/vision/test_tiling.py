"""Tiling equals InternVL's dynamic_preprocess; bad images are refused by value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ivl_embodied.vision.tiling import (
    TilingConfig,
    choose_grid,
    tile_frames,
    tile_image,
    to_rgb_image,
)


def reference_grid(width, height, min_num, max_num, image_size):
    """InternVL's find_closest_aspect_ratio, re-expressed from internvl/train/dataset.py.

    Candidate ratios: a set of (i, j) with min_num <= i*j <= max_num, sorted by i*j
    (stable, so equal areas keep set order). Keep the strictly closer ratio; on an exact
    tie take the later one if the image area exceeds half the grid's pixel area.
    """
    ratios = sorted(
        {(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
         if min_num <= i * j <= max_num},
        key=lambda r: r[0] * r[1],
    )
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for i, j in ratios:
        d = abs(aspect - i / j)
        if d < best_diff:
            best, best_diff = (i, j), d
        elif d == best_diff and width * height > 0.5 * image_size * image_size * i * j:
            best = (i, j)
    return best


SIZES = [
    (1, 1), (2, 1), (1, 2), (14, 14), (56, 56), (100, 30), (448, 448), (449, 448), (640, 480), (480, 640),
    (700, 700), (634, 634), (633, 633), (1000, 1000), (896, 448), (448, 896), (1280, 720), (720, 1280),
    (1920, 1080), (1080, 1920), (3840, 2160), (7680, 4320), (4320, 7680), (8192, 8192), (6000, 500),
    (500, 6000), (12000, 1000), (1000, 12000), (600, 400), (480, 320), (300, 200), (1344, 448), (447, 1343),
]


@pytest.mark.parametrize("tile,max_tiles", [(448, 12), (448, 6), (448, 2), (56, 12), (112, 1), (448, 40)])
def test_grid_table_equals_reference(tile, max_tiles):
    cfg = TilingConfig(tile_size=tile, max_tiles=max_tiles)
    for w, h in SIZES:
        assert choose_grid(w, h, cfg) == reference_grid(w, h, 1, max_tiles, tile), (w, h)


def test_tie_cases_resolve_by_area_rule():
    cfg = TilingConfig(tile_size=448, max_tiles=12)
    # square images tie between 1x1, 2x2, 3x3: a larger grid only when area > 0.5*448^2*i*j
    assert choose_grid(448, 448, cfg) == (1, 1)
    assert choose_grid(634, 634, cfg) == (2, 2)  # 401956 > 401408
    assert choose_grid(633, 633, cfg) == (1, 1)  # 400689 < 401408
    assert choose_grid(1000, 1000, cfg) == (3, 3)
    # 3:2 with max 2 tiles ties 1x1 (diff .5) against 2x1 (diff .5)
    two = TilingConfig(tile_size=448, max_tiles=2)
    assert choose_grid(600, 400, two) == (2, 1)
    assert choose_grid(480, 320, two) == (1, 1)


def reference_tiles(img: Image.Image, cols, rows, s):
    resized = img.resize((cols * s, rows * s), Image.Resampling.BICUBIC)
    out = [resized.crop(((k % cols) * s, (k // cols) * s, (k % cols + 1) * s, (k // cols + 1) * s))
           for k in range(cols * rows)]
    if len(out) != 1:
        out.append(img.resize((s, s), Image.Resampling.BICUBIC))
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return np.stack([((np.asarray(t, dtype=np.float32) / 255.0 - mean) / std).transpose(2, 0, 1) for t in out])


@pytest.mark.parametrize("w,h", [(300, 100), (56, 56), (90, 200)])
def test_tile_pixels_match_reference(w, h):
    arr = np.random.RandomState(w + h).randint(0, 256, (h, w, 3), dtype=np.uint8)
    cfg = TilingConfig(tile_size=56, max_tiles=12)
    tiles = tile_image(arr, cfg)
    cols, rows = reference_grid(w, h, 1, 12, 56)
    ref = reference_tiles(Image.fromarray(arr), cols, rows, 56)
    assert (tiles.grid_cols, tiles.grid_rows) == (cols, rows)
    assert tiles.has_thumbnail == (cols * rows > 1)
    assert (tiles.source_width, tiles.source_height) == (w, h)
    np.testing.assert_allclose(tiles.pixel_values.numpy(), ref, atol=1e-6)


def test_grayscale_and_rgba_converted():
    cfg = TilingConfig(tile_size=56)
    gray = np.random.RandomState(0).randint(0, 256, (60, 70), dtype=np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    torch.testing.assert_close(tile_image(gray, cfg).pixel_values, tile_image(rgb, cfg).pixel_values)
    torch.testing.assert_close(tile_image(gray[:, :, None], cfg).pixel_values, tile_image(rgb, cfg).pixel_values)
    rgba = np.concatenate([rgb, np.full((60, 70, 1), 7, np.uint8)], axis=2)
    torch.testing.assert_close(tile_image(rgba, cfg).pixel_values, tile_image(rgb, cfg).pixel_values)
    assert to_rgb_image(Image.fromarray(rgba, "RGBA")).mode == "RGB"


@pytest.mark.parametrize(
    "image,match",
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 3), np.float32), "dtype must be uint8, got float32"),
        (np.full((10, 10, 3), np.nan, np.float32), "NaN"),
        (np.zeros((10, 10, 2), np.uint8), r"shape \(10, 10, 2\)"),
        (np.zeros((10, 10, 3, 1), np.uint8), r"shape \(10, 10, 3, 1\)"),
        (np.zeros((20000, 1, 3), np.uint8), "1x20000 is absurd"),
        ("not an image", "str"),
    ],
)
def test_bad_images_are_named(image, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tile_image(image, TilingConfig(tile_size=56))


def test_zero_size_pil_and_bad_config():
    with pytest.raises(ValueError, match="zero size: 0x5"):
        to_rgb_image(Image.new("RGB", (0, 5)))
    with pytest.raises(ValueError, match="max_tiles .* got 0"):
        TilingConfig(max_tiles=0)
    with pytest.raises(ValueError, match="tile_size .* got 3"):
        TilingConfig(tile_size=3)


def test_video_frames_one_tile_each():
    frames = [np.full((40, 80, 3), v, np.uint8) for v in (0, 128, 255)]
    t = tile_frames(frames, TilingConfig(tile_size=56))
    assert t.pixel_values.shape == (3, 3, 56, 56)
    assert (t.grid_cols, t.grid_rows, t.has_thumbnail) == (3, 1, False)
    assert t.pixel_values[0].mean() < t.pixel_values[2].mean()
    with pytest.raises(ValueError, match="one size"):
        tile_frames([frames[0], np.zeros((10, 10, 3), np.uint8)], TilingConfig(tile_size=56))
