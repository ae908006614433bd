"""Nothing silently wrong: one test per defect of the bad-input sweep (items 1-27 of the issue "Nothing silently
wrong"), each failing on the code before the fix. The ones that need a whole training process (the second run on
a held workdir, a full disk) are in test_faults.py; the rest run here, in this process, on tiny hand-made data."""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest

import helpers
from helpers import ROOT
from yolojax.data import check, formats, pipeline, sources
from yolojax.evaluation import evaluators as evaluators_lib
from yolojax.evaluation import loop as eval_loop
from yolojax.evaluation import voc as voc_eval
from yolojax.inference import api, export
from yolojax.models import heads
from yolojax.training import checkpoints, train
from yolojax.training import workdir as workdir_lib

QUICK = os.path.join(ROOT, "configs", "quickstart.py")
EXPERIMENTS = os.path.join(ROOT, "experiments")


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True)
def _absl_logger_as_it_was():
    """The tools run in this process (``cli.invoke``) filter absl's logger for their output; later test files in
    this worker see it as it was."""
    logger = logging.getLogger("absl")
    filters = list(logger.filters)
    yield
    logger.filters[:] = filters


def _tiny_config(**overrides):
    from test_train import tiny_config  # the 64-px, width-1/8 quickstart of the training tests

    return tiny_config(**overrides)


def _png(path, height=32, width=40, value=128):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return str(path)


def _files_cfg(fmt, root, split="train", **extra):
    c = pipeline.default_data_config()
    c.source, c.format, c.root, c.train_split, c.eval_split = "files", fmt, str(root), split, ""
    c.class_names = ("a",)
    for k, v in extra.items():
        c[k] = v
    return c


