"""Box conversions and IoU: hand-computed values, round trips and properties."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from yolojax.ops import boxes


def test_conversions_hand_values():
    xyxy = np.array([10.0, 20.0, 30.0, 60.0])
    np.testing.assert_allclose(boxes.xyxy_to_cxcywh(xyxy), [20.0, 40.0, 20.0, 40.0])
    np.testing.assert_allclose(boxes.cxcywh_to_xyxy(np.array([20.0, 40.0, 20.0, 40.0])), xyxy)
    np.testing.assert_allclose(boxes.yxyx_to_xyxy(np.array([20.0, 10.0, 60.0, 30.0])), xyxy)
    np.testing.assert_allclose(boxes.xyxy_to_yxyx(xyxy), [20.0, 10.0, 60.0, 30.0])
    np.testing.assert_allclose(boxes.px_to_normalized(xyxy, 100, 200), [0.1, 0.1, 0.3, 0.3])
    np.testing.assert_allclose(boxes.normalized_to_px(np.array([0.1, 0.1, 0.3, 0.3]), 100, 200), xyxy)
    np.testing.assert_allclose(boxes.normalized_to_grid(np.array([0.5, 0.25, 1.0, 1.0]), 13, 13),
                               [6.5, 3.25, 13.0, 13.0])
    np.testing.assert_allclose(boxes.grid_to_normalized(np.array([6.5, 3.25, 13.0, 13.0]), 13, 13),
                               [0.5, 0.25, 1.0, 1.0])


def test_voc_pixel_convention_round_trip():
    # yolojax convention: xmin_norm = (xmin - 1) / width. A box covering the whole 500x375 image in VOC pixels is
    # (1, 1, 500, 375) and normalizes to (0, 0, 499/500, 374/375).
    px = np.array([1.0, 1.0, 500.0, 375.0])
    norm = boxes.voc_px_to_normalized(px, 500, 375)
    np.testing.assert_allclose(norm, [0.0, 0.0, 499 / 500, 374 / 375])
    np.testing.assert_allclose(boxes.normalized_to_voc_px(norm, 500, 375), px)


def test_integer_pixel_boxes_are_converted_to_float():
    out = boxes.px_to_normalized(np.array([0, 0, 5, 10]), 10, 20)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 0.5])


def test_per_image_sizes_broadcast():
    b = np.ones((2, 3, 4), np.float32) * 0.5
    w = np.array([[100.0], [200.0]])
    h = np.array([[10.0], [20.0]])
    out = boxes.normalized_to_px(b, w, h)
    np.testing.assert_allclose(out[0, 0], [50, 5, 50, 5])
    np.testing.assert_allclose(out[1, 2], [100, 10, 100, 10])


def test_iou_hand_values():
    a = np.array([0.0, 0.0, 2.0, 2.0])
    b = np.array([1.0, 1.0, 3.0, 3.0])
    assert boxes.iou(a, b) == pytest.approx(1.0 / 7.0)
    assert boxes.iou(a, np.array([2.0, 2.0, 3.0, 3.0])) == 0.0  # touching corners
    assert boxes.iou(a, np.array([0.0, 0.0, 1.0, 2.0])) == pytest.approx(0.5)  # contained half
    got = boxes.pairwise_iou(np.stack([a, b]), np.stack([a, b, np.array([5.0, 5, 6, 6])]))
    np.testing.assert_allclose(got, [[1, 1 / 7, 0], [1 / 7, 1, 0]])
    assert boxes.area(np.array([0.0, 0.0, 2.0, 3.0])) == 6.0
    assert boxes.area(np.array([2.0, 0.0, 0.0, 3.0])) == 0.0  # inverted box has no area


def test_wh_iou_hand_values():
    assert boxes.wh_iou(np.array([2.0, 2.0]), np.array([1.0, 4.0])) == pytest.approx(2.0 / 6.0)
    got = boxes.pairwise_wh_iou(np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([[1.0, 1.0], [4.0, 4.0]]))
    np.testing.assert_allclose(got, [[1.0, 1 / 16], [0.25, 0.25]])


def test_zero_area_boxes_give_zero_iou_and_finite_gradients():
    z = jnp.zeros(4)
    assert float(boxes.iou(z, z)) == 0.0
    assert float(boxes.wh_iou(jnp.zeros(2), jnp.zeros(2))) == 0.0
    g = jax.grad(lambda x: boxes.iou(x, z))(jnp.array([0.1, 0.1, 0.1, 0.1]))
    assert np.all(np.isfinite(g))
    g = jax.grad(lambda x: boxes.wh_iou(x, jnp.zeros(2)))(jnp.zeros(2))
    assert np.all(np.isfinite(g))


def test_numpy_in_numpy_out_and_jax_in_jax_out():
    a = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    assert isinstance(boxes.pairwise_iou(a, a), np.ndarray)
    assert isinstance(boxes.pairwise_iou(jnp.asarray(a), jnp.asarray(a)), jax.Array)
    jitted = jax.jit(boxes.pairwise_iou)(jnp.asarray(a), jnp.asarray(a))
    np.testing.assert_allclose(jitted, [[1.0]])


def _xyxy(shape):
    """Hypothesis strategy: valid xyxy boxes with positive size in [0, 1]."""
    coords = hnp.arrays(np.float64, shape + (4,), elements=st.floats(0.0, 1.0))

    def fix(c):
        x0, x1 = np.minimum(c[..., 0], c[..., 2]), np.maximum(c[..., 0], c[..., 2]) + 1e-3
        y0, y1 = np.minimum(c[..., 1], c[..., 3]), np.maximum(c[..., 1], c[..., 3]) + 1e-3
        return np.stack([x0, y0, x1, y1], -1)

    return coords.map(fix)


@settings(max_examples=100, deadline=None)
@given(_xyxy((5,)), _xyxy((7,)))
def test_iou_properties(a, b):
    m = boxes.pairwise_iou(a, b)
    assert m.shape == (5, 7)
    assert np.all((m >= 0) & (m <= 1 + 1e-12))
    np.testing.assert_allclose(m, boxes.pairwise_iou(b, a).T, atol=1e-12)
    np.testing.assert_allclose(np.diagonal(boxes.pairwise_iou(a, a)), 1.0, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(_xyxy((3, 2)), st.floats(1.0, 2000.0), st.floats(1.0, 2000.0))
def test_conversions_invert(b, w, h):
    np.testing.assert_allclose(boxes.cxcywh_to_xyxy(boxes.xyxy_to_cxcywh(b)), b, atol=1e-12)
    np.testing.assert_allclose(boxes.yxyx_to_xyxy(boxes.xyxy_to_yxyx(b)), b)
    np.testing.assert_allclose(boxes.px_to_normalized(boxes.normalized_to_px(b, w, h), w, h), b, atol=1e-12)
    np.testing.assert_allclose(
        boxes.voc_px_to_normalized(boxes.normalized_to_voc_px(b, w, h), w, h), b, atol=1e-12)
    np.testing.assert_allclose(boxes.grid_to_normalized(boxes.normalized_to_grid(b, 13, 9), 13, 9), b,
                               atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, (6, 2), elements=st.floats(0.01, 10.0)))
def test_wh_iou_properties(wh):
    m = boxes.pairwise_wh_iou(wh, wh)
    np.testing.assert_allclose(np.diagonal(m), 1.0)
    np.testing.assert_allclose(m, m.T)
    assert np.all((m > 0) & (m <= 1 + 1e-12))
