"""The own-data recipe's machinery (configs/custom.py, docs/own_data.md): anchors fitted when training starts
(``model.anchors = "auto"``), a schedule whose length fits a time budget, and extending a finished run."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import test_train
from helpers import ROOT, config_module
from yolojax.data import sources, synthetic
from yolojax.inference import api
from yolojax.ops import anchors as anchors_lib
from yolojax.training import planning, schedules, train

custom = config_module("custom")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The synthetic shapes as an ultralytics YOLO dataset of JPEGs: 16 training and 8 validation images, 64 px."""
    cfg = synthetic.default_synthetic_config()
    cfg.image_width = cfg.image_height = 64
    return synthetic.write_dataset(str(tmp_path_factory.mktemp("own") / "yolo"), "yolo", cfg, num_train=16,
                                   num_eval=8)


def own_config(root: str, **overrides):
    """tests/test_train.py's tiny config on the YOLO dataset ``root``, as configs/custom.py trains it: Tiny YOLOv2,
    anchors "auto", Adam with a cosine schedule."""
    c = test_train.tiny_config(**overrides)
    with c.unlocked():
        c.model.name = "tiny_yolov2"
        c.data.source, c.data.format, c.data.root = "files", "yolo", root
        c.data.train_split, c.data.eval_split = "train", "val"
        with c.ignore_type():
            c.model.anchors = overrides.get("model.anchors", "auto")
        c.optim.name = "adam"
        c.schedule.name = "cosine"
        c.schedule.warmup = "none"
        c.schedule.darknet_numbering = False
    return c


class Recorder:
    """A metric writer that keeps every scalar by step (the training loop logs every step in these configs)."""

    def __init__(self):
        self.scalars: dict[int, dict[str, float]] = {}

    def write_scalars(self, step, scalars):
        self.scalars.setdefault(int(step), {}).update(scalars)

    def write_images(self, step, images):
        pass

    def close(self):
        pass


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(train.metric_writers, "create_default_writer", lambda *a, **k: rec)
    return rec


