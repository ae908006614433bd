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

Randomness: example ``i`` of a batch draws its parameters from ``fold_in(key, example_ids[i])``; the caller
makes ``key`` from (seed, step) (``step_key``), so a batch's jitter is a pure function of (seed, step, example
index): deterministic, independent of the device count, and resumable from the step alone.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

_HSV_SHIFT = 12  # OpenCV's fixed-point shift in RGB2HSV_b
_PHOTOMETRIC_TAG = 0x9407  # separates the photometric key stream from other uses of the same seed


def to_float(images: jax.Array) -> jax.Array:
    """uint8 [..., 3] -> float32 in [0, 1] (the host's former float batch, bit for bit); float passes through."""
    if images.dtype != jnp.uint8:
        return images.astype(jnp.float32)
    return images.astype(jnp.float32) * jnp.float32(1.0 / 255.0)


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


def _rand_scale(u_value: jax.Array, u_flip: jax.Array, s: float) -> jax.Array:
    """darknet rand_scale from two U(0, 1) numbers: a factor in [1, s], inverted with probability 1/2."""
    f = 1.0 + (s - 1.0) * u_value if s > 1.0 else jnp.ones_like(u_value)
    return jnp.where(u_flip < 0.5, f, 1.0 / f)


def draw_params(key: jax.Array, aug_cfg: Mapping[str, Any], example_ids: jax.Array
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-example darknet random_distort_image draws -> (dhue, sat, exposure), each float32 [B].

    dhue ~ U(-hue, hue); sat and exposure ~ rand_scale(saturation), rand_scale(exposure). Example ``i``'s
    draws (five U(0, 1) numbers from ``fold_in(key, example_ids[i])``) depend only on ``key`` and its id.
    """
    hue, saturation, exposure = float(aug_cfg["hue"]), float(aug_cfg["saturation"]), float(aug_cfg["exposure"])
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(example_ids, jnp.int32))
    u = jax.vmap(lambda k: jax.random.uniform(k, (5,), jnp.float32))(keys)  # [B, 5]
    dhue = hue * (2.0 * u[:, 0] - 1.0) if hue > 0 else jnp.zeros_like(u[:, 0])
    return dhue, _rand_scale(u[:, 1], u[:, 2], saturation), _rand_scale(u[:, 3], u[:, 4], exposure)


def photometric_enabled(aug_cfg: Mapping[str, Any]) -> bool:
    """Whether any of hue / saturation / exposure jitter is on (0 and 1.0 mean off, as on the host)."""
    return float(aug_cfg["hue"]) > 0 or float(aug_cfg["saturation"]) > 1.0 or float(aug_cfg["exposure"]) > 1.0


def device_photometric(images: jax.Array, key: jax.Array, aug_cfg: Mapping[str, Any],
                       example_ids: jax.Array | None = None) -> jax.Array:
    """Photometric training augmentation + float conversion, for use inside a jitted step.

    Args:
      images: uint8 [B, H, W, 3] RGB (a training batch after the host's geometric warp).
      key: PRNG key of this step (``step_key(seed, step)``).
      aug_cfg: ``data_cfg.augment`` (hue, saturation, exposure; read at trace time, so switching an op off
        removes it from the compiled program).
      example_ids: int [B] index of each example in the global batch (default ``arange(B)``).
    Returns:
      float32 [B, H, W, 3] in [0, 1].
    """
    if images.dtype != jnp.uint8:
        raise TypeError(f"device_photometric: expected uint8 images, got {images.dtype}")
    if photometric_enabled(aug_cfg):
        ids = jnp.arange(images.shape[0]) if example_ids is None else example_ids
        images = hsv_adjust(images, *draw_params(key, aug_cfg, ids))
    return to_float(images)


def step_key(seed: int, step: jax.Array | int) -> jax.Array:
    """The photometric PRNG key of training step ``step`` for data seed ``seed``."""
    base = jax.random.fold_in(jax.random.PRNGKey(seed), _PHOTOMETRIC_TAG)
    return jax.random.fold_in(base, step)


def train_inputs(images: jax.Array, aug_cfg: Mapping[str, Any] | None, seed: int, step: jax.Array | int
                 ) -> jax.Array:
    """Training batch images [B, H, W, 3] -> float32 network inputs in [0, 1], inside the jitted train step.

    uint8 images get the photometric jitter of (``seed``, ``step``, row of the global batch) from ``aug_cfg``
    (``data_cfg.augment``; None: float conversion only); float input (already in [0, 1]) passes through.
    """
    if images.dtype != jnp.uint8 or aug_cfg is None:
        return to_float(images)
    return device_photometric(images, step_key(seed, step), aug_cfg)
