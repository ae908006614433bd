"""Issue 20 (one house): one logging, the defects it names, one path per job."""

import numpy as np
import optax

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
