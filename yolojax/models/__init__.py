"""Flax models: YOLOv1, Fast YOLO, Darknet-19, YOLOv2, Tiny YOLOv2, the YOLOv1 trunk with a conv anchor head;
`build_model(config.model)`."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from yolojax.models.darknet import Darknet19
from yolojax.models.layers import (
    BN_EPSILON,
    REORG_IMPLS,
    ConvBN,
    darknet_maxpool,
    darknet_reorg,
    reorg,
    space_to_depth,
)
from yolojax.models.yolov1 import YOLOv1, YOLOv1ConvAnchors
from yolojax.models.yolov2 import PASSTHROUGHS, TinyYOLOv2, YOLOv2

# config.model.name -> model family (yolojax.models.heads: loss, decoder, thresholds). The only list of models.
MODEL_FAMILIES = {"yolov1": "v1", "fast_yolo": "v1", "yolov2": "v2", "tiny_yolov2": "v2", "yolov1_conv_anchors": "v2"}
MODEL_NAMES = tuple(MODEL_FAMILIES)
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

__all__ = [
    "BN_EPSILON", "ConvBN", "Darknet19", "MODEL_FAMILIES", "MODEL_NAMES", "TinyYOLOv2", "YOLOv1",
    "YOLOv1ConvAnchors", "YOLOv2", "build_model",
    "darknet_maxpool", "darknet_reorg", "reorg", "space_to_depth",
]  # fmt: skip


def _get(cfg: Any, key: str, default: Any) -> Any:
    """cfg.key if present (ConfigDict, dict or None), else default."""
    if cfg is None:
        return default
    if isinstance(cfg, dict) or hasattr(cfg, "get"):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def build_model(model_cfg: Any) -> nn.Module:
    """Module described by `config.model` (fields in yolojax/config/base.py; missing fields take darknet defaults).

    name 'yolov1' | 'fast_yolo' -> YOLOv1 (output [N, S·S·(5B+C)]); 'yolov2' -> YOLOv2, 'tiny_yolov2' ->
    TinyYOLOv2, 'yolov1_conv_anchors' -> YOLOv1ConvAnchors (output [N, S, S, A, 5+C]; fields model.v2.num_anchors,
    model.v2.batch_norm). Raises ValueError naming the field for unknown values.
    """
    name = _get(model_cfg, "name", None)
    if name not in MODEL_NAMES:
        raise ValueError(f"model.name must be one of {MODEL_NAMES}, got {name!r}")
    dtype_name = _get(model_cfg, "dtype", "float32")
    if dtype_name not in _DTYPES:
        raise ValueError(f"model.dtype must be one of {tuple(_DTYPES)}, got {dtype_name!r}")
    common = dict(
        num_classes=int(_get(model_cfg, "num_classes", 20)),
        width=float(_get(model_cfg, "width", 1.0)),
        dtype=_DTYPES[dtype_name],
    )
    if name in ("yolov1", "fast_yolo"):
        v1 = _get(model_cfg, "v1", None)
        return YOLOv1(
            architecture=name,
            grid_size=int(_get(v1, "grid_size", 7)),
            boxes_per_cell=int(_get(v1, "boxes_per_cell", 2)),
            batch_norm=bool(_get(v1, "batch_norm", False)),
            dropout_rate=float(_get(v1, "dropout_rate", 0.5)),
            # set by experiments/convert_darknet.py for cfgs whose [crop] rescales inputs to [-1, 1]
            crop_rescale=bool(_get(v1, "crop_rescale", False)),
            **common,
        )
    v2 = _get(model_cfg, "v2", None)
    v2_common = dict(
        num_anchors=int(_get(v2, "num_anchors", 5)), batch_norm=bool(_get(v2, "batch_norm", True)), **common
    )
    if name == "tiny_yolov2":
        return TinyYOLOv2(**v2_common)
    if name == "yolov1_conv_anchors":
        return YOLOv1ConvAnchors(**v2_common)
    passthrough = _get(v2, "passthrough", "conv64_reorg")
    reorg_impl = _get(v2, "reorg_impl", "darknet")
    if passthrough not in PASSTHROUGHS:
        raise ValueError(f"model.v2.passthrough must be one of {PASSTHROUGHS}, got {passthrough!r}")
    if reorg_impl not in REORG_IMPLS:
        raise ValueError(f"model.v2.reorg_impl must be one of {tuple(REORG_IMPLS)}, got {reorg_impl!r}")
    return YOLOv2(passthrough=passthrough, reorg_impl=reorg_impl, **v2_common)
