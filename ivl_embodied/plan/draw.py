"""A plan drawn on the frame it is about: each step's boxes and phrases, for videos and consoles.

Boxes are in the plan's ``0..GROUNDING_MAX`` coordinates of the whole frame (InternVL3.5's grounding
convention), so they scale to any frame size. Step ``n``'s object box is drawn in the step's colour with
``n action object`` above it; its target box, when it has one, in the same colour with a thinner line and
``n -> target``.
"""

from __future__ import annotations

import numpy as np

from ivl_embodied.plan.schema import GROUNDING_MAX, Plan

COLOURS = ((255, 64, 64), (64, 160, 255), (255, 200, 0), (80, 220, 120), (220, 100, 255))


def box_pixels(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """A ``0..GROUNDING_MAX`` box as pixel corners of a ``width`` x ``height`` frame."""
    x1, y1, x2, y2 = box
    return (round(x1 * width / GROUNDING_MAX), round(y1 * height / GROUNDING_MAX),
            round(x2 * width / GROUNDING_MAX), round(y2 * height / GROUNDING_MAX))


def draw_plan(rgb: np.ndarray, plan: Plan, caption: str = "") -> np.ndarray:
    """A copy of ``rgb`` (HxWx3 uint8) with ``plan``'s boxes and phrases drawn, and ``caption`` at the bottom."""
    from PIL import Image, ImageDraw

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"draw_plan takes HxWx3 uint8 frames, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    for n, step in enumerate(plan.steps, 1):
        colour = COLOURS[(n - 1) % len(COLOURS)]
        for box, label, width in ((step.box, f"{n} {step.action} {step.object}", 3),
                                  (step.target_box, f"{n} -> {step.target}", 2)):
            if box is None:
                continue
            x1, y1, x2, y2 = box_pixels(box, w, h)
            draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
            left, top, right, bottom = draw.textbbox((x1, max(0, y1 - 12)), label)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
            draw.text((x1, max(0, y1 - 12)), label, fill=colour)
    if caption:
        left, top, right, bottom = draw.textbbox((4, h - 14), caption)
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(0, 0, 0))
        draw.text((4, h - 14), caption, fill=(255, 255, 255))
    return np.asarray(image)


def overlay(frames: list[np.ndarray], marks: list[tuple[int, Plan, str]]) -> list[np.ndarray]:
    """``frames`` with, from each mark's frame index on, that mark's plan (and caption) drawn, until the next."""
    marks = sorted(marks, key=lambda m: m[0])
    out, k = [], -1
    for i, frame in enumerate(frames):
        while k + 1 < len(marks) and marks[k + 1][0] <= i:
            k += 1
        out.append(draw_plan(frame, marks[k][1], marks[k][2]) if k >= 0 else frame)
    return out
