"""Pictures of detections and of an evaluation: the one box drawer (API, ``detect.py``, the demo, ``show_batch.py``,
the TensorBoard images), the precision-recall and confusion-matrix figures, and the grid of fixed eval images.

Boxes are normalized xyxy of the image they are drawn on; images are uint8 ``[H, W, 3]`` RGB. PIL and matplotlib
only (imported when drawing), no JAX, so drawing never starts a device and training can draw on the host from the
detections evaluation already has.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from yolojax.evaluation import analysis, voc

PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
           (0, 0, 128), (128, 128, 128))
# The eval-image grid: one colour for what the model predicted, another for the true boxes.
PREDICTED_COLOUR = (255, 40, 40)
TRUE_COLOUR = (40, 220, 40)
GRID_TILE_PX = 256  # each eval image is drawn at this size (labels stay readable on 64 px and 608 px inputs)
GRID_IMAGES = 12  # the first images of the eval split drawn at every evaluation (4 x 3)


def colour(class_id: int) -> tuple[int, int, int]:
    """The colour of a class (cycling through :data:`PALETTE`)."""
    return PALETTE[int(class_id) % len(PALETTE)]


def draw_boxes(image: np.ndarray, boxes: np.ndarray, class_ids: Sequence[int], labels: Sequence[str], *,
               scale: int = 1, line_width: int = 2, colours: Sequence[tuple[int, int, int]] | None = None,
               label_inside: bool = False) -> np.ndarray:
    """Draws boxes with a filled label on a copy of ``image``.

    Args:
      image: uint8 ``[H, W, 3]`` RGB.
      boxes: ``[K, 4]`` normalized xyxy of ``image`` (clipped to it for drawing).
      class_ids: ``[K]`` class index per box (picks the colour; negative ids are padding and skipped).
      labels: ``[K]`` text per box, e.g. "dog 0.87".
      scale: integer enlargement of the output (small network inputs stay readable).
      colours: ``[K]`` RGB per box instead of the class colours.
      label_inside: the label at the box's bottom-left corner, inside it (default: above its top-left corner).
    Returns:
      uint8 ``[H*scale, W*scale, 3]`` RGB.
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(np.asarray(image, np.uint8)))
    if scale != 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    width, height = canvas.size
    pen = ImageDraw.Draw(canvas)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    colours = colours if colours is not None else [colour(c) if int(c) >= 0 else None for c in class_ids]
    for box, c, label, col in zip(boxes, class_ids, labels, colours):
        if int(c) < 0:
            continue
        x1, y1, x2, y2 = (float(v) for v in np.clip(box, 0.0, 1.0) * [width, height, width, height])
        pen.rectangle([x1, y1, x2, y2], outline=col, width=line_width)
        left, top, right, bottom = pen.textbbox((x1, y1), label)
        text_h = bottom - top
        if label_inside:
            top_y = max(y1, y2 - text_h - 2)
        else:
            top_y = y1 - text_h - 2 if y1 - text_h - 2 >= 0 else y1  # above the box if it fits
        pen.rectangle([x1, top_y, x1 + (right - left) + 4, top_y + text_h + 2], fill=col)
        pen.text((x1 + 2, top_y), label, fill=(0, 0, 0) if sum(col) > 400 else (255, 255, 255))
    return np.asarray(canvas, np.uint8)


def draw_detections(image: np.ndarray, detections: dict, *, score_threshold: float = 0.0, scale: int = 1,
                    line_width: int = 2) -> np.ndarray:
    """Draws one image's detections dict ("boxes" normalized xyxy, "scores", "classes", "class_names") with
    "name score" labels, keeping scores above ``score_threshold``."""
    keep = np.asarray(detections["scores"], np.float64) > score_threshold
    names = [n for n, k in zip(detections["class_names"], keep) if k]
    scores = np.asarray(detections["scores"])[keep]
    return draw_boxes(image, np.asarray(detections["boxes"]).reshape(-1, 4)[keep],
                      np.asarray(detections["classes"])[keep], [f"{n} {s:.2f}" for n, s in zip(names, scores)],
                      scale=scale, line_width=line_width)


