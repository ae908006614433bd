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

from helpers import ROOT, subprocess_env
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


_IN_BACKGROUND = """
import os, sys
from yolojax import cli
def square(x):
    return os.getpid(), x * x
def fail(name):
    raise FileNotFoundError(f"no such file: {name}")
if sys.argv[1] == "jax":
    import jax  # noqa: F401  (its runtime threads: no fork then)
pid, value = cli.in_background(square, 7)()
try:
    cli.in_background(fail, "x.txt")()
    error = "none"
except FileNotFoundError as e:
    error = str(e)
print(value, "child" if pid != os.getpid() else "inline", error)
"""


@pytest.mark.parametrize("loaded", ["numpy", "jax"])
def test_in_background_returns_the_result_or_raises_the_error(loaded):
    proc = subprocess.run([sys.executable, "-c", _IN_BACKGROUND, loaded], capture_output=True, text=True,
                          env=subprocess_env(), cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    forks = loaded == "numpy" and len(os.sched_getaffinity(0)) >= 2
    assert proc.stdout.split() == ["49", "child" if forks else "inline", "no", "such", "file:", "x.txt"]
    assert "fork" not in proc.stderr  # no "os.fork() was called ... multithreaded" warning


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
