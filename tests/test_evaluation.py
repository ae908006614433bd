"""Tests for yolojax.evaluation.voc against hand-computed APs and a literal transcription of the VOC devkit."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT
from yolojax.config.classes import VOC_CLASSES
from yolojax.evaluation import voc

CLASSES = ("cat", "dog", "person")


# ---------------------------------------------------------------------------------------------------------
# Independent reference: the devkit's VOCevaldet.m / VOCap.m loops transcribed one statement at a time.


def _matlab_colon(a, d, b):
    """MATLAB's a:d:b for an exact number of steps: first half a + k*d, second half b - (n-k)*d."""
    n = round((b - a) / d)
    return [a + k * d if k < n / 2 else (a + b) / 2 if k == n / 2 else b - (n - k) * d for k in range(n + 1)]


def _devkit_ap(gt, dets, cls, minoverlap, use_07):
    """gt: {image_id: [(box, cls, difficult), ...]}; dets: [(image_id, score, box, cls)] in file order."""
    gt_bb, gt_diff, gt_det, npos = {}, {}, {}, 0
    for image_id, objects in gt.items():
        objs = [o for o in objects if o[1] == cls]
        gt_bb[image_id] = [o[0] for o in objs]
        gt_diff[image_id] = [o[2] for o in objs]
        gt_det[image_id] = [False] * len(objs)
        npos += sum(not o[2] for o in objs)
    mine = [d for d in dets if d[3] == cls]
    order = sorted(range(len(mine)), key=lambda i: -mine[i][1])  # Python's sort is stable, like MATLAB's
    tp, fp = [0] * len(mine), [0] * len(mine)
    for d, k in enumerate(order):
        image_id, _, bb, _ = mine[k]
        ovmax, jmax = -math.inf, None
        for j, bbgt in enumerate(gt_bb[image_id]):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw = bi[2] - bi[0] + 1
            ih = bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                      - iw * ih)
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= minoverlap:
            if not gt_diff[image_id][jmax]:
                if not gt_det[image_id][jmax]:
                    tp[d] = 1
                    gt_det[image_id][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    tp, fp = np.cumsum(tp).astype(float), np.cumsum(fp).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = tp / npos
        prec = tp / (fp + tp)  # NaN where 0/0, as in MATLAB
    if use_07:
        ap = 0.0
        for t in _matlab_colon(0.0, 0.1, 1.0):
            sel = prec[rec >= t]
            p = 0.0 if sel.size == 0 else np.nanmax(sel)  # MATLAB max ignores NaN
            ap = ap + p / 11
        return ap
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = np.fmax(mpre[i], mpre[i + 1])  # MATLAB max(NaN, x) = x
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _random_case(seed, num_images=40, identical_gt=True):
    """Random VOC-like case: integer pixel boxes, difficult objects, duplicate and identical ground truths,
    duplicate / jittered / wrong-class / background detections, and tied scores."""
    rng = np.random.default_rng(seed)
    gt, dets = {}, []
    for i in range(num_images):
        image_id = f"{i:06d}"
        objects = []
        for _ in range(rng.integers(0, 6)):
            x0, y0 = rng.integers(1, 300, size=2)
            box = [float(x0), float(y0), float(x0 + rng.integers(0, 120)), float(y0 + rng.integers(0, 120))]
            objects.append((box, int(rng.integers(0, 3)), bool(rng.random() < 0.2)))
        if identical_gt and objects and rng.random() < 0.2:  # an identical second ground truth: IoU tie, first one wins
            objects.append((list(objects[0][0]), objects[0][1], bool(rng.random() < 0.5)))
        gt[image_id] = objects

        def score():  # coarse scores create many exact ties
            return float(rng.integers(0, 20) / 20) if rng.random() < 0.5 else float(rng.random())

        for box, c, _ in objects:
            for _ in range(rng.integers(0, 3)):  # 0-2 detections per object: misses and duplicates
                jitter = rng.integers(-15, 16, size=4).astype(float)
                dets.append((image_id, score(), [b + j for b, j in zip(box, jitter)], c))
            if rng.random() < 0.3:  # right box, wrong class
                dets.append((image_id, score(), list(box), int((c + 1) % 3)))
        for _ in range(rng.integers(0, 4)):  # background false positives
            x0, y0 = rng.integers(1, 300, size=2)
            box = [float(x0), float(y0), float(x0 + rng.integers(0, 100)), float(y0 + rng.integers(0, 100))]
            dets.append((image_id, score(), box, int(rng.integers(0, 3))))
    return gt, dets


def _evaluator_from_case(gt, dets, iou_threshold):
    ev = voc.VOCEvaluator(CLASSES, iou_threshold=iou_threshold)
    for image_id, objects in gt.items():
        mine = [d for d in dets if d[0] == image_id]
        ev.add(image_id,
               det_boxes=np.array([d[2] for d in mine]).reshape(-1, 4), det_scores=[d[1] for d in mine],
               det_classes=[d[3] for d in mine],
               gt_boxes=np.array([o[0] for o in objects]).reshape(-1, 4), gt_classes=[o[1] for o in objects],
               gt_difficult=[o[2] for o in objects])
    return ev


@pytest.mark.parametrize("iou_threshold", [0.5, 0.7])
@pytest.mark.parametrize("seed", range(6))
def test_matches_devkit_transcription(seed, iou_threshold, tmp_path):
    gt, dets = _random_case(seed)
    ev = _evaluator_from_case(gt, dets, iou_threshold)
    result = ev.compute()
    for c in range(len(CLASSES)):
        assert abs(result["ap_07"][c] - _devkit_ap(gt, dets, c, iou_threshold, True)) < 1e-9
        assert abs(result["ap_area"][c] - _devkit_ap(gt, dets, c, iou_threshold, False)) < 1e-9
    assert 0.01 < result["map_07"] < 0.95  # a non-trivial case
    # Through devkit result files: same numbers (file order keeps the insertion order of tied scores).
    ev.write_results(tmp_path, prefix="comp4", image_set="test")
    ev_files = _evaluator_from_case(gt, [], iou_threshold)
    ev_files.add_result_files(tmp_path, prefix="comp4", image_set="test")
    from_files = ev_files.compute()
    np.testing.assert_array_equal(from_files["ap_07"], result["ap_07"])
    np.testing.assert_array_equal(from_files["ap_area"], result["ap_area"])


def _hand_case():
    """One class. Image a: g1, g2 (difficult). Image b: g3, g4. Detections, best first: d1 on g1 (TP), d2 on
    g1 again (FP, duplicate), d3 on g2 (difficult: ignored), d4 on g3 (TP), d5 on nothing (FP)."""
    ev = voc.VOCEvaluator(("cat",))
    g = np.array([[1, 1, 50, 50], [100, 100, 150, 150]], float)
    ev.add("a", det_boxes=np.array([g[0], g[0] + 1, g[1]]), det_scores=[0.9, 0.8, 0.7], det_classes=[0, 0, 0],
           gt_boxes=g, gt_classes=[0, 0], gt_difficult=[False, True])
    h = np.array([[10, 10, 60, 60], [200, 200, 260, 260]], float)
    ev.add("b", det_boxes=np.array([h[0], [300, 300, 320, 320]]), det_scores=[0.6, 0.5], det_classes=[0, 0],
           gt_boxes=h, gt_classes=[0, 0], gt_difficult=[False, False])
    return ev


def test_hand_computed_ap():
    # npos = 3; recall = 1/3, 1/3, 1/3, 2/3, 2/3; precision = 1, 1/2, 1/2, 2/3, 1/2.
    result = _hand_case().compute()
    # 11-point: t in {0, .1, .2, .3} -> 1; t in {.4, .5, .6} -> 2/3; t >= .7 -> 0.
    assert result["ap_07"][0] == pytest.approx(6 / 11, abs=1e-15)
    # Area: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 0 after: 1/3 + 2/9.
    assert result["ap_area"][0] == pytest.approx(5 / 9, abs=1e-15)
    assert result["num_positives"].tolist() == [3] and result["num_detections"].tolist() == [5]


def test_one_based_inclusive_iou_and_threshold_inclusive():
    # Devkit IoU of [1,1,10,10] and [1,1,10,20] is 10*10 / (10*20) = 0.5 exactly (+1 widths): a TP at 0.5.
    # Without the +1 it would be 81/171 < 0.5.
    ev = voc.VOCEvaluator(("cat",), iou_threshold=0.5)
    ev.add("a", det_boxes=[[1, 1, 10, 10]], det_scores=[1.0], det_classes=[0],
           gt_boxes=[[1, 1, 10, 20]], gt_classes=[0], gt_difficult=[False])
    assert ev.compute()["ap_area"][0] == 1.0


def test_voc07_recall_thresholds_as_matlab():
    # npos = 5 and three TPs: recall reaches exactly 0.6, which MATLAB's 0:0.1:1 counts (0.6 is the nearest
    # double); np.arange(0, 1.1, 0.1) has 0.6000000000000001 and would give 6/11.
    ev = voc.VOCEvaluator(("cat",))
    boxes = np.array([[1, 1, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70], [80, 80, 90, 90]])
    ev.add("a", det_boxes=boxes[:3], det_scores=[0.9, 0.8, 0.7], det_classes=[0, 0, 0],
           gt_boxes=boxes, gt_classes=[0] * 5, gt_difficult=[False] * 5)
    assert ev.compute()["ap_07"][0] == pytest.approx(7 / 11, abs=1e-15)
    assert voc.VOC07_RECALL_THRESHOLDS == tuple(_matlab_colon(0.0, 0.1, 1.0))


def test_ground_truth_as_detections_gives_map_one():
    # (Without identical ground-truth pairs: the devkit sends both copies to the first one, so one is an FP.)
    gt, _ = _random_case(11, num_images=60, identical_gt=False)
    # Submit every ground truth (difficult ones too: they count as neither) as a detection with score 1.
    dets = [(i, 1.0, box, c) for i, objs in gt.items() for box, c, _ in objs]
    result = _evaluator_from_case(gt, dets, 0.5).compute()
    # 1/11 added eleven times is 1 + 2e-16 in the devkit's accumulation order too.
    assert result["map_07"] == pytest.approx(1.0, abs=1e-15) and result["map_area"] == 1.0
    np.testing.assert_allclose(result["ap_07"], 1.0, atol=1e-15)


def test_class_without_ground_truth_is_null_and_left_out(tmp_path):
    ev = voc.VOCEvaluator(("cat", "dog"))
    ev.add("a", det_boxes=[[1, 1, 10, 10], [1, 1, 10, 10]], det_scores=[0.9, 0.8], det_classes=[0, 1],
           gt_boxes=[[1, 1, 10, 10], [5, 5, 9, 9]], gt_classes=[0, 1], gt_difficult=[False, True])
    with pytest.warns(UserWarning, match="no non-difficult ground truth for class\\(es\\) 'dog': AP undefined"):
        result = ev.compute()
    assert np.isnan(result["ap_07"][1]) and result["map_area"] == 1.0
    assert result["map_07"] == pytest.approx(1.0, abs=1e-15)
    as_json = json.loads(json.dumps(voc.result_to_json(result)))
    assert as_json["ap_area"] == {"cat": 1.0, "dog": None} and as_json["map_area"] == 1.0
    table = voc.format_table(result)
    assert "n/a" in table and "100.00" in table


def test_padding_rows_skipped_and_bad_inputs():
    ev = voc.VOCEvaluator(("cat",))
    ev.add("a", det_boxes=[[1, 1, 10, 10], [0, 0, 0, 0]], det_scores=[0.9, 0.0], det_classes=[0, -1],
           gt_boxes=[[1, 1, 10, 10], [0, 0, 0, 0]], gt_classes=[0, -1], gt_difficult=[False, False])
    result = ev.compute()
    assert result["num_detections"].tolist() == [1] and result["num_positives"].tolist() == [1]
    with pytest.raises(ValueError, match="already added"):
        ev.add_ground_truth("a", boxes=np.zeros((0, 4)), classes=[], difficult=[])
    with pytest.raises(ValueError, match="'zzz', which has no ground truth"):
        ev.add_detections("zzz", boxes=[[1, 1, 2, 2]], scores=[1.0], classes=[0])
    with pytest.raises(ValueError, match="class index 1 out of range"):
        ev.add_ground_truth("b", boxes=[[1, 1, 2, 2]], classes=[1], difficult=[False])
    with pytest.raises(ValueError, match=r"det_scores of image 'c': expected shape \[1\]"):
        ev.add("c", det_boxes=[[1, 1, 2, 2]], det_scores=[1.0, 2.0], det_classes=[0],
               gt_boxes=np.zeros((0, 4)), gt_classes=[], gt_difficult=[])


def _write(path, text):
    path.write_text(text)
    return path


def test_result_file_errors_name_file_and_line(tmp_path):
    names = ("cat", "dog")
    _write(tmp_path / "comp4_det_test_cat.txt", "000001 0.5 1 1 10 10\n\n000002 0.4 1 1 10 10\n")
    bad = _write(tmp_path / "comp4_det_test_dog.txt", "000001 0.5 1 1 10 10\n000002 0.4 1 1 10\n")
    with pytest.raises(ValueError, match=rf"{bad}:2: expected 6 fields"):
        voc.read_results(tmp_path, class_names=names)
    _write(bad, "000001 0.5 1 1 10 10\n000002 high 1 1 10 10\n")
    with pytest.raises(ValueError, match=rf"{bad}:2: score and box must be numbers"):
        voc.read_results(tmp_path, class_names=names)
    _write(bad, "000001 0.5 1 1 10 10\n000001 0.5 1 1 10 10\n000003 0.4 1 1 10 10\n")
    with pytest.raises(ValueError, match=rf"{bad}:3: image id '000003' is not in the image set"):
        voc.read_results(tmp_path, class_names=names, image_ids=["000001", "000002"])
    # The same check through the evaluator, whose image set is the registered ground truth.
    ev = voc.VOCEvaluator(names)
    for i in ("000001", "000002"):
        ev.add_ground_truth(i, boxes=[[1, 1, 10, 10]], classes=[0], difficult=[False])
    with pytest.raises(ValueError, match=rf"{bad}:3: image id '000003'"):
        ev.add_result_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="comp3_det_test_cat.txt"):
        voc.read_results(tmp_path, prefix="comp3", class_names=names)
    _write(bad, "000001 0.5 1 1 10 10\n")
    results = voc.read_results(tmp_path, class_names=names, image_ids={"000001", "000002"})
    assert results["cat"]["image_ids"] == ["000001", "000002"]  # blank line skipped
    np.testing.assert_array_equal(results["cat"]["scores"], [0.5, 0.4])
    np.testing.assert_array_equal(results["dog"]["boxes"], [[1, 1, 10, 10]])


