"""Shared test helpers: the repository's paths and its ``configs/*.py`` files loaded by path (as the tools load
them), so no test edits ``sys.path``."""
from __future__ import annotations

import importlib.util
import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


def config_module(name: str) -> types.ModuleType:
    """``configs/<name>.py`` as a module (its ``get_config`` and constants)."""
    path = os.path.join(ROOT, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_yolojax_test_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a Python subprocess that imports this directory's helpers (``test_train``...)."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS, env.get("PYTHONPATH", "")) if p)
    return env


def load_script(relpath: str) -> types.ModuleType:
    """An ``experiments/``, ``benchmarks/`` or ``docs/tools/`` script (not a package) as a module, loaded once."""
    name = "_yolojax_script_" + relpath.replace("/", "_").replace(".py", "")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relpath))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]
