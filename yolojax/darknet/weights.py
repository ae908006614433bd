"""Darknet ``.weights`` files: header plus float32 blobs per layer, in cfg order (docs/darknet_formats.md).

Header: int32 major, minor, revision, then ``seen`` (images seen in training) as int64 when
``major*10 + minor >= 2`` (and both < 1000), else int32 -- so 20 or 16 bytes. Then, per layer with weights:

  convolutional: biases[n], (scales[n], rolling_mean[n], rolling_variance[n] if batch_normalize),
                 weights[n, c, kh, kw]
  connected:     biases[out], weights[out, in] ([in, out] when major or minor > 1000), then BN terms if any
  local:         biases[n, out_h, out_w], weights[out_h*out_w, n, c, kh, kw]

Blobs here keep darknet's layout; yolojax/darknet/mapping.py permutes them into Flax variables.
A file may stop at a layer boundary (e.g. ``darknet19_448.conv.23`` covers the first 23 layers): the
missing layers are reported, not invented. A file that ends inside a layer or runs past the last layer is
rejected with the number of floats expected and found.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from yolojax.darknet.cfg import LayerInfo, Section, infer_layers

WEIGHTED_TYPES = ("convolutional", "connected", "local")


class WeightsError(ValueError):
    """A .weights file that does not fit its cfg; the message gives floats expected and found."""


@dataclasses.dataclass(frozen=True)
class WeightsHeader:
    """Darknet weights header. ``seen`` is written as int64 when major*10+minor >= 2, else int32."""

    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def seen_is_64bit(self) -> bool:
        return self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def num_bytes(self) -> int:
        return 20 if self.seen_is_64bit else 16

    @property
    def transposed(self) -> bool:
        """Darknet stores connected weights as [in, out] in files from versions with major/minor > 1000."""
        return self.major > 1000 or self.minor > 1000

    def to_bytes(self) -> bytes:
        ints = np.array([self.major, self.minor, self.revision], "<i4").tobytes()
        return ints + np.array([self.seen], "<i8" if self.seen_is_64bit else "<i4").tobytes()


@dataclasses.dataclass
class DarknetWeights:
    """The contents of a .weights file, split per layer.

    layers: layer index -> {blob name: float32 array in darknet layout}; only layers present in the file.
    missing: indices of weighted layers the (partial) file does not cover, in order.
    num_floats: floats after the header (all of them land in ``layers``).
    """

    header: WeightsHeader
    layers: dict[int, dict[str, np.ndarray]]
    missing: tuple[int, ...]
    num_floats: int


def layer_blobs(info: LayerInfo, transposed: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    """Blob names and darknet-layout shapes of one layer, in file order ([] for parameter-free layers)."""
    s = info.section
    h, w, c = info.in_shape
    if s.type == "convolutional":
        n, k = s.get_int("filters", 1), s.get_int("size", 1)
        bn = [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
        return [("biases", (n,))] + (bn if s.get_int("batch_normalize", 0) else []) + [("weights", (n, c, k, k))]
    if s.type == "connected":
        n, n_in = s.get_int("output", 1), h * w * c
        bn = [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
        weights = ("weights", (n_in, n) if transposed else (n, n_in))
        return [("biases", (n,)), weights] + (bn if s.get_int("batch_normalize", 0) else [])
    if s.type == "local":
        oh, ow, n = info.out_shape
        k = s.get_int("size", 1)
        return [("biases", (n, oh, ow)), ("weights", (oh * ow, n, c, k, k))]
    return []


def _describe(info: LayerInfo) -> str:
    s = info.section
    return f"layer {info.index} [{s.type}] at {s.source}:{s.line}"


def read_header(buf: bytes, path: str) -> WeightsHeader:
    if len(buf) < 16:
        raise WeightsError(f"{path}: {len(buf)} bytes is too short for a darknet weights header (16 or 20)")
    major, minor, revision = (int(v) for v in np.frombuffer(buf[:12], "<i4"))
    header = WeightsHeader(major, minor, revision, 0)
    if len(buf) < header.num_bytes:
        raise WeightsError(f"{path}: {len(buf)} bytes is too short for a version {major}.{minor} header "
                           f"({header.num_bytes} bytes)")
    seen = int(np.frombuffer(buf[12:header.num_bytes], "<i8" if header.seen_is_64bit else "<i4")[0])
    return dataclasses.replace(header, seen=seen)


def read_weights(path: str | os.PathLike, sections: tuple[Section, ...]) -> DarknetWeights:
    """Reads a .weights file against its cfg.

    Args:
      path: the .weights file.
      sections: the parsed cfg (yolojax.darknet.cfg.parse_cfg); shapes come from its [net] size, which only
        matters for [connected]/[local] layers.
    Returns:
      DarknetWeights with every float of the file assigned to a layer blob.
    Raises:
      WeightsError when the file ends inside a layer or holds more floats than the cfg needs, with the
      number of floats expected and found.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        buf = f.read()
    header = read_header(buf, path)
    body = buf[header.num_bytes:]
    if len(body) % 4:
        raise WeightsError(f"{path}: {len(body)} bytes after the {header.num_bytes}-byte header is not a whole "
                           f"number of float32 values")
    floats = np.frombuffer(body, "<f4")
    infos = [i for i in infer_layers(sections) if i.num_weights]
    expected_total = sum(i.num_weights for i in infos)
    layers: dict[int, dict[str, np.ndarray]] = {}
    offset = 0
    for pos, info in enumerate(infos):
        if offset == len(floats):  # a partial file that stops at a layer boundary
            missing = tuple(i.index for i in infos[pos:])
            return DarknetWeights(header, layers, missing, len(floats))
        if offset + info.num_weights > len(floats):
            raise WeightsError(
                f"{path} does not fit {sections[0].source}: it ends inside {_describe(info)}: expected "
                f"{offset + info.num_weights} floats up to the end of this layer ({expected_total} for the "
                f"whole cfg), found {len(floats)}")
        blobs = {}
        for name, shape in layer_blobs(info, header.transposed):
            size = int(np.prod(shape))
            # copy: np.frombuffer views are read-only and would pin the whole file in memory.
            blobs[name] = floats[offset:offset + size].reshape(shape).copy()
            offset += size
        if header.transposed and info.section.type == "connected":
            blobs["weights"] = np.ascontiguousarray(blobs["weights"].T)
        layers[info.index] = blobs
    if offset != len(floats):
        raise WeightsError(
            f"{path} does not fit {sections[0].source}: expected {expected_total} floats after the "
            f"{header.num_bytes}-byte header, found {len(floats)} ({len(floats) - expected_total} too many)")
    return DarknetWeights(header, layers, (), len(floats))


