"""Anchor (dimension prior) clustering for YOLOv2: k-means on box shapes with distance 1 - IoU.

YOLO9000 section 2 ("Dimension Clusters"): Euclidean k-means favours large boxes, so the distance is
``d(box, centroid) = 1 - IoU(box, centroid)`` with both boxes sharing a center, i.e. only (w, h) matter.
The paper reports a mean best IoU of 61.0 with k=5 and 67.2 with k=9 on VOC 2007+2012.

Everything here runs on the host in numpy: clustering is a one-off preprocessing step, not part of a step.

Units: the clustering is scale-free in the sense that it works in whatever unit the (w, h) come in. Datasets
give normalized (w, h) (fraction of the image); darknet cfgs and ``yolojax.ops.losses.yolov2_loss`` want anchors
in *grid units of a stated grid* (13 for a 416 input). Convert explicitly with
:func:`anchors_normalized_to_grid` / :func:`anchors_grid_to_normalized`.
"""
from __future__ import annotations

import numpy as np

from yolojax.ops.boxes import pairwise_wh_iou


def _check_wh(wh: np.ndarray, name: str) -> np.ndarray:
    wh = np.asarray(wh, dtype=np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"anchors: `{name}` must have shape [N, 2] (w, h), got {wh.shape}")
    if not np.all(np.isfinite(wh)):
        raise ValueError(f"anchors: `{name}` contains non-finite values")
    bad = np.flatnonzero(np.any(wh <= 0, axis=1))
    if bad.size:
        raise ValueError(f"anchors: `{name}` row {bad[0]} has a non-positive size {wh[bad[0]].tolist()}; "
                         "drop degenerate boxes before clustering")
    return wh


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """Mean over boxes of the best shape IoU with any anchor (the paper's "Avg IOU").

    Args:
      wh: [N, 2] box (w, h), any unit.
      anchors: [K, 2] anchor (w, h), same unit as ``wh``.
    """
    wh = _check_wh(wh, "wh")
    anchors = _check_wh(anchors, "anchors")
    return float(np.mean(np.max(pairwise_wh_iou(wh, anchors), axis=1)))


