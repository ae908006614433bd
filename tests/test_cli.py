"""One command-line style: every entry point answers --help (exit 0) naming its own flags, takes --config from
any working directory, and reports an internal error (a bug) with its traceback."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys

import pytest
from absl import flags

from helpers import ROOT
from yolojax import cli

EXPERIMENTS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments")) if f.endswith(".py"))
_DEFINE = re.compile(r"DEFINE_\w+\(\s*\"(\w+)\"")


def _defined_flags(name: str) -> list[str]:
    """The flag names a script defines, read from its source (independently of absl's help text)."""
    source = open(os.path.join(ROOT, "experiments", f"{name}.py")).read()
    return _DEFINE.findall(source)


def test_every_entry_point_is_listed():
    assert {"train", "evaluate", "detect", "export", "compute_anchors", "check_data", "show_batch", "ablate",
            "convert_darknet", "prepare_voc", "demo"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_help_exits_0_and_names_the_tools_flags(name):
    proc = subprocess.run([sys.executable, os.path.join("experiments", f"{name}.py"), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = _defined_flags(name)
    assert names, f"{name}.py defines no flag"
    for flag in names:
        assert f"--{flag}:" in proc.stdout or f"--[no]{flag}:" in proc.stdout, f"{name}.py --help: no --{flag}"
    assert "--xla_" not in proc.stdout and "--jax_" not in proc.stdout  # its own flags, not every library's


def test_internal_key_error_keeps_its_traceback():
    def main(argv):
        raise KeyError("a bug, not bad input")

    fv = flags.FlagValues()
    with pytest.raises(KeyError):
        cli.invoke(main, prog="tool", argv=["tool"], flag_values=fv)
    assert cli.invoke(lambda argv: (_ for _ in ()).throw(ValueError("bad\ninput")), prog="tool", argv=["tool"],
                      flag_values=fv) == 1


@pytest.mark.slow
def test_train_with_an_absolute_config_path_from_another_directory(tmp_path):
    """configs/*.py import only ml_collections and yolojax: no path hack, from any working directory."""
    config = os.path.join(ROOT, "configs", "quickstart.py")
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "train.py"), f"--config={config}", f"--workdir={workdir}",
         "--config.total_steps=2", "--config.batch_size=4", "--config.model.width=0.125",
         "--config.data.synthetic.num_train=8", "--config.data.synthetic.num_eval=4", "--config.eval.batch_size=4",
         "--config.eval.every_steps=2", "--config.checkpoint.every_steps=2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "config.json").is_file() and (workdir / "final_metrics.json").is_file()


def _child_pid_and_square(x):
    return os.getpid(), x * x


def _fail(name):
    raise FileNotFoundError(f"no such file: {name}")


def test_in_background_returns_the_result_or_raises_the_error():
    wait = cli.in_background(_child_pid_and_square, 7)
    pid, value = wait()
    assert value == 49
    assert pid != os.getpid() or len(os.sched_getaffinity(0)) < 2  # a second process where one can run
    with pytest.raises(FileNotFoundError, match="no such file: x.txt"):
        cli.in_background(_fail, "x.txt")()


def test_lazy_import_loads_on_first_use():
    code = ("import sys\nfrom yolojax import cli\nm = cli.lazy_import('yolojax.data.pipeline')\n"
            "print('grain' in sys.modules, end=' ')\nm.make_eval_batches\nprint('grain' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False True"


def test_keep_freed_memory_applies_with_glibc():
    code = "from yolojax import cli\nprint(cli.keep_freed_memory())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert proc.stdout.strip() == str(expected)
