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

from absl import app, flags
from ml_collections import config_flags

from yolojax import cli

api = cli.lazy_import("yolojax.inference.api")
export = cli.lazy_import("yolojax.inference.export")

FLAGS = flags.FlagValues()
flags.DEFINE_string("out_dir", None, "Where the exports go.", required=True, flag_values=FLAGS)
flags.DEFINE_string("workdir", None, "Training workdir (its latest checkpoint) or <workdir>/checkpoints/<step>.",
                    flag_values=FLAGS)
config_flags.DEFINE_config_file("config", None, "Config replacing <workdir>/config.json (configs/x.py[:variant] or "
                                ".json); --config.a.b=v overrides apply to the workdir's config.json without it.",
                                flag_values=FLAGS, lock_config=True)
flags.DEFINE_enum("weights", "auto", ["auto", "ema", "raw"], "Which weights of a checkpoint (auto = EMA when it "
                  "holds them).", flag_values=FLAGS)
flags.DEFINE_string("darknet_cfg", None, "Darknet .cfg (with --darknet_weights).", flag_values=FLAGS)
flags.DEFINE_string("darknet_weights", None, "Darknet .weights.", flag_values=FLAGS)
flags.DEFINE_string("names", None, "Darknet .names file (default: VOC names for 20 classes).", flag_values=FLAGS)
flags.DEFINE_integer("image_size", None, "Network input size (default: the model's).", flag_values=FLAGS)
flags.DEFINE_string("name", "model", "File stem of the exports.", flag_values=FLAGS)
flags.DEFINE_bool("nms", False, "Also write exports with decode + NMS.", flag_values=FLAGS)
flags.DEFINE_string("formats", "onnx,stablehlo", "Comma-separated: onnx, stablehlo.", flag_values=FLAGS)
flags.DEFINE_string("platforms", "cpu", "StableHLO lowering platforms, e.g. cpu,cuda.", flag_values=FLAGS)
flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.", flag_values=FLAGS)


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
    platforms = export.check_platforms(args.platforms) if "stablehlo" in formats else ()
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
                                                   platforms=platforms))
        for r in results[-len(formats):]:
            check = (f"relative error vs JAX {r.rel_error:.1e}" if r.rel_error == r.rel_error else
                     "not checked here (lowered for " + ",".join(platforms) + ", not for this machine's cpu)")
            print(f"  {r.path}: {r.bytes / 2**20:.1f} MiB, {check}", flush=True)
    return results


def _export(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run(argparse.Namespace(**{name: FLAGS[name].value for name in FLAGS}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``export.py`` with ``argv`` (the flags, without the program name; default ``sys.argv``)."""
    return cli.invoke(_export, prog="export", flag_values=FLAGS, workdir_config=True,
                      argv=None if argv is None else ["export.py", *argv])


if __name__ == "__main__":
    sys.exit(main())
