"""Imports: the written layer order between the package's folders (docs/architecture.md), imports at the top,
no cycle among yolojax modules, configs that import only ml_collections and light yolojax modules, and library
modules without import-time side effects."""
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


# docs/architecture.md: the package's folders, bottom to top. A module may import from its own folder and the
# folders before it; ``yolojax/__init__.py`` (the public names) and ``yolojax/cli.py`` sit on top.
LAYERS = ("config", "ops", "models", "data", "evaluation", "darknet", "training", "inference", "cli")
# Heavy optional dependencies are the one thing imported inside functions.
LAZY_OK = ("cv2", "onnx", "onnxruntime", "tensorflow", "tensorflow_datasets", "matplotlib", "PIL", "pycocotools",
           "faster_coco_eval", "torch", "tensorboard", "tensorboardX", "simplejpeg")


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # yolojax/__init__.py
        return len(LAYERS)
    return LAYERS.index(parts[1])


def test_every_module_belongs_to_a_layer():
    for m in _modules():
        if m != "yolojax":
            assert m.split(".")[1] in LAYERS, f"{m}: not in a folder of docs/architecture.md's layer order"


def test_imports_follow_the_layer_order():
    modules = _modules()
    known = set(modules)
    wrong = []
    for m, p in modules.items():
        for t in _imports(p, m, known):
            if t != "yolojax" and _layer(t) > _layer(m):
                wrong.append(f"{m} imports {t}")
    assert not wrong, "imports against the layer order: " + "; ".join(sorted(wrong))


def _local_imports(path: str) -> list[str]:
    tree = ast.parse(open(path).read())
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
            for name in names:
                if name.split(".")[0] not in LAZY_OK:
                    found.append(f"{path}:{node.lineno} {name}")
    return found


def test_imports_are_at_the_top():
    """Function-local imports only for heavy optional dependencies (the package and the entry points)."""
    paths = list(_modules().values())
    paths += [os.path.join(ROOT, "experiments", f) for f in os.listdir(os.path.join(ROOT, "experiments"))
              if f.endswith(".py")]
    found = [f for p in paths for f in _local_imports(p)]
    assert not found, "function-local imports: " + "; ".join(found)


def test_no_import_cycle_among_yolojax_modules():
    modules = _modules()
    known = set(modules)
    graph = {m: _imports(p, m, known) for m, p in modules.items()}
    # A module importing its own parent package is how a submodule reaches a sibling through __init__; that
    # edge would make every package with re-exports cyclic, so it is the one edge not followed.
    graph = {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in graph.items()}
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
               "import yolojax.inference.api, yolojax.training.train, yolojax.training.checkpoints\n"
               "import yolojax.evaluation.loop\n"
               "import yolojax.data.pipeline, yolojax.data.augment, yolojax.data.sources, yolojax.data.synthetic\n"
               "after = (cv2.getNumThreads(), flags.FLAGS.is_parsed(), logging.get_verbosity())\n"
               "print(before == after, before, after)")
    assert out.startswith("True"), out
