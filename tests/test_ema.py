"""EMA of the variables (config.optim.ema, yolojax.training.ema): the warm-up rule by hand, the average recomputed
in numpy
from the raw variables of every step, frozen leaves, a non-finite EMA stopping the run, bit-exact resume, which
weights evaluation and the API use, and the one-line error for EMA weights a checkpoint does not hold."""
from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from test_train import tiny_config  # noqa: E402

DECAY, WARMUP = 0.9, 3  # large enough that the EMA lags the raw weights visibly after a few steps
FROZEN = "/conv0/"  # optim.freeze: the first conv layer (params and batch statistics)
FROZEN_KEY = "['conv0']"  # the same layer in jax.tree_util.keystr paths


def ema_config(**overrides):
    """Tiny YOLOv2 (64 px, width 1/8) trained with Adam (it moves every weight by ~lr per step) and the EMA on."""
    return tiny_config(**{"model.name": "tiny_yolov2", "optim.name": "adam", "optim.base_lr": 2e-3,
                          "optim.weight_decay": 0.0, "optim.ema.decay": DECAY, "optim.ema.warmup_steps": WARMUP,
                          "optim.freeze": FROZEN, **overrides})


def host(tree):
    return jax.tree.map(lambda x: np.array(jax.device_get(x)), tree)


def flat(tree):
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def assert_trees_equal(a, b):
    fa, fb = flat(host(a)), flat(host(b))
    assert sorted(fa) == sorted(fb) and fa
    for k in fa:
        assert np.array_equal(fa[k], fb[k]), k


def max_diff(a, b):
    fa, fb = flat(host(a)), flat(host(b))
    return max(float(np.max(np.abs(fa[k] - fb[k]))) for k in fa)


# ---------------------------------------------------------------------------------------------- the rule
def test_warmup_rule_by_hand():
    from yolojax.training import ema

    # d_t = 0.9999 * (1 - exp(-t / 2000)): ultralytics' defaults
    for t, want in ((1, 0.000499825033328626), (2, 0.0009994002166083156), (100, 0.048765698441736054),
                    (2000, 0.6320573467726748), (20000, 0.9998546046102305)):
        assert float(ema.decay_at(t, 0.9999, 2000)) == pytest.approx(want, rel=1e-6), t
    assert float(ema.decay_at(1, 0.99, 0)) == pytest.approx(0.99, rel=1e-7)  # no warm-up: the decay itself
    # one update by hand: d_1 = 0.9 * (1 - exp(-1/3)) = 0.25512182; ema = d * 1 + (1 - d) * 3
    out = ema.update({"params": {"w": np.float32(1.0)}, "batch_stats": {}},
                     {"params": {"w": np.float32(3.0)}}, 1, decay=0.9, warmup_steps=3)
    assert float(out["params"]["w"]) == pytest.approx(0.25512182 + 0.74487818 * 3, rel=1e-6)


def test_settings_name_the_field():
    from yolojax.training import ema

    c = ema_config()
    assert ema.settings(c.optim) == {"decay": DECAY, "warmup_steps": WARMUP}
    assert ema.settings(tiny_config().optim) is None  # decay 0: off
    for field, value, named in (("decay", 1.0, "config.optim.ema.decay=1.0"),
                                ("decay", -0.1, "config.optim.ema.decay=-0.1"),
                                ("warmup_steps", -1, "config.optim.ema.warmup_steps=-1")):
        with pytest.raises(ValueError, match=named.replace(".", r"\.")):
            ema.settings(ema_config(**{f"optim.ema.{field}": value}).optim)


