"""Darknet building blocks: conv-BN-leaky, darknet max pooling, reorg / space-to-depth.

All tensors are NHWC: ``[N, H, W, C]``. Darknet itself is NCHW; where the memory order matters (reorg) the
conversion is written out explicitly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Leaky ReLU slope used by darknet (Flax's default is 0.01).
LEAKY_SLOPE = 0.1
# BN epsilon *inside* the square root, (x - mean) / sqrt(var + eps). Darknet's CPU path uses
# (x - mean) / (sqrt(var) + 1e-6), cuDNN uses sqrt(var + 1e-5); OpenCV's darknet importer uses sqrt(var + 1e-6),
# which is what we match exactly (the OpenCV equality test); it differs from darknet CPU by < 1e-4 relative
# whenever var > 1e-4.
BN_EPSILON = 1e-6
# Darknet updates rolling statistics as rolling = 0.99 * rolling + 0.01 * batch. (Darknet's batch variance is
# the unbiased one, 1/(m-1); Flax's is 1/m: a factor m/(m-1) with m = batch·H·W >= 10^4 for YOLOv2, ignored.)
BN_MOMENTUM = 0.99

# Darknet initializes conv weights with N(0, 2 / fan_in) (He normal, not truncated)...
darknet_conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# ... and connected weights with sqrt(2 / fan_in) * U(-1, 1), i.e. variance 2 / (3 fan_in).
darknet_dense_init = nn.initializers.variance_scaling(2.0 / 3.0, "fan_in", "uniform")

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "leaky": lambda x: nn.leaky_relu(x, negative_slope=LEAKY_SLOPE),
    "linear": lambda x: x,
}


def scale_channels(channels: int, width: float) -> int:
    """Channel count after a width multiplier, rounded to a multiple of 4 (at least 4).

    A multiple of 4 keeps darknet's reorg (which splits channels into stride**2 = 4 groups) valid at every
    width; at width 1.0 every darknet channel count is returned unchanged.
    """
    if width <= 0:
        raise ValueError(f"model width multiplier must be > 0, got {width}")
    return max(4, int(round(channels * width / 4.0)) * 4)


def darknet_conv_padding(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Darknet `pad=1`: size // 2 zeros on *every* side (symmetric).

    Not Flax 'SAME': for stride 2, 'SAME' pads asymmetrically (more at the bottom/right) and shifts every
    window by one pixel relative to darknet, so imported weights would see different inputs.
    """
    p = kernel_size // 2
    return ((p, p), (p, p))


def darknet_pool_padding(in_size: int, size: int, stride: int, padding: int | None = None) -> tuple[int, int]:
    """(before, after) -inf padding reproducing darknet's maxpool geometry along one axis.

    Darknet: `padding` defaults to size - 1; out = (in + padding - size) // stride + 1; windows start at
    -padding // 2 (C division). Returns the padding that gives exactly those windows.
    """
    padding = size - 1 if padding is None else padding
    out = (in_size + padding - size) // stride + 1
    before = padding // 2
    last = -before + (out - 1) * stride + size - 1  # last input index touched by the last window
    return before, max(0, last - (in_size - 1))


def darknet_maxpool(x: jax.Array, size: int = 2, stride: int = 2, padding: int | None = None) -> jax.Array:
    """Darknet `[maxpool]` on ``x [N, H, W, C]`` -> ``[N, (H + pad - size)//stride + 1, ..., C]``.

    size 2 stride 2 on even sizes is the usual halving; size 2 stride 1 (Tiny YOLOv2's sixth pool) keeps the
    size by padding one row/column at the bottom/right; out-of-image positions never win (-inf).
    """
    pad_h = darknet_pool_padding(x.shape[1], size, stride, padding)
    pad_w = darknet_pool_padding(x.shape[2], size, stride, padding)
    return _window_max(x, size, stride, (pad_h, pad_w))


# Max pooling as the elementwise maximum of its size² strided window taps, with darknet's gradient: all of it to
# the first maximum of a window in row-major order (forward_maxpool_layer's strict ``val > max``; also what XLA's
# select-and-scatter gives nn.max_pool). The same values as nn.max_pool, but the gradient is a few fused
# elementwise passes instead of XLA:CPU's select-and-scatter, which it expands into full-size iotas, a variadic
# reduce-window and a scatter (measured: 40% of the quickstart train step).


def _taps(xp: jax.Array, size: int, stride: int, out_hw: tuple[int, int]):
    """(row offset, column offset, ``xp[:, i + stride * oy, j + stride * ox, :]`` [N, out_h, out_w, C])."""
    (out_h, out_w), (n, _, _, c) = out_hw, xp.shape
    for i in range(size):
        for j in range(size):
            yield i, j, jax.lax.slice(xp, (0, i, j, 0), (n, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1,
                                                         c), (1, stride, stride, 1))


def _padded(x: jax.Array, pads) -> jax.Array:
    return jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-jnp.inf)


def _pooled_size(xp: jax.Array, size: int, stride: int) -> tuple[int, int]:
    return (xp.shape[1] - size) // stride + 1, (xp.shape[2] - size) // stride + 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _window_max(x: jax.Array, size: int, stride: int, pads) -> jax.Array:
    xp = _padded(x, pads)
    out = None
    for _, _, tap in _taps(xp, size, stride, _pooled_size(xp, size, stride)):
        out = tap if out is None else jnp.maximum(out, tap)
    return out


