"""yolov1_loss / yolov2_loss: gradients equal darknet's deltas.

The references below are plain-numpy, loop-by-loop transcriptions of darknet's ``forward_detection_layer``
(detection_layer.c, YOLOv1) and ``forward_region_layer`` + ``backward_region_layer_gpu`` (region_layer.c,
YOLOv2), written from the C semantics: darknet's own memory layout (entry-major per anchor for the region
layer), its ``box_iou`` on (x, y, w, h) boxes, its loop order and overwrite order, float64. The truth arrays
are built the way darknet's data loader builds them (``fill_truth_region`` for v1, a list of
(x, y, w, h, class) for v2). The losses must satisfy ``grad(total) == -delta / B``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from yolojax.ops import losses

VOC_ANCHORS = np.array([[1.3221, 1.73145], [3.19275, 4.00944], [5.05587, 8.09892], [9.47112, 4.84053],
                        [11.2364, 10.0071]], np.float32)


# ------------------------------------------------------------------------------------ darknet primitives


def dn_logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def dn_overlap(x1, w1, x2, w2):
    left = max(x1 - w1 / 2, x2 - w2 / 2)
    right = min(x1 + w1 / 2, x2 + w2 / 2)
    return right - left


def dn_box_iou(a, b):
    """darknet box.c box_iou on (x, y, w, h) center boxes."""
    w = dn_overlap(a[0], a[2], b[0], b[2])
    h = dn_overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if (w < 0 or h < 0) else w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union


def dn_box_rmse(a, b):
    return math.sqrt(sum((a[k] - b[k]) ** 2 for k in range(4)))


def truths_from_batch(boxes, mask, classes):
    """Per image, darknet's truth list: (x, y, w, h, class) of the real objects in data order."""
    out = []
    for b in range(boxes.shape[0]):
        rows = []
        for m in range(boxes.shape[1]):
            x0, y0, x1, y1 = (float(v) for v in boxes[b, m])
            if mask[b, m] and x1 > x0 and y1 > y0:
                rows.append(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, int(classes[b, m])))
        out.append(rows)
    return out


# ------------------------------------------------------------------------- region layer (YOLOv2) reference


