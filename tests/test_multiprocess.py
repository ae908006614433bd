"""Two processes on this machine, joined with jax.distributed.initialize on localhost, train a few quickstart
steps together (each feeding its half of every global batch) and end with identical parameters."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_WORKER = textwrap.dedent("""
    import hashlib, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address="localhost:{port}", num_processes=2, process_id={pid},
                               local_device_ids=[0])
    import numpy as np
    from test_train import tiny_config
    from yolojax.training import train
    assert jax.process_count() == 2 and jax.device_count() == 2 and jax.local_device_count() == 1
    result = train.train_and_evaluate(tiny_config(total_steps=3, batch_size=4), {workdir!r})
    state = result["state"]
    leaves = [np.asarray(s.data) for x in jax.tree.leaves((state.params, state.batch_stats))
              for s in x.addressable_shards]
    digest = hashlib.sha256(b"".join(a.tobytes() for a in leaves)).hexdigest()
    print("RESULT", jax.process_index(), int(state.step), int(state.seen), result["num_images"], digest, flush=True)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_agree_on_parameters(tmp_path):
    port = _free_port()
    env = helpers.subprocess_env()  # (XLA flags of the suite: tests/conftest.py)
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER.format(root=ROOT, tests=os.path.join(ROOT, "tests"),
                                                                   port=port, pid=i, workdir=str(tmp_path))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=540)
            outs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for code, out, err in outs:
        assert code == 0, out + err[-4000:]
    results = [next(line.split()[1:] for line in out.splitlines() if line.startswith("RESULT")) for _, out, _ in outs]
    assert sorted(r[0] for r in results) == ["0", "1"]
    # both at step 3 having seen 3 global batches of 4, both evaluated all 8 held-out images
    assert all(r[1:4] == ["3", "12", "8"] for r in results), results
    assert results[0][4] == results[1][4]  # bit-identical parameters and batch statistics
