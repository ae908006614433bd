"""Research tools end to end: compute_anchors, throughput, detect.py and evaluate.py (model and results mode).

A tiny Tiny-YOLOv2 (width 1/8, 64 px input) is initialized and saved as a real training checkpoint (with the
training code's own save functions) and exported as darknet files; the evaluation data is the synthetic
dataset written as a VOCdevkit. detect.py and compute_anchors.py run in-process (argparse ``main(argv)``);
evaluate.py uses absl flags, so it runs as a subprocess, as users run it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import load_script as _load_script
from yolojax.training import writers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SIZE = 64


# ------------------------------------------------------------------------------------ compute_anchors
def _iou_wh_reference(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """[N, K] IoU of (w, h) pairs with aligned centers, written out independently of yolojax.ops.boxes."""
    out = np.zeros((len(wh), len(anchors)))
    for i, (w, h) in enumerate(wh):
        for k, (aw, ah) in enumerate(anchors):
            inter = min(w, aw) * min(h, ah)
            out[i, k] = inter / (w * h + aw * ah - inter)
    return out


@pytest.fixture(scope="module")
def clustered_devkit(tmp_path_factory):
    """A VOCdevkit (XML only: compute_anchors reads no pixels) whose boxes come from 3 known shapes.

    Images are 200x100 px; box widths/heights in pixels are the cluster shape +- 2 px, so the normalized
    clusters are known exactly. One difficult box of an outlier shape checks that difficult objects are
    left out by default.
    """
    from yolojax.data import synthetic

    root = tmp_path_factory.mktemp("anchors")
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    width, height = 200, 100
    shapes_px = np.array([[20.0, 10.0], [60.0, 50.0], [160.0, 30.0]])  # cluster (w, h) in pixels
    rng = np.random.default_rng(0)
    ids, all_wh = [], []
    for i in range(30):
        image_id = f"{i:06d}"
        boxes, classes = [], []
        for c, (w, h) in enumerate(shapes_px):
            w_i, h_i = w + rng.integers(-2, 3), h + rng.integers(-2, 3)
            x0, y0 = 1 + rng.integers(0, width - w_i), 1 + rng.integers(0, height - h_i)
            boxes.append([x0, y0, x0 + w_i, y0 + h_i])  # VOC 1-based: w = xmax - xmin in darknet's convention
            classes.append(c)
            all_wh.append([w_i / width, h_i / height])
        difficult = [False] * len(boxes)
        if i == 0:  # an outlier shape, flagged difficult
            boxes.append([1, 1, 5, 95])
            classes.append(0)
            difficult.append(True)
        xml = synthetic.annotation_xml(image_id, width, height, np.array(boxes, np.float64), np.array(classes),
                                       np.array(difficult), np.zeros(len(boxes), bool))
        (voc / "Annotations" / f"{image_id}.xml").write_text(xml)
        ids.append(image_id)
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{i}\n" for i in ids))
    return str(root), shapes_px / [width, height], np.array(all_wh)


def test_compute_anchors_recovers_known_clusters(clustered_devkit, tmp_path, capsys):
    root, clusters, wh = clustered_devkit
    script = _load_script("experiments/compute_anchors.py")
    out_json, out_png = tmp_path / "a.json", tmp_path / "a.png"
    rc = script.main(["--voc_root", root, "--year", "2007", "--image_set", "trainval", "--k", "3",
                      "--grid", "13", "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    summary = json.loads(out_json.read_text())
    assert summary["grid"] == 13 and summary["num_boxes"] == 90  # the difficult outlier is left out
    anchors_norm = np.array(summary["anchors"]) / 13.0
    # Sorted by area: (0.1, 0.1), (0.3, 0.5), (0.8, 0.3) have areas 0.01, 0.15, 0.24.
    np.testing.assert_allclose(anchors_norm, clusters, atol=0.006)  # cluster means of +-2 px jitter
    np.testing.assert_allclose(np.array(summary["anchors_normalized"]), anchors_norm, rtol=1e-12)
    # The reported mean IoU is the mean over boxes of the best shape IoU with the reported anchors.
    direct = float(np.mean(np.max(_iou_wh_reference(wh, np.array(summary["anchors_normalized"])), axis=1)))
    # (1e-7: the devkit reader keeps pixel boxes in float32, the reference works in float64 from integers.)
    assert summary["mean_iou"] == pytest.approx(direct, abs=1e-7)
    assert direct > 0.9
    assert out_png.stat().st_size > 1000
    printed = capsys.readouterr().out
    assert f"mean best IoU: {direct:.4f}" in printed and "grid units, 13x13" in printed


def test_compute_anchors_include_difficult_counts_it(clustered_devkit, tmp_path):
    root, _, _ = clustered_devkit
    script = _load_script("experiments/compute_anchors.py")
    out_json = tmp_path / "a.json"
    assert script.main(["--voc_root", root, "--k", "3", "--image_set", "trainval", "--include_difficult",
                        "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["num_boxes"] == 91
    assert (tmp_path / "a.png").stat().st_size > 1000  # the plot goes beside the JSON by default


def test_compute_anchors_bad_input_is_one_line(clustered_devkit, tmp_path, capsys):
    root, _, _ = clustered_devkit
    script = _load_script("experiments/compute_anchors.py")
    assert script.main(["--voc_root", str(tmp_path / "nowhere"), "--k", "3"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err
    assert script.main(["--voc_root", root, "--image_set", "missing_set", "--k", "3"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing_set" in err
    assert script.main(["--voc_root", root, "--image_set", "trainval", "--k", "500"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "k=500" in err


# ------------------------------------------------------------------------------------------ throughput
def _conv_flops(size: int, layers: list[tuple[int, int, int]]) -> float:
    """Darknet's count: sum of 2 * k*k*cin*cout * out_h*out_w over (k, cin, cout) convs at spatial ``size``
    (list entries may be ('pool', stride) to change the size)."""
    total, s = 0.0, size
    for layer in layers:
        if layer[0] == "pool":
            s //= layer[1]
            continue
        k, cin, cout = layer
        total += 2.0 * k * k * cin * cout * s * s
    return total


def test_throughput_model_flops_match_darknet_count():
    """Analytic FLOPs of Tiny YOLOv2 at 416 = darknet's 6.97 BFLOPs, recomputed here from yolov2-tiny-voc.cfg
    (the last maxpool has stride 1, so the grid stays 13x13)."""
    bench = _load_script("benchmarks/throughput.py")
    from yolojax.models import build_model

    layers = [(3, 3, 16), ("pool", 2), (3, 16, 32), ("pool", 2), (3, 32, 64), ("pool", 2), (3, 64, 128),
              ("pool", 2), (3, 128, 256), ("pool", 2), (3, 256, 512), ("pool", 1), (3, 512, 1024),
              (3, 1024, 1024), (1, 1024, 125)]
    expected = _conv_flops(416, layers)
    assert expected == 6971041792.0  # darknet prints 6.971 BFLOPs for yolov2-tiny-voc.cfg
    model = build_model(bench.model_config("tiny_yolov2", "float32"))
    assert bench.model_flops(model, 416) == expected
    assert bench.model_flops(model, 416, batch=3) == 3 * expected


def test_throughput_table_on_tiny_model(capsys, tmp_path):
    bench = _load_script("benchmarks/throughput.py")
    out = tmp_path / "rows.json"
    rc = bench.main(["--models", "tiny_yolov2", "--dtypes", "float32", "--width", "0.125", "--size", "64",
                     "--train_batch", "2", "--infer_batch", "0", "--iters", "1", "--json", str(out),
                     "--peak_tflops", "1.0"])
    assert rc == 0
    (row,) = json.loads(out.read_text())
    assert row["model"] == "tiny_yolov2" and row["size"] == 64 and row["peak_tflops"] == 1.0
    for key in ("train_img_s", "latency_ms", "train_mfu"):
        assert row[key] > 0, key
    assert "infer_img_s" not in row  # --infer_batch 0 skips batched inference
    # MFU is model FLOP/s over the peak: training counts 3x forward per image.
    sec_per_img = 1.0 / row["train_img_s"]
    assert row["train_mfu"] == pytest.approx(3 * row["fwd_gflop_img"] * 1e9 / sec_per_img / 1e12, rel=1e-9)
    printed = capsys.readouterr().out
    assert "| tiny_yolov2 | 64 | float32 |" in printed


def test_throughput_peak_table_and_errors(capsys):
    bench = _load_script("benchmarks/throughput.py")

    class FakeDevice:
        platform, device_kind = "gpu", "NVIDIA H100 80GB HBM3"

    assert bench.peak_flops(FakeDevice(), "bfloat16") == (989e12, "H100")
    assert bench.peak_flops(FakeDevice(), "float32") == (495e12, "H100")
    FakeDevice.device_kind = "Mystery accelerator"
    assert bench.peak_flops(FakeDevice(), "float32") == (None, "unknown device")
    assert bench.cpu_peak_flops(num_cores=2, ghz=2.5) == 2 * 2.5e9 * 32
    assert bench.main(["--models", "yolov3"]) == 1
    assert "unknown model(s) ['yolov3']" in capsys.readouterr().err


# ---------------------------------------------------------------------- detect.py and evaluate.py
@pytest.fixture(scope="module")
def synthetic_voc(tmp_path_factory):
    """Synthetic dataset as a VOCdevkit: 3 classes, big objects (so even an untrained model scores some AP),
    12 test images of 96x80 px."""
    from yolojax.data import synthetic

    cfg = synthetic.default_synthetic_config()
    cfg.update(dict(image_width=96, image_height=80, min_object_size=0.5, max_object_size=0.9, max_objects=2,
                    num_classes=3, clutter=0.1))
    root = tmp_path_factory.mktemp("voc")
    synthetic.write_voc_devkit(str(root), cfg, num_train=2, num_eval=12)
    return str(root)


def _tiny_config(name: str):
    from yolojax.config.base import base_config, use_yolov1

    c = base_config()
    if name in ("yolov1", "fast_yolo"):
        use_yolov1(c, name)
    c.model.name = name
    c.model.width = 0.125
    c.model.v1.grid_size = 2
    c.data.image_size = c.data.eval_image_size = IMAGE_SIZE
    c.checkpoint.async_save = False
    return c


def _write_checkpoint(workdir: str, config) -> None:
    """A freshly initialized model saved exactly as training saves it (train.py's state, the checkpoint layer)."""
    import jax
    import optax

    from yolojax.models import build_model
    from yolojax.training import checkpoints
    from yolojax.training import train as train_lib

    model = build_model(config.model)
    tx = train_lib.make_optimizer(config.optim, optax.constant_schedule(1e-3))
    state = train_lib.create_train_state(config, model, tx, train_lib.make_mesh(jax.devices()[:1]), IMAGE_SIZE)
    mngr = checkpoints.make_manager(workdir, async_save=False)
    checkpoints.save(mngr, 0, train_lib.state_to_tree(state), meta={"model": checkpoints.model_signature(config)},
                     data_state={"step": 0})
    mngr.wait_until_finished()
    mngr.close()
    checkpoints.write_config(workdir, config)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """{"workdir": tiny YOLOv2 checkpoint workdir, "cfg"/"weights": the same model as darknet files,
    "detector": it loaded through the API}."""
    import yolojax
    from yolojax import darknet

    base = tmp_path_factory.mktemp("models")
    workdir = str(base / "tiny")
    _write_checkpoint(workdir, _tiny_config("tiny_yolov2"))
    detector = yolojax.load(workdir)
    cfg, weights = str(base / "tiny.cfg"), str(base / "tiny.weights")
    darknet.export(detector.model, detector.variables, cfg, weights, height=IMAGE_SIZE, width=IMAGE_SIZE,
                   anchors=tuple(map(tuple, detector.anchors.tolist())))
    return {"workdir": workdir, "cfg": cfg, "weights": weights, "detector": detector, "base": base}


def _jpegs(root: str) -> list[str]:
    folder = os.path.join(root, "VOCdevkit", "VOC2007", "JPEGImages")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder))


