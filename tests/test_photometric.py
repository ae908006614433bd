"""Photometric augmentation: the device's pixels equal the host (OpenCV) implementation's, darknet's draw
distribution, both placements (device / host) give the same batch, determinism per (seed, step, example),
switches, and the float conversion."""
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from yolojax.data import augment, photometric, pipeline, synthetic
from yolojax.ops.images import to_float

_hsv_adjust = jax.jit(photometric.hsv_adjust)


@pytest.fixture(scope="module")
def images():
    """Four 48x64 uint8 images: two synthetic scenes (flat colours, edges), uniform noise, and a colour ramp
    holding grays, saturated primaries and every hue."""
    cfg = synthetic.default_synthetic_config()
    cfg.update(image_width=64, image_height=48, clutter=1.0)
    src = synthetic.SyntheticSource(cfg, "train")
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    hue = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.uint8), (48, 64))
    sat = np.broadcast_to(np.linspace(0, 255, 48, dtype=np.uint8)[:, None], (48, 64))
    ramp = cv2.cvtColor(np.stack([hue, sat, np.full((48, 64), 220, np.uint8)], -1), cv2.COLOR_HSV2RGB_FULL)
    return np.stack([src[0]["image"], src[1]["image"], noise, ramp])


@pytest.mark.parametrize("params", [
    (0.05, 1.3, 0.8),                # a v2 draw
    (-0.1, 1 / 1.5, 1.5),            # the extremes of darknet's v2 ranges
    (0.0, 1.37, 1 / 1.21),           # a v1 draw: no hue
    (0.0999, 1.49, 0.7),
    (0.5, 1.0, 1.0),                 # half a turn of hue only
])
def test_same_pixels_as_the_host_within_one_level(images, params):
    dhue, sat, exp = (float(np.float32(p)) for p in params)  # parameters are float32 (augment.draw_hsv)
    got = np.asarray(_hsv_adjust(images, *(np.full(len(images), p, np.float32) for p in (dhue, sat, exp))))
    for i, image in enumerate(images):
        ref = augment.hsv_adjust(image, dhue, sat, exp)
        diff = np.abs(got[i].astype(int) - ref.astype(int))
        assert diff.max() <= 1, (params, i, diff.max())  # within 1/255
        assert (diff > 0).mean() < 1e-3  # and in fact identical but for rare rounding ties


