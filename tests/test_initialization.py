"""yolojax.training.initialization: darknet backbones by layer order, fine-tuning by path and shape, frozen variables.

Activations against OpenCV are in test_opencv_parity.py; here: which layers and floats land where (counted by
hand from the cfg's shapes), what keeps its initialization, optimizer freezing, and the one-line errors.
Models at width 1.0 (darknet files have the published channel counts) are only shape-evaluated.
"""

from __future__ import annotations

import json
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from yolojax import darknet as dk
from yolojax.darknet.mapping import MappingError
from yolojax.darknet.weights import WeightsError
from yolojax.models import Darknet19, TinyYOLOv2, YOLOv1, YOLOv1ConvAnchors, YOLOv2
from yolojax.training import initialization as ini

CFG_DIR = dk.OFFICIAL_CFG_DIR

# darknet19_448.cfg's 18 convolutions before its classifier, read off the cfg: (input channels, filters, size).
# Each holds filters * (in * size * size + 4) floats: the weights, then biases, scales, rolling mean, variance.
DARKNET19_CONVS = [(3, 32, 3), (32, 64, 3), (64, 128, 3), (128, 64, 1), (64, 128, 3), (128, 256, 3), (256, 128, 1),
                   (128, 256, 3), (256, 512, 3), (512, 256, 1), (256, 512, 3), (512, 256, 1), (256, 512, 3),
                   (512, 1024, 3), (1024, 512, 1), (512, 1024, 3), (1024, 512, 1), (512, 1024, 3)]
CONV23_FLOATS = sum(n * (c * k * k + 4) for c, n, k in DARKNET19_CONVS)  # 19,831,776
# The classifier (cfg layer 23): 1000 filters 1x1 on 1024 channels, with bias, no batch norm.
CLASSIFIER_FLOATS = 1000 * 1024 + 1000
# extraction.cfg's 20 convolutions before its classifier, read off the cfg: 64 7x7/2, M, 192 3x3, M, 128 1x1,
# 256 3x3, 256 1x1, 512 3x3, M, 4 x (256 1x1, 512 3x3), 512 1x1, 1024 3x3, M, 2 x (512 1x1, 1024 3x3).
EXTRACTION_CONVS = ([(3, 64, 7), (64, 192, 3), (192, 128, 1), (128, 256, 3), (256, 256, 1), (256, 512, 3)]
                    + [(512, 256, 1), (256, 512, 3)] * 4 + [(512, 512, 1), (512, 1024, 3)]
                    + [(1024, 512, 1), (512, 1024, 3)] * 2)


def shapes_of(model, size: int) -> dict:
    return dict(jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)))


def flat(tree) -> dict[str, object]:
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(flax.core.unfreeze(tree)).items()}


@pytest.fixture(scope="module")
def darknet19_files(tmp_path_factory):
    """Random darknet19_448 blobs (our writer): the partial darknet19_448.conv.23 (only the first 23 layers,
    as darknet's `partial` command writes it) and the full .weights."""
    d = tmp_path_factory.mktemp("d19")
    sections = dk.load_cfg(CFG_DIR / "darknet19_448.cfg")
    blobs = dk.random_blobs(sections, seed=11)
    dk.write_weights(d / "darknet19_448.conv.23", sections[:24], blobs)  # [net] + layers 0..22
    dk.write_weights(d / "darknet19_448.weights", sections, blobs)
    return d, blobs


@pytest.mark.parametrize("model", [
    YOLOv2(), YOLOv2(passthrough="reorg"), YOLOv2(passthrough="none", num_classes=3, num_anchors=9),
    YOLOv2(reorg_impl="space_to_depth"), Darknet19(), Darknet19(num_classes=1000),
], ids=["yolov2", "yolov2_paper_era", "yolov2_no_passthrough", "yolov2_space_to_depth", "darknet19_backbone",
        "darknet19_classifier"])
