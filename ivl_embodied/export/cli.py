"""``ivl-embodied export onnx|trt``: vision graph -> ONNX (anywhere) -> TensorRT engine (on the device).

    ivl-embodied export onnx --vision ckpt/vision --out trt_engines/vision.onnx [--opset 17]
    ivl-embodied export trt --onnx trt_engines/vision.onnx --out trt_engines/vision.engine --fp16 --max-tiles 6
"""

from __future__ import annotations

import argparse
import logging
import shlex
from dataclasses import asdict

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="export_target", metavar="TARGET")
    sub.required = True
    onnx_p = sub.add_parser("onnx", help="export the vision side to ONNX (dynamic tile batch)")
    onnx_p.add_argument("--vision", required=True, help="vision checkpoint dir (full/Flash -HF or split)")
    onnx_p.add_argument("--out", required=True, help="output .onnx file")
    onnx_p.add_argument("--opset", type=int, default=17)
    onnx_p.add_argument("--verify", action="store_true", help="compare onnxruntime with torch on 1 and 3 tiles")
    trt_p = sub.add_parser("trt", help="build a TensorRT engine from an exported .onnx (on the target GPU)")
    trt_p.add_argument("--onnx", required=True, help="file from `ivl-embodied export onnx`")
    trt_p.add_argument("--out", required=True, help="output .engine file (metadata goes to OUT.json)")
    prec = trt_p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    prec.add_argument("--bf16", dest="precision", action="store_const", const="bf16")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32")
    trt_p.set_defaults(precision="fp16")
    trt_p.add_argument("--max-tiles", type=int, default=12,
                       help="the vision node's max_num_tiles (the engine takes one more, the thumbnail)")
    trt_p.add_argument("--opt-tiles", type=int, default=None, help="batch to tune for (default: the largest)")
    trt_p.add_argument("--workspace-mib", type=int, default=2048)
    trt_p.add_argument("--print-trtexec", action="store_true",
                       help="write OUT.json and print the equivalent trtexec command instead of "
                            "building (needs no TensorRT; run the command on the device)")


def run(args: argparse.Namespace) -> int:
    if args.export_target == "onnx":
        from ivl_embodied.export.onnx_export import (
            OnnxExportSettings,
            compare_with_torch,
            export_onnx,
        )

        settings = OnnxExportSettings(opset=args.opset)
        if args.verify:
            from ivl_embodied.checkpoints.internvl import load_vision

            encoder = load_vision(args.vision)
            out = export_onnx(encoder, args.out, settings)
            diffs = compare_with_torch(encoder, out)
            logger.info("onnxruntime vs torch, max abs difference: %s", diffs)
        else:
            out = export_onnx(args.vision, args.out, settings)
        print(out)
        return 0
    from ivl_embodied.export.trt_build import (
        EngineBuildSettings,
        build_engine,
        plan_engine_build,
        trtexec_command,
    )

    settings = EngineBuildSettings(precision=args.precision, max_tiles=args.max_tiles,
                                   opt_tiles=args.opt_tiles, workspace_mib=args.workspace_mib)
    if args.print_trtexec:
        from ivl_embodied.export.onnx_export import read_onnx_metadata
        from ivl_embodied.runtime.meta import write_sidecar

        meta = read_onnx_metadata(args.onnx)
        plan = plan_engine_build(meta, settings)
        sidecar = write_sidecar(args.out, meta, {**asdict(plan), "onnx": str(args.onnx), "built_with": "trtexec"})
        logger.info("wrote %s; the engine's metadata for the tensorrt backend", sidecar)
        print(shlex.join(trtexec_command(plan, args.onnx, args.out)))
        return 0
    print(build_engine(args.onnx, args.out, settings))
    return 0
