"""Training targets for YOLOv1 and YOLOv2 from padded ground truth, the way darknet builds them.

Input contract (the Batch of the data pipeline):
  boxes   [B, M, 4] float, normalized xyxy (zeros where padded)
  classes [B, M] int32, 0-based (-1 where padded)
  mask    [B, M] bool, True for real objects

An object is *valid* when ``mask`` is True and its box has positive width and height (a zero-size box has no
center to regress to and no log-size target; the data pipeline should already have dropped it).

Pure ``jnp``, fixed shapes, jit-able and written per image then ``jax.vmap``-ed over the batch, so it works
for any grid size (multi-scale training changes S between steps).

Collisions (two valid objects on the same slot) are resolved deterministically, as darknet does:
  * YOLOv1 (``data.c: fill_truth_region``): a cell keeps the FIRST object that lands in it
    (``if (truth[index]) continue;``).
  * YOLOv2 (``region_layer.c: forward_region_layer``): each truth in turn overwrites the deltas of its
    (cell, anchor) slot, so the LAST object wins.
"First"/"last" refer to the order along M. (Darknet shuffles the boxes of an image before this, so which one
wins is random there; here it is the data order, and the pipeline may shuffle if it wants darknet's behaviour.)
The ``keep`` argument overrides the rule for ablations.
"""
from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from yolojax.ops.boxes import pairwise_wh_iou, xyxy_to_cxcywh

Keep = Literal["first", "last"]
Location = Literal["direct", "offset"]

# How a YOLOv2-family head parameterizes a box center (docs/location_parameterization.md), in grid units with
# (col, row) the cell and (pw, ph) the anchor:
#   "direct" (darknet, YOLOv2): bx = col + sigmoid(tx),          by = row + sigmoid(ty)
#   "offset" (region proposals, the YOLO9000 "anchor boxes" rung): bx = col + 0.5 + tx * pw,  by = row + 0.5 + ty * ph
# (the anchor is centered in its cell; tx, ty unconstrained). Both: bw = pw * exp(tw), bh = ph * exp(th).
LOCATIONS = ("direct", "offset")

# log() of a size ratio is floored here so a degenerate box can never produce -inf (the classic NaN source).
_MIN_LOG_RATIO = 1e-9