# ------------------------------------------------------------------------------------- inside train_step
def test_ema_follows_the_formula_step_by_step():
    """Four jitted steps one at a time; the EMA recomputed in float64 numpy from the raw variables after each
    step equals the state's to float32 rounding; frozen leaves stay bit-equal; sharded like the params."""
    from yolojax.data import pipeline
    from yolojax.training import train

    config = ema_config()
    exp = train.build_experiment(config)
    state = exp.state
    ref = host({"params": state.params, "batch_stats": state.batch_stats})
    init = ref
    assert_trees_equal(state.ema, ref)  # ema_0 = the initial variables
    batches = pipeline.make_train_iterator(config.data, seed=config.seed, global_batch_size=config.batch_size)
    for t in range(1, 5):
        state, metrics = exp.steps.train(state, train.shard_batch(next(batches), exp.mesh))
        raw = host({"params": state.params, "batch_stats": state.batch_stats})
        d = DECAY * (1.0 - math.exp(-t / WARMUP))
        assert float(metrics["ema_decay"]) == pytest.approx(d, rel=1e-6)
        ref = jax.tree.map(lambda e, v: d * e.astype(np.float64) + (1.0 - d) * v.astype(np.float64), ref, raw)
    got, ref_flat, raw_flat, init_flat = flat(host(state.ema)), flat(ref), flat(raw), flat(init)
    assert sorted(got) == sorted(ref_flat) and any("batch_stats" in k for k in got)
    for k in got:
        if FROZEN_KEY in k:  # frozen: EMA == raw == initial, bit for bit
            assert np.array_equal(got[k], init_flat[k]) and np.array_equal(raw_flat[k], init_flat[k]), k
        else:
            np.testing.assert_allclose(got[k], ref_flat[k], rtol=2e-6, atol=1e-7, err_msg=k)
    moved = [k for k in got if FROZEN_KEY not in k and not np.allclose(got[k], raw_flat[k], rtol=0, atol=1e-5)]
    assert len(moved) > len(got) // 2  # the EMA really lags the raw weights: the comparison can fail
    for a, b in zip(jax.tree.leaves(state.ema["params"]), jax.tree.leaves(state.params)):
        assert a.sharding == b.sharding  # replicated like the params

    # A non-finite EMA makes the step's state_finite 0, which stops the loop before any checkpoint (check_finite).
    poisoned = state.replace(ema=jax.tree.map(lambda x: x * np.float32("nan"), state.ema))
    _, metrics = exp.steps.train(poisoned, train.shard_batch(next(batches), exp.mesh))
    host_metrics = {k: float(v) for k, v in metrics.items()}
    assert math.isfinite(host_metrics["loss"]) and host_metrics["state_finite"] == 0.0
    with pytest.raises(train.NonFiniteLossError, match="at step 5"):
        train.check_finite(5, host_metrics)


# ------------------------------------------------------------------------------ checkpoints and evaluation
@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """4 steps in one run, checkpoints every 2, evaluated at the end."""
    from yolojax.training import train

    workdir = str(tmp_path_factory.mktemp("straight"))
    return workdir, train.train_and_evaluate(ema_config(total_steps=4), workdir)


def test_resume_is_bit_exact(straight, tmp_path):
    """2 steps, stop, a fresh process state resumed to 4 == 4 straight: EMA and raw trees bit-identical."""
    from yolojax.training import train

    _, full = straight
    workdir = str(tmp_path / "resumed")
    assert train.train_and_evaluate(ema_config(total_steps=2), workdir)["step"] == 2
    resumed = train.train_and_evaluate(ema_config(total_steps=4), workdir)
    assert resumed["step"] == 4
    assert_trees_equal(resumed["state"].ema, full["state"].ema)
    assert_trees_equal(resumed["state"].params, full["state"].params)
    assert_trees_equal(resumed["state"].batch_stats, full["state"].batch_stats)
    assert max_diff(full["state"].ema["params"], full["state"].params) > 1e-4  # two different trees


def test_checkpoint_says_which_weights_it_holds(straight):
    from yolojax.training import checkpoints

    workdir, _ = straight
    _, meta = checkpoints.restore_variables(os.path.join(workdir, "checkpoints", "4"))
    assert meta["weights"] == ["raw", "ema"] and meta["ema"] == {"decay": DECAY, "warmup_steps": WARMUP}
    assert "ema" in meta["state_keys"]
    final = json.load(open(os.path.join(workdir, "final_metrics.json")))
    assert final["weights"] == "ema" and final["step"] == 4


def test_api_and_evaluation_use_the_ema_weights(straight):
    from yolojax.evaluation import evaluators as evaluators_lib
    from yolojax.inference import api
    from yolojax.training import checkpoints

    workdir, logged = straight
    state = logged["state"]
    assert logged["weights"] == "ema"
    auto, raw = api.load_checkpoint(workdir), api.load(workdir, "raw")
    assert auto.weights == "ema" and raw.weights == "raw" and "(ema weights)" in auto.description
    assert_trees_equal(auto.variables, state.ema)
    assert_trees_equal(raw.variables, {"params": state.params, "batch_stats": state.batch_stats})
    assert_trees_equal(api.load_checkpoint(workdir, weights="ema").variables, state.ema)
    # only the asked-for tree is read (orbax partial restore; spied on the numpy handler it restores through)
    import orbax.checkpoint as ocp

    asked = []
    deserialize = ocp.type_handlers.NumpyHandler.deserialize

    async def spy(self, infos, args=None):
        asked.extend(info.name for info in infos)
        return await deserialize(self, infos, args)

    for weights, prefixes in (("ema", {"ema"}), ("raw", {"params", "batch_stats"})):
        asked.clear()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ocp.type_handlers.NumpyHandler, "deserialize", spy)
            _, meta = checkpoints.restore_variables(workdir, weights=weights)
        assert meta["restored_weights"] == weights and asked
        assert {name.split(".")[0] for name in asked} == prefixes, sorted(asked)[:5]

    config = api.load_config(os.path.join(workdir, "config.json"))

    def score(detector):
        evaluators = evaluators_lib.make_evaluators(detector.class_names)
        api.evaluate(detector, config.data, config.data.eval_split, evaluators,
                     score_threshold=config.eval.score_threshold, iou_threshold=config.eval.nms_iou_threshold,
                     max_detections=config.eval.max_detections, batch_size=config.eval.batch_size)
        return evaluators_lib.compute(evaluators)

    ema_scored, raw_scored = score(auto), score(raw)

    def signature(r):  # everything the evaluators saw: per-class APs and detection counts
        return np.concatenate([np.nan_to_num(r["ap_07"], nan=-1), np.nan_to_num(r["ap_area"], nan=-1),
                               r["num_detections"]])

    assert not np.array_equal(signature(ema_scored), signature(raw_scored))  # the two weights score differently
    for key in ("map_07", "map_area"):  # ... and training's evaluation scored the EMA ones
        assert logged[key] == pytest.approx(ema_scored[key], abs=1e-12, nan_ok=True), key
    np.testing.assert_array_equal(signature(logged), signature(ema_scored))


