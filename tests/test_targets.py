"""YOLOv1 / YOLOv2 target encoding: hand-computed cases, darknet collision rules, a loop reference."""
from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pytest

from yolojax.ops import targets

VOC_ANCHORS = np.array([[1.3221, 1.73145], [3.19275, 4.00944], [5.05587, 8.09892], [9.47112, 4.84053],
                        [11.2364, 10.0071]], np.float32)


def gt(rows, m=4):
    """rows of (x0, y0, x1, y1, class) -> padded one-image Batch arrays [1, m, ...]."""
    boxes = np.zeros((1, m, 4), np.float32)
    classes = -np.ones((1, m), np.int32)
    mask = np.zeros((1, m), bool)
    for k, r in enumerate(rows):
        boxes[0, k], classes[0, k], mask[0, k] = r[:4], r[4], True
    return boxes, classes, mask


@functools.lru_cache(maxsize=None)
def v1_fn(s=7, c=20, keep="first"):
    return jax.jit(functools.partial(targets.yolov1_targets, grid_size=s, num_classes=c, keep=keep))


@functools.lru_cache(maxsize=None)
def v2_fn(s=13, keep="last"):
    return jax.jit(functools.partial(targets.yolov2_targets, anchors=VOC_ANCHORS, grid_size=s, keep=keep))


def test_yolov1_hand_computed():
    # center (0.5, 0.3), size 0.2 x 0.1 -> x*7 = 3.5, y*7 = 2.1 -> cell row 2, col 3, offsets (0.5, 0.1).
    t = v1_fn()(*gt([(0.4, 0.25, 0.6, 0.35, 14)]))
    assert t["object"].shape == (1, 7, 7) and float(t["object"].sum()) == 1.0 and float(t["object"][0, 2, 3]) == 1
    np.testing.assert_allclose(t["box"][0, 2, 3], [0.5, 0.1, 0.2, 0.1], atol=1e-6)
    assert int(np.argmax(t["class_onehot"][0, 2, 3])) == 14 and float(t["class_onehot"].sum()) == 1.0


def test_yolov1_collision_first_object_wins_like_darknet():
    rows = [(0.40, 0.25, 0.60, 0.35, 3), (0.41, 0.26, 0.55, 0.34, 7)]  # both centers in cell (2, 3)
    t = v1_fn()(*gt(rows))
    assert float(t["object"].sum()) == 1.0
    assert int(np.argmax(t["class_onehot"][0, 2, 3])) == 3
    t_last = v1_fn(keep="last")(*gt(rows))
    assert int(np.argmax(t_last["class_onehot"][0, 2, 3])) == 7


def test_yolov2_hand_computed_best_anchor():
    # (w, h) = (3.2, 4.0) grid units at S=13 is closest in shape to anchor 1 (3.19275, 4.00944).
    w, h = 3.2 / 13, 4.0 / 13
    t = v2_fn()(*gt([(0.5 - w / 2, 0.5 - h / 2, 0.5 + w / 2, 0.5 + h / 2, 5)]))
    assert t["object"].shape == (1, 13, 13, 5)
    assert float(t["object"].sum()) == 1.0 and float(t["object"][0, 6, 6, 1]) == 1.0
    assert int(t["class"][0, 6, 6, 1]) == 5 and int(t["class"].sum()) == 5 - (13 * 13 * 5 - 1)
    np.testing.assert_allclose(t["txty"][0, 6, 6, 1], [0.5, 0.5], atol=1e-5)
    np.testing.assert_allclose(t["twth"][0, 6, 6, 1], [math.log(3.2 / 3.19275), math.log(4.0 / 4.00944)], atol=1e-5)
    np.testing.assert_allclose(t["box"][0, 6, 6, 1], [0.5, 0.5, w, h], atol=1e-6)


def test_yolov2_collision_last_object_wins_like_darknet():
    rows = [(0.40, 0.40, 0.60, 0.60, 3), (0.41, 0.41, 0.61, 0.61, 9)]  # same cell (6, 6), same shape
    t = v2_fn()(*gt(rows))
    assert float(t["object"].sum()) == 1.0
    slot = tuple(np.argwhere(np.asarray(t["object"][0]) > 0)[0])
    assert int(t["class"][0][slot]) == 9
    np.testing.assert_allclose(t["box"][0][slot][:2], [0.51, 0.51], atol=1e-6)
    assert int(v2_fn(keep="first")(*gt(rows))["class"][0][slot]) == 3


