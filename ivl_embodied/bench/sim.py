"""``ivl-embodied bench sim``: physics steps/s, 640x480 render fps (RGB, depth), wall per episode."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--physics-steps", type=int, default=5000)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=3, help="oracle heldout episodes to time")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    import os

    from ivl_embodied.sim.episode import run_episode
    from ivl_embodied.sim.planners import make_planner
    from ivl_embodied.sim.tasks import load_split, scene_for
    from ivl_embodied.sim.world import SimWorld

    tasks = load_split("heldout")
    world = SimWorld(scene_for(tasks[0]))
    try:
        world.data.ctrl[:6] = [0.3, 0.6, 1.6, 0.0, 0.9, 0.0]  # moving arm, objects resting
        t0 = time.perf_counter()
        world.step(args.physics_steps)
        steps_s = args.physics_steps / (time.perf_counter() - t0)
        world.render_rgb(), world.render_depth()  # warm-up (context creation)
        t0 = time.perf_counter()
        for _ in range(args.frames):
            world.render_rgb()
        rgb_fps = args.frames / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(args.frames):
            world.render_depth()
        depth_fps = args.frames / (time.perf_counter() - t0)
    finally:
        world.close()
    planner = make_planner("oracle")
    eps = [run_episode(t, planner) for t in tasks[: args.episodes]]
    out = {
        "physics_steps_per_s": round(steps_s), "timestep_s": float(world.model.opt.timestep),
        "realtime_factor": round(steps_s * float(world.model.opt.timestep), 1),
        "render_rgb_fps_640x480": round(rgb_fps, 1), "render_depth_fps_640x480": round(depth_fps, 1),
        "episode_wall_s_median": round(statistics.median(e.wall_s for e in eps), 3),
        "episode_sim_s_median": round(statistics.median(e.sim_s for e in eps), 3),
        "episodes": len(eps), "episode_success": sum(e.success for e in eps),
        "gl_backend": os.environ.get("MUJOCO_GL"), "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:28s} {v}")
    return 0
