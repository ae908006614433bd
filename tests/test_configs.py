"""Configs: paper recipes, the ablation ladder's switches, override typos, and every VOC config training two
steps at a tiny width on the synthetic dataset written as a VOCdevkit."""

import importlib
import os

import jax
import pytest
from absl import flags
from ml_collections import config_flags

from helpers import ROOT, config_module
from yolojax.training import schedules, train

VOC_CONFIGS = [("yolov1_voc", ""), ("fast_yolo_voc", ""), ("yolov2_voc", ""), ("yolov2_voc", "paper_era"),
               ("tiny_yolov2_voc", "")]


def load(name: str, arg: str = ""):
    module = importlib.import_module(f"configs.{name}")
    return module.get_config(arg) if arg else module.get_config()


def test_yolov2_paper_recipe():
    c = load("yolov2_voc")
    assert (c.model.name, c.model.v2.passthrough, c.data.image_size, c.batch_size) == ("yolov2", "conv64_reorg",
                                                                                       416, 64)
    assert c.num_epochs == 160 and tuple(c.schedule.boundaries_epochs) == (60, 90) and c.optim.base_lr == 1e-3
    assert c.schedule.warmup == "burn_in" and c.schedule.burn_in_steps == 1000
    assert tuple(c.data.multiscale_sizes) == tuple(range(320, 609, 32)) and c.data.multiscale_every_steps == 10
    assert len(c.model.anchors) == 5 and tuple(c.model.anchors[0]) == (1.3221, 1.73145)
    assert (c.optim.momentum, c.optim.weight_decay, c.loss.variant) == (0.9, 5e-4, "darknet")
    assert load("yolov2_voc", "paper_era").model.v2.passthrough == "reorg"
    with pytest.raises(ValueError, match="unknown variant 'paper'"):
        load("yolov2_voc", "paper")


def test_yolov1_paper_recipe():
    c = load("yolov1_voc")
    assert (c.model.name, c.data.image_size, c.num_epochs, c.model.v1.dropout_rate) == ("yolov1", 448, 135, 0.5)
    s = schedules.build_schedule(c.schedule, base_lr=c.optim.base_lr, steps_in_epoch=258, total_steps=34830)
    got = [float(s(x)) for x in (0, 2 * 258, 75 * 258 - 1, 75 * 258, 105 * 258)]
    assert got == pytest.approx([1e-3, 1e-2, 1e-2, 1e-3, 1e-4], rel=1e-6)
    assert (c.loss.coord_scale, c.loss.noobject_scale) == (5.0, 0.5)
    assert load("fast_yolo_voc").model.name == "fast_yolo"


def _parse(argv):
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=fv, lock_config=True, sys_argv=argv)
    fv(argv)
    return fv.config


def test_override_on_command_line():
    c = _parse(["prog", f"--config={ROOT}/configs/yolov2_voc.py:paper_era", "--config.optim.base_lr=5e-4",
                "--config.total_steps=10"])
    assert (c.optim.base_lr, c.total_steps, c.model.v2.passthrough) == (5e-4, 10, "reorg")


def test_override_typo_names_the_field():
    with pytest.raises(Exception, match='(?s)base_rl.*Did you mean "base_lr"'):
        _parse(["prog", f"--config={ROOT}/configs/yolov2_voc.py", "--config.optim.base_rl=5e-4"])
    c = config_module("quickstart").get_config()
    with pytest.raises(AttributeError, match="totl_steps"):
        c.totl_steps = 3  # locked: a typo in code fails too


@pytest.fixture(scope="module")
def voc_devkit(tmp_path_factory):
    from yolojax.data import synthetic

    cfg = synthetic.default_synthetic_config()
    cfg.image_width = cfg.image_height = 96
    root = str(tmp_path_factory.mktemp("voc"))
    synthetic.write_voc_devkit(root, cfg, year="2007", num_train=8, num_eval=4)
    return os.path.join(root, "VOCdevkit")


# The other VOC configs train through their README commands (tests/test_readme.py), as users run them.
@pytest.mark.slow
@pytest.mark.parametrize("name,arg", [("fast_yolo_voc", "")])
def test_voc_config_trains_two_steps(name, arg, voc_devkit, tmp_path):
    c = load(name, arg)
    v1 = c.model.name in ("yolov1", "fast_yolo")
    c.model.width = 1 / 32
    c.batch_size = 2
    c.total_steps = 2
    c.progress_bar = False
    c.log_every_steps = 1
    c.data.source = "voc_dir"
    c.data.voc_dir = voc_devkit
    c.data.train_split, c.data.eval_split = "2007_trainval", "2007_test"
    c.data.num_threads = 1
    c.data.image_size = c.data.eval_image_size = 128 if v1 else 64  # v1 downsamples 64x, v2 32x
    c.data.multiscale_sizes = () if v1 else (64, 96)
    c.data.multiscale_every_steps = 1
    c.eval.batch_size = 4
    c.checkpoint.async_save = False
    result = train.train_and_evaluate(c, str(tmp_path))
    assert result["step"] == 2 and result["num_images"] == 4
    assert int(jax.device_get(result["state"].seen)) == 4
    assert 0.0 <= result["map_07"] <= 1.0
