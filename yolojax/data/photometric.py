"""Photometric augmentation on the device: uint8 batches -> float32 network inputs, inside the jitted step.

Training batches leave the host as uint8 (a quarter of the float32 bytes); this module turns them into
float32 [0, 1] inputs and applies darknet's ``random_distort_image`` (hue shift, saturation and exposure
scaling; YOLOv1 uses only the last two) as pure ``jax.numpy`` functions, so the host pays only for the JPEG
decode and one geometric warp (docs/input_pipeline.md).

Pixels are the host implementation's (``augment.hsv_adjust``: OpenCV's 8-bit "full-range" HSV with one
lookup table per channel): the integer RGB -> HSV conversion is reproduced operation for operation (the entries
of OpenCV's fixed-point division tables are computed elementwise, which vectorizes where a per-pixel table
gather does not: 4-5x faster on a CPU), the tables are the same float32 expressions, and HSV -> RGB is OpenCV's
float formula, so the same parameters give the same uint8 pixels up to a rounding tie (at most 1/255).

Randomness stays on the host: the pipeline draws each example's (dhue, sat, exposure) from the generator of
its position, right after its geometry (``augment.draw_hsv``), and ships them with the batch, so a batch's
jitter is a pure function of (seed, step, example), whichever placement applies it; resuming needs the step
alone. On a CPU-only run the pipeline applies the same parameters itself with OpenCV (``data.photometric_on``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from yolojax.ops.images import to_float

_HSV_SHIFT = 12  # OpenCV's fixed-point shift in RGB2HSV_b


def _rounded_div(numerator: int, d: jax.Array) -> jax.Array:
    """int32 round(numerator / d) for int32 0 < d < 2**11, numerator < 2**21; 0 where d == 0.

    The entries of OpenCV's division tables, computed elementwise instead of by a per-pixel gather or an
    integer division (neither vectorizes on a CPU): a float32 estimate of floor((2n + d) / 2d), which is off
    by at most one, corrected with exact int32 arithmetic."""
    num = 2 * numerator + d  # < 2**22: exact in float32
    den = 2 * jnp.maximum(d, 1)
    q = jnp.floor(num.astype(jnp.float32) * (1.0 / den.astype(jnp.float32))).astype(jnp.int32)
    r = num - q * den
    q = q + (r >= den).astype(jnp.int32) - (r < 0).astype(jnp.int32)
    return jnp.where(d > 0, q, 0)


def _rgb_to_hsv(rgb: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """uint8 [..., 3] RGB -> int32 (h 0..255 full circle, s 0..255, v 0..255): OpenCV COLOR_RGB2HSV_FULL."""
    rgb = rgb.astype(jnp.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = jnp.maximum(jnp.maximum(r, g), b)
    diff = v - jnp.minimum(jnp.minimum(r, g), b)
    half = 1 << (_HSV_SHIFT - 1)
    s = (diff * _rounded_div(255 << _HSV_SHIFT, v) + half) >> _HSV_SHIFT  # OpenCV's sdiv_table[v]
    h = jnp.where(v == r, g - b, jnp.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    # OpenCV's hdiv_table[diff]; the arithmetic shift floors, as OpenCV's int >>
    h = (h * _rounded_div(256 << _HSV_SHIFT, 6 * diff) + half) >> _HSV_SHIFT
    h = jnp.where(h < 0, h + 256, h)
    return jnp.clip(h, 0, 255), s, v


def _hsv_to_rgb(h: jax.Array, s: jax.Array, v: jax.Array) -> jax.Array:
    """int (h 0..255, s 0..255, v 0..255) -> uint8 [..., 3] RGB: OpenCV COLOR_HSV2RGB_FULL (float formula)."""
    # OpenCV's 8-bit HSV2RGB_FULL scales hue by 6/255 (not 6/256 as RGB2HSV_FULL): h = 255 is a full turn.
    hf = h.astype(jnp.float32) * jnp.float32(6.0 / 255.0)
    hf = jnp.where(hf >= 6.0, hf - 6.0, hf)  # fmod(h, 6)
    sf = s.astype(jnp.float32) * jnp.float32(1.0 / 255.0)
    vf = v.astype(jnp.float32)
    sector = jnp.floor(hf)
    frac = hf - sector
    sector = sector.astype(jnp.int32)  # 0..5
    p, q, t = vf * (1.0 - sf), vf * (1.0 - sf * frac), vf * (1.0 - sf * (1.0 - frac))
    # OpenCV's sector table, per channel: r is (v, q, p, p, t, v) over sectors 0..5; g and b follow the same
    # pattern shifted by 4 and 2 sectors. Selected elementwise (no gather).
    def channel(shift):
        k = sector + shift
        k = jnp.where(k >= 6, k - 6, k)
        return jnp.where(k == 1, q, jnp.where(k == 4, t, jnp.where((k == 2) | (k == 3), p, vf)))
    rgb = jnp.stack([channel(0), channel(4), channel(2)], axis=-1)
    rgb = jnp.where((s == 0)[..., None], vf[..., None], rgb)
    return jnp.clip(jnp.round(rgb), 0, 255).astype(jnp.uint8)


def hsv_adjust(images: jax.Array, dhue: jax.Array, sat: jax.Array, exposure: jax.Array) -> jax.Array:
    """Device twin of ``augment.hsv_adjust``: uint8 [B, H, W, 3] RGB -> uint8 [B, H, W, 3] RGB.

    Args:
      images: uint8 [B, H, W, 3].
      dhue, sat, exposure: float32 [B]: hue shift (fraction of the circle), saturation and value factors.
    Returns:
      uint8 [B, H, W, 3]; the same pixels as ``augment.hsv_adjust`` with the same parameters (within 1/255).
    """
    col = lambda x: jnp.asarray(x, jnp.float32).reshape(-1, 1, 1)
    h, s, v = _rgb_to_hsv(images)
    shift = jnp.round(col(dhue) * 256.0).astype(jnp.int32)  # round half to even, as Python's round()
    h = (h + shift) & 255  # the hue circle wraps modulo 256
    # The host's lookup tables, in the same float32 arithmetic: min(level * factor + 0.5, 255), truncated.
    s = jnp.minimum(s.astype(jnp.float32) * col(sat) + 0.5, 255.0).astype(jnp.int32)
    v = jnp.minimum(v.astype(jnp.float32) * col(exposure) + 0.5, 255.0).astype(jnp.int32)
    return _hsv_to_rgb(h, s, v)


def train_inputs(images: jax.Array, params: jax.Array | None = None) -> jax.Array:
    """Training batch images -> float32 network inputs in [0, 1], inside the jitted train step.

    Args:
      images: uint8 [B, H, W, 3] RGB (a training batch after the host's geometric warp), or float32 in [0, 1].
      params: float32 [B, 3], each row's (dhue, sat, exposure) as the pipeline drew them (the batch's
        "photometric" entry, present when the jitter is placed on the device); None: float conversion only.
        A row equal to ``augment.IDENTITY_HSV`` leaves its image untouched (as the host does).
    Returns:
      float32 [B, H, W, 3] in [0, 1].
    """
    if params is None:
        return to_float(images)
    if images.dtype != jnp.uint8:
        raise TypeError(f"train_inputs: the HSV jitter needs uint8 images, got {images.dtype}")
    params = jnp.asarray(params, jnp.float32)
    dhue, sat, exposure = params[:, 0], params[:, 1], params[:, 2]
    identity = ((dhue == 0.0) & (sat == 1.0) & (exposure == 1.0))[:, None, None, None]
    return to_float(jnp.where(identity, images, hsv_adjust(images, dhue, sat, exposure)))
