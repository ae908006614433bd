"""Suite-wide settings: XLA compiles cheaply and once, and, for ``pytest -n 2 --dist loadfile``, files that take
minutes start first (in this order, not xdist's by number of tests), so the two workers finish together instead of
one of them running the longest file alone at the end."""
from __future__ import annotations

import os
import tempfile

# Compilation dominates this suite of tiny models on a CPU: unoptimized CPU code generation (the same HLO
# optimizations, faster LLVM), XLA's older CPU fusion emitters (the newer MLIR ones take ~1.5x the CPU time to
# compile these programs, and with them unoptimized code also runs ~1.5x slower), and one persistent XLA cache
# for the whole run, so identical programs compile once. Set before any test module imports jax; every
# subprocess (CLI, README, kill and multi-process tests) inherits them, and a test that needs another XLA flag adds
# it to these: even the full-width README trainings and the 120-step kill test are faster end to end this way
# than with XLA's optimized CPU code.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                           " --xla_cpu_use_fusion_emitters=false").strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="yolojax-tests-xla-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# Files of the suite whose tests take the longest (seconds of the file on one worker of ``pytest -n 2 --dist
# loadfile``, measured with tests/conftest.py's flags), longest first: handed out in this order, each to the worker
# that frees up first, the two workers end within seconds of each other.
_LONG = ("test_readme.py",  # 190
         "test_faults.py",  # 125
         "test_ablation.py",  # 100
         "test_accelerator.py",  # 80
         "test_readme_own_data.py",  # 65
         "test_train.py",  # 60
         "test_exit_codes.py", "test_tools.py", "test_opencv_parity.py",  # 40
         "test_models.py", "test_ema.py", "test_multiprocess.py",  # 30
         "test_checkpoints.py", "test_one_map.py", "test_darknet.py", "test_notebooks.py",  # 20
         "test_initialization.py", "test_check_data.py", "test_formats_train.py", "test_export.py")  # 10


def pytest_configure(config):
    # pytest-xdist >= 3.7 hands files out by number of tests unless told to keep the collection order (below).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return _LONG.index(name) if name in _LONG else len(_LONG)

    items.sort(key=rank)  # stable: the order within a file is kept