def test_detect_on_checkpoint_and_darknet_files(tiny_models, synthetic_voc, tmp_path, capsys):
    """detect.py writes one drawn image and one JSON per input; the JSON holds exactly what the API predicts,
    and the darknet export of the same weights gives the same detections."""
    import yolojax

    detect = _load_script("experiments/detect.py")
    images = _jpegs(synthetic_voc)[:3]
    out_ckpt, out_dk = tmp_path / "ckpt", tmp_path / "dk"
    folder = os.path.dirname(images[0])
    assert detect.main(["--workdir", tiny_models["workdir"], "--out_dir", str(out_ckpt), "--score_threshold",
                        "0.02", *images]) == 0
    assert detect.main(["--darknet_cfg", tiny_models["cfg"], "--darknet_weights", tiny_models["weights"],
                        "--out_dir", str(out_dk), "--score_threshold", "0.02",
                        os.path.join(folder, "00000[1-3].jpg")]) == 0
    capsys.readouterr()
    expected = tiny_models["detector"].predict(images, score_threshold=0.02)
    for path, found in zip(images, expected):
        stem = os.path.splitext(os.path.basename(path))[0]
        drawn = yolojax.load_image(out_ckpt / f"{stem}.jpg")
        assert drawn.shape == yolojax.load_image(path).shape
        record = json.loads((out_ckpt / f"{stem}.json").read_text())
        assert record["image"] == path and (record["height"], record["width"]) == found["image_size"]
        assert [d["class"] for d in record["detections"]] == found["class_names"]
        np.testing.assert_allclose([d["box"] for d in record["detections"]], found["boxes_px"].reshape(-1, 4),
                                   atol=0.005)  # JSON rounds to 0.01 px
        np.testing.assert_allclose([d["score"] for d in record["detections"]], found["scores"], rtol=1e-6)
        assert len(found["scores"]) > 0
        darknet_record = json.loads((out_dk / f"{stem}.json").read_text())
        assert darknet_record["detections"] == record["detections"]


