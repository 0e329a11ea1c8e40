"""Where a planner's boxes land on the SFT held-back scenes: on the named object, on another
object of the scene (wrong object), or on nothing (imprecise).

    python benchmarks/cascade_cpu_2026-11-30/box_errors.py PLANNER_DIR DATA_DIR [--holdout 64]

Greedy decoding through :func:`ivl_embodied.train.sft.make_eval_fn` (the SFT eval hook) on the
last ``--holdout`` examples of the data, which SFT never trains on.
"""

from __future__ import annotations

import argparse
import json

import torch

from ivl_embodied.train.data import PlanDataset
from ivl_embodied.train.sft import load_policy, make_eval_fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("planner")
    ap.add_argument("data")
    ap.add_argument("--holdout", type=int, default=64)
    args = ap.parse_args()
    data = PlanDataset(args.data)
    holdout = list(range(len(data) - args.holdout, len(data)))
    model = load_policy(args.planner).eval()
    with torch.no_grad():
        out = make_eval_fn(data, holdout, eval_examples=len(holdout), batch_size=16)(model)
    out["box_elsewhere"] = 1.0 - out["box_centred"] - out["box_other_object"]
    print(json.dumps({"planner": args.planner, "examples": len(holdout), **{k: round(v, 4) for k, v in out.items()}}))


if __name__ == "__main__":
    main()
