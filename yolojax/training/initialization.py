"""Initializing a model before training: an ImageNet backbone from darknet files, fine-tuning from another
yolojax model's variables, and frozen variables.

    variables, report = from_darknet(model, variables, "darknet19_448.conv.23", model_cfg=config.model)
    variables, report = from_variables(variables, source_variables)       # fine-tuning
    tx = freeze(tx, freeze_mask(params, r"/conv([0-9]|1[0-7])/"))        # frozen Darknet-19 trunk

``variables`` are ``{'params': ..., 'batch_stats': ...}`` trees (numpy or jax arrays, or jax.ShapeDtypeStruct
leaves for what need not be computed); returned trees have numpy float32 leaves wherever something was copied
and the given leaves everywhere else. Each call returns an InitReport (``report.lines()`` for a log,
``report.to_json()`` for a file).

Darknet files map by darknet LAYER ORDER, never by name: the k-th weighted layer of the cfg that the file
was written for goes into the model's k-th convolution (the hand-written modules name it ``conv{k}``), after
checking that both hold the same kernel (input and output channels, kernel size, stride, activation, batch
norm). Spatial sizes may differ (YOLO9000's convolutional-with-anchor-boxes network drops a pooling layer of the
classifier it starts from); the report then says which layers run at another resolution than in the cfg.
docs/darknet_formats.md describes the files and the rules.

Variable paths (freeze_mask, keep_frozen_stats, the reports) are the tree's keys joined by "/", starting with
the collection: ``params/conv3/conv/kernel``, ``params/conv3/bn/scale``, ``batch_stats/conv3/bn/mean``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import numpy as np
import optax
from flax import traverse_util

from yolojax.darknet import official_cfg
from yolojax.darknet.cfg import LayerInfo, Section, infer_layers, load_cfg, with_input_size
from yolojax.darknet.mapping import MappingError, Target, blobs_to_variables, module_sections
from yolojax.darknet.weights import read_weights
from yolojax.models.darknet import Darknet19
from yolojax.models.layers import BN_EPSILON
from yolojax.models.yolov1 import YOLOv1, YOLOv1ConvAnchors
from yolojax.models.yolov2 import TinyYOLOv2, YOLOv2

__all__ = ["InitReport", "default_darknet_cfg", "freeze", "freeze_mask", "from_darknet", "from_variables",
           "keep_frozen_stats", "path_of"]

PyTree = Any


@dataclasses.dataclass
class InitReport:
    """What an initialization copied.

    source: the weights file or checkpoint the values came from. cfg: the darknet cfg used ('' for variables).
    method: 'darknet layer order' | 'path and shape'.
    layers: darknet only: one entry per copied cfg layer {'cfg_layer', 'line', 'type', 'module', 'floats'}.
    floats_copied: floats taken from the source (darknet: the file's floats of the copied layers, batch-norm
      terms included, before any folding).
    copied: variable paths set from the source.
    kept_init: variable path -> why it kept its fresh initialization ('not in the weights file',
      'shape (3, 3, 1024, 40) here, (3, 3, 1024, 125) in the source', 'not in the source').
    unused_source: what of the source was not used -> why (darknet: 'cfg layer 23 [convolutional]'; variables:
      source paths).
    notes: anything else worth a log line (header, batch norm folding).
    """

    source: str
    cfg: str
    method: str
    layers: list[dict[str, Any]]
    floats_copied: int
    copied: list[str]
    kept_init: dict[str, str]
    unused_source: dict[str, str]
    notes: list[str]

    def lines(self) -> list[str]:
        """A few human-readable lines for the training log."""
        head = f"init from {self.source}" + (f" (cfg {self.cfg})" if self.cfg else "") + f", by {self.method}:"
        out = [head]
        if self.layers:
            first, last = self.layers[0], self.layers[-1]
            out.append(f"  copied {len(self.layers)} layers (cfg layers {first['cfg_layer']}..{last['cfg_layer']} -> "
                       f"{first['module']}..{last['module']}), {self.floats_copied:,} floats, "
                       f"{len(self.copied)} variables")
        else:
            out.append(f"  copied {len(self.copied)} variables, {self.floats_copied:,} floats")
        modules = _modules(self.kept_init)
        out.append(f"  kept their random init: {len(self.kept_init)} variables"
                   + (f" in {len(modules)} module(s): {', '.join(modules)}" if modules else ""))
        for path, why in self.kept_init.items():
            if why.startswith("shape"):
                out.append(f"    re-initialized {path}: {why}")
        if self.unused_source:
            out.append(f"  not used from the source: {len(self.unused_source)}: "
                       + "; ".join(f"{k} ({v})" for k, v in list(self.unused_source.items())[:8])
                       + (" ..." if len(self.unused_source) > 8 else ""))
        out += [f"  {n}" for n in self.notes]
        return out

    def to_json(self) -> str:
        """The whole report as JSON text (for ``<workdir>/init_report.json``)."""
        return json.dumps(dataclasses.asdict(self), indent=1)


def _modules(paths: dict[str, str]) -> list[str]:
    """Module names (second path component: 'conv18') of variable paths, in order, without repeats."""
    return list(dict.fromkeys(p.split("/")[1] for p in paths if p.count("/") >= 1))


# ----------------------------------------------------------------------------------------------------------
# Darknet files.


def default_darknet_cfg(model: nn.Module) -> str:
    """The official cfg shipped with yolojax whose layers a model's trunk reproduces: darknet19_448.cfg for
    YOLOv2 and Darknet19, extraction.cfg for YOLOv1 and YOLOv1ConvAnchors (its first 20 convolutions). Raises
    ValueError for other models (Fast YOLO, Tiny YOLOv2: no shipped ImageNet cfg has their convolutions)."""
    if isinstance(model, (YOLOv2, Darknet19)):
        return str(official_cfg("darknet19_448.cfg"))
    if isinstance(model, YOLOv1ConvAnchors) or (isinstance(model, YOLOv1) and model.architecture == "yolov1"):
        return str(official_cfg("extraction.cfg"))
    name = model.architecture if isinstance(model, YOLOv1) else type(model).__name__
    raise ValueError(f"{name}: no shipped darknet cfg matches this model's trunk (darknet19_448.cfg fits YOLOv2 "
                     f"and Darknet19, extraction.cfg fits YOLOv1); set init.darknet_cfg to a cfg whose first "
                     f"convolutions are this model's")


def _model_sections(model: nn.Module) -> tuple[Section, ...]:
    """The model's own cfg at its natural input size (416 for YOLOv2-style models, 448 otherwise)."""
    if isinstance(model, YOLOv2):
        # The trunk does not depend on the reorg permutation or the anchors; only export needs them.
        model = model.clone(reorg_impl="darknet", parent=None)
        return module_sections(model, 416, 416, anchors=((1.0, 1.0),) * model.num_anchors)
    if isinstance(model, (TinyYOLOv2, YOLOv1ConvAnchors)):
        return module_sections(model, 416, 416, anchors=((1.0, 1.0),) * model.num_anchors)
    if isinstance(model, (YOLOv1, Darknet19)):
        return module_sections(model, 448, 448)
    raise TypeError(f"cannot initialize {type(model).__name__} from darknet files: expected YOLOv2, TinyYOLOv2, "
                    f"YOLOv1, YOLOv1ConvAnchors or Darknet19")


