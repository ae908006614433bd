"""Suite-wide settings: XLA compiles cheaply and once, and, for ``pytest -n 2 --dist loadfile``, files that take
minutes start first, so the two workers finish together instead of one of them running the longest file alone
at the end."""
from __future__ import annotations

import os
import tempfile

# Compilation dominates this suite of tiny models on a CPU: unoptimized CPU code generation (the same HLO
# optimizations, faster LLVM), XLA's older CPU fusion emitters (the newer MLIR ones take ~1.5x the CPU time to
# compile these programs, and with them unoptimized code also runs ~1.5x slower), and one persistent XLA cache
# for the whole run, which subprocesses (the CLI and README tests) inherit, so identical programs compile once.
# Set before any test module imports jax. Every subprocess inherits them (a test that needs another XLA flag adds
# it to these): with them, even the full-width README trainings and the 120-step kill test are faster end to end
# than with XLA's optimized CPU code.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                           " --xla_cpu_use_fusion_emitters=false").strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="yolojax-tests-xla-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# Files of the suite whose tests take the longest (measured with --durations), longest first.
_LONG = ("test_readme.py", "test_ablation.py", "test_faults.py", "test_multiprocess.py", "test_train.py",
         "test_readme_own_data.py", "test_one_map.py", "test_tools.py", "test_notebooks.py", "test_configs.py",
         "test_formats_train.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return _LONG.index(name) if name in _LONG else len(_LONG)

    items.sort(key=rank)  # stable: the order within a file is kept
