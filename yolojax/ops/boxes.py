"""Box formats, units and IoU.

Names say the format and the unit (docs/conventions.md):
  * ``xyxy``   = (x_min, y_min, x_max, y_max)
  * ``cxcywh`` = (center x, center y, width, height)
  * ``yxyx``   = (y_min, x_min, y_max, x_max), the TFDS order
  * normalized to [0, 1] of the image unless the name says ``px`` (pixels) or ``grid`` (grid cells).
  * ``voc_px`` is the PASCAL VOC annotation convention: 1-based pixel indices, boxes inclusive of their last
    pixel. yolojax normalizes them as ``(x_px - 1) / width`` (0-based, as darknet's ``voc_label.py`` does by
    subtracting 1); the devkit measures width as ``x_max - x_min + 1``. TFDS ``voc`` stores ``x_px / width``
    instead: ``yolojax.data.sources`` recovers the XML pixels and applies this module's convention.

Every function takes numpy or jax arrays with any leading dimensions and returns the same kind of array
(numpy in, numpy out), so the same code serves host-side data pipelines and jitted device code. IoUs of
zero-area boxes are 0, never NaN.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = Any  # np.ndarray | jax.Array

_EPS = 1e-12


def _xp(*arrays: Array):
    """numpy for host arrays, jax.numpy as soon as one input is a jax array or tracer."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _split(b: Array) -> tuple[Array, Array, Array, Array]:
    return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


def xyxy_to_cxcywh(b: Array) -> Array:
    """[..., 4] xyxy -> [..., 4] cxcywh (same unit)."""
    xp = _xp(b)
    x0, y0, x1, y1 = _split(b)
    return xp.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)


def cxcywh_to_xyxy(b: Array) -> Array:
    """[..., 4] cxcywh -> [..., 4] xyxy (same unit)."""
    xp = _xp(b)
    cx, cy, w, h = _split(b)
    return xp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def yxyx_to_xyxy(b: Array) -> Array:
    """[..., 4] yxyx (TFDS order) -> [..., 4] xyxy. The same swap is its own inverse."""
    return b[..., [1, 0, 3, 2]]


xyxy_to_yxyx = yxyx_to_xyxy


def _as_float(b: Array) -> Array:
    xp = _xp(b)
    b = xp.asarray(b)
    return b if xp.issubdtype(b.dtype, xp.floating) else b.astype(xp.float32)


def _scale(b: Array, sx, sy, offset=0.0) -> Array:
    """Multiplies x coordinates by sx and y by sy (then adds offset), for xyxy or cxcywh boxes alike.

    ``sx``/``sy`` are scalars or arrays broadcasting against ``b[..., 0]``.
    """
    xp = _xp(b, sx, sy)
    b = _as_float(b)
    sx, sy = xp.broadcast_arrays(xp.asarray(sx, b.dtype), xp.asarray(sy, b.dtype))
    return b * xp.stack([sx, sy, sx, sy], axis=-1) + offset


def normalized_to_px(b: Array, width, height) -> Array:
    """Normalized boxes -> pixels of a ``width`` x ``height`` image (0-based, continuous coordinates).

    ``width``/``height`` may be scalars or arrays broadcasting against ``b[..., 0]``.
    """
    return _scale(b, width, height)


def px_to_normalized(b: Array, width, height) -> Array:
    """Pixel boxes (0-based, continuous) -> normalized to the image size."""
    xp = _xp(b, width, height)
    b = _as_float(b)
    return _scale(b, 1.0 / xp.asarray(width, b.dtype), 1.0 / xp.asarray(height, b.dtype))


def normalized_to_voc_px(b: Array, width, height) -> Array:
    """Normalized xyxy -> VOC 1-based pixel xyxy (inverse of ``voc_px_to_normalized``)."""
    return _scale(b, width, height, offset=1.0)


def voc_px_to_normalized(b_px: Array, width, height) -> Array:
    """VOC 1-based pixel xyxy (as in the XML) -> normalized xyxy, ``(x - 1) / width``."""
    return px_to_normalized(b_px - 1.0, width, height)


def normalized_to_grid(b: Array, grid_w, grid_h) -> Array:
    """Normalized coordinates -> grid-cell units of a ``grid_w`` x ``grid_h`` grid (xyxy or cxcywh)."""
    return _scale(b, grid_w, grid_h)


def grid_to_normalized(b: Array, grid_w, grid_h) -> Array:
    """Grid-cell units -> normalized coordinates (xyxy or cxcywh)."""
    return px_to_normalized(b, grid_w, grid_h)


def area(b: Array) -> Array:
    """[..., 4] xyxy -> [...] area; inverted boxes count as 0."""
    xp = _xp(b)
    x0, y0, x1, y1 = _split(b)
    return xp.maximum(x1 - x0, 0) * xp.maximum(y1 - y0, 0)


def _iou_from_parts(inter: Array, area_a: Array, area_b: Array) -> Array:
    xp = _xp(inter, area_a, area_b)
    union = area_a + area_b - inter
    # Guarded division: zero-area pairs have inter = 0 and union = 0 -> IoU 0 (and a finite gradient).
    safe = xp.where(union > _EPS, union, 1.0)
    return xp.where(union > _EPS, inter / safe, 0.0)


def iou(a: Array, b: Array) -> Array:
    """Elementwise IoU of xyxy boxes ``a [..., 4]`` and ``b [..., 4]`` (broadcasting) -> [...]."""
    xp = _xp(a, b)
    w = xp.maximum(xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0]), 0)
    h = xp.maximum(xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1]), 0)
    return _iou_from_parts(w * h, area(a), area(b))


def pairwise_iou(a: Array, b: Array) -> Array:
    """IoU of every pair: ``a [..., N, 4]`` and ``b [..., M, 4]`` xyxy -> ``[..., N, M]``."""
    return iou(a[..., :, None, :], b[..., None, :, :])


def wh_iou(wh_a: Array, wh_b: Array) -> Array:
    """IoU of boxes given only as (w, h) ``[..., 2]`` with aligned centers (broadcasting) -> [...].

    This is the shape similarity used by darknet's ``bias_match`` and by anchor k-means.
    """
    xp = _xp(wh_a, wh_b)
    inter = xp.maximum(xp.minimum(wh_a[..., 0], wh_b[..., 0]), 0) * xp.maximum(
        xp.minimum(wh_a[..., 1], wh_b[..., 1]), 0)
    area_a = xp.maximum(wh_a[..., 0], 0) * xp.maximum(wh_a[..., 1], 0)
    area_b = xp.maximum(wh_b[..., 0], 0) * xp.maximum(wh_b[..., 1], 0)
    return _iou_from_parts(inter, area_a, area_b)


def pairwise_wh_iou(a: Array, b: Array) -> Array:
    """Shape IoU of every pair: ``a [..., N, 2]``, ``b [..., K, 2]`` (w, h) -> ``[..., N, K]``."""
    return wh_iou(a[..., :, None, :], b[..., None, :, :])


def clip_xyxy(b: Array, lo=0.0, hi=1.0) -> Array:
    """Clips xyxy boxes to ``[lo, hi]`` on both axes (normalized by default)."""
    xp = _xp(b)
    return xp.clip(b, lo, hi)
