"""Tests for yolojax/darknet: cfg parsing, .weights IO, the generic network, mapping, export.

References used here are independent of yolojax.darknet: parameter counts are re-derived from the cfg text
with a few lines of arithmetic, and the generic network is compared with a plain-numpy NCHW transcription of
darknet's forward passes (conv/BN/maxpool/reorg/route/connected/local/crop).
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from yolojax import darknet as dk
from yolojax.darknet import cfg as dcfg
from yolojax.darknet.mapping import match_handwritten
from yolojax.darknet.weights import WeightsHeader, layer_blobs, read_header
from yolojax.models import TinyYOLOv2, YOLOv1, YOLOv1ConvAnchors, YOLOv2

CFG_DIR = dk.OFFICIAL_CFG_DIR  # the official cfgs ship with the package

# --------------------------------------------------------------------------------------------------------------
# Independent parameter count straight from cfg text (darknet's output-size rules, nothing from yolojax).
# --------------------------------------------------------------------------------------------------------------


def count_from_text(text: str) -> tuple[int, int]:
    """(trainable, batch-norm statistics) of a cfg, by hand-written darknet arithmetic."""
    blocks = re.split(r"^\s*\[", text, flags=re.M)[1:]
    layers = []
    for b in blocks:
        name, body = b.split("]", 1)
        opts = {}
        for line in body.splitlines():
            line = "".join(line.split())
            if line and line[0] not in "#;" and "=" in line:
                k, v = line.split("=", 1)
                opts[k] = v
        layers.append((name.strip(), opts))
    net = layers[0][1]
    h, w, c = int(net["height"]), int(net["width"]), int(net["channels"])
    shapes, trainable, stats = [], 0, 0
    for i, (t, o) in enumerate(layers[1:]):
        if t == "convolutional":
            n, k, s = int(o["filters"]), int(o["size"]), int(o.get("stride", 1))
            p = k // 2 if int(o.get("pad", 0)) else 0
            bn = int(o.get("batch_normalize", 0))
            trainable += c * n * k * k + n + (n if bn else 0)
            stats += 2 * n if bn else 0
            h, w, c = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, n
        elif t == "maxpool":
            s = int(o.get("stride", 1))
            k = int(o.get("size", s))
            h, w = (h + k - 1 - k) // s + 1, (w + k - 1 - k) // s + 1
        elif t == "route":
            refs = [int(r) + i if int(r) < 0 else int(r) for r in o["layers"].split(",")]
            h, w = shapes[refs[0]][:2]
            c = sum(shapes[r][2] for r in refs)
        elif t == "reorg":
            s = int(o["stride"])
            h, w, c = h // s, w // s, c * s * s
        elif t == "connected":
            n = int(o["output"])
            trainable += h * w * c * n + n
            h, w, c = 1, 1, n
        elif t == "crop":
            h, w = int(o["crop_height"]), int(o["crop_width"])
        shapes.append((h, w, c))
    return trainable, stats


def _variable_counts(model, sections) -> tuple[int, int]:
    shapes = dk.variable_shapes(model, sections)
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
    return count(shapes.get("params", {})), count(shapes.get("batch_stats", {}))


@pytest.mark.parametrize("name,expected_type", [
    ("yolov2-voc.cfg", YOLOv2), ("yolo-voc.2.0.cfg", YOLOv2), ("yolov2-tiny-voc.cfg", TinyYOLOv2),
    ("yolo-v1-paper.cfg", YOLOv1), ("fast-yolo-v1-paper.cfg", YOLOv1)])
def test_parameter_counts_match_cfg_and_model(name, expected_type):
    text = (CFG_DIR / name).read_text()
    expected = count_from_text(text)
    sections = dk.parse_cfg(text, name)
    assert dk.count_weights(sections) == expected
    model = dk.build(sections)
    assert type(model) is expected_type  # the hand-written module that training uses
    assert _variable_counts(model, sections) == expected
    assert _variable_counts(dk.DarknetNetwork(sections), sections) == expected
    if name == "yolov2-voc.cfg":  # 50.66M trainable values + 20,672 BN statistics
        assert expected == (50_655_389, 20_672)
    if name == "yolo-v1-paper.cfg":  # YOLOv1: 271.7M trainable values
        assert round(expected[0] / 1e6, 1) == 271.7


def test_handwritten_match_details():
    v2 = match_handwritten(dk.load_cfg(CFG_DIR / "yolov2-voc.cfg"))
    assert (v2.passthrough, v2.flat_output, v2.width) == ("conv64_reorg", True, 1.0)
    assert (v2.num_anchors, v2.num_classes) == (5, 20)
    assert match_handwritten(dk.load_cfg(CFG_DIR / "yolo-voc.2.0.cfg")).passthrough == "reorg"
    v1 = match_handwritten(dk.load_cfg(CFG_DIR / "yolo-v1-paper.cfg"))
    # yolo-v1-paper.cfg's [crop] has no noadjust: darknet feeds conv0 with 2x - 1.
    assert (v1.architecture, v1.crop_rescale, v1.grid_size, v1.boxes_per_cell) == ("yolov1", True, 7, 2)
    for name in ("yolov1.cfg", "darknet19.cfg", "yolov1-tiny.cfg"):  # local layer / classifier / other widths
        assert match_handwritten(dk.load_cfg(CFG_DIR / name)) is None


# --------------------------------------------------------------------------------------------------------------
# Parser errors.
# --------------------------------------------------------------------------------------------------------------


def test_parser_strips_whitespace_and_comments():
    secs = dk.parse_cfg("# c\n[net]\n width = 64\nheight=32\n; x\nchannels=3\n\n[ maxpool ]\nsize = 2\nstride=2\n")
    assert [s.type for s in secs] == ["net", "maxpool"]
    assert secs[0].get_int("width") == 64 and secs[1].line == 8
    assert dcfg.infer_layers(secs)[0].out_shape == (16, 32, 3)


def test_unsupported_layer_names_type_and_line():
    text = ("[net]\nwidth=32\nheight=32\nchannels=3\n\n[convolutional]\nfilters=4\nsize=3\npad=1\n"
            "activation=leaky\n\n[yolo]\nmask=0\n")
    with pytest.raises(dk.CfgError, match=r"my\.cfg:12: unsupported layer type \[yolo\]"):
        dk.parse_cfg(text, "my.cfg")


@pytest.mark.parametrize("body,message", [
    ("[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=swish\n",
     r"c\.cfg:6, key 'activation': unsupported activation 'swish'"),
    ("[convolutional]\nfilters=four\nactivation=leaky\n", r"c\.cfg:6, key 'filters': expected an integer, got 'four'"),
    ("[route]\nlayers=-3\n", r"c\.cfg:6, key 'layers': layer -3 of route layer 0 refers to layer -3"),
    ("[reorg]\nstride=3\n", r"c\.cfg:6, key 'stride': input 32x32 is not divisible by stride 3"),
    ("[convolutional]\nfilters=4\nsize=3\npadding=2\nactivation=leaky\n", r"c\.cfg:6, key 'padding': padding 2"),
])
def test_bad_cfg_values_name_line_and_key(body, message):
    secs = dk.parse_cfg("[net]\nwidth=32\nheight=32\nchannels=3\n\n" + body, "c.cfg")
    with pytest.raises(dk.CfgError, match=message):
        dcfg.infer_layers(secs)


def test_cfg_without_net_or_key_value_is_rejected():
    with pytest.raises(dk.CfgError, match="first section must be \\[net\\]"):
        dk.parse_cfg("[maxpool]\nsize=2\n", "a.cfg")
    with pytest.raises(dk.CfgError, match="a.cfg:2: expected 'key=value'"):
        dk.parse_cfg("[net]\nwidth\n", "a.cfg")


# --------------------------------------------------------------------------------------------------------------
# A small cfg with every supported layer type, and a numpy reference of darknet's forward pass.
# --------------------------------------------------------------------------------------------------------------

SMALL_CFG = """[net]
height=32
width=32
channels=3

