"""Tests for yolojax/models: parameter counts from the cfgs, darknet layer semantics, shapes, jit behaviour."""

from __future__ import annotations

import functools
from pathlib import Path

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

# --------------------------------------------------------------------------------------------------------------
# Darknet cfg arithmetic (an independent, minimal reading of the official cfgs: no yolojax code involved)
# --------------------------------------------------------------------------------------------------------------
from yolojax.darknet import OFFICIAL_CFG_DIR as CFG_DIR  # noqa: E402  (the official cfgs ship with yolojax)
from yolojax.models import (
    BN_EPSILON,
    ConvBN,
    Darknet19,
    TinyYOLOv2,
    YOLOv1,
    YOLOv1ConvAnchors,
    YOLOv2,
    build_model,
    darknet_maxpool,
    darknet_reorg,
    default_model_config,
    reorg,
    space_to_depth,
)
from yolojax.models.layers import darknet_pool_padding, scale_channels


def parse_cfg(text: str) -> list[tuple[str, dict[str, str]]]:
    """[(section type, {key: value})] in file order; like darknet's read_cfg, whitespace is dropped."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            sections.append((line[1:-1], {}))
        else:
            key, value = line.split("=", 1)
            sections[-1][1][key] = value
    return sections


def cfg_param_counts(text: str) -> tuple[int, int]:
    """(trainable values, batch-norm statistics) of a darknet cfg, by darknet's own shape rules.

    conv: filters·size²·c_in weights + filters biases (the BN shift when batch_normalize) + filters BN scales;
    BN statistics = 2·filters (rolling mean and variance). connected: in·out + out.
    """
    sections = parse_cfg(text)
    net = sections[0][1]
    h, w, c = int(net["height"]), int(net["width"]), int(net.get("channels", 3))
    shapes: list[tuple[int, int, int]] = []  # (h, w, c) output of every layer
    trainable = stats = 0
    for kind, opt in sections[1:]:
        if kind in ("convolutional", "conv"):
            f, k, s = int(opt["filters"]), int(opt["size"]), int(opt.get("stride", 1))
            bn = int(opt.get("batch_normalize", 0))
            p = k // 2 if int(opt.get("pad", 0)) else int(opt.get("padding", 0))
            trainable += f * k * k * c + f + (f if bn else 0)
            stats += 2 * f if bn else 0
            h, w, c = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, f
        elif kind in ("maxpool", "max"):
            k, s = int(opt.get("size", opt.get("stride", 1))), int(opt.get("stride", 1))
            pad = int(opt.get("padding", k - 1))
            h, w = (h + pad - k) // s + 1, (w + pad - k) // s + 1
        elif kind in ("avgpool", "avg"):
            h = w = 1
        elif kind == "route":
            idx = [int(v) for v in opt["layers"].split(",")]
            idx = [i if i >= 0 else len(shapes) + i for i in idx]
            h, w = shapes[idx[0]][:2]
            c = sum(shapes[i][2] for i in idx)
        elif kind == "reorg":
            s = int(opt["stride"])
            h, w, c = h // s, w // s, c * s * s
        elif kind in ("connected", "conn"):
            out = int(opt["output"])
            trainable += h * w * c * out + out
            h, w, c = 1, 1, out
        elif kind == "crop":
            h, w = int(opt["crop_height"]), int(opt["crop_width"])
        shapes.append((h, w, c))
    return trainable, stats


# Expected counts. yolov2-voc's are darknet's published figures; the others were derived with
# cfg_param_counts above and are checked against the cfg text in test_cfg_arithmetic when the cfgs are present.
EXPECTED_COUNTS = {
    "yolov2-voc.cfg": (50_655_389, 20_672),
    "yolo-voc.2.0.cfg": (67_137_565, 20_544),
    "yolov2-tiny-voc.cfg": (15_861_773, 6_112),
    "yolo-v1-paper.cfg": (271_703_550, 0),
    "fast-yolo-v1-paper.cfg": (45_089_374, 0),
    "darknet19.cfg": (20_842_376, 14_400),
}
MODELS_FOR_CFG = {
    "yolov2-voc.cfg": (YOLOv2(passthrough="conv64_reorg"), 416),
    "yolo-voc.2.0.cfg": (YOLOv2(passthrough="reorg"), 416),
    "yolov2-tiny-voc.cfg": (TinyYOLOv2(), 416),
    "yolo-v1-paper.cfg": (YOLOv1(architecture="yolov1"), 448),
    "fast-yolo-v1-paper.cfg": (YOLOv1(architecture="fast_yolo"), 448),
    "darknet19.cfg": (Darknet19(num_classes=1000), 256),
}


def _size(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@functools.lru_cache(maxsize=None)
def _abstract_variables(model: nn.Module, size: int, batch: int = 1):
    """Variable shapes without allocating them (full-size YOLOv1 is 1 GB)."""
    x = jnp.zeros((batch, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def test_cfg_arithmetic_hand_check():
    # One layer by hand: conv 3x3, 3 -> 32, BN: 3·3·3·32 weights + 32 shifts + 32 scales; stats 64.
    text = "[net]\nheight=32\nwidth=32\n[convolutional]\nbatch_normalize=1\nfilters=32\nsize=3\nstride=1\npad=1\n"
    assert cfg_param_counts(text) == (864 + 64, 64)
    # Shape bookkeeping: 26x26x512 -> reorg -> 13x13x2048 -> maxpool 2/1 keeps 13x13 -> route concat of both
    # -> 13x13x4096 -> connected 10: 13·13·4096·10 weights + 10 biases.
    text = (
        "[net]\nheight=26\nwidth=26\nchannels=512\n[reorg]\nstride=2\n[maxpool]\nsize=2\nstride=1\n"
        "[route]\nlayers=-1,-2\n[connected]\noutput=10\n"
    )
    assert cfg_param_counts(text) == (13 * 13 * 4096 * 10 + 10, 0)


@pytest.mark.parametrize("cfg_name", sorted(EXPECTED_COUNTS))
def test_cfg_arithmetic(cfg_name):
    assert cfg_param_counts((CFG_DIR / cfg_name).read_text()) == EXPECTED_COUNTS[cfg_name]


@pytest.mark.parametrize("cfg_name", sorted(MODELS_FOR_CFG))
def test_param_counts_equal_darknet(cfg_name):
    model, size = MODELS_FOR_CFG[cfg_name]
    variables = _abstract_variables(model, size)
    bn_stats = _size(variables.get("batch_stats", {}))
    assert (_size(variables["params"]), bn_stats) == EXPECTED_COUNTS[cfg_name]
    # Parameters are float32 whatever the compute dtype.
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


def test_param_names_follow_cfg_conv_order():
    variables = _abstract_variables(YOLOv2(), 416)
    params = variables["params"]
    assert sorted(params, key=lambda n: int(n[4:])) == [f"conv{i}" for i in range(23)]
    assert params["conv20"]["conv"]["kernel"].shape == (1, 1, 512, 64)  # the passthrough squeeze
    assert params["conv21"]["conv"]["kernel"].shape == (3, 3, 256 + 1024, 1024)  # after the route concat
    assert set(params["conv21"]) == {"conv", "bn"} and "bias" not in params["conv21"]["conv"]
    assert params["conv22"]["conv"]["kernel"].shape == (1, 1, 1024, 125)
    assert params["conv22"]["conv"]["bias"].shape == (125,) and "conv22" not in variables["batch_stats"]
    # Darknet-19 and YOLOv2 share the trunk names, so darknet19_448.conv.23 loads into either.
    trunk = _abstract_variables(Darknet19(), 416)["params"]
    assert jax.tree.map(lambda a: a.shape, trunk) == jax.tree.map(
        lambda a: a.shape, {k: params[k] for k in trunk}
    )
    v1 = _abstract_variables(YOLOv1(), 448)["params"]
    assert v1["conv0"]["conv"]["kernel"].shape == (7, 7, 3, 64)
    assert v1["fc0"]["kernel"].shape == (7 * 7 * 1024, 4096) and v1["fc1"]["kernel"].shape == (4096, 1470)


# --------------------------------------------------------------------------------------------------------------
# Layers against plain-loop transcriptions of darknet's C code
# --------------------------------------------------------------------------------------------------------------


def reorg_cpu(x: np.ndarray, w: int, h: int, c: int, batch: int, stride: int, forward: int) -> np.ndarray:
    """Line-for-line transcription of darknet's blas.c reorg_cpu on flat NCHW buffers."""
    out = np.zeros_like(x)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2 = k % out_c
                    offset = k // out_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if forward:
                        out[out_index] = x[in_index]
                    else:
                        out[in_index] = x[out_index]
    return out