def darknet_region_delta(outputs, truths, anchors, seen, *, coord_scale=1.0, object_scale=5.0,
                         noobject_scale=1.0, class_scale=1.0, thresh=0.6, location="direct"):
    """Returns (delta in our [B,S,S,A,5+C] layout, chained through the logistic gradient, stats dict).

    location="offset" transcribes the same layer with the region-proposal center (the YOLO9000 "anchor boxes"
    rung): x = (i + 0.5 + tx * anchor_w) / S, target tx* = (x* S - i - 0.5) / anchor_w, x and y left linear
    (no logistic, so no logistic gradient on them either)."""
    offset = location == "offset"
    bsz, s, _, a, e = outputs.shape
    classes = e - 5
    # darknet memory: [batch][anchor n][entry][row j][col i]
    x = np.transpose(outputs.astype(np.float64), (0, 3, 4, 1, 2)).copy()
    out = x.copy()
    if not offset:
        out[:, :, 0:2] = dn_logistic(x[:, :, 0:2])
    out[:, :, 4] = dn_logistic(x[:, :, 4])
    logits = x[:, :, 5:]
    ex = np.exp(logits - logits.max(axis=2, keepdims=True))
    out[:, :, 5:] = ex / ex.sum(axis=2, keepdims=True)
    delta = np.zeros_like(out)
    biases = anchors.astype(np.float64).reshape(-1)
    stats = {"ignored": 0, "noobj": 0, "assigned": 0, "overwritten": 0}

    def region_box(b, n, j, i):
        if offset:
            return ((i + .5 + x[b, n, 0, j, i] * biases[2 * n]) / s,
                    (j + .5 + x[b, n, 1, j, i] * biases[2 * n + 1]) / s,
                    math.exp(x[b, n, 2, j, i]) * biases[2 * n] / s, math.exp(x[b, n, 3, j, i]) * biases[2 * n + 1] / s)
        return ((i + out[b, n, 0, j, i]) / s, (j + out[b, n, 1, j, i]) / s,
                math.exp(x[b, n, 2, j, i]) * biases[2 * n] / s, math.exp(x[b, n, 3, j, i]) * biases[2 * n + 1] / s)

    def delta_region_box(truth, b, n, j, i, scale):
        pred = region_box(b, n, j, i)
        iou = dn_box_iou(pred, truth)
        tx = truth[0] * s - i
        ty = truth[1] * s - j
        if offset:
            tx, ty = (tx - .5) / biases[2 * n], (ty - .5) / biases[2 * n + 1]
        tw = math.log(truth[2] * s / biases[2 * n])
        th = math.log(truth[3] * s / biases[2 * n + 1])
        delta[b, n, 0, j, i] = scale * (tx - out[b, n, 0, j, i])
        delta[b, n, 1, j, i] = scale * (ty - out[b, n, 1, j, i])
        delta[b, n, 2, j, i] = scale * (tw - x[b, n, 2, j, i])
        delta[b, n, 3, j, i] = scale * (th - x[b, n, 3, j, i])
        return iou

    for b in range(bsz):
        for j in range(s):
            for i in range(s):
                for n in range(a):
                    pred = region_box(b, n, j, i)
                    best_iou = 0.0
                    for t in truths[b]:
                        best_iou = max(best_iou, dn_box_iou(pred, t[:4]))
                    assert abs(best_iou - thresh) > 1e-4, "test case too close to the ignore threshold"
                    delta[b, n, 4, j, i] = noobject_scale * (0 - out[b, n, 4, j, i])
                    if best_iou > thresh:
                        delta[b, n, 4, j, i] = 0
                        stats["ignored"] += 1
                    if seen < 12800:
                        truth = ((i + .5) / s, (j + .5) / s, biases[2 * n] / s, biases[2 * n + 1] / s)
                        delta_region_box(truth, b, n, j, i, .01)
        written = set()
        for t in truths[b]:
            i, j = int(t[0] * s), int(t[1] * s)
            best_iou, best_n = 0.0, 0
            for n in range(a):
                iou = dn_box_iou((0, 0, biases[2 * n] / s, biases[2 * n + 1] / s), (0, 0, t[2], t[3]))
                if iou > best_iou:
                    best_iou, best_n = iou, n
            stats["overwritten"] += (best_n, j, i) in written
            written.add((best_n, j, i))
            iou = delta_region_box(t[:4], b, best_n, j, i, coord_scale * (2 - t[2] * t[3]))
            delta[b, best_n, 4, j, i] = object_scale * (iou - out[b, best_n, 4, j, i])
            for c in range(classes):
                delta[b, best_n, 5 + c, j, i] = class_scale * ((c == t[4]) - out[b, best_n, 5 + c, j, i])
        stats["assigned"] += len(written)
    # backward_region_layer_gpu: logistic gradient on x, y and objectness.
    for k in ((4,) if offset else (0, 1, 4)):
        delta[:, :, k] *= out[:, :, k] * (1 - out[:, :, k])
    return np.transpose(delta, (0, 3, 4, 1, 2)), stats


# ---------------------------------------------------------------------- detection layer (YOLOv1) reference


def darknet_fill_truth_region(truths, s, classes):
    """data.c fill_truth_region (without its shuffle): per cell [is_obj, onehot C, x, y, w, h], first wins."""
    out = np.zeros((len(truths), s * s, 5 + classes))
    for b, rows in enumerate(truths):
        for (x, y, w, h, cid) in rows:
            col, row = int(x * s), int(y * s)
            index = col + row * s
            if out[b, index, 0]:
                continue
            out[b, index, 0] = 1
            if cid < classes:
                out[b, index, 1 + cid] = 1
            out[b, index, 1 + classes:] = (x * s - col, y * s - row, w, h)
    return out