def test_detect_bad_input_is_one_line(tiny_models, synthetic_voc, tmp_path, capsys):
    detect = _load_script("experiments/detect.py")
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not an image")
    cases = [
        ([str(tmp_path / "missing.jpg")], "image not found", "missing.jpg"),
        ([str(not_image)], "could not be read and were skipped", "notes.jpg"),
        ([str(tmp_path / "*.png")], "no file matches", "*.png"),
    ]
    for inputs, problem, name in cases:
        rc = detect.main(["--workdir", tiny_models["workdir"], "--out_dir", str(tmp_path / "o"), *inputs])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and len(err.splitlines()) == 1, err
        assert problem in err and name in err and err.startswith("detect: error:")


def test_detect_checkpoint_of_another_architecture_is_one_line(tiny_models, synthetic_voc, tmp_path, capsys):
    """A YOLOv2 checkpoint read with a config of another model: CheckpointMismatchError naming the fields."""
    detect = _load_script("experiments/detect.py")
    other = tmp_path / "yolov1.json"
    other.write_text(_tiny_config("yolov1").to_json_best_effort())
    rc = detect.main(["--workdir", tiny_models["workdir"], "--config", str(other), "--out_dir", str(tmp_path / "o"),
                      _jpegs(synthetic_voc)[0]])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert "CheckpointMismatchError" in err and "another model" in err and "model.name" in err


