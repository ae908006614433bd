"""Confusion matrix and false-positive breakdown (yolojax.evaluation.analysis) against hand-counted cases."""
from __future__ import annotations

import numpy as np
import pytest

from yolojax.evaluation import analysis, voc
from yolojax.evaluation import evaluators as evaluators_lib


def _hand_case() -> voc.VOCEvaluator:
    """Two images, classes a and b, boxes 100x100 px (voc_px, inclusive).

    image 1: true a1 [1,1,100,100], b1 [201,1,300,100], a2 [1,201,100,300], a-difficult [401,1,450,50];
      a 0.95 on a2 and a 0.9 on a1: true positives; a 0.8 on a1 again: the duplicate;
      a 0.7 exactly on b1: the class confusion (b1 is found by no b);
      a 0.6 at [51,201,150,300]: IoU 50*100 / (2*100*100 - 50*100) = 1/3 with a2: the localization error;
      a 0.4 on the difficult box: ignored (neither true nor false positive).
    image 2: true b2 [1,1,100,100], found by nothing: the miss;
      b 0.5 at [301,301,350,350], touching nothing: the background false positive.
    """
    ev = voc.VOCEvaluator(class_names=("a", "b"))
    ev.add("im1", gt_boxes=np.array([[1, 1, 100, 100], [201, 1, 300, 100], [1, 201, 100, 300], [401, 1, 450, 50]],
                                    np.float64),
           gt_classes=np.array([0, 1, 0, 0]), gt_difficult=np.array([False, False, False, True]),
           det_boxes=np.array([[1, 201, 100, 300], [1, 1, 100, 100], [1, 1, 100, 100], [201, 1, 300, 100],
                               [51, 201, 150, 300], [401, 1, 450, 50]], np.float64),
           det_scores=np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4]), det_classes=np.zeros(6, int))
    ev.add("im2", gt_boxes=np.array([[1, 1, 100, 100]], np.float64), gt_classes=np.array([1]),
           gt_difficult=np.array([False]), det_boxes=np.array([[301, 301, 350, 350]], np.float64),
           det_scores=np.array([0.5]), det_classes=np.array([1]))
    return ev


def test_confusion_matrix_and_breakdown_hand_counted():
    ev = _hand_case()
    result = evaluators_lib.compute([ev])
    found = result["analysis"]
    # rows true (a, b, background), columns predicted (a, b, background)
    np.testing.assert_array_equal(found["matrix"], [[2, 0, 0],   # a1, a2 found; the difficult box left out
                                                    [1, 0, 1],   # b1 under the a at 0.7; b2 missed
                                                    [2, 1, 0]])  # FPs: a duplicate + a localization; b background
    # per predicted class: localization, confusion, duplicate, background
    np.testing.assert_array_equal(found["errors"], [[1, 1, 1, 0], [0, 0, 0, 1]])
    # the diagonal is the devkit's recall at the evaluation's score threshold
    for c, name in enumerate(ev.class_names):
        recall, _, npos = result["precision_recall"][name]
        assert found["matrix"][c, c] == round(recall[-1] * npos) and found["matrix"][c].sum() == npos

    js = analysis.to_json(found)
    assert js["confusion_matrix"]["labels"] == ["a", "b", "background"]
    assert js["confusion_matrix"]["counts"] == [[2, 0, 0], [1, 0, 1], [2, 1, 0]]
    assert js["error_breakdown"]["a"] == {"false_positives": 3, "localization": pytest.approx(1 / 3),
                                          "confusion": pytest.approx(1 / 3), "duplicate": pytest.approx(1 / 3),
                                          "background": 0.0,
                                          "counts": {"localization": 1, "confusion": 1, "duplicate": 1,
                                                     "background": 0}}
    assert js["error_breakdown"]["b"]["background"] == 1.0 and js["error_breakdown"]["b"]["false_positives"] == 1
    np.testing.assert_allclose(analysis.normalized(found["matrix"]), [[1, 0, 0], [0.5, 0, 0.5], [2 / 3, 1 / 3, 0]])
    table = voc.format_table(result, extra_columns=analysis.table_columns(found))
    assert table.splitlines()[0].split()[-5:] == ["FP", "loc%", "conf%", "dup%", "bg%"]
    assert table.splitlines()[2].split()[-5:] == ["3", "33", "33", "33", "0"]
    assert table.splitlines()[3].split()[-5:] == ["1", "0", "0", "0", "100"]


def test_confusion_takes_the_highest_scored_false_positive_and_a_box_once():
    """A missed box of b under two false positives of a (0.8, IoU 1; 0.6, IoU 0.81): the 0.8 one is the
    confusion, the 0.6 one a background-row false positive (but a confusion in the breakdown: IoU >= 0.1)."""
    ev = voc.VOCEvaluator(class_names=("a", "b"))
    ev.add("im", gt_boxes=np.array([[1, 1, 100, 100]], np.float64), gt_classes=np.array([1]),
           gt_difficult=np.array([False]),
           det_boxes=np.array([[1, 1, 90, 90], [1, 1, 100, 100]], np.float64),
           det_scores=np.array([0.6, 0.8]), det_classes=np.array([0, 0]))
    with pytest.warns(UserWarning, match="no non-difficult ground truth for class.*'a'"):
        found = evaluators_lib.compute([ev])["analysis"]
    np.testing.assert_array_equal(found["matrix"], [[0, 0, 0], [1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(found["errors"], [[0, 2, 0, 0], [0, 0, 0, 0]])


def test_no_detections_all_missed():
    ev = voc.VOCEvaluator(class_names=("a",))
    ev.add("im", gt_boxes=np.array([[1, 1, 10, 10]], np.float64), gt_classes=np.array([0]),
           gt_difficult=np.array([False]), det_boxes=np.zeros((0, 4)), det_scores=np.zeros(0),
           det_classes=np.zeros(0, int))
    found = evaluators_lib.compute([ev])["analysis"]
    np.testing.assert_array_equal(found["matrix"], [[0, 1], [0, 0]])
    assert analysis.to_json(found)["error_breakdown"]["a"]["background"] is None
