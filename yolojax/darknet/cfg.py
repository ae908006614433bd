"""Darknet ``.cfg`` parsing, writing and shape inference.

A cfg is a list of ``[section]`` blocks of ``key=value`` lines; the first block is ``[net]`` and every other
block is one layer, numbered from 0 in file order (darknet's own numbering, used by ``[route] layers=-9``).
Parsing follows darknet's ``read_cfg``: whitespace anywhere in a line is dropped, ``#`` and ``;`` start a
comment line. Every error names the file, the line and the offending key or value.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable

# Layer types the generic network runs, with darknet's aliases mapped to one canonical name.
LAYER_ALIASES = {
    "net": "net", "network": "net",
    "convolutional": "convolutional", "conv": "convolutional",
    "maxpool": "maxpool", "max": "maxpool",
    "avgpool": "avgpool", "avg": "avgpool",
    "route": "route",
    "reorg": "reorg",
    "connected": "connected", "conn": "connected",
    "dropout": "dropout",
    "region": "region",
    "detection": "detection",
    "crop": "crop",
    "local": "local",
    "softmax": "softmax", "soft": "softmax",
    "cost": "cost",
}
# Activations the network runs (the YOLOv1/v2 cfgs use only these two; slope 0.1 for leaky).
SUPPORTED_ACTIVATIONS = ("leaky", "linear")


class CfgError(ValueError):
    """A malformed or unsupported darknet cfg; the message names file, line and key."""


@dataclasses.dataclass(frozen=True)
class Section:
    """One ``[type]`` block of a cfg.

    Attributes:
      type: canonical layer type (see LAYER_ALIASES), e.g. 'convolutional'.
      options: tuple of (key, value-string) pairs in file order (a tuple so the section is hashable and can
        be a Flax module attribute).
      line: 1-based line number of the ``[type]`` header in the source.
      source: file name (or '<string>') for error messages.
    """

    type: str
    options: tuple[tuple[str, str], ...]
    line: int = 0
    source: str = "<string>"

    def where(self, key: str | None = None) -> str:
        """Location for error messages: '[type] at file:line', plus the key if given."""
        what = f"[{self.type}] at {self.source}:{self.line}"
        return f"{what}, key '{key}'" if key else what

    def has(self, key: str) -> bool:
        return any(k == key for k, _ in self.options)

    def get_str(self, key: str, default: str | None = None) -> str:
        """The raw value of ``key``; the last occurrence wins (as in darknet's option list)."""
        for k, v in reversed(self.options):
            if k == key:
                return v
        if default is None:
            raise CfgError(f"{self.where(key)}: required key is missing")
        return default

    def _get_number(self, key: str, default, parse, what: str):
        if not self.has(key):
            if default is None:
                raise CfgError(f"{self.where(key)}: required key is missing")
            return default
        value = self.get_str(key)
        try:
            return parse(value)
        except ValueError:
            raise CfgError(f"{self.where(key)}: expected {what}, got '{value}'") from None

    def get_int(self, key: str, default: int | None = None) -> int:
        # darknet reads ints with atoi, which would take '1.0' as 1; be strict and say so.
        return self._get_number(key, default, int, "an integer")

    def get_float(self, key: str, default: float | None = None) -> float:
        return self._get_number(key, default, float, "a number")

    def get_ints(self, key: str) -> tuple[int, ...]:
        value = self.get_str(key)
        try:
            return tuple(int(v) for v in value.split(",") if v != "")
        except ValueError:
            raise CfgError(f"{self.where(key)}: expected comma-separated integers, got '{value}'") from None

    def get_floats(self, key: str) -> tuple[float, ...]:
        value = self.get_str(key)
        try:
            return tuple(float(v) for v in value.split(",") if v != "")
        except ValueError:
            raise CfgError(f"{self.where(key)}: expected comma-separated numbers, got '{value}'") from None

    def replace(self, **updates: object) -> "Section":
        """A copy with the given keys set (existing keys keep their position; new keys are appended)."""
        updates_str = {k: _format_value(v) for k, v in updates.items()}
        options = [(k, updates_str.pop(k) if k in updates_str else v) for k, v in self.options]
        options += list(updates_str.items())
        return dataclasses.replace(self, options=tuple(options))


def _format_value(v: object) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_format_value(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def parse_cfg(text: str, source: str = "<string>") -> tuple[Section, ...]:
    """Parses cfg text into sections, checking that layer types are supported.

    Args:
      text: the cfg file contents.
      source: a name for error messages (the file path).
    Returns:
      Sections in file order; the first is ``[net]``.
    Raises:
      CfgError naming the line for an unsupported layer type, a line outside a section, a line without
      '=', or a cfg that does not start with [net].
    """
    sections: list[Section] = []
    current: tuple[str, int] | None = None
    options: list[tuple[str, str]] = []

    def flush() -> None:
        if current is not None:
            sections.append(Section(current[0], tuple(options), current[1], source))

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())  # darknet's strip(): drops every whitespace character
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise CfgError(f"{source}:{lineno}: malformed section header '{raw.strip()}'")
            flush()
            name = line[1:-1].lower()
            if name not in LAYER_ALIASES:
                raise CfgError(
                    f"{source}:{lineno}: unsupported layer type [{name}]; supported: "
                    f"{sorted(set(LAYER_ALIASES.values()))}")
            current, options = (LAYER_ALIASES[name], lineno), []
            continue
        if current is None:
            raise CfgError(f"{source}:{lineno}: option '{raw.strip()}' appears before any [section]")
        if "=" not in line:
            raise CfgError(f"{source}:{lineno}: expected 'key=value', got '{raw.strip()}'")
        key, value = line.split("=", 1)
        options.append((key, value))
    flush()
    if not sections or sections[0].type != "net":
        raise CfgError(f"{source}: the first section must be [net] (darknet requires it)")
    for s in sections[1:]:
        if s.type == "net":
            raise CfgError(f"{source}:{s.line}: [net] may only appear as the first section")
    return tuple(sections)


def load_cfg(path: str | os.PathLike) -> tuple[Section, ...]:
    """Reads and parses a cfg file (see parse_cfg)."""
    with open(path, "r", encoding="utf-8") as f:
        return parse_cfg(f.read(), source=os.fspath(path))


def format_cfg(sections: Iterable[Section]) -> str:
    """Writes sections back as cfg text (one blank line between sections; deterministic)."""
    blocks = []
    for s in sections:
        lines = [f"[{s.type}]"] + [f"{k}={v}" for k, v in s.options]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def with_input_size(sections: tuple[Section, ...], height: int, width: int) -> tuple[Section, ...]:
    """A copy of the cfg with ``[net] height``/``width`` replaced (the same cfg at another input size)."""
    return (sections[0].replace(height=height, width=width),) + tuple(sections[1:])


# ---------------------------------------------------------------------------------------------------------
# Shape inference: darknet's make_*_layer output-size rules, layer by layer.


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Static facts about one layer of a cfg at a given input size.

    in_shape / out_shape are (height, width, channels); for connected layers out is (1, 1, outputs).
    num_weights is the number of floats the layer reads from a .weights file (0 for parameter-free layers);
    num_stats is the part of it that are batch-norm running statistics (mean and variance).
    """

    index: int
    section: Section
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    inputs: tuple[int, ...]  # absolute indices of the layers feeding this one (-1 = network input)
    num_weights: int = 0
    num_stats: int = 0


def conv_padding(s: Section) -> int:
    """Darknet convolution padding: ``pad=1`` means size//2, else the explicit ``padding`` (default 0)."""
    size = s.get_int("size", 1)
    return size // 2 if s.get_int("pad", 0) else s.get_int("padding", 0)


def maxpool_params(s: Section) -> tuple[int, int, int]:
    """(size, stride, padding) of a maxpool; darknet's defaults stride 1, size=stride, padding=size-1."""
    stride = s.get_int("stride", 1)
    size = s.get_int("size", stride)
    return size, stride, s.get_int("padding", size - 1)


def _check_activation(s: Section) -> None:
    act = s.get_str("activation", "logistic")
    if act not in SUPPORTED_ACTIVATIONS:
        raise CfgError(f"{s.where('activation')}: unsupported activation '{act}'; "
                       f"supported: {list(SUPPORTED_ACTIVATIONS)}")


def _route_inputs(s: Section, index: int) -> tuple[int, ...]:
    refs = s.get_ints("layers")
    if not refs:
        raise CfgError(f"{s.where('layers')}: no layers given")
    absolute = tuple(r + index if r < 0 else r for r in refs)
    for r, a in zip(refs, absolute):
        if not 0 <= a < index:
            raise CfgError(f"{s.where('layers')}: layer {r} of route layer {index} refers to layer {a}, "
                           f"which is not an earlier layer")
    return absolute


def infer_layers(sections: tuple[Section, ...]) -> tuple[LayerInfo, ...]:
    """Shapes and weight counts of every layer (sections[1:]) at the cfg's [net] height/width/channels.

    Raises CfgError naming the layer and line when a shape rule fails (e.g. reorg of an odd size).
    """
    net = sections[0]
    shape = (net.get_int("height", 0), net.get_int("width", 0), net.get_int("channels", 0))
    if min(shape) <= 0:
        raise CfgError(f"{net.where()}: height, width and channels must be positive, got {shape}")
    infos: list[LayerInfo] = []
    for index, s in enumerate(sections[1:]):
        inputs = (index - 1,)
        h, w, c = shape
        n_w = n_stats = 0
        if s.type == "convolutional":
            _check_activation(s)
            n, size, stride = s.get_int("filters", 1), s.get_int("size", 1), s.get_int("stride", 1)
            if s.get_int("groups", 1) != 1:
                raise CfgError(f"{s.where('groups')}: grouped convolution is not supported")
            pad = conv_padding(s)
            if pad != size // 2:
                # yolojax.models.layers.ConvBN pads size//2 on every side (darknet pad=1), the only padding
                # the YOLO cfgs use.
                raise CfgError(f"{s.where('padding')}: padding {pad} is not supported (only size//2 = "
                               f"{size // 2}, i.e. pad=1)")
            out = ((h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1, n)
            bn = s.get_int("batch_normalize", 0)
            n_w = n + c * n * size * size + (3 * n if bn else 0)
            n_stats = 2 * n if bn else 0
        elif s.type == "maxpool":
            size, stride, padding = maxpool_params(s)
            out = ((h + padding - size) // stride + 1, (w + padding - size) // stride + 1, c)
        elif s.type == "avgpool":
            out = (1, 1, c)  # darknet's avgpool is global
        elif s.type == "route":
            inputs = _route_inputs(s, index)
            shapes = [infos[i].out_shape for i in inputs]
            if len({sh[:2] for sh in shapes}) != 1:
                raise CfgError(f"{s.where('layers')}: routed layers {inputs} have different spatial sizes "
                               f"{[sh[:2] for sh in shapes]}")
            out = (shapes[0][0], shapes[0][1], sum(sh[2] for sh in shapes))
        elif s.type == "reorg":
            stride = s.get_int("stride", 1)
            if s.get_int("reverse", 0) or s.get_int("flatten", 0) or s.get_int("extra", 0):
                raise CfgError(f"{s.where()}: only the forward reorg (no reverse/flatten/extra) is supported")
            if h % stride or w % stride:
                raise CfgError(f"{s.where('stride')}: input {h}x{w} is not divisible by stride {stride}")
            out = (h // stride, w // stride, c * stride * stride)
        elif s.type == "connected":
            _check_activation(s)
            n = s.get_int("output", 1)
            bn = s.get_int("batch_normalize", 0)
            if bn:
                raise CfgError(f"{s.where('batch_normalize')}: batch norm in [connected] is not supported")
            n_w = n + h * w * c * n + (3 * n if bn else 0)
            n_stats = 2 * n if bn else 0
            out = (1, 1, n)
        elif s.type == "local":
            _check_activation(s)
            n, size, stride = s.get_int("filters", 1), s.get_int("size", 1), s.get_int("stride", 1)
            pad = s.get_int("pad", 0)
            # darknet local_out_height: (h - (pad ? 1 : size)) / stride + 1, im2col padding = pad.
            out_h = (h - (1 if pad else size)) // stride + 1
            out_w = (w - (1 if pad else size)) // stride + 1
            if pad and size != 2 * pad + 1:
                raise CfgError(f"{s.where('size')}: local layer with pad=1 needs size 3 (darknet pads by 1 "
                               f"pixel), got {size}")
            out = (out_h, out_w, n)
            n_w = out_h * out_w * n * (1 + c * size * size)
        elif s.type == "crop":
            ch, cw = s.get_int("crop_height", 1), s.get_int("crop_width", 1)
            if ch > h or cw > w:
                raise CfgError(f"{s.where()}: crop {ch}x{cw} is larger than its input {h}x{w}")
            out = (ch, cw, c)
        else:  # dropout, region, detection, softmax, cost: same shape, no weights
            out = shape
        if min(out) <= 0:
            raise CfgError(f"{s.where()}: output shape {out} is empty for input {shape}")
        infos.append(LayerInfo(index, s, shape, out, inputs, n_w, n_stats))
        shape = out
    return tuple(infos)


def output_layer_index(sections: tuple[Section, ...]) -> int:
    """Index of the layer whose output is the network's raw output: the layer before a final
    [region]/[detection] (and any trailing [cost]), else the last layer."""
    idx = len(sections) - 2
    while idx >= 0 and sections[idx + 1].type in ("region", "detection", "cost"):
        idx -= 1
    if idx < 0:
        raise CfgError(f"{sections[0].source}: the cfg has no layer before its [region]/[detection]")
    return idx


def count_weights(sections: tuple[Section, ...]) -> tuple[int, int]:
    """(trainable values, batch-norm statistics) that a full .weights file holds for this cfg."""
    infos = infer_layers(sections)
    total = sum(i.num_weights for i in infos)
    stats = sum(i.num_stats for i in infos)
    return total - stats, stats