def _kmeans_pp_init(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with the 1 - IoU distance: each new center drawn with probability ~ d^2."""
    centers = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        d = 1.0 - np.max(pairwise_wh_iou(wh, np.stack(centers)), axis=1)
        p = d * d
        total = p.sum()
        # All boxes identical to a chosen center: any choice is as good as another.
        idx = rng.integers(len(wh)) if total <= 0 else rng.choice(len(wh), p=p / total)
        centers.append(wh[idx])
    return np.stack(centers)


def _lloyd(wh: np.ndarray, centers: np.ndarray, max_iter: int) -> np.ndarray:
    """Lloyd iterations: assign to the highest-IoU center, move each center to its members' mean."""
    assign = None
    for _ in range(max_iter):
        iou = pairwise_wh_iou(wh, centers)  # [N, K]
        new_assign = np.argmax(iou, axis=1)
        if assign is not None and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        for c in range(len(centers)):
            members = wh[assign == c]
            if len(members):
                centers[c] = members.mean(axis=0)
            else:
                # An empty cluster takes the box that is currently worst served, so k stays k.
                worst = np.argmin(np.max(iou, axis=1))
                centers[c] = wh[worst]
    return centers


def kmeans_anchors(wh: np.ndarray, k: int, *, restarts: int = 5, max_iter: int = 300,
                   seed: int = 0) -> tuple[np.ndarray, float]:
    """Clusters box shapes into ``k`` anchors with distance 1 - IoU (YOLO9000 "dimension clusters").

    Each restart seeds with k-means++ (using the same distance) and runs Lloyd iterations (means of the
    members) until assignments stop changing; the restart with the highest mean best IoU is kept.
    Deterministic for a given ``seed``.

    Args:
      wh: [N, 2] box (w, h), all > 0, in any unit (normalized is usual); N >= k.
      k: number of anchors.
      restarts: independent k-means++ restarts.
      max_iter: Lloyd iterations per restart at most.
      seed: seed of the numpy Generator.

    Returns:
      (anchors [k, 2] in the unit of ``wh``, sorted by area ascending (darknet cfg order),
       mean over boxes of the best IoU with an anchor).
    """
    wh = _check_wh(wh, "wh")
    if not 1 <= k <= len(wh):
        raise ValueError(f"anchors: k={k} must be between 1 and the number of boxes ({len(wh)})")
    if restarts < 1:
        raise ValueError(f"anchors: restarts={restarts} must be >= 1")
    rng = np.random.default_rng(seed)
    best, best_iou = None, -1.0
    for _ in range(restarts):
        centers = _lloyd(wh, _kmeans_pp_init(wh, k, rng), max_iter)
        score = float(np.mean(np.max(pairwise_wh_iou(wh, centers), axis=1)))
        if score > best_iou:
            best, best_iou = centers, score
    order = np.argsort(best[:, 0] * best[:, 1], kind="stable")
    return best[order], best_iou


def _grid_wh(grid_size) -> tuple[float, float]:
    gw, gh = (grid_size, grid_size) if np.isscalar(grid_size) else tuple(grid_size)
    if gw <= 0 or gh <= 0:
        raise ValueError(f"anchors: grid_size must be positive, got {grid_size}")
    return float(gw), float(gh)


def anchors_normalized_to_grid(anchors: np.ndarray, grid_size: int | tuple[int, int]) -> np.ndarray:
    """[K, 2] anchors normalized to the image -> grid-cell units of a ``grid_size`` grid (int or (w, h)).

    Example: the VOC anchors of ``yolov2-voc.cfg`` are in units of the 13x13 grid of a 416 input.
    """
    gw, gh = _grid_wh(grid_size)
    return np.asarray(anchors, dtype=np.float64) * np.array([gw, gh])


def anchors_grid_to_normalized(anchors: np.ndarray, grid_size: int | tuple[int, int]) -> np.ndarray:
    """[K, 2] anchors in grid-cell units of a ``grid_size`` grid -> normalized to the image."""
    gw, gh = _grid_wh(grid_size)
    return np.asarray(anchors, dtype=np.float64) / np.array([gw, gh])


def boxes_to_wh(boxes: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Collects the (w, h) of real, non-degenerate boxes for clustering.

    Args:
      boxes: [..., M, 4] xyxy (any unit; the output keeps it).
      mask: optional [..., M] bool, True for real objects (the Batch "mask").

    Returns:
      [N, 2] (w, h) of the masked boxes with w > 0 and h > 0.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    wh = (boxes[..., 2:4] - boxes[..., 0:2]).reshape(-1, 2)
    keep = np.all(wh > 0, axis=1)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool).reshape(-1)
    return wh[keep]


def anchor_fit_warning(anchors: np.ndarray, wh: np.ndarray, grid_size: int | tuple[int, int], *,
                       max_gap: float = 0.1, max_boxes: int = 20000, seed: int = 0) -> str | None:
    """A warning when configured anchors fit the dataset's boxes far worse than k-means anchors would.

    Args:
      anchors: [A, 2] anchors (w, h) in grid units of ``grid_size`` (the config's unit: cells of 32 px at the
        training input size, i.e. ``grid_size = image_size / 32``).
      wh: [N, 2] normalized box (w, h) of the training set (after the data's box cleaning).
      grid_size: the grid the anchors refer to (int or (w, h)).
      max_gap: warn when the mean best IoU of ``anchors`` is more than this below the k-means optimum.
      max_boxes: boxes used at most (a fixed random subset beyond it, for speed).
    Returns:
      None if the fit is within ``max_gap`` of k-means (or there are fewer boxes than anchors), else a one-line
      message with both mean best IoUs and the k-means anchors in the same unit.
    """
    wh = _check_wh(wh, "wh")
    anchors_norm = anchors_grid_to_normalized(_check_wh(anchors, "anchors"), grid_size)
    if len(wh) < len(anchors_norm):
        return None
    if len(wh) > max_boxes:
        wh = wh[np.random.default_rng(seed).choice(len(wh), max_boxes, replace=False)]
    ours = mean_best_iou(wh, anchors_norm)
    best_norm, best = kmeans_anchors(wh, len(anchors_norm), restarts=2, seed=seed)
    if ours >= best - max_gap:
        return None
    best_grid = anchors_normalized_to_grid(best_norm, grid_size)
    text = ", ".join(f"({w:.3f}, {h:.3f})" for w, h in best_grid)
    return (f"anchors: the configured anchors fit the training boxes with mean best IoU {ours:.3f}, k-means "
            f"anchors reach {best:.3f} (grid {grid_size}): check their unit (cells of 32 px at the training "
            f"input size) or use these: ({text}) (experiments/compute_anchors.py --config ...)")
