"""Faults a user meets, walked through the real command: a run that goes non-finite, a damaged latest checkpoint, a
second run on a held workdir, a run killed at random moments, a disk that fills up. (The six kinds of checkpoint
damage are covered one by one in test_checkpoints.py; the other items of the bad-input sweep in
test_nothing_silent.py.)"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = ["--config", os.path.join(ROOT, "configs", "quickstart.py"), "--config.model.width=0.125",
        "--config.batch_size=4", "--config.data.image_size=64", "--config.data.eval_image_size=64",
        "--config.data.synthetic.image_width=64", "--config.data.synthetic.image_height=64",
        "--config.data.synthetic.num_train=16", "--config.data.synthetic.num_eval=4", "--config.eval.batch_size=4",
        "--config.data.num_threads=1", "--config.progress_bar=False", "--config.checkpoint.async_save=False",
        "--config.log_every_steps=1", "--config.schedule.burn_in_steps=0"]


def _train(workdir, *extra, timeout=600):
    env = dict(os.environ)  # (XLA flags of the suite: tests/conftest.py)
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "train.py"), "--workdir", str(workdir),
                           *TINY, *extra], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
    """stderr less the run's INFO log lines (absl's "I<mmdd> ..." progress lines)."""
    return [line for line in stderr.strip().splitlines() if line.strip() and not re.match(r"I\d{4} ", line)]


def _all_finite_on_disk(workdir) -> list[int]:
    """Every checkpoint's full state read back without a target: returns the steps, asserting finiteness."""
    import orbax.checkpoint as ocp

    steps = []
    ckdir = os.path.join(workdir, "checkpoints")
    for name in sorted(os.listdir(ckdir), key=lambda n: int(n) if n.isdigit() else -1):
        if not name.isdigit():
            continue
        tree = ocp.StandardCheckpointer().restore(os.path.join(ckdir, name, "state"))
        import jax

        for leaf in jax.tree.leaves(tree):
            leaf = np.asarray(leaf)
            if np.issubdtype(leaf.dtype, np.floating):
                assert np.all(np.isfinite(leaf)), f"checkpoint {name} holds a non-finite value"
        steps.append(int(name))
    return steps


@pytest.mark.slow
def test_huge_learning_rate_stops_in_one_line_and_writes_no_poisoned_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    proc = _train(workdir, "--config.optim.name=sgd", "--config.optim.base_lr=1e6", "--config.total_steps=8",
                  "--config.checkpoint.every_steps=1")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("train: error: NonFiniteLossError:"), proc.stderr[-3000:]
    assert "became nan or inf at step" in lines[0] and "Traceback" not in proc.stderr
    bad_step = int(lines[0].split("at step ")[1].split(":")[0])
    written = _all_finite_on_disk(str(workdir))
    assert written and max(written) < bad_step  # the last good checkpoint is intact, nothing after it


