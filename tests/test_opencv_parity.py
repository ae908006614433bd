"""yolojax.darknet against an independent implementation of the darknet format: OpenCV 4's importer.

``cv2.dnn.readNetFromDarknet`` parses the cfg and .weights itself (its own header handling, BN folding,
darknet maxpool padding and reorg permutation), so agreement with it checks our reader, writer, mapping and
network together. OpenCV 5 dropped the importer; the test extra pins opencv-python-headless<5.

Error measure: max |yolojax - OpenCV| / max |OpenCV| over the raw output of the last conv (before [region]),
required <= 1e-3. Weights are random (our writer), the image a smooth synthetic scene (not noise).
OpenCV has no [detection] layer, so YOLOv1 is checked against the numpy reference in test_darknet.py.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from yolojax import darknet as dk
from yolojax.models import TinyYOLOv2, YOLOv2

cv2 = pytest.importorskip("cv2")
if int(cv2.__version__.split(".")[0]) >= 5 or not hasattr(cv2.dnn, "readNetFromDarknet"):
    pytest.skip("needs OpenCV 4 (its darknet importer)", allow_module_level=True)

CFG_DIR = dk.OFFICIAL_CFG_DIR
MAX_REL_ERR = 1e-3


def scene(h: int, w: int) -> np.ndarray:
    """A smooth synthetic outdoor scene [H, W, 3] float32 RGB in [0, 1]: sky gradient, ground, sun, a house
    with a roof, soft (anti-aliased) edges."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = yy / h, xx / w
    soft = lambda d: 1 / (1 + np.exp(np.clip(-d * 60, -50, 50)))  # noqa: E731  smooth step, d > 0 inside
    img = np.stack([0.35 + 0.3 * y, 0.55 + 0.25 * y, 0.95 - 0.2 * y], -1)  # sky
    ground = soft(y - 0.62 - 0.03 * np.sin(6 * x))
    img = img * (1 - ground[..., None]) + np.stack([0.25 + 0.1 * x, 0.5 - 0.1 * y, 0.2 + 0 * x], -1) * ground[..., None]
    sun = soft(0.09 - np.hypot(x - 0.8, y - 0.18))
    img = img * (1 - sun[..., None]) + np.array([1.0, 0.9, 0.5]) * sun[..., None]
    wall = soft(np.minimum.reduce([x - 0.2, 0.5 - x, y - 0.45, 0.8 - y]))
    img = img * (1 - wall[..., None]) + np.array([0.8, 0.7, 0.55]) * wall[..., None]
    roof = soft(np.minimum.reduce([0.45 - y, 1.2 * (y - 0.3) - np.abs(x - 0.35)]))  # a triangle
    img = img * (1 - roof[..., None]) + np.array([0.6, 0.15, 0.1]) * roof[..., None]
    door = soft(np.minimum.reduce([x - 0.32, 0.38 - x, y - 0.62, 0.8 - y]))
    img = img * (1 - door[..., None]) + np.array([0.3, 0.2, 0.1]) * door[..., None]
    return np.clip(img, 0, 1).astype(np.float32)


def opencv_raw(cfg_path: Path, weights_path: Path, image: np.ndarray) -> np.ndarray:
    """OpenCV's output of the last conv layer for image [H, W, 3] -> [1, S, S, C] (NHWC like yolojax).

    A fresh net and a single forward call: OpenCV 4.14 returns wrong values when forward() is called a second
    time on the same net with a different output list.
    """
    net = cv2.dnn.readNetFromDarknet(str(cfg_path), str(weights_path))
    net.setInput(np.ascontiguousarray(image[None].transpose(0, 3, 1, 2)))
    last_conv = [n for n in net.getLayerNames() if n.startswith("conv_")][-1]
    return net.forward(last_conv).transpose(0, 2, 3, 1)


@functools.lru_cache(maxsize=None)
def _jitted_apply(model):
    return jax.jit(model.apply)  # one compilation per (model, input shape)


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def official_weights(tmp_path_factory):
    """Random .weights (our writer) for each official cfg; conv-only cfgs, so one file serves every size."""
    d = tmp_path_factory.mktemp("official")
    paths = {}
    for name in ("yolov2-voc.cfg", "yolo-voc.2.0.cfg", "yolov2-tiny-voc.cfg"):
        sections = dk.load_cfg(CFG_DIR / name)
        paths[name] = d / (name + ".weights")
        dk.write_weights(paths[name], sections, dk.random_blobs(sections, seed=7))
    return d, paths


def _resized_cfg(name: str, size: int, d: Path) -> Path:
    """The official cfg text with its width/height lines edited (nothing else touched)."""
    text = (CFG_DIR / name).read_text()
    text = re.sub(r"^(\s*width\s*=).*$", rf"\g<1>{size}", text, flags=re.M)
    text = re.sub(r"^(\s*height\s*=).*$", rf"\g<1>{size}", text, flags=re.M)
    path = d / f"{size}-{name}"
    path.write_text(text)
    return path


