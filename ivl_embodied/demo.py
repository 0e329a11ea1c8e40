"""``ivl-embodied demo``: the stack's node graph on the simulated robot, driven like an operator.

For each task, the graph runs as separate processes talking over DDS (loopback):

* ``sim_node``       MuJoCo arm + RGB-D camera behind ROS topics, the task's scene
* ``executor_node``  safety gate → 3D grounding from depth → IK skills → joint trajectories
* with a learned planner (``--planner default`` or a checkpoint directory) also
  ``vision_node`` (image → bf16 visual embeddings) and ``planner_node`` (language model only),
  and the demo sends the task's instruction as an operator would (``TaskRequest``);
* with ``--planner oracle`` the plan comes from the simulator's oracle instead (boxes projected
  from the scene), published as the planner node would publish it — everything after the
  plan is the same real path.

``--planner auto`` (the default) uses the shipped default planner when it is there and the
oracle otherwise. The result of each task is the executor's final status *and* the
simulator's own success predicate; camera frames received over DDS are written to an MP4.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("ivl_embodied.demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--planner", default="auto", help="auto | oracle | default | a checkpoint directory")
    parser.add_argument("--split", default="heldout", choices=("train", "val", "heldout"))
    parser.add_argument("--tasks", type=int, nargs="+", default=[0, 1, 2], metavar="INDEX",
                        help="task indices in the split (default: 0 1 2 = one of each type)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="videos and summary go here")
    parser.add_argument("--realtime-factor", type=float, default=None,
                        help="simulated seconds per wall second (default: 2 with oracle plans; 1 with a learned "
                             "planner, whose seconds of CPU inference then count as robot time one to one "
                             "against the executor's max_plan_age_s)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per task")
    parser.add_argument("--robot", default="ivl_arm6", metavar="NAME",
                        help="the arm: a name of config/robots/ (ivl_arm6, panda, ur5e) or a robot YAML file")
    parser.add_argument("--record", type=Path, default=None, metavar="OUT.mcap",
                        help="record the graph's topics (camera, embeddings, plans, status, commands) to MCAP")
    parser.add_argument("--require-success", action="store_true",
                        help="exit 3 when any task fails (default: task failures are results, exit 0)")


def choose_planner(name: str) -> str:
    if name != "auto":
        return name
    from ivl_embodied.checkpoints.planner import DEFAULT_PLANNER_DIR

    if (DEFAULT_PLANNER_DIR / "vision").is_dir():
        return "default"
    log.warning("the default planner is not shipped yet (issue 5): plans come from the simulator's "
                "oracle; run with --planner DIR to use a checkpoint")
    return "oracle"


def _oracle_plan(task):
    from ivl_embodied.sim.oracle import oracle_plan
    from ivl_embodied.sim.tasks import scene_for
    from ivl_embodied.sim.world import SimWorld

    world = SimWorld(scene_for(task))
    try:
        world.settle()  # exactly as sim_node settles it
        return oracle_plan(world, task.goal)
    finally:
        world.close()


class Driver:
    """The operator's side: sends a task (or an oracle plan), follows status, keeps frames."""

    def __init__(self):
        from ivl_embodied.transport import make_node

        self.node = make_node("demo_operator")
        self.statuses: list = []
        self.frames: list = []
        self.goal: list[bool] = []
        self.embedding_stamps: list[int] = []
        self.plans: list[tuple] = []  # (frames received before it, Plan, caption): drawn on the video from there
        n = self.node
        self.plan_pub = n.create_publisher("ivl_embodied_msgs/msg/ActionPlan", "ivl/plan")
        self.task_pub = n.create_publisher("ivl_embodied_msgs/msg/TaskRequest", "ivl/task")
        from ivl_embodied.nodes.status import STATUS_QOS, follow_planner

        n.create_subscription("ivl_embodied_msgs/msg/TaskStatus", "ivl/task_status", self.statuses.append,
                              STATUS_QOS)
        self.planner_beats = follow_planner(n)  # the planner is listening for tasks
        n.create_subscription("sensor_msgs/msg/Image", "camera/color/image_raw", self.frames.append, "sensor_data")
        n.create_subscription("std_msgs/msg/Bool", "ivl/sim/goal_reached", lambda m: self.goal.append(bool(m.data)))
        n.create_subscription("ivl_embodied_msgs/msg/VisualEmbedding", "ivl/visual_embeddings",
                              self._on_embedding, "large_latest")
        n.create_subscription("ivl_embodied_msgs/msg/ActionPlan", "ivl/plan", self._on_plan)

    def _on_plan(self, msg) -> None:
        from ivl_embodied.transport.convert import msg_to_plan

        if msg.steps:  # a plan, not a "no further alternative" answer
            try:
                plan = msg_to_plan(msg)
            except ValueError:
                return  # the executor refuses it and says why; nothing to draw
            self.plans.append((len(self.frames), plan, f"attempt {msg.attempt}, candidate {msg.candidate + 1}: "
                                                       f"{msg.instruction}"))

    def _on_embedding(self, msg) -> None:
        from ivl_embodied.transport.convert import stamp_to_ns

        self.embedding_stamps.append(stamp_to_ns(msg.header.stamp))

    @property
    def embeddings(self) -> int:
        """Embeddings of this scene's frames (not of the last scene's final image, which the vision
        node may still encode after the new scene appeared)."""
        from ivl_embodied.transport.convert import stamp_to_ns

        frames = {stamp_to_ns(f.header.stamp) for f in self.frames}
        return sum(s in frames for s in self.embedding_stamps)

    def reset(self) -> None:
        """Forget the last scene. Its simulator has exited by now, but the samples it sent last may still wait in
        our readers: take them first (a frame of the last scene once stood in for the new scene's first frame,
        and an oracle plan was grounded in the wrong scene)."""
        self.node.spin_until(lambda: False, 0.3)
        self.statuses.clear()
        self.frames.clear()
        self.goal.clear()
        self.embedding_stamps.clear()
        self.plans.clear()