@pytest.mark.parametrize("n,h,w,c,stride", [(2, 4, 6, 8, 2), (1, 26, 26, 4, 2), (1, 6, 9, 18, 3)])
def test_darknet_reorg_equals_reorg_cpu(n, h, w, c, stride):
    x = np.random.default_rng(0).normal(size=(n, h, w, c)).astype(np.float32)
    # forward_reorg_layer (not reverse) calls reorg_cpu(input, l.w, l.h, l.c, batch, stride, 0, output) with
    # the *input* dimensions; the output buffer is then read as (stride² c, h / stride, w / stride).
    flat = reorg_cpu(x.transpose(0, 3, 1, 2).ravel(), w, h, c, n, stride, 0)
    expected = flat.reshape(n, c * stride * stride, h // stride, w // stride).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(np.asarray(darknet_reorg(jnp.asarray(x), stride)), expected)
    np.testing.assert_array_equal(np.asarray(reorg(jnp.asarray(x), stride, "darknet")), expected)


def test_space_to_depth_definition_and_difference_from_darknet():
    x = np.arange(2 * 4 * 4 * 8, dtype=np.float32).reshape(2, 4, 4, 8)
    got = np.asarray(space_to_depth(jnp.asarray(x), 2))
    expected = np.zeros((2, 2, 2, 32), np.float32)
    for dy in range(2):
        for dx in range(2):
            expected[..., (dy * 2 + dx) * 8 : (dy * 2 + dx + 1) * 8] = x[:, dy::2, dx::2, :]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.asarray(reorg(jnp.asarray(x), 2, "space_to_depth")), expected)
    # Same values, different permutation: this is why darknet weights need the darknet reorg.
    dk = np.asarray(darknet_reorg(jnp.asarray(x), 2))
    assert not np.array_equal(dk, got)
    np.testing.assert_array_equal(np.sort(dk.ravel()), np.sort(got.ravel()))
    with pytest.raises(ValueError, match="reorg_impl"):
        reorg(jnp.asarray(x), 2, "pixel_shuffle")
    with pytest.raises(ValueError, match="not divisible by 4"):
        darknet_reorg(jnp.zeros((1, 4, 4, 6)), 2)