def test_detect_darknet_files_that_do_not_match_is_one_line(tiny_models, synthetic_voc, tmp_path, capsys):
    """A truncated .weights file, and the weights of another network (a tiny YOLOv1) given with the Tiny
    YOLOv2 cfg: one line naming the file and the float counts."""
    import jax
    import jax.numpy as jnp

    from yolojax import darknet
    from yolojax.models import build_model

    truncated = tmp_path / "truncated.weights"
    truncated.write_bytes(open(tiny_models["weights"], "rb").read()[:-40])  # 10 floats short
    model = build_model(_tiny_config("yolov1").model)
    variables = model.init(jax.random.key(0), jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3)))
    other = tmp_path / "tiny_yolov1.weights"
    darknet.export(model, variables, tmp_path / "tiny_yolov1.cfg", other, height=IMAGE_SIZE, width=IMAGE_SIZE)
    detect = _load_script("experiments/detect.py")
    for weights in (truncated, other):
        rc = detect.main(["--darknet_cfg", tiny_models["cfg"], "--darknet_weights", str(weights),
                          "--out_dir", str(tmp_path / "o"), _jpegs(synthetic_voc)[0]])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and len(err.splitlines()) == 1, err
        assert weights.name in err and "WeightsError" in err and "floats" in err, err


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "evaluate.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


