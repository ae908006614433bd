"""One mAP: the mAP training logs for its final checkpoint equals what ``experiments/evaluate.py --workdir``
reports for that checkpoint and split (both metrics, to 1e-9), with letterbox evaluation on and off, for the
YOLOv1 and the YOLOv2 family. Both go through yolojax.evaluation.loop on the same eval batches."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from test_train import tiny_config  # noqa: E402


def _config(name: str, letterbox: bool):
    c = tiny_config(total_steps=3)
    c.model.name = name
    c.data.eval_letterbox = letterbox
    c.data.synthetic.image_width, c.data.synthetic.image_height = 80, 56  # not square: letterbox matters
    c.checkpoint.every_steps = 3
    if name == "fast_yolo":
        c.model.v1.grid_size = 2
        c.loss = ml_v1_loss()
        # untrained YOLOv1 scores (raw linear outputs) are tiny or negative: keep them all
        c.eval.score_threshold, c.eval.nms_iou_threshold = -1.0, 0.5
    return c


def ml_v1_loss():
    from yolojax.config.base import v1_loss

    return v1_loss()


@pytest.mark.parametrize("name,letterbox", [("tiny_yolov2", False), ("tiny_yolov2", True), ("fast_yolo", True)])
def test_training_map_equals_evaluate_workdir(name, letterbox, tmp_path):
    from yolojax.evaluation import evaluators as evaluators_lib
    from yolojax.inference import api
    from yolojax.training import train

    workdir = str(tmp_path / "run")
    logged = train.train_and_evaluate(_config(name, letterbox), workdir)
    assert logged["step"] == 3 and logged["num_images"] == 8
    # What experiments/evaluate.py --workdir does, in process: load the checkpoint, score the config's split.
    config = api.load_config(os.path.join(workdir, "config.json"))
    detector = api.load_checkpoint(workdir)
    assert detector.letterbox == letterbox
    evaluators = evaluators_lib.make_evaluators(detector.class_names)
    api.evaluate(detector, config.data, config.data.eval_split, evaluators,
                 score_threshold=config.eval.score_threshold, iou_threshold=config.eval.nms_iou_threshold,
                 max_detections=config.eval.max_detections, batch_size=config.eval.batch_size)
    scored = evaluators_lib.compute(evaluators)
    assert scored["num_images"] == 8
    assert scored["num_detections"].sum() > 0  # there is something to score
    for key in ("map_07", "map_area"):
        assert scored[key] == pytest.approx(logged[key], abs=1e-9, nan_ok=True), key
    final = json.load(open(os.path.join(workdir, "final_metrics.json")))
    assert final["map_07"] == pytest.approx(logged["map_07"], abs=1e-12) and final["step"] == 3


@pytest.mark.slow
def test_evaluate_script_on_workdir_reports_the_logged_map(tmp_path):
    """The command itself (a subprocess, flags as a user types them) on a letterboxed YOLOv2 run."""
    from yolojax.training import train

    workdir = str(tmp_path / "run")
    logged = train.train_and_evaluate(_config("tiny_yolov2", True), workdir)
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "evaluate.py"), "--workdir", workdir,
                           "--out_dir", str(tmp_path / "eval"), "--json", str(out), "--batch_size", "8"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = json.loads(out.read_text())
    assert scored["num_images"] == 8
    assert scored["map_07"] == pytest.approx(logged["map_07"], abs=1e-9)
    assert scored["map_area"] == pytest.approx(logged["map_area"], abs=1e-9)
