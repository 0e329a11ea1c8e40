"""Plans drawn on frames: boxes where the plan puts them, from the frame the plan arrived on."""

from __future__ import annotations

import numpy as np
import pytest

from ivl_embodied.plan.draw import COLOURS, box_pixels, draw_plan, overlay
from ivl_embodied.plan.schema import parse_plan

PLAN = parse_plan('[{"action":"pick","object":"red cube","box":[100,200,300,400]},'
                  '{"action":"place","object":"red cube","target":"green bowl","target_box":[500,500,900,800]}]')


def test_boxes_are_drawn_where_the_plan_puts_them_in_the_step_colour():
    frame = np.zeros((480, 640, 3), np.uint8)
    out = draw_plan(frame, PLAN, "attempt 1")
    assert box_pixels((100, 200, 300, 400), 640, 480) == (64, 96, 192, 192)
    assert tuple(out[150, 64]) == COLOURS[0] and tuple(out[150, 192]) == COLOURS[0]  # left and right edges
    x1, y1, x2, y2 = box_pixels((500, 500, 900, 800), 640, 480)
    assert tuple(out[(y1 + y2) // 2, x2]) == COLOURS[1]  # the second step's target box
    assert not out[150, 128].any()  # inside a box stays as it was
    assert out[470:, :200].any()  # the caption
    assert not frame.any()  # the input is not drawn on


def test_overlay_draws_each_plan_from_its_frame_on():
    frames = [np.zeros((48, 64, 3), np.uint8) for _ in range(4)]
    out = overlay(frames, [(2, PLAN, "")])
    assert not out[0].any() and not out[1].any() and out[2].any() and out[3].any()
    assert overlay(frames, []) == frames


def test_a_frame_that_is_not_rgb_is_refused():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_plan(np.zeros((48, 64), np.float32), PLAN)
