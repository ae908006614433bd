"""YOLOv1 (paper network, yolo-v1-paper.cfg), Fast YOLO (fast-yolo-v1-paper.cfg), and the YOLO9000 paper's
"convolutional, anchor boxes" network (YOLOv1ConvAnchors: the YOLOv1 trunk with a conv anchor head).

Input: images ``[N, 448, 448, 3]`` float in [0, 1] (any size works, but the fully connected layers fix it at
init: the paper net and Fast YOLO both reduce the input by 64, so 448 -> 7x7 before the FC layers).
Output: raw ``[N, S·S·(5B+C)]`` float32 in darknet's [detection] layout
``[S·S·C class probs][S·S·B confidences][S·S·B·4 boxes (x, y in-cell offset, sqrt w, sqrt h of the image)]``
(the last FC layer is linear: this module does not interpret its outputs).

Parameter names (for yolojax/darknet/): the k-th `[convolutional]` section (0-based, counting only convs) is
``conv{k}`` (a ConvBN: ``conv/kernel``, ``conv/bias`` without BN, ``bn/*`` with BN); the k-th `[connected]`
section is ``fc{k}`` (nn.Dense: ``kernel [in, out]``, ``bias [out]``). The first FC layer flattens the last conv
map in **H·W·C order** (Flax's natural order); darknet flattens in C·H·W order, so an importer must permute the
rows of darknet's (out, in) matrix. cfg layer index (0-based after [net]; darknet counts the [crop] layer):

yolo-v1-paper.cfg:  0 crop   1 conv0 (64 7x7/2)   2 maxpool   3 conv1 (192 3x3)   4 maxpool
    5-8 conv2..conv5 (128 1x1, 256 3x3, 256 1x1, 512 3x3)   9 maxpool
    10-19 conv6..conv15 (4 x [256 1x1, 512 3x3], 512 1x1, 1024 3x3)   20 maxpool
    21-24 conv16..conv19 (2 x [512 1x1, 1024 3x3])   25 conv20 (1024 3x3)   26 conv21 (1024 3x3/2)
    27 conv22 (1024 3x3)   28 conv23 (1024 3x3)   29 fc0 (4096, leaky)   30 dropout   31 fc1 (S·S·(5B+C), linear)
    32 detection
YOLOv1ConvAnchors (no cfg): conv0..conv23 as yolo-v1-paper.cfg without the maxpool after conv15 (layer 20), so the
    net reduces by 32 (416 -> 13x13); conv24 (A·(5+C) 1x1, bias, linear) replaces the connected layers.
fast-yolo-v1-paper.cfg:  0 crop   1,3,5,7,9,11 conv0..conv5 (16..512 3x3) each followed by a maxpool
    13 conv6 (1024)  14 conv7 (1024)  15 conv8 (1024)  16 fc0 (256, linear)  17 fc1 (4096, leaky)  18 dropout
    19 fc2 (S·S·(5B+C), linear)  20 detection
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from yolojax.models.darknet import check_images
from yolojax.models.layers import ACTIVATIONS, BN_EPSILON, ConvBN, darknet_dense_init, darknet_maxpool, scale_channels
from yolojax.models.yolov2 import detection_output

# Conv stacks in cfg order: (filters, kernel, stride) or "M" (2x2/2 maxpool).
YOLOV1_CONVS: tuple[tuple[int, int, int] | str, ...] = (
    (64, 7, 2), "M",  # paper: first conv is stride 2 (not 1 as in some Keras ports)
    (192, 3, 1), "M",
    (128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1), "M",
    *((256, 1, 1), (512, 3, 1)) * 4, (512, 1, 1), (1024, 3, 1), "M",
    *((512, 1, 1), (1024, 3, 1)) * 2, (1024, 3, 1), (1024, 3, 2),
    (1024, 3, 1), (1024, 3, 1),
)  # fmt: skip
FAST_YOLO_CONVS: tuple[tuple[int, int, int] | str, ...] = (
    (16, 3, 1), "M", (32, 3, 1), "M", (64, 3, 1), "M", (128, 3, 1), "M", (256, 3, 1), "M", (512, 3, 1), "M",
    (1024, 3, 1), (1024, 3, 1), (1024, 3, 1),
)  # fmt: skip
# YOLOv1's trunk with its last maxpool removed (the one between conv15 and conv16): downsamples by 32, not 64.
_LAST_POOL = len(YOLOV1_CONVS) - 1 - YOLOV1_CONVS[::-1].index("M")
YOLOV1_CONV_ANCHORS_CONVS = YOLOV1_CONVS[:_LAST_POOL] + YOLOV1_CONVS[_LAST_POOL + 1:]
# Hidden connected layers (features, activation); dropout follows the last one, then the linear output layer.
YOLOV1_HIDDEN: tuple[tuple[int, str], ...] = ((4096, "leaky"),)
FAST_YOLO_HIDDEN: tuple[tuple[int, str], ...] = ((256, "linear"), (4096, "leaky"))

ARCHITECTURES = {
    "yolov1": (YOLOV1_CONVS, YOLOV1_HIDDEN),
    "fast_yolo": (FAST_YOLO_CONVS, FAST_YOLO_HIDDEN),
}


def yolov1_output_size(grid_size: int, boxes_per_cell: int, num_classes: int) -> int:
    """S·S·(5B+C): 7·7·30 = 1470 for the paper's VOC model."""
    return grid_size * grid_size * (5 * boxes_per_cell + num_classes)


