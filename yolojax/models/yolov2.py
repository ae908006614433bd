"""YOLOv2 (Darknet-19 + passthrough head) and Tiny YOLOv2, layer for layer as in darknet's VOC cfgs.

Output (raw, decoding lives in yolojax/ops/postprocess.py): ``[N, S_h, S_w, A, 5 + C]`` with S = input / 32 and
last axis (tx, ty, tw, th, to, class logits...), or with ``flat_output=True`` the darknet tensor
``[N, S_h, S_w, A·(5+C)]`` whose channel a·(5+C) + k is entry k of anchor a (what darknet's [region] layer
reads). The two differ only by a reshape. Outputs are float32 whatever the compute dtype.

Parameter names (for yolojax/darknet/): the k-th `[convolutional]` section of the cfg (0-based, counting only
convolutions, in file order) is the submodule ``conv{k}``:
  params[f"conv{k}"]["conv"]["kernel"]   [kh, kw, C_in, C_out]  (darknet stores (C_out, C_in, kh, kw))
  params[f"conv{k}"]["conv"]["bias"]     [C_out]   only for convs without batch_normalize
  params[f"conv{k}"]["bn"]["scale"|"bias"], batch_stats[f"conv{k}"]["bn"]["mean"|"var"]   with batch_normalize
Route/reorg/maxpool/region have no parameters. cfg layer index (0-based after [net], as darknet prints):

yolov2-voc.cfg (passthrough="conv64_reorg"):
   0-22  Darknet-19 trunk, conv0..conv17 (see yolojax/models/darknet.py; layer 16 = conv12 is the 26x26x512 map)
  23 conv18 (1024 3x3)   24 conv19 (1024 3x3)   25 route -9 (-> layer 16)   26 conv20 (64 1x1)
  27 reorg /2            28 route -1,-4 (-> concat[layer 27, layer 24])       29 conv21 (1024 3x3)
  30 conv22 (A·(5+C) 1x1, bias, linear)          31 region
yolo-voc.2.0.cfg (passthrough="reorg"):
   0-24  as above        25 route -9 (-> layer 16)   26 reorg /2 (512 -> 2048 channels)
  27 route -1,-3 (-> concat[layer 26, layer 24])     28 conv20 (1024 3x3)   29 conv21 (A·(5+C) 1x1)   30 region
passthrough="none" (no cfg): 0-24 as above, conv20 (1024 3x3), conv21 (A·(5+C) 1x1).
yolov2-tiny-voc.cfg (TinyYOLOv2):
  0 conv0 (16)  1 maxpool  2 conv1 (32)  3 maxpool  4 conv2 (64)  5 maxpool  6 conv3 (128)  7 maxpool
  8 conv4 (256) 9 maxpool  10 conv5 (512)  11 maxpool size 2 stride 1  12 conv6 (1024)  13 conv7 (1024)
  14 conv8 (A·(5+C) 1x1, bias, linear)  15 region          (all 3x3 with BN except conv8)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from yolojax.models.darknet import NUM_DARKNET19_CONVS, check_images, darknet19_trunk
from yolojax.models.layers import BN_EPSILON, ConvBN, darknet_maxpool, reorg, scale_channels

PASSTHROUGHS = ("conv64_reorg", "reorg", "none")


def detection_output(module: nn.Module, x: jax.Array, index: int, train: bool) -> jax.Array:
    """The anchor head every YOLOv2-family model ends with, created in ``module``'s scope as ``conv{index}``:
    1x1 linear conv with bias to A·(5+C) channels (darknet channel order, anchor-major), then
    [N, S, S, A·(5+C)] -> [N, S, S, A, 5+C] float32 unless ``module.flat_output``. ``module`` provides
    num_anchors, num_classes, dtype, flat_output."""
    a, c = module.num_anchors, module.num_classes
    x = ConvBN(a * (5 + c), 1, batch_norm=False, activation="linear", dtype=module.dtype, name=f"conv{index}")(
        x, train)
    x = x.astype(jnp.float32)
    if module.flat_output:
        return x
    n, sh, sw, _ = x.shape
    return x.reshape(n, sh, sw, a, 5 + c)


class YOLOv2(nn.Module):
    """YOLOv2 detector. images ``[N, H, W, 3]`` float in [0, 1], H, W multiples of 32 -> raw output (module doc).

    passthrough: 'conv64_reorg' (yolov2-voc.cfg: 1x1x64 conv then reorg -> 256 channels), 'reorg'
      (yolo-voc.2.0.cfg: reorg of the 512-channel map -> 2048 channels) or 'none'.
    reorg_impl: 'darknet' (needed for darknet weights) or 'space_to_depth'.
    width: channel multiplier for every hidden conv (tests); the output conv keeps A·(5+C) channels.
    dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 20
    num_anchors: int = 5
    passthrough: str = "conv64_reorg"
    reorg_impl: str = "darknet"
    batch_norm: bool = True
    width: float = 1.0
    dtype: Any = jnp.float32
    bn_epsilon: float = BN_EPSILON
    flat_output: bool = False

    def _make_conv(self, train: bool):
        def make_conv(index: int, filters: int, kernel: int):
            conv = ConvBN(
                scale_channels(filters, self.width), kernel, batch_norm=self.batch_norm, dtype=self.dtype,
                bn_epsilon=self.bn_epsilon, name=f"conv{index}",
            )
            return lambda x: conv(x, train)

        return make_conv

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, 32, "YOLOv2")
        if self.passthrough not in PASSTHROUGHS:
            raise ValueError(f"model.v2.passthrough must be one of {PASSTHROUGHS}, got {self.passthrough!r}")
        make_conv = self._make_conv(train)
        fine, x = darknet19_trunk(images.astype(self.dtype), make_conv)  # [N,H/16,W/16,512], [N,H/32,W/32,1024]
        index = NUM_DARKNET19_CONVS  # 18
        for _ in range(2):
            x = make_conv(index, 1024, 3)(x)
            index += 1
        if self.passthrough != "none":
            if self.passthrough == "conv64_reorg":
                # The 1x1x64 squeeze makes the passthrough 256 channels instead of 2048 (16.6M fewer params).
                fine = make_conv(index, 64, 1)(fine)
                index += 1
            # darknet's route order: passthrough first, then the main path.
            x = jnp.concatenate([reorg(fine, 2, self.reorg_impl), x], axis=-1)
        x = make_conv(index, 1024, 3)(x)
        return detection_output(self, x, index + 1, train)


