"""A Flax network that runs any darknet cfg built from the layer types YOLOv1/v2 use.

Variables are named like the hand-written models' (yolojax/models): the k-th ``[convolutional]`` of the cfg
(0-based, counting convolutions only) is ``conv{k}``, a yolojax.models.layers.ConvBN (``conv/kernel``,
``conv/bias`` or ``bn/{scale,bias,mean,var}``); backbone initialization (yolojax.training.initialization) maps
darknet files by layer order, not by these names. The k-th ``[connected]`` is ``connected{k}/dense`` and the k-th
``[local]`` is ``local{k}``: deliberately not the hand-written ``fc{k}``, whose inputs are flattened in another
order, so a name match can never copy them silently. Tensors are NHWC; where darknet's NCHW memory order
matters (``[connected]`` flattens C·H·W, ``[reorg]``) it is reproduced explicitly.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from yolojax.darknet.cfg import CfgError, Section, conv_padding, maxpool_params, output_layer_index
from yolojax.models.layers import ACTIVATIONS, ConvBN, darknet_dense_init, darknet_maxpool, darknet_reorg

# Variable name prefix per weighted layer type (k-th layer of that type -> prefix + k).
NAME_PREFIX = {"convolutional": "conv", "connected": "connected", "local": "local"}


def flatten_chw(x: jax.Array) -> jax.Array:
    """``[N, H, W, C] -> [N, C*H*W]`` in darknet's (C, H, W) memory order (what [connected] consumes)."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


class Connected(nn.Module):
    """Darknet ``[connected]``: flatten C·H·W, dense, activation. ``kernel [C*H*W, out]``, ``bias [out]``.

    Input ``[N, H, W, C]`` (or ``[N, D]``) -> ``[N, 1, 1, out]``.
    """

    features: int
    activation: str = "linear"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = flatten_chw(x) if x.ndim == 4 else x
        y = nn.Dense(self.features, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=darknet_dense_init,
                     name="dense")(x)
        return ACTIVATIONS[self.activation](y)[:, None, None, :]


class Local(nn.Module):
    """Darknet ``[local]``: a convolution with separate weights at every output position (unshared).

    ``kernel [OH, OW, k, k, C, F]``, ``bias [OH, OW, F]``; input ``[N, H, W, C]`` -> ``[N, OH, OW, F]``.
    Darknet pads 1 pixel when pad=1 (only size 3 is accepted, so it is 'same'), none otherwise.
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    pad: int = 1
    activation: str = "leaky"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, c = self.kernel_size, self.strides, x.shape[-1]
        p = 1 if self.pad else 0
        # Patches carry the (C, kh, kw) window at every output position, channel-major.
        patches = jax.lax.conv_general_dilated_patches(
            x.astype(self.dtype), (k, k), (s, s), ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        n, oh, ow, _ = patches.shape
        patches = patches.reshape(n, oh, ow, c, k, k)
        kernel = self.param("kernel", nn.initializers.variance_scaling(2.0, "fan_in", "normal", in_axis=(2, 3, 4),
                                                                      out_axis=5), (oh, ow, k, k, c, self.features))
        bias = self.param("bias", nn.initializers.zeros, (oh, ow, self.features))
        y = jnp.einsum("nyxcij,yxijcf->nyxf", patches, kernel.astype(self.dtype)) + bias.astype(self.dtype)
        return ACTIVATIONS[self.activation](y)


class DarknetNetwork(nn.Module):
    """Runs a parsed darknet cfg (yolojax.darknet.cfg.parse_cfg) as a Flax module.

    Call: ``apply(variables, images [N, H, W, 3] float32 RGB in [0, 1], train=False)`` (``train=True`` needs
    ``mutable=['batch_stats']`` and, with dropout, ``rngs={'dropout': key}``). Returns the output of the layer
    before a final ``[region]``/``[detection]``: ``[N, H', W', C']`` for a convolutional output (YOLOv2:
    ``[N, S, S, A*(5+C)]`` in darknet channel order), ``[N, D]`` after ``[connected]``/``[avgpool]`` (YOLOv1:
    ``[N, S*S*(5B+C)]``).
    """

    sections: tuple[Section, ...]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        last = output_layer_index(self.sections)
        outputs: list[jax.Array] = []
        flat = False  # True once a [connected]/[avgpool] produced a vector: the output is returned as [N, D]
        counts = dict.fromkeys(NAME_PREFIX, 0)
        for i, s in enumerate(self.sections[1:last + 2]):
            if s.type in NAME_PREFIX:
                name = f"{NAME_PREFIX[s.type]}{counts[s.type]}"
                counts[s.type] += 1
            if s.type == "convolutional":
                size = s.get_int("size", 1)
                if conv_padding(s) != size // 2:
                    raise CfgError(f"{s.where('padding')}: only pad=1 (size//2) padding is supported")
                x = ConvBN(s.get_int("filters", 1), size, s.get_int("stride", 1),
                           batch_norm=bool(s.get_int("batch_normalize", 0)),
                           activation=s.get_str("activation", "logistic"), dtype=self.dtype, name=name)(x, train)
                flat = False
            elif s.type == "maxpool":
                x = darknet_maxpool(x, *maxpool_params(s))
                flat = False
            elif s.type == "avgpool":
                x, flat = jnp.mean(x, axis=(1, 2), keepdims=True), True
            elif s.type == "route":
                refs = [r + i if r < 0 else r for r in s.get_ints("layers")]
                x = jnp.concatenate([outputs[r] for r in refs], axis=-1)
                flat = False
            elif s.type == "reorg":
                x = darknet_reorg(x, s.get_int("stride", 1))
                flat = False
            elif s.type == "connected":
                x = Connected(s.get_int("output", 1), s.get_str("activation", "logistic"), self.dtype, name=name)(x)
                flat = True
            elif s.type == "local":
                x = Local(s.get_int("filters", 1), s.get_int("size", 1), s.get_int("stride", 1),
                          s.get_int("pad", 0), s.get_str("activation", "logistic"), self.dtype, name=name)(x)
                flat = False
            elif s.type == "dropout":
                x = nn.Dropout(s.get_float("probability", 0.5), deterministic=not train)(x)
            elif s.type == "crop":
                x = _crop(x, s)
                flat = False
            elif s.type == "softmax":
                if s.get_int("groups", 1) != 1:
                    raise CfgError(f"{s.where('groups')}: only groups=1 softmax is supported")
                # darknet's softmax runs over all C*H*W inputs of an image (groups=1).
                x = jax.nn.softmax(x.reshape(x.shape[0], -1), axis=-1).reshape(x.shape)
            elif s.type in ("region", "detection", "cost"):
                pass  # only reached for a non-final region/detection: darknet passes the input through
            else:  # parse_cfg rejects unknown types; net never appears here
                raise CfgError(f"{s.where()}: layer type not supported by DarknetNetwork")
            outputs.append(x)
        out = outputs[last]
        return out.reshape(out.shape[0], -1) if flat else out


def _crop(x: jax.Array, s: Section) -> jax.Array:
    """Darknet ``[crop]`` at test time: the centre crop, rescaled to [-1, 1] (``2x - 1``) unless noadjust=1.

    The rescaling is easy to miss: YOLOv1's cfgs start with a crop layer, so their weights expect [-1, 1].
    """
    ch, cw = s.get_int("crop_height", 1), s.get_int("crop_width", 1)
    h, w = x.shape[1], x.shape[2]
    dh, dw = (h - ch) // 2, (w - cw) // 2
    x = x[:, dh:dh + ch, dw:dw + cw, :]
    return x if s.get_int("noadjust", 0) else x * 2.0 - 1.0
