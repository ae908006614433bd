"""What an accelerator needs and a CPU run never shows: no host transfer inside the step loop between log steps,
bf16 training that tracks f32, the persistent compilation cache, and ``benchmarks/accelerator_check.py --smoke``
(the GPU check's own code, on the CPU at tiny settings)."""

import importlib.util
import os
import re
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src import config as jax_config
from jax._src.array import ArrayImpl

from helpers import ROOT
from test_train import tiny_config
from yolojax.data import pipeline
from yolojax.training import train

_GUARDED = ("disallow", "disallow_explicit")


@pytest.fixture
def host_reads(monkeypatch):
    """Every device -> host read of a jax array (``np.asarray``, ``float()``, ``device_get``, ``.item()`` all go
    through ``ArrayImpl._value`` or ``copy_to_host_async``), with whether the device -> host transfer guard was
    on. On a GPU the runtime raises at such a read inside ``train.no_host_transfers``; on the CPU it does not
    check (the array is already in host memory), so this raises in its place, as the GPU would."""
    reads = []
    value, copy_async = ArrayImpl._value, ArrayImpl.copy_to_host_async

    def check(what):
        guarded = jax_config.transfer_guard_device_to_host.value in _GUARDED
        reads.append(guarded)
        if guarded:
            raise RuntimeError(f"device -> host transfer ({what}) inside the guarded step loop")

    def guarded_value(self):
        check("read")
        return value.fget(self)

    def guarded_copy(self):
        check("copy_to_host_async")
        return copy_async(self)

    monkeypatch.setattr(ArrayImpl, "_value", property(guarded_value))
    monkeypatch.setattr(ArrayImpl, "copy_to_host_async", guarded_copy)
    return reads


def test_guard_catches_a_host_read(host_reads):
    x = jnp.arange(3.0) + 1
    assert float(x.sum()) == 6.0 and host_reads == [False]
    with train.no_host_transfers(), pytest.raises(RuntimeError, match="inside the guarded step loop"):
        float(x.sum())
    with train.no_host_transfers():
        jax.jit(lambda a: a + 1)(x)  # device arrays in and out: allowed
    assert host_reads == [False, True]  # the read outside, the refused one inside


def test_step_loop_makes_no_host_transfer_between_log_steps(tmp_path, host_reads):
    """The whole loop (prefetch, steps, logging every 3rd step, evaluation and checkpoint at the end) runs; every
    device -> host read happens outside the guarded step (the log, evaluation and checkpoint actions), none
    inside it."""
    c = tiny_config(**{"total_steps": 6, "log_every_steps": 3, "checkpoint.every_steps": 6,
                       "data.photometric_on": "device"})  # the accelerator's step: HSV jitter on the device
    result = train.train_and_evaluate(c, str(tmp_path / "run"))
    assert result["step"] == 6
    assert host_reads and not any(host_reads)  # reads happened (the logs), all of them outside the guard


@pytest.mark.parametrize("where", ["batches", "step"])
def test_a_host_read_in_the_step_loop_fails(tmp_path, monkeypatch, host_reads, where):
    """The same loop with a per-step host sync slipped in (a ``float`` of the batch, as a careless progress bar
    might do), in the prefetching or around the step, stops at the first step: the guard covers the step loop,
    not only the test's own calls."""
    if where == "batches":
        real_next = pipeline.prefetch_to_device.__next__

        def syncing_next(self):
            batch = real_next(self)
            float(batch["image"].max())
            return batch

        monkeypatch.setattr(pipeline.prefetch_to_device, "__next__", syncing_next)
    else:
        real_make_steps = train.make_steps

        def make_syncing_steps(*args, **kwargs):
            steps = real_make_steps(*args, **kwargs)
            step = steps.train
            steps.train = lambda state, batch: step(state, batch) if float(batch["mask"].sum()) >= 0 else None
            return steps

        monkeypatch.setattr(train, "make_steps", make_syncing_steps)
    with pytest.raises(RuntimeError, match="inside the guarded step loop"):
        train.train_and_evaluate(tiny_config(**{"total_steps": 2}), str(tmp_path / "run"))


def test_compilation_cache_kept_when_jax_has_one(tmp_path):
    """The suite (tests/conftest.py) gives JAX its own cache directory: the config's does not replace it."""
    assert jax.config.jax_compilation_cache_dir
    assert train.enable_compilation_cache(str(tmp_path)) == jax.config.jax_compilation_cache_dir
    assert not os.listdir(tmp_path)
    assert tiny_config().compilation_cache_dir  # on by default


