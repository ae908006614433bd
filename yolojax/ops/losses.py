"""YOLOv1 and YOLOv2 losses, written so their gradients are darknet's deltas.

Darknet layers do not have a loss function: ``forward_*_layer`` writes a "delta" per output (target minus
prediction, times a scale) and ``backward`` adds it to the incoming gradient (for logistic outputs after
multiplying by the logistic gradient). Descending along ``-delta`` is the same as descending a loss whose
gradient is ``-delta``, so every term below is ``0.5 * scale * (target - prediction)^2`` (or a scaled
softmax cross-entropy, whose gradient w.r.t. the logits is ``scale * (softmax - onehot)``), with targets that
darknet treats as constants (the rescore IoU, the ignore mask) wrapped in ``stop_gradient``.

Normalization (docs/losses.md): ``total`` is the mean over images of the per-image sum, so
``d total / d outputs = -(darknet delta chained through the activation) / B``; ``parts`` holds the terms
('coord', 'obj', 'noobj', 'class', and for YOLOv2 'prior'), each a scalar on the same scale, and
``total == sum(parts.values())``.

Ground truth is the padded Batch: boxes [B, M, 4] normalized xyxy, classes [B, M] (-1 pad), mask [B, M].
"""
from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from yolojax.ops import targets as targets_lib
from yolojax.ops.boxes import cxcywh_to_xyxy, iou, pairwise_iou
from yolojax.ops.postprocess import decode_yolov2_cxcywh

Parts = dict[str, jax.Array]


def _mean_over_images(per_image: dict[str, jax.Array]) -> tuple[jax.Array, Parts]:
    parts = {k: jnp.mean(v) for k, v in per_image.items()}
    return sum(parts.values()), parts


# ------------------------------------------------------------------------------------------------ YOLOv1


def split_yolov1_outputs(outputs: jax.Array, *, grid_size: int, boxes_per_cell: int,
                         num_classes: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Darknet detection-layer layout -> (class [B,S,S,C], conf [B,S,S,nb], box [B,S,S,nb,4]).

    ``outputs`` is [B, S*S*(5*nb + C)] = [S*S*C class probs][S*S*nb confidences][S*S*nb*4 boxes], cells in
    row-major order (row * S + col); boxes are (x, y offset in the cell, sqrt w, sqrt h of the image).
    """
    s, nb, c = grid_size, boxes_per_cell, num_classes
    expected = s * s * (5 * nb + c)
    if outputs.ndim != 2 or outputs.shape[1] != expected:
        raise ValueError(f"yolov1_loss: `outputs` must be [B, S*S*(5*B+C)] = [B, {expected}] for grid_size={s}, "
                         f"boxes_per_cell={nb}, num_classes={c}; got shape {outputs.shape}")
    b = outputs.shape[0]
    probs = outputs[:, :s * s * c].reshape(b, s, s, c)
    conf = outputs[:, s * s * c:s * s * (c + nb)].reshape(b, s, s, nb)
    box = outputs[:, s * s * (c + nb):].reshape(b, s, s, nb, 4)
    return probs, conf, box


def _v1_cxcywh(box: jax.Array, grid_size: int, sqrt: bool) -> jax.Array:
    """[..., 4] (x, y cell offsets, w, h or their sqrt) -> cxcywh in darknet's IoU frame (offset / S).

    Darknet compares prediction and truth of one cell with both centers as ``offset / S`` (the cell index is
    left out on both sides, which leaves IoUs unchanged).
    """
    wh = box[..., 2:] ** 2 if sqrt else box[..., 2:]
    return jnp.concatenate([box[..., :2] / grid_size, wh], axis=-1)


def _v1_responsible(pred: jax.Array, truth: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Responsible predictor per cell, darknet's rule.

    Args: pred [..., nb, 4] and truth [..., 4], cxcywh in the same frame.
    Returns: (index [...] int32, IoU of every predictor [..., nb]).
    The predictor with the highest IoU wins (first on ties); if no predictor overlaps the truth, the one
    with the smallest RMSE of (x, y, w, h) wins instead.
    """
    ious = iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(truth[..., None, :]))
    rmse = jnp.sqrt(jnp.sum((pred - truth[..., None, :]) ** 2, axis=-1))
    best = jnp.where(jnp.any(ious > 0, axis=-1), jnp.argmax(ious, axis=-1), jnp.argmin(rmse, axis=-1))
    return best.astype(jnp.int32), ious