def as_ground_truth(boxes, classes, mask) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Converts to arrays and checks the Batch shapes, naming the offending field."""
    boxes, classes, mask = jnp.asarray(boxes), jnp.asarray(classes), jnp.asarray(mask)
    _check_gt(boxes, classes, mask)
    return boxes, classes, mask


def _check_gt(boxes: jax.Array, classes: jax.Array, mask: jax.Array) -> None:
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"targets: `boxes` must be [B, M, 4] normalized xyxy, got shape {boxes.shape}")
    if classes.shape != boxes.shape[:2]:
        raise ValueError(f"targets: `classes` must be [B, M] = {boxes.shape[:2]}, got {classes.shape}")
    if mask.shape != boxes.shape[:2]:
        raise ValueError(f"targets: `mask` must be [B, M] = {boxes.shape[:2]}, got {mask.shape}")


def valid_objects(boxes: jax.Array, mask: jax.Array) -> jax.Array:
    """[..., M, 4] xyxy, [..., M] mask -> [..., M] bool: real objects with positive width and height."""
    return mask.astype(bool) & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def center_cells(cxcywh: jax.Array, grid_size: int) -> tuple[jax.Array, jax.Array]:
    """[..., 4] normalized cxcywh -> (col [...], row [...]) int32 of the cell holding the center.

    Darknet truncates ``x * S`` to int; a center exactly on the right/bottom edge (x = 1) is clamped into the
    last cell instead of indexing past the grid.
    """
    col = jnp.clip(jnp.floor(cxcywh[..., 0] * grid_size), 0, grid_size - 1).astype(jnp.int32)
    row = jnp.clip(jnp.floor(cxcywh[..., 1] * grid_size), 0, grid_size - 1).astype(jnp.int32)
    return col, row


def collision_winners(slot: jax.Array, valid: jax.Array, keep: Keep) -> jax.Array:
    """[M] slot ids, [M] valid -> [M] bool: the one valid object kept per slot (``keep`` = first/last)."""
    m = jnp.arange(slot.shape[0])
    same = (slot[:, None] == slot[None, :]) & valid[None, :]  # [M, M]: other object on my slot
    other_wins = (m[None, :] < m[:, None]) if keep == "first" else (m[None, :] > m[:, None])
    return valid & ~jnp.any(same & other_wins, axis=1)


def _scatter(num_slots: int, slot: jax.Array, winner: jax.Array, values: jax.Array) -> jax.Array:
    """Writes values [M, F] into [num_slots, F] at ``slot`` for winners only (indices then unique)."""
    idx = jnp.where(winner, slot, num_slots)  # losers point past the end and are dropped
    out = jnp.zeros((num_slots,) + values.shape[1:], values.dtype)
    return out.at[idx].set(values, mode="drop")


def _check_keep(keep: str) -> None:
    if keep not in ("first", "last"):
        raise ValueError(f"targets: keep must be 'first' or 'last', got {keep!r}")


def check_location(location: str, where: str = "targets") -> None:
    """ValueError naming ``where`` unless ``location`` is one of LOCATIONS (config field model.v2.location)."""
    if location not in LOCATIONS:
        raise ValueError(f"{where}: location (config.model.v2.location) must be one of {LOCATIONS}, "
                         f"got {location!r}")


def yolov1_targets(boxes: jax.Array, classes: jax.Array, mask: jax.Array, *, grid_size: int = 7,
                   num_classes: int = 20, keep: Keep = "first") -> dict[str, jax.Array]:
    """YOLOv1 targets: each object goes to the cell holding its center (darknet ``fill_truth_region``).

    Args:
      boxes: [B, M, 4] normalized xyxy. classes: [B, M] int (-1 pad). mask: [B, M] bool.
      grid_size: S. num_classes: C. keep: which colliding object a cell keeps (darknet v1: "first").

    Returns dict of (cells indexed [row, col], i.e. darknet's cell index row * S + col):
      "object":       [B, S, S] float32, 1 where a cell holds an object.
      "class_onehot": [B, S, S, C] float32 (all zero for a class outside [0, C), as darknet skips it).
      "box":          [B, S, S, 4] float32 darknet truth layout: (x offset in the cell, y offset in the cell,
                      w, h normalized to the image).
    """
    boxes, classes, mask = as_ground_truth(boxes, classes, mask)
    _check_keep(keep)
    s = grid_size

    def one(boxes, classes, mask):
        cxcywh = xyxy_to_cxcywh(boxes.astype(jnp.float32))
        valid = valid_objects(boxes, mask)
        col, row = center_cells(cxcywh, s)
        slot = row * s + col
        winner = collision_winners(slot, valid, keep)
        offsets = cxcywh[:, :2] * s - jnp.stack([col, row], -1).astype(jnp.float32)
        feats = jnp.concatenate([jnp.ones_like(offsets[:, :1]),
                                 jax.nn.one_hot(classes, num_classes, dtype=jnp.float32),
                                 offsets, cxcywh[:, 2:]], axis=-1)
        dense = _scatter(s * s, slot, winner, feats).reshape(s, s, -1)
        return {"object": dense[..., 0], "class_onehot": dense[..., 1:1 + num_classes],
                "box": dense[..., 1 + num_classes:]}

    return jax.vmap(one)(boxes, classes, mask)


def best_anchors(wh_grid: jax.Array, anchors: jax.Array) -> jax.Array:
    """[..., 2] box (w, h) and [A, 2] anchors, both in grid units -> [...] int32 best-shape anchor.

    Darknet ``bias_match=1``: IoU of (w, h) with centers aligned; the first anchor wins ties (strict ``>``
    in darknet, ``argmax`` here), and a box overlapping no anchor gets anchor 0, as in darknet.
    """
    return jnp.argmax(pairwise_wh_iou(wh_grid[..., None, :], anchors)[..., 0, :], axis=-1).astype(jnp.int32)


def yolov2_targets(boxes: jax.Array, classes: jax.Array, mask: jax.Array, *, anchors: jax.Array,
                   grid_size: int = 13, keep: Keep = "last", location: Location = "direct") -> dict[str, jax.Array]:
    """YOLOv2 targets: each object goes to its center cell and its best-shape anchor (darknet region layer).

    Args:
      boxes: [B, M, 4] normalized xyxy. classes: [B, M] int (-1 pad). mask: [B, M] bool.
      anchors: [A, 2] anchor (w, h) in grid units, used as-is on every grid size (darknet does this).
      grid_size: S (= input size / 32). keep: which colliding object a slot keeps (darknet v2: "last").
      location: "direct" (darknet) or "offset" (region-proposal offsets); see LOCATIONS. Only "txty" depends
        on it; the assignment (center cell, best-shape anchor) is the same for both.

    Returns dict (slots indexed [row, col, anchor]):
      "object": [B, S, S, A] float32, 1 on assigned slots.
      "class":  [B, S, S, A] int32 class id, -1 on unassigned slots.
      "box":    [B, S, S, A, 4] float32 normalized cxcywh of the assigned object (zeros elsewhere).
      "txty":   [B, S, S, A, 2] float32 target of the center prediction. "direct": target of sigmoid(tx),
                sigmoid(ty) = the center's offset in the cell, in [0, 1). "offset": target of tx, ty =
                (center - cell center) / anchor side, in grid units, in (-0.5/pw, 0.5/pw) x (-0.5/ph, 0.5/ph).
      "twth":   [B, S, S, A, 2] float32 target of tw, th: log(w * S / anchor_w), log(h * S / anchor_h).
    """
    boxes, classes, mask = as_ground_truth(boxes, classes, mask)
    _check_keep(keep)
    check_location(location)
    anchors = jnp.asarray(anchors, jnp.float32)
    if anchors.ndim != 2 or anchors.shape[1] != 2:
        raise ValueError(f"targets: `anchors` must be [A, 2] (w, h) in grid units, got {anchors.shape}")
    s, a = grid_size, anchors.shape[0]

    def one(boxes, classes, mask):
        cxcywh = xyxy_to_cxcywh(boxes.astype(jnp.float32))
        valid = valid_objects(boxes, mask)
        col, row = center_cells(cxcywh, s)
        wh_grid = cxcywh[:, 2:] * s
        n = best_anchors(wh_grid, anchors)  # [M]
        slot = (row * s + col) * a + n
        winner = collision_winners(slot, valid, keep)
        txty = cxcywh[:, :2] * s - jnp.stack([col, row], -1).astype(jnp.float32)  # in-cell offset
        if location == "offset":
            txty = (txty - 0.5) / anchors[n]
        twth = jnp.log(jnp.maximum(wh_grid / anchors[n], _MIN_LOG_RATIO))
        feats = jnp.concatenate([jnp.ones_like(txty[:, :1]), classes[:, None].astype(jnp.float32),
                                 cxcywh, txty, twth], axis=-1)
        dense = _scatter(s * s * a, slot, winner, feats).reshape(s, s, a, -1)
        obj = dense[..., 0]
        cls = jnp.where(obj > 0, dense[..., 1], -1.0).astype(jnp.int32)
        return {"object": obj, "class": cls, "box": dense[..., 2:6], "txty": dense[..., 6:8],
                "twth": dense[..., 8:10]}

    return jax.vmap(one)(boxes, classes, mask)