@pytest.fixture(scope="module")
def tfds_voc(synthetic_voc, tmp_path_factory):
    """The synthetic VOCdevkit prepared as TFDS voc/2007 through the real builder (local files)."""
    from yolojax.data import sources

    tfds_dir = str(tmp_path_factory.mktemp("tfds"))
    sources.prepare_tfds_voc("2007", tfds_dir, devkit_dir=os.path.join(synthetic_voc, "VOCdevkit"))
    return tfds_dir


@pytest.mark.slow
def test_evaluate_model_mode_equals_results_mode(tiny_models, synthetic_voc, tfds_voc, tmp_path):
    """Model mode on the checkpoint and on its darknet export, then results-file mode on the files each
    wrote: the same mAPs (exactly), non-zero, and the same for both model sources. The same images read
    through TFDS (--tfds_split) give the same result (same decoder, same ground truth)."""
    voc = ["--voc_root", synthetic_voc, "--year", "2007", "--image_set", "test"]
    runs = {}
    for name, model_flags in (("ckpt", ["--workdir", tiny_models["workdir"]]),
                              ("darknet", ["--darknet_cfg", tiny_models["cfg"], "--darknet_weights",
                                           tiny_models["weights"]])):
        out_dir, model_json, files_json = tmp_path / name, tmp_path / f"{name}.json", tmp_path / f"{name}_files.json"
        proc = _evaluate(*model_flags, *voc, "--out_dir", str(out_dir), "--json", str(model_json),
                         "--batch_size", "4")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "images/s" in proc.stdout and "mAP" in proc.stdout
        assert (out_dir / "pr_curves.png").stat().st_size > 1000
        assert (out_dir / "confusion_matrix.png").stat().st_size > 1000
        proc = _evaluate("--results_dir", str(out_dir), *voc, "--json", str(files_json))
        assert proc.returncode == 0, proc.stderr[-3000:]
        model_result, files_result = json.loads(model_json.read_text()), json.loads(files_json.read_text())
        assert model_result == files_result
        runs[name] = model_result
    assert runs["ckpt"]["map_07"] > 0 and runs["ckpt"]["num_images"] == 12
    # The JSON holds the confusion matrix (a true class's row counts each of its boxes once) and the breakdown of
    # each class's false positives (the kinds' counts add up to them, the shares to 1).
    matrix = runs["ckpt"]["confusion_matrix"]
    assert matrix["labels"] == list(runs["ckpt"]["num_positives"]) + ["background"]
    assert [sum(row) for row in matrix["counts"][:-1]] == list(runs["ckpt"]["num_positives"].values())
    for name, row in runs["ckpt"]["error_breakdown"].items():
        assert sum(row["counts"].values()) == row["false_positives"] <= runs["ckpt"]["num_detections"][name]
        if row["false_positives"]:
            assert sum(row[k] for k in row["counts"]) == pytest.approx(1.0)
    assert sum(r["false_positives"] for r in runs["ckpt"]["error_breakdown"].values()) > 0
    # darknet files have no workdir: no TensorBoard; the checkpoint's evaluation went to its workdir's
    logged = writers.read_tensorboard(os.path.join(tiny_models["workdir"], "tensorboard", "evaluate_2007_test"))
    assert logged["scalars"]["eval/map_07"] == [(0, pytest.approx(runs["ckpt"]["map_07"], abs=1e-6))]
    assert sorted(logged["images"]) == ["eval/confusion_matrix", "eval/detections", "eval/precision_recall"]
    assert runs["ckpt"] == runs["darknet"]

    out = tmp_path / "tfds.json"
    proc = _evaluate("--darknet_cfg", tiny_models["cfg"], "--darknet_weights", tiny_models["weights"],
                     "--tfds_split", "2007_test", "--tfds_data_dir", tfds_voc, "--image_set", "test",
                     "--out_dir", str(tmp_path / "tfds"), "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    from_tfds = json.loads(out.read_text())
    for key in ("num_images", "num_positives", "num_detections"):
        assert from_tfds[key] == runs["darknet"][key], key
    # Ground truth goes TFDS -> normalized -> pixels (a float round trip): AP may move in the last bits.
    for key in ("map_07", "map_area"):
        assert from_tfds[key] == pytest.approx(runs["darknet"][key], abs=1e-9), key


@pytest.mark.slow
def test_evaluate_model_mode_bad_darknet_files_is_one_line(tiny_models, synthetic_voc, tmp_path):
    bad = tmp_path / "bad.weights"
    bad.write_bytes(open(tiny_models["weights"], "rb").read()[:100])
    proc = _evaluate("--darknet_cfg", tiny_models["cfg"], "--darknet_weights", str(bad), "--voc_root", synthetic_voc,
                     "--image_set", "test", "--out_dir", str(tmp_path / "o"))
    assert proc.returncode == 1
    err_lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("evaluate: error:")]
    assert len(err_lines) == 1 and "bad.weights" in err_lines[0]


