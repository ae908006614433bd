"""COCO-style detection metrics (AP@[.5:.95], AP50, AP75, AP/AR by object size), computed in numpy.

The same accumulate-then-compute interface as ``yolojax.evaluation.voc.VOCEvaluator`` and the same input boxes
(VOC 1-based pixel xyxy of the original image), so one evaluation loop feeds both. The algorithm is that of
pycocotools' ``COCOeval`` for ``iouType="bbox"`` (tests/test_coco_metrics.py compares to 1e-6):

  * Pixel convention: continuous coordinates, no +1 (COCO's). A VOC box (x_min, y_min, x_max, y_max) is the
    COCO box [x_min - 1, y_min - 1, x_max - x_min, y_max - y_min]; its area (for the size ranges, of ground
    truth and detections alike) is w * h of that box. Note the VOC devkit instead counts x_max - x_min + 1.
  * IoU thresholds .50:.05:.95; precision sampled at 101 recall points (0, .01, ..., 1) after making it
    monotone; size ranges all / small (area < 32^2) / medium (32^2..96^2) / large (> 96^2), bounds inclusive
    on both sides as pycocotools has them.
  * At most ``max_detections`` (100) detections per image *and class* (pycocotools applies maxDets to each
    (image, category) pair), the highest-scoring ones; ties in score keep insertion order (stable sort), and
    ties across images follow the order the images were added.
  * Ground truth flagged ``difficult`` is treated as COCO crowd (``iscrowd=1``): ignored, matched with IoU =
    intersection / detection area, and any number of detections may match it without being false positives.
  * Greedy matching per class and image in score order: each detection takes, among the non-ignored ground
    truths not yet taken, the one with the highest IoU >= the threshold (ties -> the later one); only when there
    is none it may match an ignored one. Ground truth outside the size range is ignored; unmatched detections
    outside it are not counted.
  * A metric with no ground truth to average over is NaN (pycocotools prints -1).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from yolojax.config.classes import VOC_CLASSES

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e10)}
MAX_DETS = (1, 10, 100)


def voc_px_to_coco_xywh(boxes: np.ndarray) -> np.ndarray:
    """VOC 1-based pixel xyxy ``[N, 4]`` -> COCO continuous pixel ``[x, y, w, h]`` (float64)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] - 1.0, b[:, 1] - 1.0, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=-1)


