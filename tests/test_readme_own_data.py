"""The README's "Train on your own data" commands, run as written from a fresh working directory (the dataset
is the one its first command writes), then its notebook snippet (see test_readme.py for the rest)."""
from __future__ import annotations

import json
import os

import pytest

from readme_helpers import make_sandbox, readme_python_blocks, run, sandbox_env

SMALL = ["--config.model.width=0.125", "--config.batch_size=2", "--config.eval.batch_size=2", "--config.total_steps=2",
         "--config.eval.every_steps=0", "--config.progress_bar=False", "--config.data.num_threads=1"]

WRITE = ("python -c \"from yolojax.data import synthetic as s; s.write_dataset('data/shapes_yolo', 'yolo', "
         "s.default_synthetic_config(), num_train=500, num_eval=100)\"")
OWN_DATA_COMMANDS = {
    WRITE: [],
    "python experiments/check_data.py --config configs/custom.py": [],
    "python experiments/train.py --config configs/custom.py --workdir runs/custom": SMALL,
    "python experiments/evaluate.py --workdir runs/custom --out_dir runs/custom/eval": [],
    "python experiments/detect.py --workdir runs/custom --out_dir out_custom/ data/shapes_yolo/images/val": [],
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    path = make_sandbox(str(tmp_path_factory.mktemp("own")))
    return path, sandbox_env(os.path.join(path, "home"), os.path.join(path, "xla_cache"))


@pytest.mark.slow
@pytest.mark.parametrize("command", list(OWN_DATA_COMMANDS))
def test_own_data_command(command, sandbox):
    path, env = sandbox
    proc = run(command, OWN_DATA_COMMANDS[command], path, env)
    if command == WRITE:
        assert os.path.isfile(os.path.join(path, "data", "shapes_yolo", "data.yaml"))
    if command.startswith("python experiments/train.py"):
        # the class names discovered from data.yaml flow to the evaluation table and the detections
        final = json.load(open(os.path.join(path, "runs", "custom", "final_metrics.json")))
        assert final["step"] == 2 and final["num_images"] == 100
        # anchors "auto": fitted at the start, saved where evaluate.py and detect.py read them
        anchors = json.load(open(os.path.join(path, "runs", "custom", "config.json")))["model"]["anchors"]
        assert len(anchors) == 5 and all(w > 0 and h > 0 for w, h in anchors)
    if command.startswith("python experiments/evaluate.py"):
        assert "COCO-style" in proc.stdout and "mAP" in proc.stdout
    if command.startswith("python experiments/detect.py"):
        jsons = [f for f in os.listdir(os.path.join(path, "out_custom")) if f.endswith(".json")]
        assert len(jsons) == 100


@pytest.mark.slow
def test_readme_notebook_snippet(tmp_path):
    """The "From a notebook" block, run as written in a directory holding runs/quickstart and photo.jpg."""
    import subprocess
    import sys

    import cv2

    from yolojax.data import synthetic

    path = make_sandbox(str(tmp_path))
    env = sandbox_env(os.path.join(path, "home"), os.path.join(path, "xla_cache"))
    run("python experiments/train.py --config configs/quickstart.py --workdir runs/quickstart",
        ["--config.model.width=0.125", "--config.data.image_size=64", "--config.data.eval_image_size=64",
         "--config.data.synthetic.num_train=4", "--config.data.synthetic.num_eval=2", "--config.batch_size=2",
         "--config.eval.batch_size=2", "--config.total_steps=1", "--config.progress_bar=False"], path, env)
    cfg = synthetic.default_synthetic_config()
    cv2.imwrite(os.path.join(path, "photo.jpg"), synthetic.SyntheticSource(cfg, "eval")[0]["image"][..., ::-1])
    (block,) = readme_python_blocks()
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.getsize(os.path.join(path, "photo_boxes.jpg")) > 0
