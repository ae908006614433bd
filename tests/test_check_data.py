"""yolojax.data.check and experiments/check_data.py: every defect of a damaged dataset listed once, under its kind."""
import json
import logging
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from yolojax.config.classes import VOC_CLASSES
from yolojax.data import check, pipeline, synthetic, voc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "check_data.py")


def _synth(n_train=12, n_eval=4):
    c = synthetic.default_synthetic_config()
    c.image_width = c.image_height = 48
    c.num_train, c.num_eval = n_train, n_eval
    c.truncation_prob = 0.0
    return c


def _sub(path, old, new, count=1):
    text = open(path).read()
    assert old in text, (path, old)
    open(path, "w").write(text.replace(old, new, count))


def _first_object(xml):
    text = open(xml).read()
    return text[text.index("<object>"):text.index("</object>") + len("</object>")]


@pytest.fixture(scope="module")
def devkit(tmp_path_factory):
    """A VOCdevkit (2007, train split = trainval) with one of each defect; returns (root, {kind: file})."""
    root = str(tmp_path_factory.mktemp("devkit"))
    vdir = synthetic.write_voc_devkit(root, _synth())
    ann, img = os.path.join(vdir, "Annotations"), os.path.join(vdir, "JPEGImages")
    ids = voc.read_image_set(root, "2007", "trainval")
    x = {k: os.path.join(ann, f"{i}.xml") for k, i in zip(
        ("malformed", "inverted", "unknown", "nosize", "noimage", "badimage", "clipped", "empty", "dup",
         "truncjpeg"), ids)}
    _sub(x["malformed"], "</annotation>", "")  # XML that does not parse
    xml = open(x["inverted"]).read()
    xmin, xmax = re.search(r"<xmin>(\d+)</xmin>", xml).group(1), re.search(r"<xmax>(\d+)</xmax>", xml).group(1)
    _sub(x["inverted"], f"<xmin>{xmin}</xmin>", f"<xmin>{int(xmax) + 5}</xmin>")
    _sub(x["unknown"], re.search(r"<name>[^<]*</name>", open(x["unknown"]).read()).group(0), "<name>zebra</name>")
    _sub(x["nosize"], re.search(r"<size>.*</size>", open(x["nosize"]).read()).group(0), "")
    os.remove(os.path.join(img, os.path.basename(x["noimage"])[:-4] + ".jpg"))
    with open(os.path.join(img, os.path.basename(x["badimage"])[:-4] + ".jpg"), "w") as f:
        f.write("this is not an image\n")
    jpg = os.path.join(img, os.path.basename(x["truncjpeg"])[:-4] + ".jpg")
    data = open(jpg, "rb").read()
    open(jpg, "wb").write(data[:40])  # cut inside the JPEG header, before its frame
    xml = open(x["clipped"]).read()
    _sub(x["clipped"], re.search(r"<xmax>\d+</xmax>", xml).group(0), "<xmax>500</xmax>")  # image is 48 px
    text = open(x["empty"]).read()
    open(x["empty"], "w").write(re.sub(r"<object>.*?</object>\n?", "", text, flags=re.S))
    obj = _first_object(x["dup"])
    _sub(x["dup"], obj, obj + "\n" + obj)
    expect = {"malformed annotation": [x["malformed"]], "inverted box": [x["inverted"]],
              "unknown class": [x["unknown"]], "missing size": [x["nosize"]],
              "missing image": [os.path.join(img, os.path.basename(x["noimage"])[:-4] + ".jpg")],
              "unreadable image": sorted([os.path.join(img, os.path.basename(x[k])[:-4] + ".jpg")
                                          for k in ("badimage", "truncjpeg")]),
              "box clipped": [x["clipped"]], "no objects": [x["empty"]], "duplicate box": [x["dup"]]}
    return root, expect


def _voc_dir_cfg(root):
    c = pipeline.default_data_config()
    c.source, c.voc_dir = "voc_dir", os.path.join(root, "VOCdevkit")
    c.train_split, c.eval_split = "2007_trainval", "2007_test"
    return c


def _files_of(report):
    return {k: sorted(v) for k, v in report.files.items()}