def maxpool_cpu(x: np.ndarray, size: int, stride: int, pad: int) -> np.ndarray:
    """Transcription of darknet's forward_maxpool_layer on one [C, H, W] image."""
    c, h_in, w_in = x.shape
    out_h, out_w = (h_in + pad - size) // stride + 1, (w_in + pad - size) // stride + 1
    offset = -(pad // 2)  # C: -l.pad / 2 with pad >= 0
    out = np.empty((c, out_h, out_w), x.dtype)
    for k in range(c):
        for i in range(out_h):
            for j in range(out_w):
                best = -np.finfo(np.float32).max
                for n in range(size):
                    for m in range(size):
                        cur_h, cur_w = offset + i * stride + n, offset + j * stride + m
                        valid = 0 <= cur_h < h_in and 0 <= cur_w < w_in
                        val = x[k, cur_h, cur_w] if valid else -np.finfo(np.float32).max
                        best = max(best, val)
                out[k, i, j] = best
    return out


def maxpool_backward_cpu(x: np.ndarray, delta_out: np.ndarray, size: int, stride: int, pad: int) -> np.ndarray:
    """Transcription of darknet's forward_maxpool_layer (its ``indexes``: the first strict maximum of a window)
    and backward_maxpool_layer (``delta[index] += delta_out``) on one [C, H, W] image."""
    c, h_in, w_in = x.shape
    out_h, out_w = delta_out.shape[1:]
    offset = -(pad // 2)
    delta = np.zeros_like(x)
    for k in range(c):
        for i in range(out_h):
            for j in range(out_w):
                best, best_index = -np.finfo(np.float32).max, None
                for n in range(size):
                    for m in range(size):
                        cur_h, cur_w = offset + i * stride + n, offset + j * stride + m
                        valid = 0 <= cur_h < h_in and 0 <= cur_w < w_in
                        val = x[k, cur_h, cur_w] if valid else -np.finfo(np.float32).max
                        if val > best:
                            best, best_index = val, (cur_h, cur_w) if valid else None
                delta[k, best_index[0], best_index[1]] += delta_out[k, i, j]
    return delta


@pytest.mark.parametrize(
    "h,w,size,stride", [(6, 6, 2, 2), (5, 7, 2, 2), (3, 3, 2, 1), (5, 4, 3, 1), (7, 7, 3, 2), (13, 13, 2, 1)]
)
def test_darknet_maxpool_equals_darknet_loop(h, w, size, stride):
    # All values negative: zero padding (a common port bug) would show up as zeros at the borders.
    x = -np.abs(np.random.default_rng(1).normal(size=(2, h, w, 3))).astype(np.float32) - 0.1
    got = np.asarray(darknet_maxpool(jnp.asarray(x), size, stride))
    expected = np.stack([maxpool_cpu(im.transpose(2, 0, 1), size, stride, size - 1).transpose(1, 2, 0) for im in x])
    np.testing.assert_array_equal(got, expected)


def test_maxpool_size2_stride1_by_hand():
    x = jnp.array([[-1.0, -5.0], [-3.0, -2.0]]).reshape(1, 2, 2, 1)
    # Window at (i, j) covers rows i..i+1, cols j..j+1; row/col 2 is outside (never wins).
    np.testing.assert_array_equal(np.asarray(darknet_maxpool(x, 2, 1))[0, :, :, 0], [[-1.0, -2.0], [-2.0, -2.0]])
    assert darknet_pool_padding(13, 2, 1) == (0, 1)  # Tiny YOLOv2: 13x13 stays 13x13
    assert darknet_pool_padding(416, 2, 2) == (0, 0)
    assert darknet_pool_padding(5, 3, 1) == (1, 1)


def conv_reference(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """Darknet im2col convolution with pad = size // 2: input row = out_row * stride + ky - pad."""
    n, h, w, _ = x.shape
    k, _, _, f = kernel.shape
    p = k // 2
    out_h, out_w = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
    out = np.zeros((n, out_h, out_w, f), np.float64)
    for oy in range(out_h):
        for ox in range(out_w):
            for ky in range(k):
                for kx in range(k):
                    iy, ix = oy * stride + ky - p, ox * stride + kx - p
                    if 0 <= iy < h and 0 <= ix < w:
                        out[:, oy, ox, :] += x[:, iy, ix, :] @ kernel[ky, kx]
    return out


@pytest.mark.parametrize("h,kernel_size,stride", [(9, 7, 2), (8, 7, 2), (6, 3, 2), (5, 3, 1), (4, 1, 1)])
def test_conv_padding_matches_darknet(h, kernel_size, stride):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, h, h, 3)).astype(np.float32)
    layer = ConvBN(4, kernel_size, stride, batch_norm=False, activation="linear")
    kernel = rng.normal(size=(kernel_size, kernel_size, 3, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    variables = {"params": {"conv": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}}}
    got = np.asarray(layer.apply(variables, jnp.asarray(x)))
    np.testing.assert_allclose(got, conv_reference(x, kernel, stride) + bias, rtol=1e-5, atol=1e-5)


def test_convbn_inference_formula():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 3, 3, 2)).astype(np.float32)
    kernel = rng.normal(size=(1, 1, 2, 3)).astype(np.float32)
    scale, shift = np.array([1.5, -2.0, 0.5], np.float32), np.array([0.1, 0.2, -3.0], np.float32)
    mean, var = np.array([0.3, -0.2, 0.0], np.float32), np.array([0.5, 2.0, 1e-3], np.float32)
    variables = {
        "params": {"conv": {"kernel": kernel}, "bn": {"scale": scale, "bias": shift}},
        "batch_stats": {"bn": {"mean": mean, "var": var}},
    }
    got = np.asarray(ConvBN(3, 1).apply(variables, jnp.asarray(x), train=False))
    z = scale * (x @ kernel[0, 0] - mean) / np.sqrt(var + 1e-6) + shift
    expected = np.where(z > 0, z, 0.1 * z)  # leaky slope 0.1, not Flax's 0.01
    assert (z < 0).any() and BN_EPSILON == 1e-6
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_scale_channels():
    assert [scale_channels(c, 1.0) for c in (16, 32, 64, 125 - 1, 1024, 4096)] == [16, 32, 64, 124, 1024, 4096]
    assert [scale_channels(c, 1 / 16) for c in (16, 32, 64, 1024)] == [4, 4, 4, 64]
    with pytest.raises(ValueError, match="width"):
        scale_channels(32, 0.0)