def darknet_detection_delta(outputs, truth, s, nb, classes, *, coord_scale=5.0, object_scale=1.0,
                            noobject_scale=0.5, class_scale=1.0):
    """forward_detection_layer with softmax=0, rescore=1, sqrt=1 (yolov1.cfg). Returns (delta, stats)."""
    out = outputs.astype(np.float64)
    delta = np.zeros_like(out)
    locations = s * s
    stats = {"by_iou": 0, "by_rmse": 0}
    for b in range(out.shape[0]):
        for i in range(locations):
            is_obj = truth[b, i, 0]
            for j in range(nb):
                p = locations * classes + i * nb + j
                delta[b, p] = noobject_scale * (0 - out[b, p])
            if not is_obj:
                continue
            for j in range(classes):
                ci = i * classes + j
                delta[b, ci] = class_scale * (truth[b, i, 1 + j] - out[b, ci])
            tb = truth[b, i, 1 + classes:]
            tbox = (tb[0] / s, tb[1] / s, tb[2], tb[3])
            best_index, best_iou, best_rmse = -1, 0.0, 20.0
            for j in range(nb):
                bi = locations * (classes + nb) + (i * nb + j) * 4
                o = out[b, bi:bi + 4]
                obox = (o[0] / s, o[1] / s, o[2] * o[2], o[3] * o[3])
                iou, rmse = dn_box_iou(obox, tbox), dn_box_rmse(obox, tbox)
                if best_iou > 0 or iou > 0:
                    if iou > best_iou:
                        best_iou, best_index = iou, j
                else:
                    if rmse < best_rmse:
                        best_rmse, best_index = rmse, j
            stats["by_iou" if best_iou > 0 else "by_rmse"] += 1
            bi = locations * (classes + nb) + (i * nb + best_index) * 4
            o = out[b, bi:bi + 4]
            iou = dn_box_iou((o[0] / s, o[1] / s, o[2] * o[2], o[3] * o[3]), tbox)
            p = locations * classes + i * nb + best_index
            delta[b, p] = object_scale * (iou - out[b, p])
            delta[b, bi + 0] = coord_scale * (tb[0] - o[0])
            delta[b, bi + 1] = coord_scale * (tb[1] - o[1])
            delta[b, bi + 2] = coord_scale * (math.sqrt(tb[2]) - o[2])
            delta[b, bi + 3] = coord_scale * (math.sqrt(tb[3]) - o[3])
    return delta, stats


# ------------------------------------------------------------------------------------------ random cases


def random_gt(rng, bsz, m, num_classes, n_valid):
    """Padded Batch ground truth with n_valid[b] real objects, plus a near-duplicate (collision) in image 0."""
    boxes = np.zeros((bsz, m, 4), np.float32)
    classes = -np.ones((bsz, m), np.int32)
    mask = np.zeros((bsz, m), bool)
    for b in range(bsz):
        k = n_valid[b]
        wh = rng.uniform(0.04, 0.6, (k, 2))
        c = rng.uniform(wh / 2, 1 - wh / 2)
        boxes[b, :k] = np.concatenate([c - wh / 2, c + wh / 2], -1)
        classes[b, :k] = rng.integers(0, num_classes, k)
        mask[b, :k] = True
    if n_valid[0] >= 2:  # object 1 = object 0 nudged: same cell and anchor, different class
        boxes[0, 1] = boxes[0, 0] + 0.002
        classes[0, 1] = (classes[0, 0] + 1) % num_classes
    return boxes, classes, mask