def test_rgb_to_hsv_is_opencvs_exactly_for_every_colour():
    c = np.arange(1 << 24, dtype=np.uint32)  # all 2**24 RGB colours
    colours = np.stack([c >> 16, (c >> 8) & 255, c & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)
    h, s, v = jax.jit(photometric._rgb_to_hsv)(colours)
    np.testing.assert_array_equal(np.stack([h, s, v], -1), cv2.cvtColor(colours, cv2.COLOR_RGB2HSV_FULL))


def test_division_table_entries_equal_opencvs_tables():
    # OpenCV's RGB2HSV_b tables: sdiv[v] = round((255 << 12) / v), hdiv[d] = round((256 << 12) / (6 d)), 0 at 0
    # (saturate_cast<int> rounds to nearest); computed here in float64, on the device elementwise in int32.
    levels = np.arange(256)
    with np.errstate(divide="ignore"):
        sdiv = np.where(levels > 0, np.round((255 << 12) / levels), 0).astype(np.int32)
        hdiv = np.where(levels > 0, np.round((256 << 12) / (6.0 * levels)), 0).astype(np.int32)
    d = jnp.arange(256, dtype=jnp.int32)
    np.testing.assert_array_equal(photometric._rounded_div(255 << 12, d), sdiv)
    np.testing.assert_array_equal(photometric._rounded_div(256 << 12, 6 * d), hdiv)


def test_per_example_parameters(images):
    # Each row gets its own parameters: row i equals the host with row i's parameters.
    dhue, sat, exp = (np.array(p, np.float32) for p in ([0.1, -0.05, 0.0, 0.02], [1.5, 1.0, 0.7, 1.2],
                                                         [0.8, 1.4, 1.0, 1 / 1.5]))
    got = np.asarray(_hsv_adjust(images, dhue, sat, exp))
    for i in range(4):
        ref = augment.hsv_adjust(images[i], float(dhue[i]), float(sat[i]), float(exp[i]))
        assert np.abs(got[i].astype(int) - ref).max() <= 1


def _data_cfg(**kw):
    c = pipeline.default_data_config()
    c.update(source="synthetic", train_split="train", eval_split="eval", image_size=48, max_boxes=4, num_threads=1)
    c.synthetic.update(image_width=64, image_height=48, num_train=12, num_eval=2, clutter=1.0)
    c.update(**kw)
    return c


def _batcher(c, on, *, seed=3, batch=6, index=0, count=1):
    from yolojax.data import sources

    return pipeline._TrainBatcher(c, sources.make_source(c, "train"), seed=seed, global_batch_size=batch,
                                  process_index=index, process_count=count, photometric_on=on)


def test_draws_follow_darknet():
    rng = np.random.default_rng(0)
    dhue, sat, exp = np.array([augment.draw_hsv(rng, 0.1, 1.5, 1.5) for _ in range(3000)]).T
    assert np.abs(dhue).max() <= 0.1 and np.abs(dhue).mean() == pytest.approx(0.05, abs=0.005)  # U(-.1, .1)
    for f in (sat, exp):  # rand_scale(1.5): [1, 1.5] or its inverse, each half of the time
        assert (f >= 1 / 1.5 - 1e-6).all() and (f <= 1.5 + 1e-6).all()
        assert (f < 1).mean() == pytest.approx(0.5, abs=0.03)
        assert np.median(f[f > 1]) == pytest.approx(1.25, abs=0.02)
    assert np.corrcoef(sat, exp)[0, 1] == pytest.approx(0.0, abs=0.05)  # independent draws
    assert (np.float32(dhue) == dhue).all() and (np.float32(sat) == sat).all()  # float32 values, as applied
    v1 = [augment.draw_hsv(rng, 0.0, 1.5, 1.5) for _ in range(100)]  # v1: hue off
    assert all(h == 0.0 and s != 1.0 for h, s, _ in v1)
    assert augment.draw_hsv(rng, 0.0, 1.0, 1.0) == augment.IDENTITY_HSV  # all off: the identity, exactly


def test_both_placements_give_the_same_batch():
    # "device": uint8 batch + per-row parameters, jittered in the step; "host": jittered by OpenCV in the batcher.
    # Same draws, same geometry and boxes, pixels within 1/255.
    c = _data_cfg()
    on_device, on_host = _batcher(c, "device")(5), _batcher(c, "host")(5)
    assert on_device["photometric"].shape == (6, 3) and on_device["photometric"].dtype == np.float32
    assert "photometric" not in on_host
    for k in ("boxes", "classes", "mask"):
        np.testing.assert_array_equal(on_device[k], on_host[k])
    got = np.asarray(jax.jit(photometric.train_inputs)(on_device["image"], on_device["photometric"]))
    diff = np.abs(np.round(got * 255).astype(int) - on_host["image"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert not np.array_equal(on_host["image"], on_device["image"])  # the host did jitter its copy
    # The parameters are the position's draws after its geometry (the generator of augment.train_matrix).
    b = _batcher(c, "device")
    rng = b._position_rng(5 * 6 + 2)
    augment.train_matrix(rng, (64, 48), (48, 48), b.aug)
    assert tuple(on_device["photometric"][2]) == augment.draw_hsv(rng, 0.1, 1.5, 1.5)


def test_parameters_are_deterministic_per_seed_step_and_example():
    c = _data_cfg()
    a = _batcher(c, "device")(7)["photometric"]
    np.testing.assert_array_equal(a, _batcher(c, "device")(7)["photometric"])  # rebuilt: the same draws
    assert not np.array_equal(a, _batcher(c, "device")(8)["photometric"])  # another step
    assert not np.array_equal(a, _batcher(c, "device", seed=4)(7)["photometric"])  # another seed
    # A row's draws depend on its global position only: process 1 of 2 builds rows 3..5 of the same batch.
    np.testing.assert_array_equal(_batcher(c, "device", index=1, count=2)(7)["photometric"], a[3:])
    assert len(np.unique(a[:, 1])) == 6  # every example its own draw


def test_switches_and_float_conversion(images):
    off = _data_cfg(augment=pipeline.augment_preset("none"))
    assert not augment.photometric_enabled(off.augment)
    on_device, on_host = _batcher(off, "device")(0), _batcher(off, "host")(0)
    assert "photometric" not in on_device  # nothing to apply: the step only converts
    np.testing.assert_array_equal(on_device["image"], on_host["image"])
    out = np.asarray(photometric.train_inputs(images))
    np.testing.assert_array_equal(out, images.astype(np.float32) * np.float32(1 / 255))
    # Hand values: the host's former float batch, x / 255.
    x = np.array([[[0, 255, 51], [102, 1, 128]]], np.uint8)
    np.testing.assert_allclose(np.asarray(to_float(x)), x / 255.0, rtol=1e-6)
    floats = np.full((1, 2, 2, 3), 0.25, np.float32)  # float batches pass through unchanged
    np.testing.assert_array_equal(np.asarray(photometric.train_inputs(floats)), floats)
    sat_only = pipeline.augment_preset("none")
    sat_only.saturation = 1.5
    assert augment.photometric_enabled(sat_only)
    assert "photometric" in _batcher(_data_cfg(augment=sat_only), "device")(0)
    # An identity row leaves its image exactly as it is (an HSV round trip would not); the others jitter.
    params = np.array([augment.IDENTITY_HSV, (0.0, 1.5, 1.0), augment.IDENTITY_HSV, (0.05, 1.0, 0.8)], np.float32)
    jittered = np.asarray(jax.jit(photometric.train_inputs)(images, params))
    np.testing.assert_array_equal(jittered[[0, 2]], out[[0, 2]])
    assert not np.array_equal(jittered[1], out[1]) and not np.array_equal(jittered[3], out[3])
    with pytest.raises(TypeError, match="uint8"):
        photometric.train_inputs(floats, params[:1])


def test_placement_follows_the_backend():
    c = _data_cfg()
    assert pipeline.photometric_placement(c, "cpu") == "host"
    assert pipeline.photometric_placement(c, "gpu") == "device"
    assert pipeline.photometric_placement(c, "tpu") == "device"
    c.photometric_on = "device"
    assert pipeline.photometric_placement(c, "cpu") == "device"
    c.photometric_on = "gpu"
    with pytest.raises(ValueError, match=r"config.data.photometric_on='gpu': expected 'auto', 'host' or 'device'"):
        pipeline.photometric_placement(c)
