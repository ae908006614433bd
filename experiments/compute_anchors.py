r"""k-means anchors (YOLOv2 "dimension clusters") of a dataset, in the config's unit, ready to paste.

  python experiments/compute_anchors.py --config configs/custom.py [--config_override data.root=...] \
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
import ast
import json
import os
import sys

import numpy as np

from yolojax.data import formats, pipeline, sources, voc
from yolojax.inference import api
from yolojax.ops import anchors as anchor_lib


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="a configs/*.py file (or a workdir's config.json): its data.train_split, "
                     "data.image_size, model.v2.num_anchors and data.drop_difficult")
    src.add_argument("--root", help="your dataset (with --format): folder, data.yaml or darknet .data file")
    src.add_argument("--voc_root", help="folder holding VOCdevkit/ (or the VOCdevkit folder itself)")
    src.add_argument("--tfds_split", help="named TFDS split of yolojax.data.sources, e.g. 07+12")
    p.add_argument("--config_override", action="append", default=[],
                   help="KEY=VALUE on the config, e.g. data.root=/data/mine (repeatable)")
    p.add_argument("--format", choices=("voc", "yolo", "coco"), help="format of --root")
    p.add_argument("--split", default="train", help="split of --root (default train)")
    p.add_argument("--names_file", default="", help="darknet .names of --root (default: the dataset's own)")
    p.add_argument("--image_size", type=int, default=None,
                   help="training input size in px: anchors in cells of 32 px at it (grid = image_size / 32)")
    p.add_argument("--year", default="2007", help="VOC year(s), comma-separated: 2007 or 2007,2012")
    p.add_argument("--image_set", default="trainval")
    p.add_argument("--tfds_data_dir", default=None)
    p.add_argument("--k", type=int, default=None, help="number of anchors (default 5, or the config's)")
    p.add_argument("--grid", type=int, default=None, help="older spelling of --image_size / 32 (default 13)")
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--include_difficult", action="store_true")
    p.add_argument("--json", default=None, help="write the summary here")
    p.add_argument("--plot", default=None,
                   help="scatter plot of box shapes and anchors (PNG); default: beside --json, same name")
    return p.parse_args(argv)


def load_config(path: str, overrides: list[str]):
    """A config file (``get_config()``) or a workdir's config.json, with KEY=VALUE overrides (Python literals
    or plain strings)."""


    config = api.load_config(path)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--config_override {item!r}: expected KEY=VALUE")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    try:
        if args.grid is not None and args.image_size is not None:
            raise ValueError("give --image_size or --grid, not both")
        if args.image_size is not None and (args.image_size <= 0 or args.image_size % 32):
            raise ValueError(f"--image_size={args.image_size}: expected a positive multiple of 32")
        k, image_size, include_difficult = args.k, args.image_size, args.include_difficult
        before = dict(formats.DATA_WARNINGS)
        if args.config:
            config = load_config(args.config, args.config_override)
            image_size = image_size or int(config.data.image_size)
            k = k or int(config.model.v2.num_anchors)
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
        summary = compute(wh, k or 5, grid, restarts=args.restarts, seed=args.seed)
        summary["boxes_clipped"] = formats.DATA_WARNINGS.get("box_outside_image", 0) - before.get(
            "box_outside_image", 0)
        summary["boxes_dropped"] = formats.DATA_WARNINGS.get("empty_box", 0) - before.get("empty_box", 0)
    except (ValueError, OSError, KeyError, AttributeError) as e:
        print(f"compute_anchors: error: {e}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    plot_path = args.plot or (os.path.splitext(args.json)[0] + ".png" if args.json else None)
    if plot_path:
        plot(wh, summary, plot_path)
        print(f"wrote {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