def snapshot(workdir: str) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under ``workdir`` but the lock a run holds while it runs
    (``<workdir>/lock``: taken and released by every run, finished or not)."""
    out = {}
    for folder, _, files in os.walk(workdir):
        for name in files:
            if folder == workdir and name == "lock":
                continue
            path = os.path.join(folder, name)
            st = os.stat(path)
            out[os.path.relpath(path, workdir)] = (st.st_size, st.st_mtime_ns)
    return out


# ------------------------------------------------------------------------------------------------ anchors
def test_parse_anchors():
    assert planning.parse_anchors("auto") == planning.parse_anchors(" auto ") == "auto"
    assert planning.parse_anchors("((1, 2), (3.5, 4))") == ((1.0, 2.0), (3.5, 4.0))
    assert planning.parse_anchors(((1, 2),)) == ((1.0, 2.0),)
    for bad in ("autom", "((1, 2), (3,))", "((0, 1),)", "()", 3):
        with pytest.raises(ValueError, match="config.model.anchors"):
            planning.parse_anchors(bad)


def test_custom_config_defaults_to_auto_anchors_and_a_budget():
    c = custom.get_config()
    assert planning.wants_auto_anchors(c) and c.time_budget_minutes > 0
    with pytest.raises(ValueError, match="anchors='auto'"):
        train.heads.Head.from_config(c)  # only training fits them: every other tool reads config.json


def test_auto_anchors_are_k_means_at_the_input_size_and_saved(dataset, tmp_path):
    workdir = str(tmp_path / "run")
    c = own_config(dataset, total_steps=2)
    result = train.train_and_evaluate(c, workdir)
    assert result["step"] == 2
    # what experiments/compute_anchors.py --config prints for this config, in cells of 32 px at 64 px
    wh = sources.box_shapes(c.data, "train")
    normalized, mean_iou = anchors_lib.kmeans_anchors(wh, 5, restarts=5, seed=0)
    expected = np.round(anchors_lib.anchors_normalized_to_grid(normalized, 64 // 32), 6)
    saved = json.load(open(os.path.join(workdir, "config.json")))["model"]["anchors"]
    np.testing.assert_allclose(saved, expected, rtol=0, atol=1e-12)
    fit = json.load(open(os.path.join(workdir, planning.ANCHORS_FILE)))
    assert fit["mean_iou"] == pytest.approx(mean_iou, abs=1e-12) and fit["num_boxes"] == len(wh)
    assert fit["image_size"] == 64
    # the tools read the workdir's config: the detector decodes with the fitted anchors
    np.testing.assert_allclose(api.load(workdir).anchors, expected, rtol=1e-6)
    # the same data and input size on the same workdir: the anchors are read back, nothing is fitted again
    before = snapshot(workdir)[planning.ANCHORS_FILE]
    again = train.build_experiment(c, workdir=workdir)
    assert again.config.model.anchors == tuple(map(tuple, saved))
    assert snapshot(workdir)[planning.ANCHORS_FILE] == before
    # another input size fits anew (cells of 32 px at 96 px: 1.5 times the numbers at 64 px)
    bigger = train.build_experiment(own_config(dataset, **{"data.image_size": 96}), workdir=str(tmp_path / "b"))
    np.testing.assert_allclose(bigger.config.model.anchors, anchors_lib.anchors_normalized_to_grid(normalized, 3),
                               atol=1e-6)
    # a zoomed training input (augment.zoom 1.5 at 64 px): objects at the scale of 96 px, anchors fitted there
    zoomed = train.build_experiment(own_config(dataset, **{"data.augment.zoom": 1.5}), workdir=str(tmp_path / "z"))
    np.testing.assert_allclose(zoomed.config.model.anchors, bigger.config.model.anchors, atol=1e-6)


# ------------------------------------------------------------------------------------------------ time budget
def test_evaluations_between():
    assert planning.evaluations_between(0, 10, 0) == 1
    assert planning.evaluations_between(0, 10, 5) == 2  # 5 and 10 (the last is periodic)
    assert planning.evaluations_between(0, 12, 5) == 3  # 5, 10 and the final one at 12
    assert planning.evaluations_between(7, 12, 5) == 2  # 10 and 12
    assert planning.evaluations_between(12, 12, 5) == 0


def test_plan_total_steps_fills_the_budget_exactly():
    kw = dict(budget_seconds=100.0, elapsed_seconds=10.0, step=20, seconds_per_step=2.0, reserve_seconds=4.0)
    # 10 + 2 (T - 20) + 6 + 4 <= 100  ->  T = 60
    assert planning.plan_total_steps(eval_seconds=6.0, eval_every_steps=0, **kw) == 60
    # evaluations every 10 steps: 10 + 2 (T - 20) + 6 * evaluations_between(20, T, 10) + 4 <= 100  ->  T = 51
    # (51: 62 + 6 * 4 + 4 = 100; 52: 64 + 24 + 4 = 102)
    assert planning.plan_total_steps(eval_seconds=6.0, eval_every_steps=10, **kw) == 51
    # no time left for a single step: the run ends where it is
    assert planning.plan_total_steps(eval_seconds=90.0, eval_every_steps=0, **kw) == 20


class StepClock:
    """A fake clock: ``seconds_per_step`` for each training batch taken from the pipeline, plus 1 ms per call
    (so that time moves between the calls of one step)."""

    def __init__(self, monkeypatch, seconds_per_step: float):
        self.batches, self.calls, self.seconds_per_step = 0, 0, seconds_per_step
        original = train.pipeline.prefetch_to_device.__next__

        def counting(it):
            self.batches += 1
            return original(it)

        monkeypatch.setattr(train.pipeline.prefetch_to_device, "__next__", counting)

    def __call__(self) -> float:
        self.calls += 1
        return self.seconds_per_step * self.batches + 1e-3 * self.calls


def test_time_budget_sets_the_schedule_length_and_ends_in_time(dataset, tmp_path, monkeypatch, recorder):
    workdir = str(tmp_path / "budget")
    clock = StepClock(monkeypatch, 0.25)
    c = own_config(dataset, total_steps=-1, num_epochs=1.0, time_budget_minutes=0.25)  # 15 s of 0.25 s steps
    result = train.train_and_evaluate(c, workdir, clock=clock)
    plan = json.load(open(os.path.join(workdir, planning.BUDGET_FILE)))
    # timed over the first epoch (4 steps, at least MIN_MEASURE_STEPS), after the first one
    assert plan["start_step"] == 0 and plan["measured_steps"] == planning.MIN_MEASURE_STEPS
    assert plan["seconds_per_step"] == pytest.approx(0.25, abs=0.01)
    # the plan is the largest length whose steps, evaluation and reserve fit in the budget ...
    assert plan["total_steps"] == planning.plan_total_steps(
        budget_seconds=15.0, elapsed_seconds=plan["planned_at_seconds"], step=1 + plan["measured_steps"],
        seconds_per_step=plan["seconds_per_step"], eval_seconds=plan["eval_seconds"], eval_every_steps=0,
        reserve_seconds=plan["reserve_seconds"])
    assert 40 <= plan["total_steps"] <= 60  # about (15 s - 1.5 s spent - 0.3 s reserve) / 0.25 s
    # ... and the run trained exactly that long, ending within the budget, with its evaluation
    assert result["step"] == plan["total_steps"] and plan["ended_at_step"] == -1
    assert clock() <= 15.0
    # the schedule was built for that length: cosine from base_lr to 0 at the planned end
    lrs = {s: m["train/lr"] for s, m in recorder.scalars.items() if "train/lr" in m}
    expected = schedules.build_schedule(c.schedule, base_lr=c.optim.base_lr, steps_in_epoch=4,
                                        total_steps=plan["total_steps"])
    for s in range(1 + plan["measured_steps"] + 1, plan["total_steps"] + 1):  # every step after the plan
        assert lrs[s] == pytest.approx(float(expected(s - 1)), rel=1e-5, abs=1e-9)
    assert lrs[plan["total_steps"]] < 1e-3 * c.optim.base_lr
    # re-running it unchanged keeps the plan, trains nothing and writes nothing
    before = snapshot(workdir)
    again = train.train_and_evaluate(c, workdir, clock=StepClock(monkeypatch, 0.25))
    assert again["step"] == result["step"] and again["train_seconds"] == 0.0
    assert snapshot(workdir) == before


def test_time_budget_ends_early_when_steps_slow_down(dataset, tmp_path, monkeypatch):
    """Steps that become three times slower after the plan: the run ends before the schedule does, in time."""
    workdir = str(tmp_path / "slow")
    clock = StepClock(monkeypatch, 0.25)
    original = planning.TimeBudget.make_plan

    def then_slower(self, *a, **k):
        plan = original(self, *a, **k)
        clock.seconds_per_step, clock.batches = 0.75, clock.batches / 3  # the same time now, 3x slower steps
        return plan

    monkeypatch.setattr(planning.TimeBudget, "make_plan", then_slower)
    c = own_config(dataset, total_steps=-1, num_epochs=1.0, time_budget_minutes=0.25)
    result = train.train_and_evaluate(c, workdir, clock=clock)
    plan = json.load(open(os.path.join(workdir, planning.BUDGET_FILE)))
    assert plan["ended_at_step"] == result["step"] < plan["total_steps"]
    assert clock() <= 15.0
    assert json.load(open(os.path.join(workdir, "final_metrics.json")))["step"] == result["step"]
    # a re-run of the workdir: finished, nothing to do
    again = train.train_and_evaluate(c, workdir, clock=StepClock(monkeypatch, 0.25))
    assert again["step"] == result["step"] and again["train_seconds"] == 0.0


# ------------------------------------------------------------------------------------------------ extension
def test_extending_a_finished_run_follows_the_new_schedule(dataset, tmp_path, recorder):
    workdir = str(tmp_path / "extend")
    short = own_config(dataset, total_steps=-1, num_epochs=2.0)  # 2 epochs of 4 steps
    first = train.train_and_evaluate(short, workdir)
    assert first["step"] == 8
    # unchanged: nothing trained, evaluated or written
    before = snapshot(workdir)
    recorder.scalars.clear()
    again = train.train_and_evaluate(short, workdir)
    assert again["step"] == 8 and again["train_seconds"] == 0.0 and not recorder.scalars
    assert snapshot(workdir) == before
    # 5 epochs: continues from step 8 to 20 under the 20-step cosine schedule
    longer = own_config(dataset, total_steps=-1, num_epochs=5.0)
    extended = train.train_and_evaluate(longer, workdir)
    assert extended["step"] == 20 and int(extended["state"].step) == 20
    new = schedules.build_schedule(longer.schedule, base_lr=longer.optim.base_lr, steps_in_epoch=4, total_steps=20)
    assert sorted(s for s in recorder.scalars if "train/lr" in recorder.scalars[s]) == list(range(9, 21))
    for s in range(9, 21):  # the update at step s - 1 (0-based) uses lr(s - 1) of the new length
        assert recorder.scalars[s]["train/lr"] == pytest.approx(float(new(s - 1)), rel=1e-5, abs=1e-9)
    # base_lr * (1 + cos(pi * 8 / 20)) / 2 at the first update of the extension: it restarts from 0.65 base_lr
    assert recorder.scalars[9]["train/lr"] == pytest.approx(longer.optim.base_lr * (1 + np.cos(np.pi * 0.4)) / 2,
                                                            rel=1e-6)
    assert json.load(open(os.path.join(workdir, "final_metrics.json")))["step"] == 20


def test_benchmark_script_names_its_dataset_errors(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "own_data.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and str(tmp_path) in proc.stderr


# ------------------------------------------------------------------------------------------------ loss switch
def test_bce_objectness_gradients_do_not_vanish():
    """loss.objectness='bce': d/d(to) is object_scale * (s(to) - IoU) on the assigned slot and noobject_scale *
    s(to) on an empty one (per image, batch of one); the squared error's is s'(to) times smaller."""
    import jax
    import jax.numpy as jnp

    from yolojax.ops import losses

    anchors = jnp.array([[1.0, 1.0], [2.0, 2.0]])
    outputs = jnp.zeros((1, 2, 2, 2, 6)).at[..., 4].set(-6.0)  # every confidence saturated near 0
    boxes = jnp.array([[[0.1, 0.1, 0.4, 0.4]]])  # center in cell (0, 0), shape closest to anchor 0
    classes, mask = jnp.array([[0]]), jnp.array([[True]])

    def parts_grad(objectness, part):
        def f(o):
            return losses.yolov2_loss(o, boxes, classes, mask, anchors=anchors, seen=10 ** 6, ignore_thresh=1.0,
                                      objectness=objectness)[1][part]
        return jax.grad(f)(outputs)[..., 4]

    s = float(jax.nn.sigmoid(-6.0))
    noobj = parts_grad("bce", "noobj")
    np.testing.assert_allclose(noobj[0, 1, 1, 1], 1.0 * s, rtol=1e-5)  # noobject_scale 1
    assert float(noobj[0, 0, 0, 0]) == 0.0  # the assigned slot has no noobj term
    obj = parts_grad("bce", "obj")
    # the assigned slot predicts anchor 0 (1x1 cells = 0.5 x 0.5 of the image) at its cell's center (0.25, 0.25):
    # the box [0, 0, 0.5, 0.5] holds the truth (0.3 x 0.3): IoU 0.09 / 0.25
    iou = 0.36
    np.testing.assert_allclose(obj[0, 0, 0, 0], 5.0 * (s - iou), rtol=1e-4)  # object_scale 5
    mse = parts_grad("mse", "obj")
    np.testing.assert_allclose(mse[0, 0, 0, 0], 5.0 * (s - iou) * s * (1 - s), rtol=1e-4)
    with pytest.raises(ValueError, match="objectness"):
        losses.yolov2_loss(outputs, boxes, classes, mask, anchors=anchors, objectness="focal")
