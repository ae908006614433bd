"""Mapping between darknet layers and Flax variables, and between cfgs and the hand-written modules.

A *target* says where one weighted cfg layer lives in a Flax variables tree:
  - both the generic DarknetNetwork and the hand-written modules (yolojax/models) name the k-th
    [convolutional] ``conv{k}`` (the modules' docstrings list the cfg index -> name tables);
  - the k-th [connected] is ``fc{k}`` in the hand-written modules (H·W·C input order) and
    ``connected{k}/dense`` in the generic network (darknet's C·H·W order); the k-th [local] is ``local{k}``.
Blob layouts (darknet) -> Flax:
  conv weights (n, c, kh, kw) -> conv/kernel (kh, kw, c, n); biases -> conv/bias, or bn/bias with BN;
  scales -> bn/scale; rolling_mean/variance -> batch_stats bn/mean, bn/var (stored raw: no epsilon folding,
  so export -> import -> export is bit-exact);
  connected weights (out, in) with `in` in C·H·W order -> kernel (in, out), rows permuted to H·W·C for
  modules that flatten NHWC maps directly (YOLOv1);
  local weights (oh·ow, n, c, k, k) -> kernel (oh, ow, k, k, c, n); biases (n, oh, ow) -> (oh, ow, n).
Every conversion is a pure permutation of float32 values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import numpy as np
from flax import traverse_util

from yolojax.darknet.cfg import CfgError, LayerInfo, Section, infer_layers
from yolojax.darknet.network import NAME_PREFIX, DarknetNetwork
from yolojax.models.darknet import DARKNET19_LAYERS, Darknet19
from yolojax.models.layers import scale_channels
from yolojax.models.yolov1 import ARCHITECTURES as V1_ARCHITECTURES
from yolojax.models.yolov1 import YOLOV1_CONV_ANCHORS_CONVS, YOLOv1, YOLOv1ConvAnchors, yolov1_output_size
from yolojax.models.yolov2 import TINY_YOLOV2_LAYERS, TinyYOLOv2, YOLOv2

# VOC anchors of yolov2-voc.cfg in grid units of the 13x13 grid (as in yolov2-voc.cfg), written when exporting a
# YOLOv2 with 5 anchors and no anchors given.
VOC_ANCHORS = ((1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892), (9.47112, 4.84053),
               (11.2364, 10.0071))


class MappingError(ValueError):
    """Variables that do not fit a cfg (missing path, wrong shape); the message names layer and path."""


@dataclasses.dataclass(frozen=True)
class Target:
    """Where one weighted cfg layer lives in the variables tree.

    kind: 'conv' | 'dense' | 'local'. path: module path under 'params' (and 'batch_stats').
    hwc_flatten: for 'dense' fed by a module that flattens its [H, W, C] input in H·W·C order, that input
      shape; None when the module flattens C·H·W like darknet (the generic network).
    """

    kind: str
    path: tuple[str, ...]
    hwc_flatten: tuple[int, int, int] | None = None


def generic_targets(sections: tuple[Section, ...]) -> dict[int, Target]:
    """Targets of DarknetNetwork: k-th conv -> ``conv{k}``, k-th connected -> ``connected{k}/dense`` (C·H·W
    rows, as darknet), k-th local -> ``local{k}``."""
    targets = {}
    counts = dict.fromkeys(NAME_PREFIX, 0)
    for info in infer_layers(sections):
        t = info.section.type
        if t not in NAME_PREFIX:
            continue
        name = f"{NAME_PREFIX[t]}{counts[t]}"
        counts[t] += 1
        kind, path = {"convolutional": ("conv", (name,)), "connected": ("dense", (name, "dense")),
                      "local": ("local", (name,))}[t]
        targets[info.index] = Target(kind, path)
    return targets


def handwritten_targets(sections: tuple[Section, ...]) -> dict[int, Target]:
    """Targets of the hand-written modules: k-th conv -> ``conv{k}``, k-th connected -> ``fc{k}`` (H·W·C)."""
    targets: dict[int, Target] = {}
    n_conv = n_fc = 0
    for info in infer_layers(sections):
        t = info.section.type
        if t == "convolutional":
            targets[info.index] = Target("conv", (f"conv{n_conv}",))
            n_conv += 1
        elif t == "connected":
            targets[info.index] = Target("dense", (f"fc{n_fc}",), hwc_flatten=info.in_shape)
            n_fc += 1
        elif t == "local":
            raise CfgError(f"{info.section.where()}: the hand-written modules have no [local] layer")
    return targets


# ----------------------------------------------------------------------------------------------------------
# Blobs <-> variables for one layer.


def _layer_to_flax(info: LayerInfo, target: Target, blobs: dict[str, np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
    """One layer's darknet blobs -> {('params'|'batch_stats', *path, leaf): array}."""
    p, b = ("params",) + target.path, ("batch_stats",) + target.path
    if target.kind == "conv":
        out = {p + ("conv", "kernel"): blobs["weights"].transpose(2, 3, 1, 0)}
        if "scales" in blobs:
            out[p + ("bn", "scale")] = blobs["scales"]
            out[p + ("bn", "bias")] = blobs["biases"]
            out[b + ("bn", "mean")] = blobs["rolling_mean"]
            out[b + ("bn", "var")] = blobs["rolling_variance"]
        else:
            out[p + ("conv", "bias")] = blobs["biases"]
        return out
    if target.kind == "dense":
        w = blobs["weights"]  # (out, in), in = C·H·W
        if target.hwc_flatten is not None:
            h, wd, c = target.hwc_flatten
            kernel = w.reshape(-1, c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, -1)
        else:
            kernel = w.T
        return {p + ("kernel",): kernel, p + ("bias",): blobs["biases"]}
    if target.kind == "local":
        oh, ow, n = info.out_shape
        k, c = info.section.get_int("size", 1), info.in_shape[2]
        kernel = blobs["weights"].reshape(oh, ow, n, c, k, k).transpose(0, 1, 4, 5, 3, 2)
        return {p + ("kernel",): kernel, p + ("bias",): blobs["biases"].transpose(1, 2, 0)}
    raise ValueError(f"unknown target kind {target.kind!r}")


