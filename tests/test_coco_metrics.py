"""yolojax.evaluation.coco against pycocotools' COCOeval (bbox) on randomized detections, to 1e-6."""
import contextlib
import io

import numpy as np
import pytest

from yolojax.evaluation import coco as coco_metrics

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

NAMES = ("cat", "dog", "traffic cone")


def _random_case(seed, num_images=25, crowded_image=3):
    """Ground truth (VOC 1-based px xyxy) of all three sizes with crowd boxes, and detections: jittered copies,
    duplicates, random boxes, and > 100 detections of one class in ``crowded_image``."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num_images):
        w, h = int(rng.integers(200, 500)), int(rng.integers(200, 500))
        n = int(rng.integers(0, 8))
        side = np.exp(rng.uniform(np.log(8), np.log(180), n))  # areas from ~64 to ~32,000 px
        aspect = np.exp(rng.uniform(-0.7, 0.7, n))
        bw, bh = np.minimum(side * aspect, w - 2), np.minimum(side / aspect, h - 2)
        x0, y0 = rng.uniform(1, w - bw), rng.uniform(1, h - bh)
        gt = np.stack([x0, y0, x0 + bw, y0 + bh], 1)
        cls = rng.integers(0, len(NAMES), n)
        crowd = rng.uniform(size=n) < 0.15
        dets, scores, dcls = [], [], []
        for b, c in zip(gt, cls):
            for _ in range(int(rng.integers(0, 3))):  # 0 (missed), 1 or 2 (a duplicate) detections
                jitter = rng.normal(0, 0.08, 4) * np.array([b[2] - b[0], b[3] - b[1]] * 2)
                d = b + jitter
                d[2:] = np.maximum(d[2:], d[:2] + 1)
                dets.append(d)
                dcls.append(c if rng.uniform() < 0.9 else rng.integers(len(NAMES)))
                scores.append(rng.uniform(0.3, 1))
        n_extra = 130 if i == crowded_image else int(rng.integers(0, 6))
        for _ in range(n_extra):  # false positives (and chance hits), some in the crowded image's class 0
            s = np.exp(rng.uniform(np.log(6), np.log(200)))
            x, y = rng.uniform(1, w - s / 2), rng.uniform(1, h - s / 2)
            dets.append(np.array([x, y, x + s, y + s * np.exp(rng.uniform(-0.5, 0.5))]))
            dcls.append(0 if i == crowded_image else rng.integers(len(NAMES)))
            scores.append(np.round(rng.uniform(0, 1), 2))  # rounded: ties in score
        images.append(dict(width=w, height=h, gt=gt, cls=cls, crowd=crowd, det=np.array(dets).reshape(-1, 4),
                           score=np.array(scores), dcls=np.array(dcls, np.int64)))
    return images


def _pycocotools_stats(images):
    """pycocotools' 12 numbers and precision array; GT area = w * h of the continuous box (our convention)."""
    gt_anns, dets = [], []
    for i, im in enumerate(images):
        for b, c, crowd in zip(coco_metrics.voc_px_to_coco_xywh(im["gt"]), im["cls"], im["crowd"]):
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": i + 1, "category_id": int(c) * 2 + 1,
                            "bbox": b.tolist(), "area": float(b[2] * b[3]), "iscrowd": int(crowd)})
        for b, s, c in zip(coco_metrics.voc_px_to_coco_xywh(im["det"]), im["score"], im["dcls"]):
            dets.append({"image_id": i + 1, "category_id": int(c) * 2 + 1, "bbox": b.tolist(), "score": float(s)})
    coco = COCO()
    coco.dataset = {"images": [{"id": i + 1, "width": im["width"], "height": im["height"]}
                               for i, im in enumerate(images)],
                    "annotations": gt_anns,
                    "categories": [{"id": 2 * k + 1, "name": n} for k, n in enumerate(NAMES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats, ev.eval["precision"], ev.eval["recall"]


def _ours(images):
    ev = coco_metrics.COCOEvaluator(NAMES)
    for i, im in enumerate(images):
        ev.add_ground_truth(f"img{i}", boxes=im["gt"], classes=im["cls"], difficult=im["crowd"])
        # Two chunks plus padding rows (class -1): the accumulator must not care how detections arrive.
        half = len(im["det"]) // 2
        ev.add_detections(f"img{i}", boxes=im["det"][:half], scores=im["score"][:half], classes=im["dcls"][:half])
        ev.add_detections(f"img{i}", boxes=np.vstack([im["det"][half:], np.zeros((2, 4))]),
                          scores=np.r_[im["score"][half:], 0.9, 0.9], classes=np.r_[im["dcls"][half:], -1, -1])
    return ev.compute()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pycocotools(seed):
    images = _random_case(seed)
    stats, precision, recall = _pycocotools_stats(images)
    res = _ours(images)
    ours = np.array([res[k] for k in coco_metrics.COCO_SUMMARY_KEYS])
    np.testing.assert_allclose(np.nan_to_num(ours, nan=-1.0), stats, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res["precision"], precision, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res["recall"], recall, rtol=0, atol=1e-6)
    # The case exercises what it claims to: crowd boxes, all three sizes, > 100 detections of one class.
    areas = np.concatenate([np.prod(coco_metrics.voc_px_to_coco_xywh(im["gt"])[:, 2:], 1) for im in images])
    assert (areas < 32 ** 2).any() and ((areas > 32 ** 2) & (areas < 96 ** 2)).any() and (areas > 96 ** 2).any()
    assert any(im["crowd"].any() for im in images)
    assert (images[3]["dcls"] == 0).sum() > 100
    assert 0.05 < res["AP"] < 0.95 and res["AP50"] > res["AP75"]  # not a degenerate case


def _clustered_case(seed, num_images=30):
    """Clusters of overlapping ground truths of one class (some duplicated exactly: IoU ties; some crowd) with
    many detections around each, so detections compete for ground truth and often overlap several."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(num_images):
        w, h = 400, 400
        gt, cls, crowd, dets, scores, dcls = [], [], [], [], [], []
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(len(NAMES)))
            cx, cy = rng.uniform(60, 340, 2)
            for _ in range(int(rng.integers(1, 7))):
                side = np.exp(rng.uniform(np.log(10), np.log(150)))
                x0, y0 = cx + rng.normal(0, side / 4, 2) - side / 2
                box = np.clip([x0, y0, x0 + side, y0 + side * np.exp(rng.uniform(-0.3, 0.3))], 1, 400)
                for _ in range(2 if rng.uniform() < 0.2 else 1):  # an exact duplicate now and then
                    gt.append(box)
                    cls.append(c)
                    crowd.append(rng.uniform() < 0.1)
            for _ in range(int(rng.integers(0, 15))):
                g = gt[int(rng.integers(len(gt) - 1, len(gt)))] if rng.uniform() < 0.3 else gt[-1]
                d = np.asarray(g) + rng.normal(0, 6, 4)
                d[2:] = np.maximum(d[2:], d[:2] + 1)
                dets.append(d)
                dcls.append(c)
                scores.append(np.round(rng.uniform(0, 1), 2))
        images.append(dict(width=w, height=h, gt=np.array(gt).reshape(-1, 4), cls=np.array(cls, np.int64),
                           crowd=np.array(crowd, bool), det=np.array(dets).reshape(-1, 4),
                           score=np.array(scores), dcls=np.array(dcls, np.int64)))
    return images


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_pycocotools_on_clusters(seed):
    images = _clustered_case(seed)
    stats, precision, recall = _pycocotools_stats(images)
    res = _ours(images)
    ours = np.array([res[k] for k in coco_metrics.COCO_SUMMARY_KEYS])
    np.testing.assert_allclose(np.nan_to_num(ours, nan=-1.0), stats, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res["precision"], precision, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res["recall"], recall, rtol=0, atol=1e-6)


def test_bulk_input_equals_per_image_input():
    """add_images + add_results (evaluate.py's results-file mode) give what add_ground_truth + add_detections give."""
    images = _random_case(5)
    per_image = _ours(images)
    ev = coco_metrics.COCOEvaluator(NAMES)
    ids = [f"img{i}" for i in range(len(images))]
    ev.add_images(ids, gt_image=np.repeat(np.arange(len(images)), [len(im["gt"]) for im in images]),
                  gt_boxes=np.concatenate([im["gt"] for im in images]),
                  gt_classes=np.concatenate([im["cls"] for im in images]),
                  gt_difficult=np.concatenate([im["crowd"] for im in images]))
    results = {}
    for k, name in enumerate(NAMES):  # per class, in image order (as result files list them)
        rows = [(ids[i], s, b) for i, im in enumerate(images) for b, s, c in zip(im["det"], im["score"], im["dcls"])
                if c == k]
        results[name] = {"image_ids": [r[0] for r in rows], "scores": np.array([r[1] for r in rows]),
                         "boxes": np.array([r[2] for r in rows]).reshape(-1, 4)}
    ev.add_results(results)
    bulk = ev.compute()
    np.testing.assert_array_equal(bulk["precision"], per_image["precision"])
    np.testing.assert_array_equal(bulk["recall"], per_image["recall"])


def test_hand_computed_case():
    # One image, one class: GT [1, 1, 10, 10] (continuous 9 x 9 = 81 px); detections: exact (0.9), a miss
    # (0.8), and a shifted one of IoU 72/90 = 0.8 that is a duplicate (0.7). Precision at recall 1 is 1 (the
    # first detection already reaches it), so AP = 1 at every threshold.
    ev = coco_metrics.COCOEvaluator(("a",))
    ev.add_ground_truth("x", boxes=[[1, 1, 10, 10]], classes=[0], difficult=[False])
    ev.add_detections("x", boxes=[[1, 1, 10, 10], [50, 50, 60, 60], [2, 1, 11, 10]], scores=[0.9, 0.8, 0.7],
                      classes=[0, 0, 0])
    r = ev.compute()
    assert r["AP"] == pytest.approx(1.0) and r["AR1"] == pytest.approx(1.0)
    assert np.isnan(r["AP_medium"]) and np.isnan(r["AP_large"])  # no ground truth of those sizes
    # Swap scores: the miss first. Precision is 1/2 from recall 0 to 1 at every threshold -> AP = 0.5.
    ev = coco_metrics.COCOEvaluator(("a",))
    ev.add_ground_truth("x", boxes=[[1, 1, 10, 10]], classes=[0], difficult=[False])
    ev.add_detections("x", boxes=[[50, 50, 60, 60], [1, 1, 10, 10]], scores=[0.9, 0.8], classes=[0, 0])
    r = ev.compute()
    assert r["AP"] == pytest.approx(0.5) and r["AR1"] == 0.0 and r["AR10"] == 1.0


def test_crowd_ground_truth_is_ignored_and_absorbs_detections():
    # Crowd region [1, 1, 101, 101]; three detections inside it (IoU = inter / det area = 1) are neither true
    # nor false positives; the one real object is found -> AP 1.
    ev = coco_metrics.COCOEvaluator(("a",))
    ev.add_ground_truth("x", boxes=[[1, 1, 101, 101], [200, 200, 260, 260]], classes=[0, 0],
                        difficult=[True, False])
    ev.add_detections("x", boxes=[[5, 5, 20, 20], [30, 30, 50, 50], [60, 60, 70, 90], [200, 200, 260, 260]],
                      scores=[0.99, 0.98, 0.97, 0.5], classes=[0, 0, 0, 0])
    assert ev.compute()["AP"] == pytest.approx(1.0)


def test_bad_input_messages():
    ev = coco_metrics.COCOEvaluator(("a", "b"))
    ev.add_ground_truth("x", boxes=np.zeros((0, 4)), classes=[], difficult=[])
    with pytest.raises(ValueError, match="already added"):
        ev.add_ground_truth("x", boxes=np.zeros((0, 4)), classes=[], difficult=[])
    with pytest.raises(ValueError, match="no ground truth registered"):
        ev.add_detections("y", boxes=np.zeros((0, 4)), scores=[], classes=[])
    with pytest.raises(ValueError, match="class index 2 out of range"):
        ev.add_detections("x", boxes=[[1, 1, 2, 2]], scores=[1.0], classes=[2])