def yolov1_loss(outputs: jax.Array, boxes: jax.Array, classes: jax.Array, mask: jax.Array, *,
                grid_size: int = 7, boxes_per_cell: int = 2, num_classes: int = 20,
                coord_scale: float = 5.0, object_scale: float = 1.0, noobject_scale: float = 0.5,
                class_scale: float = 1.0, rescore: bool = True, sqrt: bool = True,
                keep: targets_lib.Keep = "first") -> tuple[jax.Array, Parts]:
    """YOLOv1 loss = darknet ``detection_layer`` (``yolov1.cfg``: softmax=0, rescore=1, sqrt=1).

    Args:
      outputs: [B, S*S*(5*nb+C)] raw (linear) network outputs in darknet layout (see
        :func:`split_yolov1_outputs`).
      boxes: [B, M, 4] normalized xyxy. classes: [B, M] int (-1 pad). mask: [B, M] bool.
      grid_size, boxes_per_cell, num_classes: S, nb, C.
      coord_scale, object_scale, noobject_scale, class_scale: darknet cfg scales (defaults: yolov1.cfg).
      rescore: objectness target is the IoU of the responsible box with the truth (else 1).
      sqrt: outputs predict sqrt(w), sqrt(h).
      keep: which object a cell keeps when several centers fall in it (darknet: the first).

    Per image (cells with an object: the class term; their responsible predictor: coord and obj terms):
      coord = sum 0.5*coord_scale*[(x-x^)^2 + (y-y^)^2 + (sqrt w - w^)^2 + (sqrt h - h^)^2]
      obj   = sum 0.5*object_scale*(IoU - C^)^2, noobj = sum over all other predictors 0.5*noobject_scale*C^2
      class = sum 0.5*class_scale*sum_c (p_c - p^_c)^2   (squared error on linear outputs, as darknet)

    Returns:
      (total scalar, parts {'coord', 'obj', 'noobj', 'class'}), each the mean over images of the sum.
    """
    outputs = jnp.asarray(outputs, jnp.float32)
    probs, conf, box = split_yolov1_outputs(outputs, grid_size=grid_size, boxes_per_cell=boxes_per_cell,
                                            num_classes=num_classes)
    t = targets_lib.yolov1_targets(boxes, classes, mask, grid_size=grid_size, num_classes=num_classes,
                                   keep=keep)
    obj_cell = t["object"]  # [B, S, S]
    pred_cxcywh = _v1_cxcywh(jax.lax.stop_gradient(box), grid_size, sqrt)
    truth_cxcywh = _v1_cxcywh(t["box"], grid_size, sqrt=False)
    best, ious = _v1_responsible(pred_cxcywh, truth_cxcywh)
    resp = jax.nn.one_hot(best, boxes_per_cell) * obj_cell[..., None]  # [B, S, S, nb]

    conf_target = jax.lax.stop_gradient(ious) if rescore else jnp.ones_like(conf)
    obj = 0.5 * object_scale * resp * (conf_target - conf) ** 2
    noobj = 0.5 * noobject_scale * (1.0 - resp) * conf ** 2
    size_target = jnp.sqrt(t["box"][..., 2:]) if sqrt else t["box"][..., 2:]
    coord_target = jnp.concatenate([t["box"][..., :2], size_target], axis=-1)[..., None, :]
    coord = 0.5 * coord_scale * resp * jnp.sum((coord_target - box) ** 2, axis=-1)
    cls = 0.5 * class_scale * obj_cell * jnp.sum((t["class_onehot"] - probs) ** 2, axis=-1)

    per_image = {k: jnp.sum(v, axis=tuple(range(1, v.ndim)))
                 for k, v in (("coord", coord), ("obj", obj), ("noobj", noobj), ("class", cls))}
    return _mean_over_images(per_image)


# ------------------------------------------------------------------------------------------------ YOLOv2


def _best_iou_with_any_truth(pred_cxcywh: jax.Array, boxes: jax.Array, valid: jax.Array) -> jax.Array:
    """[B, S, S, A, 4] cxcywh preds, [B, M, 4] xyxy truths, [B, M] valid -> [B, S, S, A] best IoU (0 if none)."""
    b = pred_cxcywh.shape[0]
    flat = cxcywh_to_xyxy(pred_cxcywh).reshape(b, -1, 4)
    ious = jnp.where(valid[:, None, :], pairwise_iou(flat, boxes), 0.0)  # [B, S*S*A, M]
    return jnp.max(ious, axis=-1, initial=0.0).reshape(pred_cxcywh.shape[:-1])


def _check_v2(outputs: jax.Array, anchors: jax.Array, variant: str, objectness: str = "mse") -> None:
    if outputs.ndim != 5 or outputs.shape[1] != outputs.shape[2] or outputs.shape[-1] < 6:
        raise ValueError(f"yolov2_loss: `outputs` must be [B, S, S, A, 5+C], got shape {outputs.shape}")
    if anchors.ndim != 2 or anchors.shape != (outputs.shape[3], 2):
        raise ValueError(f"yolov2_loss: `anchors` must be [A, 2] = [{outputs.shape[3]}, 2] (grid units) to match "
                         f"`outputs` {outputs.shape}; got {anchors.shape}")
    if objectness not in ("mse", "bce"):
        raise ValueError(f"yolov2_loss: objectness must be 'mse' or 'bce', got {objectness!r}")
    if variant not in ("darknet", "keras"):
        raise ValueError(f"yolov2_loss: variant must be 'darknet' or 'keras', got {variant!r}")


