"""PASCAL VOC detection metric, computed exactly as the official devkit does (host numpy only).

Reference: VOCdevkit ``VOCevaldet.m`` (matching, VOC2007 11-point AP) and ``VOCap.m`` (area AP, VOC2010+),
docs/evaluation.md. Per class:

  * detections of all images are sorted by descending score (a stable sort, like MATLAB ``sort``: ties keep
    file / insertion order);
  * each detection takes the ground truth of its class in its image with the highest IoU (over *all* such
    ground truths, already matched or difficult included; the first one wins a tie), IoU measured on 1-based
    inclusive pixel boxes (``width = x_max - x_min + 1``) and only over boxes with positive intersection;
  * IoU >= threshold: a difficult match counts as neither TP nor FP; a non-difficult one is a TP the first
    time and an FP afterwards (duplicate); otherwise the detection is an FP;
  * recall = cumulative TP / number of non-difficult ground truths; precision = TP / (TP + FP).

Boxes are VOC 1-based pixel ``xyxy`` everywhere in this module (``voc_px``). No JAX or TensorFlow import, so
``experiments/evaluate.py`` starts fast.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from yolojax.config import files as config_files
from yolojax.config.classes import VOC_CLASSES

# Recall thresholds of the VOC2007 11-point AP, bit-exact as MATLAB evaluates ``t = 0:0.1:1``: its colon
# operator builds the first half as a + k*d and the second half as b - (n-k)*d. They differ from
# py-faster-rcnn's ``np.arange(0, 1.1, 0.1)`` at 0.6 and 0.7 (one ulp lower here), which matters only when a
# recall lands exactly on those values.
VOC07_RECALL_THRESHOLDS: tuple[float, ...] = tuple(
    [k * 0.1 for k in range(5)] + [0.5] + [1.0 - (10 - k) * 0.1 for k in range(6, 11)])

# Detection rows per chunk when matching (bounds the [rows, max gt per image] temporaries to a few MB).
_MATCH_CHUNK_ELEMENTS = 1 << 21


def normalized_to_devkit_px(boxes: np.ndarray, width: Any, height: Any) -> np.ndarray:
    """Normalized xyxy ``[..., 4]`` -> VOC 1-based pixel xyxy, as darknet writes result files.

    Darknet ``print_detector_detections``: ``x * width + 1``, then x_min, y_min raised to 1 and x_max, y_max
    lowered to width, height. The scaling is the inverse of the TFDS convention
    ``x_norm = (x_px - 1) / width``. ``width``/``height`` (original image size) are scalars or arrays
    broadcasting against ``boxes[..., 0]``.
    """
    boxes = np.asarray(boxes, np.float64)
    w, h = np.broadcast_arrays(np.asarray(width, np.float64), np.asarray(height, np.float64))
    px = boxes * np.stack([w, h, w, h], axis=-1) + 1.0
    lo = np.maximum(px[..., :2], 1.0)
    hi = np.minimum(px[..., 2:], np.stack([w, h], axis=-1))
    return np.concatenate([lo, hi], axis=-1)


# ----------------------------------------------------------------------------------------------------------
# Per-class matching and AP.


def pad_by_image(image_idx: np.ndarray, num_images: int, *columns: np.ndarray):
    """Groups per-object rows by image into padded ``[num_images, G_max, ...]`` arrays, keeping row order
    within an image (the devkit's tie-break among equal IoUs is the annotation order).

    Returns (valid [num_images, G_max] bool, *padded columns).
    """
    order = np.argsort(image_idx, kind="stable")
    img = image_idx[order]
    counts = np.bincount(image_idx, minlength=num_images)
    slot = np.arange(len(img)) - (np.cumsum(counts) - counts)[img]
    g_max = int(counts.max()) if len(img) else 0
    valid = np.zeros((num_images, g_max), bool)
    valid[img, slot] = True
    padded = []
    for col in columns:
        out = np.zeros((num_images, g_max) + col.shape[1:], col.dtype)
        out[img, slot] = col[order]
        padded.append(out)
    return (valid, *padded)


def devkit_overlap(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """The devkit's overlap of boxes broadcasting against each other (``[..., 4]`` voc_px xyxy): IoU on 1-based
    inclusive pixels (``width = x_max - x_min + 1``) where the intersection is positive, -inf elsewhere (the devkit
    never considers those boxes)."""
    bb, gt = np.asarray(det_boxes, np.float64), np.asarray(gt_boxes, np.float64)
    iw = np.minimum(bb[..., 2], gt[..., 2]) - np.maximum(bb[..., 0], gt[..., 0]) + 1
    ih = np.minimum(bb[..., 3], gt[..., 3]) - np.maximum(bb[..., 1], gt[..., 1]) + 1
    ua = ((bb[..., 2] - bb[..., 0] + 1) * (bb[..., 3] - bb[..., 1] + 1)
          + (gt[..., 2] - gt[..., 0] + 1) * (gt[..., 3] - gt[..., 1] + 1) - iw * ih)
    considered = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes: same inf as MATLAB
        return np.where(considered, iw * ih / np.where(considered, ua, 1.0), -np.inf)


def image_overlaps(det_boxes: np.ndarray, det_image: np.ndarray, gt_valid: np.ndarray, gt_boxes: np.ndarray,
                   chunk_elements: int = _MATCH_CHUNK_ELEMENTS):
    """Yields (lo, overlaps ``[d, G]``) for chunks of detections: the devkit overlap of detections ``lo:lo+d``
    with every ground-truth slot of their image (-inf for padding slots).

    Args:
      det_boxes: ``[D, 4]`` voc_px xyxy; det_image: ``[D]`` image index.
      gt_valid: ``[I, G]`` bool; gt_boxes: ``[I, G, 4]`` voc_px xyxy (padded per image, ``pad_by_image``).
    """
    g_max = gt_boxes.shape[1]
    step = max(1, chunk_elements // max(g_max, 1))
    for lo in range(0, len(det_boxes), step):
        img = det_image[lo:lo + step]
        ov = devkit_overlap(det_boxes[lo:lo + step, None, :], gt_boxes[img])  # [d, G]
        yield lo, np.where(gt_valid[img], ov, -np.inf)


def _best_overlaps(det_boxes: np.ndarray, det_image: np.ndarray, gt_valid: np.ndarray,
                   gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Devkit overlap of each detection with the ground truths of its image (see ``image_overlaps``).

    Returns:
      ovmax ``[D]`` (-inf when no ground truth intersects), jmax ``[D]`` (index into G; first on ties).
    """
    num_det, g_max = len(det_boxes), gt_boxes.shape[1]
    ovmax = np.full(num_det, -np.inf)
    jmax = np.zeros(num_det, np.int64)
    if g_max == 0:
        return ovmax, jmax
    for lo, ov in image_overlaps(det_boxes, det_image, gt_valid, gt_boxes):
        j = np.argmax(ov, axis=1)  # first maximum, like the devkit's strict ``ov > ovmax``
        jmax[lo:lo + len(j)] = j
        ovmax[lo:lo + len(j)] = ov[np.arange(len(j)), j]
    return ovmax, jmax


@dataclasses.dataclass(frozen=True)
class ClassMatch:
    """The devkit's matching of one class's detections, in descending score order (stable).

    order ``[D]``: the detections' rows (as given) in score order; the other arrays follow that order.
    tp / fp ``[D]`` bool (a detection on a difficult box is neither); duplicate ``[D]`` bool: the FPs at IoU >=
    threshold with an already detected box; overlap ``[D]``: the best devkit overlap with a ground truth of the
    class in its image (-inf: none intersects); gt_row ``[D]``: the ground-truth row (as given) of that overlap,
    -1 when none; npos: non-difficult ground truths.
    """

    order: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    duplicate: np.ndarray
    overlap: np.ndarray
    gt_row: np.ndarray
    npos: int

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray]:
        """(recall ``[D]``, precision ``[D]``) after each detection in score order; precision is 0 where
        TP + FP = 0."""
        tp_cum, fp_cum = np.cumsum(self.tp, dtype=np.float64), np.cumsum(self.fp, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = tp_cum / self.npos
            precision = np.where(tp_cum + fp_cum > 0, tp_cum / np.maximum(tp_cum + fp_cum, 1.0), 0.0)
        return recall, precision


def match_class(det_image: np.ndarray, det_scores: np.ndarray, det_boxes: np.ndarray, gt_image: np.ndarray,
                gt_boxes: np.ndarray, gt_difficult: np.ndarray, *, iou_threshold: float = 0.5) -> ClassMatch:
    """Devkit matching for one class, vectorized.

    Args:
      det_image ``[D]`` int image index, det_scores ``[D]``, det_boxes ``[D, 4]`` voc_px xyxy: the
        detections of this class, in file / insertion order (the order breaks score ties).
      gt_image ``[G]``, gt_boxes ``[G, 4]`` voc_px xyxy, gt_difficult ``[G]`` bool: ground truth of this
        class, in annotation order within each image.
      iou_threshold: TP when IoU >= threshold (devkit ``minoverlap``).
    """
    det_image = np.asarray(det_image, np.int64)
    gt_image = np.asarray(gt_image, np.int64)
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_difficult = np.asarray(gt_difficult, bool)
    npos = int(np.sum(~gt_difficult))

    # Matching does not depend on earlier assignments (jmax is the max over all ground truths), so only the
    # "already detected" rule is sequential: the first detection in score order to claim a ground truth wins.
    order = np.argsort(-np.asarray(det_scores, np.float64), kind="stable")
    det_image, det_boxes = det_image[order], det_boxes[order]
    num_images = int(max(det_image.max(initial=-1), gt_image.max(initial=-1))) + 1
    gt_valid, gt_pad, diff_pad, row_pad = pad_by_image(gt_image, num_images, gt_boxes, gt_difficult,
                                                       np.arange(len(gt_image)))
    ovmax, jmax = _best_overlaps(det_boxes, det_image, gt_valid, gt_pad)

    matched = ovmax >= iou_threshold
    claims = np.flatnonzero(matched & ~(diff_pad[det_image, jmax] if diff_pad.size else False))
    tp = np.zeros(len(det_image), bool)
    _, first = np.unique(det_image[claims] * gt_pad.shape[1] + jmax[claims], return_index=True)
    tp[claims[first]] = True
    fp = ~matched
    fp[claims] = ~tp[claims]  # duplicates of an already detected ground truth
    duplicate = fp & matched
    gt_row = np.where(np.isfinite(ovmax), row_pad[det_image, jmax] if row_pad.size else -1, -1)
    return ClassMatch(order=order, tp=tp, fp=fp, duplicate=duplicate, overlap=ovmax, gt_row=gt_row, npos=npos)


def class_precision_recall(det_image: np.ndarray, det_scores: np.ndarray, det_boxes: np.ndarray,
                           gt_image: np.ndarray, gt_boxes: np.ndarray, gt_difficult: np.ndarray, *,
                           iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """Devkit matching for one class (``match_class``, same arguments) -> recall ``[D]``, precision ``[D]``
    (detections sorted by score) and npos (non-difficult ground truths).

    Precision is 0 where TP + FP = 0 (leading difficult matches; MATLAB yields NaN there and ignores it in
    ``max``, which gives the same AP except when *every* detection matched a difficult box).
    """
    match = match_class(det_image, det_scores, det_boxes, gt_image, gt_boxes, gt_difficult,
                        iou_threshold=iou_threshold)
    return (*match.precision_recall(), match.npos)


def voc07_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point interpolated AP: mean over t in {0, 0.1, ..., 1} of max(precision[recall >= t]) (0
    when empty). ``recall`` must be non-decreasing, as returned by ``class_precision_recall``."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if recall.size == 0:
        return 0.0
    suffix_max = np.maximum.accumulate(precision[::-1])[::-1]  # max over precision[i:]
    first = np.searchsorted(recall, VOC07_RECALL_THRESHOLDS, side="left")  # first i with recall >= t
    ap = 0.0
    for i in first:  # accumulate in the devkit's order: ap = ap + p / 11
        ap += (suffix_max[i] if i < recall.size else 0.0) / 11
    return float(ap)


def area_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ AP (``VOCap.m``): area under the monotone precision envelope, with sentinels (0, 0) and
    (1, 0)."""
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


# ----------------------------------------------------------------------------------------------------------
# Devkit result files.


def result_file_path(results_dir: str | os.PathLike, prefix: str, image_set: str, class_name: str) -> str:
    """``<results_dir>/<prefix>_det_<image_set>_<class_name>.txt`` (devkit naming, e.g. comp4_det_test_car)."""
    return os.path.join(os.fspath(results_dir), f"{prefix}_det_{image_set}_{class_name}.txt")


def write_results(results_dir: str | os.PathLike, *, image_ids: Sequence[str], boxes: np.ndarray,
                  scores: np.ndarray, classes: np.ndarray, prefix: str = "comp4", image_set: str = "test",
                  class_names: Sequence[str] = VOC_CLASSES) -> list[str]:
    """Writes devkit result files, one per class (empty when a class has no detection, as darknet does).

    Args:
      image_ids: ``[D]`` image id of each detection; boxes ``[D, 4]`` voc_px xyxy; scores ``[D]``;
        classes ``[D]`` int index into ``class_names``.

    Lines are ``image_id score x1 y1 x2 y2`` with Python's shortest round-trip float repr, so reading the
    files back reproduces the float64 values exactly. Returns the paths written.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    classes = np.asarray(classes, np.int64).reshape(-1)
    if not len(image_ids) == len(boxes) == len(scores) == len(classes):
        raise ValueError(f"write_results: lengths differ: {len(image_ids)} image ids, {len(boxes)} boxes, "
                         f"{len(scores)} scores, {len(classes)} classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= len(class_names)):
        raise ValueError(f"write_results: class index out of range [0, {len(class_names)}): "
                         f"{classes.min()}..{classes.max()}")
    os.makedirs(results_dir, exist_ok=True)
    lines: list[list[str]] = [[] for _ in class_names]
    for image_id, score, box, c in zip(image_ids, scores.tolist(), boxes.tolist(), classes.tolist()):
        lines[c].append(f"{image_id} {score!r} {box[0]!r} {box[1]!r} {box[2]!r} {box[3]!r}\n")
    paths = []
    for name, class_lines in zip(class_names, lines):
        path = result_file_path(results_dir, prefix, image_set, name)
        with open(path, "w") as f:
            f.writelines(class_lines)
        paths.append(path)
    return paths


def _parse_result_lines(path: str, valid_ids: Any) -> tuple[list[str], np.ndarray]:
    """Line-by-line parse of a result file; raises on the first bad line, naming the file and line."""
    ids, values = [], []
    for line_no, line in enumerate(config_files.read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue  # blank lines (e.g. a trailing one) carry nothing
        if len(fields) != 6:
            raise ValueError(f"{path}:{line_no}: expected 6 fields 'image_id score x1 y1 x2 y2', got "
                             f"{len(fields)}: {line.rstrip()!r}")
        try:
            numbers = [float(v) for v in fields[1:]]
        except ValueError:
            raise ValueError(f"{path}:{line_no}: score and box must be numbers: {line.rstrip()!r}") from None
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"{path}:{line_no}: non-finite score or box: {line.rstrip()!r}")
        if valid_ids is not None and fields[0] not in valid_ids:
            raise ValueError(f"{path}:{line_no}: image id {fields[0]!r} is not in the image set "
                             f"({len(valid_ids)} images)")
        ids.append(fields[0])
        values.append(numbers)
    return ids, np.asarray(values, np.float64).reshape(-1, 5)


def _parse_result_file(path: str, valid_ids: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One devkit result file -> (image ids, scores [D], boxes [D, 4]); errors name the file and line.

    Fast path: split every line, check that each has 6 fields, convert the numbers with ``float`` in one pass;
    on any problem, fall back to the line-by-line parser, which finds and reports the first bad line.
    """
    rows = [line.split() for line in config_files.read_text(path).splitlines()]
    lengths = set(map(len, rows))
    if 0 in lengths:  # blank lines
        rows = [r for r in rows if r]
        lengths.discard(0)
    values = None
    if lengths <= {6}:
        tokens = list(itertools.chain.from_iterable(rows))
        ids = tokens[0::6]
        del tokens[0::6]
        try:
            values = np.array(list(map(float, tokens)), np.float64).reshape(-1, 5)
        except ValueError:
            values = None
    unknown_id = values is not None and valid_ids is not None and not all(map(valid_ids.__contains__, ids))
    if values is None or not np.all(np.isfinite(values)) or unknown_id:
        ids, values = _parse_result_lines(path, valid_ids)
    return ids, values[:, 0], values[:, 1:]


def read_results(results_dir: str | os.PathLike, *, prefix: str = "comp4", image_set: str = "test",
                 class_names: Sequence[str] = VOC_CLASSES, image_ids: Any = None,
                 allow_missing: bool = False) -> dict[str, dict[str, Any]]:
    """Reads devkit result files ``<prefix>_det_<image_set>_<class>.txt``.

    Args:
      image_ids: optional collection (set / dict) of the image set's ids; a line for any other image is an
        error naming the file and line (the devkit stops on it too).
      allow_missing: treat a missing class file as no detections instead of an error.

    Returns:
      ``{class_name: {"image_ids": list[str] [D], "scores": [D], "boxes": [D, 4] voc_px xyxy}}``, in file
      order (which breaks score ties).
    """
    if image_ids is not None and not isinstance(image_ids, (set, frozenset, Mapping)):
        image_ids = set(image_ids)
    out = {}
    for name in class_names:
        path = result_file_path(results_dir, prefix, image_set, name)
        if not os.path.exists(path):
            if not allow_missing:
                raise FileNotFoundError(f"result file for class {name!r} not found: {path} (expected "
                                        f"<results_dir>/{prefix}_det_{image_set}_<class>.txt)")
            ids, scores, boxes = [], np.zeros(0), np.zeros((0, 4))
        else:
            ids, scores, boxes = _parse_result_file(path, image_ids)
        out[name] = {"image_ids": ids, "scores": scores, "boxes": boxes}
    return out


# ----------------------------------------------------------------------------------------------------------
# Accumulator.


def _as_rows(name: str, value: Any, dtype: Any, shape_tail: tuple[int, ...], n: int | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype)
    if arr.size == 0:
        arr = arr.reshape((0,) + shape_tail)
    if arr.shape[1:] != shape_tail or arr.ndim != 1 + len(shape_tail) or (n is not None and len(arr) != n):
        want = f"[{n if n is not None else 'N'}{''.join(', ' + str(s) for s in shape_tail)}]"
        raise ValueError(f"{name}: expected shape {want}, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains non-finite values")
    return arr


class VOCEvaluator:
    """Accumulates detections and ground truth per image, then computes VOC AP per class (both metrics).

    Usage (training-time evaluation)::

        ev = VOCEvaluator()
        for each image: ev.add(image_id, det_boxes=..., det_scores=..., det_classes=...,
                               gt_boxes=..., gt_classes=..., gt_difficult=...)
        result = ev.compute()   # {"ap_07": [C], "ap_area": [C], "map_07": float, "map_area": float, ...}

    All boxes are VOC 1-based pixel xyxy of the original image (see ``normalized_to_devkit_px``). A class
    index of -1 marks padding (as ``batched_nms`` and eval batches use) and that row is skipped. Detections
    of the same score are ranked in insertion order, like lines of a result file.
    """

    def __init__(self, class_names: Sequence[str] = VOC_CLASSES, iou_threshold: float = 0.5):
        self.class_names = tuple(class_names)
        self.iou_threshold = float(iou_threshold)
        self._image_index: dict[str, int] = {}
        self._gt: list[tuple[np.ndarray, ...]] = []  # (image idx [M], boxes [M,4], classes [M], difficult [M])
        self._det: list[tuple[np.ndarray, ...]] = []  # (image idx [K], boxes [K,4], scores [K], classes [K])

    @property
    def image_ids(self) -> list[str]:
        """Ids of the images registered so far, in order."""
        return list(self._image_index)

    def _classes(self, name: str, value: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        classes = _as_rows(name, value, np.int64, (), n)
        bad = (classes < -1) | (classes >= len(self.class_names))
        if bad.any():
            raise ValueError(f"{name}: class index {classes[bad][0]} out of range [0, {len(self.class_names)}) "
                             "(-1 = padding)")
        return classes, classes >= 0

    def add_ground_truth(self, image_id: str, *, boxes: np.ndarray, classes: np.ndarray,
                         difficult: np.ndarray) -> None:
        """Registers an image and its ground truth: boxes ``[M, 4]`` voc_px xyxy, classes ``[M]``,
        difficult ``[M]`` bool. Each image id may be registered once."""
        if image_id in self._image_index:
            raise ValueError(f"image {image_id!r} was already added to the evaluator")
        boxes = _as_rows(f"gt_boxes of image {image_id!r}", boxes, np.float64, (4,))
        classes, real = self._classes(f"gt_classes of image {image_id!r}", classes, len(boxes))
        difficult = _as_rows(f"gt_difficult of image {image_id!r}", difficult, bool, (), len(boxes))
        index = self._image_index[image_id] = len(self._image_index)
        self._gt.append((np.full(int(real.sum()), index), boxes[real], classes[real], difficult[real]))

    def add_detections(self, image_id: str, *, boxes: np.ndarray, scores: np.ndarray,
                       classes: np.ndarray) -> None:
        """Adds detections of an already registered image: boxes ``[K, 4]`` voc_px xyxy, scores ``[K]``,
        classes ``[K]`` int (-1 rows skipped)."""
        if image_id not in self._image_index:
            raise ValueError(f"detections for image {image_id!r}, which has no ground truth registered "
                             "(add_ground_truth first; an image without objects still needs registering)")
        boxes = _as_rows(f"det_boxes of image {image_id!r}", boxes, np.float64, (4,))
        scores = _as_rows(f"det_scores of image {image_id!r}", scores, np.float64, (), len(boxes))
        classes, real = self._classes(f"det_classes of image {image_id!r}", classes, len(boxes))
        index = self._image_index[image_id]
        self._det.append((np.full(int(real.sum()), index), boxes[real], scores[real], classes[real]))

    def add(self, image_id: str, *, det_boxes: np.ndarray, det_scores: np.ndarray, det_classes: np.ndarray,
            gt_boxes: np.ndarray, gt_classes: np.ndarray, gt_difficult: np.ndarray) -> None:
        """Adds one image: its detections (``[K, 4]``, ``[K]``, ``[K]``) and ground truth (``[M, 4]``,
        ``[M]``, ``[M]``); boxes voc_px xyxy."""
        self.add_ground_truth(image_id, boxes=gt_boxes, classes=gt_classes, difficult=gt_difficult)
        self.add_detections(image_id, boxes=det_boxes, scores=det_scores, classes=det_classes)

    def add_images(self, image_ids: Sequence[str], *, gt_image: np.ndarray, gt_boxes: np.ndarray,
                   gt_classes: np.ndarray, gt_difficult: np.ndarray) -> None:
        """Registers many images at once, as ``add_ground_truth`` for each of ``image_ids`` in order: ground truth
        rows gt_image ``[M]`` (index into ``image_ids``), gt_boxes ``[M, 4]`` voc_px xyxy, gt_classes ``[M]``,
        gt_difficult ``[M]`` (rows of an image in annotation order)."""
        start = len(self._image_index)
        for i, image_id in enumerate(image_ids):
            if self._image_index.setdefault(image_id, start + i) != start + i:
                raise ValueError(f"image {image_id!r} was already added to the evaluator")
        boxes = _as_rows("gt_boxes", gt_boxes, np.float64, (4,))
        classes, real = self._classes("gt_classes", gt_classes, len(boxes))
        difficult = _as_rows("gt_difficult", gt_difficult, bool, (), len(boxes))
        image = _as_rows("gt_image", gt_image, np.int64, (), len(boxes))
        if len(image) and (image.min() < 0 or image.max() >= len(image_ids)):
            raise ValueError(f"gt_image: image index out of range [0, {len(image_ids)})")
        self._gt.append((image[real] + start, boxes[real], classes[real], difficult[real]))

    def add_results(self, results: Mapping[str, Mapping[str, Any]]) -> None:
        """Adds detections as ``read_results`` returns them (``{class name: {"image_ids", "scores", "boxes"}}``);
        every image must be registered."""
        for c, name in enumerate(self.class_names):
            r = results[name]
            try:
                index = np.fromiter(map(self._image_index.__getitem__, r["image_ids"]), np.int64,
                                    len(r["image_ids"]))
            except KeyError as e:
                raise ValueError(f"detections for image {e.args[0]!r}, which has no ground truth registered") from None
            boxes = _as_rows(f"boxes of class {name!r}", r["boxes"], np.float64, (4,), len(index))
            scores = _as_rows(f"scores of class {name!r}", r["scores"], np.float64, (), len(index))
            self._det.append((index, boxes, scores, np.full(len(index), c)))

    def add_result_files(self, results_dir: str | os.PathLike, *, prefix: str = "comp4",
                         image_set: str = "test", allow_missing: bool = False) -> None:
        """Adds the detections of devkit result files; every line must name a registered image."""
        self.add_results(read_results(results_dir, prefix=prefix, image_set=image_set, class_names=self.class_names,
                                      image_ids=self._image_index, allow_missing=allow_missing))

    def _concat(self, chunks, tails):
        if not chunks:
            return [np.zeros((0,) + t) for t in tails]
        return [np.concatenate(parts) for parts in zip(*chunks)]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything added so far, concatenated (padding rows dropped): "gt_image" ``[G]`` (index into
        ``image_ids``), "gt_boxes" ``[G, 4]`` voc_px, "gt_classes" ``[G]``, "gt_difficult" ``[G]``, "det_image"
        ``[D]``, "det_boxes" ``[D, 4]``, "det_scores" ``[D]``, "det_classes" ``[D]`` (insertion order)."""
        gt = self._concat(self._gt, [(), (4,), (), ()])
        det = self._concat(self._det, [(), (4,), (), ()])
        out = dict(zip(("gt_image", "gt_boxes", "gt_classes", "gt_difficult"), gt))
        out.update(zip(("det_image", "det_boxes", "det_scores", "det_classes"), det))
        for key in ("gt_image", "gt_classes", "det_image", "det_classes"):
            out[key] = out[key].astype(np.int64)
        out["gt_difficult"] = out["gt_difficult"].astype(bool)
        return out

    def write_results(self, results_dir: str | os.PathLike, *, prefix: str = "comp4",
                      image_set: str = "test") -> list[str]:
        """Writes the accumulated detections as devkit result files (see ``write_results``)."""
        a = self.arrays()
        ids = np.array(list(self._image_index), dtype=object)
        return write_results(results_dir, image_ids=ids[a["det_image"]].tolist(), boxes=a["det_boxes"],
                             scores=a["det_scores"], classes=a["det_classes"], prefix=prefix, image_set=image_set,
                             class_names=self.class_names)

    def matches(self) -> dict[str, ClassMatch]:
        """Per class name: the devkit matching of its detections (``match_class``); row indices in ``order`` and
        ``gt_row`` count within the class (``arrays()`` rows where the class is that class)."""
        a = self.arrays()
        out = {}
        for c, name in enumerate(self.class_names):
            g, d = a["gt_classes"] == c, a["det_classes"] == c
            out[name] = match_class(a["det_image"][d], a["det_scores"][d], a["det_boxes"][d], a["gt_image"][g],
                                    a["gt_boxes"][g], a["gt_difficult"][g], iou_threshold=self.iou_threshold)
        return out

    def precision_recall(self, matches: Mapping[str, ClassMatch] | None = None
                         ) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
        """Per class name: (recall [D], precision [D], number of non-difficult ground truths), D = the class's
        detections in descending score order, matched as the devkit does (``matches()``, or the ones given)."""
        matches = self.matches() if matches is None else matches
        return {name: (*m.precision_recall(), m.npos) for name, m in matches.items()}

    def compute(self, matches: Mapping[str, ClassMatch] | None = None) -> dict[str, Any]:
        """Per-class AP with both metrics (from ``matches()``, or the ones given).

        Returns dict with "ap_07" ``[C]`` (11-point), "ap_area" ``[C]``, "map_07", "map_area" (means over
        classes with ground truth), "num_positives" ``[C]`` int (non-difficult ground truths),
        "num_detections" ``[C]`` int, "class_names", "iou_threshold", "num_images", and "precision_recall"
        (``precision_recall()``'s curves). A class without non-difficult ground truth has AP NaN, is left out of
        the means, and raises a warning.
        """
        curves = self.precision_recall(matches)
        num_classes = len(self.class_names)
        ap_07, ap_area = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
        npos_all = np.array([curves[n][2] for n in self.class_names], np.int64)
        ndet_all = np.array([len(curves[n][0]) for n in self.class_names], np.int64)
        for c, name in enumerate(self.class_names):
            recall, precision, npos = curves[name]
            if npos > 0:
                ap_07[c], ap_area[c] = voc07_ap(recall, precision), area_ap(recall, precision)
        has_gt = npos_all > 0
        if not has_gt.all():
            missing = ", ".join(repr(n) for n, h in zip(self.class_names, has_gt) if not h)
            warnings.warn(f"no non-difficult ground truth for class(es) {missing}: AP undefined (NaN / null), "
                          "left out of the mAP", stacklevel=2)
        return {
            "ap_07": ap_07, "ap_area": ap_area,
            "map_07": float(np.mean(ap_07[has_gt])) if has_gt.any() else float("nan"),
            "map_area": float(np.mean(ap_area[has_gt])) if has_gt.any() else float("nan"),
            "num_positives": npos_all, "num_detections": ndet_all,
            "class_names": self.class_names, "iou_threshold": self.iou_threshold,
            "num_images": len(self._image_index), "precision_recall": curves,
        }


# ----------------------------------------------------------------------------------------------------------
# Reporting.


def _maybe(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def result_to_json(result: Mapping[str, Any]) -> dict[str, Any]:
    """``compute()`` output -> JSON-ready dict ``{"ap_07": {class: ap or null}, "ap_area": {...},
    "map_07": x, "map_area": y, ...}``."""
    names = result["class_names"]
    return {
        "ap_07": {n: _maybe(v) for n, v in zip(names, result["ap_07"])},
        "ap_area": {n: _maybe(v) for n, v in zip(names, result["ap_area"])},
        "map_07": _maybe(result["map_07"]), "map_area": _maybe(result["map_area"]),
        "iou_threshold": result["iou_threshold"], "num_images": result["num_images"],
        "num_positives": {n: int(v) for n, v in zip(names, result["num_positives"])},
        "num_detections": {n: int(v) for n, v in zip(names, result["num_detections"])},
    }


def format_table(result: Mapping[str, Any], metrics: str = "both",
                 extra_columns: Mapping[str, Sequence[str]] | None = None) -> str:
    """A per-class table and the mAPs as text. ``metrics``: 'both', '07' (11-point) or 'area'.
    ``extra_columns``: {header: one text per class} appended to the class rows (e.g. the error breakdown,
    ``analysis.table_columns``)."""
    if metrics not in ("both", "07", "area"):
        raise ValueError(f"metrics must be 'both', '07' or 'area', got {metrics!r}")
    cols = [("AP07", "ap_07", "map_07")] if metrics in ("both", "07") else []
    cols += [("AP_area", "ap_area", "map_area")] if metrics in ("both", "area") else []
    extra = dict(extra_columns or {})
    widths = {h: max([len(h)] + [len(v) for v in values]) for h, values in extra.items()}
    fmt = lambda v: "   n/a" if np.isnan(v) else f"{100 * v:6.2f}"  # noqa: E731
    width = max(len(n) for n in result["class_names"] + ("mAP",))
    header = (f"{'class':<{width}}  " + "  ".join(f"{c[0]:>7}" for c in cols) + f"  {'npos':>6}  {'ndet':>7}"
              + "".join(f"  {h:>{widths[h]}}" for h in extra))
    lines = [header, "-" * len(header)]
    for c, name in enumerate(result["class_names"]):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{fmt(result[c_[1]][c]):>7}" for c_ in cols)
                     + f"  {result['num_positives'][c]:>6d}  {result['num_detections'][c]:>7d}"
                     + "".join(f"  {values[c]:>{widths[h]}}" for h, values in extra.items()))
    lines.append("-" * len(header))
    lines.append(f"{'mAP':<{width}}  " + "  ".join(f"{fmt(result[c_[2]]):>7}" for c_ in cols))
    lines.append(f"({result['num_images']} images, IoU threshold {result['iou_threshold']:g}, AP in %)")
    return "\n".join(lines)