# --------------------------------------------------------------------------------------------------------------
# Shapes, jit, gradients
# --------------------------------------------------------------------------------------------------------------

SIZES = tuple(range(320, 609, 32))


@pytest.mark.parametrize("size", SIZES)
def test_full_size_output_shapes(size):
    s = size // 32
    for model in (YOLOv2(passthrough=p) for p in ("conv64_reorg", "reorg", "none")):
        variables = _abstract_variables(model, 320)  # the same variables serve every size
        out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, jnp.zeros((2, size, size, 3)))
        assert out.shape == (2, s, s, 5, 25) and out.dtype == jnp.float32
    tiny = TinyYOLOv2(flat_output=True)
    out = jax.eval_shape(lambda v, x: tiny.apply(v, x), _abstract_variables(tiny, 320), jnp.zeros((1, size, size, 3)))
    assert out.shape == (1, s, s, 125)


def test_output_shapes_non_square_and_other_heads():
    model = YOLOv2(num_anchors=3, num_classes=4)
    out = jax.eval_shape(lambda v, x: model.apply(v, x), _abstract_variables(model, 320), jnp.zeros((1, 320, 480, 3)))
    assert out.shape == (1, 10, 15, 3, 9)
    d19 = Darknet19()
    d19_vars = _abstract_variables(d19, 416)
    fine, coarse = jax.eval_shape(lambda v, x: d19.apply(v, x), d19_vars, jnp.zeros((1, 416, 416, 3)))
    assert fine.shape == (1, 26, 26, 512) and coarse.shape == (1, 13, 13, 1024)
    v1 = YOLOv1(grid_size=5, boxes_per_cell=3, num_classes=4)
    out = jax.eval_shape(lambda v, x: v1.apply(v, x), _abstract_variables(v1, 448), jnp.zeros((1, 448, 448, 3)))
    assert out.shape == (1, 5 * 5 * (5 * 3 + 4))