def test_write_results_format_and_round_trip(tmp_path):
    boxes = np.array([[1.5, 2.0, 30.25, 40.0], [5.0, 6.0, 7.0, 8.0]])
    paths = voc.write_results(tmp_path, image_ids=["000005", "000007"], boxes=boxes,
                              scores=[0.1 + 0.2, 0.25], classes=[2, 2], prefix="comp4", image_set="val")
    assert len(paths) == len(VOC_CLASSES)
    text = (tmp_path / "comp4_det_val_bird.txt").read_text()
    assert text == "000005 0.30000000000000004 1.5 2.0 30.25 40.0\n000007 0.25 5.0 6.0 7.0 8.0\n"
    assert (tmp_path / "comp4_det_val_cat.txt").read_text() == ""
    back = voc.read_results(tmp_path, image_set="val")["bird"]
    np.testing.assert_array_equal(back["boxes"], boxes)
    np.testing.assert_array_equal(back["scores"], [0.1 + 0.2, 0.25])


def test_normalized_to_devkit_px():
    # x * w + 1, clipped to [1, w] (darknet print_detector_detections).
    out = voc.normalized_to_devkit_px(np.array([[-0.1, 0.25, 0.5, 1.2]]), width=200, height=100)
    np.testing.assert_allclose(out, [[1.0, 26.0, 101.0, 100.0]])
    out = voc.normalized_to_devkit_px(np.zeros((2, 3, 4)) + 0.5, width=np.array([10, 20])[:, None],
                                      height=np.array([4, 8])[:, None])
    np.testing.assert_allclose(out[1, 0], [11.0, 5.0, 11.0, 5.0])


