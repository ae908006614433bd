"""Training loop: optimizer arithmetic, exact resume, checkpoint/model mismatch, non-finite stop, evaluator glue,
and data parallelism over 8 fake CPU devices (in a subprocess, since XLA_FLAGS must precede jax's start)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import helpers
from helpers import ROOT, config_module
from yolojax.training import train

quickstart = config_module("quickstart")


def tiny_config(**overrides):
    """Quickstart shrunk to seconds: 64 px (2x2 grid), width 1/8, 16 train / 8 eval synthetic images."""
    c = quickstart.get_config()
    c.model.name, c.model.width = "yolov2", 0.125  # the full YOLOv2 graph (passthrough, reorg), tiny
    c.optim.name, c.optim.base_lr = "sgd", 1e-3
    c.batch_size = 4
    c.log_every_steps = 1
    c.progress_bar = False
    c.data.synthetic.image_width = c.data.synthetic.image_height = 64
    c.data.image_size = c.data.eval_image_size = 64
    c.data.synthetic.num_train = 16
    c.data.synthetic.num_eval = 8
    c.data.max_boxes = 8
    c.data.num_threads = 1
    c.eval.batch_size = 8
    c.eval.every_steps = 0
    c.checkpoint.every_steps = 2
    c.checkpoint.async_save = False
    c.schedule.burn_in_steps = 0  # a real learning rate from step 0, so the steps change the parameters
    c.total_steps = 4
    for key, value in overrides.items():
        node = c
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    return c


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


# ------------------------------------------------------------------------------------------------ optimizer
def test_decay_mask_kernels_only():
    params = {"conv0": {"kernel": 1, "bn": {"scale": 1, "bias": 1}}, "out": {"kernel": 1, "bias": 1}}
    assert train.decay_mask(params) == {"conv0": {"kernel": True, "bn": {"scale": False, "bias": False}},
                                        "out": {"kernel": True, "bias": False}}


def test_sgd_matches_darknet_update_by_hand():
    cfg = tiny_config().optim
    cfg.unlock()
    cfg.update(dict(name="sgd", momentum=0.9, weight_decay=0.1, grad_clip_norm=0.0))
    tx = train.make_optimizer(cfg, lambda step: 0.1)
    params = {"k": {"kernel": jnp.array(1.0), "bias": jnp.array(1.0)}}
    grads = {"k": {"kernel": jnp.array(0.5), "bias": jnp.array(0.5)}}
    opt = tx.init(params)
    upd, opt = tx.update(grads, opt, params)
    # darknet: v = g + decay*w (kernels only); w -= lr*v.  kernel: -0.1*(0.5+0.1) ; bias: -0.1*0.5
    np.testing.assert_allclose([upd["k"]["kernel"], upd["k"]["bias"]], [-0.06, -0.05], rtol=1e-6)
    params = optax.apply_updates(params, upd)  # kernel 0.94, bias 0.95
    upd, opt = tx.update(grads, opt, params)
    # v2 = (0.5 + 0.1*0.94) + 0.9*0.6 = 1.134 ; bias: 0.5 + 0.9*0.5 = 0.95
    np.testing.assert_allclose([upd["k"]["kernel"], upd["k"]["bias"]], [-0.1134, -0.095], rtol=1e-6)


def test_grad_clipping_option():
    cfg = tiny_config().optim
    cfg.unlock()
    cfg.update(dict(name="sgd", momentum=0.0, weight_decay=0.0, grad_clip_norm=1.0))
    tx = train.make_optimizer(cfg, lambda step: 1.0)
    params = {"kernel": jnp.zeros(2)}
    upd, _ = tx.update({"kernel": jnp.array([3.0, 4.0])}, tx.init(params), params)
    np.testing.assert_allclose(upd["kernel"], [-0.6, -0.8], rtol=1e-6)


def test_unknown_optimizer_names_field():
    cfg = tiny_config().optim
    cfg.unlock()
    cfg.name = "lamb"
    with pytest.raises(ValueError, match="config.optim.name='lamb'"):
        train.make_optimizer(cfg, lambda step: 1.0)


def test_nonfinite_loss_names_step_and_parts():
    with pytest.raises(train.NonFiniteLossError, match=r"step 17: .*coord=inf.*loss=nan"):
        train.check_finite(17, {"loss": float("nan"), "coord": float("inf"), "obj": 0.5})
    train.check_finite(3, {"loss": 1.0})


# ------------------------------------------------------------------------------------------------ evaluator glue
class _Recorder:
    def __init__(self):
        self.gt, self.dets = [], []

    def add_ground_truth(self, image_id, **kw):
        self.gt.append((image_id, kw))

    def add_detections(self, image_id, **kw):
        self.dets.append((image_id, kw))


def test_eval_glue_converts_to_voc_pixels_and_skips_padding():
    """eval_loop.add_batch: detections clipped and turned into darknet's result-file pixels, ground truth back
    to the annotation's 1-based pixels, padding rows (index -1) skipped."""
    from yolojax.evaluation import loop as eval_loop

    dets = {"boxes": np.array([[[0.0, 0.0, 0.5, 0.5], [0, 0, 0, 0]], [[0.1, 0.1, 0.2, 0.2], [0, 0, 0, 0]]]),
            "scores": np.array([[0.9, 0.0], [0.8, 0.0]]), "classes": np.array([[2, -1], [1, -1]]),
            "count": np.array([1, 1])}
    batch = {"boxes": np.array([[[0.25, 0.5, 0.75, 1.0]], [[0, 0, 1, 1]]]), "classes": np.array([[3], [0]]),
             "mask": np.array([[True], [True]]), "difficult": np.array([[True], [False]]),
             "orig_size": np.array([[100, 200], [0, 0]]), "index": np.array([5, -1])}
    rec = _Recorder()
    assert eval_loop.add_batch([rec], dets, batch, image_id=str, input_hw=(64, 64), letterbox=False) == 1
    (gt_id, gt), (det_id, det) = rec.gt[0], rec.dets[0]
    assert gt_id == det_id == "5" and len(rec.gt) == len(rec.dets) == 1
    # height 100, width 200: x_px = x * 200 + 1, y_px = y * 100 + 1 (VOC 1-based); detections clipped to
    # [1, width] x [1, height] as darknet writes them.
    np.testing.assert_allclose(det["boxes"], [[1, 1, 101, 51]])
    np.testing.assert_allclose(gt["boxes"], [[51, 51, 151, 101]])
    assert det["classes"].tolist() == [2] and gt["classes"].tolist() == [3]
    assert gt["difficult"].tolist() == [True]