def _result(status: str, message: str, t0: float, driver: Driver, verdict: bool) -> dict:
    """One task's outcome. ``verdict``: the stack reached a final status for it (whatever it was);
    False when the stack itself failed (no robot, no embeddings, no final status in time)."""
    from ivl_embodied.plan.draw import overlay
    from ivl_embodied.transport.convert import msg_to_image

    goal = bool(driver.goal and driver.goal[-1])
    return {"ok": verdict and status == "SUCCEEDED" and goal, "verdict": verdict, "status": status,
            "message": message, "goal_reached": goal, "wall_s": round(time.monotonic() - t0, 2),
            "frames": overlay([msg_to_image(f) for f in driver.frames], driver.plans)}


def run_task(driver: Driver, task, task_id: str, planner: str, timeout: float, retries: int = 5) -> dict:
    """Send one task (or its oracle plan) and follow it to a final status and the simulator's verdict.

    A task REJECTED because the planner had no current view yet (``CAMERA_NOT_READY``: its reader
    can match the vision writer a moment after ours did, and volatile topics keep no history) is sent
    again, ``retries`` times at most, a second apart, as an operator would."""
    from ivl_embodied.nodes.status import CAMERA_NOT_READY, TERMINAL, state_name
    from ivl_embodied.transport import msg_type
    from ivl_embodied.transport.convert import header, plan_to_msg, stamp_to_ns

    node = driver.node
    t0 = time.monotonic()
    if not node.spin_until(lambda: len(driver.frames) >= 2 and bool(driver.goal), timeout=60):
        return _result("NO_ROBOT", "no camera frames from sim_node within 60 s", t0, driver, False)
    if planner == "oracle":
        stamp = stamp_to_ns(driver.frames[-1].header.stamp)
        driver.plan_pub.publish(plan_to_msg(_oracle_plan(task), task_id, task.instruction, "(oracle)",
                                            stamp=time.time_ns(), embedding_stamp=stamp))
    else:
        if not node.spin_until(lambda: bool(driver.planner_beats), timeout=120):
            return _result("NO_PLANNER", "no planner heartbeat within 120 s", t0, driver, False)
        # Two embeddings after this scene appeared: the planner has seen this scene, not the last one.
        if not node.spin_until(lambda: driver.embeddings >= 2, timeout=60):
            return _result("NO_EMBEDDINGS", "no visual embeddings within 60 s", t0, driver, False)

    def send() -> None:
        driver.task_pub.publish(msg_type("ivl_embodied_msgs/msg/TaskRequest")(
            header=header(time.time_ns()), task_id=task_id, instruction=task.instruction))

    if planner != "oracle":
        send()
    sent = time.monotonic()
    plan_s = None  # task sent -> first plan (PLANNED), as the operator sees it
    final = None
    seen = 0
    while time.monotonic() - t0 < timeout and final is None:
        node.spin_once(0.05)
        for s in driver.statuses[seen:]:
            if s.task_id != task_id:
                continue
            log.info("  [%s%s] %s", state_name(s.state), f" attempt {s.attempt}" if s.attempt > 1 else "", s.message)
            if state_name(s.state) == "REJECTED" and s.reason in CAMERA_NOT_READY and retries > 0:
                retries -= 1
                node.spin_until(lambda: False, timeout=1.0)
                send()
            elif state_name(s.state) in TERMINAL:
                final = s
            if state_name(s.state) == "PLANNED" and plan_s is None:
                plan_s = round(time.monotonic() - sent, 3)
        seen = len(driver.statuses)
    if final is None:
        return {**_result("TIMEOUT", f"no final status within {timeout:.0f} s", t0, driver, False), "plan_s": plan_s}
    if state_name(final.state) == "SUCCEEDED":
        node.spin_until(lambda: bool(driver.goal) and driver.goal[-1], timeout=3)
    return {**_result(state_name(final.state), final.message, t0, driver, True), "plan_s": plan_s,
            "reason": final.reason}