def _layer_from_flax(info: LayerInfo, target: Target, flat: dict[tuple[str, ...], Any]) -> dict[str, np.ndarray]:
    """Inverse of _layer_to_flax: reads one layer's blobs (darknet layout) out of flattened variables."""
    p, b = ("params",) + target.path, ("batch_stats",) + target.path

    def get(key: tuple[str, ...]) -> np.ndarray:
        if key not in flat:
            raise MappingError(f"layer {info.index} [{info.section.type}] (cfg line {info.section.line}): "
                               f"variable {'/'.join(key)} is missing")
        return np.asarray(flat[key], np.float32)

    if target.kind == "conv":
        blobs = {"weights": get(p + ("conv", "kernel")).transpose(3, 2, 0, 1)}
        if info.section.get_int("batch_normalize", 0):
            blobs.update(biases=get(p + ("bn", "bias")), scales=get(p + ("bn", "scale")),
                         rolling_mean=get(b + ("bn", "mean")), rolling_variance=get(b + ("bn", "var")))
        else:
            blobs["biases"] = get(p + ("conv", "bias"))
        return blobs
    if target.kind == "dense":
        kernel = get(p + ("kernel",))  # (in, out)
        if target.hwc_flatten is not None:
            h, wd, c = target.hwc_flatten
            w = kernel.reshape(h, wd, c, -1).transpose(3, 2, 0, 1).reshape(kernel.shape[1], -1)
        else:
            w = kernel.T
        return {"biases": get(p + ("bias",)), "weights": w}
    if target.kind == "local":
        oh, ow, n = info.out_shape
        kernel = get(p + ("kernel",))  # (oh, ow, k, k, c, n)
        w = kernel.transpose(0, 1, 5, 4, 2, 3).reshape(oh * ow, n, kernel.shape[4], kernel.shape[2], kernel.shape[3])
        return {"biases": get(p + ("bias",)).transpose(2, 0, 1), "weights": w}
    raise ValueError(f"unknown target kind {target.kind!r}")


