"""Schedules hit the papers' and darknet's values at the boundary steps (hand-computed)."""

import ml_collections
import numpy as np
import pytest

from yolojax.training import schedules


def _at(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_epoch_conversion_is_one_function():
    assert schedules.steps_per_epoch(16551, 64) == 258  # 07+12 at batch 64, remainder dropped
    assert schedules.epochs_to_steps(60, 258) == 15480
    assert schedules.epochs_to_steps(2.5, 10) == 25
    assert schedules.total_steps_for(160, 258) == 41280
    assert schedules.total_steps_for(160, 258, override=7) == 7


def test_steps_per_epoch_rejects_tiny_split():
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        schedules.steps_per_epoch(10, 64)


def test_yolov2_paper_schedule_boundaries():
    spe = 258
    s = schedules.yolov2_paper(spe)
    # darknet numbers updates from 1: update k (0-based) has batch_num k + 1.
    got = _at(s, [0, 499, 998, 999, 1000, 60 * spe - 2, 60 * spe - 1, 90 * spe - 2, 90 * spe - 1, 160 * spe])
    want = [1e-3 * (1 / 1000) ** 4, 1e-3 * 0.5 ** 4, 1e-3 * (999 / 1000) ** 4, 1e-3, 1e-3,
            1e-3, 1e-4, 1e-4, 1e-5, 1e-5]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_yolov1_paper_schedule_boundaries():
    spe = 100
    s = schedules.yolov1_paper(spe, warmup_epochs=2)
    got = _at(s, [0, 100, 200, 7499, 7500, 10499, 10500, 13500])
    want = [1e-3, 5.5e-3, 1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_darknet_steps_policy_matches_cfg():
    # yolov2-tiny-voc.cfg: learning_rate=0.001 steps=-1,100,20000,30000 scales=.1,10,.1,.1
    s = schedules.piecewise_steps(1e-3, [-1, 100, 20000, 30000], [0.1, 10, 0.1, 0.1])
    got = _at(s, [0, 98, 99, 19998, 19999, 29999])
    np.testing.assert_allclose(got, [1e-4, 1e-4, 1e-3, 1e-3, 1e-4, 1e-5], rtol=1e-6)


def test_burn_in_composes_with_any_schedule():
    s = schedules.with_burn_in(lambda step: 0.5 * np.ones_like(step, dtype=np.float32), 1.0, 10, power=2)
    np.testing.assert_allclose(_at(s, [0, 4, 8, 9, 20]), [0.01, 0.25, 0.81, 0.5, 0.5], rtol=1e-6)


def test_build_schedule_from_config_section():
    cfg = ml_collections.ConfigDict(dict(
        name="steps", boundaries_epochs=(1.0, 2.0), scales=(0.5, 0.5), warmup="none", burn_in_steps=0,
        burn_in_power=4.0, warmup_epochs=0.0, warmup_init_lr=0.0, darknet_numbering=False))
    s = schedules.build_schedule(cfg, base_lr=0.1, steps_in_epoch=10, total_steps=30)
    np.testing.assert_allclose(_at(s, [0, 9, 10, 19, 20]), [0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-6)
    cfg.name = "cosine"
    s = schedules.build_schedule(cfg, base_lr=0.1, steps_in_epoch=10, total_steps=30)
    np.testing.assert_allclose(_at(s, [0, 15, 30]), [0.1, 0.05, 0.0], atol=1e-7)
    cfg.name = "bogus"
    with pytest.raises(ValueError, match="config.schedule.name='bogus'"):
        schedules.build_schedule(cfg, base_lr=0.1, steps_in_epoch=10, total_steps=30)
