"""Darknet interop: read ``.cfg`` + ``.weights`` into Flax, and write them back.

    model, variables = yolojax.darknet.load("yolov2-voc.cfg", "yolov2-voc.weights")
    raw = model.apply(variables, images)   # images [N, H, W, 3] float32 RGB in [0, 1]

``raw`` is the output of the layer before ``[region]``/``[detection]``: ``[N, S, S, A·(5+C)]`` (darknet channel
order) for YOLOv2 cfgs, ``[N, S·S·(5B+C)]`` for YOLOv1. When the cfg is one of the hand-written architectures
(yolov2-voc, yolo-voc.2.0, yolov2-tiny-voc, the YOLOv1 and Fast YOLO paper cfgs) ``model``
is that module (YOLOv2/TinyYOLOv2 with ``flat_output=True``), so the weights can be evaluated and fine-tuned
with the training code; any other cfg gets the generic DarknetNetwork.

    export(model, variables, "out.cfg", "out.weights")   # the reverse
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from yolojax.darknet.cfg import (
    CfgError,
    Section,
    count_weights,
    format_cfg,
    infer_layers,
    load_cfg,
    parse_cfg,
    with_input_size,
)
from yolojax.darknet.mapping import (
    ConversionReport,
    MappingError,
    blobs_to_variables,
    match_handwritten,
    module_sections,
    module_targets,
    variables_to_blobs,
)
from yolojax.darknet.network import DarknetNetwork
from yolojax.darknet.weights import (
    DarknetWeights,
    WeightsError,
    WeightsHeader,
    random_blobs,
    read_weights,
    weights_to_bytes,
    write_weights,
)
from yolojax.models import TinyYOLOv2, YOLOv1, YOLOv1ConvAnchors, YOLOv2
from yolojax.models.heads import Head

# The official darknet cfgs (pjreddie), shipped with the package: yolov2-voc, yolo-voc.2.0, yolov2-tiny-voc,
# the YOLOv1 / Fast YOLO paper cfgs, darknet19(_448), extraction, and voc.names.
OFFICIAL_CFG_DIR = Path(__file__).resolve().parent / "cfgs"


def official_cfg(name: str) -> Path:
    """Path of an official darknet cfg shipped with yolojax, e.g. ``official_cfg("yolov2-voc.cfg")``."""
    path = OFFICIAL_CFG_DIR / name
    if not path.is_file():
        available = sorted(p.name for p in OFFICIAL_CFG_DIR.iterdir())
        raise FileNotFoundError(f"no official cfg named {name!r}; available: {available}")
    return path


__all__ = [
    "OFFICIAL_CFG_DIR", "official_cfg", "CfgError", "ConversionReport", "DarknetNetwork", "LoadReport",
    "MappingError", "WeightsError",
    "WeightsHeader", "build", "cfg_anchors", "count_weights", "export", "format_cfg", "init_variables", "load",
    "load_cfg", "load_with_report", "model_config_fields", "parse_cfg", "random_blobs", "read_weights",
    "head_from_cfg", "variable_shapes", "with_input_size", "write_weights",
]  # fmt: skip


def build(sections: tuple[Section, ...], *, generic: bool = False) -> nn.Module:
    """The module for a parsed cfg: the matching hand-written module, else (or with generic=True) the
    generic DarknetNetwork."""
    model = None if generic else match_handwritten(sections)
    return model if model is not None else DarknetNetwork(sections)


def _init_fn(model: nn.Module, sections: tuple[Section, ...]):
    """key -> model.init(key, zeros [1, height, width, channels] of the cfg's [net])."""
    net = sections[0]
    shape = (1, net.get_int("height"), net.get_int("width"), net.get_int("channels"))
    return lambda key: model.init(key, jnp.zeros(shape, jnp.float32), train=False)


def init_variables(model: nn.Module, sections: tuple[Section, ...], seed: int = 0) -> dict[str, Any]:
    """Fresh float32 numpy variables for ``model`` at the cfg's [net] input size (batch 1)."""
    # 'rbg' keys: XLA compiles threefry for a 50M-parameter init in tens of seconds on CPU, rbg in a few.
    init = jax.jit(_init_fn(model, sections))
    return jax.tree.map(np.asarray, dict(init(jax.random.key(seed, impl="rbg"))))


def variable_shapes(model: nn.Module, sections: tuple[Section, ...]) -> dict[str, Any]:
    """The variables' jax.ShapeDtypeStructs at the cfg's input size, without computing anything."""
    return dict(jax.eval_shape(_init_fn(model, sections), jax.random.key(0)))


@dataclasses.dataclass
class LoadReport:
    """What ``load`` did: the header, and where every float went (ConversionReport)."""

    header: WeightsHeader | None
    conversion: ConversionReport
    num_floats: int  # floats after the header of the .weights file (0 without a file)


def load_with_report(cfg_path: str | os.PathLike, weights_path: str | os.PathLike | None = None, *,
                     generic: bool = False, seed: int = 0) -> tuple[nn.Module, dict[str, Any], LoadReport]:
    """Like ``load``, also returning a LoadReport (loaded / uninitialized variable paths, header)."""
    sections = load_cfg(cfg_path)
    model = build(sections, generic=generic)
    targets = module_targets(model, sections)
    if weights_path is None:
        dw = DarknetWeights(None, {}, tuple(i.index for i in infer_layers(sections) if i.num_weights), 0)
    else:
        dw = read_weights(weights_path, sections)
    # Shapes only: a complete file needs no (slow, 50M-value) random initialization.
    variables, conversion = blobs_to_variables(sections, targets, dw.layers, variable_shapes(model, sections),
                                               dw.missing)
    if conversion.uninitialized:
        fresh = traverse_util.flatten_dict(init_variables(model, sections, seed))
        flat = traverse_util.flatten_dict(variables)
        variables = traverse_util.unflatten_dict(
            {k: fresh[k] if isinstance(v, jax.ShapeDtypeStruct) else v for k, v in flat.items()})
    if conversion.floats_used != dw.num_floats:  # every float of the file must land somewhere
        raise MappingError(f"{weights_path}: {dw.num_floats} floats read but {conversion.floats_used} placed")
    return model, variables, LoadReport(dw.header, conversion, dw.num_floats)


def load(cfg_path: str | os.PathLike, weights_path: str | os.PathLike | None = None, *,
         generic: bool = False, seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """Builds the module for a darknet cfg and fills it from a .weights file.

    Args:
      cfg_path: darknet .cfg.
      weights_path: darknet .weights; may be partial (stopping at a layer boundary, like
        darknet19_448.conv.23): the rest keeps a fresh initialization (seed) and a warning lists it.
        None: no file, everything freshly initialized.
      generic: always use the generic DarknetNetwork, even for cfgs of the hand-written modules.
    Returns:
      (model, variables): ``model.apply(variables, images [N, H, W, 3] in [0, 1])`` gives the raw output of
      the layer before [region]/[detection] (module doc). Variables are numpy float32
      ({'params', 'batch_stats' if any BN}).
    Raises:
      CfgError (unsupported layer: names type and line), WeightsError (file does not fit: floats expected
      and found), MappingError.
    """
    model, variables, report = load_with_report(cfg_path, weights_path, generic=generic, seed=seed)
    if weights_path is not None and report.conversion.uninitialized:
        warnings.warn(
            f"{weights_path} covers {len(report.conversion.loaded)} variables; "
            f"{len(report.conversion.uninitialized)} keep their fresh initialization (layers "
            f"{list(report.conversion.missing_layers)}): {report.conversion.uninitialized}", stacklevel=2)
    return model, variables


def export(model: nn.Module, variables: dict[str, Any], cfg_path: str | os.PathLike,
           weights_path: str | os.PathLike, *, height: int | None = None, width: int | None = None,
           anchors: tuple[tuple[float, float], ...] | None = None,
           header: WeightsHeader = WeightsHeader()) -> tuple[Section, ...]:
    """Writes a darknet .cfg and .weights for a yolojax module and its variables.

    Args:
      model: YOLOv2 / TinyYOLOv2 (reorg_impl='darknet'), YOLOv1 (either architecture) or DarknetNetwork.
      variables: {'params', 'batch_stats'} as from init/training or ``load``.
      height, width: [net] input size written to the cfg (default 416 for YOLOv2, 448 for YOLOv1, the
        generic network's own).
      anchors: [region] anchors (grid units) for YOLOv2; default the VOC anchors of yolov2-voc.cfg.
      header: .weights header (version decides a 32- or 64-bit ``seen``).
    Returns:
      The sections written. Deterministic: export(load(export(m, v))) reproduces both files byte for byte.
    """
    if isinstance(model, DarknetNetwork) and anchors is not None:
        raise ValueError("anchors= only applies to hand-written YOLOv2 modules; the cfg keeps its own")
    sections = module_sections(model, height, width, anchors)
    blobs = variables_to_blobs(sections, module_targets(model, sections), jax.device_get(dict(variables)))
    data = weights_to_bytes(sections, blobs, header)
    with open(cfg_path, "w", encoding="utf-8") as f:
        f.write(format_cfg(sections))
    with open(weights_path, "wb") as f:
        f.write(data)
    return sections


def cfg_anchors(sections: tuple[Section, ...]) -> np.ndarray | None:
    """Anchors [A, 2] (grid units) of the cfg's [region] layer, or None without one."""
    regions = [s for s in sections if s.type == "region"]
    if not regions or not regions[-1].has("anchors"):
        return None
    values = np.asarray(regions[-1].get_floats("anchors"), np.float32)
    if values.size % 2:
        raise CfgError(f"{regions[-1].where('anchors')}: an odd number of values ({values.size})")
    return values.reshape(-1, 2)


def head_from_cfg(sections: tuple[Section, ...]) -> Head:
    """The :class:`~yolojax.models.heads.Head` of parsed darknet cfg sections: the last ``[region]`` (v2) or
    ``[detection]`` (v1) layer."""
    heads = [s for s in sections if s.type in ("region", "detection")]
    if not heads:
        raise ValueError(f"{sections[0].source}: no [region] or [detection] layer: not a YOLO detector cfg")
    head = heads[-1]
    if head.type == "region":
        anchors = np.asarray(cfg_anchors(sections), np.float64).reshape(-1, 2)
        return Head("v2", head.get_int("classes"), anchors=tuple(map(tuple, anchors.tolist())))
    return Head("v1", head.get_int("classes"), grid_size=head.get_int("side"), boxes_per_cell=head.get_int("num"),
                sqrt=bool(head.get_int("sqrt", 0)))


# ----------------------------------------------------------------------------------------------------------
# Darknet files -> a training checkpoint (experiments/convert_darknet.py).


def model_config_fields(model: nn.Module, sections: tuple[Section, ...]) -> dict[str, Any]:
    """``config.model`` fields (see yolojax.models.build_model) describing a hand-written module, plus the
    cfg's anchors for YOLOv2. Raises ValueError for the generic network (no training config describes it)."""
    if isinstance(model, (YOLOv2, TinyYOLOv2, YOLOv1ConvAnchors)):
        regions = [s for s in sections if s.type == "region"]
        # as written in the cfg (python floats; cfg_anchors' float32 would print as 1.0800000429153442)
        anchors = regions[-1].get_floats("anchors") if regions and regions[-1].has("anchors") else None
        name = {YOLOv2: "yolov2", TinyYOLOv2: "tiny_yolov2", YOLOv1ConvAnchors: "yolov1_conv_anchors"}[type(model)]
        fields = dict(name=name, num_classes=model.num_classes,
                      width=model.width, v2=dict(num_anchors=model.num_anchors, batch_norm=model.batch_norm))
        if isinstance(model, YOLOv2):
            fields["v2"].update(passthrough=model.passthrough, reorg_impl=model.reorg_impl)
        if anchors is not None:
            fields["anchors"] = tuple(zip(anchors[0::2], anchors[1::2]))
        return fields
    if isinstance(model, YOLOv1):
        return dict(name=model.architecture, num_classes=model.num_classes, width=model.width,
                    v1=dict(grid_size=model.grid_size, boxes_per_cell=model.boxes_per_cell,
                            batch_norm=model.batch_norm, dropout_rate=model.dropout_rate,
                            crop_rescale=model.crop_rescale))
    raise ValueError(f"{sections[0].source} is not one of the hand-written architectures (yolov2-voc, "
                     f"yolo-voc.2.0, yolov2-tiny-voc, yolo-v1-paper, fast-yolo-v1-paper, YOLO9000's convolutional "
                     f"YOLOv1 with anchors): it loads into the generic "
                     f"DarknetNetwork, which the training code cannot build")
