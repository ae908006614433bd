r"""Exports a detector to ONNX and to a StableHLO (jax.export) artifact, each checked against the JAX model.

  python experiments/export.py --workdir runs/quickstart --out_dir exports/
  python experiments/export.py --darknet_cfg yolov2-voc.cfg --darknet_weights yolov2-voc.weights \
      --out_dir exports/ --nms

Writes into OUT: ``model.onnx`` (raw outputs), ``model.jaxexport`` + ``model.jaxexport.json`` (batch-polymorphic
StableHLO, weights inside, metadata beside) and, with ``--nms``, ``model_nms.onnx`` (decode + NMS in the graph)
and ``model_nms.jaxexport``. Each line printed names a file, its size, and its relative error against the JAX
model on a natural photo (max |export - jax| / max |jax|, required <= 1e-4). Run the ONNX file with
``yolojax.inference.export.load_exported("OUT/model.onnx").predict(...)`` or any ONNX runtime (docs/export.md).
Bad input ends with one line ``export: error: ...`` and exit status 1; nothing is written for a failed check.
"""
from __future__ import annotations

import argparse
import os
import sys

from yolojax.cli import one_line
from yolojax.inference import api, export


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out_dir", required=True, help="where the exports go")
    p.add_argument("--workdir", help="training workdir (its latest checkpoint) or <workdir>/checkpoints/<step>")
    p.add_argument("--config", help="config overriding <workdir>/config.json (configs/x.py[:variant] or .json)")
    p.add_argument("--weights", choices=("auto", "ema", "raw"), default="auto",
                   help="which weights of a checkpoint: auto = EMA when it holds them, else raw")
    p.add_argument("--darknet_cfg", help="darknet .cfg (with --darknet_weights)")
    p.add_argument("--darknet_weights", help="darknet .weights")
    p.add_argument("--names", help="darknet .names file (default: VOC names for 20 classes)")
    p.add_argument("--image_size", type=int, default=None, help="network input size (default: the model's)")
    p.add_argument("--name", default="model", help="file stem of the exports")
    p.add_argument("--nms", action="store_true", help="also write exports with decode + NMS")
    p.add_argument("--formats", default="onnx,stablehlo", help="comma-separated: onnx, stablehlo")
    p.add_argument("--platforms", default="cpu", help="StableHLO lowering platforms, e.g. cpu,cuda")
    return p.parse_args(argv)


def load_detector(args: argparse.Namespace):

    if bool(args.workdir) == bool(args.darknet_cfg) or bool(args.darknet_cfg) != bool(args.darknet_weights):
        raise ValueError("give exactly one model: --workdir, or --darknet_cfg with --darknet_weights")
    if args.darknet_cfg:
        names = api.read_names(args.names) if args.names else None
        return api.load_darknet(args.darknet_cfg, args.darknet_weights, class_names=names,
                                image_size=args.image_size)
    return api.load_checkpoint(args.workdir, config=args.config, image_size=args.image_size, weights=args.weights)


def run(args: argparse.Namespace) -> list:

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - {"onnx", "stablehlo"})
    if unknown or not formats:
        raise ValueError(f"--formats: unknown format(s) {unknown or formats}; use onnx and/or stablehlo")
    detector = load_detector(args)
    os.makedirs(args.out_dir, exist_ok=True)
    print(f"export: {detector.description}, input {detector.input_hw[1]}x{detector.input_hw[0]}", flush=True)
    images = export.check_image(detector)
    results = []
    for with_nms in (False, True) if args.nms else (False,):
        stem = os.path.join(args.out_dir, args.name + ("_nms" if with_nms else ""))
        if "onnx" in formats:
            results.append(export.export_onnx(detector, stem + ".onnx", with_nms=with_nms, images=images))
        if "stablehlo" in formats:
            results.append(export.export_stablehlo(detector, stem + ".jaxexport", with_nms=with_nms, images=images,
                                                   platforms=tuple(args.platforms.split(","))))
        for r in results[-len(formats):]:
            print(f"  {r.path}: {r.bytes / 2**20:.1f} MiB, relative error vs JAX {r.rel_error:.1e}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, OSError, KeyError) as e:  # bad input or a failed check: one line, no traceback

        print(f"export: error: {one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