def tile(images: Sequence[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Images of one size ``[H, W, 3]`` -> one uint8 grid (row-major; ``columns`` default ceil(sqrt(n)))."""
    n = len(images)
    if n == 0:
        raise ValueError("tile: no images")
    h, w = images[0].shape[:2]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
    return grid


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Batch images (uint8, or float in [0, 1]) -> uint8."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ fixed eval images
class EvalImages:
    """An ``on_batch`` hook of ``loop.evaluate_batches`` that keeps the first ``num`` images of the eval split
    with their detections and ground truth, all normalized xyxy of the network input. Eval batches come in a
    fixed order, so these are the same images at every evaluation.

    ``gather``: maps a batch's host-local image rows to the rows of every host (multi-host training; a
    collective, called on every host for the same batches). Kept after a run: "images" uint8 ``[N, H, W, 3]``,
    and per image "detections" (boxes ``[K, 4]``, scores ``[K]``, classes ``[K]``) and "truth" (boxes ``[M, 4]``,
    classes ``[M]``).
    """

    def __init__(self, num: int, gather: Callable[[np.ndarray], np.ndarray] | None = None):
        self.num, self.gather = int(num), gather
        self.images: list[np.ndarray] = []
        self.detections: list[dict[str, np.ndarray]] = []
        self.truth: list[dict[str, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.images)

    def __call__(self, batch: Mapping[str, np.ndarray], dets: Mapping[str, np.ndarray]) -> None:
        if len(self) >= self.num:
            return
        images = to_uint8(self.gather(batch["image"]) if self.gather else batch["image"])
        for i, index in enumerate(np.asarray(batch["index"])):
            if index < 0 or len(self) >= self.num:
                continue
            k, valid = int(dets["count"][i]), np.asarray(batch["mask"][i], bool)
            self.images.append(images[i])
            self.detections.append({"boxes": np.asarray(dets["boxes"][i][:k], np.float64),
                                    "scores": np.asarray(dets["scores"][i][:k], np.float64),
                                    "classes": np.asarray(dets["classes"][i][:k], np.int64)})
            self.truth.append({"boxes": np.asarray(batch["boxes"][i], np.float64)[valid],
                               "classes": np.asarray(batch["classes"][i], np.int64)[valid]})


def _label_strip(width: int, parts: Sequence[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """A dark strip ``[18, width, 3]`` with coloured captions."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, 18), (32, 32, 32))
    pen, x = ImageDraw.Draw(strip), 6
    for text, col in parts:
        pen.text((x, 3), text, fill=col)
        x += int(pen.textlength(text)) + 16
    return np.asarray(strip, np.uint8)


def detection_grid(kept: EvalImages, class_names: Sequence[str], *, score_threshold: float, truth: bool = True,
                   columns: int = 4, tile_px: int = GRID_TILE_PX) -> np.ndarray:
    """The kept eval images, each resized to ``tile_px`` square, with the detections scoring above
    ``score_threshold`` ("class score", :data:`PREDICTED_COLOUR`) and, with ``truth``, the true boxes (class name
    inside the box, :data:`TRUE_COLOUR`), in a grid of ``columns`` under a caption. uint8 ``[H, W, 3]``."""
    from PIL import Image

    if not len(kept):
        raise ValueError("detection_grid: no images were kept")
    tiles = []
    for image, det, gt in zip(kept.images, kept.detections, kept.truth):
        canvas = np.asarray(Image.fromarray(image).resize((tile_px, tile_px), Image.BILINEAR), np.uint8)
        if truth:
            canvas = draw_boxes(canvas, gt["boxes"], gt["classes"], [class_names[c] for c in gt["classes"]],
                                colours=[TRUE_COLOUR] * len(gt["classes"]), line_width=1, label_inside=True)
        keep = det["scores"] > score_threshold
        canvas = draw_boxes(canvas, det["boxes"][keep], det["classes"][keep],
                            [f"{class_names[c]} {s:.2f}" for c, s in zip(det["classes"][keep], det["scores"][keep])],
                            colours=[PREDICTED_COLOUR] * int(keep.sum()))
        tiles.append(canvas)
    grid = tile(tiles, columns=min(columns, len(tiles)))
    caption = [(f"predicted (score > {score_threshold:g})", PREDICTED_COLOUR)]
    caption += [("true", TRUE_COLOUR)] if truth else []
    return np.concatenate([_label_strip(grid.shape[1], caption), grid], axis=0)


# ------------------------------------------------------------------------------------------- figures
def _figure_image(fig) -> np.ndarray:
    """A matplotlib figure -> uint8 ``[H, W, 3]`` (and the figure closed)."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def precision_recall_image(curves: Mapping[str, tuple[np.ndarray, np.ndarray, int]], title: str = "",
                           dpi: int = 80) -> np.ndarray:
    """One precision-recall curve per class with ground truth (``VOCEvaluator.precision_recall()``), its AP
    (VOC07 11-point / area, in %) in the legend. uint8 ``[H, W, 3]``."""
    plt = _pyplot()
    names = [n for n, (_, _, npos) in curves.items() if npos > 0]
    fig, ax = plt.subplots(figsize=(8.0, 5.0), dpi=dpi)
    for c, name in enumerate(names):
        recall, precision, _ = curves[name]
        label = (f"{name} {100 * voc.voc07_ap(recall, precision):.1f} / "
                 f"{100 * voc.area_ap(recall, precision):.1f}")
        ax.plot(np.concatenate([[0.0], recall]), np.concatenate([[1.0], precision]), lw=1.3, label=label,
                color=np.asarray(colour(c)) / 255.0)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title or "precision-recall")
    ax.grid(alpha=0.3)
    if names:
        ax.legend(title="class  AP07 / AP_area (%)", fontsize=7, title_fontsize=7, loc="center left",
                  bbox_to_anchor=(1.01, 0.5), ncol=1 if len(names) <= 20 else 2)
    fig.subplots_adjust(left=0.08, right=0.68, bottom=0.1, top=0.93)  # fixed: tight_layout doubles the cost
    return _figure_image(fig)


def confusion_matrix_image(found: Mapping[str, Any], title: str = "", dpi: int = 80) -> np.ndarray:
    """The confusion matrix of ``analysis.analyze`` normalized per true class (rows; the background row: the
    false positives per predicted class), shares written in the cells. uint8 ``[H, W, 3]``."""
    plt = _pyplot()
    labels = list(found["class_names"]) + [analysis.BACKGROUND]
    shares = analysis.normalized(found["matrix"])
    n = len(labels)
    side = max(4.5, 0.45 * n + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), dpi=dpi)
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    if n <= 30:
        for (i, j), v in np.ndenumerate(shares):
            if found["matrix"][i, j]:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 0.5 else "black")
    ax.set_title(title or f"confusion matrix (IoU {found['iou_threshold']:g}), rows normalized", fontsize=9)
    margin = 0.6 + 0.065 * max(len(t) for t in labels)  # inches for the tick labels (8 pt) and the axis label
    fig.subplots_adjust(left=min(0.5, margin / (side + 1.0)), bottom=min(0.5, margin / side), right=0.95,
                        top=0.92)
    return _figure_image(fig)


def evaluation_images(result: Mapping[str, Any], kept: EvalImages | None = None, *, score_threshold: float,
                      draw_score_threshold: float, title: str = "") -> dict[str, np.ndarray]:
    """The pictures of an evaluation (``evaluators.compute``'s result), uint8 ``[H, W, 3]`` each: "precision_recall"
    (:func:`precision_recall_image`), "confusion_matrix" (:func:`confusion_matrix_image`, titled with the
    evaluation's ``score_threshold``) and, when images were kept, "detections" (:func:`detection_grid`, boxes
    scoring above ``draw_score_threshold``)."""
    found = result["analysis"]
    matrix_title = (f"{title + ': ' if title else ''}confusion at score > {score_threshold:g}, IoU "
                    f"{found['iou_threshold']:g} (rows: true, normalized)")
    out = {"precision_recall": precision_recall_image(result["precision_recall"], title=title),
           "confusion_matrix": confusion_matrix_image(found, title=matrix_title)}
    if kept is not None and len(kept):
        out["detections"] = detection_grid(kept, result["class_names"], score_threshold=draw_score_threshold)
    return out
