"""Every command in the README's code blocks, run as written (a subprocess through bash, in a user's working
directory whose home holds a synthetic VOCdevkit and the darknet files the commands name). Only a synthetic data
path and size-reducing overrides (width, image size, steps, batch) are appended; a reduced width that starts
from a darknet file also gets the cfg that the test's file was written for. The own-data section and the
notebook snippet are in test_readme_own_data.py; this file also checks that the two files together cover every
README command."""
from __future__ import annotations

import json
import os

import pytest

from readme_helpers import ROOT, make_sandbox, readme_commands, run, sandbox_env
from trunk_files import write_trunk_file

SMALL = ["--config.data.image_size=64", "--config.data.eval_image_size=64", "--config.data.multiscale_sizes=()",
         "--config.batch_size=2", "--config.eval.batch_size=2", "--config.total_steps=2", "--config.progress_bar=False",
         "--config.data.num_threads=1"]
WIDTH = ["--config.model.width=0.125"]
TINY_DATA = ["--config.model.width=0.125", "--config.data.image_size=64", "--config.data.eval_image_size=64",
             "--config.data.synthetic.image_width=64", "--config.data.synthetic.image_height=64",
             "--config.data.synthetic.num_train=8", "--config.data.synthetic.num_eval=4", "--config.batch_size=2",
             "--config.eval.batch_size=2", "--config.total_steps=2", "--config.progress_bar=False"]
ABLATE = ["--base_px=64", "--rungs=passthrough"] + [f"--override=--config.{k}={v}" for k, v in (
    ("batch_size", 2), ("eval.batch_size", 2), ("total_steps", 2), ("model.width", 0.125), ("progress_bar", False))]

# README command -> what is appended to it (in README order; later commands use what earlier ones wrote).
VOC_COMMANDS = {
    "make demo": ["DEMO_ARGS=--workdir {sandbox}/demo " + " ".join(TINY_DATA)],
    "python experiments/train.py --config configs/quickstart.py --workdir runs/quickstart_watch "
    "--config.eval.every_steps=500": TINY_DATA,
    "python docs/tools/tensorboard_screenshot.py --workdir runs/quickstart_watch --out tensorboard.png": [],
    "python experiments/prepare_voc.py --data_dir ~/tensorflow_datasets --devkit_dir ~/data/VOCdevkit": [],
    "python experiments/check_data.py --config configs/yolov2_voc.py": [],
    "python experiments/show_batch.py --config configs/yolov2_voc.py --out batch.png":
        ["--config.data.image_size=64", "--config.data.multiscale_sizes=()", "--config.batch_size=2", "--num=2"],
    "python experiments/train.py --config configs/yolov2_voc.py --workdir runs/yolov2 "
    "--config.init.darknet_weights=darknet19_448.conv.23": SMALL + WIDTH + [
        "--config.init.darknet_cfg=darknet19_w0.125.cfg"],
    "python experiments/train.py --config configs/yolov2_voc.py:paper_era --workdir runs/yolov2_paper": SMALL + WIDTH,
    "python experiments/train.py --config configs/tiny_yolov2_voc.py --workdir runs/tiny": SMALL + WIDTH,
    "python experiments/train.py --config configs/yolov1_voc.py --workdir runs/yolov1 "
    "--config.init.darknet_weights=extraction.conv.weights": SMALL + WIDTH + [
        "--config.model.v1.grid_size=1", "--config.init.darknet_cfg=yolov1_w0.125.cfg"],
    "python experiments/train.py --config configs/quickstart.py --workdir runs/quickstart": TINY_DATA,
    "python experiments/train.py --config configs/yolov2_voc.py --workdir runs/yolov2_ft "
    "--config.init.checkpoint=runs/yolov2 --config.optim.freeze='params/conv([0-9]|1[0-7])/'": SMALL + WIDTH,
    "python experiments/ablate.py --root runs/table2": ABLATE,
    "python experiments/evaluate.py --workdir runs/yolov2 --tfds_split 2007_test --out_dir runs/yolov2/eval": [],
    "python experiments/evaluate.py --results_dir runs/yolov2/eval --voc_root ~/data/VOCdevkit --year 2007 "
    "--image_set test": [],
    "python experiments/convert_darknet.py --cfg yolov2-tiny-voc.cfg --weights yolov2-tiny-voc.weights "
    "--out runs/official": [],
    "python experiments/evaluate.py --workdir runs/official --voc_root ~/data/VOCdevkit --year 2007 --image_set test "
    "--out_dir runs/official/eval": ["--image_size=64"],
    "python experiments/detect.py --workdir runs/official --out_dir out/ photo.jpg": [],
    "python experiments/detect.py --darknet_cfg yolov2-tiny-voc.cfg --darknet_weights yolov2-tiny-voc.weights "
    "--backend onnx --out_dir out/ photo.jpg clip.mp4": ["--image_size=64"],
    "python experiments/export.py --workdir runs/official --out_dir exported/": ["--image_size=64"],
    "python experiments/compute_anchors.py --voc_root ~/data/VOCdevkit --year 2007,2012 --image_set trainval --k 5 "
    "--image_size 416 --json anchors.json": [],
}
# Run elsewhere: `make test` is the command that runs this suite.
NOT_HERE = {"make test": "it runs this suite (CI runs it on a clean clone)"}