@dataclasses.dataclass
class ConversionReport:
    """What a conversion filled in.

    loaded: variable paths ('params/conv0/conv/kernel', ...) set from the file.
    uninitialized: variable paths the file did not cover (they keep their fresh initialization).
    missing_layers: cfg layer indices of weighted layers absent from a partial file.
    floats_used: floats of the file placed into variables (== the file's float count).
    """

    loaded: list[str]
    uninitialized: list[str]
    missing_layers: tuple[int, ...]
    floats_used: int


def blobs_to_variables(sections: tuple[Section, ...], targets: dict[int, Target],
                       blobs: dict[int, dict[str, np.ndarray]], template: dict[str, Any],
                       missing_layers: tuple[int, ...] = ()) -> tuple[dict[str, Any], ConversionReport]:
    """Places darknet blobs into a copy of ``template`` (variables of the target module, or their
    jax.eval_shape structs: leaves not covered by a blob are returned unchanged).

    Raises MappingError naming the layer, cfg line and variable path on a missing path or shape mismatch.
    Variables of the template that no blob covers are kept and listed in the report's ``uninitialized``.
    """
    flat = dict(traverse_util.flatten_dict(dict(template)))  # leaves: arrays or jax.ShapeDtypeStruct
    loaded: dict[tuple[str, ...], None] = {}
    used = 0
    for info in infer_layers(sections):
        if info.index not in blobs:
            continue
        for key, value in _layer_to_flax(info, targets[info.index], blobs[info.index]).items():
            if key not in flat:
                raise MappingError(f"layer {info.index} [{info.section.type}] (cfg line {info.section.line}): "
                                   f"the model has no variable {'/'.join(key)}")
            if flat[key].shape != value.shape:
                raise MappingError(f"layer {info.index} [{info.section.type}] (cfg line {info.section.line}): "
                                   f"variable {'/'.join(key)} has shape {flat[key].shape}, the file gives "
                                   f"{value.shape}")
            flat[key] = np.ascontiguousarray(value, np.float32)
            loaded[key] = None
            used += value.size
    report = ConversionReport(
        loaded=["/".join(k) for k in loaded],
        uninitialized=["/".join(k) for k in flat if k not in loaded],
        missing_layers=tuple(missing_layers), floats_used=used)
    return traverse_util.unflatten_dict(flat), report


def variables_to_blobs(sections: tuple[Section, ...], targets: dict[int, Target],
                       variables: dict[str, Any]) -> dict[int, dict[str, np.ndarray]]:
    """Reads every weighted layer's blobs (darknet layout, float32) out of Flax variables."""
    flat = traverse_util.flatten_dict(dict(variables))
    return {info.index: _layer_from_flax(info, targets[info.index], flat)
            for info in infer_layers(sections) if info.index in targets}


# ----------------------------------------------------------------------------------------------------------
# Hand-written modules <-> cfg sections.


def _sec(type_: str, **options: Any) -> Section:
    return Section(type_, (), 0, "<export>").replace(**options)


def _conv(filters: int, size: int, stride: int = 1, bn: bool = True, activation: str = "leaky") -> Section:
    opts: dict[str, Any] = {"batch_normalize": 1} if bn else {}
    return _sec("convolutional", **opts, filters=filters, size=size, stride=stride, pad=1, activation=activation)


def _net(height: int, width: int) -> Section:
    return _sec("net", batch=1, subdivisions=1, height=height, width=width, channels=3)


