"""Issue 20 (one house): one logging, the defects it names, one path per job."""

import importlib
import os
import re

import numpy as np
import optax

from helpers import ROOT
from yolojax.training import schedules


def test_piecewise_steps_is_optax_piecewise_constant(monkeypatch):
    calls = []
    real = optax.piecewise_constant_schedule

    def spy(init_value, boundaries_and_scales=None):
        calls.append(dict(boundaries_and_scales))
        return real(init_value, boundaries_and_scales)

    monkeypatch.setattr(optax, "piecewise_constant_schedule", spy)
    s = schedules.piecewise_steps(1e-3, [-1, 10, 10, 20], [10.0, 0.1, 0.5, 0.1])
    assert calls == [{-1: 10.0, 10: 0.05, 20: 0.1}]  # a repeated boundary compounds its scales
    # darknet numbering: update k is darknet's k + 1; scales compound
    got = [float(s(k)) for k in (0, 8, 9, 18, 19)]
    np.testing.assert_allclose(got, [1e-2, 1e-2, 5e-4, 5e-4, 5e-5], rtol=1e-6)


def test_dropped_box_warned_once_per_file(tmp_path, capsys, caplog):
    """Issue 20: at train start each dropped box was reported three times per file (the data check, the source,
    sources.box_shapes)."""
    import logging
    import os

    from yolojax.data import check, pipeline, sources, synthetic

    synth = synthetic.default_synthetic_config()
    synth.num_train, synth.num_eval, synth.image_width, synth.image_height = 6, 2, 64, 64
    names = ("a", "b", "c", "d", "e")
    yaml_path = synthetic.write_dataset(str(tmp_path / "yolo"), "yolo", synth, class_names=names)
    labels_dir = os.path.join(os.path.dirname(yaml_path), "labels", "train")
    label = os.path.join(labels_dir, sorted(os.listdir(labels_dir))[0])
    open(label, "a").write("0 1.5 0.5 0.2 0.2\n")  # entirely right of the image: clipped to nothing, dropped
    c = pipeline.default_data_config()
    c.source, c.format, c.root, c.train_split, c.eval_split = "files", "yolo", yaml_path, "train", "val"
    caplog.set_level(logging.INFO)
    check.require_clean(c, ("train", "val"), cache_dir=str(tmp_path / "cache"))
    src = sources.make_source(c, "train")
    for i in range(len(src)):
        src[i]
    sources.box_shapes(c, "train")
    said = capsys.readouterr().out.splitlines() + [r.getMessage() for r in caplog.records]
    dropped = [line for line in said if label in line and "without area" in line]
    assert len(dropped) == 1, "\n".join(said)


def test_orbax_info_quieted_by_its_own_filter_not_absl_verbosity(tmp_path, caplog):
    """Issue 20: orbax was quieted by lowering absl's global verbosity; now a filter drops orbax's INFO only."""
    import logging

    from absl import logging as absl_logging

    from yolojax.training import checkpoints

    absl_logging.set_verbosity(absl_logging.INFO)
    caplog.set_level(logging.INFO)
    mngr = checkpoints.make_manager(str(tmp_path), async_save=False)
    checkpoints.save(mngr, 1, {"params": {"w": np.ones(3, np.float32)}}, meta={}, data_state={"step": 1})
    mngr.close()
    checkpoints.restore_variables(str(tmp_path))
    absl_logging.info("mine")
    assert absl_logging.get_verbosity() == absl_logging.INFO
    orbax = [r for r in caplog.records if "/orbax/" in r.pathname and r.levelno < logging.WARNING]
    assert orbax == [] and "mine" in [r.getMessage() for r in caplog.records]


def test_eval_rows_come_from_process_allgather(monkeypatch):
    from jax.experimental import multihost_utils

    from yolojax.training import train

    seen = []
    monkeypatch.setattr(multihost_utils, "process_allgather", lambda x, tiled=False: seen.append(tiled) or x)
    np.testing.assert_array_equal(train._all_rows(np.arange(4)), np.arange(4))
    assert seen == [True]


def test_darknet_star_import_names_only_what_exists():
    """``yolojax.darknet.__all__`` named ``save_training_checkpoint``, which did not exist."""
    from yolojax import darknet

    namespace: dict = {}
    exec("from yolojax.darknet import *", namespace)  # raised AttributeError before
    assert set(darknet.__all__) <= set(namespace)


_REFERENCE = re.compile(r"\byolojax(?:\.[A-Za-z_]\w*)+")
_API_REFERENCE = re.compile(r"(?<![\w.])api\.([A-Za-z_]\w*)")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_docs_configs_and_tools_name_only_what_exists():
    """Every ``yolojax.x.y`` and ``api.name`` that README, docs/, configs/ and experiments/ mention exists
    (configs/custom.py named ``api.evaluate_detector`` after it was gone)."""
    paths = [os.path.join(ROOT, "README.md")]
    for folder, ext in (("docs", ".md"), ("configs", ".py"), ("experiments", ".py")):
        paths += [os.path.join(ROOT, folder, f) for f in sorted(os.listdir(os.path.join(ROOT, folder)))
                  if f.endswith(ext)]
    missing = []
    for path in paths:
        text = open(path, encoding="utf-8").read()
        for ref in sorted(set(_REFERENCE.findall(text))):
            ref = ref.rstrip(".")
            if not _resolves(ref) and not ref.endswith((".py", ".md")):
                missing.append(f"{os.path.relpath(path, ROOT)}: {ref}")
        for name in sorted(set(_API_REFERENCE.findall(text))):
            if not _resolves(f"yolojax.inference.api.{name}"):
                missing.append(f"{os.path.relpath(path, ROOT)}: api.{name}")
    assert not missing, missing
