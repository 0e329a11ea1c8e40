"""``ivl-embodied replay IN.mcap``: plan again from a recording, offline or through the stack.

**From the recorded embeddings** (the default). For every plan the recording holds that was an attempt's
first plan (``candidate == 0``, a plan and not a refusal), the recorded ``VisualEmbedding`` it was made from
(same stamp and frame as the plan's ``embedding_stamp``) and the recorded instruction go through a planner
exactly as the planner node takes them: the operator's words read (``planning_input``), then the greedy
constrained plan of that view. The result is compared with the recorded plan text. With the checkpoint that
made the recording every plan comes out the same; with another it shows what that checkpoint would have
planned on exactly the same inputs.

**Through the stack** (``--through-stack``): the recording's camera, depth, camera info, joint states,
``/tf_static`` and ``/tf`` are published again at the recorded pace (``--rate``), with ``/clock`` following
their stamps, in place of the simulator or the camera driver, to a vision node, a planner node and an executor
node in dry run (``dry_run:=true``: it has no trajectory or gripper publisher at all). The recorded operator
tasks (or ``--task``) are sent when the recording reached them; each ends REJECTED ``dry_run`` with the 3D poses
its plan was grounded to, or with the reason it was refused. Trajectory and gripper commands are counted (there
must be none). It is how a bag from a real camera on a real table is checked before an arm moves. The graph runs
on its own loopback DDS domain; the nodes' output goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

PLAN_TOPIC = "/ivl/plan"
EMBEDDING_TOPIC = "/ivl/visual_embeddings"
TASK_TOPIC = "/ivl/task"
# what a camera driver and a robot publish: played again in place of the simulator (name -> QoS)
SENSOR_TOPICS = {"/camera/color/image_raw": "sensor_data", "/camera/depth/image_raw": "sensor_data",
                 "/camera/color/camera_info": "sensor_data", "/joint_states": "default", "/tf_static": "latched",
                 "/tf": "default"}
COMMAND_TOPICS = {"/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
                  "/gripper_controller/commands": "std_msgs/msg/Float64MultiArray"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", type=Path, help="an MCAP file written by `ivl-embodied record` or `demo --record`")
    parser.add_argument("--planner", default="default", help="checkpoint to plan with (default: the shipped one)")
    parser.add_argument("--max-new-tokens", type=int, default=160, help="as the planner node's max_new_tokens")
    parser.add_argument("--no-read-instructions", action="store_true",
                        help="decode from the words as typed (the planner node's read_instructions: false)")
    parser.add_argument("--plan-topic", default=PLAN_TOPIC)
    parser.add_argument("--embedding-topic", default=EMBEDDING_TOPIC)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--through-stack", action="store_true",
                        help="play the recording's camera and robot topics to vision, planner and a dry-run executor")
    parser.add_argument("--task", action="append", default=None, metavar="TEXT",
                        help="(--through-stack) send this task once the first frames played, instead of the recorded "
                             "ones (repeatable)")
    parser.add_argument("--rate", type=float, default=1.0, help="(--through-stack) playback speed")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="(--through-stack) seconds for the whole replay, start-up included")


def replay_embeddings(recording: str | Path, planner, max_new_tokens: int = 160, read_instructions: bool = True,
                      plan_topic: str = PLAN_TOPIC, embedding_topic: str = EMBEDDING_TOPIC) -> list[dict]:
    """Re-plan each recorded first plan from its recorded embeddings; one dict per plan (``same``: the
    replayed text equals the recorded one)."""
    from ivl_embodied.embeddings.payload import VisualEmbeddings
    from ivl_embodied.language.instruction import InstructionRefused
    from ivl_embodied.language.planner import GenerationSettings, planning_input
    from ivl_embodied.transport.convert import msg_to_payload, stamp_to_ns
    from ivl_embodied.transport.mcap_io import read_messages

    embeddings: dict[tuple[int, str], object] = {}
    plans = []
    for rec in read_messages(recording, topics=[plan_topic, embedding_topic]):
        if rec.topic == embedding_topic:
            embeddings[(stamp_to_ns(rec.msg.header.stamp), rec.msg.header.frame_id)] = rec.msg
        elif rec.msg.candidate == 0 and rec.msg.steps:
            plans.append(rec.msg)
    if not plans:
        raise ValueError(f"{recording}: no plans on {plan_topic} to replay")
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    results = []
    for plan in plans:
        key = (stamp_to_ns(plan.embedding_stamp), plan.header.frame_id)
        row = {"task_id": plan.task_id, "attempt": int(plan.attempt), "instruction": plan.instruction,
               "recorded": plan.raw_text}
        emb = embeddings.get(key)
        if emb is None:
            results.append({**row, "replayed": None, "same": False,
                            "error": f"no recorded embeddings stamped {key[0]} ns in frame {key[1]!r}"})
            continue
        visual = VisualEmbeddings.from_payload(msg_to_payload(emb), device=planner.device)
        try:
            words, restriction = planning_input(plan.instruction, read_instructions)
        except InstructionRefused as e:
            results.append({**row, "replayed": None, "same": False, "error": f"refused: {e.refusal.message}"})
            continue
        out = planner.generate(visual, words, settings, restriction)
        results.append({**row, "replayed": out.text, "same": out.text == plan.raw_text, "error": out.error})
    return results


def _stamp_ns(msg) -> int | None:
    """The header stamp of a sensor message (a TFMessage's first transform's), or None."""
    from ivl_embodied.transport.convert import stamp_to_ns

    h = getattr(msg, "header", None)
    if h is None and getattr(msg, "transforms", None):
        h = msg.transforms[0].header
    return stamp_to_ns(h.stamp) if h is not None else None


class Player:
    """Publishes a recording's sensor topics again, paced as recorded, with ``/clock`` from their stamps; calls
    ``on_task(task_id, instruction)`` where the recording has an operator's task (a ``TaskRequest`` that is not a
    follow-up; or, in a recording without them, a task's first plan)."""

    def __init__(self, node, recording: Path, rate: float, on_task=None):
        from ivl_embodied.nodes.sim_node import CLOCK_QOS, TF_STATIC_QOS
        from ivl_embodied.transport.mcap_io import recorded_channels

        if not rate > 0:
            raise ValueError(f"--rate must be > 0, got {rate!r}")
        self.node, self.recording, self.rate, self.on_task = node, recording, rate, on_task
        self.counts: dict[str, int] = {}
        self.tasks: set[str] = set()
        self.error: str | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        qos = {"sensor_data": "sensor_data", "default": None, "latched": TF_STATIC_QOS}
        self._pubs = {}
        types = {t: ty for t, ty in recorded_channels(recording).items() if t in SENSOR_TOPICS}
        missing = [t for t in ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info")
                   if t not in types]
        if missing:
            raise ValueError(f"{recording}: no {', '.join(missing)} to play (record them: `ivl-embodied record` "
                             "records the camera by default)")
        for topic, type_name in types.items():
            self._pubs[topic] = node.create_publisher(type_name, topic, qos[SENSOR_TOPICS[topic]])
        self._clock = node.create_publisher("rosgraph_msgs/msg/Clock", "/clock", CLOCK_QOS)

    @property
    def camera_publisher(self):
        return self._pubs["/camera/color/image_raw"]

    def start(self) -> None:
        threading.Thread(target=self._play, name="replay-player", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _play(self) -> None:
        from ivl_embodied.transport import msg_type
        from ivl_embodied.transport.convert import ns_to_stamp
        from ivl_embodied.transport.mcap_io import read_messages

        Clock = msg_type("rosgraph_msgs/msg/Clock")
        t0_log = t0 = clock = None
        try:
            for rec in read_messages(self.recording, topics=[*self._pubs, TASK_TOPIC, PLAN_TOPIC]):
                if t0_log is None:
                    t0_log, t0 = rec.log_time_ns, time.monotonic()
                delay = t0 + (rec.log_time_ns - t0_log) / 1e9 / self.rate - time.monotonic()
                if self._stop.wait(max(0.0, delay)):
                    return
                if rec.topic in (TASK_TOPIC, PLAN_TOPIC):
                    self._task(rec)
                    continue
                stamp = _stamp_ns(rec.msg)
                # the recording's time: forward with its stamps; a jump back is a new timeline (a new scene)
                if stamp and (clock is None or stamp > clock or stamp < clock - 1_000_000_000):
                    self._clock.publish(Clock(clock=ns_to_stamp(stamp)))
                    clock = stamp
                self._pubs[rec.topic].publish_raw(rec.data)
                self.counts[rec.topic] = self.counts.get(rec.topic, 0) + 1
        except Exception as e:  # a damaged recording: say so, stop playing
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.done.set()

    def _task(self, rec) -> None:
        task = operator_task(rec)
        if task is not None and task[0] not in self.tasks:
            self.tasks.add(task[0])
            if self.on_task is not None:
                self.on_task(*task)


def operator_task(rec) -> tuple[str, str] | None:
    """(task id, instruction) of a recorded operator's task: a ``TaskRequest`` that is not a follow-up, or (in a
    recording without requests, as the demo's oracle plans) a plan; None for anything else."""
    m = rec.msg
    if rec.topic == TASK_TOPIC and int(m.attempt) <= 1 and int(m.candidate) == 0 or rec.topic == PLAN_TOPIC and m.steps:
        return m.task_id, m.instruction
    return None


def recorded_tasks(recording: Path) -> dict[str, dict]:
    """The operator's tasks a recording holds, by id: instruction and the first plan recorded for it."""
    from ivl_embodied.transport.mcap_io import read_messages

    tasks: dict[str, dict] = {}
    for rec in read_messages(recording, topics=[TASK_TOPIC, PLAN_TOPIC]):
        task = operator_task(rec)
        if task is not None:
            t = tasks.setdefault(task[0], {"instruction": task[1], "plan": None})
            if rec.topic == PLAN_TOPIC and t["plan"] is None and int(rec.msg.candidate) == 0:
                t["plan"] = rec.msg.raw_text
    return tasks


def replay_through_stack(recording: Path, checkpoint: str, tasks: list[str] | None = None, rate: float = 1.0,
                         timeout: float = 300.0, log_out=None) -> dict:
    """Play ``recording`` to vision → planner → a dry-run executor; one dict per task sent, what the command
    topics carried (nothing, unless something is wrong) and what was played."""
    from ivl_embodied.console.state import Console
    from ivl_embodied.launcher import NodeProcess, load_graph, loopback_env, node_argv, placement_envs, stop_nodes
    from ivl_embodied.nodes.console_node import plan_msg_dict
    from ivl_embodied.nodes.status import REQUEST_QOS, STATUS, STATUS_QOS, follow_planner, state_name
    from ivl_embodied.transport import make_node, msg_type
    from ivl_embodied.transport.convert import header, stamp_to_ns

    env = loopback_env()
    graph = load_graph()
    specs = {n.name: n for n in graph.nodes}
    params = {"vision_node": [f"checkpoint:={checkpoint}"], "planner_node": [f"checkpoint:={checkpoint}"],
              "executor_node": ["dry_run:=true", "estop_latch_file:=''"]}  # not the real executor's latch
    envs = placement_envs([specs[n] for n in params], env)
    saved = {k: os.environ.get(k) for k in ("CYCLONEDDS_URI", "ROS_DOMAIN_ID", "IVL_TRANSPORT")}
    os.environ.update({k: env[k] for k in saved})  # this process's node joins the graph's domain
    procs = [NodeProcess(specs[n], node_argv(specs[n], graph.params_file, ["use_sim_time:=true", *p]), envs[n],
                         out=log_out or sys.stderr) for n, p in params.items()]
    node = make_node("replay_player")
    t_end = time.monotonic() + timeout
    try:
        task_pub = node.create_publisher("ivl_embodied_msgs/msg/TaskRequest", "ivl/task", REQUEST_QOS)

        class Sink:
            def send_task(self, task_id, instruction):
                task_pub.publish(msg_type("ivl_embodied_msgs/msg/TaskRequest")(
                    header=header(node.now_ns()), task_id=task_id, instruction=instruction))

            def send_cancel(self, task_id):  # the replay never cancels
                raise NotImplementedError

            def send_estop(self, engage):
                raise NotImplementedError

        console = Console(Sink())
        node.create_subscription(STATUS, "ivl/task_status", lambda m: console.on_status(
            m.task_id, state_name(m.state), m.message, m.reason, m.attempt, m.step, time.monotonic(),
            stamp_to_ns(m.header.stamp) / 1e9), STATUS_QOS)
        node.create_subscription("ivl_embodied_msgs/msg/ActionPlan", "ivl/plan",
                                 lambda m: console.on_plan(plan_msg_dict(m)))
        node.create_subscription("ivl_embodied_msgs/msg/ActionPlan", "ivl/grounded_plan",
                                 lambda m: console.on_grounded(plan_msg_dict(m)))
        commands = dict.fromkeys(COMMAND_TOPICS, 0)
        for topic, type_name in COMMAND_TOPICS.items():
            node.create_subscription(type_name, topic, lambda _m, t=topic: commands.__setitem__(t, commands[t] + 1))
        beats = follow_planner(node)
        pending: list[tuple[str, str]] = []
        recorded = {} if tasks else recorded_tasks(recording)
        if not tasks and not recorded:
            raise ValueError(f"{recording}: no operator tasks recorded on {TASK_TOPIC}; give them with --task")
        player = Player(node, recording, rate, on_task=lambda i, text: pending.append((i, text)))
        # the stack is up: the planner beats, vision and the executor listen to the camera
        camera = player.camera_publisher
        up = node.spin_until(lambda: bool(beats) and camera.matched_subscribers >= 2
                             and all(p.popen.poll() is None for p in procs), max(1.0, t_end - time.monotonic()))
        if not up:
            dead = [p.spec.name for p in procs if p.popen.poll() is not None]
            raise RuntimeError(f"the stack did not come up within {timeout:.0f} s"
                               + (f": {', '.join(dead)} exited" if dead else ""))
        if tasks:  # the operator's own tasks, once the first frames played
            player.on_task = None
            first = lambda: sum(player.counts.values()) > 0  # noqa: E731
            pending += [(f"replay{i}", text) for i, text in enumerate(tasks)]
            player.start()
            node.spin_until(first, 30.0)
        else:
            player.start()

        def finished() -> bool:
            while pending:
                console.submit(pending[0][1], pending.pop(0)[0])
            console.tick(time.monotonic())
            views = list(console.tasks.values())
            every = len(views) == (len(tasks) if tasks else len(recorded)) or player.done.is_set()
            return every and all(v.final for v in views) or any(p.popen.poll() is not None for p in procs)

        node.spin_until(finished, max(0.0, t_end - time.monotonic()))
        player.stop()
        node.spin_until(lambda: False, 1.0)  # a command sent at the very end would still be counted
        dead = [p.spec.name for p in procs if p.popen.poll() is not None]
        results = []
        for v in console.tasks.values():
            last = v.states[-1] if v.states else {}
            g = v.grounded
            plans = [p["raw_text"] for p in v.plans if p["steps"]]
            rec_plan = recorded.get(v.task_id, {}).get("plan")
            results.append({"task_id": v.task_id, "instruction": v.instruction, "final": v.final or "TIMEOUT",
                            "reason": last.get("reason", ""), "message": last.get("message", ""), "plans": plans,
                            "recorded_plan": rec_plan, "same_plan": bool(plans) and rec_plan == plans[0],
                            "grounded": None if g is None else [
                                {"action": st["action"], "object": st["object"], "target": st["target"],
                                 "pose": st["pose"]} for st in g["steps"]]})
        return {"recording": str(recording), "planner": checkpoint, "tasks": results, "commands": commands,
                "played": dict(player.counts), "playback_error": player.error, "nodes_died": dead}
    finally:
        node.shutdown()
        stop_nodes(procs)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_through_stack(args: argparse.Namespace) -> int:
    try:
        result = replay_through_stack(args.recording, args.planner, args.task, args.rate, args.timeout)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for t in result["tasks"]:
            reason = f" {t['reason']}" if t["reason"] else ""
            print(f"task {t['task_id']}: {t['instruction']!r}\n  [{t['final']}{reason}] {t['message']}")
            if t["recorded_plan"] is not None:
                print(f"  first plan {'the same as' if t['same_plan'] else 'NOT the same as'} the recorded one")
            for st in t["grounded"] or []:
                pose = ", ".join(f"{v:.3f}" for v in st["pose"]) if st["pose"] else "-"
                print(f"  {st['action']} {st['object']!r}{' -> ' + repr(st['target']) if st['target'] else ''}: "
                      f"({pose}) m")
        print(f"played {sum(result['played'].values())} messages; commands sent to the robot: "
              f"{sum(result['commands'].values())}")
        if result["playback_error"]:
            print(f"playback stopped: {result['playback_error']}")
    ok = (result["tasks"] and all(t["final"] != "TIMEOUT" for t in result["tasks"])
          and not any(result["commands"].values()) and not result["nodes_died"] and not result["playback_error"])
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    from ivl_embodied.checkpoints.internvl import load_language
    from ivl_embodied.checkpoints.planner import resolve_checkpoint

    if not args.recording.is_file():
        print(f"error: no recording at {args.recording}", file=sys.stderr)
        return 2
    if args.through_stack:
        return run_through_stack(args)
    planner = load_language(resolve_checkpoint(args.planner, "language"))
    try:
        results = replay_embeddings(args.recording, planner, args.max_new_tokens, not args.no_read_instructions,
                                    args.plan_topic, args.embedding_topic)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    same = sum(r["same"] for r in results)
    if args.json:
        print(json.dumps({"recording": str(args.recording), "planner": args.planner, "plans": results,
                          "same": same, "total": len(results)}, indent=1))
    else:
        for r in results:
            replayed = r["replayed"] if r["replayed"] is not None else r["error"]
            print(f"task {r['task_id']} attempt {r['attempt']}: {'same' if r['same'] else 'DIFFERENT'}\n"
                  f"  recorded: {r['recorded']}\n  replayed: {replayed}")
        print(f"{same}/{len(results)} plans the same as recorded")
    return 0 if same == len(results) else 1