def _describe(info: LayerInfo) -> str:
    s = info.section
    if s.type != "convolutional":
        return f"[{s.type}]"
    bn = "BN" if s.get_int("batch_normalize", 0) else "bias"
    return (f"{s.get_int('filters', 1)} {s.get_int('size', 1)}x{s.get_int('size', 1)}/{s.get_int('stride', 1)} "
            f"{bn} {s.get_str('activation', 'logistic')}, {info.in_shape} -> {info.out_shape}")


def _fits(cfg_layer: LayerInfo, model_conv: LayerInfo) -> bool:
    """Whether a cfg layer holds the kernel of the model's conv: the same input and output channels, kernel
    size, stride and activation (batch norm may be folded: see _fold_bn). Spatial sizes may differ."""
    a, b = cfg_layer.section, model_conv.section
    if a.type != "convolutional":
        return False
    same = (cfg_layer.in_shape[2] == model_conv.in_shape[2] and cfg_layer.out_shape[2] == model_conv.out_shape[2]
            and all(a.get_int(k, 1) == b.get_int(k, 1) for k in ("size", "stride", "filters"))
            and a.get_str("activation", "logistic") == b.get_str("activation", "logistic"))
    bn_a, bn_b = a.get_int("batch_normalize", 0), b.get_int("batch_normalize", 0)
    return same and (bn_a == bn_b or (bn_a and not bn_b))