def conv_stack(x: jax.Array, convs: tuple[tuple[int, int, int] | str, ...], *, width: float, batch_norm: bool,
               dtype: Any, bn_epsilon: float, train: bool) -> jax.Array:
    """Runs a (filters, kernel, stride) / "M" stack inside the calling module's scope; convs are ``conv{k}``
    (k counts convs only), filters scaled by ``width``. [N, H, W, C] -> [N, H', W', C']."""
    index = 0
    for layer in convs:
        if layer == "M":
            x = darknet_maxpool(x, 2, 2)
            continue
        filters, kernel, stride = layer
        x = ConvBN(
            scale_channels(filters, width), kernel, stride, batch_norm=batch_norm, dtype=dtype,
            bn_epsilon=bn_epsilon, name=f"conv{index}",
        )(x, train)
        index += 1
    return x


class YOLOv1(nn.Module):
    """YOLOv1 / Fast YOLO: images ``[N, H, W, 3]`` -> raw ``[N, S·S·(5B+C)]`` float32 (module doc for layout).

    architecture: 'yolov1' (24 convs, FC 4096) or 'fast_yolo' (9 convs, FC 256 + FC 4096).
    batch_norm: conv -> BN -> leaky instead of conv+bias -> leaky (the first rung of the YOLOv2 paper's ablation).
    width: multiplier for every hidden conv and hidden FC layer (tests); the output layer keeps S·S·(5B+C).
    Dropout (train=True) needs ``rngs={'dropout': key}``.
    crop_rescale: feed conv0 with ``2x - 1`` (in [-1, 1]) as darknet's leading [crop] layer does unless
      ``noadjust=1`` (yolo-v1-paper.cfg); set by yolojax.darknet when importing such a cfg so its weights see
      the inputs they were trained on. False (default): images in [0, 1] go in as they are.
    """

    architecture: str = "yolov1"
    grid_size: int = 7
    boxes_per_cell: int = 2
    num_classes: int = 20
    batch_norm: bool = False
    dropout_rate: float = 0.5
    width: float = 1.0
    dtype: Any = jnp.float32
    bn_epsilon: float = BN_EPSILON
    crop_rescale: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"model.name must be one of {sorted(ARCHITECTURES)}, got {self.architecture!r}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.architecture}: images must be [N, H, W, 3], got {tuple(images.shape)}")
        convs, hidden = ARCHITECTURES[self.architecture]
        x = images.astype(self.dtype)
        if self.crop_rescale:  # darknet [crop] without noadjust: output = 2 * input - 1
            x = x * 2.0 - 1.0
        x = conv_stack(x, convs, width=self.width, batch_norm=self.batch_norm, dtype=self.dtype,
                       bn_epsilon=self.bn_epsilon, train=train)
        x = x.reshape(x.shape[0], -1)  # H·W·C order (darknet: C·H·W; the importer permutes)
        for index, (features, activation) in enumerate(hidden):
            x = self._dense(scale_channels(features, self.width), f"fc{index}")(x)
            x = ACTIVATIONS[activation](x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        out = self._dense(yolov1_output_size(self.grid_size, self.boxes_per_cell, self.num_classes), f"fc{len(hidden)}")
        return out(x).astype(jnp.float32)

    def _dense(self, features: int, name: str) -> nn.Dense:
        return nn.Dense(features, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=darknet_dense_init, name=name)


class YOLOv1ConvAnchors(nn.Module):
    """The YOLO9000 paper's "convolutional, anchor boxes" network (Table 2): YOLOv1's 24-conv trunk without its
    connected layers and without its last maxpool, then a 1x1 conv anchor head.

    images ``[N, H, W, 3]`` float in [0, 1], H, W multiples of 32 (416 -> 13x13) -> raw ``[N, H/32, W/32, A,
    5 + C]`` float32, last axis (tx, ty, tw, th, to, class logits...): the YOLOv2 contract (same loss, decoder
    and attributes as YOLOv2; ``flat_output=True`` gives darknet's ``[N, S, S, A·(5+C)]``). It differs from
    YOLOv2 with ``passthrough='none'`` only in the trunk: YOLOv1's 24 convs (20 classifier convs + 4 detection
    convs) instead of Darknet-19's 18 + 3 detection convs; both end in the same 1x1 output conv.
    batch_norm: conv -> BN -> leaky (the ladder has batch norm from its second rung on).
    width: multiplier for every hidden conv (tests); the output conv keeps A·(5+C) channels.
    """

    num_classes: int = 20
    num_anchors: int = 5
    batch_norm: bool = True
    width: float = 1.0
    dtype: Any = jnp.float32
    bn_epsilon: float = BN_EPSILON
    flat_output: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_images(images, 32, "YOLOv1ConvAnchors")
        x = conv_stack(images.astype(self.dtype), YOLOV1_CONV_ANCHORS_CONVS, width=self.width,
                       batch_norm=self.batch_norm, dtype=self.dtype, bn_epsilon=self.bn_epsilon, train=train)
        num_convs = sum(1 for layer in YOLOV1_CONV_ANCHORS_CONVS if layer != "M")  # 24
        return detection_output(self, x, num_convs, train)