def box_iou_xywh(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU ``[D, G]`` of ``[x, y, w, h]`` boxes, as pycocotools' ``maskUtils.iou`` for boxes: intersection
    over union, or over the detection's area where ``crowd [G]`` is set."""
    dx0, dy0, dw, dh = (det[:, i:i + 1] for i in range(4))
    gx0, gy0, gw, gh = (gt[None, :, i] for i in range(4))
    iw = np.minimum(dx0 + dw, gx0 + gw) - np.maximum(dx0, gx0)
    ih = np.minimum(dy0 + dh, gy0 + gh) - np.maximum(dy0, gy0)
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = np.where(crowd[None, :], dw * dh, dw * dh + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _match(ious: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of score-sorted detections to ground truth sorted non-ignored first, all thresholds.

    Returns (matched [T, D] bool, det_ignore [T, D] bool: matched to an ignored ground truth).
    """
    num_t, (num_d, num_g) = len(IOU_THRESHOLDS), ious.shape
    matched = np.zeros((num_t, num_d), bool)
    det_ignore = np.zeros((num_t, num_d), bool)
    taken = np.zeros((num_t, num_g), bool)
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]
    rows = np.arange(num_t)
    if num_g == 0:
        return matched, det_ignore
    # Only detections reaching the lowest threshold with some ground truth can match (most low-score ones
    # cannot): the others stay unmatched at every threshold.
    for d in np.flatnonzero(ious.max(axis=1) >= thr[0, 0]):
        iou = ious[d][None, :]
        free = ~(taken & ~crowd[None, :]) & (iou >= thr)  # [T, G]
        for group in (~gt_ignore, gt_ignore):  # non-ignored ground truth first (pycocotools breaks there)
            ok = free & group[None, :] & ~matched[:, d:d + 1]
            if not ok.any():
                continue
            masked = np.where(ok, iou, -np.inf)
            best = num_g - 1 - np.argmax(masked[:, ::-1], axis=1)  # last index of the maximum
            hit = ok.any(axis=1) & ~matched[:, d]
            matched[hit, d] = True
            det_ignore[hit, d] = gt_ignore[best[hit]]
            taken[rows[hit], best[hit]] = True
    return matched, det_ignore


class COCOEvaluator:
    """Accumulates ground truth and detections per image, then computes COCO-style AP and AR.

    Same interface as ``VOCEvaluator``: ``add_ground_truth`` once per image (also for images without objects),
    ``add_detections`` (any number of times), ``compute()``. Boxes are VOC 1-based pixel xyxy of the original
    image (as ``evaluation.normalized_to_devkit_px`` gives); a class of -1 marks padding and is skipped;
    ``difficult`` ground truth is COCO crowd (see the module docstring).
    """

    def __init__(self, class_names: Sequence[str] = VOC_CLASSES, max_detections: int = 100):
        self.class_names = tuple(class_names)
        self.max_detections = int(max_detections)
        self._gt: dict[str, list] = {}  # image id -> [boxes xywh [M, 4], classes [M], crowd [M]]
        self._det: dict[str, list] = {}  # image id -> list of (boxes xywh [K, 4], scores [K], classes [K])

    @property
    def image_ids(self) -> list[str]:
        return list(self._gt)

    def _rows(self, name: str, boxes: Any, n_cols: tuple, *cols: tuple[str, Any, Any]):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = [boxes]
        for col, value, dtype in cols:
            v = np.asarray(value, dtype).reshape(-1)
            if len(v) != len(boxes):
                raise ValueError(f"{name}: {len(boxes)} boxes but {len(v)} {col}")
            out.append(v)
        return out

    def _check_classes(self, name: str, classes: np.ndarray) -> np.ndarray:
        bad = (classes < -1) | (classes >= len(self.class_names))
        if bad.any():
            raise ValueError(f"{name}: class index {classes[bad][0]} out of range [0, {len(self.class_names)}) "
                             "(-1 = padding)")
        return classes >= 0

    def add_ground_truth(self, image_id: str, *, boxes: np.ndarray, classes: np.ndarray,
                         difficult: np.ndarray) -> None:
        """Registers an image: boxes ``[M, 4]`` voc_px xyxy, classes ``[M]`` int, difficult (crowd) ``[M]``."""
        if image_id in self._gt:
            raise ValueError(f"image {image_id!r} was already added to the evaluator")
        name = f"ground truth of image {image_id!r}"
        b, c, d = self._rows(name, boxes, (), ("classes", classes, np.int64), ("difficult", difficult, bool))
        real = self._check_classes(name, c)
        self._gt[image_id] = [voc_px_to_coco_xywh(b[real]), c[real], d[real]]
        self._det[image_id] = []

    def add_detections(self, image_id: str, *, boxes: np.ndarray, scores: np.ndarray,
                       classes: np.ndarray) -> None:
        """Adds detections of a registered image: boxes ``[K, 4]`` voc_px xyxy, scores ``[K]``, classes ``[K]``."""
        if image_id not in self._gt:
            raise ValueError(f"detections for image {image_id!r}, which has no ground truth registered "
                             "(add_ground_truth first; an image without objects still needs registering)")
        name = f"detections of image {image_id!r}"
        b, s, c = self._rows(name, boxes, (), ("scores", scores, np.float64), ("classes", classes, np.int64))
        real = self._check_classes(name, c)
        self._det[image_id].append((voc_px_to_coco_xywh(b[real]), s[real], c[real]))

    def _per_image_class(self):
        """Yields (class, image index, matching per area range) for every (image, class) with gt or dets."""
        for i, (image_id, (g_box, g_cls, g_crowd)) in enumerate(self._gt.items()):
            chunks = self._det[image_id]
            d_box = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros((0, 4))
            d_score = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(0)
            d_cls = np.concatenate([c[2] for c in chunks]) if chunks else np.zeros(0, np.int64)
            for k in np.union1d(g_cls, d_cls).astype(np.int64):
                gi, di = g_cls == k, d_cls == k
                order = np.argsort(-d_score[di], kind="mergesort")[:self.max_detections]
                db, ds = d_box[di][order], d_score[di][order]
                gb, gc = g_box[gi], g_crowd[gi]
                ious = box_iou_xywh(db, gb, gc)
                g_area, d_area = gb[:, 2] * gb[:, 3], db[:, 2] * db[:, 3]
                per_area = {}
                for a, (lo, hi) in AREA_RANGES.items():
                    g_ig = gc | (g_area < lo) | (g_area > hi)
                    g_order = np.argsort(g_ig, kind="mergesort")
                    matched, d_ig = _match(ious[:, g_order], g_ig[g_order], gc[g_order])
                    d_ig |= ~matched & ((d_area < lo) | (d_area > hi))[None, :]
                    per_area[a] = (ds, matched, d_ig, int((~g_ig).sum()))
                yield int(k), i, per_area

    def compute(self) -> dict[str, Any]:
        """COCO-style metrics.

        Returns dict: "AP" (AP@[.5:.95]), "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10",
        "AR100", "AR_small", "AR_medium", "AR_large" (floats, NaN when undefined), "ap_per_class" ``[C]``
        (AP@[.5:.95] per class, NaN without ground truth), "ap50_per_class" ``[C]``, "precision"
        ``[T, R, C, A, M]`` (pycocotools' layout; -1 = undefined), "recall" ``[T, C, A, M]``,
        "class_names", "num_images", "max_detections".
        """
        num_t, num_r, num_c = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(self.class_names)
        areas, max_dets = list(AREA_RANGES), (1, 10, self.max_detections)
        per = {(k, a): [] for k in range(num_c) for a in areas}  # in image order
        for k, _, per_area in self._per_image_class():
            for a in areas:
                per[k, a].append(per_area[a])
        precision = -np.ones((num_t, num_r, num_c, len(areas), len(max_dets)))
        recall = -np.ones((num_t, num_c, len(areas), len(max_dets)))
        for (k, a), entries in per.items():
            ai = areas.index(a)
            npig = sum(e[3] for e in entries)
            if not entries or npig == 0:
                continue
            for mi, m in enumerate(max_dets):
                scores = np.concatenate([e[0][:m] for e in entries])
                order = np.argsort(-scores, kind="mergesort")
                tm = np.concatenate([e[1][:, :m] for e in entries], axis=1)[:, order]
                ig = np.concatenate([e[2][:, :m] for e in entries], axis=1)[:, order]
                tp = np.cumsum(tm & ~ig, axis=1).astype(np.float64)
                fp = np.cumsum(~tm & ~ig, axis=1).astype(np.float64)
                for t in range(num_t):
                    nd = tp.shape[1]
                    rc = tp[t] / npig
                    pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
                    recall[t, k, ai, mi] = rc[-1] if nd else 0.0
                    pr = np.maximum.accumulate(pr[::-1])[::-1] if nd else pr
                    inds = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
                    q = np.zeros(num_r)
                    valid = inds < nd
                    q[valid] = pr[inds[valid]]
                    precision[t, :, k, ai, mi] = q

        def mean(x: np.ndarray) -> float:
            x = x[x > -1]
            return float(np.mean(x)) if x.size else float("nan")

        all_i, last = areas.index("all"), len(max_dets) - 1
        out = {
            "AP": mean(precision[:, :, :, all_i, last]),
            "AP50": mean(precision[0, :, :, all_i, last]),
            "AP75": mean(precision[list(np.round(IOU_THRESHOLDS, 2)).index(0.75), :, :, all_i, last]),
            **{f"AP_{a}": mean(precision[:, :, :, areas.index(a), last]) for a in ("small", "medium", "large")},
            **{f"AR{m}": mean(recall[:, :, all_i, mi]) for mi, m in enumerate(max_dets)},
            **{f"AR_{a}": mean(recall[:, :, areas.index(a), last]) for a in ("small", "medium", "large")},
            "ap_per_class": np.array([mean(precision[:, :, k, all_i, last]) for k in range(num_c)]),
            "ap50_per_class": np.array([mean(precision[0, :, k, all_i, last]) for k in range(num_c)]),
            "precision": precision, "recall": recall, "class_names": self.class_names,
            "num_images": len(self._gt), "max_detections": self.max_detections,
        }
        return out


COCO_SUMMARY_KEYS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100",
                     "AR_small", "AR_medium", "AR_large")


def format_summary(result: dict[str, Any]) -> str:
    """The twelve COCO numbers on two lines (NaN shown as '-')."""
    def f(k):
        v = result[k]
        return f"{k} {v:.4f}" if np.isfinite(v) else f"{k} -"
    return ("COCO-style (AP@[.5:.95], 101-point): " + "  ".join(f(k) for k in COCO_SUMMARY_KEYS[:6]) + "\n"
            + "                                    " + "  ".join(f(k) for k in COCO_SUMMARY_KEYS[6:]))


def result_to_json(result: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready summary: the twelve numbers (NaN -> None) and per-class AP keyed by class name."""
    def j(v):
        return float(v) if np.isfinite(v) else None
    return {**{k: j(result[k]) for k in COCO_SUMMARY_KEYS},
            "ap_per_class": {n: j(v) for n, v in zip(result["class_names"], result["ap_per_class"])},
            "ap50_per_class": {n: j(v) for n, v in zip(result["class_names"], result["ap50_per_class"])},
            "num_images": result["num_images"], "max_detections": result["max_detections"]}
