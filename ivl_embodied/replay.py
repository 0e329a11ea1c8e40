"""``ivl-embodied replay IN.mcap``: plan again from a recording's visual embeddings.

For every plan the recording holds that was an attempt's first plan (``candidate == 0``, a plan and not a
refusal), the recorded ``VisualEmbedding`` it was made from (same stamp and frame as the plan's
``embedding_stamp``) and the recorded instruction go through a planner exactly as the planner node takes
them: the operator's words read (``planning_input``), then the greedy constrained plan of that view. The
result is compared with the recorded plan text. With the checkpoint that made the recording every plan comes
out the same; with another it shows what that checkpoint would have planned on exactly the same inputs.

Replaying a recording's camera topics through vision → planner → a dry-run executor is not built yet.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

PLAN_TOPIC = "/ivl/plan"
EMBEDDING_TOPIC = "/ivl/visual_embeddings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", type=Path, help="an MCAP file written by `ivl-embodied record` or `demo --record`")
    parser.add_argument("--planner", default="default", help="checkpoint to plan with (default: the shipped one)")
    parser.add_argument("--max-new-tokens", type=int, default=160, help="as the planner node's max_new_tokens")
    parser.add_argument("--no-read-instructions", action="store_true",
                        help="decode from the words as typed (the planner node's read_instructions: false)")
    parser.add_argument("--plan-topic", default=PLAN_TOPIC)
    parser.add_argument("--embedding-topic", default=EMBEDDING_TOPIC)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


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


def run(args: argparse.Namespace) -> int:
    from ivl_embodied.checkpoints.internvl import load_language
    from ivl_embodied.checkpoints.planner import resolve_checkpoint

    if not args.recording.is_file():
        print(f"error: no recording at {args.recording}", file=sys.stderr)
        return 2
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
