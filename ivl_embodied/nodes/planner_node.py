"""planner_node: latest visual embeddings + an operator's task → ActionPlan.

Runs on the workstation GPU with only the language model. Keeps the newest
``VisualEmbedding``; for each ``TaskRequest`` it plans from it (refusing embeddings
older than ``max_input_age_s`` or none at all) and publishes the plan and task status.
"""

from __future__ import annotations

import sys
import time

from ivl_embodied.checkpoints.planner import resolve_checkpoint
from ivl_embodied.nodes.base import NodeBase, run_node
from ivl_embodied.nodes.status import StatusPublisher
from ivl_embodied.transport.convert import msg_to_payload, plan_to_msg, stamp_to_ns


class PlannerNode(NodeBase):
    NAME = "planner_node"
    PARAMETERS = {
        "checkpoint": "default",
        "device": "cpu",
        "max_new_tokens": 160,
        "embedding_topic": "/ivl/visual_embeddings",
        "task_topic": "/ivl/task",
        "plan_topic": "/ivl/plan",
        "status_topic": "/ivl/task_status",
        "max_input_age_s": 2.0,
        "read_instructions": True,  # read the operator's words first: refusals, canonical task, held decoding
    }

    def setup(self) -> None:
        import torch

        from ivl_embodied.checkpoints.internvl import load_language
        from ivl_embodied.language.planner import GenerationSettings

        p = self.params
        dtype = torch.bfloat16 if p["device"].startswith("cuda") else torch.float32
        self.planner = load_language(resolve_checkpoint(p["checkpoint"], "language"), dtype=dtype, device=p["device"])
        self.settings = GenerationSettings(max_new_tokens=p["max_new_tokens"])
        self.latest = None  # (VisualEmbeddings, header of their message, monotonic receipt time)
        self.rejected = ""  # why the last dropped embeddings were dropped
        self.plan_pub = self.node.create_publisher("ivl_embodied_msgs/msg/ActionPlan", p["plan_topic"])
        self.status = StatusPublisher(self.node, p["status_topic"])
        self.node.create_subscription("ivl_embodied_msgs/msg/VisualEmbedding", p["embedding_topic"],
                                      self.on_embedding, "large_latest")
        self.node.create_subscription("ivl_embodied_msgs/msg/TaskRequest", p["task_topic"], self.on_task)

    def on_embedding(self, msg) -> None:
        """Validate on receipt: a malformed or mismatched sample is dropped, the last good one kept."""
        from ivl_embodied.embeddings.payload import VisualEmbeddings

        try:
            visual = VisualEmbeddings.from_payload(msg_to_payload(msg), device=self.planner.device)
            if visual.hidden_size != self.planner.hidden_size:
                raise ValueError(f"embeddings have hidden size {visual.hidden_size} but this planner's "
                                 f"language model has {self.planner.hidden_size}")
        except ValueError as e:
            self.rejected = str(e)
            self.logger.error("dropped visual embeddings on %s: %s", self.params["embedding_topic"], e)
            return
        self.latest = (visual, msg.header, time.monotonic())

    def on_task(self, msg) -> None:
        from ivl_embodied.language.constrained import PlanRestriction
        from ivl_embodied.language.instruction import Refusal, read_instruction

        task_id, instruction = msg.task_id, msg.instruction
        if not instruction.strip():
            self.status(task_id, "REJECTED", "empty instruction", reason="bad_instruction")
            return
        restriction, words = None, instruction
        if self.params["read_instructions"]:
            task = read_instruction(instruction)
            if isinstance(task, Refusal):
                self.status(task_id, "REJECTED", task.message, reason=task.reason)
                return
            words = task.instruction
            restriction = PlanRestriction.for_task(task.goal, task.object, task.target)
        if self.latest is None:
            why = f"; the last were dropped: {self.rejected}" if self.rejected else ""
            self.status(task_id, "REJECTED",
                        f"no valid visual embeddings received on {self.params['embedding_topic']}{why}",
                        reason="no_embeddings")
            return
        visual, emb_header, received = self.latest
        age = time.monotonic() - received
        if self.params["max_input_age_s"] > 0 and age > self.params["max_input_age_s"]:
            self.status(task_id, "REJECTED", f"latest visual embeddings are {age:.1f} s old "
                                             f"(max_input_age_s={self.params['max_input_age_s']})",
                        reason="stale_embeddings")
            return
        self.status(task_id, "PLANNING", instruction)
        t0 = time.perf_counter()
        out = self.planner.generate(visual, words, self.settings, restriction)
        total_ms = 1e3 * (time.perf_counter() - t0)
        if out.plan is None:
            self.status(task_id, "FAILED", f"unparseable plan {out.text!r}: {out.error}", reason="unparseable_plan")
            return
        self.plan_pub.publish(plan_to_msg(
            out.plan, task_id, instruction, out.text,
            prefill_ms=out.timings["prefill_ms"], decode_ms=out.timings["decode_ms"],
            generated_tokens=len(out.token_ids), stamp=time.time_ns(),
            frame_id=emb_header.frame_id, embedding_stamp=stamp_to_ns(emb_header.stamp),
        ))
        self.status(task_id, "PLANNED", out.text)
        self.logger.info("task %s planned in %.0f ms: %s", task_id, total_ms, out.text)


def main(args: list[str] | None = None) -> int:
    return run_node(PlannerNode, args)


if __name__ == "__main__":
    sys.exit(main())
