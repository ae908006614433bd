"""Imports: no cycle among yolojax modules (function-level imports included), configs that import only
ml_collections and constants, and library modules without import-time side effects."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "yolojax")


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _modules() -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                out[_module_name(os.path.join(d, f))] = os.path.join(d, f)
    return out


def _imports(path: str, name: str, known: set[str]) -> set[str]:
    """yolojax modules ``path`` imports anywhere (module level or inside functions)."""
    tree = ast.parse(open(path).read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_no_import_cycle_among_yolojax_modules():
    modules = _modules()
    known = set(modules)
    graph = {m: _imports(p, m, known) for m, p in modules.items()}
    # A module importing its own parent package is how a submodule reaches a sibling through __init__; that
    # edge would make every package with re-exports cyclic, so it is the one edge not followed.
    graph = {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in graph.items()}
    assert "yolojax.train" not in graph["yolojax.darknet"] and "yolojax.train" not in graph["yolojax.api"]
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_configs_import_only_ml_collections_and_constants():
    out = _run("import sys\n"
               "import configs.yolov2_voc, configs.quickstart, configs.yolov1_voc, configs.tiny_yolov2_voc\n"
               "import configs.fast_yolo_voc, configs.yolov2_ablation\n"
               "configs.yolov2_voc.get_config(); configs.quickstart.get_config()\n"
               "print(sorted(m for m in ('grain', 'cv2', 'jax', 'tensorflow', 'flax') if m in sys.modules))")
    assert out == "[]", out


def test_library_imports_have_no_side_effects():
    out = _run("import cv2\n"
               "from absl import flags, logging\n"
               "before = (cv2.getNumThreads(), flags.FLAGS.is_parsed(), logging.get_verbosity())\n"
               "import yolojax.api, yolojax.train, yolojax.checkpoints, yolojax.eval_loop\n"
               "import yolojax.data.pipeline, yolojax.data.augment, yolojax.data.sources, yolojax.data.synthetic\n"
               "after = (cv2.getNumThreads(), flags.FLAGS.is_parsed(), logging.get_verbosity())\n"
               "print(before == after, before, after)")
    assert out.startswith("True"), out
