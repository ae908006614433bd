r"""k-means anchors (YOLOv2 "dimension clusters") from VOC annotations or a TFDS split.

  python experiments/compute_anchors.py --voc_root ROOT --year 2007 --image_set trainval --k 5 \
      [--grid 13] [--json anchors.json] [--plot anchors.png (default: beside the JSON)]
  python experiments/compute_anchors.py --tfds_split 07+12 --k 5   # TFDS VOC (needs the prepared dataset)

Box shapes come from the devkit XML (only the XML is read, no image is decoded) as normalized (w, h) of the
image, with darknet's ``voc_label.py`` convention w = (xmax - xmin) / width; difficult objects are left out
(darknet trains without them, so its anchors never saw them) unless ``--include_difficult``. Several years are
joined with a comma (``--year 2007,2012``, the papers' 07+12).

Prints the anchors in grid units of the stated grid (the unit of darknet cfgs and ``yolov2_loss``) and
normalized, plus the mean best IoU (the paper's "Avg IOU": 61.0 for k=5 on VOC). ``--json`` writes
``{"anchors": [[w, h], ...] (grid units), "grid": 13, "mean_iou": x, "anchors_normalized": [...],
"num_boxes": N}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from yolojax import anchors as anchor_lib


def wh_from_voc(voc_root: str, years: list[str], image_set: str, *,
                include_difficult: bool = False) -> np.ndarray:
    """Normalized (w, h) ``[N, 2]`` of the objects of ``VOC<year>/ImageSets/Main/<image_set>.txt``.

    ``voc_root``: the folder holding VOCdevkit, VOCdevkit itself, or VOC<year> (``voc.voc_year_dir``). Boxes
    are VOC 1-based pixel xyxy in the XML, normalized exactly as the data pipeline does
    (``sources.voc_boxes_to_normalized``, TFDS's and darknet's convention: w = (xmax - xmin) / width).
    """
    from yolojax.data import sources, voc  # devkit readers (no JAX, no TensorFlow)

    chunks = []
    for year in years:
        for _, ann in voc.iter_annotations(voc_root, year, image_set):
            keep = np.ones(len(ann["classes"]), bool) if include_difficult else ~ann["difficult"]
            boxes = sources.voc_boxes_to_normalized(ann["boxes_px"][keep], ann["width"], ann["height"])
            chunks.append(anchor_lib.boxes_to_wh(boxes))
    if not chunks:
        raise ValueError(f"image set '{image_set}' of VOC {','.join(years)} under {voc_root} lists no images")
    return np.concatenate(chunks, axis=0)


def wh_from_tfds(split: str, *, data_dir: str | None = None, include_difficult: bool = False) -> np.ndarray:
    """Normalized (w, h) ``[N, 2]`` of every object of a named split ("07+12", "2007_trainval", ...) of the
    prepared TFDS VOC (``yolojax.data.sources``; only the annotations are read, images stay encoded)."""
    from yolojax.data import sources  # TFDS: only for this path

    src = sources.make_source({"source": "tfds", "tfds_data_dir": data_dir or ""}, split)
    chunks = []
    for i in range(len(src)):
        record = src[i]
        keep = np.ones(len(record["classes"]), bool) if include_difficult else ~record["difficult"]
        chunks.append(anchor_lib.boxes_to_wh(record["boxes"][keep]))
    if not chunks:
        raise ValueError(f"TFDS split '{split}' has no examples")
    return np.concatenate(chunks, axis=0)


def compute(wh: np.ndarray, k: int, grid: int, *, restarts: int = 5, seed: int = 0) -> dict:
    """Clusters normalized ``wh [N, 2]`` into ``k`` anchors; returns the JSON-ready summary.

    Returns:
      {"anchors": [[w, h]] grid units of a ``grid`` x ``grid`` grid (sorted by area), "grid": grid,
       "mean_iou": mean best shape IoU, "anchors_normalized": [[w, h]], "num_boxes": N}
    """
    anchors_norm, mean_iou = anchor_lib.kmeans_anchors(wh, k, restarts=restarts, seed=seed)
    return {
        "anchors": anchor_lib.anchors_normalized_to_grid(anchors_norm, grid).tolist(),
        "grid": int(grid),
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
    return (f"boxes: {summary['num_boxes']}\n"
            f"anchors (grid units, {summary['grid']}x{summary['grid']} grid; cfg `anchors=`): {grid_txt}\n"
            f"anchors (normalized): {norm_txt}\n"
            f"mean best IoU: {summary['mean_iou']:.4f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--voc_root", help="folder holding VOCdevkit/ (or the VOCdevkit folder itself)")
    src.add_argument("--tfds_split", help="named TFDS split of yolojax.data.sources, e.g. 07+12")
    p.add_argument("--year", default="2007", help="VOC year(s), comma-separated: 2007 or 2007,2012")
    p.add_argument("--image_set", default="trainval")
    p.add_argument("--tfds_data_dir", default=None)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--grid", type=int, default=13, help="grid size the printed anchors refer to (416/32)")
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--include_difficult", action="store_true")
    p.add_argument("--json", default=None, help="write the summary here")
    p.add_argument("--plot", default=None,
                   help="scatter plot of box shapes and anchors (PNG); default: beside --json, same name")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.voc_root:
            wh = wh_from_voc(args.voc_root, [y.strip() for y in args.year.split(",")], args.image_set,
                             include_difficult=args.include_difficult)
        else:
            wh = wh_from_tfds(args.tfds_split, data_dir=args.tfds_data_dir,
                              include_difficult=args.include_difficult)
        summary = compute(wh, args.k, args.grid, restarts=args.restarts, seed=args.seed)
    except (ValueError, OSError) as e:
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
