"""Two training steps and an evaluation from each of the three formats of one dataset (non-VOC class names,
PNG, grayscale and empty images), through configs/custom.py: the class names reach the evaluation and the API,
and the three give the same mAP (they are the same examples)."""
from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("zebra", "kiwi", "lamp")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from yolojax.data import synthetic

    cfg = synthetic.default_synthetic_config()
    cfg.update(dict(num_classes=3, image_width=72, image_height=64, min_object_size=0.3, max_objects=2))
    base = tmp_path_factory.mktemp("formats")
    roots = {}
    for fmt in ("voc", "yolo", "coco"):
        roots[fmt] = synthetic.write_dataset(str(base / fmt), fmt, cfg, class_names=NAMES, num_train=6, num_eval=4,
                                             png_every=3, gray_every=4, empty_every=5)
    return roots


@pytest.mark.slow
def test_two_steps_and_an_evaluation_from_each_format(datasets, tmp_path):
    import yolojax
    from configs import custom
    from yolojax.training import train

    maps = {}
    for fmt, root in datasets.items():
        c = custom.get_config()
        with c.unlocked():
            c.data.format, c.data.root, c.data.class_names = fmt, root, NAMES
            c.model.num_classes, c.model.width = 3, 0.125
            c.data.image_size = c.data.eval_image_size = 64
            c.batch_size, c.eval.batch_size, c.total_steps = 2, 2, 2
            c.progress_bar, c.checkpoint.async_save = False, False
        result = train.train_and_evaluate(c, str(tmp_path / fmt))
        assert result["step"] == 2 and result["num_images"] == 4
        assert tuple(result["class_names"]) == NAMES and "coco" in result
        assert yolojax.load(str(tmp_path / fmt)).class_names == NAMES
        maps[fmt] = (result["map_07"], result["map_area"], result["coco"]["AP"])
    assert maps["voc"] == pytest.approx(maps["yolo"], nan_ok=True)
    assert maps["voc"] == pytest.approx(maps["coco"], nan_ok=True)