def test_padding_and_degenerate_boxes_are_ignored_and_edges_clamped():
    rows = [(0.2, 0.2, 0.2, 0.4, 1),      # zero width: not an object
            (0.9, 0.9, 1.1, 1.1, 2),      # center exactly (1.0, 1.0): last cell, not past the grid
            (0.0, 0.0, 0.1, 0.1, 4)]
    boxes, classes, mask = gt(rows, m=5)
    boxes[0, 4] = [0.3, 0.3, 0.5, 0.5]    # padding slot with a box but mask False
    t1, t2 = v1_fn()(boxes, classes, mask), v2_fn()(boxes, classes, mask)
    assert float(t1["object"].sum()) == 2.0 and float(t1["object"][0, 6, 6]) == 1.0
    np.testing.assert_allclose(t1["box"][0, 6, 6, :2], [1.0, 1.0], atol=1e-5)  # offset 1.0 in the last cell
    assert float(t2["object"].sum()) == 2.0 and float(t2["object"][0, 12, 12].sum()) == 1.0
    assert float(t2["object"][0, 0, 0].sum()) == 1.0


def reference_yolov2(boxes, classes, mask, anchors, s):
    """Darknet's region-layer assignment as a loop (truths in order, later ones overwrite)."""
    bsz = boxes.shape[0]
    a = len(anchors)
    obj = np.zeros((bsz, s, s, a))
    cls = -np.ones((bsz, s, s, a), np.int64)
    txtytwth = np.zeros((bsz, s, s, a, 4))
    for b in range(bsz):
        for m in range(boxes.shape[1]):
            x0, y0, x1, y1 = boxes[b, m].astype(np.float64)
            if not mask[b, m] or x1 <= x0 or y1 <= y0:
                continue
            x, y, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
            i, j = min(int(x * s), s - 1), min(int(y * s), s - 1)
            best, best_n = 0.0, 0
            for n in range(a):
                aw, ah = anchors[n] / s
                inter = min(aw, w) * min(ah, h)
                iou = inter / (aw * ah + w * h - inter)
                if iou > best:
                    best, best_n = iou, n
            obj[b, j, i, best_n] = 1
            cls[b, j, i, best_n] = classes[b, m]
            txtytwth[b, j, i, best_n] = (x * s - i, y * s - j, math.log(w * s / anchors[best_n, 0]),
                                         math.log(h * s / anchors[best_n, 1]))
    return obj, cls, txtytwth


@pytest.mark.parametrize("s", [10, 13, 19])
def test_yolov2_matches_loop_reference_any_grid(s):
    rng = np.random.default_rng(s)
    bsz, m = 4, 24  # many objects per image -> collisions happen
    wh = rng.uniform(0.02, 0.7, (bsz, m, 2))
    c = rng.uniform(wh / 2, 1 - wh / 2)
    boxes = np.concatenate([c - wh / 2, c + wh / 2], -1).astype(np.float32)
    classes = rng.integers(0, 20, (bsz, m)).astype(np.int32)
    mask = rng.uniform(size=(bsz, m)) < 0.8
    obj, cls, tt = reference_yolov2(boxes, classes, mask, VOC_ANCHORS.astype(np.float64), s)
    t = v2_fn(s)(boxes, classes, mask)
    assert int(obj.sum()) < int(mask.sum())  # some collisions were resolved
    np.testing.assert_array_equal(t["object"], obj)
    np.testing.assert_array_equal(t["class"], cls)
    np.testing.assert_allclose(np.concatenate([t["txty"], t["twth"]], -1), tt, atol=2e-5)
    assert np.all((np.asarray(t["txty"]) >= 0) & (np.asarray(t["txty"]) <= 1))


def test_batched_equals_per_image():
    rng = np.random.default_rng(0)
    wh = rng.uniform(0.05, 0.5, (3, 6, 2))
    c = rng.uniform(wh / 2, 1 - wh / 2)
    boxes = np.concatenate([c - wh / 2, c + wh / 2], -1).astype(np.float32)
    classes = rng.integers(0, 20, (3, 6)).astype(np.int32)
    mask = np.ones((3, 6), bool)
    batched = v2_fn()(boxes, classes, mask)
    for b in range(3):
        single = v2_fn()(boxes[b:b + 1], classes[b:b + 1], mask[b:b + 1])
        for k in batched:
            np.testing.assert_array_equal(batched[k][b], single[k][0])


