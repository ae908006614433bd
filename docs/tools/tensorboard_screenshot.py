"""Renders a TensorBoard-like screenshot of a training workdir into one PNG (the README's picture).

Reads the event files of ``<workdir>/tensorboard`` (``yolojax.training.writers.read_tensorboard``) and lays out
with matplotlib what TensorBoard's Scalars and Images tabs show: the training loss, the mAPs, the COCO AP, the
per-class AP of the weakest classes (faint raw values, TensorBoard's 0.6 smoothing on top), and the three pictures
every evaluation logs (eval images with their boxes, precision-recall, confusion matrix) at the last evaluation.
No browser and no TensorBoard install: the page is composed, not photographed.

  python docs/tools/tensorboard_screenshot.py --workdir runs/quickstart --out tensorboard.png
"""
from __future__ import annotations

import io
import os
import sys

import numpy as np
from absl import flags

from yolojax import cli
from yolojax.training import writers

FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "Training workdir (its tensorboard/ folder is read).", flag_values=FLAGS)
flags.DEFINE_string("out", "tensorboard.png", "Output PNG.", flag_values=FLAGS)
flags.DEFINE_integer("classes", 4, "Per-class AP charts: the classes with the lowest last AP.", flag_values=FLAGS)

ORANGE, GREY, TEXT = "#f57c00", "#f5f5f5", "#212121"
SMOOTHING = 0.6  # TensorBoard's default


def smoothed(values: np.ndarray, weight: float = SMOOTHING) -> np.ndarray:
    """TensorBoard's debiased exponential moving average."""
    out, last, num = [], 0.0, 0
    for v in values:
        num += 1
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight ** num))
    return np.asarray(out)


def scalar_tags(scalars: dict, num_classes: int) -> list[str]:
    """The charts shown: loss, mAPs, COCO AP, then the per-class VOC07 APs with the lowest last value."""
    tags = [t for t in ("train/loss", "eval/map_07", "eval/map_area", "eval/coco_AP") if t in scalars]
    per_class = sorted((t for t in scalars if t.startswith("eval/ap07/")), key=lambda t: scalars[t][-1][1])
    return tags + per_class[:num_classes]


def _chart(ax, tag: str, points: list) -> None:
    steps = np.array([s for s, _ in points])
    values = np.array([v for _, v in points])
    ax.plot(steps, values, color=ORANGE, alpha=0.3, lw=1)
    ax.plot(steps, smoothed(values), color=ORANGE, lw=1.6, marker="o" if len(steps) < 12 else None, ms=3)
    ax.set_title(tag, fontsize=9, loc="left", color=TEXT)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def render(logdir: str, title: str, num_classes: int = 4):
    """The screenshot as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt
    from PIL import Image

    logged = writers.read_tensorboard(logdir)
    if not logged["scalars"]:
        raise ValueError(f"{logdir}: no TensorBoard scalars (is it a training workdir's tensorboard/ folder?)")
    fig = plt.figure(figsize=(16, 11.5), dpi=100, facecolor="white")
    fig.add_artist(matplotlib.patches.Rectangle((0, 0.955), 1, 0.045, color=ORANGE, transform=fig.transFigure))
    fig.text(0.012, 0.977, "TensorBoard", color="white", fontsize=15, weight="bold", va="center")
    fig.text(0.12, 0.977, "SCALARS      IMAGES", color="white", fontsize=10, va="center")
    fig.text(0.988, 0.977, f"run: {title}", color="white", fontsize=10, va="center", ha="right")

    tags = scalar_tags(logged["scalars"], num_classes)
    charts = fig.add_gridspec(2, 4, left=0.04, right=0.98, top=0.91, bottom=0.58, hspace=0.45, wspace=0.22)
    for i, tag in enumerate(tags[:8]):
        _chart(fig.add_subplot(charts[i // 4, i % 4]), tag, logged["scalars"][tag])
    fig.text(0.012, 0.935, "Scalars", fontsize=11, color=TEXT, weight="bold")

    images = fig.add_gridspec(1, 3, left=0.02, right=0.98, top=0.52, bottom=0.01, wspace=0.05,
                              width_ratios=[1.5, 1.25, 1.0])
    fig.text(0.012, 0.535, "Images", fontsize=11, color=TEXT, weight="bold")
    for i, tag in enumerate(("eval/detections", "eval/precision_recall", "eval/confusion_matrix")):
        ax = fig.add_subplot(images[0, i])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_facecolor(GREY)
        if tag not in logged["images"]:
            ax.set_title(f"{tag}: not logged", fontsize=9, loc="left")
            continue
        step, png, _, _ = logged["images"][tag][-1]
        with Image.open(io.BytesIO(png)) as im:
            ax.imshow(np.asarray(im.convert("RGB")))
        ax.set_title(f"{tag}\nstep {step}", fontsize=9, loc="left", color=TEXT)
    return fig


def _screenshot(argv) -> int:
    del argv
    if not FLAGS.workdir:
        raise ValueError("--workdir is required")
    logdir = os.path.join(FLAGS.workdir, "tensorboard")
    if not os.path.isdir(logdir):
        raise FileNotFoundError(f"{logdir}: no such folder (train with --workdir first)")
    fig = render(logdir, os.path.basename(os.path.abspath(FLAGS.workdir)), FLAGS.classes)
    fig.savefig(FLAGS.out)
    print(f"wrote {FLAGS.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The script with ``argv`` (the flags, without the program name; default ``sys.argv``)."""
    return cli.invoke(_screenshot, prog="tensorboard_screenshot", flag_values=FLAGS,
                      argv=None if argv is None else ["tensorboard_screenshot.py", *argv])


if __name__ == "__main__":
    sys.exit(main())