def _region(num_classes: int, anchors: tuple[tuple[float, float], ...]) -> Section:
    # Loss settings of yolov2-voc.cfg (darknet reads them; yolojax's loss has its own config).
    return _sec("region", anchors=[v for a in anchors for v in a], bias_match=1, classes=num_classes, coords=4,
                num=len(anchors), softmax=1, jitter=".3", rescore=1, object_scale=5, noobject_scale=1,
                class_scale=1, coord_scale=1, absolute=1, thresh=".6", random=1)


def yolov2_sections(model: YOLOv2 | TinyYOLOv2, height: int = 416, width: int = 416,
                    anchors: tuple[tuple[float, float], ...] | None = None) -> tuple[Section, ...]:
    """The darknet cfg of a YOLOv2 / TinyYOLOv2 module (yolov2-voc.cfg / yolo-voc.2.0.cfg / yolov2-tiny-voc.cfg
    layer for layer, channel counts scaled by ``model.width``)."""
    if anchors is None:
        if model.num_anchors != len(VOC_ANCHORS):
            raise ValueError(f"exporting a YOLOv2 with {model.num_anchors} anchors needs anchors=[(w, h), ...]")
        anchors = VOC_ANCHORS
    anchors = tuple(tuple(float(v) for v in a) for a in anchors)
    if len(anchors) != model.num_anchors:
        raise ValueError(f"{len(anchors)} anchors given for a model with num_anchors={model.num_anchors}")
    sc = lambda f: scale_channels(f, model.width)  # noqa: E731
    bn, out = model.batch_norm, model.num_anchors * (5 + model.num_classes)
    layers: list[Section] = []
    if isinstance(model, TinyYOLOv2):
        for filters, kernel, pool_stride in TINY_YOLOV2_LAYERS:
            layers.append(_conv(sc(filters), kernel, bn=bn))
            if pool_stride is not None:
                layers.append(_sec("maxpool", size=2, stride=pool_stride))
    else:
        if model.reorg_impl != "darknet":
            raise ValueError(f"reorg_impl={model.reorg_impl!r} has no darknet equivalent (darknet's [reorg] is "
                             f"its own permutation); only reorg_impl='darknet' models can be exported")
        for layer in DARKNET19_LAYERS:
            layers.append(_sec("maxpool", size=2, stride=2) if layer == "M" else _conv(sc(layer[0]), layer[1], bn=bn))
        layers += [_conv(sc(1024), 3, bn=bn), _conv(sc(1024), 3, bn=bn)]
        if model.passthrough == "conv64_reorg":
            layers += [_sec("route", layers=-9), _conv(sc(64), 1, bn=bn), _sec("reorg", stride=2),
                       _sec("route", layers="-1,-4")]
        elif model.passthrough == "reorg":
            layers += [_sec("route", layers=-9), _sec("reorg", stride=2), _sec("route", layers="-1,-3")]
        layers.append(_conv(sc(1024), 3, bn=bn))
    layers += [_conv(out, 1, bn=False, activation="linear"), _region(model.num_classes, anchors)]
    return (_net(height, width),) + tuple(layers)


def darknet19_sections(model: Darknet19, height: int = 448, width: int = 448) -> tuple[Section, ...]:
    """The darknet cfg of a Darknet19 module: darknet19_448.cfg layer for layer (channels scaled by
    ``model.width``); with ``num_classes`` set, the classifier conv (1x1, bias, linear), [avgpool] and [softmax]
    follow (the module returns the logits, the softmax's input). The backbone (num_classes None) ends at conv17."""
    sc = lambda f: scale_channels(f, model.width)  # noqa: E731
    layers = [_sec("maxpool", size=2, stride=2) if layer == "M" else _conv(sc(layer[0]), layer[1], bn=model.batch_norm)
              for layer in DARKNET19_LAYERS]
    if model.num_classes is not None:
        layers += [_conv(model.num_classes, 1, bn=False, activation="linear"), _sec("avgpool"),
                   _sec("softmax", groups=1)]
    return (_net(height, width),) + tuple(layers)


