"""Why a class scores low: a confusion matrix and a breakdown of the false positives (host numpy only).

Both read what the VOC evaluator holds (``VOCEvaluator.arrays()`` and its devkit matching ``matches()``), so a
detection is a true or false positive here exactly when it is one for the mAP. Boxes are VOC 1-based pixel xyxy
and overlaps the devkit's (``voc.devkit_overlap``). All detections the evaluation kept count (its score
threshold); ``iou`` is the evaluator's matching threshold (0.5).

**Confusion matrix** ``[C + 1, C + 1]`` counts, rows = true class, columns = predicted class, index C =
background. Difficult boxes and the detections the devkit ignores on them are left out.
  * ``[g, g]``: boxes of class g found by a true positive (row g sums to the class's non-difficult boxes, so
    ``[g, g] / row`` is the recall at the evaluation's score threshold);
  * ``[g, p]``, p != g: a box of class g that no detection of g found, under a false positive of class p at
    IoU >= ``iou`` (false positives taken by descending score, each box and detection used once);
  * ``[g, C]`` (background column): the remaining boxes of class g, missed;
  * ``[C, p]`` (background row): the other false positives of class p.

**Error breakdown**, per predicted class (the COCO analyze tool's and Hoiem et al.'s categories, the first that
applies): a false positive is a
  * *duplicate*: IoU >= ``iou`` with a box of its class that a higher-scored detection already found;
  * *localization* error: IoU in [0.1, ``iou``) with a box of its class;
  * *confusion*: IoU >= 0.1 with a box of another class;
  * *background*: none of these.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from yolojax.evaluation import voc

ERROR_KINDS = ("localization", "confusion", "duplicate", "background")
_SHORT = {"localization": "loc%", "confusion": "conf%", "duplicate": "dup%", "background": "bg%"}
# Overlap below which a false positive touches nothing (Hoiem et al. 2012; the COCO analyze tool's IoU .1).
NEAR_IOU = 0.1
BACKGROUND = "background"


def analyze(arrays: Mapping[str, np.ndarray], matches: Mapping[str, voc.ClassMatch], class_names: Sequence[str],
            iou_threshold: float = 0.5) -> dict[str, Any]:
    """Confusion matrix and false-positive breakdown (module docstring) from a VOC evaluator's
    ``arrays()`` and ``matches()``.

    Returns {"class_names" (C), "matrix" int ``[C + 1, C + 1]`` (rows true, columns predicted, last =
    background), "errors" int ``[C, 4]`` (false positives per predicted class and kind, columns
    :data:`ERROR_KINDS`), "iou_threshold"}.
    """
    num = len(class_names)
    det_classes, gt_classes = arrays["det_classes"], arrays["gt_classes"]
    num_det, num_gt = len(det_classes), len(gt_classes)
    fp, duplicate = np.zeros(num_det, bool), np.zeros(num_det, bool)
    own_overlap = np.full(num_det, -np.inf)  # best overlap with a box of the detection's class
    found = np.zeros(num_gt, bool)
    for c, name in enumerate(class_names):
        m = matches[name]
        rows = np.flatnonzero(det_classes == c)[m.order]
        gt_rows = np.flatnonzero(gt_classes == c)
        fp[rows], duplicate[rows], own_overlap[rows] = m.fp, m.duplicate, m.overlap
        found[gt_rows[m.gt_row[m.tp]]] = True

    false_pos = np.flatnonzero(fp)
    other_overlap, candidates = _other_class_overlaps(arrays, false_pos, found, iou_threshold)
    kind = np.full(len(false_pos), ERROR_KINDS.index("background"))
    kind[other_overlap >= NEAR_IOU] = ERROR_KINDS.index("confusion")
    kind[(own_overlap[false_pos] >= NEAR_IOU) & (own_overlap[false_pos] < iou_threshold)] = \
        ERROR_KINDS.index("localization")
    kind[duplicate[false_pos]] = ERROR_KINDS.index("duplicate")
    errors = np.zeros((num, len(ERROR_KINDS)), np.int64)
    np.add.at(errors, (det_classes[false_pos], kind), 1)

    matrix = np.zeros((num + 1, num + 1), np.int64)
    counted = ~arrays["gt_difficult"]
    np.add.at(matrix, (gt_classes[found], gt_classes[found]), 1)
    confused_det, confused_gt = _assign_confusions(candidates, arrays["det_scores"])
    np.add.at(matrix, (gt_classes[confused_gt], det_classes[confused_det]), 1)
    missed = counted & ~found
    missed[confused_gt] = False
    np.add.at(matrix, (gt_classes[missed], num), 1)
    background = np.ones(num_det, bool)
    background[confused_det] = False
    background &= fp
    np.add.at(matrix, (num, det_classes[background]), 1)
    return {"class_names": tuple(class_names), "matrix": matrix, "errors": errors,
            "iou_threshold": float(iou_threshold)}


def _other_class_overlaps(arrays: Mapping[str, np.ndarray], rows: np.ndarray, found: np.ndarray,
                          iou_threshold: float) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """For the detections ``rows``: their best overlap with a box of another class in their image ``[F]``
    (-inf: none), and the (detection row, box row, overlap) pairs at IoU >= ``iou_threshold`` with a
    non-difficult box of another class that ``found`` says no detection of its class found."""
    gt_image, gt_classes = arrays["gt_image"], arrays["gt_classes"]
    det_image = arrays["det_image"][rows]
    best = np.full(len(rows), -np.inf)
    candidates: list[tuple[int, int, float]] = []
    if not len(rows) or not len(gt_image):
        return best, candidates
    num_images = int(max(det_image.max(), gt_image.max())) + 1
    valid, boxes, classes, gt_rows = voc.pad_by_image(gt_image, num_images, arrays["gt_boxes"], gt_classes,
                                                      np.arange(len(gt_image)))
    open_box = np.zeros_like(valid)
    open_box[valid] = ~(found | arrays["gt_difficult"])[gt_rows[valid]]
    det_classes = arrays["det_classes"][rows]
    for lo, ov in voc.image_overlaps(arrays["det_boxes"][rows], det_image, valid, boxes):
        hi = lo + len(ov)
        img = det_image[lo:hi]
        other = classes[img] != det_classes[lo:hi, None]
        ov = np.where(other, ov, -np.inf)
        best[lo:hi] = ov.max(axis=1)
        d, j = np.nonzero((ov >= iou_threshold) & open_box[img])
        candidates += zip(rows[lo + d].tolist(), gt_rows[img[d], j].tolist(), ov[d, j].tolist())
    return best, candidates


def _assign_confusions(candidates: list[tuple[int, int, float]], scores: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One box per false positive and one false positive per box: by descending score (ties: detection order),
    then by descending overlap. Returns (detection rows, box rows) of the pairs kept."""
    taken_det, taken_gt, pairs = set(), set(), []
    for d, g, _ in sorted(candidates, key=lambda t: (-scores[t[0]], t[0], -t[2])):
        if d not in taken_det and g not in taken_gt:
            taken_det.add(d)
            taken_gt.add(g)
            pairs.append((d, g))
    det_rows, gt_rows = zip(*pairs) if pairs else ((), ())
    return np.asarray(det_rows, np.int64), np.asarray(gt_rows, np.int64)


