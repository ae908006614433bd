"""Notebook API (yolojax.inference.api): images in, detections out, drawing, loading errors.

Uses a hand-built Detector around a tiny freshly initialized model (no checkpoint needed here; loading real
checkpoints and darknet files is covered end to end in test_tools.py).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from yolojax import cli
from yolojax.inference import api

SIZE = 64


@pytest.fixture(scope="module")
def detector():
    import jax
    import jax.numpy as jnp

    from yolojax.models import build_model, default_model_config

    model = build_model(default_model_config(dict(name="tiny_yolov2", num_classes=3, width=0.125)))
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, SIZE, SIZE, 3)), train=False))(jax.random.key(0))
    anchors = np.array([[1.0, 1.5], [2.0, 1.0], [0.5, 0.5], [1.5, 1.5], [1.0, 1.0]], np.float32)
    from yolojax.models import heads

    head = heads.Head("v2", 3, anchors=tuple(map(tuple, anchors.tolist())))
    return api.Detector(model=model, variables=variables, head=head, input_hw=(SIZE, SIZE),
                        class_names=("red", "green", "blue"), description="test")


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((64, 64), (50, 90), (120, 40))]


# ------------------------------------------------------------------------------------------------ import
def test_import_yolojax_is_light():
    """``import yolojax`` loads neither JAX nor TensorFlow; the API names resolve lazily."""
    code = ("import sys, yolojax; heavy = [m for m in ('jax', 'tensorflow', 'flax') if m in sys.modules]; "
            "assert not heavy, heavy; assert yolojax.load is yolojax.inference.api.load; "
            "assert callable(yolojax.draw) and yolojax.ops.boxes.iou is not None; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------------------------------------ images
def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="image not found: .*missing.png"):
        api.load_image(tmp_path / "missing.png")
    bad = tmp_path / "text.jpg"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="text.jpg: cannot be decoded as an image"):
        api.load_image(bad)


def test_load_image_converts_gray_and_rgba(tmp_path):
    from PIL import Image

    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(api.load_image(tmp_path / "g.png"), np.stack([gray] * 3, axis=-1))
    np.testing.assert_array_equal(api.load_image(tmp_path / "a.png"), rgba[..., :3])


def test_as_uint8_image():
    floats = np.array([[[0.0, 0.2, 1.0], [0.5, 1.001, -0.001]]])  # within half a level of [0, 1]: rounded
    np.testing.assert_array_equal(api.as_uint8_image(floats), [[[0, 51, 255], [128, 255, 0]]])
    np.testing.assert_array_equal(api.as_uint8_image(np.full((2, 2), 7, np.uint8)), np.full((2, 2, 3), 7))  # gray
    with pytest.raises(ValueError, match=r"expected an image \[H, W\] \(gray\).*got an array of shape \(4, 4, 2\)"):
        api.as_uint8_image(np.zeros((4, 4, 2)))


# ----------------------------------------------------------------------------------------------- predict
def test_predict_equals_direct_pipeline(detector):
    """On an image already at the input size (the resize is then the identity), predict = model -> decode ->
    batched_nms, with pixel boxes = normalized boxes x (W, H, W, H)."""
    import jax.numpy as jnp

    from yolojax.ops import postprocess

    image = _images()[0]
    assert np.array_equal(detector.preprocess(image), image)
    found = detector.predict(image, score_threshold=0.02, max_detections=20)
    raw = detector.model.apply(detector.variables, jnp.asarray(image, jnp.float32)[None] / 255.0, train=False)
    boxes, scores = postprocess.decode_yolov2(raw, detector.anchors)
    ref = postprocess.batched_nms(boxes, scores, score_threshold=0.02, iou_threshold=0.45, max_detections=20)
    k = int(ref["count"][0])
    assert 0 < k == len(found["scores"])
    np.testing.assert_allclose(found["boxes"], np.clip(np.asarray(ref["boxes"][0, :k]), 0, 1), atol=1e-6)
    np.testing.assert_allclose(found["scores"], np.asarray(ref["scores"][0, :k]), rtol=1e-6)
    np.testing.assert_array_equal(found["classes"], np.asarray(ref["classes"][0, :k]))
    assert found["class_names"] == [detector.class_names[c] for c in found["classes"]]
    np.testing.assert_array_equal(found["boxes_px"], found["boxes"] * np.float32(SIZE))
    assert found["image_size"] == (SIZE, SIZE)


def test_predict_batches_do_not_change_results(detector):
    """Images of different sizes, batch of 2 (the last one padded): the same as one image at a time."""
    images = _images()
    together = detector.predict(images, batch_size=2, score_threshold=0.02)
    assert isinstance(together, list) and len(together) == 3
    for image, found in zip(images, together):
        alone = detector.predict(image, score_threshold=0.02)
        assert found["image_size"] == image.shape[:2]
        for key in ("boxes", "scores", "classes", "boxes_px"):
            np.testing.assert_allclose(found[key], alone[key], rtol=1e-5, atol=1e-6, err_msg=key)
        h, w = image.shape[:2]
        np.testing.assert_allclose(found["boxes_px"], found["boxes"] * np.array([w, h, w, h]), rtol=1e-6)
        assert np.all(np.diff(found["scores"]) <= 0) and np.all(found["scores"] > 0.02)
        assert np.all((found["boxes"] >= 0) & (found["boxes"] <= 1))


def test_predict_accepts_paths_pil_and_floats(detector, tmp_path):
    from PIL import Image

    image = _images()[1]
    Image.fromarray(image).save(tmp_path / "x.png")
    expected = detector.predict(image, score_threshold=0.02)
    for variant in (str(tmp_path / "x.png"), Image.fromarray(image), image.astype(np.float32) / 255.0):
        found = detector.predict(variant, score_threshold=0.02)
        np.testing.assert_allclose(found["scores"], expected["scores"], rtol=1e-6)


def test_decode_accepts_darknet_flat_layout(detector):
    """Darknet's [N, S, S, A*(5+C)] (anchor-major channels) decodes like the [N, S, S, A, 5+C] layout."""
    rng = np.random.default_rng(1)
    outputs = rng.normal(size=(2, 3, 3, 5, 8)).astype(np.float32)
    flat = outputs.reshape(2, 3, 3, 40)
    for a, b in zip(detector.decode(outputs), detector.decode(flat)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_detections_to_json():
    found = {"boxes_px": np.array([[1.234, 2.0, 30.5, 40.126]], np.float32), "class_names": ["dog"],
             "classes": np.array([11]), "scores": np.array([0.5], np.float32)}
    assert api.detections_to_json(found) == [{"box": [1.23, 2.0, 30.5, 40.13], "class": "dog", "class_id": 11,
                                              "score": 0.5}]


# -------------------------------------------------------------------------------------------------- draw
def test_draw_exact_pixels():
    image = np.zeros((100, 120, 3), np.uint8)
    found = {"boxes": np.array([[0.25, 0.25, 0.75, 0.75]], np.float32), "scores": np.array([0.9], np.float32),
             "classes": np.array([1]), "class_names": ["cat"]}
    out = api.draw(image, found, line_width=1)
    from yolojax.evaluation import plots

    colour = plots.PALETTE[1]
    # The rectangle spans x 30..90, y 25..75 (inclusive); the label sits above its top-left corner.
    for x, y in ((90, 50), (90, 75), (60, 75), (30, 75), (30, 50)):
        assert tuple(out[y, x]) == colour, (x, y)
    assert tuple(out[50, 60]) == (0, 0, 0)  # inside the box: untouched
    assert tuple(out[90, 10]) == (0, 0, 0)  # outside: untouched
    assert np.any(out[:25, 30:] != 0) and not np.any(out[:25, :30] != 0)  # label above the box, at its left
    assert np.array_equal(image, np.zeros_like(image))  # the input is not modified
    np.testing.assert_array_equal(api.draw(image, found, score_threshold=0.95), image)


# ----------------------------------------------------------------------------------------------- loading
def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(api.LoadError, match="needs its .weights"):
        api.load(str(tmp_path / "x.cfg"))
    with pytest.raises(FileNotFoundError, match="checkpoint or workdir not found: .*nowhere"):
        api.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(api.LoadError, match="empty: not a yolojax workdir"):
        api.load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="darknet weights not found: .*no.weights"):
        api.load_darknet(_reference_cfg("yolov2-tiny-voc.cfg"), tmp_path / "no.weights")
    weights = tmp_path / "w.weights"
    weights.write_bytes(b"\0" * 20)
    with pytest.raises(api.LoadError, match=r"darknet19.cfg: no \[region\] or \[detection\] layer"):
        api.load_darknet(_reference_cfg("darknet19.cfg"), weights)