def test_partial_conv23_fills_exactly_the_18_trunk_convs(model, darknet19_files):
    d, blobs = darknet19_files
    path = d / "darknet19_448.conv.23"
    assert path.stat().st_size == 20 + 4 * CONV23_FLOATS  # the file holds just those layers
    template = shapes_of(model, 416 if isinstance(model, YOLOv2) else 448)
    variables, report = ini.from_darknet(model, template, path)

    cfg_conv_layers = [0, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22]  # darknet19_448.cfg
    assert [(l["cfg_layer"], l["module"]) for l in report.layers] == [
        (i, f"conv{k}") for k, i in enumerate(cfg_conv_layers)]
    assert report.floats_copied == CONV23_FLOATS == 19_831_776
    assert report.unused_source == {}
    # Values: every copied conv equals its blobs (darknet (n, c, kh, kw) -> Flax (kh, kw, c, n)).
    got = flat(variables)
    for k, i in enumerate(cfg_conv_layers):
        b = blobs[i]
        np.testing.assert_array_equal(got[f"params/conv{k}/conv/kernel"], b["weights"].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(got[f"params/conv{k}/bn/scale"], b["scales"])
        np.testing.assert_array_equal(got[f"params/conv{k}/bn/bias"], b["biases"])
        np.testing.assert_array_equal(got[f"batch_stats/conv{k}/bn/mean"], b["rolling_mean"])
        np.testing.assert_array_equal(got[f"batch_stats/conv{k}/bn/var"], b["rolling_variance"])
    trunk = {p for p in got if re.match(r"^[a-z_]+/conv([0-9]|1[0-7])/", p)}
    assert set(report.copied) == trunk and len(trunk) == 18 * 5
    # Everything else is the given (here: shape-only) leaf, untouched, and reported.
    template_flat = flat(template)
    assert set(report.kept_init) == set(got) - trunk
    assert all(got[p] is template_flat[p] for p in report.kept_init)
    assert any("partial file" in n and "23" in n for n in report.notes)
    text = "\n".join(report.lines())
    assert "copied 18 layers" in text and "19,831,776 floats" in text
    assert json.loads(report.to_json())["floats_copied"] == CONV23_FLOATS


def test_full_darknet19_file_classifier_goes_to_darknet19_and_is_left_out_of_yolov2(darknet19_files):
    d, blobs = darknet19_files
    path = d / "darknet19_448.weights"
    variables, report = ini.from_darknet(Darknet19(num_classes=1000), shapes_of(Darknet19(num_classes=1000), 448), path)
    assert len(report.layers) == 19 and report.layers[-1] == dict(cfg_layer=23, line=report.layers[-1]["line"],
                                                                  type="convolutional", module="conv18",
                                                                  floats=CLASSIFIER_FLOATS)
    assert report.floats_copied == CONV23_FLOATS + CLASSIFIER_FLOATS and report.kept_init == {}
    np.testing.assert_array_equal(variables["params"]["conv18"]["conv"]["bias"], blobs[23]["biases"])

    _, report = ini.from_darknet(YOLOv2(num_classes=3), shapes_of(YOLOv2(num_classes=3), 416), path)
    assert len(report.layers) == 18 and report.floats_copied == CONV23_FLOATS
    assert list(report.unused_source) == ["cfg layer 23 [convolutional]"]
    assert ini._modules(report.kept_init) == ["conv18", "conv19", "conv20", "conv21", "conv22"]


def test_extraction_conv_weights_fill_the_first_20_convs_of_yolov1(tmp_path):
    sections = dk.load_cfg(CFG_DIR / "extraction.cfg")
    blobs = dk.random_blobs(sections, seed=5)
    path = tmp_path / "extraction.conv.weights"
    dk.write_weights(path, sections[:25], blobs)  # layers 0..23: the 20 convs before the classifier
    model = YOLOv1(batch_norm=True)
    variables, report = ini.from_darknet(model, shapes_of(model, 448), path)
    assert len(report.layers) == 20 and report.layers[-1]["module"] == "conv19"
    assert report.floats_copied == sum(n * (c * k * k + 4) for c, n, k in EXTRACTION_CONVS)
    assert ini._modules(report.kept_init) == ["conv20", "conv21", "conv22", "conv23", "fc0", "fc1"]
    np.testing.assert_array_equal(variables["params"]["conv0"]["conv"]["kernel"],
                                  blobs[0]["weights"].transpose(2, 3, 1, 0))


def test_extraction_weights_fill_the_conv_anchors_trunk_whose_last_four_convs_run_at_twice_the_size(tmp_path):
    # YOLO9000's "convolutional, anchor boxes" rung: YOLOv1's trunk without the maxpool after conv15 starts from
    # the same 448-px classifier. The kernels are the same; conv16..19 compute 2x larger maps than in the cfg.
    sections = dk.load_cfg(CFG_DIR / "extraction.cfg")
    blobs = dk.random_blobs(sections, seed=6)
    path = tmp_path / "extraction.conv.weights"
    dk.write_weights(path, sections[:25], blobs)
    model = YOLOv1ConvAnchors(num_classes=20, num_anchors=9)
    variables, report = ini.from_darknet(model, shapes_of(model, 416), path)
    assert report.cfg.endswith("extraction.cfg") and len(report.layers) == 20
    assert report.floats_copied == sum(n * (c * k * k + 4) for c, n, k in EXTRACTION_CONVS) == 22_430_400
    assert ini._modules(report.kept_init) == ["conv20", "conv21", "conv22", "conv23", "conv24"]
    # At 416 the model's conv16..19 maps are 26x26; extraction.cfg at 416 pools them to 13x13.
    resized = [n for n in report.notes if "another size" in n]
    assert len(resized) == 1 and "4 copied layers" in resized[0], report.notes
    assert "conv16 26x26 (cfg 13x13)" in resized[0] and "conv19 26x26 (cfg 13x13)" in resized[0]
    np.testing.assert_array_equal(variables["params"]["conv19"]["conv"]["kernel"],
                                  blobs[23]["weights"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(variables["batch_stats"]["conv19"]["bn"]["var"], blobs[23]["rolling_variance"])


def _scaled_cfg(name: str, width: float, path) -> None:
    """An official cfg with every hidden conv's filters scaled as a width-``width`` model scales them (the
    multiple of 4 nearest to filters * width); the last conv (the classifier) keeps its filters."""
    text = (CFG_DIR / name).read_text()
    filters = [m.start() for m in re.finditer(r"^filters=\d+", text, re.M)]
    out, last = [], 0
    for i, start in enumerate(filters[:-1]):
        end = text.index("\n", start)
        n = int(text[start + len("filters="):end])
        out += [text[last:start], f"filters={max(4, int(round(n * width / 4)) * 4)}"]
        last = end
    path.write_text("".join(out) + text[last:])


def test_a_reduced_width_model_takes_a_file_written_for_its_own_cfg(tmp_path):
    # A half-width Darknet-19 classifier trained with darknet initializes a half-width YOLOv2 when its cfg is given.
    cfg = tmp_path / "darknet19_half.cfg"
    _scaled_cfg("darknet19_448.cfg", 0.5, cfg)
    sections = dk.load_cfg(cfg)
    blobs = dk.random_blobs(sections, seed=2)
    path = tmp_path / "darknet19_half.conv.23"
    dk.write_weights(path, sections[:24], blobs)
    model = YOLOv2(num_classes=3, width=0.5)
    with pytest.raises(ValueError) as e:  # the shipped cfg has the published channel counts
        ini.from_darknet(model, shapes_of(model, 416), path)
    assert "width=0.5" in _one_line(e) and "give its cfg as cfg_path" in _one_line(e)
    variables, report = ini.from_darknet(model, shapes_of(model, 416), path, cfg_path=cfg)
    half = [(c if c == 3 else c // 2, n // 2, k) for c, n, k in DARKNET19_CONVS]  # the RGB input stays 3
    assert len(report.layers) == 18 and report.floats_copied == sum(n * (c * k * k + 4) for c, n, k in half)
    np.testing.assert_array_equal(variables["params"]["conv17"]["conv"]["kernel"],
                                  blobs[22]["weights"].transpose(2, 3, 1, 0))
    assert variables["params"]["conv17"]["conv"]["kernel"].shape == (3, 3, 256, 512)


# ----------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and what does not fit.


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_weights_of_another_network_say_expected_and_found_floats(tmp_path):
    sections = dk.load_cfg(CFG_DIR / "yolov2-tiny-voc.cfg")
    path = tmp_path / "tiny.weights"
    dk.write_weights(path, sections, dk.random_blobs(sections))
    with pytest.raises(WeightsError) as e:
        ini.from_darknet(YOLOv2(), {}, path)
    msg = _one_line(e)
    assert str(path) in msg and "darknet19_448.cfg" in msg and re.search(r"expected \d+ floats", msg)
    assert f"found {dk.count_weights(sections)[0] + dk.count_weights(sections)[1]}" in msg


def test_truncated_file_names_the_layer_it_ends_in(darknet19_files, tmp_path):
    d, _ = darknet19_files
    path = tmp_path / "cut.conv.23"
    path.write_bytes((d / "darknet19_448.conv.23").read_bytes()[:20 + 4 * 100_000])
    with pytest.raises(WeightsError) as e:
        ini.from_darknet(YOLOv2(), {}, path)
    msg = _one_line(e)
    # layers 0, 2, 4 hold 992 + 18,688 + 74,240 = 93,920 floats, layer 5 (64 1x1) 8,448 more: 100,000 ends in it
    assert str(path) in msg and "ends inside layer 5" in msg and "found 100000" in msg


def test_cfg_that_does_not_match_the_trunk_names_the_layer(darknet19_files, tmp_path):
    d, _ = darknet19_files
    # The extraction network (weights and cfg agree) is not YOLOv2's trunk: conv0 is 7x7/2 there, 3x3/1 here.
    sections = dk.load_cfg(CFG_DIR / "extraction.cfg")
    path = tmp_path / "extraction.weights"
    dk.write_weights(path, sections, dk.random_blobs(sections))
    with pytest.raises(MappingError) as e:
        ini.from_darknet(YOLOv2(), shapes_of(YOLOv2(), 416), path, cfg_path=CFG_DIR / "extraction.cfg")
    msg = _one_line(e)
    assert "extraction.cfg does not match YOLOv2 (passthrough='conv64_reorg') layer by layer" in msg
    assert "cfg layer 0" in msg and "7x7/2" in msg
    # A darknet19 cfg whose 4th conv (cfg layer 5, 64 1x1) was made 3x3: the file fits it, the model does not.
    text = (CFG_DIR / "darknet19_448.cfg").read_text()
    first_1x1 = text.index("size=1")
    cfg = tmp_path / "edited.cfg"
    cfg.write_text(text[:first_1x1] + "size=3" + text[first_1x1 + 6:])
    edited = dk.load_cfg(cfg)
    dk.write_weights(tmp_path / "edited.weights", edited, dk.random_blobs(edited))
    with pytest.raises(MappingError) as e:
        ini.from_darknet(Darknet19(), shapes_of(Darknet19(), 448), tmp_path / "edited.weights", cfg_path=cfg)
    msg = _one_line(e)
    assert "cfg layer 5" in msg and "64 3x3/1" in msg and "conv3 is 64 1x1/1" in msg


@pytest.mark.parametrize("model,message", [
    (YOLOv2(width=0.25), "width=0.25"),
    (YOLOv1(architecture="fast_yolo"), "fast_yolo: no shipped darknet cfg matches"),
    (TinyYOLOv2(), "TinyYOLOv2: no shipped darknet cfg matches"),
])
def test_models_darknet_weights_cannot_fit(model, message, darknet19_files):
    d, _ = darknet19_files
    with pytest.raises(ValueError) as e:
        ini.from_darknet(model, {}, d / "darknet19_448.conv.23")
    assert message in _one_line(e)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        ini.from_darknet(YOLOv2(), {}, tmp_path / "nope.conv.23")
    assert "nope.conv.23 does not exist" in _one_line(e)


# ----------------------------------------------------------------------------------------------------------
# Fine-tuning from another model's variables.


def _init(model, size: int, seed: int) -> dict:
    """Random float32 numpy variables of the model's shapes (distinct per seed; no slow eager init)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.1, s.shape).astype(np.float32), shapes_of(model, size))


def test_five_class_model_initializes_three_class_model_head_reinitialized():
    source = _init(YOLOv2(num_classes=5, width=0.25), 64, seed=1)
    fresh = _init(YOLOv2(num_classes=3, width=0.25), 64, seed=2)
    variables, report = ini.from_variables(fresh, source, source="runs/voc5")
    got, src, new = flat(variables), flat(source), flat(fresh)
    head = {"params/conv22/conv/kernel", "params/conv22/conv/bias"}  # 1x1 conv to A*(5+C) channels
    assert set(report.kept_init) == head
    assert report.kept_init["params/conv22/conv/kernel"] == "shape (1, 1, 256, 40) here, (1, 1, 256, 50) in the source"
    assert set(report.copied) == set(got) - head
    for p in report.copied:  # trunk and the rest of the head: equal to the source
        np.testing.assert_array_equal(got[p], src[p])
        assert got[p].dtype == new[p].dtype
    for p in head:  # kept its fresh initialization
        assert got[p] is new[p]
    assert set(report.unused_source) == head and report.unused_source[next(iter(head))] == "shape differs"
    assert report.floats_copied == sum(src[p].size for p in report.copied)
    assert any("re-initialized params/conv22/conv/kernel" in line for line in report.lines())


def test_source_of_another_architecture_is_a_one_line_error():
    with pytest.raises(ValueError) as e:
        ini.from_variables(_init(YOLOv2(num_classes=3, width=0.25), 64, 0),
                           _init(YOLOv1(architecture="fast_yolo", width=0.25, grid_size=2), 128, 0),
                           source="runs/fast_yolo")
    assert "runs/fast_yolo: no variable matches the model by path and shape" in _one_line(e)


# ----------------------------------------------------------------------------------------------------------
# Frozen variables.


def test_freeze_mask_paths():
    params = _init(YOLOv2(num_classes=3, width=0.25), 64, 0)["params"]
    frozen = {p for p, m in flat({"params": ini.freeze_mask(params, r"/conv1/")}).items() if m}
    assert frozen == {"params/conv1/conv/kernel", "params/conv1/bn/scale", "params/conv1/bn/bias"}
    trunk = {p for p, m in flat({"params": ini.freeze_mask(params, r"/conv([0-9]|1[0-7])/")}).items() if m}
    assert trunk == {p for p in flat({"params": params}) if int(p.split("/")[1][4:]) <= 17}
    assert not any(jax.tree.leaves(ini.freeze_mask(params, "")))
    with pytest.raises(ValueError) as e:
        ini.freeze_mask(params, "conv(")
    assert "optim.freeze='conv('" in _one_line(e)


def _kernel_mask(params):
    """Weight decay on kernels only (as the training optimizer), given as a function of the params."""
    return jax.tree_util.tree_map_with_path(lambda kp, _: kp[-1].key == "kernel", params)


def test_frozen_leaves_get_no_update_no_momentum_no_decay():
    variables = _init(YOLOv2(num_classes=3, width=0.25), 64, 0)
    params = jax.tree.map(jnp.asarray, variables["params"])
    regex = r"/conv([0-9]|1[0-7])/"
    tx = optax.chain(optax.clip_by_global_norm(10.0), optax.add_decayed_weights(5e-4, mask=_kernel_mask),
                     optax.sgd(0.1, momentum=0.9))
    tx = ini.freeze(tx, ini.freeze_mask(params, regex))
    state = tx.init(params)

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    rng = np.random.default_rng(0)
    new = params
    for _ in range(4):  # a few steps of random gradients
        new, state = step(new, state, jax.tree.map(lambda p: rng.normal(0, 1, p.shape).astype(np.float32), new))
    mask = flat({"params": ini.freeze_mask(params, regex)})
    before, after = flat({"params": params}), flat({"params": new})
    assert 0 < sum(mask.values()) < len(mask)
    for p, frozen in mask.items():
        a, b = np.asarray(before[p]), np.asarray(after[p])
        if frozen:
            assert a.tobytes() == b.tobytes(), p
        else:
            assert not np.array_equal(a, b), p


def test_frozen_leaves_have_no_optimizer_state():
    params = _init(YOLOv2(num_classes=3, width=0.25), 64, 0)["params"]
    tx = ini.freeze(optax.sgd(0.1, momentum=0.9), lambda p: ini.freeze_mask(p, r"/conv0/"))
    state = tx.init(params)
    trace = state.inner_states["train"].inner_state[0].trace
    assert isinstance(trace["conv0"]["conv"]["kernel"], optax.MaskedNode)
    assert trace["conv1"]["conv"]["kernel"].shape == params["conv1"]["conv"]["kernel"].shape


def test_keep_frozen_stats():
    stats = _init(YOLOv2(num_classes=3, width=0.25), 64, 0)["batch_stats"]
    moved = jax.tree.map(lambda s: s + 1.0, stats)
    kept = flat({"batch_stats": ini.keep_frozen_stats(moved, stats, r"/conv([0-9]|1[0-7])/")})
    old, new = flat({"batch_stats": stats}), flat({"batch_stats": moved})
    for p in kept:
        want = old[p] if int(p.split("/")[1][4:]) <= 17 else new[p]
        assert kept[p] is want, p
    # Under jit too (the paths are static).
    jitted = jax.jit(lambda n, o: ini.keep_frozen_stats(n, o, r"/conv0/"))(moved, stats)
    np.testing.assert_array_equal(jitted["conv0"]["bn"]["mean"], stats["conv0"]["bn"]["mean"])
    np.testing.assert_array_equal(jitted["conv1"]["bn"]["mean"], moved["conv1"]["bn"]["mean"])
