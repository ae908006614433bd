"""k-means anchors with distance 1 - IoU: recovery of planted clusters, reported IoU, units."""
from __future__ import annotations

import numpy as np
import pytest

from yolojax.ops import anchors

VOC_ANCHORS_13 = np.array([[1.3221, 1.73145], [3.19275, 4.00944], [5.05587, 8.09892], [9.47112, 4.84053],
                           [11.2364, 10.0071]])


def direct_mean_best_iou(wh, centers):
    """Independent loop: IoU of two boxes sharing a center = min(w)min(h) / (wh + wh' - min(w)min(h))."""
    total = 0.0
    for w, h in wh:
        best = 0.0
        for cw, ch in centers:
            inter = min(w, cw) * min(h, ch)
            best = max(best, inter / (w * h + cw * ch - inter))
        total += best
    return total / len(wh)


def planted(rng, centers, n_per=200, spread=0.03):
    """Boxes scattered multiplicatively (+-spread) around each center."""
    wh = np.concatenate([c * rng.uniform(1 - spread, 1 + spread, (n_per, 2)) for c in centers])
    return wh[rng.permutation(len(wh))]


def test_recovers_planted_clusters_sorted_by_area():
    rng = np.random.default_rng(0)
    centers = VOC_ANCHORS_13 / 13  # normalized
    wh = planted(rng, centers)
    found, mean_iou = anchors.kmeans_anchors(wh, 5, seed=0)
    order = np.argsort(centers.prod(1))
    np.testing.assert_allclose(found, centers[order], rtol=0.01)
    assert np.all(np.diff(found.prod(1)) > 0)
    assert mean_iou > 0.95


def test_reported_mean_iou_equals_direct_computation():
    rng = np.random.default_rng(1)
    wh = rng.uniform(0.01, 1.0, (300, 2))
    found, mean_iou = anchors.kmeans_anchors(wh, 4, restarts=3, seed=3)
    assert mean_iou == pytest.approx(direct_mean_best_iou(wh, found), abs=1e-12)
    assert anchors.mean_best_iou(wh, found) == pytest.approx(mean_iou, abs=1e-12)


def test_mean_best_iou_hand_value():
    # (1, 1) vs (1, 2): IoU 1/2; (2, 2) vs (1, 2): 2/4 = 1/2, vs (2, 2) itself: 1 -> mean (1/2 + 1) / 2.
    assert anchors.mean_best_iou([[1, 1], [2, 2]], [[1, 2], [2, 2]]) == pytest.approx(0.75)


def test_deterministic_by_seed_and_restarts_never_hurt():
    rng = np.random.default_rng(2)
    wh = rng.uniform(0.01, 1.0, (400, 2))
    a1, i1 = anchors.kmeans_anchors(wh, 5, seed=7)
    a2, i2 = anchors.kmeans_anchors(wh, 5, seed=7)
    np.testing.assert_array_equal(a1, a2)
    assert i1 == i2
    _, i_one = anchors.kmeans_anchors(wh, 5, restarts=1, seed=7)
    assert i1 >= i_one  # the first restart is the same draw; more restarts keep the best


def test_more_anchors_fit_better_and_k_equals_n_is_exact():
    rng = np.random.default_rng(4)
    wh = rng.uniform(0.01, 1.0, (200, 2))
    scores = [anchors.kmeans_anchors(wh, k, seed=0)[1] for k in (1, 3, 9)]
    assert scores[0] < scores[1] < scores[2] <= 1.0
    few = wh[:4]
    assert anchors.kmeans_anchors(few, 4, seed=0)[1] == pytest.approx(1.0)


def test_unit_conversion_exact_and_round_trip():
    norm = anchors.anchors_grid_to_normalized(VOC_ANCHORS_13, 13)
    np.testing.assert_allclose(norm[0], [1.3221 / 13, 1.73145 / 13])
    np.testing.assert_allclose(anchors.anchors_normalized_to_grid(norm, 13), VOC_ANCHORS_13)
    # Same normalized anchor on a 19x19 grid (608 input) is 19/13 times larger in cells.
    np.testing.assert_allclose(anchors.anchors_normalized_to_grid(norm, 19), VOC_ANCHORS_13 * 19 / 13)
    np.testing.assert_allclose(anchors.anchors_normalized_to_grid([[0.5, 0.25]], (10, 20)), [[5.0, 5.0]])


def test_boxes_to_wh_uses_mask_and_drops_degenerate():
    boxes = np.array([[[0, 0, 0.5, 0.25], [0.1, 0.1, 0.1, 0.3], [0, 0, 1, 1]]])
    mask = np.array([[True, True, False]])
    np.testing.assert_allclose(anchors.boxes_to_wh(boxes, mask), [[0.5, 0.25]])
    assert anchors.boxes_to_wh(boxes).shape == (2, 2)


def test_bad_input_errors_name_the_field():
    with pytest.raises(ValueError, match="wh.*row 1"):
        anchors.kmeans_anchors([[0.1, 0.2], [0.0, 0.3], [0.2, 0.2]], 2)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        anchors.kmeans_anchors(np.ones((5, 3)), 2)
    with pytest.raises(ValueError, match="k=6"):
        anchors.kmeans_anchors(np.ones((5, 2)), 6)
    with pytest.raises(ValueError, match="grid_size"):
        anchors.anchors_normalized_to_grid(VOC_ANCHORS_13, 0)