def yolov1_sections(model: YOLOv1, height: int = 448, width: int = 448) -> tuple[Section, ...]:
    """The darknet cfg of a YOLOv1 / Fast YOLO module (yolo-v1-paper.cfg / fast-yolo-v1-paper.cfg layout).

    The leading [crop] keeps darknet's layer numbering; it rescales to [-1, 1] (``noadjust=0``) exactly when
    the module does (``crop_rescale``), else ``noadjust=1`` passes [0, 1] images through as the module sees them.
    """
    convs, hidden = V1_ARCHITECTURES[model.architecture]
    sc = lambda f: scale_channels(f, model.width)  # noqa: E731
    layers = [_sec("crop", crop_width=width, crop_height=height, flip=0, noadjust=0 if model.crop_rescale else 1)]
    for layer in convs:
        if layer == "M":
            layers.append(_sec("maxpool", size=2, stride=2))
        else:
            layers.append(_conv(sc(layer[0]), layer[1], layer[2], bn=model.batch_norm))
    for features, activation in hidden:
        layers.append(_sec("connected", output=sc(features), activation=activation))
    layers.append(_sec("dropout", probability=model.dropout_rate))
    layers.append(_sec("connected", activation="linear",
                       output=yolov1_output_size(model.grid_size, model.boxes_per_cell, model.num_classes)))
    layers.append(_sec("detection", classes=model.num_classes, coords=4, rescore=1, side=model.grid_size,
                       num=model.boxes_per_cell, softmax=0, sqrt=1, jitter=".2", object_scale=1,
                       noobject_scale=".5", class_scale=1, coord_scale=5))
    return (_net(height, width),) + tuple(layers)


def yolov1_conv_anchors_sections(model: YOLOv1ConvAnchors, height: int = 416, width: int = 416,
                                 anchors: tuple[tuple[float, float], ...] | None = None) -> tuple[Section, ...]:
    """The darknet cfg of a YOLOv1ConvAnchors module (no official cfg exists): YOLOv1's 24 convolutions
    (channels scaled by ``model.width``) without the maxpool after conv15, the 1x1 linear output conv and a
    [region] layer with ``anchors`` (grid units; default: 1x1 boxes, which only the decoder uses)."""
    anchors = anchors or ((1.0, 1.0),) * model.num_anchors
    if len(anchors) != model.num_anchors:
        raise ValueError(f"{len(anchors)} anchors given for a model with num_anchors={model.num_anchors}")
    layers = [_sec("maxpool", size=2, stride=2) if layer == "M"
              else _conv(scale_channels(layer[0], model.width), layer[1], layer[2], bn=model.batch_norm)
              for layer in YOLOV1_CONV_ANCHORS_CONVS]
    layers += [_conv(model.num_anchors * (5 + model.num_classes), 1, bn=False, activation="linear"),
               _region(model.num_classes, tuple(tuple(float(v) for v in a) for a in anchors))]
    return (_net(height, width),) + tuple(layers)


def module_sections(model: nn.Module, height: int | None = None, width: int | None = None,
                    anchors: tuple[tuple[float, float], ...] | None = None) -> tuple[Section, ...]:
    """The cfg of any supported module (generic network: its own sections, optionally resized)."""
    if isinstance(model, DarknetNetwork):
        sections = model.sections
        if height is not None or width is not None:
            net = sections[0]
            sections = (net.replace(height=height or net.get_int("height"), width=width or net.get_int("width")),
                        ) + tuple(sections[1:])
        return sections
    if isinstance(model, (YOLOv2, TinyYOLOv2)):
        return yolov2_sections(model, height or 416, width or 416, anchors)
    if isinstance(model, YOLOv1):
        return yolov1_sections(model, height or 448, width or 448)
    if isinstance(model, YOLOv1ConvAnchors):
        return yolov1_conv_anchors_sections(model, height or 416, width or 416, anchors)
    if isinstance(model, Darknet19):
        return darknet19_sections(model, height or 448, width or 448)
    raise TypeError(f"cannot export {type(model).__name__}: expected YOLOv2, TinyYOLOv2, YOLOv1, "
                    f"YOLOv1ConvAnchors, Darknet19 or DarknetNetwork")