def test_voc_dir_every_defect_once(devkit, tmp_path):
    root, expect = devkit
    r = check.check_dataset(_voc_dir_cfg(root), "2007_trainval", cache_dir=str(tmp_path))
    assert _files_of(r) == {k: sorted(v) for k, v in expect.items()}
    assert r.num_images == 12 and r.fatal and not r.cached
    assert r.counts == {k: len(v) for k, v in r.files.items()}
    for kind, lines in r.problems.items():  # each line starts with the file it names
        assert all(line.startswith(f) for line, f in zip(lines, r.files[kind]))
    msg = r.error_message()
    assert "\n" not in msg and "7 problem(s) in 7 file(s) of split '2007_trainval'" in msg
    assert expect["malformed annotation"][0] in msg  # the first fatal kind's first file
    full = r.full_report()
    for files in expect.values():
        assert all(f in full for f in files)
    # The eval split is untouched: clean.
    clean = check.check_dataset(_voc_dir_cfg(root), "2007_test", cache_dir=str(tmp_path))
    assert not clean.fatal and clean.num_images == 4 and clean.counts == {}


def test_voc_format_same_defects(devkit, tmp_path):
    """data.format='voc' on the same VOC2007 tree: the same files under the same kinds."""
    root, expect = devkit
    c = pipeline.default_data_config()
    c.source, c.format, c.root = "files", "voc", os.path.join(root, "VOCdevkit", "VOC2007")
    c.class_names = VOC_CLASSES
    c.train_split, c.eval_split = "trainval", "test"
    r = check.check_dataset(c, "trainval", cache_dir=str(tmp_path))
    assert _files_of(r) == {k: sorted(v) for k, v in expect.items()}
    # Without class names they are discovered from the annotations: no name is unknown then.
    c.class_names = ()
    r = check.check_dataset(c, "trainval", cache_dir=str(tmp_path))
    assert "unknown class" not in r.problems and len(r.problems["malformed annotation"]) == 1


def test_require_clean_logs_everything_then_one_line(devkit, tmp_path, caplog):
    root, expect = devkit
    c = _voc_dir_cfg(root)
    caplog.set_level(logging.INFO)
    with pytest.raises(check.DataCheckError) as e:
        check.require_clean(c, (c.train_split, c.eval_split), cache_dir=str(tmp_path))
    out = "\n".join(r.getMessage() for r in caplog.records)
    assert "\n" not in str(e.value) and "run experiments/check_data.py" in str(e.value)
    for kind in check.FATAL_KINDS:
        assert all(f in out for f in expect.get(kind, ()))
    assert "split '2007_test'" in out  # the clean split is reported too
    c.check = False
    assert check.require_clean(c, (c.train_split,)) == []