# ------------------------------------------------------------------------------ a checkpoint without EMA
@pytest.fixture(scope="module")
def no_ema_workdir(straight, tmp_path_factory):
    """Variables only (as experiments/convert_darknet.py writes them: the raw ones of the straight run) plus the
    config.json a workdir has."""
    from yolojax.training import checkpoints

    config = ema_config(**{"optim.ema.decay": 0.0})
    state = straight[1]["state"]
    variables = host({"params": state.params, "batch_stats": state.batch_stats})
    workdir = str(tmp_path_factory.mktemp("no_ema"))
    checkpoints.write_variables(workdir, variables, meta={"model": checkpoints.model_signature(config)})
    checkpoints.write_config(workdir, config)
    return workdir, variables


def test_no_ema_checkpoint_gives_raw_by_default_and_errors_for_ema(no_ema_workdir):
    from yolojax.inference import api
    from yolojax.training import checkpoints

    workdir, variables = no_ema_workdir
    found, meta = checkpoints.restore_variables(workdir)
    assert meta["weights"] == ["raw"] and meta["restored_weights"] == "raw"
    assert_trees_equal(found, dict(variables))
    assert api.load_checkpoint(workdir).weights == "raw"
    ckpt = os.path.join(workdir, "checkpoints", "0")
    with pytest.raises(checkpoints.CheckpointError, match=f"^checkpoint {ckpt} holds no EMA weights"):
        checkpoints.restore_variables(workdir, weights="ema")
    with pytest.raises(api.LoadError, match="holds no EMA weights"):
        api.load_checkpoint(workdir, weights="ema")
    with pytest.raises(api.LoadError, match="weights='best': expected one of auto, ema, raw"):
        api.load_checkpoint(workdir, weights="best")
    assert os.path.isdir(ckpt) and not os.path.exists(os.path.join(workdir, "checkpoints_damaged"))  # not damage


def test_detect_cli_weights_ema_without_ema_is_one_line(no_ema_workdir, tmp_path):
    workdir, _ = no_ema_workdir
    env = dict(os.environ)  # (XLA flags of the suite: tests/conftest.py)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "detect.py"), "--workdir", workdir,
                           "--weights", "ema", "--out_dir", str(tmp_path / "out"),
                           os.path.join(ROOT, "configs", "quickstart.py")],  # any existing file: fails before
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and lines[0].startswith("detect: error: ")
    assert f"checkpoint {os.path.join(workdir, 'checkpoints', '0')} holds no EMA weights" in lines[0], lines[0]


def test_ema_starts_from_restored_weights_when_the_checkpoint_has_none(no_ema_workdir, tmp_path, caplog):
    """Training with EMA on from variables without one: ema_0 = those variables (not the fresh random init)."""
    import shutil

    from yolojax.training import train

    source, written = no_ema_workdir
    workdir = str(tmp_path / "from_variables")
    shutil.copytree(source, workdir)
    caplog.set_level(logging.INFO, logger="absl")
    result = train.train_and_evaluate(ema_config(total_steps=1), workdir)
    assert "EMA (config.optim.ema.decay=0.9) starts from the weights of step 0" in caplog.text
    d = DECAY * (1.0 - math.exp(-1 / WARMUP))
    v0 = host(dict(written))
    v1 = host({"params": result["state"].params, "batch_stats": result["state"].batch_stats})
    want = jax.tree.map(lambda a, b: d * a.astype(np.float64) + (1.0 - d) * b, v0, v1)
    got = flat(host(result["state"].ema))
    for k, w in flat(want).items():
        np.testing.assert_allclose(got[k], w, rtol=2e-6, atol=1e-7, err_msg=k)
    assert result["weights"] == "ema"