def normalized(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (a row without counts stays 0): the share of a true class's boxes (the
    background row: of the false positives) per predicted column."""
    matrix = np.asarray(matrix, np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def error_shares(errors: np.ndarray) -> np.ndarray:
    """``[C, 4]`` false-positive counts -> shares of each class's false positives (NaN: a class without any)."""
    errors = np.asarray(errors, np.float64)
    totals = errors.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, errors / totals, np.nan)


def to_json(analysis: Mapping[str, Any]) -> dict[str, Any]:
    """``analyze()`` output -> {"confusion_matrix": {"labels": [...classes, "background"], "counts": rows of
    ints (true class) by columns (predicted), "iou_threshold"}, "error_breakdown": {class: {"false_positives":
    n, "<kind>": share or null, ...}}}."""
    names = list(analysis["class_names"])
    shares = error_shares(analysis["errors"])
    breakdown = {}
    for c, name in enumerate(names):
        row = {"false_positives": int(analysis["errors"][c].sum())}
        row.update({k: (None if np.isnan(v) else float(v)) for k, v in zip(ERROR_KINDS, shares[c])})
        row["counts"] = {k: int(v) for k, v in zip(ERROR_KINDS, analysis["errors"][c])}
        breakdown[name] = row
    return {"confusion_matrix": {"labels": names + [BACKGROUND], "counts": analysis["matrix"].tolist(),
                                 "rows": "true class", "columns": "predicted class",
                                 "iou_threshold": analysis["iou_threshold"]},
            "error_breakdown": breakdown}


def table_columns(analysis: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per-class columns for ``voc.format_table``: the false positives ("FP") and the share of each kind in %
    ("loc%", "conf%", "dup%", "bg%"; "-" for a class without false positives)."""
    shares = error_shares(analysis["errors"])
    columns = {"FP": [str(int(n)) for n in analysis["errors"].sum(axis=1)]}
    for k, kind in enumerate(ERROR_KINDS):
        columns[_SHORT[kind]] = ["-" if np.isnan(v) else f"{100 * v:.0f}" for v in shares[:, k]]
    return columns