def module_targets(model: nn.Module, sections: tuple[Section, ...]) -> dict[int, Target]:
    return generic_targets(sections) if isinstance(model, DarknetNetwork) else handwritten_targets(sections)


# ----------------------------------------------------------------------------------------------------------
# Recognizing a cfg as one of the hand-written architectures.


def _signature(sections: tuple[Section, ...]) -> tuple:
    """What determines the computation of a cfg: per layer its type, shapes, wiring, weight counts and the
    options that change the arithmetic. Training-only settings ([net] hyperparameters, loss scales) are out."""
    sig = []
    for info in infer_layers(sections):
        s = info.section
        extra: tuple = ()
        if s.type in ("convolutional", "connected", "local"):
            extra = (s.get_str("activation", "logistic"), s.get_int("batch_normalize", 0))
        elif s.type == "crop":
            extra = (s.get_int("noadjust", 0),)
        elif s.type == "dropout":
            extra = (s.get_float("probability", 0.5),)
        elif s.type == "region":
            extra = (s.get_int("classes", 20), s.get_int("num", 1), s.get_int("coords", 4))
        elif s.type == "detection":
            extra = (s.get_int("classes", 20), s.get_int("num", 1), s.get_int("side", 7), s.get_int("coords", 4))
        sig.append((s.type, info.in_shape, info.out_shape, info.inputs, info.num_weights, info.num_stats) + extra)
    return tuple(sig)


def _candidates(sections: tuple[Section, ...]) -> list[nn.Module]:
    """Hand-written modules that could implement the cfg (checked afterwards by signature)."""
    convs = [s for s in sections[1:] if s.type == "convolutional"]
    last = sections[-1]
    if not convs:
        return []
    f0, bn = convs[0].get_int("filters", 1), bool(convs[0].get_int("batch_normalize", 0))
    out: list[nn.Module] = []
    if last.type == "region":
        kw = dict(num_classes=last.get_int("classes", 20), num_anchors=last.get_int("num", 1), batch_norm=bn,
                  flat_output=True)
        out += [YOLOv2(passthrough=p, width=f0 / 32, **kw) for p in ("conv64_reorg", "reorg", "none")]
        out += [TinyYOLOv2(width=f0 / 16, **kw), YOLOv1ConvAnchors(width=f0 / 64, **kw)]
    elif last.type == "detection":
        dropouts = [s for s in sections[1:] if s.type == "dropout"]
        rate = dropouts[0].get_float("probability", 0.5) if dropouts else 0.5
        crops = [s for s in sections[1:] if s.type == "crop"]
        rescale = bool(crops) and not crops[0].get_int("noadjust", 0)
        for arch, (arch_convs, _) in V1_ARCHITECTURES.items():
            out.append(YOLOv1(architecture=arch, grid_size=last.get_int("side", 7),
                              boxes_per_cell=last.get_int("num", 1), num_classes=last.get_int("classes", 20),
                              batch_norm=bn, dropout_rate=rate, width=f0 / arch_convs[0][0],
                              crop_rescale=rescale))
    return out


def match_handwritten(sections: tuple[Section, ...]) -> nn.Module | None:
    """The hand-written module whose cfg computes exactly what ``sections`` does, or None."""
    net = sections[0]
    h, w = net.get_int("height"), net.get_int("width")
    target = _signature(sections)
    for model in _candidates(sections):
        try:
            anchors = None if isinstance(model, YOLOv1) else ((1.0, 1.0),) * model.num_anchors
            cand = module_sections(model, h, w, anchors)
            if _signature(cand) == target:
                return model
        except (CfgError, ValueError):
            continue
    return None
