r"""k-means anchors (YOLOv2 "dimension clusters") of a dataset, in the config's unit, ready to paste.

  python experiments/compute_anchors.py --config configs/custom.py [--config.data.root=...] \
      [--json anchors.json] [--plot anchors.png (default: beside the JSON)]
  python experiments/compute_anchors.py --format yolo --root DATA/data.yaml --split train --image_size 320 --k 5
  python experiments/compute_anchors.py --voc_root ROOT --year 2007 --image_set trainval --image_size 416
  python experiments/compute_anchors.py --tfds_split 07+12 --image_size 416   # prepared TFDS VOC

Unit. ``config.model.anchors`` are (w, h) in grid cells of 32 px at the training input size
(``config.data.image_size``): the loss applies them as-is on the grid the input gives, as darknet does, so
anchors for 416 px (13 cells) are 30% too large at 320 px (10 cells). Give the training input size
(``--image_size``, or ``--config``, which reads ``data.image_size``); ``--grid`` (default 13 = 416 / 32) is
the older spelling of the same thing.

Box shapes are the normalized (w, h) of the training records, cleaned exactly as training cleans them (boxes
outside the image clipped, boxes without area dropped, both counted and printed; darknet's ``voc_label.py``
convention w = (xmax - xmin) / width). Difficult objects are left out (darknet trains without them) unless
``--include_difficult`` (with ``--config``: unless ``data.drop_difficult`` is False).

Prints the anchors in grid units and normalized, a line to paste into the config, and the mean best IoU (the
paper's "Avg IOU": 61.0 for k=5 on VOC). ``--json`` writes ``{"anchors": [[w, h], ...] (grid units),
"grid": 13, "image_size": 416, "unit": "...", "mean_iou": x, "anchors_normalized": [...], "num_boxes": N,
"boxes_clipped": n, "boxes_dropped": n}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from yolojax import cli
from yolojax.config import data as data_defaults

formats = cli.lazy_import("yolojax.data.formats")
pipeline = cli.lazy_import("yolojax.data.pipeline")
sources = cli.lazy_import("yolojax.data.sources")
voc = cli.lazy_import("yolojax.data.voc")
anchor_lib = cli.lazy_import("yolojax.ops.anchors")


def wh_from_voc(voc_root: str, years: list[str], image_set: str, *,
                include_difficult: bool = False) -> np.ndarray:
    """Normalized (w, h) ``[N, 2]`` of the objects of ``VOC<year>/ImageSets/Main/<image_set>.txt``.

    ``voc_root``: the folder holding VOCdevkit, VOCdevkit itself, or VOC<year> (``voc.voc_year_dir``). Boxes
    are VOC 1-based pixel xyxy in the XML, normalized exactly as the data pipeline does
    (``sources.voc_boxes_to_normalized``, TFDS's and darknet's convention: w = (xmax - xmin) / width).
    """
    chunks = []
    for year in years:
        for image_id, ann in voc.iter_annotations(voc_root, year, image_set):
            rec = formats.clean_boxes({
                "boxes": formats.voc_boxes_to_normalized(ann["boxes_px"], ann["width"], ann["height"]),
                "classes": ann["classes"], "difficult": ann["difficult"], "truncated": ann["truncated"]},
                voc.annotation_path(voc_root, year, image_id))
            keep = np.ones(len(rec["classes"]), bool) if include_difficult else ~rec["difficult"]
            chunks.append(anchor_lib.boxes_to_wh(rec["boxes"][keep]))
    if not chunks:
        raise ValueError(f"image set '{image_set}' of VOC {','.join(years)} under {voc_root} lists no images")
    return np.concatenate(chunks, axis=0)


def wh_from_tfds(split: str, *, data_dir: str | None = None, include_difficult: bool = False) -> np.ndarray:
    """Normalized (w, h) ``[N, 2]`` of every object of a named split ("07+12", "2007_trainval", ...) of the
    prepared TFDS VOC (``yolojax.data.sources``; only the annotations are read, images stay encoded)."""
    return wh_from_data(dict(pipeline.default_data_config(), source="tfds", tfds_data_dir=data_dir or ""), split,
                        include_difficult=include_difficult)


def wh_from_data(data_cfg, split: str, *, include_difficult: bool = False) -> np.ndarray:
    """Normalized (w, h) ``[N, 2]`` of the objects of ``split`` of any configured dataset (``config.data``:
    VOC, TFDS, synthetic, or your own VOC / YOLO / COCO files), from the same cleaned records training reads
    (``sources.box_shapes``)."""
    wh = sources.box_shapes(data_cfg, split, include_difficult=include_difficult)
    if not len(wh):
        raise ValueError(f"split {split!r} of the dataset has no objects")
    return wh


def compute(wh: np.ndarray, k: int, grid: int, *, restarts: int = 5, seed: int = 0) -> dict:
    """Clusters normalized ``wh [N, 2]`` into ``k`` anchors; returns the JSON-ready summary.

    Returns:
      {"anchors": [[w, h]] grid units of a ``grid`` x ``grid`` grid (sorted by area), "grid": grid,
       "image_size": 32 * grid, "unit": ..., "mean_iou": mean best shape IoU, "anchors_normalized": [[w, h]],
       "num_boxes": N}
    """
    anchors_norm, mean_iou = anchor_lib.kmeans_anchors(wh, k, restarts=restarts, seed=seed)
    return {
        "anchors": anchor_lib.anchors_normalized_to_grid(anchors_norm, grid).tolist(),
        "grid": int(grid),
        "image_size": int(32 * grid),
        "unit": f"grid cells of 32 px at a {32 * grid} px training input ({grid}x{grid} grid)",
        "mean_iou": float(mean_iou),
        "anchors_normalized": anchors_norm.tolist(),
        "num_boxes": int(len(wh)),
    }


def plot(wh: np.ndarray, summary: dict, path: str) -> None:
    """Scatter of normalized box shapes with the anchors on top, saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    anchors = np.asarray(summary["anchors_normalized"])
    fig, ax = plt.subplots(figsize=(5, 5))
    # Subsample for readability and speed on 40k boxes; the anchors use all of them.
    step = max(1, len(wh) // 5000)
    ax.scatter(wh[::step, 0], wh[::step, 1], s=2, alpha=0.3, label=f"boxes ({len(wh)})")
    ax.scatter(anchors[:, 0], anchors[:, 1], s=80, c="red", marker="x", label=f"anchors (k={len(anchors)})")
    ax.set(xlabel="width (fraction of image)", ylabel="height (fraction of image)", xlim=(0, 1), ylim=(0, 1),
           title=f"mean best IoU {summary['mean_iou']:.3f}")
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def format_summary(summary: dict) -> str:
    """Human-readable lines: anchors in grid units (cfg style), normalized, and the mean IoU."""
    grid_txt = ",  ".join(f"{w:.5f},{h:.5f}" for w, h in summary["anchors"])
    norm_txt = ",  ".join(f"{w:.5f},{h:.5f}" for w, h in summary["anchors_normalized"])
    paste = ", ".join(f"({w:.4f}, {h:.4f})" for w, h in summary["anchors"])
    cleaned = (f" ({summary['boxes_clipped']} clipped to the image, {summary['boxes_dropped']} without area "
               "dropped, as training does)" if "boxes_clipped" in summary else "")
    return (f"boxes: {summary['num_boxes']}{cleaned}\n"
            f"anchors (grid units, {summary['grid']}x{summary['grid']} grid; cfg `anchors=`): {grid_txt}\n"
            f"anchors (normalized): {norm_txt}\n"
            f"mean best IoU: {summary['mean_iou']:.4f}\n"
            f"paste into the config (unit: cells of 32 px at {32 * summary['grid']} px input):\n"
            f"    config.model.anchors = ({paste})")


def check_output_file(flag: str, path: str | None) -> None:
    """Before any work: ValueError naming ``flag`` when ``path`` is a folder or its folder does not exist."""
    if path is None:
        return
    if os.path.isdir(path):
        raise ValueError(f"{flag}={path}: is a folder; give a file path (e.g. {os.path.join(path, 'anchors.json')})")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{flag}={path}: its folder {folder} does not exist")


FLAGS = flags.FlagValues()
config_flags.DEFINE_config_file("config", None, "A configs/*.py file (or a workdir's config.json), overridable with "
                                "--config.a.b=v: its data (train split, drop_difficult), data.image_size and "
                                "model.v2.num_anchors.", flag_values=FLAGS, lock_config=True)
flags.DEFINE_string("root", None, "Your dataset (with --format): folder, data.yaml or darknet .data file.",
                    flag_values=FLAGS)
flags.DEFINE_string("voc_root", None, "Folder holding VOCdevkit/ (or the VOCdevkit folder itself).",
                    flag_values=FLAGS)
flags.DEFINE_string("tfds_split", None, "Named TFDS split of yolojax.data.sources, e.g. 07+12.", flag_values=FLAGS)
flags.DEFINE_enum("format", None, ["voc", "yolo", "coco"], "Format of --root.", flag_values=FLAGS)
flags.DEFINE_string("split", "train", "Split of --root.", flag_values=FLAGS)
flags.DEFINE_string("names_file", "", "Darknet .names of --root (default: the dataset's own).", flag_values=FLAGS)
flags.DEFINE_integer("image_size", None, "Training input size in px: anchors in cells of 32 px at it "
                     "(grid = image_size / 32).", flag_values=FLAGS)
flags.DEFINE_string("year", "2007", "VOC year(s), comma-separated: 2007 or 2007,2012.", flag_values=FLAGS)
flags.DEFINE_string("image_set", "trainval", "VOC image set.", flag_values=FLAGS)
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.", flag_values=FLAGS)
flags.DEFINE_integer("k", None, "Number of anchors (default 5, or the config's).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("grid", None, "Older spelling of --image_size / 32 (default 13).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("restarts", 5, "k-means restarts.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "k-means seed.", flag_values=FLAGS)
flags.DEFINE_bool("include_difficult", False, "Keep difficult objects.", flag_values=FLAGS)
flags.DEFINE_string("json", None, "Write the summary here.", flag_values=FLAGS)
flags.DEFINE_string("plot", None, "Scatter plot of box shapes and anchors (PNG); default: beside --json, same name.",
                    flag_values=FLAGS)
flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.", flag_values=FLAGS)


def _compute_anchors(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = argparse.Namespace(**{name: FLAGS[name].value for name in FLAGS})
    given = [n for n in ("config", "root", "voc_root", "tfds_split") if getattr(args, n)]
    if len(given) != 1:
        raise ValueError("give exactly one dataset: --config, --root (with --format), --voc_root or --tfds_split")
    if args.grid is not None and args.image_size is not None:
        raise ValueError("give --image_size or --grid, not both")
    if args.image_size is not None and (args.image_size <= 0 or args.image_size % 32):
        raise ValueError(f"--image_size={args.image_size}: expected a positive multiple of 32")
    for flag in ("json", "plot"):
        check_output_file(f"--{flag}", getattr(args, flag))
    k, image_size, include_difficult = args.k, args.image_size, args.include_difficult
    before = dict(formats.DATA_WARNINGS)
    if args.config:
        config = args.config
        image_size = image_size or data_defaults.anchor_input_size(config.data)  # image_size x augment.zoom
        if k is None:
            k = config.model.v2.num_anchors
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"config.model.v2.num_anchors={k!r}: expected an integer >= 1 (or give --k)")
        include_difficult = include_difficult or not config.data.drop_difficult
        wh = wh_from_data(config.data, config.data.train_split, include_difficult=include_difficult)
    elif args.root:
        if not args.format:
            raise ValueError("--root needs --format voc|yolo|coco")
        data_cfg = dict(pipeline.default_data_config(), source="files", format=args.format, root=args.root,
                        train_split=args.split, eval_split="", names_file=args.names_file)
        wh = wh_from_data(data_cfg, args.split, include_difficult=include_difficult)
    elif args.voc_root:
        wh = wh_from_voc(args.voc_root, [y.strip() for y in args.year.split(",")], args.image_set,
                         include_difficult=include_difficult)
    else:
        wh = wh_from_tfds(args.tfds_split, data_dir=args.tfds_data_dir, include_difficult=include_difficult)
    grid = args.grid if args.grid is not None else (image_size // 32 if image_size else 13)
    summary = compute(wh, 5 if k is None else k, grid, restarts=args.restarts, seed=args.seed)
    summary["boxes_clipped"] = formats.DATA_WARNINGS.get("box_outside_image", 0) - before.get(
        "box_outside_image", 0)
    summary["boxes_dropped"] = formats.DATA_WARNINGS.get("empty_box", 0) - before.get("empty_box", 0)
    print(format_summary(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    plot_path = args.plot or (os.path.splitext(args.json)[0] + ".png" if args.json else None)
    if plot_path:
        plot(wh, summary, plot_path)
        print(f"wrote {plot_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``compute_anchors.py`` with ``argv`` (the flags, without the program name; default ``sys.argv``)."""
    return cli.invoke(_compute_anchors, prog="compute_anchors", flag_values=FLAGS,
                      argv=None if argv is None else ["compute_anchors.py", *argv])


if __name__ == "__main__":
    sys.exit(main())