def plant_matches(rng, outputs, boxes, mask, anchors, location="direct"):
    """Sets some predictions to decode to (almost) a ground-truth box, so the ignore rule is exercised."""
    s, a = outputs.shape[1], outputs.shape[3]
    for b in range(boxes.shape[0]):
        for m in np.flatnonzero(mask[b]):
            x0, y0, x1, y1 = boxes[b, m]
            cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
            i, j, n = int(cx * s), int(cy * s), rng.integers(a)
            off = np.clip([cx * s - i, cy * s - j], 0.02, 0.98)
            if location == "offset":
                outputs[b, j, i, n, 0:2] = (off - 0.5) / anchors[n]
            else:
                outputs[b, j, i, n, 0:2] = np.log(off / (1 - off))
            outputs[b, j, i, n, 2:4] = np.log(np.array([w, h]) * s * rng.uniform(0.93, 1.05) / anchors[n])


@functools.lru_cache(maxsize=None)
def v2_grad_fn(**kw):
    def total(o, boxes, classes, mask, seen):
        return losses.yolov2_loss(o, boxes, classes, mask, anchors=VOC_ANCHORS, seen=seen, **kw)[0]
    return jax.jit(jax.grad(total))


@pytest.mark.parametrize("grid,seen,seed", [(13, 0, 0), (13, 12800, 1), (10, 100, 2), (10, 50000, 3),
                                            (13, 12799, 4)])