def _fold_bn(blobs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch norm folded into the conv, for a model without BN: the same function as the BN layer at inference
    (yolojax's BN: (x - mean) / sqrt(var + BN_EPSILON) * scale + bias)."""
    factor = blobs["scales"] / np.sqrt(blobs["rolling_variance"] + np.float32(BN_EPSILON))
    return {"weights": (blobs["weights"] * factor[:, None, None, None]).astype(np.float32),
            "biases": (blobs["biases"] - blobs["rolling_mean"] * factor).astype(np.float32)}


def from_darknet(model: nn.Module, variables: PyTree, weights_path: str | os.PathLike, *, model_cfg: Any = None,
                 cfg_path: str | os.PathLike | None = None) -> tuple[PyTree, InitReport]:
    """Copies a darknet .weights file (full or partial) into the model's trunk, by layer order.

    Args:
      model: YOLOv2 (any head, passthrough and reorg_impl), Darknet19 (backbone or classifier), YOLOv1
        ('yolov1'; Fast YOLO and Tiny YOLOv2 only with a cfg_path whose convolutions are theirs),
        YOLOv1ConvAnchors. Width 1.0 with the shipped cfgs (darknet's published channel counts); another
        width needs the cfg_path its file was written for.
      variables: the model's {'params', 'batch_stats'} (fresh initialization, or jax.ShapeDtypeStruct leaves).
      weights_path: e.g. darknet19_448.conv.23 (the first 23 layers of darknet19_448.cfg), darknet19_448.weights,
        extraction.conv.weights (the first 20 convolutions of extraction.cfg) or extraction.weights.
      model_cfg: ``config.model``, only used to name fields in error messages.
      cfg_path: the cfg the file was written for; None: default_darknet_cfg(model).
    Returns:
      (variables, report). The k-th weighted layer of the file fills ``conv{k}`` when it computes the same as
      the model's k-th convolution; the file's last weighted layer (an ImageNet classifier) is left out when it
      does not, and reported in ``unused_source``. A cfg layer with batch norm going into a conv without (YOLOv1
      with model.v1.batch_norm=False) is folded into the conv's kernel and bias.
    Raises:
      ValueError (width != 1 without cfg_path, no shipped cfg for the model), FileNotFoundError, CfgError,
      WeightsError (the file does not fit the cfg: floats expected and found; a truncated file), MappingError
      (the cfg does not match the model's trunk: names the cfg layer and the model's conv). All messages are one line.
    """
    weights_path = os.fspath(weights_path)
    width = float(getattr(model, "width", 1.0))
    if width != 1.0 and not cfg_path:
        field = "model.width" if model_cfg is not None else "width"
        cfg_field = "init.darknet_cfg" if model_cfg is not None else "cfg_path"
        raise ValueError(f"{field}={width:g}: the shipped cfgs have darknet's published channel counts, which only "
                         f"a width 1.0 model has; for {weights_path} written for other channel counts, give its "
                         f"cfg as {cfg_field}")
    cfg_path = os.fspath(cfg_path) if cfg_path else default_darknet_cfg(model)
    for what, path in (("weights", weights_path), ("cfg", cfg_path)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"darknet {what} file {path} does not exist")
    file_sections = load_cfg(cfg_path)
    dw = read_weights(weights_path, file_sections)  # at the cfg's own size: what the file was written for
    own = _model_sections(model)
    net = own[0]
    cfg_infos = infer_layers(with_input_size(file_sections, net.get_int("height"), net.get_int("width")))
    model_convs = [i for i in infer_layers(own) if i.section.type == "convolutional"]
    weighted = [i for i in cfg_infos if i.num_weights]
    in_file = [i for i in weighted if i.index in dw.layers]

    blobs, targets, layers, unused, folded, floats, resized = {}, {}, [], {}, 0, 0, []
    for k, info in enumerate(in_file):
        if k < len(model_convs) and _fits(info, model_convs[k]):
            layer_blobs = dw.layers[info.index]
            if "scales" in layer_blobs and not model_convs[k].section.get_int("batch_normalize", 0):
                layer_blobs, folded = _fold_bn(layer_blobs), folded + 1
            blobs[info.index], targets[info.index] = layer_blobs, Target("conv", (f"conv{k}",))
            layers.append(dict(cfg_layer=info.index, line=info.section.line, type=info.section.type,
                               module=f"conv{k}", floats=info.num_weights))
            floats += info.num_weights
            if info.out_shape[:2] != model_convs[k].out_shape[:2]:
                resized.append(f"conv{k} {model_convs[k].out_shape[0]}x{model_convs[k].out_shape[1]} "
                               f"(cfg {info.out_shape[0]}x{info.out_shape[1]})")
            continue
        rest = in_file[k:]
        theirs = (f"the model's conv{k} is {_describe(model_convs[k])}" if k < len(model_convs)
                  else f"the model has only {len(model_convs)} convolutions")
        if k == 0 or rest != [weighted[-1]]:  # only a final classifier layer may be left out
            raise MappingError(f"{cfg_path} does not match {_model_name(model)} layer by layer: cfg layer "
                               f"{info.index} (line {info.section.line}, {_describe(info)}) vs {theirs}; "
                               f"{weights_path} cannot initialize it")
        unused[f"cfg layer {info.index} [{info.section.type}]"] = f"{_describe(info)}; {theirs}"
        break

    new, conversion = blobs_to_variables(with_input_size(file_sections, net.get_int("height"), net.get_int("width")),
                                         targets, blobs, variables)
    header = dw.header
    notes = [f"weights header {header.major}.{header.minor}.{header.revision}, seen {header.seen}; "
             f"{dw.num_floats:,} floats in the file"]
    if dw.missing:
        notes.append(f"partial file: cfg layers {list(dw.missing)} are not in it")
    if folded:
        notes.append(f"batch norm of {folded} cfg layers folded into the kernel and bias (the model has no BN)")
    if resized:
        notes.append(f"{len(resized)} copied layers compute maps of another size than in the cfg at the model's "
                     f"input size (a pooling layer differs): {', '.join(resized)}")
    report = InitReport(source=weights_path, cfg=cfg_path, method="darknet layer order", layers=layers,
                        floats_copied=floats, copied=conversion.loaded,
                        kept_init={p: "not in the weights file" for p in conversion.uninitialized},
                        unused_source=unused, notes=notes)
    return new, report


def _model_name(model: nn.Module) -> str:
    if isinstance(model, YOLOv1):
        return model.architecture
    if isinstance(model, YOLOv2):
        return f"YOLOv2 (passthrough={model.passthrough!r})"
    return type(model).__name__


# ----------------------------------------------------------------------------------------------------------
# Fine-tuning from another model's variables.


def from_variables(variables: PyTree, source_variables: PyTree, *, source: str = "source variables"
                   ) -> tuple[PyTree, InitReport]:
    """Copies every variable of ``source_variables`` whose path and shape agree with one of ``variables``.

    Args:
      variables: the new model's {'params', 'batch_stats'} (fresh initialization).
      source_variables: the trained model's, same layout (e.g. from a checkpoint).
      source: what the source is (a path), for the report and errors.
    Returns:
      (variables, report): copied leaves are numpy arrays of the target's dtype; the others are the given
      leaves. ``report.kept_init`` lists shape mismatches ('re-initialized', e.g. the head of a 20-class model
      moved to 3 classes) and variables the source lacks; ``report.unused_source`` the source's leftovers.
    Raises:
      ValueError (one line) when no variable matches: the source is another architecture.
    """
    flat_t = traverse_util.flatten_dict(flax.core.unfreeze(variables))
    flat_s = traverse_util.flatten_dict(flax.core.unfreeze(source_variables))
    out, copied, kept, floats = {}, [], {}, 0
    for key, leaf in flat_t.items():
        path = "/".join(map(str, key))
        src = flat_s.get(key)
        if src is None:
            kept[path] = "not in the source"
        elif tuple(np.shape(src)) != tuple(leaf.shape):
            kept[path] = f"shape {tuple(leaf.shape)} here, {tuple(np.shape(src))} in the source"
        else:
            leaf = np.asarray(jax.device_get(src), dtype=leaf.dtype)
            copied.append(path)
            floats += leaf.size
        out[key] = leaf
    if not copied:
        example = next(iter(flat_s), None)
        raise ValueError(f"{source}: no variable matches the model by path and shape (another architecture?); "
                         f"source has {len(flat_s)} variables, e.g. {'/'.join(map(str, example or ()))}, the model "
                         f"{len(flat_t)}, e.g. {'/'.join(map(str, next(iter(flat_t), ())))}")
    copied_set = set(copied)
    unused = {}
    for key, value in flat_s.items():
        path = "/".join(map(str, key))
        if path not in copied_set:
            unused[path] = "shape differs" if key in flat_t else "not in the model"
    report = InitReport(source=source, cfg="", method="path and shape", layers=[], floats_copied=floats,
                        copied=copied, kept_init=kept, unused_source=unused, notes=[])
    return traverse_util.unflatten_dict(out), report


# ----------------------------------------------------------------------------------------------------------
# Frozen variables.


def path_of(collection: str, key_path: tuple) -> str:
    """'/'-joined path of a leaf: the collection, then the tree's keys ('params/conv3/bn/scale')."""
    names = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in key_path]
    return "/".join([collection] + [str(n) for n in names])


def _matcher(regex: str) -> Callable[[str], bool]:
    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise ValueError(f"optim.freeze={regex!r} is not a valid regular expression: {e}") from None
    return lambda path: bool(regex) and pattern.search(path) is not None


def freeze_mask(params: PyTree, regex: str) -> PyTree:
    """Bool pytree shaped like ``params``: True = frozen, for leaves whose path ``params/<module>/.../<leaf>``
    (e.g. ``params/conv3/conv/kernel``) contains a match of ``regex`` (``re.search``: unanchored; '' freezes
    nothing). E.g. ``r"/conv([0-9]|1[0-7])/"`` is the Darknet-19 trunk of YOLOv2 (conv0..conv17), and
    ``r"/conv([0-9]|1[0-9])/"`` the extraction trunk of YOLOv1 (conv0..conv19).

    Raises ValueError for an invalid regex.
    """
    match = _matcher(regex)
    return jax.tree_util.tree_map_with_path(lambda kp, _: match(path_of("params", kp)), params)


def freeze(tx: optax.GradientTransformation, mask: PyTree | Callable[[PyTree], PyTree]
           ) -> optax.GradientTransformation:
    """``tx`` for the unfrozen leaves; frozen leaves (mask True) get a zero update and no optimizer state.

    ``optax.multi_transform`` hands ``tx`` only the unfrozen leaves, so nothing in ``tx`` (weight decay,
    momentum, gradient clipping, whose norm then counts only trainable leaves) ever sees a frozen one, and
    ``optax.apply_updates`` leaves it bit-identical. ``mask``: a bool pytree like the params, or a function
    params -> such a pytree (e.g. ``functools.partial(freeze_mask, regex=...)``).
    """
    def labels(params):
        m = mask(params) if callable(mask) else mask
        return jax.tree.map(lambda frozen: "frozen" if frozen else "train", m)

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def keep_frozen_stats(new_batch_stats: PyTree, old_batch_stats: PyTree, regex: str) -> PyTree:
    """``new_batch_stats`` with the leaves whose path ``batch_stats/<module>/.../<leaf>`` (e.g.
    ``batch_stats/conv3/bn/mean``) matches ``regex`` (re.search, as freeze_mask) taken from ``old_batch_stats``.

    Selection happens while tracing (paths are static): inside a jitted train step it costs nothing. A regex
    written without the collection (``r"/conv([0-9]|1[0-7])/"``) freezes parameters and statistics of the same
    layers; the forward pass in training still normalizes with the batch's own statistics.
    """
    match = _matcher(regex)
    return jax.tree_util.tree_map_with_path(
        lambda kp, new, old: old if match(path_of("batch_stats", kp)) else new, new_batch_stats, old_batch_stats)
