"""Device-side photometric augmentation: the same pixels as the host (OpenCV) implementation it replaces,
darknet's draw distribution, determinism per (seed, step, example), switches, and the float conversion."""
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from yolojax.data import augment, photometric, pipeline, synthetic

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
    dhue, sat, exp = (float(np.float32(p)) for p in params)  # the device draws float32 parameters
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


def test_draws_follow_darknet():
    aug = pipeline.augment_preset("v2")
    draw = lambda cfg, n: jax.jit(lambda key: photometric.draw_params(key, cfg, jnp.arange(n)))(jax.random.PRNGKey(0))
    dhue, sat, exp = (np.asarray(x) for x in draw(aug, 3000))
    assert np.abs(dhue).max() <= 0.1 and np.abs(dhue).mean() == pytest.approx(0.05, abs=0.005)  # U(-.1, .1)
    for f in (sat, exp):  # rand_scale(1.5): [1, 1.5] or its inverse, each half of the time
        assert (f >= 1 / 1.5 - 1e-6).all() and (f <= 1.5 + 1e-6).all()
        assert (f < 1).mean() == pytest.approx(0.5, abs=0.03)
        assert np.median(f[f > 1]) == pytest.approx(1.25, abs=0.02)
    assert np.corrcoef(sat, exp)[0, 1] == pytest.approx(0.0, abs=0.05)  # independent draws
    v1 = pipeline.augment_preset("v1")  # hue off
    dhue, sat, _ = draw(v1, 100)
    assert (np.asarray(dhue) == 0).all() and (np.asarray(sat) != 1).all()


def test_deterministic_per_seed_step_and_example(images):
    aug = pipeline.augment_preset("v2")
    fn = jax.jit(lambda x, seed, step, ids: photometric.device_photometric(x, photometric.step_key(seed, step),
                                                                            aug, ids))
    ids = jnp.arange(4)
    a = np.asarray(fn(images, 3, 7, ids))
    np.testing.assert_array_equal(a, np.asarray(fn(images, 3, 7, ids)))  # same (seed, step): same pixels
    assert not np.array_equal(a, np.asarray(fn(images, 3, 8, ids)))  # another step: other draws
    assert not np.array_equal(a, np.asarray(fn(images, 4, 7, ids)))  # another seed
    # An example's jitter depends on its index, not on where else it sits or what the other rows hold.
    perm = np.array([2, 0, 3, 1])
    np.testing.assert_array_equal(np.asarray(fn(images[perm], 3, 7, ids[perm])), a[perm])

    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1


def test_switches_and_float_conversion(images):
    off = pipeline.augment_preset("none")
    assert not photometric.photometric_enabled(off)
    jitter = lambda cfg, x: jax.jit(lambda x: photometric.device_photometric(x, jax.random.PRNGKey(0), cfg))(x)
    out = jitter(off, images)
    np.testing.assert_array_equal(np.asarray(out), images.astype(np.float32) * np.float32(1 / 255))
    # Hand values: the host's former float batch, x / 255.
    x = np.array([[[0, 255, 51], [102, 1, 128]]], np.uint8)
    np.testing.assert_allclose(np.asarray(photometric.to_float(x)), x / 255.0, rtol=1e-6)
    floats = np.full((1, 2, 2, 3), 0.25, np.float32)  # float batches pass through unchanged
    np.testing.assert_array_equal(np.asarray(photometric.train_inputs(floats, off, 0, 0)), floats)
    sat_only = pipeline.augment_preset("none")
    sat_only.saturation = 1.5
    assert photometric.photometric_enabled(sat_only)
    jittered = np.asarray(jitter(sat_only, images))
    assert not np.array_equal(jittered, np.asarray(out))
    with pytest.raises(TypeError, match="uint8"):
        photometric.device_photometric(floats, jax.random.PRNGKey(0), sat_only)