@pytest.mark.parametrize("passthrough,channels", [("conv64_reorg", 256), ("reorg", 2048)])
def test_route_concat_order_is_passthrough_first(passthrough, channels):
    # darknet's `[route] layers=-1,-4` puts the reorg output before the main path; imported conv21/conv20
    # kernels depend on this order. Read it off the traced program (no compilation).
    model = YOLOv2(passthrough=passthrough)
    variables = _abstract_variables(model, 416)
    images = jax.ShapeDtypeStruct((1, 416, 416, 3), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x))(variables, images)
    concats = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "concatenate"]
    assert len(concats) == 1
    assert [v.aval.shape for v in concats[0].invars] == [(1, 13, 13, channels), (1, 13, 13, 1024)]


def test_bad_input_sizes_are_named():
    with pytest.raises(ValueError, match="416x400 must be a multiple of 32"):
        YOLOv2(width=1 / 16).init(jax.random.key(0), jnp.zeros((1, 416, 400, 3)))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        TinyYOLOv2(width=1 / 16).init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)))
    with pytest.raises(ValueError, match="passthrough"):
        YOLOv2(passthrough="concat", width=1 / 16).init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))


@functools.lru_cache(maxsize=None)
def _tiny_variables(model: nn.Module, size: int):
    """Random variables with darknet-like statistics, drawn on the host.

    Much cheaper than model.init on a busy 2-core CPU (jax.random init compiles one threefry program per
    shape); test_init_runs covers the real init once.
    """
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, size=shape)
        else:  # bias, mean
            value = 0.1 * rng.normal(size=shape)
        return jnp.asarray(value, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, _abstract_variables(model, size))