def weights_to_bytes(sections: tuple[Section, ...], layers: dict[int, dict[str, np.ndarray]],
                     header: WeightsHeader = WeightsHeader()) -> bytes:
    """Serializes per-layer blobs (darknet layout) into .weights bytes; every weighted layer must be given
    with exactly the shapes the cfg implies (connected weights always as [out, in]; written transposed
    when the header asks for it)."""
    chunks = [header.to_bytes()]
    for info in infer_layers(sections):
        if not info.num_weights:
            continue
        if info.index not in layers:
            raise WeightsError(f"no blobs given for {_describe(info)}")
        blobs = layers[info.index]
        for name, shape in layer_blobs(info):
            if name not in blobs:
                raise WeightsError(f"{_describe(info)}: blob '{name}' is missing")
            arr = np.asarray(blobs[name], np.float32)
            if arr.shape != shape:
                raise WeightsError(f"{_describe(info)}: blob '{name}' has shape {arr.shape}, cfg needs {shape}")
            if name == "weights" and header.transposed and info.section.type == "connected":
                arr = arr.T
            chunks.append(np.ascontiguousarray(arr, "<f4").tobytes())
    return b"".join(chunks)


def write_weights(path: str | os.PathLike, sections: tuple[Section, ...],
                  layers: dict[int, dict[str, np.ndarray]], header: WeightsHeader = WeightsHeader()) -> None:
    """Writes a .weights file (see weights_to_bytes)."""
    data = weights_to_bytes(sections, layers, header)
    with open(path, "wb") as f:
        f.write(data)


def random_blobs(sections: tuple[Section, ...], seed: int = 0,
                 weight_scale: float = 1.0) -> dict[int, dict[str, np.ndarray]]:
    """Random darknet-layout blobs for every weighted layer, scaled so activations stay O(1).

    Conv/connected/local weights ~ N(0, weight_scale * 2 / fan_in) (He init, so a deep leaky network neither
    explodes nor vanishes), biases and BN means small, BN scales ~ U(0.5, 1.5), variances ~ U(0.5, 1.5)
    (well away from 0, where darknet's and cuDNN's epsilon conventions would differ). For tests and demos.
    """
    rng = np.random.default_rng(seed)
    out: dict[int, dict[str, np.ndarray]] = {}
    for info in infer_layers(sections):
        if not info.num_weights:
            continue
        blobs = {}
        for name, shape in layer_blobs(info):
            if name == "weights":
                fan_in = int(np.prod(shape[-3:])) if info.section.type != "connected" else shape[1]
                arr = rng.normal(0.0, np.sqrt(weight_scale * 2.0 / fan_in), shape)
            elif name in ("scales", "rolling_variance"):
                arr = rng.uniform(0.5, 1.5, shape)
            else:  # biases, rolling_mean
                arr = rng.normal(0.0, 0.1, shape)
            blobs[name] = arr.astype(np.float32)
        out[info.index] = blobs
    return out