def run(args: argparse.Namespace) -> int:
    from ivl_embodied.launcher import (
        NodeProcess,
        NodeSpec,
        load_graph,
        loopback_env,
        node_argv,
        placement_envs,
        recorder_spec,
        stop_nodes,
    )
    from ivl_embodied.sim.recording import write_video
    from ivl_embodied.sim.tasks import load_split

    planner = choose_planner(args.planner)
    tasks = load_split(args.split)
    bad = [i for i in args.tasks if not 0 <= i < len(tasks)]
    if bad:
        print(f"error: task indices {bad} outside 0..{len(tasks) - 1} of split {args.split!r}", file=sys.stderr)
        return 2
    from ivl_embodied.sim.world import robot_error

    why = robot_error(args.robot)
    if why:
        print(f"error: --robot: {why}", file=sys.stderr)
        return 2
    try:
        recorder = recorder_spec(args.record) if args.record else None
    except ValueError as e:
        print(f"error: --record: {e}", file=sys.stderr)
        return 2
    env = loopback_env()
    os.environ.update({k: env[k] for k in ("CYCLONEDDS_URI", "ROS_DOMAIN_ID", "IVL_TRANSPORT")})
    graph = load_graph()
    specs = {n.name: n for n in graph.nodes}
    args.out.mkdir(parents=True, exist_ok=True)

    # every node on this machine: each gets its share of the cores (what the launcher does)
    running = ["sim_node", "executor_node"] + ([] if planner == "oracle" else ["vision_node", "planner_node"])
    if recorder is not None:
        specs[recorder.name] = recorder
        running.append(recorder.name)
    node_envs = placement_envs([specs[n] for n in running], env)

    def start(name: str, *params: str) -> NodeProcess:
        spec: NodeSpec = specs[name]
        # the simulator's /clock is the graph's time (what the launcher does for a graph with sim_node)
        return NodeProcess(spec, node_argv(spec, graph.params_file, ["use_sim_time:=true", *params]),
                           node_envs[spec.name])

    realtime_factor = args.realtime_factor
    if realtime_factor is None:
        realtime_factor = 2.0 if planner == "oracle" else 1.0
    resident = [start("recorder_node")] if args.record else []  # first: it hears everything the others say
    resident.append(start("executor_node", f"robot:={args.robot}"))
    if planner != "oracle":
        resident += [start("vision_node", f"checkpoint:={planner}"), start("planner_node", f"checkpoint:={planner}")]
    driver = Driver()
    results = []
    try:
        for i in args.tasks:
            task = tasks[i]
            print(f"\n=== task {i} ({task.goal.type}): {task.instruction!r}  [planner: {planner}]", flush=True)
            driver.reset()
            sim = start("sim_node", f"split:={args.split}", f"task_index:={i}", f"robot:={args.robot}",
                        f"realtime_factor:={realtime_factor}")
            try:
                r = run_task(driver, task, f"demo{i}", planner, args.timeout)
            finally:
                stop_nodes([sim])
            dead = [p.spec.name for p in resident if p.popen.poll() is not None]
            if dead:  # a task cannot be judged by a stack that lost a node
                r.update(verdict=False, ok=False, status="NODE_DIED", message=f"{', '.join(dead)} exited")
            frames = r.pop("frames")
            video = write_video(frames, args.out / f"task_{i:03d}.mp4", fps=5.0) if frames else None
            r.update(index=i, instruction=task.instruction, type=task.goal.type,
                     video=str(video) if video else None)
            results.append(r)
            print(f"=== {'SUCCESS' if r['ok'] else 'FAILURE'}: executor {r['status']}, simulator goal "
                  f"{'reached' if r['goal_reached'] else 'not reached'} ({r['wall_s']} s) {r['message']}", flush=True)
            if dead:
                break
    finally:
        driver.node.shutdown()
        stop_nodes(resident)
    summary = {"planner": planner, "split": args.split, "tasks": results,
               "success_rate": round(sum(r["ok"] for r in results) / len(results), 3),
               "stack_failures": [r["index"] for r in results if not r["verdict"]]}
    if args.record:
        summary["recording"] = str(args.record)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{sum(r['ok'] for r in results)}/{len(results)} tasks succeeded; videos and summary in {args.out}/")
    for r in results:
        print(f"  task {r['index']} ({r['type']}): {'SUCCESS' if r['ok'] else 'FAILURE'} — {r['status']}, "
              f"goal {'reached' if r['goal_reached'] else 'not reached'}")
    return exit_status(results, args.require_success)


def exit_status(results: list[dict], require_success: bool = False) -> int:
    """0: the stack ran and every task reached a verdict; 1: the stack failed on some task (no
    robot, no embeddings, no final status in time, a node died); 3: with ``require_success``, a
    task's verdict was a failure."""
    if not results or not all(r["verdict"] for r in results):
        return 1
    if require_success and not all(r["ok"] for r in results):
        return 3
    return 0
