"""Train and evaluate a yolojax config.

  python experiments/train.py --config configs/yolov2_voc.py --workdir runs/yolov2 \
      [--config.optim.base_lr=5e-4] [--config.total_steps=100]
  python experiments/train.py --config runs/yolov2/config.json --workdir runs/yolov2_more   # a saved config

Re-running the same command on the same workdir resumes from its newest intact checkpoint; a resumed run whose
config changes the data, batch size, schedule, optimizer, loss or seed stops naming the fields, unless
--allow_config_change (the change goes to <workdir>/config_history.jsonl). One run at a time: a second run on a
workdir in use stops naming the holder (pid, host, start time); a killed run's lock is taken over. Multi-host: start
one process per host with --distributed (jax.distributed.initialize() reads the cluster from the environment,
or pass --coordinator_address/--num_processes/--process_id). Bad input ends with one line
``train: error: ...`` and exit status 1 (--debug shows the traceback).
"""


from absl import app, flags
from ml_collections import config_flags

from yolojax import cli

jax = cli.lazy_import("jax")
train = cli.lazy_import("yolojax.training.train")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file (optionally :arg) or a "
                                          "workdir's config.json.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the resolved config.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (with --distributed).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --distributed).")
_ALLOW_CHANGE = flags.DEFINE_bool("allow_config_change", False, "Resume a workdir with a config that changes what its "
                                  "earlier steps meant (data, batch size, schedule, optimizer, loss, seed); the "
                                  "change is appended to <workdir>/config_history.jsonl.")
flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")

    config = _CONFIG.value
    config.get("model")  # a config file that did not load ends here, before JAX and the library load
    if _DISTRIBUTED.value:
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)

    result = train.train_and_evaluate(config, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
    if jax.process_index() == 0:
        print(f"final step {result['step']}: mAP@0.5 VOC07={result['map_07']:.4f} area={result['map_area']:.4f}")
    return 0


if __name__ == "__main__":
    cli.run(main, prog="train")