def test_eval_glue_undoes_letterbox_and_clips():
    """A 100x200 image letterboxed into 64x64: content rows 16..48. A detection covering the whole input maps
    to the whole image (clipped to [1, 200] x [1, 100]); one at the content box maps exactly onto the image."""
    from yolojax.evaluation import loop as eval_loop

    px = eval_loop.devkit_detections(np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.25, 1.0, 0.75]]), (100, 200), (64, 64),
                                     letterbox=True)
    np.testing.assert_allclose(px, [[1, 1, 200, 100], [1, 1, 200, 100]], atol=1e-9)
    gt = eval_loop.devkit_ground_truth(np.array([[0.5, 0.25, 1.0, 0.5]]), (100, 200), (64, 64), letterbox=True)
    np.testing.assert_allclose(gt, [[101, 1, 201, 51]], atol=1e-9)


# ------------------------------------------------------------------------------------------------ loop
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("full"))
    result = train.train_and_evaluate(tiny_config(total_steps=4), workdir)
    return workdir, result


def test_run_writes_config_logs_and_checkpoints(full_run):
    workdir, result = full_run
    assert result["step"] == 4 and result["num_images"] == 8
    assert 0.0 <= result["map_07"] <= 1.0
    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved["total_steps"] == 4 and saved["model"]["name"] == "yolov2"
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(workdir, "tensorboard")))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[:2] == ["2", "4"]
    assert int(result["state"].seen) == 16 and int(result["state"].step) == 4


def test_rerunning_a_finished_workdir_keeps_its_final_metrics(full_run, monkeypatch):
    """Issue 20: a second run of a finished workdir trained nothing, evaluated again and overwrote
    final_metrics.json with train_images_per_sec=0.0 (which ablate.py reads)."""
    workdir, _ = full_run
    path = os.path.join(workdir, "final_metrics.json")
    before = open(path).read()
    assert json.loads(before)["train_images_per_sec"] > 0
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: pytest.fail("a finished workdir evaluated again"))
    again = train.train_and_evaluate(tiny_config(total_steps=4), workdir)
    assert open(path).read() == before
    assert again["step"] == 4 and again["train_seconds"] == 0.0
    assert again["map_07"] == json.loads(before)["map_07"]


def test_exact_resume_is_bit_identical(full_run, tmp_path):
    """4 steps in one run == 2 steps, stop, then the same command resumed to 4 (params, BN stats, opt state)."""
    _, full = full_run
    workdir = str(tmp_path / "resumed")
    half = train.train_and_evaluate(tiny_config(total_steps=2), workdir)
    assert half["step"] == 2
    resumed = train.train_and_evaluate(tiny_config(total_steps=4), workdir)
    assert resumed["step"] == 4
    for name in ("params", "batch_stats", "opt_state"):
        for a, b in zip(_leaves(getattr(full["state"], name)), _leaves(getattr(resumed["state"], name))):
            np.testing.assert_array_equal(a, b)
    assert int(resumed["state"].seen) == int(full["state"].seen) == 16
    # and training changed the parameters at all (a resume that restored nothing would also "match" step 0)
    init = train.build_experiment(tiny_config()).state
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(init.params), _leaves(full["state"].params)))


def test_workdir_of_another_model_says_so(full_run):
    workdir, _ = full_run
    from yolojax.training import checkpoints

    with pytest.raises(checkpoints.CheckpointMismatchError, match=r"another model.*model\.width: checkpoint 0.125 vs "
                                                                  r"config 0.25"):
        train.train_and_evaluate(tiny_config(**{"model.width": 0.25}), workdir)


