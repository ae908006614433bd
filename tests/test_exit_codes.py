"""The exit-code table: every entry point, on each kind of bad input a user gives it, exits with status 1 and
prints exactly one line on stderr, without a traceback, naming the file, field or value."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(ROOT, "configs", "quickstart.py")
TINY = [f"--config={QUICK}", "--config.model.width=0.125", "--config.data.image_size=64",
        "--config.data.eval_image_size=64", "--config.data.synthetic.num_train=8", "--config.batch_size=2",
        "--config.eval.batch_size=2", "--config.progress_bar=False", "--config.total_steps=1"]


def _error_lines(stderr: str) -> list[str]:
    """stderr less the run's INFO log records (absl's "I<mmdd> ..." lines and their indented continuation, e.g.
    the data check's report): what is left is what the run says went wrong."""
    lines, in_info = [], False
    for line in stderr.splitlines():
        if re.match(r"I\d{4} ", line):
            in_info = True
        elif not (in_info and line[:1].isspace()):
            in_info = False
            if line.strip():
                lines.append(line)
    return lines


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad inputs of every kind, written once."""
    from yolojax import darknet as dk

    d = tmp_path_factory.mktemp("bad")
    tiny_cfg = str(dk.official_cfg("yolov2-tiny-voc.cfg"))
    sections = dk.load_cfg(tiny_cfg)
    weights = d / "tiny.weights"
    dk.write_weights(weights, sections, dk.random_blobs(sections, seed=0))
    (d / "truncated.weights").write_bytes(weights.read_bytes()[:1000])
    v1 = dk.load_cfg(dk.official_cfg("extraction.cfg"))
    dk.write_weights(d / "other.weights", v1[:3], dk.random_blobs(v1[:3], seed=0))  # another network's file
    (d / "garbage.cfg").write_text("[net]\nwidth=abc\n[convolutional]\nfilters=\n")
    # A devkit with one image for results-file mode.
    voc = d / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    (voc / "Annotations" / "000001.xml").write_text(
        "<annotation><size><width>100</width><height>80</height><depth>3</depth></size><object><name>dog</name>"
        "<difficult>0</difficult><truncated>0</truncated><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>50</xmax>"
        "<ymax>60</ymax></bndbox></object></annotation>")
    from yolojax.config.classes import VOC_CLASSES

    for kind in ("malformed", "unknown_id", "missing_class"):
        out = d / f"results_{kind}"
        out.mkdir()
        for name in VOC_CLASSES:
            if kind == "missing_class" and name == "dog":
                continue
            line = "000001 0.9 1 2 50 60\n"
            if name == "dog" and kind == "malformed":
                line = "000001 0.9 1 2 fifty 60\n"
            if name == "dog" and kind == "unknown_id":
                line = "009999 0.9 1 2 50 60\n"
            (out / f"comp4_det_test_{name}.txt").write_text(line)
    return {"dir": d, "tiny_cfg": tiny_cfg, "weights": str(weights), "voc": str(d)}


def _cases(f):
    d = f["dir"]
    exp = lambda name: os.path.join(ROOT, "experiments", name)  # noqa: E731
    return {
        # train.py
        "train: override typo": ([exp("train.py"), "--workdir", str(d / "w1"), *TINY, "--config.optim.base_lrr=1"],
                                 "base_lrr"),
        "train: missing config file": ([exp("train.py"), "--workdir", str(d / "w2"), "--config", str(d / "no.py")],
                                       "no.py"),
        "train: checkpoint.every_steps=0": ([exp("train.py"), "--workdir", str(d / "w3"), *TINY,
                                             "--config.checkpoint.every_steps=0"], "checkpoint.every_steps"),
        "train: log_every_steps=0": ([exp("train.py"), "--workdir", str(d / "w4"), *TINY, "--config.log_every_steps=0"],
                                     "log_every_steps"),
        "train: num_classes does not fit the data": ([exp("train.py"), "--workdir", str(d / "w5"), *TINY,
                                                      "--config.model.num_classes=7"], "num_classes=7"),
        "train: darknet weights not a file": ([exp("train.py"), "--workdir", str(d / "w6"), *TINY,
                                               f"--config.init.darknet_weights={d / 'none.conv.23'}"], "none.conv.23"),
        "train: init.checkpoint does not exist": ([exp("train.py"), "--workdir", str(d / "w7"), *TINY,
                                                   f"--config.init.checkpoint={d / 'nowhere'}"], "nowhere"),
        "train: damaged dataset stops before step 1": ([exp("train.py"), "--workdir", str(d / "w8"), *TINY,
                                                        "--config.data.source=voc_dir", f"--config.data.voc_dir={d}",
                                                        "--config.data.train_split=2007_test",
                                                        "--config.data.eval_split=2007_test",
                                                        "--config.model.num_classes=20"], "data check"),
        "check_data: damaged dataset": ([exp("check_data.py"), f"--config={QUICK}", "--config.data.source=voc_dir",
                                         f"--config.data.voc_dir={d}", "--config.data.train_split=2007_test",
                                         "--config.data.eval_split=2007_test"], "000001"),
        # evaluate.py results-file mode
        "evaluate: malformed result line": ([exp("evaluate.py"), "--results_dir", str(d / "results_malformed"),
                                             "--voc_root", f["voc"]], "comp4_det_test_dog.txt"),
        "evaluate: unknown image id": ([exp("evaluate.py"), "--results_dir", str(d / "results_unknown_id"),
                                        "--voc_root", f["voc"]], "009999"),
        "evaluate: missing class file": ([exp("evaluate.py"), "--results_dir", str(d / "results_missing_class"),
                                          "--voc_root", f["voc"]], "dog"),
        "evaluate: workdir that does not exist": ([exp("evaluate.py"), "--workdir", str(d / "nowhere"), "--out_dir",
                                                   str(d / "e")], "nowhere"),
        "evaluate: truncated darknet weights": ([exp("evaluate.py"), "--darknet_cfg", f["tiny_cfg"],
                                                 "--darknet_weights", str(d / "truncated.weights"),
                                                 "--voc_root", f["voc"], "--out_dir", str(d / "e2")],
                                                "truncated.weights"),
        # convert_darknet.py
        "convert: cfg that does not parse": ([exp("convert_darknet.py"), "--cfg", str(d / "garbage.cfg"), "--weights",
                                              f["weights"], "--out", str(d / "c1")], "garbage.cfg"),
        "convert: truncated weights": ([exp("convert_darknet.py"), "--cfg", f["tiny_cfg"], "--weights",
                                        str(d / "truncated.weights"), "--out", str(d / "c2")], "truncated.weights"),
        "convert: weights of another network": ([exp("convert_darknet.py"), "--cfg", f["tiny_cfg"], "--weights",
                                                 str(d / "other.weights"), "--out", str(d / "c3")], "other.weights"),
        "convert: missing weights": ([exp("convert_darknet.py"), "--cfg", f["tiny_cfg"], "--weights",
                                      str(d / "none.weights"), "--out", str(d / "c4")], "none.weights"),
        # detect.py
        "detect: missing image": ([exp("detect.py"), "--darknet_cfg", f["tiny_cfg"], "--darknet_weights", f["weights"],
                                   "--out_dir", str(d / "o"), str(d / "missing.jpg")], "missing.jpg"),
        "detect: workdir that does not exist": ([exp("detect.py"), "--workdir", str(d / "nowhere"), "--out_dir",
                                                 str(d / "o"), QUICK], "nowhere"),
        # export.py
        "export: truncated darknet weights": ([exp("export.py"), "--darknet_cfg", f["tiny_cfg"], "--darknet_weights",
                                               str(d / "truncated.weights"), "--out_dir", str(d / "x")],
                                              "truncated.weights"),
        # prepare_voc.py
        "prepare_voc: devkit that does not exist": ([exp("prepare_voc.py"), "--data_dir", str(d / "tfds"), "--years",
                                                     "2007", "--devkit_dir", str(d / "nodevkit")], "nodevkit"),
        # show_batch.py
        "show_batch: override typo": ([exp("show_batch.py"), f"--config={QUICK}", "--config.data.augment.jiter=0",
                                       "--out", str(d / "b.png")], "jiter"),
        # ablate.py
        "ablate: unknown rung": ([exp("ablate.py"), "--root", str(d / "abl"), "--rungs", "nonsense"], "nonsense"),
    }


CASE_NAMES = list(_cases({"dir": __import__("pathlib").Path("/"), "tiny_cfg": "", "weights": "", "voc": ""}))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_exits_1_with_one_line(case, files):
    argv, named = _cases(files)[case]
    env = dict(os.environ)  # (XLA flags of the suite: tests/conftest.py)
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    lines = _error_lines(proc.stderr)
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-1500:], proc.stderr[-3000:])
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and ": error: " in lines[0], lines[0]
    assert named in lines[0], lines[0]


def test_batch_that_does_not_split_over_devices(tmp_path):
    env = dict(os.environ)  # (XLA flags of the suite: tests/conftest.py)
    env["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4"
    argv = [os.path.join(ROOT, "experiments", "train.py"), "--workdir", str(tmp_path / "w"), *TINY,
            "--config.batch_size=6"]
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    lines = _error_lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert "config.batch_size=6 does not split over 4 devices" in lines[0]


def test_debug_flag_shows_the_traceback(tmp_path):
    argv = [os.path.join(ROOT, "experiments", "train.py"), "--workdir", str(tmp_path / "w"), *TINY,
            "--config.log_every_steps=0", "--debug"]
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