def test_convbn_init():
    variables = ConvBN(64, 3).init(jax.random.key(0), jnp.zeros((1, 4, 4, 32)))
    bn = variables["params"]["bn"]
    assert np.all(np.asarray(bn["scale"]) == 1) and np.all(np.asarray(bn["bias"]) == 0)
    stats = variables["batch_stats"]["bn"]
    assert np.all(np.asarray(stats["mean"]) == 0) and np.all(np.asarray(stats["var"]) == 1)
    # He-normal kernels as darknet: std sqrt(2 / fan_in) = sqrt(2 / 288) (18k samples).
    kernel = np.asarray(variables["params"]["conv"]["kernel"])
    assert kernel.shape == (3, 3, 32, 64) and "bias" not in variables["params"]["conv"]
    assert abs(kernel.std() / np.sqrt(2.0 / 288) - 1) < 0.05


def test_one_compilation_per_input_shape_all_sizes():
    model = TinyYOLOv2(width=1 / 16)
    variables = _tiny_variables(model, 64)
    traces = []

    def forward(v, x):
        traces.append(x.shape)
        return model.apply(v, x)

    forward_jit = jax.jit(chex.assert_max_traces(forward, n=len(SIZES)))
    for _ in range(2):  # the second pass must reuse every compiled function
        for size in SIZES:
            out = forward_jit(variables, jnp.full((1, size, size, 3), 0.5))
            assert out.shape == (1, size // 32, size // 32, 5, 25)
    assert len(traces) == len(SIZES)
    assert bool(jnp.all(jnp.isfinite(out)))


TINY_MODELS = {
    "yolov1": (YOLOv1(width=1 / 16), 128),
    "fast_yolo_bn": (YOLOv1(architecture="fast_yolo", batch_norm=True, width=1 / 16), 128),
    "yolov2_conv64_reorg": (YOLOv2(width=1 / 16), 64),
    "yolov2_reorg_s2d": (YOLOv2(passthrough="reorg", reorg_impl="space_to_depth", width=1 / 16), 64),
    "yolov2_none": (YOLOv2(passthrough="none", width=1 / 16), 64),  # slow-marked below
    "tiny_yolov2": (TinyYOLOv2(width=1 / 16), 64),
    "darknet19_classifier": (Darknet19(num_classes=10, width=1 / 16), 64),
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "yolov2_none" else n for n in sorted(TINY_MODELS)]
)
def test_forward_backward_under_jit(name):
    model, size = TINY_MODELS[name]
    variables = _tiny_variables(model, size)
    images = jax.random.uniform(jax.random.key(1), (2, size, size, 3))
    has_bn = "batch_stats" in variables

    @jax.jit
    def loss_and_grad(params, batch_stats, x):
        def loss_fn(p):
            v = {"params": p, **({"batch_stats": batch_stats} if has_bn else {})}
            out, updates = model.apply(
                v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)}
            )
            return jnp.mean(out**2), (out, updates)

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    (loss, (out, updates)), grads = loss_and_grad(variables["params"], variables.get("batch_stats"), images)
    assert out.dtype == jnp.float32
    assert np.isfinite(float(loss)) and float(loss) > 0
    # Every parameter receives a gradient (nothing is disconnected, e.g. the passthrough branch).
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)), path
        assert float(jnp.max(jnp.abs(g))) > 0, path
    if has_bn:  # train mode updates the running statistics
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"], variables["batch_stats"])
        assert all(jax.tree.leaves(changed))


def test_flat_output_is_darknet_channel_order():
    model, size = TinyYOLOv2(num_anchors=3, num_classes=2, width=1 / 16), 64
    variables = _tiny_variables(model, size)
    x = jax.random.uniform(jax.random.key(3), (2, size, size, 3))
    out = np.asarray(jax.jit(model.apply)(variables, x))
    flat = np.asarray(jax.jit(model.clone(flat_output=True).apply)(variables, x))
    assert out.shape == (2, 2, 2, 3, 7) and flat.shape == (2, 2, 2, 21)
    for a in range(3):
        for k in range(7):
            np.testing.assert_array_equal(out[..., a, k], flat[..., a * 7 + k])