def test_every_readme_command_is_run_by_a_test():
    from test_readme_own_data import OWN_DATA_COMMANDS

    covered = set(VOC_COMMANDS) | set(OWN_DATA_COMMANDS) | set(NOT_HERE)
    commands = readme_commands()
    assert len(commands) == len(set(commands))
    assert set(commands) == covered, {"untested": sorted(set(commands) - covered),
                                      "gone from the README": sorted(covered - set(commands))}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """The user's files: ~/data/VOCdevkit (synthetic VOC2007 and VOC2012), darknet19_448.conv.23 and
    extraction.conv.weights (the partial files darknet writes, random values, the project's writer, for the
    width-1/8 trunks the commands train), yolov2-tiny-voc.cfg/.weights, a photo and a short video. Returns the
    folder, the environment and, per trunk file, the (layers, floats) an initialization from it copies."""
    import cv2
    import numpy as np

    from yolojax import darknet as dk
    from yolojax.data import synthetic

    path = make_sandbox(str(tmp_path_factory.mktemp("user")))
    cfg = synthetic.default_synthetic_config()
    cfg.update(dict(image_width=96, image_height=80, num_classes=3, min_object_size=0.4, max_objects=2))
    for year in ("2007", "2012"):
        synthetic.write_voc_devkit(os.path.join(path, "home", "data"), cfg, year=year, num_train=6, num_eval=4)
    # The commands train at width 1/8: each trunk file is written for a width-1/8 cfg, which the test appends as
    # init.darknet_cfg (the full-width files: test_initialization.py and test_opencv_parity.py).
    copies = {name: write_trunk_file(path, trunk, name, seed=seed)[2:] for trunk, name, seed in (
        ("darknet19", "darknet19_448.conv.23", 1), ("yolov1", "extraction.conv.weights", 2))}
    tiny = dk.load_cfg(dk.official_cfg("yolov2-tiny-voc.cfg"))
    with open(os.path.join(path, "yolov2-tiny-voc.cfg"), "w") as f:
        f.write(open(dk.official_cfg("yolov2-tiny-voc.cfg")).read())
    dk.write_weights(os.path.join(path, "yolov2-tiny-voc.weights"), tiny, dk.random_blobs(tiny, seed=3))
    src = synthetic.SyntheticSource(cfg, "eval")
    frames = [src[i]["image"] for i in range(3)]
    cv2.imwrite(os.path.join(path, "photo.jpg"), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    writer = cv2.VideoWriter(os.path.join(path, "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 80))
    for frame in frames:
        writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    return path, sandbox_env(os.path.join(path, "home"), os.path.join(path, "xla_cache")), copies


@pytest.mark.slow
@pytest.mark.parametrize("command", list(VOC_COMMANDS))
def test_readme_command(command, sandbox):
    path, env, copies = sandbox
    extra = [a.format(sandbox=path) for a in VOC_COMMANDS[command]]
    cwd = ROOT if command.startswith("make ") else path
    proc = run(command, extra, cwd, env)
    out = proc.stdout + proc.stderr  # the tools' own lines, and the library's INFO log lines
    for name, (layers, floats) in copies.items():
        if name in command:  # the headline: the log says what was copied
            assert f"copied {layers} layers" in out and f"{floats:,} floats" in out, out[-3000:]
    if "init.checkpoint" in command:
        report = json.load(open(os.path.join(path, "runs", "yolov2_ft", "init_report.json")))
        assert report["checkpoint"]["copied"] and not report["checkpoint"]["kept_init"]
    if command.startswith("python experiments/detect.py --darknet_cfg"):
        assert os.path.isfile(os.path.join(path, "out", "clip.jsonl"))
        assert len(open(os.path.join(path, "out", "clip.jsonl")).read().splitlines()) == 3
    if command.startswith("python experiments/export.py"):
        written = os.listdir(os.path.join(path, "exported"))
        assert any(f.endswith(".onnx") for f in written) and any(f.endswith(".jaxexport") for f in written), written
    if command.startswith("python docs/tools/tensorboard_screenshot.py"):
        assert os.path.getsize(os.path.join(path, "tensorboard.png")) > 10000
    if command.startswith("python experiments/ablate.py"):
        assert os.path.isfile(os.path.join(path, "runs", "table2", "ablation.md"))