@pytest.mark.slow
def test_damaged_latest_checkpoint_resumes_from_the_earlier_one(tmp_path):
    workdir = tmp_path / "run"
    proc = _train(workdir, "--config.total_steps=4", "--config.checkpoint.every_steps=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 64 flipped bytes in the largest data file of the latest checkpoint (silent corruption for orbax).
    state_dir = workdir / "checkpoints" / "4" / "state"
    files = [os.path.join(d, f) for d, _, fs in os.walk(state_dir) for f in fs if os.sep + "d" + os.sep in
             os.path.join(d, f)]
    target = max(files, key=os.path.getsize)
    data = bytearray(open(target, "rb").read())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    open(target, "wb").write(bytes(data))
    proc = _train(workdir, "--config.total_steps=6", "--config.checkpoint.every_steps=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    damaged = [l for l in (proc.stdout + proc.stderr).splitlines() if "is damaged" in l]
    assert len(damaged) == 1 and "step 4" in damaged[0] and "trying step 2" in damaged[0], proc.stderr[-3000:]
    assert "resuming" in proc.stderr and "at step 2" in proc.stderr  # absl INFO (stderr)
    assert os.path.isdir(workdir / "checkpoints_damaged" / "4")  # moved aside, never deleted
    assert "final step 6" in proc.stdout


@pytest.mark.slow
def test_kill_at_random_moments_resumes_bit_identically(tmp_path):
    """kill -9 three times at random moments of training or of an (asynchronous) checkpoint write, re-running
    the same command each time: the final state equals an uninterrupted run's, bit for bit."""
    import random
    import signal
    import time

    import jax
    import orbax.checkpoint as ocp

    env = dict(os.environ)  # (XLA flags and compilation cache of the suite: tests/conftest.py)
    args = [sys.executable, os.path.join(ROOT, "experiments", "train.py"), *TINY, "--config.total_steps=120",
            "--config.checkpoint.every_steps=4", "--config.checkpoint.async_save=True", "--config.checkpoint.keep=2",
            "--config.eval.every_steps=0"]
    args = [a for a in args if a != "--config.checkpoint.async_save=False"]

    def run_to_end(workdir):
        proc = subprocess.run([*args, "--workdir", str(workdir)], capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    run_to_end(tmp_path / "straight")
    rng = random.Random(0)
    workdir, kills, finished = tmp_path / "killed", 0, False
    while kills < 3 and not finished:
        proc = subprocess.Popen([*args, "--workdir", str(workdir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, cwd=ROOT, env=env)
        # Wait until it trains (a "step N:" line), then kill within the next 0-1 s: mid-step or mid-save.
        for line in proc.stdout:
            if line.startswith("step "):
                break
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        else:
            finished = True  # it ran to the end before a kill: nothing more to interrupt
        proc.wait()
        proc.stdout.close()
    assert kills >= 3, f"only {kills} kills happened before the run finished: make it longer"
    rerun = run_to_end(workdir)
    # the last kill left its lock behind: the rerun took it over and said so (absl warning on stderr)
    assert "took over the stale lock of pid" in rerun.stderr, rerun.stderr[-3000:]

    def final_state(d):
        return jax.tree.leaves(ocp.StandardCheckpointer().restore(os.path.join(d, "checkpoints", "120", "state")))

    a, b = final_state(tmp_path / "straight"), final_state(workdir)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_second_run_on_a_held_workdir_stops_in_one_line_and_the_first_finishes(tmp_path):
    """Item 2 of the bad-input sweep: both runs exited 0 and the first one's final state was never saved."""
    import json
    import signal
    import socket

    workdir = tmp_path / "run"
    env = dict(os.environ)
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "experiments", "train.py"), "--workdir", str(workdir),
                              *TINY, "--config.total_steps=40", "--config.checkpoint.every_steps=20",
                              "--config.eval.every_steps=0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        for line in first.stdout:  # training: the lock is held
            if line.startswith("step "):
                break
        # Paused while the second run starts, so that it cannot end first (it would: 40 tiny steps take less
        # than the second run's start); a paused process is alive, it holds its lock.
        first.send_signal(signal.SIGSTOP)
        try:
            second = _train(workdir, "--config.total_steps=40", "--config.optim.base_lr=0.5")
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 1, second.stderr[-3000:]
        line = _error_lines(second.stderr)
        assert len(line) == 1 and line[0].startswith("train: error: WorkdirInUseError: "), second.stderr[-3000:]
        assert f"in use by pid {first.pid} on host {socket.gethostname()}, started 20" in line[0]
        out, err = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, err[-3000:]
    assert "final step 40" in out
    assert os.path.isdir(workdir / "checkpoints" / "40")  # the first run's final state is saved
    assert json.load(open(workdir / "config.json"))["optim"]["base_lr"] != 0.5  # and its config is the record
    assert (workdir / "lock").read_text() == ""  # released


@pytest.mark.slow
def test_full_disk_stops_in_one_line(tmp_path):
    """Item 14: a checkpoint write that fails (here a file-size limit of 1 MiB: EFBIG, as ENOSPC, from tensorstore)
    printed ~50 orbax tracebacks before the one line."""
    # A file-size limit of 64 KiB (ulimit -f counts KiB; Python ignores SIGXFSZ, so the write fails) is met by the
    # checkpoint's data files only: no XLA cache is written in this run, the other files are small.
    limit = ["bash", "-c", 'ulimit -f 64 && exec "$@"', "limited", sys.executable]
    proc = subprocess.run([*limit, os.path.join(ROOT, "experiments", "train.py"), "--workdir", str(tmp_path / "run"),
                           *TINY, "--config.total_steps=2", "--config.checkpoint.every_steps=1",
                           "--config.eval.every_steps=0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="0"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not re.search(r"^E\d{4} ", proc.stderr, re.M), proc.stderr[-3000:]
    errors = [line for line in _error_lines(proc.stderr) if "error" in line.lower()]
    assert len(errors) == 1 and len(_error_lines(proc.stderr)) < 6, proc.stderr[-3000:]
    assert errors[0].startswith(f"train: error: CheckpointError: writing a checkpoint to {tmp_path / 'run'}"
                                "/checkpoints failed by step 1: File too large (errno 27): ValueError: ")
