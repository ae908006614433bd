"""Training you can watch: every evaluation writes per-class AP scalars, the COCO summary and three pictures
(precision-recall, confusion matrix, fixed eval images with their boxes) to TensorBoard; read back from the event
file that training wrote."""
from __future__ import annotations

import io
import math
import os

import numpy as np
import pytest

from helpers import load_script
from test_train import tiny_config
from yolojax.evaluation import plots
from yolojax.training import train, writers


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory):
    """4 steps with an evaluation every 2: two evaluations (steps 2 and 4) on the 8 eval images."""
    workdir = str(tmp_path_factory.mktemp("watched"))
    config = tiny_config(total_steps=4, **{"eval.every_steps": 2, "checkpoint.every_steps": 4})
    result = train.train_and_evaluate(config, workdir)
    return workdir, config, result


def _png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.height, im.width


def test_every_evaluation_writes_scalars_and_three_pictures(watched_run):
    workdir, config, result = watched_run
    logged = writers.read_tensorboard(os.path.join(workdir, "tensorboard"))
    names = result["class_names"]
    assert len(names) == 5
    scalars = logged["scalars"]
    for c, name in enumerate(names):
        name = name.replace(" ", "_")  # "red rectangle": a space is not kept in a tag
        if result["num_positives"][c]:  # classes with boxes in the 8 eval images have an AP
            assert [s for s, _ in scalars[f"eval/ap07/{name}"]] == [2, 4]
            assert [s for s, _ in scalars[f"eval/ap_area/{name}"]] == [2, 4]
            assert scalars[f"eval/ap07/{name}"][-1][1] == pytest.approx(result["ap_07"][c], abs=1e-6)
        else:
            assert f"eval/ap07/{name}" not in scalars
    for key in ("coco_AP", "coco_AP50", "coco_AP75", "map_07", "map_area"):
        assert [s for s, _ in scalars[f"eval/{key}"]] == [2, 4], key

    images = logged["images"]
    assert sorted(images) == ["eval/confusion_matrix", "eval/detections", "eval/precision_recall"]
    grid_h = 18 + plots.GRID_TILE_PX * math.ceil(8 / 4)  # caption strip + 2 rows of 4 of the 8 eval images
    expected = {"eval/precision_recall": (400, 640),  # 8 x 5 inches at 80 dpi
                "eval/confusion_matrix": (376, 456),  # 6 labels: (0.45 * 6 + 2 + 1) x (0.45 * 6 + 2) in at 80 dpi
                "eval/detections": (grid_h, 4 * plots.GRID_TILE_PX)}
    for tag, size in expected.items():
        assert [step for step, *_ in images[tag]] == [2, 4], tag
        for _, png, height, width in images[tag]:
            assert (height, width) == size == _png_size(png), tag


def test_eval_images_are_fixed_and_show_the_true_boxes(watched_run):
    _, config, result = watched_run
    kept = result["images"]
    assert len(kept) == 8 and kept.images[0].shape == (64, 64, 3)
    grid = plots.detection_grid(kept, result["class_names"], score_threshold=2.0)  # no prediction drawn
    colours = {tuple(p) for p in grid[18:].reshape(-1, 3)}
    assert plots.TRUE_COLOUR in colours and plots.PREDICTED_COLOUR not in colours
    # The same images at the next evaluation: eval batches come in a fixed order.
    again = train.evaluate(result["experiment"].steps, result["state"], config, result["class_names"],
                           keep_images=3)["images"]
    for a, b, ta, tb in zip(kept.images, again.images, kept.truth, again.truth):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ta["boxes"], tb["boxes"])


class _Recorder:
    def __init__(self):
        self.scalars, self.images = {}, {}

    def write_scalars(self, step, scalars):
        self.scalars.update(scalars)

    def write_images(self, step, images):
        self.images.update(images)

    def close(self):
        pass


def test_config_switch_turns_the_pictures_off(watched_run):
    _, config, result = watched_run
    off = config.copy_and_resolve_references()
    off.unlock()
    off.eval.tensorboard_images = False
    recorder = _Recorder()
    assert train.log_evaluation(recorder, 4, result, off) == 0.0
    assert recorder.images == {} and "eval/map_07" in recorder.scalars
    recorder = _Recorder()
    assert train.log_evaluation(recorder, 4, result, config) > 0.0
    assert sorted(recorder.images) == ["eval/confusion_matrix", "eval/detections", "eval/precision_recall"]


def test_screenshot_script_composes_the_logged_run(watched_run, tmp_path):
    """docs/tools/tensorboard_screenshot.py (the README's picture) on the run: a 1600x1150 PNG."""
    from PIL import Image

    script = load_script("docs/tools/tensorboard_screenshot.py")
    workdir, _, _ = watched_run
    out = tmp_path / "shot.png"
    assert script.main(["--workdir", workdir, "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (1600, 1150)
    assert script.main(["--workdir", str(tmp_path / "nowhere")]) == 1