def _window_max_fwd(x, size, stride, pads):
    out = _window_max(x, size, stride, pads)
    return out, (x, out)


def _window_max_bwd(size, stride, pads, residuals, g):
    x, out = residuals
    xp = _padded(x, pads)
    out_h, out_w = out.shape[1:3]
    taken = jnp.zeros(out.shape, bool)
    grad = jnp.zeros(xp.shape, g.dtype)
    zero = jnp.zeros((), g.dtype)
    for i, j, tap in _taps(xp, size, stride, (out_h, out_w)):
        first = (tap == out) & ~taken
        taken = taken | first
        rows = (i, xp.shape[1] - i - (out_h - 1) * stride - 1, stride - 1)
        cols = (j, xp.shape[2] - j - (out_w - 1) * stride - 1, stride - 1)
        grad = grad + jax.lax.pad(jnp.where(first, g, zero), zero, ((0, 0, 0), rows, cols, (0, 0, 0)))
    (top, _), (left, _) = pads
    return (grad[:, top:top + x.shape[1], left:left + x.shape[2], :],)


_window_max.defvjp(_window_max_fwd, _window_max_bwd)


def _check_reorg_input(x: jax.Array, stride: int, need_channel_split: bool) -> None:
    n, h, w, c = x.shape
    if h % stride or w % stride:
        raise ValueError(f"reorg stride {stride}: feature map {h}x{w} is not divisible by the stride")
    if need_channel_split and c % (stride * stride):
        raise ValueError(f"darknet reorg stride {stride}: channels {c} not divisible by {stride * stride}")


def space_to_depth(x: jax.Array, stride: int = 2) -> jax.Array:
    """Standard space-to-depth (TF order): ``[N, H, W, C] -> [N, H/s, W/s, s*s*C]``.

    out[n, i, j, (dy * s + dx) * C + c] = x[n, i * s + dy, j * s + dx, c].
    """
    _check_reorg_input(x, stride, need_channel_split=False)
    n, h, w, c = x.shape
    y = x.reshape(n, h // stride, stride, w // stride, stride, c)  # [n, i, dy, j, dx, c]
    y = y.transpose(0, 1, 3, 2, 4, 5)  # [n, i, j, dy, dx, c]
    return y.reshape(n, h // stride, w // stride, stride * stride * c)


def darknet_reorg(x: jax.Array, stride: int = 2) -> jax.Array:
    """Darknet's `[reorg]` layer (pjreddie `reorg_cpu(..., forward=0)`): ``[N, H, W, C] -> [N, H/s, W/s, s*s*C]``.

    Not space_to_depth: darknet reads its NCHW input buffer as if it were (C/s², H·s, W·s), applies
    space-to-depth to that, and writes the result buffer as (s²C, H/s, W/s). Positions of different rows get
    mixed. Required to run official darknet weights (and what OpenCV implements).
    """
    _check_reorg_input(x, stride, need_channel_split=True)
    n, h, w, c = x.shape
    s = stride
    y = x.transpose(0, 3, 1, 2).reshape(n, c // (s * s), h * s, w * s)  # the buffer as darknet reads it
    y = y.reshape(n, c // (s * s), h, s, w, s)  # [n, c2, j, dy, i, dx]
    y = y.transpose(0, 3, 5, 1, 2, 4)  # [n, dy, dx, c2, j, i] == NCHW buffer of shape (c, h, w)
    y = y.reshape(n, c * s * s, h // s, w // s)  # the same buffer viewed as the output shape
    return y.transpose(0, 2, 3, 1)


REORG_IMPLS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "darknet": darknet_reorg,
    "space_to_depth": space_to_depth,
}


def reorg(x: jax.Array, stride: int = 2, impl: str = "darknet") -> jax.Array:
    """Passthrough reorganization ``[N, H, W, C] -> [N, H/s, W/s, s*s*C]`` by name ('darknet' | 'space_to_depth')."""
    if impl not in REORG_IMPLS:
        raise ValueError(f"model.v2.reorg_impl must be one of {sorted(REORG_IMPLS)}, got {impl!r}")
    return REORG_IMPLS[impl](x, stride)


class ConvBN(nn.Module):
    """Darknet `[convolutional]`: conv (pad size//2 each side) -> optional batch norm -> activation.

    Parameters: ``conv/kernel [k, k, C_in, features]``; ``conv/bias [features]`` only without BN (darknet's
    "biases" of a BN layer are the BN shift ``bn/bias``); with BN ``bn/scale``, ``bn/bias`` and batch stats
    ``bn/mean``, ``bn/var``. Input ``[N, H, W, C_in]`` -> ``[N, H', W', features]`` with
    H' = (H + 2 (k // 2) - k) // stride + 1.
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    batch_norm: bool = True
    activation: str = "leaky"
    dtype: Any = jnp.float32
    bn_epsilon: float = BN_EPSILON
    bn_momentum: float = BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"ConvBN activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        k = self.kernel_size
        x = nn.Conv(
            self.features,
            (k, k),
            strides=(self.strides, self.strides),
            padding=darknet_conv_padding(k),
            use_bias=not self.batch_norm,  # BN's shift makes a conv bias redundant (darknet has none either)
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=darknet_conv_init,
            name="conv",
        )(x)
        if self.batch_norm:
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=self.bn_epsilon,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                name="bn",
            )(x)
        return ACTIVATIONS[self.activation](x)