def _check_official(name: str, size: int, official_weights, expected_type) -> None:
    d, paths = official_weights
    cfg_path = _resized_cfg(name, size, d)
    model, variables = dk.load(cfg_path, paths[name])
    assert type(model) is expected_type and model.flat_output
    image = scene(size, size)
    ours = np.asarray(_jitted_apply(model)(variables, image[None]))
    theirs = opencv_raw(cfg_path, paths[name], image)
    assert ours.shape == theirs.shape == (1, size // 32, size // 32, 125)
    assert np.abs(theirs).max() > 1.0  # a live signal, not a collapsed one
    err = rel_err(ours, theirs)
    print(f"{name} @ {size}: rel err {err:.2e}")
    assert err <= MAX_REL_ERR


@pytest.mark.parametrize("size", [416, 288])
def test_tiny_yolov2_voc_matches_opencv(size, official_weights):
    _check_official("yolov2-tiny-voc.cfg", size, official_weights, TinyYOLOv2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov2-voc.cfg", "yolo-voc.2.0.cfg"])
@pytest.mark.parametrize("size", [416, 288])
def test_yolov2_voc_cfgs_match_opencv(name, size, official_weights):
    _check_official(name, size, official_weights, YOLOv2)


def _random_variables(model, size: int, seed: int = 0):
    """Random variables for a module (numpy, BN statistics away from their init)."""
    from flax import traverse_util

    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    rng = np.random.default_rng(seed)
    flat = {}
    for k, v in traverse_util.flatten_dict(dict(shapes)).items():
        if k[-1] in ("var", "scale"):
            arr = rng.uniform(0.5, 1.5, v.shape)
        elif k[-1] in ("mean", "bias"):
            arr = rng.normal(0, 0.1, v.shape)
        else:
            arr = rng.normal(0, np.sqrt(2.0 / np.prod(v.shape[:-1])), v.shape)
        flat[k] = arr.astype(np.float32)
    return traverse_util.unflatten_dict(flat)


@pytest.mark.parametrize("model,size", [
    (YOLOv2(width=0.25, num_classes=4, num_anchors=3, flat_output=True), 96),
    (YOLOv2(width=0.25, passthrough="reorg", num_classes=4, num_anchors=3, flat_output=True), 128),
    (TinyYOLOv2(width=0.5, num_classes=4, num_anchors=3, flat_output=True), 96),
], ids=["yolov2", "yolov2_paper_era", "tiny_yolov2"])
def test_export_then_opencv_equals_yolojax_model(model, size, tmp_path):
    variables = _random_variables(model, size)
    anchors = ((1.0, 1.5), (2.5, 2.0), (4.0, 5.0))
    dk.export(model, variables, tmp_path / "m.cfg", tmp_path / "m.weights", height=size, width=size, anchors=anchors)
    image = scene(size, size)
    ours = np.asarray(_jitted_apply(model)(variables, image[None]))
    theirs = opencv_raw(tmp_path / "m.cfg", tmp_path / "m.weights", image)
    assert ours.shape == theirs.shape
    assert rel_err(ours, theirs) <= MAX_REL_ERR


# --------------------------------------------------------------------------------------------------------------
# Backbone initialization (yolojax.training.initialization.from_darknet) against OpenCV, on a real photo, at
# intermediate maps. Error measure as above, required <= 1e-4.
# --------------------------------------------------------------------------------------------------------------

TRUNK_MAX_REL_ERR = 1e-4


def photo_blob(size: int) -> np.ndarray:
    """A real photo (matplotlib's sample grace_hopper.jpg) as OpenCV's network input: blobFromImage at
    size x size, RGB, scaled to [0, 1] -> [1, 3, size, size] float32 (NCHW)."""
    from matplotlib import cbook

    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    assert bgr is not None and bgr.std() > 20  # a natural image, not a flat one
    return cv2.dnn.blobFromImage(bgr, 1 / 255.0, (size, size), swapRB=True, crop=False)


def opencv_activations(cfg_path: Path, weights_path: Path, blob: np.ndarray, layers: list[int]) -> list[np.ndarray]:
    """OpenCV's outputs (after batch norm and activation) of darknet layers ``layers`` -> NHWC arrays.

    OpenCV names darknet layer i 'conv_i', 'bn_i' and then its activation; one forward call for all outputs.
    """
    net = cv2.dnn.readNetFromDarknet(str(cfg_path), str(weights_path))
    names = list(net.getLayerNames())
    outs = [names[names.index(f"bn_{i}") + 1] for i in layers]
    assert all(n.startswith("leaky_") for n in outs), outs
    net.setInput(blob)
    return [o.transpose(0, 2, 3, 1) for o in net.forward(outs)]


def _with_zeros(variables):
    """ShapeDtypeStruct leaves (what from_darknet did not fill) -> zeros: they play no part in the trunk."""
    return jax.tree.map(lambda v: np.zeros(v.shape, v.dtype) if isinstance(v, jax.ShapeDtypeStruct) else v,
                        variables)


def _trunk_activations(model, variables, images: np.ndarray, modules: tuple[str, ...], skip_dense: bool = False):
    """Outputs of the named ConvBN modules (after BN and activation; inference mode), via capture_intermediates.

    skip_dense: replace nn.Dense calls by zeros, so YOLOv1's 205M-parameter fc0 needs no variables (it comes
    after every conv compared here).
    """
    import flax.linen as nn

    def run(v, x):
        def no_dense(next_fun, args, kwargs, context):
            if isinstance(context.module, nn.Dense) and skip_dense:
                return jnp.zeros(args[0].shape[:-1] + (context.module.features,), jnp.float32)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(no_dense):
            _, state = model.apply(v, x, train=False, mutable=["intermediates"],
                                   capture_intermediates=lambda mdl, _: mdl.name in modules)
        return [state["intermediates"][m]["__call__"][0] for m in modules]

    return [np.asarray(a) for a in jax.jit(run)(variables, images)]


@pytest.mark.slow
def test_darknet19_trunk_of_yolov2_matches_opencv(tmp_path):
    from yolojax.training import initialization

    sections = dk.load_cfg(CFG_DIR / "darknet19_448.cfg")
    weights = tmp_path / "darknet19_448.weights"  # a full file: OpenCV needs every layer of the cfg
    dk.write_weights(weights, sections, dk.random_blobs(sections, seed=3))
    model = YOLOv2()
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 416, 416, 3)), train=False))
    variables, report = initialization.from_darknet(model, dict(shapes), weights)
    assert [l["module"] for l in report.layers] == [f"conv{k}" for k in range(18)]
    blob = photo_blob(416)
    fine, coarse = _trunk_activations(model, _with_zeros(variables), blob.transpose(0, 2, 3, 1),
                                      ("conv12", "conv17"))
    # darknet19_448.cfg layer 16 = conv12 (the map the passthrough reads), layer 22 = conv17 (last trunk conv)
    cv_fine, cv_coarse = opencv_activations(_resized_cfg("darknet19_448.cfg", 416, tmp_path), weights, blob, [16, 22])
    assert fine.shape == cv_fine.shape == (1, 26, 26, 512)
    assert coarse.shape == cv_coarse.shape == (1, 13, 13, 1024)
    for ours, theirs in ((fine, cv_fine), (coarse, cv_coarse)):
        assert np.abs(theirs).max() > 0.1 and theirs.std() > 0.01  # a live signal
        err = rel_err(ours, theirs)
        print(f"darknet19 trunk {ours.shape}: rel err {err:.2e}")
        assert err <= TRUNK_MAX_REL_ERR