@pytest.mark.slow
def test_compute_anchors_tfds_split_equals_devkit(synthetic_voc, tfds_voc, tmp_path):
    anchors = _load_script("experiments/compute_anchors.py")
    a_dir, a_tfds = tmp_path / "dir.json", tmp_path / "tfds.json"
    assert anchors.main(["--voc_root", synthetic_voc, "--image_set", "test", "--k", "3", "--json", str(a_dir)]) == 0
    assert anchors.main(["--tfds_split", "2007_test", "--tfds_data_dir", tfds_voc, "--k", "3",
                         "--json", str(a_tfds)]) == 0
    from_dir, from_tfds = json.loads(a_dir.read_text()), json.loads(a_tfds.read_text())
    assert from_dir["num_boxes"] == from_tfds["num_boxes"] > 0
    # TFDS may list the images in another order: sums differ in the last bit, nothing more.
    np.testing.assert_allclose(from_dir["anchors"], from_tfds["anchors"], rtol=1e-9)
    assert from_dir["mean_iou"] == pytest.approx(from_tfds["mean_iou"], rel=1e-12)


@pytest.mark.slow
def test_yolov1_checkpoint_and_its_darknet_export_agree(synthetic_voc, tmp_path):
    """The YOLOv1 family through the same loaders: a tiny Fast YOLO checkpoint and its darknet export give
    the same detections (layout, sqrt flag and thresholds read from config and [detection] alike)."""
    import yolojax
    from yolojax import darknet

    workdir = str(tmp_path / "fast_yolo")
    _write_checkpoint(workdir, _tiny_config("fast_yolo"))
    det = yolojax.load(workdir)
    assert det.family == "v1" and det.head.grid_size == 2 and det.head.sqrt
    assert det.default_thresholds("eval") == {"score_threshold": 0.001, "iou_threshold": 0.5}
    cfg, weights = str(tmp_path / "fy.cfg"), str(tmp_path / "fy.weights")
    darknet.export(det.model, det.variables, cfg, weights, height=IMAGE_SIZE, width=IMAGE_SIZE)
    dk = yolojax.load(cfg, weights)
    assert dk.family == "v1" and (dk.head.grid_size, dk.head.boxes_per_cell, dk.head.sqrt) == (2, 2, True)
    image = _jpegs(synthetic_voc)[0]
    # Untrained: raw linear scores may be negative, so keep everything.
    a, b = det.predict(image, score_threshold=-1e6), dk.predict(image, score_threshold=-1e6)
    assert len(a["scores"]) > 0
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-5)
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-4, atol=1e-6)
    with pytest.raises(yolojax.LoadError, match="fix the input at 64 px"):
        yolojax.load(workdir, image_size=96)


def test_detect_and_export_take_config_overrides(tiny_models, synthetic_voc, tmp_path, capsys):
    """``--config.a.b=v`` without ``--config`` applies to the workdir's config.json, in detect.py and export.py."""
    detect = _load_script("experiments/detect.py")
    rc = detect.main(["--workdir", tiny_models["workdir"], f"--config.data.eval_image_size={2 * IMAGE_SIZE}",
                      "--out_dir", str(tmp_path / "o"), _jpegs(synthetic_voc)[0]])
    out = capsys.readouterr().out
    assert rc == 0 and f"input {2 * IMAGE_SIZE}x{2 * IMAGE_SIZE}" in out, out  # the saved config says IMAGE_SIZE
    export = _load_script("experiments/export.py")
    rc = export.main(["--workdir", tiny_models["workdir"], "--config.model.width=0.25", "--out_dir",
                      str(tmp_path / "e")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "CheckpointMismatchError" in err and "model.width" in err, err
    assert not (tmp_path / "e").exists() or not os.listdir(tmp_path / "e")