def _run(config, *args):
    return subprocess.run([sys.executable, SCRIPT, "--config", config, *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)


def test_script_exit_codes(devkit, tmp_path):
    root, expect = devkit
    p = _run("configs/quickstart.py", "--config.data.source=voc_dir",
             f"--config.data.voc_dir={os.path.join(root, 'VOCdevkit')}", "--config.data.train_split=2007_trainval",
             "--config.data.eval_split=2007_test", f"--cache_dir={tmp_path}")
    assert p.returncode == 1, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("check_data: error: ")
    assert "Traceback" not in p.stderr
    for files in expect.values():
        assert all(f in p.stdout for f in files)
    ok = _run("configs/quickstart.py", "--config.data.source=voc_dir",
              f"--config.data.voc_dir={os.path.join(root, 'VOCdevkit')}", "--split=2007_test",
              f"--cache_dir={tmp_path}")
    assert ok.returncode == 0, ok.stderr
    assert "no fatal problem" in ok.stdout
    syn = _run("configs/quickstart.py")  # synthetic: nothing on disk
    assert syn.returncode == 0 and "nothing on disk to check" in syn.stdout, syn.stderr


@pytest.fixture(scope="module")
def yolo_coco(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("formats"))
    return {fmt: synthetic.write_dataset(os.path.join(base, fmt), fmt, _synth(8, 3), class_names=NAMES)
            for fmt in ("yolo", "coco")}


NAMES = ("a", "b", "c", "d", "e")


def _files_cfg(fmt, root):
    c = pipeline.default_data_config()
    c.source, c.format, c.root = "files", fmt, root
    c.train_split, c.eval_split = "train", "val"
    return c


def test_yolo_defects(yolo_coco, tmp_path):
    yaml_path = yolo_coco["yolo"]
    base = os.path.dirname(yaml_path)
    labels = sorted(os.listdir(os.path.join(base, "labels", "train")))
    lab = lambda i: os.path.join(base, "labels", "train", labels[i])  # noqa: E731
    img = lambda i: os.path.join(base, "images", "train", labels[i][:-4] + ".jpg")  # noqa: E731
    first = open(lab(0)).read().splitlines()
    open(lab(0), "w").write("\n".join(["7" + first[0][1:]] + first[1:]) + "\n")  # class 7 of 5
    open(lab(1), "a").write("1 0.5 0.5\n")  # malformed line (3 fields)
    f = first[0].split()
    open(lab(2), "a").write(f"{f[0]} 0.95 0.5 0.3 0.2\n")  # reaches past the right edge
    open(lab(3), "a").write(open(lab(3)).read().splitlines()[0] + "\n")  # duplicate
    os.remove(lab(4))  # no label file: an image without objects
    os.remove(img(5))  # the label stays, the image is gone: not listed any more (folder split)
    r = check.check_dataset(_files_cfg("yolo", yaml_path), "train", cache_dir=str(tmp_path))
    assert _files_of(r) == {"unknown class": [lab(0)], "malformed annotation": [lab(1)], "box clipped": [lab(2)],
                            "duplicate box": [lab(3)], "no objects": [img(4)]}
    assert r.problems["unknown class"][0].startswith(f"{lab(0)}:1: class index 7 out of range")
    assert r.problems["malformed annotation"][0].startswith(f"{lab(1)}:{len(open(lab(1)).readlines())}:")
    assert r.num_images == 7
    # A list-file split naming a missing image.
    listing = os.path.join(base, "list.txt")
    with open(listing, "w") as fh:
        fh.write(f"{img(2)}\n{img(5)}\n")
    c = _files_cfg("yolo", base)  # the folder: a split that is a path is a list file
    c.class_names = NAMES
    r = check.check_dataset(c, listing, cache_dir=str(tmp_path))
    assert _files_of(r) == {"missing image": [img(5)], "box clipped": [lab(2)]}
    assert f"({listing}:2)" in r.problems["missing image"][0]
    p = _run("configs/custom.py", "--config.data.format=yolo", f"--config.data.root={yaml_path}",
             "--config.data.train_split=train", "--config.data.eval_split=val", f"--cache_dir={tmp_path}")
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, (p.stdout, p.stderr)
    assert lab(0) in p.stdout and lab(1) in p.stdout and img(4) in p.stdout


def test_coco_defects(yolo_coco, tmp_path):
    root = yolo_coco["coco"]
    path = os.path.join(root, "annotations", "instances_train.json")
    data = json.load(open(path))
    im = {i["id"]: i for i in data["images"]}
    a0 = data["annotations"][0]
    a0["bbox"] = [im[a0["image_id"]]["width"] - 5, 1, 20, 10]  # reaches past the right edge: clipped
    data["annotations"][1]["category_id"] = 99  # not a category
    data["annotations"][2]["bbox"] = [1, 2, -3, 4]  # negative width: malformed
    gone = data["images"][-1]
    os.remove(os.path.join(root, "train", gone["file_name"]))
    json.dump(data, open(path, "w"))
    r = check.check_dataset(_files_cfg("coco", root), "train", cache_dir=str(tmp_path))
    entry = f"{path}: annotations[%d]"
    assert _files_of(r) == {"box clipped": [f"{path}: {im[a0['image_id']]['file_name']}"],
                            "unknown class": [entry % 1], "malformed annotation": [entry % 2],
                            "missing image": [os.path.join(root, "train", gone["file_name"])]}
    p = _run("configs/custom.py", "--config.data.format=coco", f"--config.data.root={root}",
             "--config.data.train_split=train", "--config.data.eval_split=val", f"--cache_dir={tmp_path}")
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, (p.stdout, p.stderr)
    assert gone["file_name"] in p.stdout


def test_clean_dataset_passes(tmp_path):
    root = synthetic.write_dataset(str(tmp_path / "voc"), "voc", _synth(6, 3), class_names=NAMES)
    c = _files_cfg("voc", root)
    reports = check.require_clean(c, (c.train_split, c.eval_split))
    assert [r.fatal for r in reports] == [False, False] and [r.num_images for r in reports] == [6, 3]
    assert os.path.isdir(os.path.join(root, ".yolojax_check"))  # the default cache folder
    assert all(r.cached for r in check.require_clean(c, (c.train_split, c.eval_split)))
    p = _run("configs/custom.py", "--config.data.format=voc", f"--config.data.root={root}",
             "--config.data.train_split=train", "--config.data.eval_split=val")
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr


def test_tfds_and_synthetic_nothing_to_check():
    c = pipeline.default_data_config()
    r = check.check_dataset(c, "07+12")
    assert not r.fatal and "nothing on disk" in r.summary()
    c.source = "synthetic"
    assert "generated" in check.check_dataset(c, "train").note


def test_cache_rerun_costs_a_stat(tmp_path, monkeypatch):
    root = str(tmp_path / "dk")
    synthetic.write_voc_devkit(root, _synth(40, 2))
    c = _voc_dir_cfg(root)
    cache = str(tmp_path / "cache")
    t0 = time.perf_counter()
    first = check.check_dataset(c, "2007_trainval", cache_dir=cache)
    t_first = time.perf_counter() - t0

    def boom(*a, **k):
        raise AssertionError("an annotation was parsed")

    with monkeypatch.context() as m:
        m.setattr(voc, "parse_annotation", boom)
        m.setattr(pipeline, "encoded_image_size", boom)
        t0 = time.perf_counter()
        second = check.check_dataset(c, "2007_trainval", cache_dir=cache)
        t_second = time.perf_counter() - t0
    assert second.cached and second.to_json() == first.to_json()
    assert t_second < t_first / 3, (t_first, t_second)
    # A changed annotation (new size / mtime) is checked again.
    xml = os.path.join(root, "VOCdevkit", "VOC2007", "Annotations", voc.read_image_set(root, "2007", "trainval")[0]
                       + ".xml")
    _sub(xml, "</annotation>", "")
    third = check.check_dataset(c, "2007_trainval", cache_dir=cache)
    assert not third.cached and third.files["malformed annotation"] == [xml]
    # A removed image is noticed too (its folder and the file both change).
    jpg = os.path.join(root, "VOCdevkit", "VOC2007", "JPEGImages", voc.read_image_set(root, "2007", "trainval")[1]
                       + ".jpg")
    os.remove(jpg)
    fourth = check.check_dataset(c, "2007_trainval", cache_dir=cache)
    assert not fourth.cached and fourth.files["missing image"] == [jpg]
    assert check.check_dataset(c, "2007_trainval", cache_dir=cache).cached


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="unknown problem kind"):
        check.DataReport("s", "x").add("oops", "f", "f: oops")
    assert np.array_equal(check.formats.box_fixes([[0.1, 0.1, 1.2, 0.5]])[2], [True])


def test_long_header_is_not_unreadable(tmp_path):
    """A valid JPEG whose frame header starts after HEADER_BYTES (big comment segments) reads fine."""
    root = str(tmp_path / "dk")
    vdir = synthetic.write_voc_devkit(root, _synth(2, 1))
    jpg = os.path.join(vdir, "JPEGImages", voc.read_image_set(root, "2007", "trainval")[0] + ".jpg")
    data = open(jpg, "rb").read()
    com = b"\xff\xfe" + (65000).to_bytes(2, "big") + b"x" * 64998
    n = check.HEADER_BYTES // len(com) + 1
    open(jpg, "wb").write(data[:2] + com * n + data[2:])
    r = check.check_dataset(_voc_dir_cfg(root), "2007_trainval", cache_dir=str(tmp_path / "c"))
    assert r.counts == {} and r.num_images == 2
    open(jpg, "wb").write(data[:2] + com * n)  # the frame never comes: unreadable
    r = check.check_dataset(_voc_dir_cfg(root), "2007_trainval", cache_dir=str(tmp_path / "c"))
    assert r.files == {"unreadable image": [jpg]}