def _tiny_devkit(root):
    """Two images; 'cat' ground truth in both, 'dog' only difficult, other classes absent."""
    year_dir = root / "VOCdevkit" / "VOC2007"
    (year_dir / "ImageSets" / "Main").mkdir(parents=True)
    (year_dir / "Annotations").mkdir()
    (year_dir / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n")
    obj = ("<object><name>{}</name><difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>"
           "<xmax>{}</xmax><ymax>{}</ymax></bndbox></object>")
    size = "<size><width>100</width><height>100</height></size>"
    (year_dir / "Annotations" / "000001.xml").write_text(
        f"<annotation>{size}{obj.format('cat', 0, 1, 1, 50, 50)}{obj.format('dog', 1, 60, 60, 90, 90)}"
        "</annotation>")
    (year_dir / "Annotations" / "000002.xml").write_text(
        f"<annotation>{size}{obj.format('cat', 0, 10, 10, 40, 40)}</annotation>")
    # cat: TP on image 1, FP, TP on image 2 -> recall 1/2, 1/2, 1; precision 1, 1/2, 2/3.
    voc.write_results(root / "results", image_ids=["000001", "000002", "000002"],
                      boxes=[[1, 1, 50, 50], [60, 60, 99, 99], [10, 10, 40, 40]], scores=[0.9, 0.8, 0.7],
                      classes=[7, 7, 7], prefix="comp4", image_set="test")


def _run_evaluate(*args):
    import os
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                          "evaluate.py")
    return subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True)


