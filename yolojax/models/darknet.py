"""Darknet-19 (YOLO9000 paper, Table 6): the YOLOv2 backbone, with an optional ImageNet classifier head.

Layer names follow darknet19.cfg: the k-th `[convolutional]` section (0-based, counting only convolutions) is
the submodule ``conv{k}``; `[maxpool]` layers have no parameters. darknet19.cfg layer index -> name:

    cfg layer  0 conv0 (32, 3x3)     1 maxpool     2 conv1 (64, 3x3)     3 maxpool
               4 conv2 (128, 3x3)    5 conv3 (64, 1x1)    6 conv4 (128, 3x3)    7 maxpool
               8 conv5 (256, 3x3)    9 conv6 (128, 1x1)  10 conv7 (256, 3x3)   11 maxpool
              12 conv8 (512, 3x3)   13 conv9 (256, 1x1)  14 conv10 (512, 3x3) 15 conv11 (256, 1x1)
              16 conv12 (512, 3x3)  -> the stride-16 "fine" map used by the YOLOv2 passthrough
              17 maxpool
              18 conv13 (1024, 3x3) 19 conv14 (512, 1x1) 20 conv15 (1024, 3x3) 21 conv16 (512, 1x1)
              22 conv17 (1024, 3x3) -> the stride-32 "coarse" map
              23 conv18 (classes, 1x1, bias, linear)  24 avgpool  25 softmax   (classifier only)

The first 23 layers are what `darknet19_448.conv.23` holds; YOLOv2 uses the same names for them, so those
weights load into either module unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from yolojax.models.layers import BN_EPSILON, ConvBN, darknet_maxpool, scale_channels

# Darknet-19 feature extractor in cfg order: (filters, kernel size) for a conv, "M" for a 2x2/2 maxpool.
DARKNET19_LAYERS: tuple[tuple[int, int] | str, ...] = (
    (32, 3), "M",
    (64, 3), "M",
    (128, 3), (64, 1), (128, 3), "M",
    (256, 3), (128, 1), (256, 3), "M",
    (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), "M",
    (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
)  # fmt: skip
NUM_DARKNET19_CONVS = sum(1 for layer in DARKNET19_LAYERS if layer != "M")  # 18

# make_conv(index, filters, kernel) -> function x -> y; filters are the width-1.0 counts.
ConvFactory = Callable[[int, int, int], Callable[[jax.Array], jax.Array]]


def darknet19_trunk(x: jax.Array, make_conv: ConvFactory) -> tuple[jax.Array, jax.Array]:
    """Runs the 18 convs and 5 maxpools of Darknet-19 inside the calling module's scope.

    Args:
      x: images [N, H, W, 3], H and W multiples of 32.
      make_conv: creates conv number `index` (named ``conv{index}`` by the caller, so parameters live directly
        in the calling module: the darknet importer relies on this flat naming).
    Returns:
      (fine [N, H/16, W/16, 512·width] — output of conv12, before the last maxpool,
       coarse [N, H/32, W/32, 1024·width] — output of conv17).
    """
    fine = None
    index = 0
    for layer in DARKNET19_LAYERS:
        if layer == "M":
            if index == 13:  # the pool after conv12: keep its input for the passthrough
                fine = x
            x = darknet_maxpool(x, 2, 2)
        else:
            filters, kernel = layer
            x = make_conv(index, filters, kernel)(x)
            index += 1
    return fine, x


def check_images(images: jax.Array, multiple: int, model: str) -> None:
    """Raises ValueError unless images is [N, H, W, 3] with H and W multiples of `multiple`."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{model}: images must be [N, H, W, 3], got shape {tuple(images.shape)}")
    h, w = images.shape[1:3]
    if h % multiple or w % multiple:
        raise ValueError(f"{model}: input size {h}x{w} must be a multiple of {multiple} (e.g. 320, 416, 608)")


class Darknet19(nn.Module):
    """Darknet-19.

    num_classes None: backbone, returns ``(fine [N, H/16, W/16, 512w], coarse [N, H/32, W/32, 1024w])``.
    num_classes k: classifier, returns logits ``[N, k]`` float32 (conv18 1x1 + global average pool; the
    softmax belongs to the loss). Input: images ``[N, H, W, 3]`` float in [0, 1], H, W multiples of 32.
    """

    num_classes: int | None = None
    width: float = 1.0
    batch_norm: bool = True
    dtype: Any = jnp.float32
    bn_epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False):
        check_images(images, 32, "Darknet19")

        def make_conv(index: int, filters: int, kernel: int):
            conv = ConvBN(
                scale_channels(filters, self.width), kernel, batch_norm=self.batch_norm, dtype=self.dtype,
                bn_epsilon=self.bn_epsilon, name=f"conv{index}",
            )
            return lambda x: conv(x, train)

        fine, coarse = darknet19_trunk(images.astype(self.dtype), make_conv)
        if self.num_classes is None:
            return fine, coarse
        logits = ConvBN(
            self.num_classes, 1, batch_norm=False, activation="linear", dtype=self.dtype,
            name=f"conv{NUM_DARKNET19_CONVS}",
        )(coarse, train)
        return jnp.mean(logits.astype(jnp.float32), axis=(1, 2))