# yolov2-tiny-voc.cfg: (filters, kernel, maxpool stride after it or None).
TINY_YOLOV2_LAYERS: tuple[tuple[int, int, int | None], ...] = (
    (16, 3, 2), (32, 3, 2), (64, 3, 2), (128, 3, 2), (256, 3, 2),
    (512, 3, 1),  # size-2 stride-1 pool: keeps 13x13 (pads bottom/right)
    (1024, 3, None), (1024, 3, None),
)  # fmt: skip


class TinyYOLOv2(nn.Module):
    """Tiny YOLOv2 (yolov2-tiny-voc.cfg). Same input/output contract and attributes as YOLOv2."""

    num_classes: int = 20
    num_anchors: int = 5
    batch_norm: bool = True
    width: float = 1.0
    dtype: Any = jnp.float32
    bn_epsilon: float = BN_EPSILON
    flat_output: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, 32, "TinyYOLOv2")
        x = images.astype(self.dtype)
        for index, (filters, kernel, pool_stride) in enumerate(TINY_YOLOV2_LAYERS):
            x = ConvBN(
                scale_channels(filters, self.width), kernel, batch_norm=self.batch_norm, dtype=self.dtype,
                bn_epsilon=self.bn_epsilon, name=f"conv{index}",
            )(x, train)
            if pool_stride is not None:
                x = darknet_maxpool(x, 2, pool_stride)
        return detection_output(self, x, len(TINY_YOLOV2_LAYERS), train)
