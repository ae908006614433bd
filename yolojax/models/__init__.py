"""Flax models: YOLOv1, Fast YOLO, Darknet-19, YOLOv2, Tiny YOLOv2, the YOLOv1 trunk with a conv anchor head;
`build_model(config.model)`."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from yolojax.config.base import base_config
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
    "YOLOv1ConvAnchors", "YOLOv2", "build_model", "default_model_config",
    "darknet_maxpool", "darknet_reorg", "reorg", "space_to_depth",
]  # fmt: skip


def default_model_config(fields: Any = None) -> ml_collections.ConfigDict:
    """A complete ``config.model``: the base config's (yolojax/config/base.py), updated with ``fields`` (a
    (nested) dict of the fields that differ, e.g. ``{"name": "tiny_yolov2", "v2": {"num_anchors": 3}}``)."""
    model = base_config().model
    if fields:
        model.update(dict(fields))
    return model


def build_model(model_cfg: Any) -> nn.Module:
    """Module described by `config.model` (a complete section: fields in yolojax/config/base.py; a dict is
    read as a ConfigDict).

    name 'yolov1' | 'fast_yolo' -> YOLOv1 (output [N, S·S·(5B+C)]; fields model.v1.*, and the optional
    model.v1.crop_rescale that experiments/convert_darknet.py writes for cfgs whose [crop] rescales inputs to
    [-1, 1]); 'yolov2' -> YOLOv2, 'tiny_yolov2' -> TinyYOLOv2, 'yolov1_conv_anchors' -> YOLOv1ConvAnchors (output
    [N, S, S, A, 5+C]; fields model.v2.*). Raises ValueError naming the field for unknown values.
    """
    if not isinstance(model_cfg, ml_collections.ConfigDict):
        model_cfg = ml_collections.ConfigDict(model_cfg)
    name = model_cfg.name
    if name not in MODEL_NAMES:
        raise ValueError(f"model.name must be one of {MODEL_NAMES}, got {name!r}")
    dtype_name = model_cfg.dtype
    if dtype_name not in _DTYPES:
        raise ValueError(f"model.dtype must be one of {tuple(_DTYPES)}, got {dtype_name!r}")
    common = dict(num_classes=int(model_cfg.num_classes), width=float(model_cfg.width), dtype=_DTYPES[dtype_name])
    if name in ("yolov1", "fast_yolo"):
        v1 = model_cfg.v1
        return YOLOv1(architecture=name, grid_size=int(v1.grid_size), boxes_per_cell=int(v1.boxes_per_cell),
                      batch_norm=bool(v1.batch_norm), dropout_rate=float(v1.dropout_rate),
                      crop_rescale=bool("crop_rescale" in v1 and v1.crop_rescale), **common)
    v2 = model_cfg.v2
    v2_common = dict(num_anchors=int(v2.num_anchors), batch_norm=bool(v2.batch_norm), **common)
    if name == "tiny_yolov2":
        return TinyYOLOv2(**v2_common)
    if name == "yolov1_conv_anchors":
        return YOLOv1ConvAnchors(**v2_common)
    if v2.passthrough not in PASSTHROUGHS:
        raise ValueError(f"model.v2.passthrough must be one of {PASSTHROUGHS}, got {v2.passthrough!r}")
    if v2.reorg_impl not in REORG_IMPLS:
        raise ValueError(f"model.v2.reorg_impl must be one of {tuple(REORG_IMPLS)}, got {v2.reorg_impl!r}")
    return YOLOv2(passthrough=v2.passthrough, reorg_impl=v2.reorg_impl, **v2_common)