def test_bfloat16_compute_float32_params():
    model = YOLOv2(width=1 / 16)
    variables = _tiny_variables(model, 64)
    x = jax.random.uniform(jax.random.key(4), (2, 64, 64, 3))
    ref = jax.jit(model.apply)(variables, x)
    bf16 = model.clone(dtype=jnp.bfloat16)
    assert jax.tree.map(lambda a: a.shape, _abstract_variables(bf16, 64)) == jax.tree.map(lambda a: a.shape, variables)
    out = jax.jit(bf16.apply)(variables, x)
    assert out.dtype == jnp.float32
    # bf16 keeps ~3 significant digits; errors accumulate over 23 layers.
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=0.05 * float(jnp.max(jnp.abs(ref))))
    assert not np.array_equal(np.asarray(out), np.asarray(ref))  # really computed in bf16


def test_build_model_from_config():
    cfg = ml_collections.ConfigDict(
        {
            "name": "yolov2",
            "num_classes": 20,
            "width": 0.5,
            "dtype": "bfloat16",
            "v1": {"grid_size": 7, "boxes_per_cell": 2, "batch_norm": False, "dropout_rate": 0.5},
            "v2": {"num_anchors": 5, "passthrough": "reorg", "reorg_impl": "space_to_depth", "batch_norm": True},
        }
    )
    model = build_model(cfg)
    assert isinstance(model, YOLOv2)
    assert (model.passthrough, model.reorg_impl, model.width, model.dtype) == (
        "reorg", "space_to_depth", 0.5, jnp.bfloat16,
    )  # fmt: skip
    cfg.name = "tiny_yolov2"
    assert isinstance(build_model(cfg), TinyYOLOv2)
    cfg.name, cfg.v1.grid_size, cfg.v1.batch_norm = "fast_yolo", 5, True
    model = build_model(cfg)
    assert isinstance(model, YOLOv1) and (model.architecture, model.grid_size, model.batch_norm) == (
        "fast_yolo", 5, True,
    )  # fmt: skip
    cfg.name = "yolov3"
    with pytest.raises(ValueError, match="model.name"):
        build_model(cfg)
    cfg.name, cfg.v2.passthrough = "yolov2", "conv32_reorg"
    with pytest.raises(ValueError, match="model.v2.passthrough"):
        build_model(cfg)
    cfg.v2.passthrough, cfg.v2.reorg_impl = "reorg", "pixel_shuffle"
    with pytest.raises(ValueError, match="model.v2.reorg_impl"):
        build_model(cfg)
    cfg.v2.reorg_impl, cfg.dtype = "darknet", "float64"
    with pytest.raises(ValueError, match="model.dtype"):
        build_model(cfg)



# --------------------------------------------------------------------------------------------------------------
# The YOLOv1 trunk with a conv anchor head (YOLO9000 Table 2, "convolutional, anchor boxes")
# --------------------------------------------------------------------------------------------------------------


def conv_anchors_cfg_text(num_anchors: int, num_classes: int, size: int) -> str:
    """yolo-v1-paper.cfg edited the way the paper describes: batch norm on every conv, the connected layers
    (and dropout, detection) dropped, the last maxpool removed, a 1x1 linear conv to A·(5+C) appended."""
    text = Path(CFG_DIR, "yolo-v1-paper.cfg").read_text()
    text = text[: text.index("[connected]")]
    last_pool = text.rindex("[maxpool]")
    text = text[:last_pool] + text[text.index("[convolutional]", last_pool):]
    text = text.replace("[convolutional]", "[convolutional]\nbatch_normalize=1")
    text = text.replace("height=448", f"height={size}").replace("width=448", f"width={size}")
    text = text.replace("crop_width=448", f"crop_width={size}").replace("crop_height=448", f"crop_height={size}")
    return text + (f"\n[convolutional]\nfilters={num_anchors * (5 + num_classes)}\nsize=1\nstride=1\npad=1\n"
                   "activation=linear\n")