@pytest.mark.slow
@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "bn_folded"])
def test_extraction_trunk_of_yolov1_matches_opencv(batch_norm, tmp_path):
    from yolojax.models import YOLOv1
    from yolojax.training import initialization

    sections = dk.load_cfg(CFG_DIR / "extraction.cfg")
    weights = tmp_path / "extraction.weights"
    dk.write_weights(weights, sections, dk.random_blobs(sections, seed=4))
    model = YOLOv1(batch_norm=batch_norm)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 448, 448, 3)), train=False))
    variables, report = initialization.from_darknet(model, dict(shapes), weights)
    assert len(report.layers) == 20 and report.layers[-1]["module"] == "conv19"
    convs = {k: v for k, v in variables["params"].items() if not k.startswith("fc")}
    trunk = {"params": convs, **({"batch_stats": variables["batch_stats"]} if batch_norm else {})}
    blob = photo_blob(448)
    (ours,) = _trunk_activations(model, _with_zeros(trunk), blob.transpose(0, 2, 3, 1), ("conv19",), skip_dense=True)
    # extraction.cfg layer 23 = conv19, the last convolution before its ImageNet classifier
    (theirs,) = opencv_activations(_resized_cfg("extraction.cfg", 448, tmp_path), weights, blob, [23])
    assert ours.shape == theirs.shape == (1, 14, 14, 1024)
    assert np.abs(theirs).max() > 0.1 and theirs.std() > 0.01
    err = rel_err(ours, theirs)
    print(f"extraction trunk (batch_norm={batch_norm}): rel err {err:.2e}")
    assert err <= TRUNK_MAX_REL_ERR