def yolov2_loss(outputs: jax.Array, boxes: jax.Array, classes: jax.Array, mask: jax.Array, *,
                anchors: jax.Array, seen: jax.Array | int = 0, coord_scale: float = 1.0,
                object_scale: float = 5.0, noobject_scale: float = 1.0, class_scale: float = 1.0,
                ignore_thresh: float = 0.6, rescore: bool = True, prior_scale: float = 0.01,
                prior_warmup_images: int = 12800, keep: targets_lib.Keep = "last",
                variant: Literal["darknet", "keras"] = "darknet",
                location: targets_lib.Location = "direct",
                objectness: Literal["mse", "bce"] = "mse") -> tuple[jax.Array, Parts]:
    """YOLOv2 loss = darknet ``region_layer`` (``yolov2-voc.cfg``: bias_match=1 rescore=1 softmax=1).

    Args:
      outputs: [B, S, S, A, 5+C] raw outputs (tx, ty, tw, th, to, class logits); any S.
      boxes: [B, M, 4] normalized xyxy. classes: [B, M] int (-1 pad). mask: [B, M] bool.
      anchors: [A, 2] (w, h) in grid units of the 13x13 grid, used as-is on every grid size (as darknet).
      seen: images seen before this batch (int scalar, may be traced: no recompilation). The anchor prior
        term is on while ``seen < prior_warmup_images``. (Darknet increments its counter before the forward
        pass, i.e. tests ``seen + batch < 12800``; pass that if you want its exact switch step.)
      coord_scale, object_scale, noobject_scale, class_scale, ignore_thresh: darknet cfg values (defaults
        from yolov2-voc.cfg). rescore: objectness target is the IoU of the assigned prediction (else 1).
      prior_scale, prior_warmup_images: darknet's hard-coded 0.01 and 12800.
      keep: which object a slot keeps when several land on it (darknet: the last).
      variant: 'darknet' (default), or 'keras' for the Keras-seed ablation (see below).
      objectness: the darknet variant's confidence terms: 'mse' (darknet: squared error on s(to)) or 'bce'
        (beyond darknet, configs/custom.py: binary cross-entropy on the logit, whose gradient s(to) - target does
        not vanish where s(to) saturates: from scratch, the many empty cells drive s(to) to 0 everywhere early, and
        the squared error's gradient s'(to) (target - s(to)) then hardly lifts the assigned ones again).
      location: how (tx, ty) place the box center (config.model.v2.location; docs/location_parameterization.md):
        'direct' (default, darknet): the center is col + s(tx); x/y terms compare s(tx) with the in-cell offset.
        'offset' (region-proposal offsets, the paper's "anchor boxes" rung): the center is
        col + 0.5 + tx*anchor_w; x/y terms compare the raw tx with tx* = (x*S - col - 0.5) / anchor_w, and the
        prior term pulls tx, ty to 0 (the cell center) instead of s(tx), s(ty) to 0.5.

    Darknet variant, per image (sums; s = logistic; assigned = the object's center cell and best-shape
    anchor; written for location='direct', 'offset' replaces s(tx) by tx and 0.5 by 0 as described above):
      coord = assigned: 0.5*coord_scale*(2 - w*h)*[(tx*-s(tx))^2 + (ty*-s(ty))^2 + (tw*-tw)^2 + (th*-th)^2]
              with tx* the offset in the cell, tw* = log(w*S/anchor_w), w, h of the truth normalized.
      obj   = assigned: 0.5*object_scale*(IoU(pred, truth) - s(to))^2        (IoU is a constant target)
      noobj = not assigned and best IoU with ALL truths of the image <= ignore_thresh: 0.5*noobject_scale*s(to)^2
              (objectness='bce': obj = object_scale*BCE(to, IoU), noobj = noobject_scale*BCE(to, 0), with
              BCE(x, y) = softplus(x) - y*x, the cross-entropy of s(x) against the target y)
      class = assigned: class_scale * softmax cross-entropy  (gradient class_scale*(softmax - onehot))
      prior = seen < 12800, not assigned: 0.5*prior_scale*[(0.5-s(tx))^2 + (0.5-s(ty))^2 + tw^2 + th^2]

    Keras variant (ablation, the Keras seed's formulation): w, h compared linearly in grid units
    (anchor*exp(tw) vs w*S), no (2 - w*h) weight, and each term normalized over the whole batch by its count
    (coord and class by the number of assigned slots, obj+noobj by the number of slots with a non-zero
    confidence weight, prior by the number of pulled slots), with an extra 1/2 on coord and confidence as
    in the seed. Its gradients are therefore NOT darknet's deltas.

    Returns:
      (total scalar, parts {'coord', 'obj', 'noobj', 'class', 'prior'}); total == sum of parts.
    """
    outputs = jnp.asarray(outputs, jnp.float32)
    boxes, classes, mask = targets_lib.as_ground_truth(boxes, classes, mask)
    anchors = jnp.asarray(anchors, jnp.float32)
    _check_v2(outputs, anchors, variant, objectness)
    targets_lib.check_location(location, "yolov2_loss")
    s, num_classes = outputs.shape[1], outputs.shape[-1] - 5
    t = targets_lib.yolov2_targets(boxes, classes, mask, anchors=anchors, grid_size=s, keep=keep,
                                   location=location)
    assigned = t["object"]  # [B, S, S, A]
    free = 1.0 - assigned

    # The center prediction and where the prior term pulls it (the cell center in both forms).
    if location == "direct":
        xy, prior_xy_target = jax.nn.sigmoid(outputs[..., 0:2]), 0.5
    else:
        xy, prior_xy_target = outputs[..., 0:2], 0.0
    twth = outputs[..., 2:4]
    sig_obj = jax.nn.sigmoid(outputs[..., 4])
    log_probs = jax.nn.log_softmax(outputs[..., 5:], axis=-1)

    # IoUs are targets/masks in darknet, never differentiated.
    pred = jax.lax.stop_gradient(decode_yolov2_cxcywh(outputs, anchors, location=location))
    valid = targets_lib.valid_objects(boxes, mask)
    ignore = _best_iou_with_any_truth(pred, boxes.astype(jnp.float32), valid) > ignore_thresh
    noobj_w = free * (1.0 - ignore.astype(jnp.float32))
    conf_target = iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(t["box"])) if rescore else jnp.ones_like(sig_obj)
    onehot = jax.nn.one_hot(t["class"], num_classes)  # all-zero for -1 (unassigned)
    ce = -jnp.sum(onehot * log_probs, axis=-1)
    warm = (jnp.asarray(seen) < prior_warmup_images).astype(jnp.float32)
    prior_xy = jnp.sum((prior_xy_target - xy) ** 2, axis=-1)

    if variant == "darknet":
        wh_weight = 2.0 - t["box"][..., 2] * t["box"][..., 3]
        coord_err = jnp.sum((t["txty"] - xy) ** 2, axis=-1) + jnp.sum((t["twth"] - twth) ** 2, axis=-1)
        if objectness == "bce":
            logit = outputs[..., 4]
            obj = object_scale * assigned * (jax.nn.softplus(logit) - conf_target * logit)
            noobj = noobject_scale * noobj_w * jax.nn.softplus(logit)
        else:
            obj = 0.5 * object_scale * assigned * (conf_target - sig_obj) ** 2
            noobj = 0.5 * noobject_scale * noobj_w * sig_obj ** 2
        terms = {
            "coord": 0.5 * coord_scale * assigned * wh_weight * coord_err,
            "obj": obj,
            "noobj": noobj,
            "class": class_scale * assigned * ce,
            "prior": 0.5 * prior_scale * warm * free * (prior_xy + jnp.sum(twth ** 2, axis=-1)),
        }
        per_image = {k: jnp.sum(v, axis=(1, 2, 3)) for k, v in terms.items()}
        return _mean_over_images(per_image)

    # Keras-seed variant: linear w/h in grid units, batch-level count normalization.
    pred_wh = anchors * jnp.exp(twth)
    true_wh = t["box"][..., 2:] * s
    n_assigned = jnp.maximum(jnp.sum(assigned), 1.0)
    conf_w = object_scale * assigned + noobject_scale * noobj_w
    n_conf = jnp.maximum(jnp.sum(conf_w > 0), 1.0)
    n_prior = jnp.maximum(jnp.sum(free), 1.0)
    coord_err = jnp.sum((t["txty"] - xy) ** 2, axis=-1) + jnp.sum((true_wh - pred_wh) ** 2, axis=-1)
    prior_wh = jnp.sum((anchors - pred_wh) ** 2, axis=-1)
    parts = {
        "coord": jnp.sum(coord_scale * assigned * coord_err) / n_assigned / 2.0,
        "obj": jnp.sum(object_scale * assigned * (conf_target - sig_obj) ** 2) / n_conf / 2.0,
        "noobj": jnp.sum(noobject_scale * noobj_w * sig_obj ** 2) / n_conf / 2.0,
        "class": jnp.sum(class_scale * assigned * ce) / n_assigned,
        "prior": warm * prior_scale * jnp.sum(free * (prior_xy + prior_wh)) / n_prior / 2.0,
    }
    return sum(parts.values()), parts