def test_conv_anchors_shape_and_params_match_the_edited_yolov1_cfg():
    model = YOLOv1ConvAnchors(num_anchors=9, num_classes=20)
    variables = _abstract_variables(model, 416)
    out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 416, 416, 3))), variables)
    assert out.shape == (1, 13, 13, 9, 25) and out.dtype == jnp.float32  # 416 -> 13x13, as the paper says
    trainable, stats = cfg_param_counts(conv_anchors_cfg_text(9, 20, 416))
    assert (_size(variables["params"]), _size(variables["batch_stats"])) == (trainable, stats)
    # 24 trunk convs (as in YOLOv1) + the head conv, named conv0..conv24 in cfg order; no connected layer.
    assert sorted(variables["params"]) == sorted(f"conv{k}" for k in range(25))
    assert variables["params"]["conv24"]["conv"]["kernel"].shape == (1, 1, 1024, 225)
    assert variables["params"]["conv23"]["conv"]["kernel"].shape == (3, 3, 1024, 1024)
    with pytest.raises(ValueError, match="multiple of 32"):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 400, 400, 3))), variables)


@pytest.mark.slow  # compiles a 25-conv forward + backward (the ablation sweep trains it through train.py too)
def test_conv_anchors_trains_and_is_registered():
    """build_model('yolov1_conv_anchors') at a tiny width: a few SGD steps of the region loss (offset form)
    on one fixed batch lower the loss; every parameter gets a gradient; 64 px -> 2x2 grid."""
    from yolojax.ops import losses

    cfg = default_model_config({"name": "yolov1_conv_anchors", "num_classes": 3, "width": 0.125,
                                "v2": {"num_anchors": 2, "batch_norm": True}})
    model = build_model(cfg)
    assert isinstance(model, YOLOv1ConvAnchors) and (model.num_anchors, model.width) == (2, 0.125)
    anchors = jnp.array([[0.5, 0.5], [1.0, 1.5]])
    images = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
    boxes = jnp.array([[[0.1, 0.1, 0.4, 0.5]], [[0.5, 0.4, 0.9, 0.8]]])
    classes, mask = jnp.array([[0], [2]]), jnp.ones((2, 1), bool)
    variables = model.init(jax.random.key(1), images)

    @jax.jit
    def step(params, batch_stats):
        def objective(p):
            out, upd = model.apply({"params": p, "batch_stats": batch_stats}, images, train=True,
                                   mutable=["batch_stats"])
            return losses.yolov2_loss(out, boxes, classes, mask, anchors=anchors, location="offset")[0], (out, upd)

        (loss, (out, upd)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return loss, out, jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), upd["batch_stats"], grads

    params, stats = variables["params"], variables["batch_stats"]
    loss0, out, params, stats, grads = step(params, stats)
    assert out.shape == (2, 2, 2, 2, 8)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert float(jnp.max(jnp.abs(g))) > 0, path
    for _ in range(4):
        loss, _, params, stats, _ = step(params, stats)
    assert np.isfinite(float(loss)) and float(loss) < float(loss0)


@pytest.mark.parametrize(
    "h,w,size,stride", [(6, 6, 2, 2), (5, 7, 2, 2), (3, 3, 2, 1), (5, 4, 3, 1), (7, 7, 3, 2), (13, 13, 2, 1)]
)
def test_darknet_maxpool_gradient_equals_darknet_backward(h, w, size, stride):
    # Small integers: many ties, which darknet breaks by the first maximum of a window in row-major order.
    rng = np.random.default_rng(2)
    x = rng.integers(-2, 2, size=(2, h, w, 3)).astype(np.float32)
    out, vjp = jax.vjp(lambda v: darknet_maxpool(v, size, stride), jnp.asarray(x))
    g = rng.normal(size=out.shape).astype(np.float32)
    got = np.asarray(vjp(jnp.asarray(g))[0])
    expected = np.stack([maxpool_backward_cpu(im.transpose(2, 0, 1), gi.transpose(2, 0, 1), size, stride,
                                              size - 1).transpose(1, 2, 0) for im, gi in zip(x, g)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # overlapping windows: sums in another order
