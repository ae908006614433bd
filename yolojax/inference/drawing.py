"""Drawing boxes on images: the one box drawer of the API, ``detect.py``, the demo and ``show_batch.py``.

Boxes are normalized xyxy of the image they are drawn on; images are uint8 ``[H, W, 3]`` RGB. PIL only (no
JAX), so drawing never starts a device.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
           (0, 0, 128), (128, 128, 128))


def colour(class_id: int) -> tuple[int, int, int]:
    """The colour of a class (cycling through :data:`PALETTE`)."""
    return PALETTE[int(class_id) % len(PALETTE)]


def draw_boxes(image: np.ndarray, boxes: np.ndarray, class_ids: Sequence[int], labels: Sequence[str], *,
               scale: int = 1, line_width: int = 2) -> np.ndarray:
    """Draws boxes with a filled label on a copy of ``image``.

    Args:
      image: uint8 ``[H, W, 3]`` RGB.
      boxes: ``[K, 4]`` normalized xyxy of ``image`` (clipped to it for drawing).
      class_ids: ``[K]`` class index per box (picks the colour; negative ids are padding and skipped).
      labels: ``[K]`` text per box, e.g. "dog 0.87".
      scale: integer enlargement of the output (small network inputs stay readable).
    Returns:
      uint8 ``[H*scale, W*scale, 3]`` RGB.
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(np.asarray(image, np.uint8)))
    if scale != 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    width, height = canvas.size
    pen = ImageDraw.Draw(canvas)
    for box, c, label in zip(np.asarray(boxes, np.float64).reshape(-1, 4), class_ids, labels):
        if int(c) < 0:
            continue
        x1, y1, x2, y2 = (float(v) for v in np.clip(box, 0.0, 1.0) * [width, height, width, height])
        col = colour(int(c))
        pen.rectangle([x1, y1, x2, y2], outline=col, width=line_width)
        left, top, right, bottom = pen.textbbox((x1, y1), label)
        top_y = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1  # above the box if it fits
        pen.rectangle([x1, top_y, x1 + (right - left) + 4, top_y + (bottom - top) + 2], fill=col)
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