def test_yolov2_grad_equals_darknet_region_deltas(grid, seen, seed):
    rng = np.random.default_rng(seed)
    bsz, m, num_classes = 3, 8, 20
    boxes, classes, mask = random_gt(rng, bsz, m, num_classes, n_valid=[6, 3, 0])
    out = rng.normal(0, 1.0, (bsz, grid, grid, 5, 5 + num_classes)).astype(np.float32)
    plant_matches(rng, out, boxes, mask, VOC_ANCHORS)
    delta, stats = darknet_region_delta(out, truths_from_batch(boxes, mask, classes), VOC_ANCHORS, seen)
    assert stats["ignored"] > 0 and stats["overwritten"] > 0  # the cases this test is about did occur
    grad = np.asarray(v2_grad_fn()(out, boxes, classes, mask, jnp.int32(seen)))
    np.testing.assert_allclose(grad, -delta / bsz, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("grid,seen,seed", [(13, 0, 10), (13, 50000, 11), (10, 100, 12)])
def test_yolov2_offset_form_grad_equals_numpy_transcription(grid, seen, seed):
    """location='offset': d loss / d outputs == -delta / B of the numpy region layer in the offset form."""
    rng = np.random.default_rng(seed)
    bsz, m, num_classes = 3, 8, 20
    boxes, classes, mask = random_gt(rng, bsz, m, num_classes, n_valid=[6, 3, 0])
    out = rng.normal(0, 1.0, (bsz, grid, grid, 5, 5 + num_classes)).astype(np.float32)
    out[..., 0:2] *= 0.3  # offsets of a fraction of an anchor: decoded centers stay near their cells
    plant_matches(rng, out, boxes, mask, VOC_ANCHORS, location="offset")
    delta, stats = darknet_region_delta(out, truths_from_batch(boxes, mask, classes), VOC_ANCHORS, seen,
                                        location="offset")
    assert stats["ignored"] > 0 and stats["overwritten"] > 0
    grad = np.asarray(v2_grad_fn(location="offset")(out, boxes, classes, mask, jnp.int32(seen)))
    np.testing.assert_allclose(grad, -delta / bsz, rtol=2e-4, atol=2e-6)
    # The two forms really differ on the same outputs (x/y deltas are not chained through a logistic).
    direct = np.asarray(v2_grad_fn()(out, boxes, classes, mask, jnp.int32(seen)))
    assert not np.allclose(direct[..., 0:2], grad[..., 0:2], atol=1e-4)


def test_yolov2_offset_form_hand_computed_values():
    """S=2, one anchor (1, 1), C=2, all outputs 0: in the offset form too every prediction is its cell's center
    with the anchor's size. Object center (0.3, 0.2), size 0.5 x 0.25 -> cell (0, 0), tx* = (0.6 - 0.5) / 1 =
    0.1, ty* = (0.4 - 0.5) / 1 = -0.1 (against tx = ty = 0, no sigmoid), tw* = 0, th* = log 0.5; IoU 3/7 as in
    the direct case. With warm-up, an output tx = 1 of a free slot is pulled with 0.5 * 0.01 * 1^2."""
    out = np.zeros((1, 2, 2, 1, 7), np.float32)
    boxes = np.array([[[0.05, 0.075, 0.55, 0.325]]], np.float32)
    classes, mask = np.array([[1]], np.int32), np.array([[True]])
    anchors = np.array([[1.0, 1.0]], np.float32)
    loss = jax.jit(functools.partial(losses.yolov2_loss, anchors=anchors, location="offset"))
    _, parts = loss(out, boxes, classes, mask, seen=20000)
    np.testing.assert_allclose(parts["coord"], 0.5 * 1.875 * (0.1 ** 2 + 0.1 ** 2 + math.log(0.5) ** 2), rtol=1e-5)
    np.testing.assert_allclose(parts["obj"], 0.5 * 5 * (3 / 7 - 0.5) ** 2, rtol=1e-5)
    out[0, 1, 1, 0, 0] = 1.0
    _, parts = loss(out, boxes, classes, mask, seen=0)
    np.testing.assert_allclose(parts["prior"], 0.5 * 0.01 * 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="location.*'sigmoid'"):
        losses.yolov2_loss(out, boxes, classes, mask, anchors=anchors, location="sigmoid")


def test_yolov2_grad_equals_darknet_with_non_default_scales():
    kw = dict(coord_scale=2.0, object_scale=3.0, noobject_scale=0.7, class_scale=1.5, ignore_thresh=0.5)
    rng = np.random.default_rng(7)
    boxes, classes, mask = random_gt(rng, 2, 6, 20, n_valid=[5, 2])
    out = rng.normal(0, 1.0, (2, 13, 13, 5, 25)).astype(np.float32)
    plant_matches(rng, out, boxes, mask, VOC_ANCHORS)
    delta, stats = darknet_region_delta(out, truths_from_batch(boxes, mask, classes), VOC_ANCHORS, 0,
                                        thresh=0.5, **{k: v for k, v in kw.items() if k != "ignore_thresh"})
    assert stats["ignored"] > 0
    grad = np.asarray(v2_grad_fn(**kw)(out, boxes, classes, mask, jnp.int32(0)))
    np.testing.assert_allclose(grad, -delta / 2, rtol=2e-4, atol=2e-6)


def test_yolov2_hand_computed_values():
    """S=2, one anchor (1, 1), C=2, all outputs 0 -> every prediction is its cell's center, size 0.5 x 0.5.

    One object: center (0.3, 0.2), size 0.5 x 0.25 -> cell (row 0, col 0); targets tx*=0.6, ty*=0.4,
    tw*=log(0.5*2/1)=0, th*=log(0.25*2/1)=log 0.5; weight 2 - 0.125. IoU(pred (0,0)-(.5,.5),
    truth (.05,.075)-(.55,.325)) = 0.1125 / 0.2625 = 3/7. The other 3 predictions overlap it below 0.6.
    """
    out = np.zeros((1, 2, 2, 1, 7), np.float32)
    boxes = np.array([[[0.05, 0.075, 0.55, 0.325]]], np.float32)
    classes, mask = np.array([[1]], np.int32), np.array([[True]])
    anchors = np.array([[1.0, 1.0]], np.float32)
    loss = jax.jit(functools.partial(losses.yolov2_loss, anchors=anchors))
    total, parts = loss(out, boxes, classes, mask, seen=20000)
    np.testing.assert_allclose(parts["coord"], 0.5 * 1.875 * (0.1 ** 2 + 0.1 ** 2 + math.log(0.5) ** 2), rtol=1e-5)
    np.testing.assert_allclose(parts["obj"], 0.5 * 5 * (3 / 7 - 0.5) ** 2, rtol=1e-5)
    np.testing.assert_allclose(parts["noobj"], 3 * 0.5 * 0.25, rtol=1e-6)
    np.testing.assert_allclose(parts["class"], math.log(2), rtol=1e-6)
    assert float(parts["prior"]) == 0.0
    np.testing.assert_allclose(total, sum(float(v) for v in parts.values()), rtol=1e-6)
    # Warm-up on: the 3 free predictions already sit on their priors (sigmoid 0.5, tw = 0) -> prior term 0,
    # but a shifted output is pulled with 0.5 * 0.01 * (0.5 - sigmoid(1))^2.
    out[0, 1, 1, 0, 0] = 1.0
    _, parts = loss(out, boxes, classes, mask, seen=0)
    np.testing.assert_allclose(parts["prior"], 0.5 * 0.01 * (0.5 - 1 / (1 + math.exp(-1))) ** 2, rtol=1e-5)


def test_yolov2_warmup_switch_is_at_12800():
    rng = np.random.default_rng(0)
    out = rng.normal(size=(1, 13, 13, 5, 25)).astype(np.float32)
    boxes, classes, mask = random_gt(rng, 1, 4, 20, n_valid=[3])
    f = jax.jit(lambda s: losses.yolov2_loss(out, boxes, classes, mask, anchors=VOC_ANCHORS, seen=s)[1])
    assert float(f(12799)["prior"]) > 0
    assert float(f(12800)["prior"]) == 0.0


def test_yolov2_empty_images_finite_and_only_noobj_prior():
    rng = np.random.default_rng(1)
    out = rng.normal(size=(2, 13, 13, 5, 25)).astype(np.float32)
    boxes, classes, mask = np.zeros((2, 4, 4), np.float32), -np.ones((2, 4), np.int32), np.zeros((2, 4), bool)
    total, parts = jax.jit(functools.partial(losses.yolov2_loss, anchors=VOC_ANCHORS, seen=0))(
        out, boxes, classes, mask)
    for k in ("coord", "obj", "class"):
        assert float(parts[k]) == 0.0
    sig = 1 / (1 + np.exp(-out.astype(np.float64)))
    np.testing.assert_allclose(parts["noobj"], 0.5 * np.sum(sig[..., 4] ** 2) / 2, rtol=1e-5)
    prior = 0.5 * 0.01 * (np.sum((0.5 - sig[..., 0:2]) ** 2) + np.sum(out[..., 2:4].astype(np.float64) ** 2)) / 2
    np.testing.assert_allclose(parts["prior"], prior, rtol=1e-5)
    delta, _ = darknet_region_delta(out, [[], []], VOC_ANCHORS, 0)
    grad = np.asarray(v2_grad_fn()(out, boxes, classes, mask, jnp.int32(0)))
    np.testing.assert_allclose(grad, -delta / 2, rtol=2e-4, atol=2e-6)
    for variant in ("darknet", "keras"):
        g = jax.jit(jax.grad(lambda o: losses.yolov2_loss(o, boxes, classes, mask, anchors=VOC_ANCHORS, seen=0,
                                                          variant=variant)[0]))(out)
        assert np.all(np.isfinite(g))


@pytest.mark.parametrize("variant", ["darknet", "keras"])
def test_yolov2_tiny_and_degenerate_boxes_finite(variant):
    boxes = np.array([[[0.5, 0.5, 0.5 + 1e-6, 0.5 + 1e-6],   # tiny
                       [0.2, 0.2, 0.2, 0.3],                 # zero width (dropped, never NaN)
                       [0.0, 0.0, 1.0, 1.0],                 # whole image, center exactly at 0.5
                       [0.99, 0.99, 1.0, 1.0]]], np.float32)  # in the last cell
    classes, mask = np.array([[0, 1, 2, 3]], np.int32), np.ones((1, 4), bool)
    out = np.zeros((1, 13, 13, 5, 25), np.float32)
    out[..., 2:4] = 8.0  # huge predicted sizes: exp overflow must not leak into gradients
    fn = jax.jit(jax.value_and_grad(lambda o: losses.yolov2_loss(o, boxes, classes, mask, anchors=VOC_ANCHORS,
                                                                 seen=0, variant=variant)[0]))
    val, g = fn(out)
    assert np.isfinite(val) and np.all(np.isfinite(g))


def test_yolov2_keras_variant_hand_value():
    """Same case as the darknet hand test: linear w/h in grid units, no (2 - wh), count-normalized."""
    out = np.zeros((1, 2, 2, 1, 7), np.float32)
    boxes = np.array([[[0.05, 0.075, 0.55, 0.325]]], np.float32)
    loss = jax.jit(functools.partial(losses.yolov2_loss, anchors=np.array([[1.0, 1.0]], np.float32), seen=20000,
                                     variant="keras"))
    _, parts = loss(out, boxes, np.array([[1]], np.int32), np.array([[True]]))
    # pred (w, h) = (1, 1) grid units vs truth (1.0, 0.5); 1 assigned slot; 4 slots with a confidence weight.
    np.testing.assert_allclose(parts["coord"], (0.1 ** 2 + 0.1 ** 2 + 0 + 0.5 ** 2) / 1 / 2, rtol=1e-5)
    np.testing.assert_allclose(parts["obj"], 5 * (3 / 7 - 0.5) ** 2 / 4 / 2, rtol=1e-5)
    np.testing.assert_allclose(parts["noobj"], 3 * 0.25 / 4 / 2, rtol=1e-6)
    np.testing.assert_allclose(parts["class"], math.log(2), rtol=1e-6)


def test_yolov2_bad_inputs_name_the_field():
    out = np.zeros((1, 13, 13, 5, 25), np.float32)
    boxes, classes, mask = np.zeros((1, 2, 4), np.float32), np.zeros((1, 2), np.int32), np.ones((1, 2), bool)
    with pytest.raises(ValueError, match="anchors"):
        losses.yolov2_loss(out, boxes, classes, mask, anchors=VOC_ANCHORS[:3])
    with pytest.raises(ValueError, match="outputs"):
        losses.yolov2_loss(out.reshape(1, 13, 13, 125), boxes, classes, mask, anchors=VOC_ANCHORS)
    with pytest.raises(ValueError, match="variant"):
        losses.yolov2_loss(out, boxes, classes, mask, anchors=VOC_ANCHORS, variant="tf")
    with pytest.raises(ValueError, match="mask"):
        losses.yolov2_loss(out, boxes, classes, mask[:, :1], anchors=VOC_ANCHORS)


# ----------------------------------------------------------------------------------------------- YOLOv1


def v1_random_outputs(rng, bsz, s, nb, c):
    probs = rng.uniform(0, 1, (bsz, s * s * c))
    conf = rng.uniform(0, 1, (bsz, s * s * nb))
    box = np.concatenate([rng.uniform(0, 1, (bsz, s * s * nb, 2)), rng.uniform(0.05, 0.8, (bsz, s * s * nb, 2))],
                         -1).reshape(bsz, -1)
    return np.concatenate([probs, conf, box], -1).astype(np.float32)


@functools.lru_cache(maxsize=None)
def v1_grad_fn(s, nb, c):
    def total(o, boxes, classes, mask):
        return losses.yolov1_loss(o, boxes, classes, mask, grid_size=s, boxes_per_cell=nb, num_classes=c)[0]
    return jax.jit(jax.grad(total))


@pytest.mark.parametrize("s,nb,c,seed", [(7, 2, 20, 0), (7, 3, 20, 1), (5, 2, 4, 2)])
def test_yolov1_grad_equals_darknet_detection_deltas(s, nb, c, seed):
    rng = np.random.default_rng(seed)
    bsz = 3
    boxes, classes, mask = random_gt(rng, bsz, 8, c, n_valid=[7, 4, 0])
    out = v1_random_outputs(rng, bsz, s, nb, c)
    boxes[1, 0] = [0.4, 0.55, 0.43, 0.58]  # small, so predictors far from it in its cell miss it entirely
    truths = truths_from_batch(boxes, mask, classes)
    # Image 1: make the predictors of its first object's cell miss it, so the RMSE rule is used.
    x, y = truths[1][0][:2]
    cell = int(y * s) * s + int(x * s)
    base = s * s * (c + nb) + cell * nb * 4
    for j in range(nb):
        far = [0.0 if x * s % 1 > 0.5 else 0.99, 0.0 if y * s % 1 > 0.5 else 0.99, 0.01 * (j + 1), 0.01]
        out[1, base + 4 * j:base + 4 * j + 4] = far
    delta, stats = darknet_detection_delta(out, darknet_fill_truth_region(truths, s, c), s, nb, c)
    assert stats["by_iou"] > 0 and stats["by_rmse"] > 0
    grad = np.asarray(v1_grad_fn(s, nb, c)(out, boxes, classes, mask))
    np.testing.assert_allclose(grad, -delta / bsz, rtol=2e-4, atol=2e-6)


def test_yolov1_hand_computed_values():
    """S=2, nb=1, C=2, all outputs 0; one object centered (0.3, 0.2), size 0.5 x 0.25, class 1.

    Cell (row 0, col 0); targets x=0.6, y=0.4, sqrt w, sqrt h. The predicted box has zero size -> IoU 0 ->
    rescored objectness target 0 -> obj term 0. coord = 0.5*5*(0.36 + 0.16 + 0.5 + 0.25) = 3.175;
    class = 0.5*1*(0 - 0)^2 + 0.5*(1 - 0)^2 = 0.5; noobj = 0 (all confidences 0).
    """
    out = np.zeros((1, 2 * 2 * (5 + 2)), np.float32)
    boxes = np.array([[[0.05, 0.075, 0.55, 0.325]]], np.float32)
    loss = jax.jit(functools.partial(losses.yolov1_loss, grid_size=2, boxes_per_cell=1, num_classes=2))
    total, parts = loss(out, boxes, np.array([[1]], np.int32), np.array([[True]]))
    np.testing.assert_allclose(parts["coord"], 3.175, rtol=1e-6)
    np.testing.assert_allclose(parts["class"], 0.5, rtol=1e-6)
    assert float(parts["obj"]) == 0.0 and float(parts["noobj"]) == 0.0
    np.testing.assert_allclose(total, 3.675, rtol=1e-6)


def test_yolov1_empty_and_tiny_finite():
    rng = np.random.default_rng(3)
    out = v1_random_outputs(rng, 2, 7, 2, 20)
    out[:, -7 * 7 * 2 * 4:] = 0.0  # sqrt sizes exactly 0: zero-area predictions
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, 0] = [0.5, 0.5, 0.5 + 1e-7, 0.5 + 1e-7]
    boxes[0, 1] = [0.1, 0.1, 0.1, 0.2]  # zero width
    classes, mask = np.zeros((2, 3), np.int32), np.zeros((2, 3), bool)
    mask[0, :2] = True
    val, g = jax.jit(jax.value_and_grad(lambda o: losses.yolov1_loss(o, boxes, classes, mask)[0]))(out)
    assert np.isfinite(val) and np.all(np.isfinite(g))
    # Image 1 is empty: its gradient is noobj only (0.5 * conf, / B), nothing on classes or boxes.
    s2c = 7 * 7 * 20
    np.testing.assert_allclose(g[1, s2c:s2c + 98], 0.5 * out[1, s2c:s2c + 98] / 2, rtol=1e-6)
    assert np.all(g[1, :s2c] == 0) and np.all(g[1, s2c + 98:] == 0)


def test_yolov1_bad_outputs_shape():
    with pytest.raises(ValueError, match="outputs.*1470"):
        losses.yolov1_loss(np.zeros((1, 1000), np.float32), np.zeros((1, 1, 4), np.float32),
                           np.zeros((1, 1), np.int32), np.ones((1, 1), bool))