def test_num_classes_mismatch_names_fields():
    with pytest.raises(ValueError, match=r"config.model.num_classes=7 .* has 5 classes"):
        train.check_config(tiny_config(**{"model.num_classes": 7}))


# ------------------------------------------------------------------------------------------------ data parallel
_DP_SCRIPT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    import jax, numpy as np
    from test_train import tiny_config
    from yolojax.training import train
    from yolojax.data import pipeline
    assert jax.device_count() == 8, jax.devices()
    config = tiny_config(batch_size=8)
    batch = next(pipeline.make_train_iterator(config.data, seed=0, global_batch_size=8))
    # Noise images with the synthetic boxes: the flat-coloured synthetic scenes give exact ties in max-pooling,
    # whose gradient routing then flips with the last-bit differences of a sharded reduction (BN statistics).
    batch["image"] = np.random.default_rng(0).uniform(0, 1, batch["image"].shape).astype(np.float32)
    updates = {{}}
    for name, devices in (("one", jax.devices()[:1]), ("eight", jax.devices())):
        mesh = train.make_mesh(devices)
        exp = train.build_experiment(config, mesh)
        before = jax.device_get((exp.state.params, exp.state.batch_stats))
        sharded = train.shard_batch(batch, mesh)
        shards = sharded["image"].addressable_shards
        print(name, "shards", len(shards), "rows", sorted({{s.data.shape[0] for s in shards}}),
              "devices", len({{s.device for s in shards}}))
        state, metrics = exp.steps.train(exp.state, sharded)
        after = jax.device_get((state.params, state.batch_stats))
        updates[name] = [np.asarray(a) - np.asarray(b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before))]
        print(name, "loss", float(metrics["loss"]))
    worst = 0.0
    for a, b in zip(updates["one"], updates["eight"]):
        scale = float(np.max(np.abs(a)))
        assert scale > 0, "a leaf did not change: the test would prove nothing"
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-3 * scale)  # every update equal to 0.1% of its size
        worst = max(worst, float(np.max(np.abs(a - b))) / scale)
    print("worst relative update difference", worst)
    print("OK")
""")


@pytest.mark.slow
def test_eight_devices_equal_one_device_step():
    script = _DP_SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env=helpers.subprocess_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert "one shards 1 rows [8] devices 1" in lines
    assert "eight shards 8 rows [1] devices 8" in lines  # the batch really is split, one row per device
    assert lines[-1] == "OK"


def test_bfloat16_switch_keeps_float32_params_and_loss():
    exp = train.build_experiment(tiny_config(**{"model.dtype": "bfloat16", "batch_size": 2}))
    from yolojax.data import pipeline

    batch = next(pipeline.make_train_iterator(exp.config.data, seed=0, global_batch_size=2))
    state, metrics = exp.steps.train(exp.state, train.shard_batch(batch, exp.mesh))
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
    outputs = exp.model.apply({"params": state.params, "batch_stats": state.batch_stats},
                              jnp.asarray(batch["image"]), train=False)
    # the compute really ran in bf16: every output is a bf16 number (the model hands them back as f32)
    out = np.asarray(outputs, np.float32)
    np.testing.assert_array_equal(out, out.astype(jnp.bfloat16).astype(np.float32))


def test_step_applies_the_batchs_photometric_parameters():
    # Placement "device": the step jitters the uint8 images with each row's parameters. The same batch jittered
    # outside the step (float input) gives the same loss; with identity parameters the loss is another one.
    exp = train.build_experiment(tiny_config(**{"data.photometric_on": "device", "batch_size": 2}))
    from yolojax.data import augment, photometric, pipeline

    batch = next(pipeline.make_train_iterator(exp.config.data, seed=0, global_batch_size=2))
    assert batch["photometric"].shape == (2, 3)
    outside = dict(batch, image=np.asarray(photometric.train_inputs(batch["image"], batch["photometric"])))
    del outside["photometric"]
    identity = dict(batch, photometric=np.tile(np.float32(augment.IDENTITY_HSV), (2, 1)))  # same program
    loss = lambda b: float(exp.steps.train(jax.tree.map(jnp.copy, exp.state), train.shard_batch(b, exp.mesh))[1]
                           ["loss"])
    assert loss(batch) == pytest.approx(loss(outside), rel=1e-6)
    assert loss(identity) != pytest.approx(loss(batch), rel=1e-4)


def test_checkpoints_keep_last_k_plus_best(tmp_path):
    from yolojax.training import checkpoints

    mngr = checkpoints.make_manager(str(tmp_path), keep=2, keep_best=True, async_save=False)
    maps = {2: 0.9, 4: 0.5}  # evaluated steps; step 2 is the best
    for step in range(1, 7):
        tree = {"step": jnp.array(step), "params": {"w": jnp.full(3, float(step))}, "seen": jnp.array(4 * step)}
        checkpoints.save(mngr, step, tree, meta={"model": {}}, data_state={"step": step},
                         metrics={"map": maps[step]} if step in maps else None)
    mngr.wait_until_finished()
    assert mngr.all_steps() == [2, 5, 6]  # the last two and the best by mAP