def _losses(dtype: str, steps: int = 50) -> np.ndarray:
    c = tiny_config(**{"model.name": "tiny_yolov2", "model.dtype": dtype, "batch_size": 8, "total_steps": steps})
    exp = train.build_experiment(c)
    batches = pipeline.make_train_iterator(c.data, seed=c.seed, global_batch_size=c.batch_size)
    state, metrics = exp.state, []
    for _ in range(steps):
        state, m = exp.steps.train(state, train.shard_batch(next(batches), exp.mesh))
        metrics.append(m["loss"])
    return np.asarray(jax.device_get(metrics), np.float64)


@pytest.mark.slow
def test_bf16_training_tracks_f32():
    """50 SGD steps (lr 1e-3, batch 8) of Tiny YOLOv2 at width 1/8 from the same initial weights on the same
    batches, in f32 and in bf16 (bf16 compute; f32 parameters, optimizer state and loss).

    Tolerances: the first loss (same weights, same batch: the forward pass's precision only) within 1% (measured
    0.2%); the mean loss of every window of 10 steps within 10% (measured 0.1-3.8%; the runs drift apart as
    training amplifies the rounding); both fall by a fifth or more over the 50 steps (measured 27%)."""
    f32, bf16 = _losses("float32"), _losses("bfloat16")
    assert np.all(np.isfinite(bf16))
    assert abs(bf16[0] - f32[0]) <= 0.01 * f32[0]
    w32, w16 = f32.reshape(5, 10).mean(1), bf16.reshape(5, 10).mean(1)
    np.testing.assert_allclose(w16, w32, rtol=0.10)
    assert w32[-1] < 0.8 * w32[0] and w16[-1] < 0.8 * w16[0]


@pytest.mark.slow
def test_accelerator_check_smoke(tmp_path):
    """The GPU check's own code on the CPU at tiny settings: throughput rows, the training loop through
    ``train.train_and_evaluate`` on a written JPEG devkit with grain workers, every multi-scale size compiled
    once, the loss, one evaluation, and the table last; the compilation cache it configures is filled."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # its own config's cache
    cache = tmp_path / "xla"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "accelerator_check.py"), "--smoke",
                           "--workdir", str(tmp_path / "work"), "--compilation_cache_dir", str(cache)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    table = out[out.rindex("| section |"):].strip().splitlines()
    assert table == out.strip().splitlines()[-len(table):]  # the table is printed last
    rows = {line.split("|")[2].strip(): line.split("|")[3].strip() for line in table[2:]}
    for name in ("yolov2 bfloat16 train", "tiny_yolov2 float32 train"):
        assert re.fullmatch(r"[0-9.]+ img/s, MFU [0-9.]+% .*", rows[name]), rows[name]
    assert rows["each size compiled once"].startswith("yes: 2 sizes"), rows["each size compiled once"]
    first, last = (float(x) for x in re.match(r"([0-9.]+) -> ([0-9.]+)", rows["loss first -> last"]).groups())
    assert np.isfinite(first) and np.isfinite(last)
    assert re.match(r"mAP@0.5 VOC07 [0-9.]+ ", rows["evaluation at the end"])
    assert re.match(r"[0-9.]+ img/s", rows["images/s"]) and re.match(r"[0-9.]+%", rows["device idle fraction"])
    assert re.match(r"[0-9.]+ img/s per core", rows["host pipeline"])
    assert os.listdir(cache)  # the persistent compilation cache was on, in the directory asked for


def test_gpu_wheels_install_takes_only_what_the_python_lacks(tmp_path, capsys):
    """``benchmarks/gpu_wheels.py install`` (offline, on the accelerator machine) installs a wheel whose
    distribution this python lacks into DEST/site, keeps the python's own install of one it has, and skips a
    binary wheel built for another python."""
    spec = importlib.util.spec_from_file_location("gpu_wheels", os.path.join(ROOT, "benchmarks", "gpu_wheels.py"))
    gpu_wheels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_wheels)

    def wheel(name: str, tag: str = "py3-none-any") -> None:
        with zipfile.ZipFile(tmp_path / f"{name}-0.1-{tag}.whl", "w") as z:
            z.writestr(f"{name}.py", "VALUE = 1\n")
            z.writestr(f"{name}-0.1.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
            z.writestr(f"{name}-0.1.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
            z.writestr(f"{name}-0.1.dist-info/RECORD", "")

    wheel("yolojax_absent_dist")
    wheel("tqdm")  # this python has tqdm: its own stays
    wheel("yolojax_other_python", "cp27-cp27mu-manylinux1_x86_64")
    assert gpu_wheels.main(["install", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    installed = sorted(set(os.listdir(tmp_path / "site")) - {"__pycache__"})
    assert installed == ["yolojax_absent_dist-0.1.dist-info", "yolojax_absent_dist.py"]
    assert "have tqdm" in out and "skip yolojax_other_python" in out