[crop]
crop_height=32
crop_width=32

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=8
size=3
stride=2
pad=1
activation=leaky

[route]
layers=-2

[convolutional]
batch_normalize=1
filters=4
size=1
stride=1
pad=1
activation=leaky

[reorg]
stride=2

[route]
layers=-1,-4

[maxpool]
size=3
stride=2

[maxpool]
size=2
stride=1

[local]
size=3
stride=1
pad=1
filters=6
activation=leaky

[connected]
output=20
activation=leaky

[dropout]
probability=.5

[connected]
output=48
activation=linear

[detection]
classes=2
coords=4
side=2
num=2
"""


def _leaky(x):
    return np.where(x > 0, x, 0.1 * x)


def np_conv(x, w, b, stride, pad):
    """x (C, H, W), w (N, C, k, k): darknet's im2col + gemm, written as plain sums."""
    c, h, wd = x.shape
    n, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2]))
    return out + b[:, None, None]


def np_maxpool(x, size, stride):
    """darknet forward_maxpool_layer: padding size-1, offset -padding/2, out-of-image values never win."""
    c, h, w = x.shape
    pad = size - 1
    oh, ow = (h + pad - size) // stride + 1, (w + pad - size) // stride + 1
    out = np.full((c, oh, ow), -np.inf)
    for i in range(oh):
        for j in range(ow):
            for n in range(size):
                for m in range(size):
                    y, xx = -(pad // 2) + i * stride + n, -(pad // 2) + j * stride + m
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, i, j] = np.maximum(out[:, i, j], x[:, y, xx])
    return out