def test_bad_inputs_name_the_field():
    boxes, classes, mask = gt([(0.1, 0.1, 0.2, 0.2, 0)])
    with pytest.raises(ValueError, match="boxes"):
        targets.yolov1_targets(boxes[..., :3], classes, mask)
    with pytest.raises(ValueError, match="classes"):
        targets.yolov1_targets(boxes, classes[:, :2], mask)
    with pytest.raises(ValueError, match="anchors"):
        targets.yolov2_targets(boxes, classes, mask, anchors=VOC_ANCHORS.reshape(-1))
    with pytest.raises(ValueError, match="keep"):
        targets.yolov2_targets(boxes, classes, mask, anchors=VOC_ANCHORS, keep="middle")


# ------------------------------------------------------------------------- location parameterization


def test_yolov2_offset_targets_hand_computed():
    # Same box as test_yolov2_hand_computed_best_anchor but off-center: center (0.55, 0.45) at S=13 is
    # (7.15, 5.85) grid units -> cell (row 5, col 7); anchor 1 (3.19275, 4.00944). Offset form: tx* =
    # (7.15 - 7 - 0.5) / 3.19275, ty* = (5.85 - 5 - 0.5) / 4.00944; direct form: the in-cell offset (0.15, 0.85).
    w, h = 3.2 / 13, 4.0 / 13
    rows = [(0.55 - w / 2, 0.45 - h / 2, 0.55 + w / 2, 0.45 + h / 2, 5)]
    off = jax.jit(functools.partial(targets.yolov2_targets, anchors=VOC_ANCHORS, location="offset"))(*gt(rows))
    direct = v2_fn()(*gt(rows))
    assert float(off["object"][0, 5, 7, 1]) == 1.0 and float(off["object"].sum()) == 1.0
    np.testing.assert_allclose(off["txty"][0, 5, 7, 1], [-0.35 / 3.19275, 0.35 / 4.00944], atol=1e-5)
    np.testing.assert_allclose(direct["txty"][0, 5, 7, 1], [0.15, 0.85], atol=1e-5)
    for key in ("object", "class", "box", "twth"):  # only the center target depends on the form
        np.testing.assert_array_equal(off[key], direct[key])
    with pytest.raises(ValueError, match="model.v2.location"):
        targets.yolov2_targets(*gt(rows), anchors=VOC_ANCHORS, location="anchor")


@pytest.mark.parametrize("location", targets.LOCATIONS)
@pytest.mark.parametrize("s", [7, 13])
def test_yolov2_targets_decode_back_to_the_truth_box(location, s):
    """Targets -> outputs that predict them exactly -> the one decoder -> the truth box (both forms)."""
    from yolojax.ops import postprocess

    rng = np.random.default_rng(s)
    m = 6
    wh = rng.uniform(0.05, 0.7, (m, 2))
    c = rng.uniform(wh / 2, 1 - wh / 2)
    boxes = np.concatenate([c - wh / 2, c + wh / 2], -1)[None].astype(np.float32)
    classes, mask = np.arange(m, dtype=np.int32)[None], np.ones((1, m), bool)
    t = targets.yolov2_targets(boxes, classes, mask, anchors=VOC_ANCHORS, grid_size=s, location=location)
    xy = np.asarray(t["txty"], np.float64)
    if location == "direct":  # the network output whose sigmoid is the target (assigned ones are in (0, 1))
        xy = np.clip(xy, 1e-6, 1 - 1e-6)
        xy = np.log(xy / (1 - xy))
    outputs = np.zeros((1, s, s, 5, 6), np.float32)
    outputs[..., 0:2], outputs[..., 2:4] = xy, t["twth"]
    decoded = np.asarray(postprocess.decode_yolov2_cxcywh(outputs, VOC_ANCHORS, location=location))
    assigned = np.asarray(t["object"]) > 0
    assert assigned.sum() >= m - 1  # at most one random collision
    np.testing.assert_allclose(decoded[assigned], np.asarray(t["box"])[assigned], atol=2e-5)
    # and the assigned boxes are the truth boxes themselves (normalized cxcywh)
    truth = np.concatenate([c, wh], -1)
    for got in decoded[assigned]:
        assert np.min(np.abs(truth - got).max(axis=1)) < 2e-5
