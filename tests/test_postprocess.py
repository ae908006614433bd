"""Tests for yolojax.ops.postprocess: hand-checked decodes and jit-NMS against a plain numpy greedy NMS."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from yolojax.ops import postprocess


def test_decode_yolov2_hand_values():
    # B=1, 2x2 grid, A=2 anchors, C=2 classes; only cell (row 1, col 0), anchor 1 is set.
    anchors = np.array([[1.0, 1.0], [0.5, 1.0]], np.float32)
    out = np.zeros((1, 2, 2, 2, 7), np.float32)
    out[0, 1, 0, 1] = [0.0, 0.0, np.log(2.0), 0.0, 0.0, np.log(3.0), 0.0]
    boxes, scores = postprocess.decode_yolov2(jnp.asarray(out), jnp.asarray(anchors))
    assert boxes.shape == (1, 8, 4) and scores.shape == (1, 8, 2)
    idx = (1 * 2 + 0) * 2 + 1  # (row * S + col) * A + anchor, darknet order
    # cx = (sigmoid(0) + 0) / 2 = 0.25; cy = (0.5 + 1) / 2 = 0.75; w = 0.5 * e^log2 / 2 = 0.5; h = 1 * 1 / 2.
    np.testing.assert_allclose(boxes[0, idx], [0.0, 0.5, 0.5, 1.0], atol=1e-6)
    # objectness sigmoid(0) = 0.5 times softmax(log 3, 0) = (0.75, 0.25).
    np.testing.assert_allclose(scores[0, idx], [0.375, 0.125], atol=1e-6)
    # Cell (0, 1), anchor 0, all-zero outputs: cx = 0.75, cy = 0.25, w = h = 1 * 1 / 2; scores 0.5 * 0.5.
    np.testing.assert_allclose(boxes[0, 2], [0.5, 0.0, 1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(scores[0, 2], [0.25, 0.25], atol=1e-6)


def test_decode_yolov2_non_square_grid_and_bad_shape():
    anchors = np.ones((1, 2), np.float32)
    boxes, _ = postprocess.decode_yolov2(jnp.zeros((1, 2, 4, 1, 6)), anchors)  # S_h=2, S_w=4
    # Last slot = row 1, col 3: cx = 3.5/4, cy = 1.5/2, w = 1/4, h = 1/2.
    np.testing.assert_allclose(boxes[0, -1], [0.75, 0.5, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="A = 1"):
        postprocess.decode_yolov2(jnp.zeros((1, 2, 2, 3, 6)), anchors)


def test_decode_yolov1_hand_values():
    s, nb, c = 2, 2, 3
    out = np.zeros((1, s * s * (5 * nb + c)), np.float32)
    cell, n = 3, 1  # row 1, col 1, second box
    out[0, cell * c:(cell + 1) * c] = [0.1, 0.2, 0.7]  # class probs block
    out[0, s * s * c + cell * nb + n] = 0.8  # confidence block
    start = s * s * (c + nb) + (cell * nb + n) * 4
    out[0, start:start + 4] = [0.5, 0.25, 0.6, 0.4]  # x, y in cell; sqrt w, sqrt h
    boxes, scores = postprocess.decode_yolov1(jnp.asarray(out), grid_size=s, boxes_per_cell=nb, num_classes=c)
    assert boxes.shape == (1, 8, 4) and scores.shape == (1, 8, 3)
    # cx = (0.5 + 1) / 2 = 0.75, cy = (0.25 + 1) / 2 = 0.625, w = 0.36, h = 0.16.
    np.testing.assert_allclose(boxes[0, 7], [0.57, 0.545, 0.93, 0.705], atol=1e-6)
    np.testing.assert_allclose(scores[0, 7], [0.08, 0.16, 0.56], atol=1e-6)
    np.testing.assert_allclose(scores[0, :7], 0.0)
    # Cell 0 box 0 with zeros: center (0, 0), zero size.
    np.testing.assert_allclose(boxes[0, 0], 0.0)
    with pytest.raises(ValueError, match="S=2, B=2, C=3"):
        postprocess.decode_yolov1(jnp.zeros((1, 51)), grid_size=s, boxes_per_cell=nb, num_classes=c)


def _numpy_iou(a, b):
    """IoU of one box a [4] against b [N, 4], float64, xyxy."""
    iw = np.maximum(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0)
    ih = np.maximum(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _numpy_nms(boxes, scores, score_threshold, iou_threshold, max_detections):
    """Plain greedy per-class NMS on one image: boxes [N, 4], scores [N, C] -> list of (score, class, box)."""
    boxes = boxes.astype(np.float64)
    found = []
    for c in range(scores.shape[1]):
        order = np.argsort(-scores[:, c], kind="stable")
        kept = []
        for rank, i in enumerate(order):
            if scores[i, c] <= score_threshold:
                break
            if kept and np.any(_numpy_iou(boxes[i], boxes[kept]) > iou_threshold):
                continue
            kept.append(i)
            found.append((-scores[i, c], c, rank, i))
    found.sort()  # by score descending, then class, then rank: the documented tie order
    return [(-s, c, boxes[i]) for s, c, _, i in found[:max_detections]]


@functools.lru_cache(maxsize=None)
def _jitted_nms(score_threshold, iou_threshold, max_detections, pre_nms_top_k=None):
    return jax.jit(functools.partial(postprocess.batched_nms, score_threshold=score_threshold,
                                     iou_threshold=iou_threshold, max_detections=max_detections,
                                     pre_nms_top_k=pre_nms_top_k))


def _random_case(rng, batch, n, c, quantized=True):
    """Boxes on a 1/16 grid so every IoU is computed exactly in float32 and float64 (so the comparison
    with a dyadic threshold is the same in both); scores quantized to force ties."""
    corners = rng.integers(0, 17, size=(batch, n, 2, 2)) / 16.0
    xy0, xy1 = np.minimum(corners[:, :, 0], corners[:, :, 1]), np.maximum(corners[:, :, 0], corners[:, :, 1])
    boxes = np.concatenate([xy0, xy1], axis=-1).astype(np.float32)
    scores = rng.integers(0, 8, size=(batch, n, c)) / 8.0 if quantized else rng.random((batch, n, c))
    return boxes, scores.astype(np.float32)


def _check_against_numpy(boxes, scores, out, score_threshold, iou_threshold, max_detections):
    for b in range(boxes.shape[0]):
        ref = _numpy_nms(boxes[b], scores[b], score_threshold, iou_threshold, max_detections)
        count = int(out["count"][b])
        assert count == len(ref)
        np.testing.assert_array_equal(out["scores"][b, :count], [r[0] for r in ref])
        np.testing.assert_array_equal(out["classes"][b, :count], [r[1] for r in ref])
        np.testing.assert_array_equal(out["boxes"][b, :count], np.array([r[2] for r in ref]).reshape(-1, 4))
        # Padding.
        np.testing.assert_array_equal(out["classes"][b, count:], -1)
        np.testing.assert_array_equal(out["scores"][b, count:], 0.0)
        np.testing.assert_array_equal(out["boxes"][b, count:], 0.0)


@pytest.mark.parametrize("iou_threshold", [0.5, 0.25])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_nms_matches_numpy_greedy(seed, iou_threshold):
    rng = np.random.default_rng(seed)
    boxes, scores = _random_case(rng, batch=3, n=40, c=4)
    # Duplicate boxes with equal scores: exact ties in both score and IoU (= 1).
    boxes[:, 5] = boxes[:, 3]
    scores[:, 5] = scores[:, 3]
    out = jax.device_get(_jitted_nms(0.2, iou_threshold, 30)(boxes, scores))
    _check_against_numpy(boxes, scores, out, 0.2, iou_threshold, 30)
    assert out["count"].max() == 30  # enough survivors that the top-k cut is exercised


def test_batched_nms_continuous_scores_and_padding():
    rng = np.random.default_rng(7)
    boxes, scores = _random_case(rng, batch=2, n=40, c=4, quantized=False)
    out = jax.device_get(_jitted_nms(0.9, 0.5, 30)(boxes, scores))
    _check_against_numpy(boxes, scores, out, 0.9, 0.5, 30)
    assert (out["count"] < 30).all()  # few above 0.9: padded slots present


def test_batched_nms_all_suppressed_and_empty():
    # Image 0: identical boxes -> one survivor per class. Image 1: every score below threshold -> none.
    boxes = np.tile(np.array([0.1, 0.1, 0.6, 0.7], np.float32), (2, 40, 1))
    scores = np.zeros((2, 40, 4), np.float32)
    scores[0] = np.linspace(0.3, 0.9, 40 * 4, dtype=np.float32).reshape(40, 4)
    out = jax.device_get(_jitted_nms(0.2, 0.5, 30)(boxes, scores))
    _check_against_numpy(boxes, scores, out, 0.2, 0.5, 30)
    assert out["count"].tolist() == [4, 0]
    np.testing.assert_array_equal(out["classes"][0, :4], [3, 2, 1, 0])  # best box of each class, by score


def test_batched_nms_more_slots_than_candidates_and_pre_nms_top_k():
    rng = np.random.default_rng(3)
    boxes, scores = _random_case(rng, batch=2, n=10, c=2)
    out = jax.device_get(_jitted_nms(0.0, 0.5, 30)(boxes, scores))  # 30 slots > C*N = 20 candidates
    assert out["scores"].shape == (2, 30)
    _check_against_numpy(boxes, scores, out, 0.0, 0.5, 30)
    # pre_nms_top_k >= candidates above threshold: identical result.
    out_k = jax.device_get(_jitted_nms(0.0, 0.5, 30, 10)(boxes, scores))
    for key in out:
        np.testing.assert_array_equal(out[key], out_k[key])


def test_decode_then_nms_pipeline_under_jit():
    anchors = jnp.array([[1.0, 1.0], [2.0, 3.0]])

    @jax.jit
    def detect(outputs):
        boxes, scores = postprocess.decode_yolov2(outputs, anchors)
        return postprocess.batched_nms(boxes, scores, score_threshold=0.005, iou_threshold=0.45,
                                       max_detections=16)

    outputs = jax.random.normal(jax.random.key(0), (2, 3, 3, 2, 5 + 3))
    out = detect(outputs)
    assert out["boxes"].shape == (2, 16, 4) and out["classes"].dtype == jnp.int32
    assert (np.diff(np.asarray(out["scores"]), axis=1) <= 0).all()  # sorted descending


def test_decode_yolov2_offset_form_hand_values():
    # 2x2 grid, anchors (1, 1) and (0.5, 2) grid units; cell (row 1, col 0), anchor 1 predicts tx = 0.4,
    # ty = -0.25, tw = log 2, th = 0: center x = (0 + 0.5 + 0.4 * 0.5) / 2 = 0.35, y = (1 + 0.5 - 0.25 * 2) / 2
    # = 0.5, w = 0.5 * 2 / 2 = 0.5, h = 2 * 1 / 2 = 1 -> xyxy (0.1, 0, 0.6, 1). All-zero outputs sit on the
    # anchor at the cell center, as in the direct form.
    anchors = np.array([[1.0, 1.0], [0.5, 2.0]], np.float32)
    out = np.zeros((1, 2, 2, 2, 7), np.float32)
    out[0, 1, 0, 1, :4] = [0.4, -0.25, np.log(2.0), 0.0]
    cxcywh = postprocess.decode_yolov2_cxcywh(jnp.asarray(out), anchors, location="offset")
    np.testing.assert_allclose(cxcywh[0, 1, 0, 1], [0.35, 0.5, 0.5, 1.0], atol=1e-6)
    boxes, scores = postprocess.decode_yolov2(jnp.asarray(out), anchors, location="offset")
    np.testing.assert_allclose(boxes[0, (1 * 2 + 0) * 2 + 1], [0.1, 0.0, 0.6, 1.0], atol=1e-6)
    direct, direct_scores = postprocess.decode_yolov2(jnp.asarray(out), anchors)
    np.testing.assert_allclose(boxes[0, 2], direct[0, 2], atol=1e-7)  # zero outputs: same box in both forms
    np.testing.assert_array_equal(scores, direct_scores)  # scores do not depend on the form
    with pytest.raises(ValueError, match="model.v2.location"):
        postprocess.decode_yolov2(jnp.asarray(out), anchors, location="sigmoid")


def test_decode_then_nms_follows_the_location_form():
    # One confident prediction; its box after NMS is the offset-form box, not the direct-form one.
    anchors = np.array([[2.0, 2.0]], np.float32)
    out = np.full((1, 4, 4, 1, 6), -10.0, np.float32)
    out[..., 5] = 0.0
    out[0, 2, 1, 0, :5] = [0.5, -0.5, 0.0, 0.0, 5.0]  # cx = (1.5 + 1) / 4, cy = (2.5 - 1) / 4, w = h = 0.5

    @jax.jit
    def detect(o):
        return postprocess.batched_nms(*postprocess.decode_yolov2(o, anchors, location="offset"),
                                       score_threshold=0.5, iou_threshold=0.45, max_detections=3)

    dets = detect(jnp.asarray(out))
    assert int(dets["count"][0]) == 1
    np.testing.assert_allclose(dets["boxes"][0, 0], [0.375, 0.125, 0.875, 0.625], atol=1e-6)
