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

from typing import Any, Mapping, Sequence

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
    return _paired_iou(np.asarray(det, np.float64)[:, None, :], np.asarray(gt, np.float64)[None, :, :],
                       np.asarray(crowd, bool)[None, :])


def _paired_iou(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """``box_iou_xywh`` of broadcasting ``[..., 4]`` det and gt boxes (crowd ``[...]``), in the same float
    operations as pycocotools' ``bbIou``."""
    dx0, dy0, dw, dh = (det[..., i] for i in range(4))
    gx0, gy0, gw, gh = (gt[..., i] for i in range(4))
    iw = np.minimum(dx0 + dw, gx0 + gw) - np.maximum(dx0, gx0)
    ih = np.minimum(dy0 + dh, gy0 + gh) - np.maximum(dy0, gy0)
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = np.where(crowd, dw * dh, dw * dh + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _group_rank(keys: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal ``keys`` (``keys`` sorted): 0, 1, ... per run."""
    index = np.arange(len(keys))
    first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)
    return index - np.maximum.accumulate(np.where(first, index, 0)) if len(keys) else index


def match_detections(d_key: np.ndarray, d_box: np.ndarray, g_key: np.ndarray, g_box: np.ndarray,
                     g_crowd: np.ndarray, g_ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pycocotools' greedy matching (``COCOeval.evaluateImg``) of every (image, class) group at once, for all
    IoU thresholds and all area ranges.

    Args:
      d_key ``[D]``: group of each detection (image and class), detections sorted by group, then by descending
        score (the order in which they pick); d_box ``[D, 4]`` xywh.
      g_key ``[M]`` (sorted, ground truth of a group in annotation order), g_box ``[M, 4]`` xywh, g_crowd
        ``[M]``; g_ignore ``[A, M]``: ignored ground truth per area range (crowd or out of the range).

    Returns (candidates ``[N]``: the detections with IoU >= the lowest threshold with some ground truth of their
    group, the only ones that can match; matched ``[A, T, N]``, matched_ignored ``[A, T, N]``: matched to an ignored
    ground truth). The other detections match nothing.

    Per group, threshold and area range, each detection in turn takes, among the ground truths not yet taken
    (crowd ones are never taken) with IoU >= the threshold, a non-ignored one if there is any, the one of
    highest IoU, the later one on ties. Only pairs of IoU >= the lowest threshold can ever match, so the work
    runs on those pairs ("edges"), one step per detection rank within a group, every group in the same step.
    """
    num_a, num_t, num_d = g_ignore.shape[0], len(IOU_THRESHOLDS), len(d_key)
    none = (np.zeros(0, np.int64), np.zeros((num_a, num_t, 0), bool), np.zeros((num_a, num_t, 0), bool))
    # Ground truths of each detection's group: g_key[first[d] : first[d] + count[d]].
    first = np.searchsorted(g_key, d_key, side="left")
    count = np.searchsorted(g_key, d_key, side="right") - first
    total = int(count.sum())
    if total == 0:
        return none
    e_det = np.repeat(np.arange(num_d), count)
    e_gt = first[e_det] + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
    e_iou = _paired_iou(d_box[e_det], g_box[e_gt], g_crowd[e_gt])
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
    keep = e_iou >= thr[0]
    e_det, e_gt, e_iou = e_det[keep], e_gt[keep], e_iou[keep]
    if not len(e_det):
        return none
    # Candidates (detections with an edge) ranked within their group; edges by (rank, detection, IoU, gt) so a
    # step is a slice, a detection's edges are adjacent and its preferred edge is the last one that qualifies.
    cands, e_cand, edges_of = np.unique(e_det, return_inverse=True, return_counts=True)
    cand_rank = _group_rank(d_key[cands])
    # A step: the candidates of one rank, those with one edge (most; no choice to make) and then the others.
    e_step = 2 * cand_rank[e_cand] + (edges_of[e_cand] > 1)
    order = np.lexsort((e_gt, e_iou, e_cand, e_step))
    e_cand, e_gt, e_iou, e_step = e_cand[order], e_gt[order], e_iou[order], e_step[order]
    e_crowd = g_crowd[e_gt][:, None, None]
    e_ignore = g_ignore[:, e_gt].T[:, :, None]  # [E, A, 1]
    e_reach = (e_iou[:, None] >= thr[None, :])[:, None, :]  # [E, 1, T]
    taken = np.zeros((g_key.shape[0], num_a, num_t), bool)
    matched = np.zeros((len(cands), num_a, num_t), bool)
    matched_ignored = np.zeros((len(cands), num_a, num_t), bool)
    steps = np.searchsorted(e_step, np.arange(int(e_step[-1]) + 2))
    for step, (lo, hi) in enumerate(zip(steps[:-1], steps[1:])):
        if lo == hi:
            continue
        cand, gt = e_cand[lo:hi], e_gt[lo:hi]
        ok = e_reach[lo:hi] & (~taken[gt] | e_crowd[lo:hi])  # [E, A, T]
        if step % 2 == 0:  # one edge each
            hit, hit_ignored, c, hit_gt = ok, ok & e_ignore[lo:hi], cand, gt[:, None, None]
        else:
            pos = np.arange(hi - lo)[:, None, None]
            starts = np.flatnonzero(np.r_[True, cand[1:] != cand[:-1]])
            best_kept = np.maximum.reduceat(np.where(ok & ~e_ignore[lo:hi], pos, -1), starts, axis=0)  # [n, A, T]
            best_ignored = np.maximum.reduceat(np.where(ok & e_ignore[lo:hi], pos, -1), starts, axis=0)
            best = np.where(best_kept >= 0, best_kept, best_ignored)
            hit, c, hit_gt = best >= 0, cand[starts], gt[best]
            hit_ignored = hit & (best_kept < 0)  # nothing kept qualified: an ignored ground truth took it
        matched[c] = hit
        matched_ignored[c] = hit_ignored
        n_hit, a_hit, t_hit = np.nonzero(hit)
        taken[np.broadcast_to(hit_gt, hit.shape)[n_hit, a_hit, t_hit], a_hit, t_hit] = True
    matched, matched_ignored = matched.transpose(1, 2, 0), matched_ignored.transpose(1, 2, 0)
    return cands, matched, matched_ignored


_FP, _TP, _IGNORED = 0, 1, 2


def _accumulate(cls: np.ndarray, counts: np.ndarray, true_pos: tuple[np.ndarray, ...],
                fixes: tuple[np.ndarray, ...], npig: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``accumulate`` for one maxDets, every class, area range and threshold at once.

    Args:
      cls ``[D]``: class of each detection, in accumulation order (by class, then descending score, image, rank).
      counts ``[A, D]``: the detection counts (as a false positive) if it matches nothing: inside the area range.
      true_pos: (area range, threshold, position) of every true positive, in that order.
      fixes: (area range, threshold, position, +1 / -1) in that order, where a detection counts otherwise than
        ``counts`` says: +1, a true positive outside the area range; -1, matched to an ignored ground truth.
      npig ``[C, A]``: non-ignored ground truths; reach ``[C, A, R]``: for each recall threshold, the number of
        true positives - 1 at which recall (tp / npig) first reaches it (``>= npig`` when it never does).

    Returns (precision ``[A, T, C, R]``, recall ``[A, T, C]``), meaningful where npig > 0.

    pycocotools samples the precision envelope (the max of tp / (tp + fp) from a position on) at the first position
    where recall reaches each threshold. That position is a true positive (or the first detection, for a
    threshold of 0, where the envelope is the same as at the first true positive), and between true positives
    precision only falls, so the envelope is needed at the true positives only.
    """
    num_a, num_d = counts.shape
    num_t, num_c = len(IOU_THRESHOLDS), npig.shape[0]
    starts = np.searchsorted(cls, np.arange(num_c))
    run = np.concatenate([np.zeros((num_a, 1), np.int64), np.cumsum(counts, axis=1, dtype=np.int64)], axis=1)
    a_i, t_i, p = true_pos
    k_i = cls[p]
    # tp + fp up to each true positive, within its class: counts, plus the fixes in its row up to it.
    f_a, f_t, f_p, f_v = fixes
    f_key = (f_a * num_t + f_t) * (num_d + 1) + f_p
    f_run = np.r_[0, np.cumsum(f_v, dtype=np.int64)]
    row_key = (a_i * num_t + t_i) * (num_d + 1)
    fixed = (f_run[np.searchsorted(f_key, row_key + p, side="right")]
             - f_run[np.searchsorted(f_key, row_key + starts[k_i], side="left")])
    counted = run[a_i, p + 1] - run[a_i, starts[k_i]] + fixed
    row = (a_i * num_t + t_i) * num_c + k_i  # non-decreasing: true_pos is ordered by (a, t, position)
    num_tp = np.bincount(row, minlength=num_a * num_t * num_c)
    n = np.arange(len(row)) - (np.cumsum(num_tp) - num_tp)[row]  # true positives before this one in its row
    width = int(num_tp.max(initial=0)) + 1
    envelope = np.zeros((num_a * num_t * num_c, width))
    envelope[row, n] = (n + 1) / (counted + np.spacing(1))
    envelope = np.maximum.accumulate(envelope[:, ::-1], axis=1)[:, ::-1].reshape(num_a, num_t, num_c, width)
    num_tp = num_tp.reshape(num_a, num_t, num_c)
    reach = reach.transpose(1, 0, 2)[:, None]  # [A, 1, C, R]
    hit = reach < num_tp[..., None]  # [A, T, C, R]
    idx = np.broadcast_to(np.minimum(reach, width - 1), hit.shape)
    precision = np.where(hit, np.take_along_axis(envelope, idx, axis=3), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return precision, num_tp / npig.T[:, None, :]


def _concat(chunks: list, tails: list[tuple]) -> list[np.ndarray]:
    if not chunks:
        return [np.zeros((0,) + t) for t in tails]
    return [np.concatenate(parts) for parts in zip(*chunks)]


class COCOEvaluator:
    """Accumulates ground truth and detections per image, then computes COCO-style AP and AR.

    Same interface as ``VOCEvaluator``: ``add_ground_truth`` once per image (also for images without objects),
    ``add_detections`` (any number of times), ``compute()``; or in bulk, ``add_images`` and ``add_results``. Boxes
    are VOC 1-based pixel xyxy of the original image (as ``evaluation.normalized_to_devkit_px`` gives); a class
    of -1 marks padding and is skipped; ``difficult`` ground truth is COCO crowd (see the module docstring).
    """

    def __init__(self, class_names: Sequence[str] = VOC_CLASSES, max_detections: int = 100):
        self.class_names = tuple(class_names)
        self.max_detections = int(max_detections)
        self._image_index: dict[str, int] = {}
        self._gt: list[tuple] = []  # (image index [M], boxes xywh [M, 4], classes [M], crowd [M])
        self._det: list[tuple] = []  # (image index [K], boxes xywh [K, 4], scores [K], classes [K])

    @property
    def image_ids(self) -> list[str]:
        return list(self._image_index)

    def _rows(self, name: str, boxes: Any, *cols: tuple[str, Any, Any]):
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
        if image_id in self._image_index:
            raise ValueError(f"image {image_id!r} was already added to the evaluator")
        name = f"ground truth of image {image_id!r}"
        b, c, d = self._rows(name, boxes, ("classes", classes, np.int64), ("difficult", difficult, bool))
        real = self._check_classes(name, c)
        index = self._image_index[image_id] = len(self._image_index)
        self._gt.append((np.full(int(real.sum()), index), voc_px_to_coco_xywh(b[real]), c[real], d[real]))

    def add_images(self, image_ids: Sequence[str], *, gt_image: np.ndarray, gt_boxes: np.ndarray,
                   gt_classes: np.ndarray, gt_difficult: np.ndarray) -> None:
        """Registers many images at once, as ``add_ground_truth`` for each of ``image_ids`` in order: ground truth
        rows gt_image ``[M]`` (index into ``image_ids``), gt_boxes ``[M, 4]`` voc_px xyxy, gt_classes ``[M]``,
        gt_difficult ``[M]`` (rows of an image in annotation order)."""
        start = len(self._image_index)
        for i, image_id in enumerate(image_ids):
            if self._image_index.setdefault(image_id, start + i) != start + i:
                raise ValueError(f"image {image_id!r} was already added to the evaluator")
        name = "ground truth rows"
        b, c, d, g = self._rows(name, gt_boxes, ("classes", gt_classes, np.int64),
                                ("difficult", gt_difficult, bool), ("image indices", gt_image, np.int64))
        if len(g) and (g.min() < 0 or g.max() >= len(image_ids)):
            raise ValueError(f"{name}: image index out of range [0, {len(image_ids)})")
        real = self._check_classes(name, c)
        self._gt.append((g[real] + start, voc_px_to_coco_xywh(b[real]), c[real], d[real]))

    def add_detections(self, image_id: str, *, boxes: np.ndarray, scores: np.ndarray,
                       classes: np.ndarray) -> None:
        """Adds detections of a registered image: boxes ``[K, 4]`` voc_px xyxy, scores ``[K]``, classes ``[K]``."""
        if image_id not in self._image_index:
            raise ValueError(f"detections for image {image_id!r}, which has no ground truth registered "
                             "(add_ground_truth first; an image without objects still needs registering)")
        name = f"detections of image {image_id!r}"
        b, s, c = self._rows(name, boxes, ("scores", scores, np.float64), ("classes", classes, np.int64))
        real = self._check_classes(name, c)
        index = self._image_index[image_id]
        self._det.append((np.full(int(real.sum()), index), voc_px_to_coco_xywh(b[real]), s[real], c[real]))

    def add_results(self, results: Mapping[str, Mapping[str, Any]]) -> None:
        """Adds detections as ``evaluation.voc.read_results`` returns them (``{class name: {"image_ids",
        "scores", "boxes"}}``, boxes voc_px xyxy); every image must be registered."""
        for c, name in enumerate(self.class_names):
            r = results[name]
            try:
                index = np.fromiter(map(self._image_index.__getitem__, r["image_ids"]), np.int64,
                                    len(r["image_ids"]))
            except KeyError as e:
                raise ValueError(f"detections for image {e.args[0]!r}, which has no ground truth registered") from None
            b, s = self._rows(f"detections of class {name!r}", r["boxes"], ("scores", r["scores"], np.float64))
            self._det.append((index, voc_px_to_coco_xywh(b), s, np.full(len(index), c)))

    def _evaluated(self):
        """Every detection kept (at most ``max_detections`` per image and class), in accumulation order (class,
        descending score, image, rank in its image and class), with its matching; and the ground-truth counts.

        Returns (classes [D], rank [D], counts [A, D] (inside the area range), the positions of the detections that
        may match [N] (ascending), their outcome [A, T, N] (``_FP``, ``_TP`` or ``_IGNORED``: matched to an ignored
        ground truth or unmatched outside the area range), non-ignored ground truths [C, A]).
        """
        num_c = len(self.class_names)
        g_img, g_box, g_cls, g_crowd = _concat(self._gt, [(), (4,), (), ()])
        d_img, d_box, d_score, d_cls = _concat(self._det, [(), (4,), (), ()])
        g_img, g_cls, d_img, d_cls = (x.astype(np.int64) for x in (g_img, g_cls, d_img, d_cls))
        lo, hi = (np.array([r[i] for r in AREA_RANGES.values()])[:, None] for i in (0, 1))
        # Ground truth by (image, class), annotation order kept.
        g_key = g_img * num_c + g_cls
        order = np.argsort(g_key, kind="stable")
        g_key, g_box, g_cls, g_crowd = g_key[order], g_box[order], g_cls[order], g_crowd[order].astype(bool)
        g_area = g_box[:, 2] * g_box[:, 3]
        g_ignore = g_crowd[None, :] | (g_area[None, :] < lo) | (g_area[None, :] > hi)  # [A, M]
        npig = np.zeros((num_c, len(lo)), np.int64)
        np.add.at(npig, g_cls, (~g_ignore).T.astype(np.int64))
        # Detections by (image, class), descending score, insertion order on ties; the first max_detections.
        d_key = d_img * num_c + d_cls
        order = np.argsort(-d_score, kind="stable")
        order = order[np.argsort(d_key[order], kind="stable")]
        d_key, d_box, d_score, d_cls, d_img = d_key[order], d_box[order], d_score[order], d_cls[order], d_img[order]
        rank = _group_rank(d_key)
        kept = rank < self.max_detections
        d_key, d_box, d_score, d_cls, d_img, rank = (x[kept] for x in (d_key, d_box, d_score, d_cls, d_img, rank))
        cands, matched, matched_ignored = match_detections(d_key, d_box, g_key, g_box, g_crowd, g_ignore)
        d_area = d_box[:, 2] * d_box[:, 3]
        outside = (d_area[None, :] < lo) | (d_area[None, :] > hi)  # [A, D]
        # Accumulation order (pycocotools: per class, images in order, each image's detections by score, then
        # a stable sort by descending score).
        order = np.argsort(-d_score, kind="stable")  # ties keep (image, rank) order
        order = order[np.argsort(d_cls[order].astype(np.int16 if num_c < 2 ** 15 else np.int64), kind="stable")]
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        counts = ~outside
        by_pos = np.argsort(position[cands])
        cand_pos = position[cands[by_pos]]
        hit, hit_ignored = matched[:, :, by_pos], matched_ignored[:, :, by_pos]
        counts_c = counts[:, None, cands[by_pos]]
        true_pos = hit & ~hit_ignored
        a_i, t_i, j = np.nonzero(true_pos)
        # +1: a true positive outside the area range; -1: matched to an ignored ground truth inside it.
        fix = (true_pos & ~counts_c).astype(np.int8) - (hit & hit_ignored & counts_c)
        f_a, f_t, f_j = np.nonzero(fix)
        true_pos = (a_i, t_i, cand_pos[j])
        fixes = (f_a, f_t, cand_pos[f_j], fix[f_a, f_t, f_j].astype(np.int64))
        return d_cls[order], rank[order], counts[:, order], true_pos, fixes, npig

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
        precision = -np.ones((num_t, num_r, num_c, len(areas), len(max_dets)))
        recall = -np.ones((num_t, num_c, len(areas), len(max_dets)))
        d_cls, rank, counts, true_pos, fixes, npig = self._evaluated()
        # Recall after the j-th true positive is j / npig; the first j reaching each recall threshold.
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.array([[np.searchsorted(np.arange(1, n + 1) / n, RECALL_THRESHOLDS, side="left") for n in row]
                              for row in npig])  # [C, A, R]
        undefined = (npig == 0).T  # [A, C]
        for mi, m in enumerate(max_dets):
            keep = rank < m
            if keep.all():
                p, r = _accumulate(d_cls, counts, true_pos, fixes, npig, reach)
            else:
                kept_pos = np.cumsum(keep) - 1
                tp_keep, fix_keep = keep[true_pos[2]], keep[fixes[2]]
                p, r = _accumulate(d_cls[keep], counts[:, keep],
                                   (*(x[tp_keep] for x in true_pos[:2]), kept_pos[true_pos[2][tp_keep]]),
                                   (*(x[fix_keep] for x in fixes[:2]), kept_pos[fixes[2][fix_keep]],
                                    fixes[3][fix_keep]), npig, reach)
            p[np.broadcast_to(undefined[:, None, :, None], p.shape)] = -1
            r[np.broadcast_to(undefined[:, None, :], r.shape)] = -1
            precision[..., mi] = p.transpose(1, 3, 2, 0)
            recall[..., mi] = r.transpose(1, 2, 0)

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
            "num_images": len(self._image_index), "max_detections": self.max_detections,
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
