"""Episode recording: an MP4 of the camera view (imageio-ffmpeg) with the plans drawn, and a JSON trace."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ivl_embodied.sim.world import SimWorld

log = logging.getLogger(__name__)


def write_video(frames, path, fps: float) -> Path:
    """Write RGB uint8 frames [H, W, 3] as an H.264 MP4."""
    import imageio.v2 as imageio

    path = Path(path)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=6, macro_block_size=16) as w:
        for f in frames:
            w.append_data(f)
    return path


class EpisodeRecorder:
    """Collects camera frames during an episode (pass :meth:`on_frame` to the SimRobot)."""

    def __init__(self, directory, name: str, fps: float = 15.0, max_frames: int = 900):
        if fps <= 0 or max_frames < 1:
            raise ValueError(f"fps must be > 0 and max_frames >= 1, got {fps!r}, {max_frames!r}")
        self.dir = Path(directory)
        self.name = name
        self.fps = fps
        self.max_frames = max_frames
        self.frames: list[np.ndarray] = []
        self.object_tracks: dict[str, list] = {}
        self.plans: list[tuple] = []  # (first frame index, Plan, caption): drawn from that frame on

    def mark_plan(self, plan, caption: str = "") -> None:
        """Draw ``plan`` (a :class:`~ivl_embodied.plan.schema.Plan`) on the frames recorded from now on."""
        self.plans.append((len(self.frames), plan, caption))

    def on_frame(self, world: SimWorld) -> None:
        if len(self.frames) >= self.max_frames:
            return
        self.frames.append(world.render_rgb())
        for o in world.scene.objects:
            if o.kind in ("cube", "cylinder", "sphere"):
                self.object_tracks.setdefault(o.phrase, []).append(
                    [round(world.time, 3), *np.round(world.body_pos(o.name), 4).tolist()])

    def save(self, trace: dict) -> dict:
        """Write ``<name>.mp4`` and ``<name>.json``; returns their paths."""
        self.dir.mkdir(parents=True, exist_ok=True)
        video = self.dir / f"{self.name}.mp4"
        if self.frames:
            from ivl_embodied.plan.draw import overlay

            write_video(overlay(self.frames, self.plans), video, self.fps)
        from ivl_embodied.plan.schema import format_plan

        drawn = [{"from_frame": i, "plan": format_plan(plan), "caption": caption} for i, plan, caption in self.plans]
        trace = dict(trace, frames=len(self.frames), object_tracks=self.object_tracks, drawn_plans=drawn)
        path = self.dir / f"{self.name}.json"
        path.write_text(json.dumps(trace, indent=1))
        log.info("recorded %s (%d frames)", video, len(self.frames))
        return {"video": str(video) if self.frames else None, "trace": str(path)}
