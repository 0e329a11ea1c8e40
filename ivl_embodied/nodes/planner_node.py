"""planner_node: latest visual embeddings + an operator's task → ActionPlan.

Runs on the workstation GPU with only the language model. Keeps the newest ``VisualEmbedding``;
for each ``TaskRequest`` it reads the operator's words, plans from the newest embeddings (refusing
embeddings older than ``max_input_age_s`` or none at all) and publishes the plan and task status.

Follow-up requests come from the executor, for the same task (``TaskRequest.attempt``/``candidate``):

* ``candidate`` k > 0: the k-th alternative for the frame the first plan of that attempt was made
  from (the executor's scene check refused the ones before): the greedy plan is candidate 0, then
  ``samples`` sampled plans per view and the mirrored view's plans, ranked by the model's own
  log-probability (:func:`~ivl_embodied.language.planner.plan_candidates`; decoded only when asked).
  The mirrored view is the same frame flipped left-right, which the vision node encodes when asked
  (``mirror_request_topic``): it costs nothing for tasks whose first plan passes.
* ``attempt`` n > 1, candidate 0: plan again after attempt n-1 missed its goal, from embeddings of an
  image stamped at or after ``not_before`` (the scene after the motion); the request waits for them
  up to ``fresh_image_wait_s``.

A follow-up the planner cannot serve is answered with an ActionPlan without steps whose ``raw_text``
says why; the executor owns the task's final status from the first plan on.

Requests are queued (at most ``max_queued_tasks``; beyond that a task is REJECTED ``busy`` at once)
and planned one by one on a worker thread, so a burst never drops a task unanswered and the
embeddings keep flowing while the model decodes. Planning time is bounded by ``max_planning_s``
(and ``max_new_tokens``, ``max_instruction_chars``); an exception while planning ends the task
FAILED ``internal_error``.
Tasks the executor was handling when it died or restarted are FAILED ``node_lost``
(:mod:`ivl_embodied.nodes.watchdog`); the executor does the same for the planner's.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time

from ivl_embodied.checkpoints.planner import resolve_checkpoint
from ivl_embodied.nodes.base import NodeBase, run_node
from ivl_embodied.nodes.status import StatusPublisher, Watchdog
from ivl_embodied.transport import QosProfile, msg_type
from ivl_embodied.transport.convert import header, msg_to_payload, plan_to_msg, stamp_to_ns

ACTION_PLAN = "ivl_embodied_msgs/msg/ActionPlan"
KEPT_TASKS = 16  # candidate generators kept for follow-up requests (the newest tasks' attempts)
AHEAD_NS = 1_000_000_000  # embeddings stamped this far ahead of the node's clock are of another timeline


class PlannerNode(NodeBase):
    NAME = "planner_node"
    PARAMETERS = {
        "checkpoint": "default",
        "device": "cpu",
        "max_new_tokens": 160,
        "max_planning_s": 20.0,  # decoding one plan stops after this long: FAILED planning_timeout
        "embedding_topic": "ivl/visual_embeddings",
        "mirrored_embedding_topic": "ivl/visual_embeddings_mirrored",  # "" = plan on the frame only
        "mirror_request_topic": "ivl/vision/mirror_request",
        "mirror_wait_s": 3.0,  # how long alternatives wait for the mirrored frame's embeddings
        "task_topic": "ivl/task",
        "plan_topic": "ivl/plan",
        "status_topic": "ivl/task_status",
        "max_input_age_s": 2.0,
        "fresh_image_wait_s": 5.0,  # how long a retry waits for an image taken after the missed attempt
        "samples": 8,  # sampled alternative plans per view, offered when the executor asks for more
        "max_instruction_chars": 500,
        "max_queued_tasks": 32,  # requests waiting to be planned; more are REJECTED busy
        # embeddings from another encoder are dropped: "auto" = the encoder of the checkpoint's own vision
        # side (when it has one), "" = accept any, else this exact encoder_id
        "encoder_id": "auto",
        "heartbeat_topic": "ivl/planner/heartbeat",
        "executor_heartbeat_topic": "ivl/executor/heartbeat",
        "watchdog_timeout_s": 3.0,  # tasks of an executor silent (or restarted) this long are FAILED node_lost
        "read_instructions": True,  # read the operator's words first: refusals, canonical task, held decoding
        "threads": 0,  # CPU threads for the language model; 0 = this node's share of the cores ($IVL_CPU_SHARE)
        # token-by-token decoding: auto (the static decoder where the model is a Qwen3, else transformers), hf,
        # static, static-int8 (CPU: int8 weights, a quarter of the bytes per token; tokens may differ from fp32)
        "decoder": "auto",
    }

    def setup(self) -> None:
        import torch

        from ivl_embodied.checkpoints.internvl import load_language
        from ivl_embodied.language.planner import GenerationSettings
        from ivl_embodied.runtime.threads import configure_torch

        p = self.params
        self.threads = configure_torch(p["threads"])
        self.logger.info("%d CPU thread(s) for the language model", self.threads)
        for name in ("samples", "max_instruction_chars", "max_queued_tasks"):
            if isinstance(p[name], bool) or not isinstance(p[name], int) or p[name] < (0 if name == "samples" else 1):
                raise ValueError(f"{name} must be an int >= {0 if name == 'samples' else 1}, got {p[name]!r}")
        dtype = torch.bfloat16 if p["device"].startswith("cuda") else torch.float32
        self.planner = load_language(resolve_checkpoint(p["checkpoint"], "language"), dtype=dtype, device=p["device"])
        self.logger.info("decoding with the %s decoder", self.planner.set_decoder(p["decoder"]))
        self.settings = GenerationSettings(max_new_tokens=p["max_new_tokens"],
                                           max_time_s=float(p["max_planning_s"]) or None)
        self.encoder_id = expected_encoder_id(p["encoder_id"], p["checkpoint"])
        self.latest = None  # (VisualEmbeddings, header of their message, monotonic receipt time)
        self.mirrored = None  # (VisualEmbeddings, stamp ns) of the newest mirrored frame
        self.mirrored_cv = threading.Condition()
        self.rejected = ""  # why the last dropped embeddings were dropped
        self.tasks: collections.OrderedDict = collections.OrderedDict()  # (task_id, attempt) -> candidates
        self.waiting: dict[str, tuple] = {}  # task_id -> (retry request, monotonic deadline)
        self.lock = threading.Lock()  # guards `waiting` (worker thread and spinning thread)
        self.inbox: queue.Queue = queue.Queue(maxsize=p["max_queued_tasks"])
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self.serve, name="planner", daemon=True)
        self.plan_pub = self.node.create_publisher(ACTION_PLAN, p["plan_topic"])
        self.status = StatusPublisher(self.node, p["status_topic"])
        self.node.create_subscription("ivl_embodied_msgs/msg/VisualEmbedding", p["embedding_topic"],
                                      self.on_embedding, "large_latest")
        self.mirror_request = None
        if p["mirrored_embedding_topic"]:
            self.node.create_subscription("ivl_embodied_msgs/msg/VisualEmbedding", p["mirrored_embedding_topic"],
                                          self.on_mirrored, "large_latest")
            self.mirror_request = self.node.create_publisher("std_msgs/msg/Header", p["mirror_request_topic"])
        self.node.create_subscription("ivl_embodied_msgs/msg/TaskRequest", p["task_topic"], self.enqueue,
                                      QosProfile("reliable", 256, "volatile"))
        self.node.create_timer(0.2, self.expire_waiting)
        self.watchdog = Watchdog(self.node, self.NAME, self.status, p["status_topic"], p["heartbeat_topic"],
                                 "executor", p["executor_heartbeat_topic"], float(p["watchdog_timeout_s"]))
        self.worker.start()

    def close(self) -> None:
        self.stopping.set()
        worker = getattr(self, "worker", None)
        if worker is not None and worker.is_alive():
            worker.join(timeout=5.0)

    # -- the queue -------------------------------------------------------------------------------
    def enqueue(self, msg) -> None:
        """Subscription callback: queue the request, or refuse it at once when the queue is full."""
        try:
            self.inbox.put_nowait(msg)
            if msg.attempt <= 1 and msg.candidate == 0:  # acknowledged: the watchdogs know the planner has it
                self.status(msg.task_id, "RECEIVED", msg.instruction[:200], attempt=1)
        except queue.Full:
            self.refuse(msg, f"the planner has {self.inbox.qsize()} requests waiting (max_queued_tasks)", "busy")

    def serve(self) -> None:
        """Worker thread: plan queued requests one by one; nothing raised here ends the node."""
        while not self.stopping.is_set():
            try:
                msg = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.on_task(msg)
            except Exception as e:
                self.logger.exception("task %s: planning raised", msg.task_id)
                self.refuse(msg, f"planning raised {type(e).__name__}: {e}", "internal_error", state="FAILED")

    # -- embeddings ------------------------------------------------------------------------------
    def _validated(self, msg, topic: str):
        import torch

        from ivl_embodied.embeddings.payload import VisualEmbeddings

        try:
            visual = VisualEmbeddings.from_payload(msg_to_payload(msg), device=self.planner.device)
            if visual.hidden_size != self.planner.hidden_size:
                raise ValueError(f"embeddings have hidden size {visual.hidden_size} but this planner's "
                                 f"language model has {self.planner.hidden_size}")
            if self.encoder_id and visual.encoder_id != self.encoder_id:
                raise ValueError(f"embeddings come from encoder {visual.encoder_id!r}; this planner was trained "
                                 f"on {self.encoder_id!r} (parameter encoder_id)")
            if not bool(torch.isfinite(visual.embeddings).all()):
                raise ValueError("embeddings hold non-finite values (NaN or inf)")
        except ValueError as e:
            self.rejected = str(e)
            self.logger.error("dropped visual embeddings on %s: %s", topic, e)
            return None
        return visual

    def on_embedding(self, msg) -> None:
        """Validate on receipt: a malformed or mismatched sample is dropped, the last good one kept."""
        visual = self._validated(msg, self.params["embedding_topic"])
        if visual is None:
            return
        self.latest = (visual, msg.header, time.monotonic())
        stamp = stamp_to_ns(msg.header.stamp)
        with self.lock:
            ready = [r for r, _ in self.waiting.values() if stamp >= stamp_to_ns(r.not_before)]
            for request in ready:
                del self.waiting[request.task_id]
        for request in ready:
            self.enqueue(request)

    def on_mirrored(self, msg) -> None:
        visual = self._validated(msg, self.params["mirrored_embedding_topic"])
        if visual is not None:
            with self.mirrored_cv:
                self.mirrored = (visual, stamp_to_ns(msg.header.stamp))
                self.mirrored_cv.notify_all()

    def ask_mirrored(self, emb_header) -> None:
        """Ask the vision node for the mirrored frame now (it is encoded while other plans decode)."""
        stamp = stamp_to_ns(emb_header.stamp)
        if self.mirror_request is not None and not (self.mirrored is not None and self.mirrored[1] == stamp):
            self.mirror_request.publish(header(stamp, emb_header.frame_id))

    def mirrored_view(self, emb_header):
        """The embeddings of the frame ``emb_header`` names, flipped left-right: asked of the vision node
        and awaited up to ``mirror_wait_s`` (None if they do not come)."""
        stamp = stamp_to_ns(emb_header.stamp)
        have = lambda: self.mirrored is not None and self.mirrored[1] == stamp  # noqa: E731
        with self.mirrored_cv:
            if not have():
                self.ask_mirrored(emb_header)
                self.mirrored_cv.wait_for(have, timeout=float(self.params["mirror_wait_s"]))
            if have():
                return self.mirrored[0]
        self.logger.warning("no mirrored embeddings of the frame stamped %d ns within mirror_wait_s; "
                            "alternatives from the frame alone", stamp)
        return None

    def expire_waiting(self) -> None:
        now = time.monotonic()
        with self.lock:
            expired = [r for r, deadline in self.waiting.values() if now > deadline]
            for request in expired:
                del self.waiting[request.task_id]
        for request in expired:
            self.no_plan(request, f"no image taken after attempt {request.attempt - 1} arrived within "
                                      f"{self.params['fresh_image_wait_s']:.1f} s")

    # -- tasks -----------------------------------------------------------------------------------
    def refuse(self, msg, message: str, reason: str, state: str = "REJECTED") -> None:
        """End a request: an operator's with a final status, the executor's follow-up with an empty plan
        (the executor owns the task's final status from the first plan on)."""
        if msg.attempt > 1 or msg.candidate > 0:
            self.no_plan(msg, message)
        else:
            self.status(msg.task_id, state, message, reason=reason, attempt=1)

    def no_plan(self, request, why: str) -> None:
        """Answer a follow-up request that cannot be served: a plan without steps, saying why."""
        self.logger.warning("task %s attempt %d candidate %d: %s", request.task_id, request.attempt,
                            request.candidate, why)
        self.plan_pub.publish(msg_type(ACTION_PLAN)(
            header=header(self.node.now_ns()), task_id=request.task_id, instruction=request.instruction, raw_text=why,
            attempt=request.attempt, candidate=request.candidate))

    def on_task(self, msg) -> None:
        from ivl_embodied.language.instruction import InstructionRefused
        from ivl_embodied.language.planner import build_prompt, planning_input

        task_id, instruction = msg.task_id, msg.instruction
        attempt, candidate = max(1, int(msg.attempt)), int(msg.candidate)

        if not instruction.strip():
            return self.refuse(msg, "empty instruction", "bad_instruction")
        if len(instruction) > self.params["max_instruction_chars"]:
            return self.refuse(msg, f"instruction of {len(instruction)} characters; at most "
                               f"max_instruction_chars={self.params['max_instruction_chars']} are read",
                               "bad_instruction")
        try:
            build_prompt(instruction, 1)  # chat-template special tokens are never an operator's words
        except ValueError as e:
            return self.refuse(msg, str(e), "bad_instruction")
        if candidate > 0:  # the attempt's plans were made from its words when it began
            return self.next_candidate(msg, attempt, candidate)
        try:
            words, restriction = planning_input(instruction, self.params["read_instructions"])
        except InstructionRefused as e:
            return self.refuse(msg, e.refusal.message, e.refusal.reason)
        if self.latest is None:
            why = f"; the last were dropped: {self.rejected}" if self.rejected else ""
            return self.refuse(msg, f"no valid visual embeddings received on {self.params['embedding_topic']}{why}",
                               "no_embeddings")
        visual, emb_header, received = self.latest
        stamp, now = stamp_to_ns(emb_header.stamp), self.node.now_ns()
        if now and stamp > now + AHEAD_NS:  # a restarted simulator: its /clock is back, its camera not yet encoded
            return self.refuse(msg, f"latest visual embeddings are stamped {stamp / 1e9:.1f} s, ahead of this node's "
                               f"clock ({now / 1e9:.1f} s): robot time went back and no frame of the new timeline "
                               "is encoded yet (or the camera's clock is ahead)", "stale_embeddings")
        not_before = stamp_to_ns(msg.not_before)
        if not_before and stamp < not_before:
            with self.lock:
                self.waiting[task_id] = (msg, time.monotonic() + float(self.params["fresh_image_wait_s"]))
            return
        age = time.monotonic() - received
        if self.params["max_input_age_s"] > 0 and age > self.params["max_input_age_s"]:
            return self.refuse(msg, f"latest visual embeddings are {age:.1f} s old (max_input_age_s="
                               f"{self.params['max_input_age_s']})", "stale_embeddings")
        self.status(task_id, "PLANNING", instruction, attempt=attempt)
        self.start_candidates(msg, attempt, visual, emb_header, words, restriction)

    def start_candidates(self, msg, attempt: int, visual, emb_header, words: str, restriction) -> None:
        from ivl_embodied.language.planner import plan_candidates

        views = [(visual, False)]
        if self.mirror_request is not None:
            views.append((lambda: self.mirrored_view(emb_header), True))
        t0 = time.perf_counter()
        gen = plan_candidates(self.planner, views, words, self.settings, restriction, self.params["samples"],
                              cancelled=self.stopping.is_set)
        first = next(gen)
        self.logger.info("task %s attempt %d planned in %.0f ms: %s", msg.task_id, attempt,
                         1e3 * (time.perf_counter() - t0), first.text)
        if first.plan is None:
            timeout = first.stopped == "max_time"
            self.status(msg.task_id, "FAILED", first.error if timeout else f"unparseable plan {first.text!r}: "
                        f"{first.error}", reason="planning_timeout" if timeout else "unparseable_plan", attempt=attempt)
            return
        self.tasks[(msg.task_id, attempt)] = {"gen": gen, "served": [first], "header": emb_header}
        while len(self.tasks) > KEPT_TASKS:
            self.tasks.popitem(last=False)
        self.publish_plan(msg, attempt, 0, first, emb_header)
        self.status(msg.task_id, "PLANNED", first.text, attempt=attempt)

    def next_candidate(self, msg, attempt: int, candidate: int) -> None:
        entry = self.tasks.get((msg.task_id, attempt))
        if entry is None:
            return self.no_plan(msg, f"no plans kept for task {msg.task_id!r} attempt {attempt} "
                                     f"(the planner keeps the newest {KEPT_TASKS} attempts)")
        served = entry["served"]
        if len(served) == 1:  # the first alternative asked for: the second view is wanted soon
            self.ask_mirrored(entry["header"])
        while len(served) <= candidate:
            out = next(entry["gen"], None)
            if out is None:
                return self.no_plan(msg, f"no further alternative: {len(served)} distinct plans for this frame "
                                         f"were offered (samples={self.params['samples']} per view)")
            if out.plan is not None:
                served.append(out)
        self.publish_plan(msg, attempt, candidate, served[candidate], entry["header"])

    def publish_plan(self, msg, attempt: int, candidate: int, out, emb_header) -> None:
        self.plan_pub.publish(plan_to_msg(
            out.plan, msg.task_id, msg.instruction, out.text,
            prefill_ms=out.timings.get("prefill_ms", 0.0), decode_ms=out.timings.get("decode_ms", 0.0),
            generated_tokens=len(out.token_ids), stamp=self.node.now_ns(), frame_id=emb_header.frame_id,
            embedding_stamp=stamp_to_ns(emb_header.stamp), attempt=attempt, candidate=candidate,
        ))


def expected_encoder_id(value: str, checkpoint: str) -> str:
    """The ``encoder_id`` embeddings must carry: ``value``, or for ``auto`` the one recorded by the
    checkpoint's split vision side (``vision_config.json``), or "" (any) when it records none."""
    import json

    if value != "auto":
        return value
    try:
        meta = resolve_checkpoint(checkpoint, "vision") / "vision_config.json"
    except FileNotFoundError:
        return ""
    return str(json.loads(meta.read_text()).get("encoder_id", "")) if meta.is_file() else ""


def main(args: list[str] | None = None) -> int:
    return run_node(PlannerNode, args)


if __name__ == "__main__":
    sys.exit(main())