def test_evaluate_script_results_mode(tmp_path):
    _tiny_devkit(tmp_path)
    proc = _run_evaluate("--results_dir", tmp_path / "results", "--voc_root", tmp_path, "--year", "2007",
                         "--image_set", "test", "--json", tmp_path / "out.json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    # 11-point: t <= 0.5 -> 1, t in (0.5, 1] -> 2/3: (6 + 5 * 2/3) / 11. Area: 1/2 * 1 + 1/2 * 2/3.
    assert out["ap_07"]["cat"] == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)
    assert out["ap_area"]["cat"] == pytest.approx(5 / 6, abs=1e-12)
    assert out["ap_07"]["dog"] is None and out["ap_area"]["bus"] is None  # no non-difficult ground truth
    assert out["map_07"] == out["ap_07"]["cat"] and out["map_area"] == out["ap_area"]["cat"]
    assert "cat" in proc.stdout and "83.33" in proc.stdout and "mAP" in proc.stdout
    assert "no non-difficult ground truth for class(es) 'aeroplane', 'bicycle'" in proc.stderr
    assert "'cat'" not in proc.stderr


def test_evaluate_results_mode_loads_no_model_code(tmp_path):
    """Results-file mode starts without JAX, grain, TensorFlow or OpenCV (model mode's modules load on first use)."""
    _tiny_devkit(tmp_path)
    script = os.path.join(ROOT, "experiments", "evaluate.py")
    argv = [script, "--results_dir", str(tmp_path / "results"), "--voc_root", str(tmp_path)]
    code = ("import runpy, sys\n"
            f"sys.argv = {argv!r}\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('jax', 'flax', 'grain', 'tensorflow', 'cv2', 'orbax') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "mAP" in proc.stdout and proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def test_evaluate_script_reports_bad_result_line(tmp_path):
    _tiny_devkit(tmp_path)
    bad = tmp_path / "results" / "comp4_det_test_cow.txt"
    bad.write_text("000001 0.5 1 1 10 10\n000009 0.5 1 1 10 10\n")
    proc = _run_evaluate("--results_dir", tmp_path / "results", "--voc_root", tmp_path)
    assert proc.returncode != 0
    assert f"{bad}:2: image id '000009' is not in the image set" in proc.stderr