def _reference_cfg(name: str) -> str:
    from yolojax import darknet

    return str(darknet.official_cfg(name))


def test_read_names(tmp_path):
    (tmp_path / "voc.names").write_text("aeroplane\nbicycle\n\nbird\n")
    assert api.read_names(tmp_path / "voc.names") == ("aeroplane", "bicycle", "bird")


def test_one_line_folds_messages():
    assert cli.one_line(ValueError("a\n  b")) == "ValueError: a b"


# -------------------------------------------------------------------------------------- evaluation tools
def test_precision_recall_curves_hand_case(tmp_path):
    """One image, two ground truths of class 0 and one difficult; detections: TP, FP, TP, then one on the
    difficult box (neither). Recall [.5, .5, 1, 1], precision [1, .5, 2/3, 2/3]."""
    from yolojax.evaluation import voc as evaluation

    ev = evaluation.VOCEvaluator(class_names=("a", "b"))
    ev.add("im", gt_boxes=np.array([[1, 1, 10, 10], [21, 21, 40, 40], [50, 50, 60, 60]], np.float64),
           gt_classes=np.array([0, 0, 0]), gt_difficult=np.array([False, False, True]),
           det_boxes=np.array([[1, 1, 10, 10], [100, 100, 120, 120], [21, 21, 40, 40], [50, 50, 60, 60]], np.float64),
           det_scores=np.array([0.9, 0.8, 0.7, 0.6]), det_classes=np.zeros(4, int))
    curves = ev.precision_recall()
    recall, precision, npos = curves["a"]
    assert npos == 2 and curves["b"][2] == 0
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3, 2 / 3])
    from yolojax.evaluation import plots

    image = plots.precision_recall_image(curves, title="hand case")
    assert image.dtype == np.uint8 and image.shape == (400, 640, 3)  # 8 x 5 inches at 80 dpi
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # something was drawn


def test_image_size_override_rules():
    api._check_image_size(None, "v1", 448, "x")  # the model's own size
    api._check_image_size(544, "v2", 416, "x")
    api._check_image_size(448, "v1", 448, "x")
    with pytest.raises(api.LoadError, match="image_size=500 must be a positive multiple of 32"):
        api._check_image_size(500, "v2", 416, "x")
    with pytest.raises(api.LoadError, match="x: YOLOv1's fully connected layers fix the input at 448 px"):
        api._check_image_size(416, "v1", 448, "x")