def _yolo(root, labels: dict[str, str | bytes | None], size=(32, 40)):
    """A YOLO split "train" under ``root``: images/train/<name>.png and labels/train/<name>.txt (None: no label)."""
    for name, text in labels.items():
        _png(os.path.join(root, "images", "train", f"{name}.png"), *size)
        if text is not None:
            path = os.path.join(root, "labels", "train", f"{name}.txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(text.encode() if isinstance(text, str) else text)
    return str(root)


def _coco(root, images, annotations, categories=({"id": 1, "name": "a"},)):
    """A COCO split "train": root/annotations/instances_train.json and the listed files under root/train/."""
    for im in images:
        if isinstance(im, dict) and "file_name" in im:
            _png(os.path.join(root, "train", im["file_name"]), 32, 40)
    path = os.path.join(root, "annotations", "instances_train.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"images": list(images), "annotations": list(annotations), "categories": list(categories)}, f)
    return str(root)


def _check(cfg, tmp_path, split="train"):
    return check.check_dataset(cfg, split, cache_dir=str(tmp_path / "cache"), use_cache=False)


class _Model:
    def apply(self, *args, **kwargs):
        raise AssertionError("the model must not run on bad input")


def _detector():
    """A Detector whose model must never run: what these tests give it is refused (or caught) before."""
    head = heads.Head("v2", 1, anchors=((1.0, 1.0),))
    return api.Detector(model=_Model(), variables={}, head=head, input_hw=(64, 64), class_names=("a",))


def _one_error_line(err: str, prog: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and "Traceback" not in err, err[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------------------ 1-13
def test_01_coco_images_sharing_an_id_are_a_duplicate_not_merged(tmp_path):
    images = [{"id": i % 3, "file_name": f"{i}.png", "width": 40, "height": 32} for i in range(4)]  # 3 reuses 0
    root = _coco(tmp_path / "coco", images, [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [1, 1, 9, 9]}])
    cfg = _files_cfg("coco", root)
    with pytest.raises(formats.DatasetError, match=r"images\[3\] \(3.png\): id 0 is already the id of images\[0\]"):
        sources.make_source(cfg, "train")
    report = _check(cfg, tmp_path)
    assert report.fatal and report.problems["duplicate image"] == [
        f"{root}/annotations/instances_train.json: images[3] (3.png): id 0 is already the id of images[0] (0.png); "
        "each image needs its own id"]
    assert "missing image" not in report.problems and report.num_images == 3  # the 3 distinct images


def test_02_a_second_run_on_a_held_workdir_stops_naming_the_holder(tmp_path):
    """The lock as another process holds it (fcntl.flock on <workdir>/lock, the kernel's record): the run stops
    before building anything, naming the holder; a lock left by a killed process is taken over."""
    held = tmp_path / "held"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from yolojax.training import workdir as w; "
         f"w.WorkdirLock({str(held)!r}).acquire(); print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, env=helpers.subprocess_env(PYTHONPATH=ROOT))
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(workdir_lib.WorkdirInUseError) as e:
            train.train_and_evaluate(_tiny_config(), str(held))
        assert f"is in use by pid {child.pid} on host {socket.gethostname()}, started 20" in str(e.value)
        assert not os.path.exists(held / "config.json")  # nothing of the held run was touched
        child.send_signal(signal.SIGKILL)  # kill -9: the lock file still names it, the kernel's lock is gone
        child.wait()
        with workdir_lib.hold(str(held)) as lock:
            assert lock.took_over["pid"] == child.pid  # stale: taken over, and said so (a warning)
            assert json.loads((held / "lock").read_text())["pid"] == os.getpid()
        assert (held / "lock").read_text() == ""  # released
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_02_multi_host_runs_lock_once_from_process_0(tmp_path, monkeypatch):
    workdir = str(tmp_path / "w")
    first = workdir_lib.WorkdirLock(workdir).acquire()  # process 0 of the run holds it
    try:
        monkeypatch.setattr(workdir_lib.jax, "process_index", lambda: 1)
        with workdir_lib.hold(workdir) as lock:  # process 1 takes no lock of its own
            assert lock is None
        monkeypatch.setattr(workdir_lib.jax, "process_index", lambda: 0)
        with pytest.raises(workdir_lib.WorkdirInUseError, match=f"in use by pid {os.getpid()}"):
            with workdir_lib.hold(workdir):
                pass
    finally:
        first.release()


def test_03_one_decoder_for_training_evaluation_detection_and_the_api(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    gray16 = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    gray8 = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    palette = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    indices = rng.integers(0, 4, (6, 5), dtype=np.uint8)
    files, expected = {}, {}

    def write(name, encode):
        files[name] = encode()

    write("rgb16.png", lambda: cv2.imencode(".png", rgb16[..., ::-1])[1].tobytes())
    expected["rgb16.png"] = (rgb16 >> 8).astype(np.uint8)  # OpenCV's 16 -> 8 bits: v >> 8
    write("gray16.png", lambda: cv2.imencode(".png", gray16)[1].tobytes())
    expected["gray16.png"] = np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, -1)
    write("gray8.png", lambda: cv2.imencode(".png", gray8)[1].tobytes())
    expected["gray8.png"] = np.repeat(gray8[..., None], 3, -1)
    write("rgba.png", lambda: cv2.imencode(".png", rgba[..., [2, 1, 0, 3]])[1].tobytes())
    expected["rgba.png"] = rgba[..., :3]  # alpha dropped
    pal = Image.fromarray(indices, "P")
    pal.putpalette(palette.reshape(-1).tolist() + [0] * (768 - 12))
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    files["palette.png"], expected["palette.png"] = buf.getvalue(), palette[indices]
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert("CMYK").save(buf, "JPEG", quality=95)
    files["cmyk.jpg"] = buf.getvalue()
    expected["cmyk.jpg"] = np.asarray(Image.open(io.BytesIO(files["cmyk.jpg"])).convert("RGB"))  # within 2 levels
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        decoded = {"training": pipeline.decode_reduced(data, 1, str(path)),
                   "evaluation": sources.decode_record({"image_bytes": data})["image"],
                   "detection": api.load_image(path), "api path": api.as_uint8_image(str(path))}
        decoded["api bytes"] = api.as_uint8_image(data)  # (raw bytes: not taken before)
        for where, image in decoded.items():
            assert image.dtype == np.uint8 and image.shape == expected[name].shape, (name, where)
            assert np.abs(image.astype(int) - expected[name]).max() <= (2 if name == "cmyk.jpg" else 0), (name, where)
            np.testing.assert_array_equal(image, decoded["training"])  # one decoder: the same pixels everywhere
    # an already decoded 16-bit PIL image by the same rule
    np.testing.assert_array_equal(api.as_uint8_image(Image.fromarray(gray16)), expected["gray16.png"])


def test_04_evaluation_counts_every_ground_truth_box(tmp_path):
    """An image with 200 objects (max_boxes 64): npos is 200; the data check says what training drops."""
    cells = [(x, y) for y in range(10) for x in range(20)]  # 200 disjoint boxes on a 20 x 10 grid
    lines = "".join(f"0 {(x + 0.5) / 20:.6f} {(y + 0.5) / 10:.6f} 0.04 0.08\n" for x, y in cells)
    root = _yolo(tmp_path / "yolo", {"crowded": lines, "single": "0 0.5 0.5 0.2 0.2\n"}, size=(320, 640))
    cfg = _files_cfg("yolo", root, eval_split="train", max_boxes=64)
    data = pipeline.EvalData(cfg, "train")
    evaluators = evaluators_lib.make_evaluators(("a",))

    def detect(batch):  # no detections: only the ground truth matters here
        n = len(batch["image"])
        return {"boxes": np.zeros((n, 1, 4)), "scores": np.zeros((n, 1)), "classes": np.full((n, 1), -1),
                "count": np.zeros(n, np.int32)}

    stats = eval_loop.evaluate_batches(detect, data.batches(2, 64, process_index=0, process_count=1), evaluators,
                                       image_id=data.image_id, input_hw=(64, 64), letterbox=False)
    assert stats["num_images"] == 2
    assert int(np.sum(evaluators[0].compute()["num_positives"])) == 201
    report = _check(cfg, tmp_path)
    label = os.path.join(root, "labels", "train", "crowded.txt")
    assert report.problems["too many objects"] == [
        f"{label}: 200 objects, training keeps the first data.max_boxes=64 and drops 136 (evaluation counts them all)"]


def test_05_a_float_image_in_0_255_is_refused_not_clipped_to_white():
    image = np.full((8, 8, 3), 200.0, np.float32)
    with pytest.raises(ValueError, match=r"image 0: a float image must be in \[0, 1\], got values in \[200, 200\] "
                                         r"\(an image in \[0, 255\]: divide it by 255"):
        _detector().predict(image)


def test_06_anchors_that_are_not_positive_pairs_are_refused():
    c = _tiny_config()
    c.model.anchors = ((1.0, 2.0, 3.0, 4.0, 5.0), (6.0, 7.0, 8.0, 9.0, 10.0))  # reshape(-1, 2) made 5 anchors
    with pytest.raises(ValueError, match=r"config.model.anchors=.*expected 5 \(w, h\) pairs"):
        heads.Head.from_config(c)
    c = _tiny_config()
    c.model.anchors = ((1.0, 1.0), (-1.0, 2.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="config.model.anchors=.*every width and height must be a positive number"):
        train.check_config(c)


def test_07_a_freeze_regex_that_matches_no_parameter_is_refused():
    c = _tiny_config()
    c.optim.freeze = "params/backbone_typo/"
    with pytest.raises(ValueError, match=r"config.optim.freeze='params/backbone_typo/' matches no parameter .*"
                                         r"paths look like params/"):
        train.build_experiment(c)


def test_08_total_steps_zero_is_refused_not_the_full_schedule():
    with pytest.raises(ValueError, match=r"config.total_steps=0: expected a positive number of steps, or -1"):
        train.check_config(_tiny_config(total_steps=0))


def test_09_evaluate_negative_batch_size_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(EXPERIMENTS, "evaluate.py"), "--workdir", str(tmp_path),
                           "--out_dir", str(tmp_path / "out"), "--batch_size", "-1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=helpers.subprocess_env())
    assert proc.returncode == 1
    assert "--batch_size=-1" in _one_error_line(proc.stderr, "evaluate")


@pytest.mark.parametrize("case", ["pixels", "no labels folder", "empty label files"])
def test_10_a_dataset_without_usable_boxes_is_fatal(tmp_path, case):
    labels = {"pixels": {"a": "0 150 100 40 30\n", "b": "0 20 20 10 12\n"},  # YOLO lines written in pixels
              "no labels folder": {"a": None, "b": None}, "empty label files": {"a": "", "b": "\n"}}[case]
    cfg = _files_cfg("yolo", _yolo(tmp_path / "yolo", labels))
    report = _check(cfg, tmp_path)
    assert report.fatal and len(report.problems["no usable boxes"]) == 1
    assert "none of its 2 images has a usable box" in report.problems["no usable boxes"][0]
    with pytest.raises(check.DataCheckError, match="none of its 2 images has a usable box"):
        check.require_clean(cfg, ["train"], cache_dir=str(tmp_path / "cache"))


def test_11_export_to_an_unknown_platform_is_refused_before_writing(tmp_path, capsys):
    script = _script("export")
    out = tmp_path / "out"
    assert script.main(["--darknet_cfg", str(tmp_path / "x.cfg"), "--darknet_weights", str(tmp_path / "x.weights"),
                        "--out_dir", str(out), "--formats", "stablehlo", "--platforms", "cpu,gpu9"]) == 1
    line = _one_error_line(capsys.readouterr().err, "export")
    assert "ExportError: platforms='cpu,gpu9': unknown platform(s) ['gpu9']" in line
    assert not out.exists()
    with pytest.raises(export.ExportError, match="gpu9"):
        export.check_platforms(("gpu9",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir trained 2 steps with batch 4, lr 1e-3 (checkpoints at steps 2)."""
    workdir = str(tmp_path_factory.mktemp("trained"))
    train.train_and_evaluate(_tiny_config(total_steps=2), workdir)
    return workdir


def test_12_resume_with_another_batch_size_or_lr_is_refused_or_recorded(trained):
    saved = open(os.path.join(trained, "config.json")).read()
    with pytest.raises(ValueError, match=r"batch_size: 4 \(saved\) vs 8 \(now\).*"
                                         r"optim.base_lr: 0.001 \(saved\) vs 0.002 \(now\)") as e:
        train.train_and_evaluate(_tiny_config(total_steps=3, batch_size=8, **{"optim.base_lr": 2e-3}), trained)
    assert isinstance(e.value, workdir_lib.ConfigChangeError) and "--allow_config_change" in str(e.value)
    assert open(os.path.join(trained, "config.json")).read() == saved  # the record stands
    result = train.train_and_evaluate(_tiny_config(total_steps=3, **{"optim.base_lr": 2e-3}), trained,
                                      allow_config_change=True)
    assert result["step"] == 3
    history = workdir_lib.read_history(trained)
    assert [h["step"] for h in history] == [0, 2]
    assert history[0]["config"]["optim"]["base_lr"] == 1e-3 and history[1]["config"]["optim"]["base_lr"] == 2e-3
    changed = {c["field"]: (c["before"], c["after"]) for c in history[1]["changes"]}
    assert changed == {"optim.base_lr": (1e-3, 2e-3), "total_steps": (2, 3)}
    assert json.load(open(os.path.join(trained, "config.json")))["optim"]["base_lr"] == 2e-3


def test_12_a_field_added_since_is_free_only_at_its_default():
    # a workdir's config.json from before data.augment.zoom existed: resuming it at the default changes nothing
    now = _tiny_config(total_steps=2)
    saved = json.loads(now.to_json_best_effort())
    del saved["data"]["augment"]["zoom"]
    changes = workdir_lib.config_changes(saved, now)
    assert changes == [{"field": "data.augment.zoom", "before": "<missing>", "after": 1.0, "free": True}]
    zoomed = _tiny_config(total_steps=2, **{"data.augment.zoom": 2.0})
    assert workdir_lib.config_changes(saved, zoomed) == [
        {"field": "data.augment.zoom", "before": "<missing>", "after": 2.0, "free": False}]


def test_13_smaller_silent_cases(tmp_path, capsys):
    # an annotated image size that is not the image's (the boxes are normalized by it)
    root = tmp_path / "voc"
    _png(root / "JPEGImages" / "x.png", 32, 40)
    (root / "Annotations").mkdir()
    (root / "Annotations" / "x.xml").write_text(
        "<annotation><filename>x.png</filename><size><width>400</width><height>320</height><depth>3</depth></size>"
        "<object><name>a</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>20</xmax>"
        "<ymax>20</ymax></bndbox></object></annotation>")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("x\n")
    report = _check(_files_cfg("voc", root), tmp_path)
    assert report.problems["size mismatch"] == [f"{root}/Annotations/x.xml: annotated size 400x320 (width x height) "
                                                "but the image is 40x32: the boxes would land in the wrong place"]
    # compute_anchors with a config asking for 0 anchors (it gave 5)
    assert _script("compute_anchors").main(["--config", QUICK, "--config.model.v2.num_anchors=0",
                                            "--config.data.synthetic.num_train=4"]) == 1
    assert "config.model.v2.num_anchors=0: expected an integer >= 1" in _one_error_line(capsys.readouterr().err,
                                                                                       "compute_anchors")
    # a negative learning rate
    with pytest.raises(ValueError, match=r"config.optim.base_lr=-1.0: expected a learning rate > 0"):
        train.check_config(_tiny_config(**{"optim.base_lr": -1.0}))


# ------------------------------------------------------------------------------------------------ 14-20
def _script(name):
    """experiments/<name>.py as a module (its main(argv) runs in this process)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_nothing_silent_{name}", os.path.join(EXPERIMENTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_15_coco_entries_that_are_not_objects_are_one_line(tmp_path):
    root = _coco(tmp_path / "coco", [1, 2, 3], [])
    cfg = _files_cfg("coco", root)
    with pytest.raises(formats.DatasetError, match=r"images\[0\] is 1: expected an object with id, file_name, width, "
                                                   r"height"):
        sources.make_source(cfg, "train")
    report = _check(cfg, tmp_path)
    assert report.fatal and "images[0] is 1" in report.problems["malformed annotation"][0]


def test_16_image_size_zero_is_named_before_any_worker_runs():
    for field, value in (("data.image_size", 0), ("data.eval_image_size", 100)):
        with pytest.raises(ValueError, match=rf"config.{field}={value}: expected a positive multiple of 32"):
            train.check_config(_tiny_config(**{field: value}))


def test_17_batch_size_zero_is_named(tmp_path):
    det = _detector()
    with pytest.raises(ValueError, match=r"batch_size=0: expected an integer >= 1"):
        det.predict(np.zeros((8, 8, 3), np.uint8), batch_size=0)
    with pytest.raises(ValueError, match=r"batch_size=0: expected an integer >= 1"):
        api.evaluate(det, pipeline.default_data_config(), "2007_test", [], batch_size=0)


def test_18_compute_anchors_json_into_a_folder_is_named_before_any_work(tmp_path, capsys):
    assert _script("compute_anchors").main(["--config", QUICK, "--json", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"--json={tmp_path}: is a folder; give a file path" in _one_error_line(err, "compute_anchors")
    assert "anchors" not in out  # nothing was computed


def test_19_predict_on_an_empty_array_or_none_is_a_value_error():
    det = _detector()
    with pytest.raises(ValueError, match=r"image 0: empty image \(shape \(0, 0, 3\)\)"):
        det.predict([np.zeros((0, 0, 3), np.uint8)])
    with pytest.raises(ValueError, match="predict: got None"):
        det.predict(None)
    with pytest.raises(ValueError, match="image 1: got None"):
        det.predict([np.zeros((4, 4, 3), np.uint8), None])


def test_20_a_checkpoint_folder_deleted_mid_run_is_one_line(tmp_path, capfd):
    mngr = checkpoints.make_manager(tmp_path, keep=3, keep_best=False, async_save=False)
    tree = {"step": np.int32(1), "params": {"w": np.arange(6, dtype=np.float32)}}
    try:
        checkpoints.save(mngr, 1, tree, meta={}, data_state={"step": 1})
        shutil.rmtree(tmp_path / "checkpoints")
        with pytest.raises(checkpoints.CheckpointError, match=r"the checkpoint folder .*checkpoints was deleted "
                                                              r"during the run: nothing saved at step 2"):
            checkpoints.save(mngr, 2, {**tree, "step": np.int32(2)}, meta={}, data_state={"step": 2})
    finally:
        mngr.close()
    assert "Traceback" not in capfd.readouterr().err


# ------------------------------------------------------------------------------------------------ 21-27
def test_21_non_utf8_files_and_coco_categories_without_id_name_the_file(tmp_path):
    label = tmp_path / "x.txt"
    label.write_bytes(b"0 0.5 0.5 0.2 0.2\n0 0.5 \xff 0.2 0.2\n")
    with pytest.raises(formats.DatasetError, match=rf"{label}:2: not UTF-8 text \(byte 0xff at offset 24"):
        formats.parse_yolo_label(str(label), 1)
    results = tmp_path / "results"
    results.mkdir()
    (results / "comp4_det_test_a.txt").write_bytes(b"000001 0.9 1 2 3 4\n\xe9t\xe9 0.5 1 2 3 4\n")
    with pytest.raises(ValueError, match=r"comp4_det_test_a.txt:2: not UTF-8 text"):
        voc_eval.read_results(str(results), class_names=("a",))
    root = _coco(tmp_path / "coco", [{"id": 1, "file_name": "1.png", "width": 40, "height": 32}], [],
                 categories=[{"name": "a"}])
    with pytest.raises(formats.DatasetError, match=r"categories\[0\]: needs an id \(a number\) and a name"):
        sources.make_source(_files_cfg("coco", root), "train")


def test_22_a_mistyped_override_keeps_the_hint_in_one_clean_line(tmp_path, capsys):
    assert _script("compute_anchors").main(["--config", QUICK, "--config.optim.base_lrr=1"]) == 1
    line = _one_error_line(capsys.readouterr().err, "compute_anchors")
    assert line == ("compute_anchors: error: AttributeError: override --config.optim.base_lrr: no field 'base_lrr'. "
                    'Did you mean "base_lr" instead of "base_lrr"?')


def test_23_anchors_given_as_triples_are_reported_as_such():
    c = _tiny_config()
    c.model.anchors, c.model.v2.num_anchors = ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)), 2
    with pytest.raises(ValueError, match=r"expected 2 \(w, h\) pairs \[A, 2\] in grid cells, got 2 entries of 3 "
                                         r"value\(s\)") as e:
        heads.Head.from_config(c)
    assert "3 anchors" not in str(e.value)


def test_24_predict_takes_a_gray_array_and_names_bytes_that_are_no_image(monkeypatch):
    det = _detector()
    monkeypatch.setattr(det, "_run_batch", lambda fn, originals, size: [o for o in originals])
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6)
    np.testing.assert_array_equal(det.predict(gray), np.repeat(gray[..., None], 3, -1))  # one [H, W] image
    with pytest.raises(ValueError, match=r"image 0: cannot be decoded as an image \(12 bytes\)"):
        det.predict(b"not an image")
    with pytest.raises(ValueError, match=r"image 0: expected an image \[H, W\] \(gray\), \[H, W, 3\] \(RGB\) or "
                                         r"\[H, W, 4\] \(RGBA\), got an array of shape \(5, 6, 2\)"):
        det.predict([np.zeros((5, 6, 2), np.uint8)])


def test_25_load_of_a_workdir_with_an_unknown_weights_choice_names_it(tmp_path):
    with pytest.raises(api.LoadError, match=r"weights='RAW': .* is a yolojax workdir or checkpoint, whose weights "
                                            r"are one of 'auto', 'ema', 'raw'"):
        api.load(str(tmp_path), "RAW")


def test_26_a_coco_image_of_width_0_is_named_without_a_runtime_warning(tmp_path):
    root = _coco(tmp_path / "coco", [{"id": 7, "file_name": "7.png", "width": 0, "height": 32}],
                 [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 1, 9, 9]}])
    cfg = _files_cfg("coco", root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(formats.DatasetError, match=r"images\[0\] \(id 7, 7.png\): width and height must be "
                                                       r"positive, got 0 x 32"):
            sources.make_source(cfg, "train")
        report = _check(cfg, tmp_path)
    assert "width and height must be positive" in report.problems["malformed annotation"][0]
    assert "zero-area box dropped" not in report.problems


def test_27_the_data_check_finds_what_training_rejects(tmp_path):
    # a split list naming one image twice
    root = _yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.2 0.2\n", "b": "0 0.5 0.5 0.2 0.2\n"})
    listed = os.path.join(root, "train.txt")
    with open(listed, "w") as f:
        f.write("images/train/a.png\nimages/train/b.png\nimages/train/a.png\n")
    cfg = _files_cfg("yolo", root, split=listed)
    with pytest.raises(formats.DatasetError, match="appears twice"):
        sources.make_source(cfg, listed)
    report = _check(cfg, tmp_path, split=listed)
    assert report.fatal and len(report.problems["duplicate image"]) == 1
    # an empty VOC list
    voc = tmp_path / "voc"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("")
    report = _check(_files_cfg("voc", voc), tmp_path)
    assert report.fatal and report.problems["no images"] == [f"split 'train' (voc {voc}): lists no images"]
    # a reused COCO id: a duplicate, not a missing image
    images = [{"id": 1, "file_name": "1.png", "width": 40, "height": 32},
              {"id": 1, "file_name": "2.png", "width": 40, "height": 32}]
    report = _check(_files_cfg("coco", _coco(tmp_path / "coco", images, [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]}])), tmp_path)
    assert list(report.problems) == ["duplicate image"] and report.fatal
