"""Raw network outputs -> boxes and scores -> fixed-size per-class NMS, all jit-able.

Box format everywhere here: normalized ``xyxy`` of the network input image (equal to normalized coordinates
of the original image when it was resized without letterboxing). Scores are objectness x class probability
(darknet), one per box and class.

Fixed shapes under jit: ``batched_nms`` always returns ``max_detections`` slots per image, padded, with a
valid ``count``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from yolojax.ops import boxes as box_lib
from yolojax.ops.targets import Location, check_location


def _grid_offsets(grid_h: int, grid_w: int) -> tuple[jax.Array, jax.Array]:
    """Column and row index of every cell: two ``[grid_h, grid_w]`` float32 arrays."""
    rows, cols = jnp.meshgrid(jnp.arange(grid_h, dtype=jnp.float32),
                              jnp.arange(grid_w, dtype=jnp.float32), indexing="ij")
    return cols, rows


def decode_yolov2_cxcywh(outputs: jax.Array, anchors: jax.Array, *, location: Location = "direct") -> jax.Array:
    """The one decoder of YOLOv2-family box geometry (the loss and :func:`decode_yolov2` both use it).

    Args:
      outputs: ``[B, S_h, S_w, A, 5 + C]`` raw (tx, ty, tw, th, to, class logits...); only (tx, ty, tw, th) are
        read. Cast to float32.
      anchors: ``[A, 2]`` anchor (w, h) in grid units. Darknet uses the same numbers on every grid size
        (multi-scale), so they are *not* rescaled here: box width = anchor_w * exp(tw) / S_w.
      location: how (tx, ty) place the center (``yolojax.ops.targets.LOCATIONS``), in grid units:
        "direct" (darknet ``get_region_box``): bx = col + sigmoid(tx);
        "offset" (region-proposal offsets): bx = col + 0.5 + tx * anchor_w (the anchor centered in its cell).

    Returns:
      ``[B, S_h, S_w, A, 4]`` float32 normalized cxcywh: cx = bx / S_w, cy = by / S_h, w = anchor_w *
      exp(tw) / S_w, h = anchor_h * exp(th) / S_h.
    """
    check_location(location, "decode_yolov2")
    outputs = jnp.asarray(outputs, jnp.float32)  # decode in f32 even for a bf16 model
    anchors = jnp.asarray(anchors, jnp.float32)
    if outputs.ndim != 5 or anchors.ndim != 2 or outputs.shape[3] != anchors.shape[0] or outputs.shape[4] < 6:
        raise ValueError(f"decode_yolov2: outputs must be [B, S, S, A, 5+C] with A = {anchors.shape[0]} "
                         f"anchors, got shape {outputs.shape}")
    _, grid_h, grid_w, _, _ = outputs.shape
    cols, rows = _grid_offsets(grid_h, grid_w)
    if location == "direct":
        cx = (jax.nn.sigmoid(outputs[..., 0]) + cols[:, :, None]) / grid_w  # [B, S, S, A]
        cy = (jax.nn.sigmoid(outputs[..., 1]) + rows[:, :, None]) / grid_h
    else:
        cx = (cols[:, :, None] + 0.5 + outputs[..., 0] * anchors[:, 0]) / grid_w
        cy = (rows[:, :, None] + 0.5 + outputs[..., 1] * anchors[:, 1]) / grid_h
    w = anchors[:, 0] * jnp.exp(outputs[..., 2]) / grid_w
    h = anchors[:, 1] * jnp.exp(outputs[..., 3]) / grid_h
    return jnp.stack([cx, cy, w, h], axis=-1)


def decode_yolov2(outputs: jax.Array, anchors: jax.Array, *,
                  location: Location = "direct") -> tuple[jax.Array, jax.Array]:
    """Decodes YOLOv2 / Tiny YOLOv2 region-layer outputs into boxes and per-class scores.

    Args:
      outputs: ``[B, S_h, S_w, A, 5 + C]`` raw (tx, ty, tw, th, to, class logits...).
      anchors: ``[A, 2]`` anchor (w, h) in grid units (see :func:`decode_yolov2_cxcywh`).
      location: "direct" (darknet, default) or "offset"; see :func:`decode_yolov2_cxcywh`.

    Returns:
      boxes: ``[B, S_h*S_w*A, 4]`` normalized xyxy, ordered (row, column, anchor) like darknet.
      scores: ``[B, S_h*S_w*A, C]`` sigmoid(to) * softmax(class logits).
    """
    cxcywh = decode_yolov2_cxcywh(outputs, anchors, location=location)
    outputs = jnp.asarray(outputs, jnp.float32)
    batch, grid_h, grid_w, num_anchors, _ = outputs.shape
    boxes = box_lib.cxcywh_to_xyxy(cxcywh)
    scores = jax.nn.sigmoid(outputs[..., 4:5]) * jax.nn.softmax(outputs[..., 5:], axis=-1)
    n = grid_h * grid_w * num_anchors
    return boxes.reshape(batch, n, 4), scores.reshape(batch, n, -1)


def decode_yolov1(outputs: jax.Array, *, grid_size: int = 7, boxes_per_cell: int = 2,
                  num_classes: int = 20, sqrt: bool = True) -> tuple[jax.Array, jax.Array]:
    """Decodes YOLOv1 / Fast YOLO detection-layer outputs (darknet ``get_detection_boxes``).

    Darknet's v1 detection layer (``softmax=0``) applies no activation: class probabilities and confidences
    are the raw linear outputs, used as they are.

    Args:
      outputs: ``[B, S*S*(5*nb + C)]`` in darknet layout ``[S*S*C class probs][S*S*nb confidences]
        [S*S*nb*4 boxes]``; cell i = row*S + col; box (x, y) = offset in the cell, (w, h) = sqrt of the
        normalized size when ``sqrt`` (darknet ``sqrt=1``), else the size itself.
      grid_size, boxes_per_cell, num_classes: S, nb, C.

    Returns:
      boxes: ``[B, S*S*nb, 4]`` normalized xyxy, index cell*nb + n like darknet.
      scores: ``[B, S*S*nb, C]`` confidence * class probability.
    """
    s, nb, c = grid_size, boxes_per_cell, num_classes
    outputs = jnp.asarray(outputs, jnp.float32)
    if outputs.ndim != 2 or outputs.shape[1] != s * s * (5 * nb + c):
        raise ValueError(f"decode_yolov1: outputs must be [B, S*S*(5*B+C)] = [B, {s * s * (5 * nb + c)}] for "
                         f"S={s}, B={nb}, C={c}; got shape {outputs.shape}")
    batch = outputs.shape[0]
    probs = outputs[:, :s * s * c].reshape(batch, s * s, c)
    conf = outputs[:, s * s * c:s * s * (c + nb)].reshape(batch, s * s, nb)
    coords = outputs[:, s * s * (c + nb):].reshape(batch, s * s, nb, 4)
    cols, rows = (g.reshape(s * s, 1) for g in _grid_offsets(s, s))
    cx = (coords[..., 0] + cols) / s
    cy = (coords[..., 1] + rows) / s
    size = jnp.square(coords[..., 2:4]) if sqrt else coords[..., 2:4]
    boxes = box_lib.cxcywh_to_xyxy(jnp.concatenate([cx[..., None], cy[..., None], size], axis=-1))
    scores = conf[..., None] * probs[:, :, None, :]  # [B, S*S, nb, C]
    return boxes.reshape(batch, s * s * nb, 4), scores.reshape(batch, s * s * nb, c)


def _greedy_suppression(cand_boxes: jax.Array, valid: jax.Array, iou_threshold: float) -> jax.Array:
    """Greedy NMS over score-sorted candidates.

    Args:
      cand_boxes: ``[..., K, 4]`` xyxy, sorted by descending score along K.
      valid: ``[..., K]`` bool, candidates above the score threshold (a prefix along K, since sorted).
      iou_threshold: a later box is suppressed when IoU > threshold (strict, as darknet ``do_nms_sort``)
        with a kept earlier box.

    Returns:
      keep: ``[..., K]`` bool.
    """
    k = cand_boxes.shape[-2]
    position = jnp.arange(k)

    def body(i, suppressed):
        box_i = jax.lax.dynamic_index_in_dim(cand_boxes, i, axis=-2, keepdims=True)  # [..., 1, 4]
        active = (jax.lax.dynamic_index_in_dim(valid, i, axis=-1, keepdims=True)
                  & ~jax.lax.dynamic_index_in_dim(suppressed, i, axis=-1, keepdims=True))
        overlaps = box_lib.iou(box_i, cand_boxes) > iou_threshold  # [..., K]
        return suppressed | (active & overlaps & (position > i))

    # Only the valid prefix can suppress anything: loop up to the longest one (a dynamic bound is fine
    # under jit: fori_loop becomes a while_loop), not over all K candidates.
    num_steps = jnp.max(jnp.sum(valid, axis=-1), initial=0)
    suppressed = jax.lax.fori_loop(0, num_steps, body, jnp.zeros(valid.shape, bool))
    return valid & ~suppressed


def batched_nms(boxes: jax.Array, scores: jax.Array, *, score_threshold: float, iou_threshold: float,
                max_detections: int, pre_nms_top_k: int | None = None) -> dict[str, jax.Array]:
    """Per-class greedy NMS and top-k with fixed output size; jit-able, batched.

    For each image and class, boxes with score > ``score_threshold`` are visited in descending score order
    (ties: lower box index first) and a box is dropped when its IoU with an already kept box of the same
    class is > ``iou_threshold`` (darknet ``do_nms_sort``). The survivors of all classes are ranked by score
    (ties: lower class, then higher-ranked candidate first) and the best ``max_detections`` are returned.

    Args:
      boxes: ``[B, N, 4]`` normalized xyxy (shared by all classes, as YOLO predicts one box per slot).
      scores: ``[B, N, C]`` per-class scores.
      score_threshold: keep scores strictly above this (published: 0.005 for v2, 0.001 for v1 evaluation;
        ``yolojax.models.heads``).
      iou_threshold: suppression IoU (0.45 for v2, 0.5 for v1).
      max_detections: K, number of output slots per image (static).
      pre_nms_top_k: if set, only the best ``pre_nms_top_k`` boxes of each class enter NMS (faster; exact
        whenever no class has more boxes above the score threshold). ``None`` = all N.

    Returns:
      dict with "boxes" ``[B, K, 4]`` normalized xyxy (0 where padded), "scores" ``[B, K]`` (0 where padded),
      "classes" ``[B, K]`` int32 (-1 where padded), "count" ``[B]`` int32; sorted by descending score.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    scores = jnp.asarray(scores, jnp.float32)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"batched_nms: expected boxes [B, N, 4] and scores [B, N, C], got {boxes.shape} "
                         f"and {scores.shape}")
    batch, n, num_classes = scores.shape
    k = n if pre_nms_top_k is None else min(pre_nms_top_k, n)

    # Per class, candidates sorted by score; top_k puts the lower index first on ties.
    cand_scores, order = jax.lax.top_k(jnp.swapaxes(scores, 1, 2), k)  # [B, C, k]
    cand_boxes = boxes[jnp.arange(batch)[:, None, None], order]  # [B, C, k, 4]
    keep = _greedy_suppression(cand_boxes, cand_scores > score_threshold, iou_threshold)

    # Merge classes: rank all survivors by score in one flat [C*k] axis per image.
    flat_scores = jnp.where(keep, cand_scores, -jnp.inf).reshape(batch, num_classes * k)
    if num_classes * k < max_detections:  # fewer candidates than slots: pad before top_k
        flat_scores = jnp.pad(flat_scores, ((0, 0), (0, max_detections - num_classes * k)),
                              constant_values=-jnp.inf)
    out_scores, flat_idx = jax.lax.top_k(flat_scores, max_detections)  # [B, K]
    is_real = jnp.isfinite(out_scores)
    flat_idx = jnp.where(is_real, flat_idx, 0)
    out_boxes = cand_boxes.reshape(batch, num_classes * k, 4)[jnp.arange(batch)[:, None], flat_idx]
    return {
        "boxes": jnp.where(is_real[..., None], out_boxes, 0.0),
        "scores": jnp.where(is_real, out_scores, 0.0),
        "classes": jnp.where(is_real, flat_idx // k, -1).astype(jnp.int32),
        "count": jnp.sum(is_real, axis=-1).astype(jnp.int32),
    }