def np_reorg(x, stride):
    """darknet reorg_cpu(input, w, h, c, batch=1, stride, forward=0, out), transcribed loop for loop."""
    c, h, w = x.shape
    flat_in, out = x.reshape(-1), np.zeros(x.size)
    out_c = c // (stride * stride)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                in_index = i + w * (j + h * k)
                c2, offset = k % out_c, k // out_c
                w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                out_index = w2 + w * stride * (h2 + h * stride * c2)
                out[in_index] = flat_in[out_index]
    return out.reshape(c * stride * stride, h // stride, w // stride)


def np_local(x, w, b, n, k):
    """darknet forward_local_layer with pad=1 (size 3): separate (N, C, k, k) weights per output location."""
    c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = b.copy()  # (n, oh, ow)
    for i in range(h):
        for j in range(wd):
            out[:, i, j] += np.tensordot(w[i * wd + j], xp[:, i:i + k, j:j + k], axes=([1, 2, 3], [0, 1, 2]))
    return out


def np_darknet_forward(sections, blobs, image_hwc):
    """Darknet's CPU forward for SMALL_CFG-style nets, in float64 NCHW. Returns the last layer's output."""
    x = image_hwc.transpose(2, 0, 1).astype(np.float64)
    outs = []
    for i, s in enumerate(sections[1:]):
        b = blobs.get(i)
        if s.type == "crop":
            x = x * 2 - 1
        elif s.type == "convolutional":
            x = np_conv(x, b["weights"], np.zeros(b["weights"].shape[0]), s.get_int("stride"), s.get_int("size") // 2)
            if s.get_int("batch_normalize", 0):  # darknet CPU normalize_cpu: eps outside the sqrt
                x = (x - b["rolling_mean"][:, None, None]) / (np.sqrt(b["rolling_variance"][:, None, None]) + 1e-6)
                x = x * b["scales"][:, None, None]
            x = x + b["biases"][:, None, None]
            x = _leaky(x) if s.get_str("activation") == "leaky" else x
        elif s.type == "maxpool":
            x = np_maxpool(x, s.get_int("size"), s.get_int("stride"))
        elif s.type == "route":
            x = np.concatenate([outs[r + i if r < 0 else r] for r in s.get_ints("layers")], axis=0)
        elif s.type == "reorg":
            x = np_reorg(x, s.get_int("stride"))
        elif s.type == "local":
            x = np_local(x, b["weights"], b["biases"], s.get_int("filters"), s.get_int("size"))
            x = _leaky(x)
        elif s.type == "connected":
            x = b["weights"] @ x.reshape(-1) + b["biases"]  # C·H·W flattening
            x = (_leaky(x) if s.get_str("activation") == "leaky" else x)[:, None, None]
        outs.append(x)
    return outs[-2].reshape(-1)  # the layer before [detection]


def smooth_image(h, w, seed=0):
    """A smooth, structured RGB image in [0, 1] (gradients and soft blobs, not noise) [H, W, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.6 - 0.3 * yy, 0.5 + 0.2 * xx, 0.7 - 0.4 * yy * xx], -1)
    for _ in range(4):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
        blob = 1 / (1 + np.exp(np.minimum(((yy - cy) ** 2 + (xx - cx) ** 2 - r * r) / (0.1 * r * r), 50)))
        img = img * (1 - blob[..., None]) + rng.uniform(0, 1, 3) * blob[..., None]
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    sections = dk.parse_cfg(SMALL_CFG, "small.cfg")
    (d / "small.cfg").write_text(SMALL_CFG)
    blobs = dk.random_blobs(sections, seed=3)
    dk.write_weights(d / "small.weights", sections, blobs)
    return d, sections, blobs


def test_generic_network_equals_numpy_darknet(small):
    d, sections, blobs = small
    model, variables = dk.load(d / "small.cfg", d / "small.weights")
    assert type(model) is dk.DarknetNetwork
    img = smooth_image(32, 32)
    out = np.asarray(model.apply(variables, img[None]))
    assert out.shape == (1, 48)
    ref = np_darknet_forward(sections, blobs, img)
    np.testing.assert_allclose(out[0], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_darknet_layer_shapes_of_small_cfg(small):
    _, sections, _ = small
    shapes = [i.out_shape for i in dcfg.infer_layers(sections)]
    # crop, conv, pool, conv/2, route, 1x1, reorg, route, pool 3/2 (pad 2), pool 2/1, local, fc, dropout, fc, det
    assert shapes == [(32, 32, 3), (32, 32, 8), (16, 16, 8), (8, 8, 8), (16, 16, 8), (16, 16, 4), (8, 8, 16),
                      (8, 8, 24), (4, 4, 24), (4, 4, 24), (4, 4, 6), (1, 1, 20), (1, 1, 20), (1, 1, 48), (1, 1, 48)]


def _leaves(variables):
    return traverse_util.flatten_dict(dict(variables))


def test_every_float_of_the_file_lands_in_the_variables(small, tmp_path):
    d, sections, _ = small
    total = sum(i.num_weights for i in dcfg.infer_layers(sections))
    # Distinct floats 1..total (exact in float32 below 2**24): placement is a permutation iff the sorted
    # variables equal the sorted file.
    values = np.arange(1, total + 1, dtype=np.float32)
    (tmp_path / "w.weights").write_bytes(WeightsHeader().to_bytes() + values.tobytes())
    model, variables, report = dk.load_with_report(d / "small.cfg", tmp_path / "w.weights")
    got = np.sort(np.concatenate([np.asarray(v).ravel() for v in _leaves(variables).values()]))
    np.testing.assert_array_equal(got, values)
    assert report.conversion.uninitialized == [] and report.conversion.floats_used == total
    # Spot-check one placement by hand: layer 1 (conv, BN) is biases[8], scales[8], mean[8], var[8], then
    # weights (n=8, c=3, 3, 3); kernel[kh, kw, c, n] = 1 + 32 + ((n * 3 + c) * 3 + kh) * 3 + kw.
    kernel = variables["params"]["conv0"]["conv"]["kernel"]
    assert kernel[2, 1, 0, 5] == 1 + 32 + ((5 * 3 + 0) * 3 + 2) * 3 + 1
    assert variables["batch_stats"]["conv0"]["bn"]["var"][0] == 1 + 24


def test_partial_file_loads_first_layers_and_reports_the_rest(small, tmp_path):
    d, sections, blobs = small
    infos = [i for i in dcfg.infer_layers(sections) if i.num_weights]
    first_two = sum(i.num_weights for i in infos[:2])  # layers 1 and 3 (convs)
    full = (d / "small.weights").read_bytes()
    (tmp_path / "p.weights").write_bytes(full[:20 + 4 * first_two])
    with pytest.warns(UserWarning, match="keep their fresh initialization"):
        model, variables = dk.load(d / "small.cfg", tmp_path / "p.weights")
    _, _, report = dk.load_with_report(d / "small.cfg", tmp_path / "p.weights")
    assert report.conversion.missing_layers == (5, 10, 11, 13)
    assert sorted(report.conversion.uninitialized) == sorted(
        ["params/conv2/conv/kernel", "params/conv2/bn/scale", "params/conv2/bn/bias",
         "batch_stats/conv2/bn/mean", "batch_stats/conv2/bn/var", "params/local0/kernel",
         "params/local0/bias", "params/connected0/dense/kernel", "params/connected0/dense/bias",
         "params/connected1/dense/kernel", "params/connected1/dense/bias"])
    np.testing.assert_array_equal(variables["params"]["conv1"]["conv"]["bias"], blobs[3]["biases"])
    assert all(isinstance(v, np.ndarray) for v in _leaves(variables).values())


def test_truncated_and_oversized_files_say_floats_expected_and_found(small, tmp_path):
    d, sections, _ = small
    full = (d / "small.weights").read_bytes()
    total = (len(full) - 20) // 4
    infos = [i for i in dcfg.infer_layers(sections) if i.num_weights]
    upto_3 = sum(i.num_weights for i in infos[:3])  # through layer 5
    (tmp_path / "t.weights").write_bytes(full[:20 + 4 * (upto_3 - 7)])
    with pytest.raises(dk.WeightsError, match=rf"ends inside layer 5 \[convolutional\] at \S*small.cfg:32: expected "
                                              rf"{upto_3} floats up to the end of this layer \({total} for the "
                                              rf"whole cfg\), found {upto_3 - 7}"):
        dk.load(d / "small.cfg", tmp_path / "t.weights")
    (tmp_path / "o.weights").write_bytes(full + np.zeros(3, np.float32).tobytes())
    with pytest.raises(dk.WeightsError, match=rf"expected {total} floats after the 20-byte header, found "
                                              rf"{total + 3} \(3 too many\)"):
        dk.load(d / "small.cfg", tmp_path / "o.weights")
    (tmp_path / "b.weights").write_bytes(full + b"\0\0")
    with pytest.raises(dk.WeightsError, match="not a whole number of float32"):
        dk.load(d / "small.cfg", tmp_path / "b.weights")


@pytest.mark.parametrize("major,minor,seen,header_bytes", [(0, 1, 12345, 16), (0, 2, 2**40 + 7, 20),
                                                          (1, 0, 99, 20), (0, 0, 5, 16)])
def test_header_seen_is_32_or_64_bit(small, tmp_path, major, minor, seen, header_bytes):
    d, sections, blobs = small
    header = WeightsHeader(major, minor, 0, seen)
    dk.write_weights(tmp_path / "h.weights", sections, blobs, header)
    raw = (tmp_path / "h.weights").read_bytes()
    total = sum(i.num_weights for i in dcfg.infer_layers(sections))
    assert len(raw) == header_bytes + 4 * total
    assert read_header(raw, "h") == header
    got = dk.read_weights(tmp_path / "h.weights", sections)
    np.testing.assert_array_equal(got.layers[10]["weights"], blobs[10]["weights"])


def test_transposed_connected_weights_header(small, tmp_path):
    """Files with major or minor > 1000 store connected weights as [in, out] (darknet's `transpose`)."""
    d, sections, blobs = small
    dk.write_weights(tmp_path / "t.weights", sections, blobs, WeightsHeader(0, 1001, 0, 0))
    raw = (tmp_path / "t.weights").read_bytes()
    infos = [i for i in dcfg.infer_layers(sections) if i.num_weights]
    # minor 1001 is not < 1000, so `seen` is 32-bit: a 16-byte header; layer 13's weights follow its biases.
    offset = 16 + 4 * (sum(i.num_weights for i in infos[:5]) + 48)
    stored = np.frombuffer(raw[offset:offset + 4 * 20 * 48], "<f4").reshape(20, 48)
    np.testing.assert_array_equal(stored, blobs[13]["weights"].T)
    np.testing.assert_array_equal(dk.read_weights(tmp_path / "t.weights", sections).layers[13]["weights"],
                                  blobs[13]["weights"])


# --------------------------------------------------------------------------------------------------------------
# Hand-written modules: export -> import -> export, and agreement with the generic network.
# --------------------------------------------------------------------------------------------------------------


def randomized_variables(model, size, seed=0):
    """Random variables for ``model`` (numpy; no XLA init compile): He-scaled kernels, BN statistics and
    biases away from their trivial init values."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    rng = np.random.default_rng(seed)
    flat = {}
    for k, v in _leaves(shapes).items():
        if k[-1] in ("var", "scale"):
            flat[k] = rng.uniform(0.5, 1.5, v.shape)
        elif k[-1] in ("mean", "bias"):
            flat[k] = rng.normal(0, 0.1, v.shape)
        else:  # kernel [..., fan_in dims..., out]
            flat[k] = rng.normal(0, np.sqrt(2.0 / np.prod(v.shape[:-1])), v.shape)
        flat[k] = flat[k].astype(np.float32)
    return traverse_util.unflatten_dict(flat)


SMALL_MODELS = {
    "yolov2": (YOLOv2(width=0.125, num_classes=3, num_anchors=2, flat_output=True), 64),
    "yolov2_reorg": (YOLOv2(width=0.125, passthrough="reorg", num_classes=3, num_anchors=2, flat_output=True), 64),
    "tiny_yolov2": (TinyYOLOv2(width=0.25, num_classes=3, num_anchors=2, flat_output=True), 64),
    "yolov1": (YOLOv1(width=1 / 16, grid_size=2, num_classes=3), 128),
    "fast_yolo_cropped": (YOLOv1(architecture="fast_yolo", width=0.25, grid_size=2, num_classes=3,
                                 crop_rescale=True), 128),
    "yolov1_conv_anchors": (YOLOv1ConvAnchors(width=1 / 16, num_classes=3, num_anchors=2, flat_output=True), 64),
}


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_export_import_export_is_byte_identical_and_outputs_agree(name, tmp_path):
    model, size = SMALL_MODELS[name]
    variables = randomized_variables(model, size)
    anchors = ((1.0, 2.0), (3.0, 1.5)) if not isinstance(model, YOLOv1) else None
    dk.export(model, variables, tmp_path / "a.cfg", tmp_path / "a.weights", height=size, width=size, anchors=anchors)
    loaded, loaded_vars = dk.load(tmp_path / "a.cfg", tmp_path / "a.weights")
    assert loaded == model  # same hand-written module, same attributes
    dk.export(loaded, loaded_vars, tmp_path / "b.cfg", tmp_path / "b.weights", height=size, width=size, anchors=anchors)
    assert (tmp_path / "a.cfg").read_bytes() == (tmp_path / "b.cfg").read_bytes()
    assert (tmp_path / "a.weights").read_bytes() == (tmp_path / "b.weights").read_bytes()
    # The generic network on the exported files computes what the module computes (checks the C·H·W -> H·W·C
    # row permutation of YOLOv1's first FC layer and the [crop] rescaling).
    generic, generic_vars = dk.load(tmp_path / "a.cfg", tmp_path / "a.weights", generic=True)
    assert type(generic) is dk.DarknetNetwork
    img = smooth_image(size, size)[None]
    want = np.asarray(model.apply(variables, img))
    got = np.asarray(generic.apply(generic_vars, img))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_generic_export_round_trip_is_byte_identical(small, tmp_path):
    d, _, _ = small
    model, variables = dk.load(d / "small.cfg", d / "small.weights")
    dk.export(model, variables, tmp_path / "a.cfg", tmp_path / "a.weights")
    assert (tmp_path / "a.weights").read_bytes() == (d / "small.weights").read_bytes()
    model2, variables2 = dk.load(tmp_path / "a.cfg", tmp_path / "a.weights")
    dk.export(model2, variables2, tmp_path / "b.cfg", tmp_path / "b.weights")
    assert (tmp_path / "a.cfg").read_text() == (tmp_path / "b.cfg").read_text()
    assert (tmp_path / "b.weights").read_bytes() == (d / "small.weights").read_bytes()


def test_space_to_depth_model_cannot_be_exported(tmp_path):
    model = YOLOv2(width=0.125, reorg_impl="space_to_depth")
    with pytest.raises(ValueError, match="no darknet equivalent"):
        dk.export(model, {}, tmp_path / "a.cfg", tmp_path / "a.weights")


def test_variables_that_do_not_fit_name_the_layer(tmp_path):
    model, size = SMALL_MODELS["tiny_yolov2"]
    variables = randomized_variables(model, size)
    flat = _leaves(variables)
    del flat[("params", "conv3", "bn", "scale")]
    with pytest.raises(dk.MappingError, match=r"layer 6 \[convolutional\].*params/conv3/bn/scale is missing"):
        dk.export(model, traverse_util.unflatten_dict(flat), tmp_path / "a.cfg", tmp_path / "a.weights",
                  anchors=((1.0, 1.0), (2.0, 2.0)))


def test_cfg_anchors_and_resize():
    secs = dk.load_cfg(CFG_DIR / "yolov2-voc.cfg")
    np.testing.assert_allclose(dk.cfg_anchors(secs)[4], [11.2364, 10.0071])
    resized = dk.with_input_size(secs, 320, 288)
    assert dcfg.infer_layers(resized)[-1].out_shape == (10, 9, 125)
    assert layer_blobs(dcfg.infer_layers(resized)[-2])[-1] == ("weights", (125, 1024, 1, 1))


def test_backbone_file_fills_the_first_18_convs_of_yolov2(tmp_path):
    """Like darknet19_448.conv.23 for yolov2-voc.cfg: a file that stops after cfg layer 22 (conv17)."""
    model, size = SMALL_MODELS["yolov2"]
    variables = randomized_variables(model, size)
    anchors = ((1.0, 2.0), (3.0, 1.5))
    sections = dk.export(model, variables, tmp_path / "a.cfg", tmp_path / "a.weights", height=size, width=size,
                         anchors=anchors)
    backbone = sum(i.num_weights for i in dcfg.infer_layers(sections)[:23])
    (tmp_path / "b.weights").write_bytes((tmp_path / "a.weights").read_bytes()[:20 + 4 * backbone])
    loaded, loaded_vars, report = dk.load_with_report(tmp_path / "a.cfg", tmp_path / "b.weights")
    assert type(loaded) is YOLOv2 and report.conversion.missing_layers == (23, 24, 26, 29, 30)
    assert {p.split("/")[1] for p in report.conversion.uninitialized} == {f"conv{k}" for k in range(18, 23)}
    assert report.conversion.floats_used == report.num_floats == backbone
    np.testing.assert_array_equal(loaded_vars["batch_stats"]["conv17"]["bn"]["var"],
                                  variables["batch_stats"]["conv17"]["bn"]["var"])


def test_darknet19_classifier_runs_in_the_generic_network(tmp_path):
    sections = dk.with_input_size(dk.load_cfg(CFG_DIR / "darknet19.cfg"), 64, 64)
    (tmp_path / "d.cfg").write_text(dk.format_cfg(sections))
    dk.write_weights(tmp_path / "d.weights", sections, dk.random_blobs(sections, seed=1))
    model, variables = dk.load(tmp_path / "d.cfg", tmp_path / "d.weights")
    assert type(model) is dk.DarknetNetwork
    probs = np.asarray(model.apply(variables, smooth_image(64, 64)[None]))  # avgpool + softmax: [N, 1000]
    assert probs.shape == (1, 1000)
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_convert_script_writes_a_checkpoint_the_api_loads(tmp_path):
    """experiments/convert_darknet.py end to end: its workdir restores through yolojax.inference.api.load_checkpoint
    (what evaluate.py uses) to the same outputs as yolojax.darknet.load on the darknet files."""
    import subprocess
    import sys

    from yolojax.inference import api

    model = TinyYOLOv2(width=0.25, flat_output=True)  # VOC: 20 classes, 5 anchors
    variables = randomized_variables(model, 64)
    dk.export(model, variables, tmp_path / "t.cfg", tmp_path / "t.weights", height=64, width=64,
              header=WeightsHeader(0, 2, 0, 123456))
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "experiments" / "convert_darknet.py"),
                           f"--cfg={tmp_path / 't.cfg'}", f"--weights={tmp_path / 't.weights'}",
                           f"--out={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "config.json").is_file() and (tmp_path / "run" / "checkpoints" / "0").is_dir()
    detector = api.load_checkpoint(str(tmp_path / "run"))
    assert type(detector.model) is TinyYOLOv2 and detector.model.width == 0.25
    img = smooth_image(64, 64)[None]
    want = np.asarray(model.apply(variables, img))
    got = np.asarray(detector.model.apply(detector.variables, img))
    np.testing.assert_array_equal(got.reshape(want.shape), want)


def test_darknet19_module_sections_are_darknet19_448_cfg():
    """The cfg written for a Darknet19 classifier computes what the official darknet19_448.cfg does (the layer
    order yolojax.training.initialization maps darknet files by)."""
    from yolojax.darknet.mapping import _signature, module_sections
    from yolojax.models import Darknet19

    official = dk.load_cfg(CFG_DIR / "darknet19_448.cfg")
    assert _signature(module_sections(Darknet19(num_classes=1000), 448, 448)) == _signature(official)
    backbone = module_sections(Darknet19(), 448, 448)
    assert _signature(backbone) == _signature(official[:24])  # [net] + the 23 layers of darknet19_448.conv.23
