"""Export a Detector to ONNX and to a serialized ``jax.export`` (StableHLO) artifact, and run the exports.

    import yolojax
    from yolojax.inference import export
    det = yolojax.load("runs/quickstart")                   # or yolojax.load("x.cfg", "x.weights")
    export.export_onnx(det, "model.onnx")                    # raw outputs, checked with onnxruntime
    export.export_onnx(det, "model_nms.onnx", with_nms=True) # + decode and per-class NMS in the graph
    export.export_stablehlo(det, "model.jaxexport")          # batch-polymorphic StableHLO (+ .json beside it)
    fast = export.load_exported("model.onnx")                # a Detector running onnxruntime
    found = fast.predict("dog.jpg")                          # the same dicts as det.predict

How the ONNX graph is made (docs/export.md has the measurements behind the choice): it is written node by
node with ``onnx.helper`` from the model's darknet layer list (``yolojax.darknet``'s cfg sections of the
module, the same description the darknet writer uses) and its variables in darknet layout: conv with the
batch norm folded in, LeakyRelu, MaxPool with darknet's padding, Concat for [route], Gemm for [connected].
Darknet's [reorg] is written as Reshape -> Transpose -> Reshape, the exact permutation darknet computes (not
ONNX's SpaceToDepth/DepthToSpace, which compute another function; a model trained with
``reorg_impl='space_to_depth'`` gets SpaceToDepth, which is what it computes). Every export is compared with
the JAX model on an image before it is written (``check_image``).

Tensors: the ONNX input ``images`` is ``[batch, H, W, 3]`` float32 RGB in [0, 1] (NHWC, as ``model.apply``);
the raw output ``outputs`` has the model's own output shape (YOLOv2 ``[batch, S, S, A, 5+C]`` or darknet's
flat ``[batch, S, S, A·(5+C)]``; YOLOv1 ``[batch, S·S·(5B+C)]``). With ``with_nms`` the graph takes
``score_threshold`` [1] float32, ``iou_threshold`` [1] float32 and ``max_per_class`` [1] int64 as extra inputs
and also returns ``boxes`` [batch, N, 4] normalized xyxy of the network input, ``scores`` [batch, N, C],
``selected`` [K, 3] int64 (image, class, box) from ONNX NonMaxSuppression (kept when score > threshold,
suppressed when IoU > threshold: darknet's rules) and ``selected_scores`` [K].
Detector metadata (family, input size, class names, anchors, v1 layout, letterbox) travels in the ONNX
``metadata_props`` under the key ``yolojax`` and, for StableHLO, in ``<path>.json``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from yolojax.darknet import mapping
from yolojax.darknet.cfg import conv_padding, infer_layers, maxpool_params, output_layer_index
from yolojax.inference.detector import Detector, load_image
from yolojax.models import YOLOv2, heads
from yolojax.models.layers import BN_EPSILON, LEAKY_SLOPE, darknet_pool_padding

METADATA_KEY = "yolojax"
METADATA_VERSION = 1
DEFAULT_OPSET = 17
# Agreement required between an export and the JAX model: max |export - jax| / max |jax| over the raw output.
CHECK_TOLERANCE = 1e-4
STABLEHLO_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # the lowering platforms of jax.export


class ExportError(ValueError):
    """A model, layer or file that cannot be exported or loaded; the message names it."""


# ------------------------------------------------------------------------------------------- metadata
def detector_metadata(detector, *, outputs: str = "raw", output_shape: Sequence[int] | None = None,
                      extra: dict | None = None) -> dict:
    """JSON-ready facts a Detector needs besides its network: family, input_hw, class_names, anchors (grid
    units, v2), grid_size / boxes_per_cell / sqrt (v1), letterbox, description; ``outputs`` ('raw' | 'nms')
    and ``output_shape`` (raw output without the batch axis)."""
    meta = {
        "format_version": METADATA_VERSION, "family": detector.family,
        "input_hw": [int(v) for v in detector.input_hw], "class_names": list(detector.class_names),
        "anchors": None if detector.anchors is None else np.asarray(detector.anchors, np.float64).tolist(),
        "grid_size": int(detector.head.grid_size), "boxes_per_cell": int(detector.head.boxes_per_cell),
        "sqrt": bool(detector.head.sqrt), "location": detector.head.location, "letterbox": bool(detector.letterbox),
        "description": detector.description,
        "outputs": outputs, "output_shape": None if output_shape is None else [int(v) for v in output_shape],
    }
    meta.update(extra or {})
    return meta


def _detector_from_metadata(meta: dict, model, source: str):
    if meta.get("format_version") != METADATA_VERSION:
        raise ExportError(f"{source}: yolojax metadata format_version {meta.get('format_version')!r}, "
                          f"expected {METADATA_VERSION}")
    anchors = None if meta["anchors"] is None else tuple(map(tuple, np.asarray(meta["anchors"], np.float64).tolist()))
    head = heads.Head(meta["family"], len(meta["class_names"]), anchors=anchors, grid_size=meta["grid_size"],
                      boxes_per_cell=meta["boxes_per_cell"], sqrt=meta["sqrt"],
                      location=meta.get("location", "direct"))
    return Detector(
        model=model, variables={}, head=head, input_hw=tuple(meta["input_hw"]),
        class_names=tuple(meta["class_names"]),
        letterbox=meta["letterbox"], description=f"{meta.get('description', '')} [export {source}]")


def raw_output_shape(detector, batch: int = 1) -> tuple[int, ...]:
    """Shape of ``detector.model.apply(variables, images [batch, h, w, 3])`` (computed abstractly)."""
    h, w = detector.input_hw
    out = jax.eval_shape(lambda v, x: detector.model.apply(v, x, train=False), detector.variables,
                         jax.ShapeDtypeStruct((batch, h, w, 3), jnp.float32))
    return tuple(out.shape)


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (the agreement measure of every export check)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise ExportError(f"export output shape {got.shape} differs from the model's {want.shape}")
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def check_image(detector, batch: int = 2) -> np.ndarray:
    """A natural photo (matplotlib's sample ``grace_hopper.jpg``) as network input ``[batch, h, w, 3]``
    float32 in [0, 1], resized as the detector preprocesses; image i>0 is the photo mirrored/flipped."""
    from matplotlib import cbook


    photo = load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    variants = [photo, photo[:, ::-1], photo[::-1], photo[::-1, ::-1]]
    return np.stack([detector.preprocess(np.ascontiguousarray(variants[i % 4])) for i in range(batch)]
                    ).astype(np.float32) / 255.0


@functools.lru_cache(maxsize=16)
def _jitted_forward(model):
    return jax.jit(lambda v, x: model.apply(v, x, train=False))


def jax_raw_outputs(detector, images: np.ndarray) -> np.ndarray:
    """The JAX model's raw outputs for network inputs ``images [B, h, w, 3]`` float32 in [0, 1] (jitted once
    per model and input shape)."""
    return np.asarray(_jitted_forward(detector.model)(detector.variables, images))


# ------------------------------------------------------------------------------------------ ONNX graph
class _Graph:
    """A growing ONNX graph: unique value names, float32 initializers, nodes in order."""

    def __init__(self):
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray, hint: str = "const") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def ints(self, values: Sequence[int], hint: str = "shape") -> str:
        return self.const(np.asarray(values, np.int64), hint)

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, num_outputs: int = 1,
           **attrs) -> Any:
        from onnx import helper

        outputs = [self.name(hint or op_type.lower()) for _ in range(num_outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=outputs[0], **attrs))
        return outputs[0] if num_outputs == 1 else outputs


def _module_sections(detector):
    """(darknet sections of the detector's module at its input size, the op its [reorg] layers compute
    ('darknet' | 'space_to_depth'), darknet-layout blobs per weighted layer index)."""
    model = detector.model
    reorg_impl = "darknet"
    if isinstance(model, YOLOv2) and model.reorg_impl != "darknet":
        # Same layers; only the passthrough permutation differs (written below as what the model computes).
        reorg_impl, model = model.reorg_impl, model.clone(reorg_impl="darknet")
    h, w = detector.input_hw
    anchors = None if detector.anchors is None else tuple(map(tuple, np.asarray(detector.anchors, float)))
    try:
        sections = mapping.module_sections(model, h, w, anchors if detector.family == "v2" else None)
    except (TypeError, ValueError) as e:
        raise ExportError(f"cannot export {type(detector.model).__name__}: {e}") from None

    blobs = mapping.variables_to_blobs(sections, mapping.module_targets(model, sections),
                                       jax.device_get(dict(detector.variables)))
    return sections, reorg_impl, blobs


def _bn_epsilon(model) -> float:
    return float(getattr(model, "bn_epsilon", BN_EPSILON))


def _activation(g: _Graph, x: str, name: str, where: str) -> str:
    if name == "leaky":
        return g.op("LeakyRelu", [x], alpha=LEAKY_SLOPE)
    if name == "linear":
        return x
    raise ExportError(f"{where}: activation {name!r} has no ONNX translation here")


def _network_nodes(g: _Graph, detector, images: str) -> tuple[str, int]:
    """Adds the network (NHWC ``images`` -> raw output in NCHW, or [N, D] after a connected layer) to ``g``.
    Returns (output value name, its rank)."""
    sections, reorg_impl, blobs = _module_sections(detector)
    eps = _bn_epsilon(detector.model)
    infos = infer_layers(sections)
    last = output_layer_index(sections)
    x = g.op("Transpose", [images], "nchw", perm=[0, 3, 1, 2])
    rank = 4
    outputs: list[tuple[str, int]] = []
    for info in infos[:last + 1]:
        s, t = info.section, info.section.type
        where = f"layer {info.index} [{t}]"
        h, w, c = info.in_shape
        if t in ("convolutional", "maxpool", "reorg", "crop") and rank != 4:
            raise ExportError(f"{where}: follows a flattening layer; not supported")
        if t == "convolutional":
            b = blobs[info.index]
            k, stride, pad = s.get_int("size", 1), s.get_int("stride", 1), conv_padding(s)
            weights, bias = b["weights"].astype(np.float64), b["biases"].astype(np.float64)
            if s.get_int("batch_normalize", 0):  # fold y = scale (x - mean) / sqrt(var + eps) + bias
                gain = b["scales"] / np.sqrt(b["rolling_variance"].astype(np.float64) + eps)
                weights = weights * gain[:, None, None, None]
                bias = bias - b["rolling_mean"] * gain
            x = g.op("Conv", [x, g.const(weights.astype(np.float32), "w"), g.const(bias.astype(np.float32), "b")],
                     "conv", kernel_shape=[k, k], strides=[stride, stride], pads=[pad, pad, pad, pad])
            x = _activation(g, x, s.get_str("activation", "logistic"), where)
        elif t == "maxpool":
            size, stride, padding = maxpool_params(s)
            (top, bottom), (left, right) = (darknet_pool_padding(h, size, stride, padding),
                                            darknet_pool_padding(w, size, stride, padding))
            x = g.op("MaxPool", [x], "pool", kernel_shape=[size, size], strides=[stride, stride],
                     pads=[top, left, bottom, right])
        elif t == "avgpool":
            x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
            rank = 2
        elif t == "route":
            parts = [outputs[i] for i in info.inputs]
            if any(r != 4 for _, r in parts):
                raise ExportError(f"{where}: routes a flattened layer; not supported")
            x = parts[0][0] if len(parts) == 1 else g.op("Concat", [p for p, _ in parts], "route", axis=1)
        elif t == "reorg":
            st = s.get_int("stride", 1)
            if reorg_impl == "space_to_depth":
                x = g.op("SpaceToDepth", [x], "space_to_depth", blocksize=st)
            else:
                # darknet reorg_cpu(forward=0): the NCHW buffer read as (C/s², H·s, W·s), space-to-depth of
                # that, the result buffer read as (s²C, H/s, W/s). In index form, with c2 = C/s²:
                # [n, c2, j, dy, i, dx] -> [n, dy, dx, c2, j, i].
                x = g.op("Reshape", [x, g.ints([0, c // (st * st), h, st, w, st])], "reorg_in")
                x = g.op("Transpose", [x], "reorg_perm", perm=[0, 3, 5, 1, 2, 4])
                x = g.op("Reshape", [x, g.ints([0, c * st * st, h // st, w // st])], "reorg")
        elif t == "connected":
            b = blobs[info.index]
            if rank == 4:  # darknet flattens C·H·W, the NCHW memory order; the blobs are in that order
                x = g.op("Flatten", [x], axis=1)
                rank = 2
            x = g.op("Gemm", [x, g.const(b["weights"], "w"), g.const(b["biases"], "b")], "fc", transB=1)
            x = _activation(g, x, s.get_str("activation", "logistic"), where)
        elif t == "crop":
            ch, cw = s.get_int("crop_height", 1), s.get_int("crop_width", 1)
            dh, dw = (h - ch) // 2, (w - cw) // 2
            if (ch, cw) != (h, w):
                x = g.op("Slice", [x, g.ints([dh, dw]), g.ints([dh + ch, dw + cw]), g.ints([2, 3])], "crop")
            if not s.get_int("noadjust", 0):  # darknet's test-time crop rescales to [-1, 1]
                x = g.op("Sub", [g.op("Mul", [x, g.const(np.float32(2.0), "two")]),
                                 g.const(np.float32(1.0), "one")], "rescale")
        elif t == "softmax":
            shape = g.op("Shape", [x])
            x = g.op("Reshape", [g.op("Softmax", [g.op("Flatten", [x], axis=1)], axis=1), shape], "softmax")
        elif t in ("dropout", "region", "detection", "cost"):
            pass  # identity at inference
        else:
            raise ExportError(f"{where}: layer type {t!r} has no ONNX translation here")
        outputs.append((x, rank))
    return outputs[last]


def _decode_nodes(g: _Graph, detector, raw_nchw: str, rank: int) -> tuple[str, str]:
    """Decode (postprocess.decode_yolov2 / decode_yolov1, the same arithmetic) on the network output.
    Returns (boxes [N, M, 4] normalized xyxy, scores [N, M, C])."""
    if detector.family == "v2" and detector.head.location != "direct":
        raise ExportError(f"decode + NMS in the graph supports darknet's direct location form only, not "
                          f"{detector.head.location!r}: export the raw outputs (with_nms=False)")
    h, w = detector.input_hw
    c = detector.num_classes
    if detector.family == "v2":
        if rank != 4:
            raise ExportError("a YOLOv2 detector's network output must be a [N, A·(5+C), S, S] map")
        a = len(detector.anchors)
        sh, sw = h // 32, w // 32
        # [N, A·(5+C), S, S] -> [N, S, S, A, 5+C] -> [N, S·S·A, 5+C], rows ordered (row, column, anchor).
        t = g.op("Transpose", [raw_nchw], perm=[0, 2, 3, 1])
        t = g.op("Reshape", [t, g.ints([0, sh * sw * a, 5 + c])], "cells")
        tx, ty, tw, th, to, logits = g.op("Split", [t, g.ints([1, 1, 1, 1, 1, c], "split")], "part",
                                          num_outputs=6, axis=2)
        rows, cols, anchor = np.meshgrid(np.arange(sh), np.arange(sw), np.arange(a), indexing="ij")
        anchors = np.asarray(detector.anchors, np.float32)
        col = g.const(cols.reshape(1, -1, 1).astype(np.float32), "col")
        row = g.const(rows.reshape(1, -1, 1).astype(np.float32), "row")
        aw = g.const(anchors[anchor.reshape(-1), 0].reshape(1, -1, 1), "anchor_w")
        ah = g.const(anchors[anchor.reshape(-1), 1].reshape(1, -1, 1), "anchor_h")
        cx = g.op("Div", [g.op("Add", [g.op("Sigmoid", [tx]), col]), g.const(np.float32(sw), "sw")], "cx")
        cy = g.op("Div", [g.op("Add", [g.op("Sigmoid", [ty]), row]), g.const(np.float32(sh), "sh")], "cy")
        bw = g.op("Div", [g.op("Mul", [aw, g.op("Exp", [tw])]), g.const(np.float32(sw), "sw")], "bw")
        bh = g.op("Div", [g.op("Mul", [ah, g.op("Exp", [th])]), g.const(np.float32(sh), "sh")], "bh")
        scores = g.op("Mul", [g.op("Sigmoid", [to]), g.op("Softmax", [logits], axis=2)], "scores")
    else:
        s, nb = detector.head.grid_size, detector.head.boxes_per_cell
        raw = raw_nchw if rank == 2 else g.op("Flatten", [raw_nchw], axis=1)
        probs = g.op("Reshape", [g.op("Slice", [raw, g.ints([0]), g.ints([s * s * c]), g.ints([1])]),
                                 g.ints([0, s * s, 1, c])], "probs")
        conf = g.op("Reshape", [g.op("Slice", [raw, g.ints([s * s * c]), g.ints([s * s * (c + nb)]), g.ints([1])]),
                                g.ints([0, s * s, nb, 1])], "conf")
        coords = g.op("Reshape", [g.op("Slice", [raw, g.ints([s * s * (c + nb)]), g.ints([s * s * (c + 5 * nb)]),
                                                 g.ints([1])]), g.ints([0, s * s * nb, 4])], "coords")
        x_off, y_off, bw, bh = g.op("Split", [coords, g.ints([1, 1, 1, 1], "split")], "part", num_outputs=4, axis=2)
        cells = np.repeat(np.arange(s * s), nb)
        col = g.const((cells % s).reshape(1, -1, 1).astype(np.float32), "col")
        row = g.const((cells // s).reshape(1, -1, 1).astype(np.float32), "row")
        cx = g.op("Div", [g.op("Add", [x_off, col]), g.const(np.float32(s), "s")], "cx")
        cy = g.op("Div", [g.op("Add", [y_off, row]), g.const(np.float32(s), "s")], "cy")
        if detector.head.sqrt:
            bw, bh = g.op("Mul", [bw, bw], "bw"), g.op("Mul", [bh, bh], "bh")
        scores = g.op("Reshape", [g.op("Mul", [conf, probs]), g.ints([0, s * s * nb, c])], "scores")
    half = g.const(np.float32(2.0), "two")
    hw, hh = g.op("Div", [bw, half]), g.op("Div", [bh, half])
    boxes = g.op("Concat", [g.op("Sub", [cx, hw]), g.op("Sub", [cy, hh]), g.op("Add", [cx, hw]),
                            g.op("Add", [cy, hh])], "boxes", axis=2)
    return boxes, scores


def to_onnx(detector, *, with_nms: bool = False, opset: int = DEFAULT_OPSET):
    """The Detector's network as an ``onnx.ModelProto`` (module docstring: inputs, outputs, metadata).

    Raises ExportError for a module or layer without a translation (the generic network's [local] layer).
    """
    import onnx
    from onnx import TensorProto, helper

    h, w = detector.input_hw
    out_shape = raw_output_shape(detector)
    g = _Graph()
    net_out, rank = _network_nodes(g, detector, "images")
    raw = g.op("Transpose", [net_out], perm=[0, 2, 3, 1]) if rank == 4 else net_out
    g.nodes.append(helper.make_node("Reshape", [raw, g.ints([0, *out_shape[1:]])], ["outputs"], name="outputs"))
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", h, w, 3])]
    outputs = [helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", *out_shape[1:]])]
    if with_nms:
        boxes, scores = _decode_nodes(g, detector, net_out, rank)
        m, c = _num_boxes(detector), detector.num_classes
        g.nodes.append(helper.make_node("Identity", [boxes], ["boxes"], name="boxes"))
        g.nodes.append(helper.make_node("Identity", [scores], ["scores"], name="scores"))
        per_class = g.op("Transpose", ["scores"], "scores_per_class", perm=[0, 2, 1])  # [N, C, M]
        g.nodes.append(helper.make_node("NonMaxSuppression", ["boxes", per_class, "max_per_class", "iou_threshold",
                                                              "score_threshold"], ["selected"], name="selected",
                                        center_point_box=0))
        g.nodes.append(helper.make_node("GatherND", [per_class, "selected"], ["selected_scores"],
                                        name="selected_scores"))
        inputs += [helper.make_tensor_value_info("score_threshold", TensorProto.FLOAT, [1]),
                   helper.make_tensor_value_info("iou_threshold", TensorProto.FLOAT, [1]),
                   helper.make_tensor_value_info("max_per_class", TensorProto.INT64, [1])]
        outputs += [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", m, 4]),
                    helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", m, c]),
                    helper.make_tensor_value_info("selected", TensorProto.INT64, ["num_selected", 3]),
                    helper.make_tensor_value_info("selected_scores", TensorProto.FLOAT, ["num_selected"])]
    graph = helper.make_graph(g.nodes, "yolojax", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="yolojax")
    meta = detector_metadata(detector, outputs="nms" if with_nms else "raw", output_shape=out_shape[1:])
    helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(model, full_check=True)
    return model


def _num_boxes(detector) -> int:
    h, w = detector.input_hw
    if detector.family == "v2":
        return (h // 32) * (w // 32) * len(detector.anchors)
    return detector.head.grid_size ** 2 * detector.head.boxes_per_cell


def onnx_session(model_or_path, *, threads: int | None = None, optimize: bool = True):
    """An onnxruntime CPU InferenceSession (all graph optimizations unless ``optimize=False``; ``threads``
    intra-op threads, default onnxruntime's: one per core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads:
        opts.intra_op_num_threads = int(threads)
    source = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") \
        else os.fspath(model_or_path)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


@dataclasses.dataclass
class ExportResult:
    """What an export wrote and how well it agrees with the JAX model on ``check_image``."""

    path: str
    rel_error: float  # max |export - jax| / max |jax| over the raw output; nan when not checked (not lowered for cpu)
    bytes: int


def _check(path: str, got: np.ndarray, want: np.ndarray, tolerance: float) -> float:
    err = rel_error(got, want)
    if not err <= tolerance:
        raise ExportError(f"{path}: export differs from the JAX model: relative error {err:.2e} > {tolerance:.0e}")
    return err


def _write_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file, so a failed export leaves no partial file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def export_onnx(detector, path: str | os.PathLike, *, with_nms: bool = False, opset: int = DEFAULT_OPSET,
                tolerance: float = CHECK_TOLERANCE, images: np.ndarray | None = None) -> ExportResult:
    """Writes the detector as ONNX after checking onnxruntime's raw outputs against the JAX model on
    ``images`` (default ``check_image``: a natural photo, batch 2). Raises ExportError (and writes nothing)
    when they differ by more than ``tolerance`` (relative error, ``rel_error``)."""
    path = os.fspath(path)
    model = to_onnx(detector, with_nms=with_nms, opset=opset)
    images = check_image(detector) if images is None else np.asarray(images, np.float32)
    feeds = {"images": images}
    if with_nms:
        feeds.update(score_threshold=np.array([0.5], np.float32), iou_threshold=np.array([0.45], np.float32),
                     max_per_class=np.array([10], np.int64))
    got = onnx_session(model).run(["outputs"], feeds)[0]
    err = _check(path, got, jax_raw_outputs(detector, images), tolerance)
    data = model.SerializeToString()
    _write_atomic(path, data)
    return ExportResult(path, err, len(data))


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The yolojax metadata of an exported ONNX file (ExportError if it has none)."""
    import onnx
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others for a file that is not ONNX
        raise ExportError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(f"{path}: no '{METADATA_KEY}' metadata (not exported by yolojax.inference.export)")
    return json.loads(props[METADATA_KEY])


class _OnnxModel:
    """Stands in for the Flax module of a Detector: ``apply(variables, images, train=False)`` runs the
    onnxruntime session (through ``jax.pure_callback``, so it also works inside the Detector's jit)."""

    def __init__(self, session, output_shape: Sequence[int]):
        self.session, self.output_shape = session, tuple(output_shape)

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(["outputs"], {"images": np.ascontiguousarray(images, np.float32)})[0]

    def apply(self, variables, images, train: bool = False):
        del variables, train
        out = jax.ShapeDtypeStruct((images.shape[0], *self.output_shape), np.float32)
        return jax.pure_callback(self.run, out, images, vmap_method="sequential")


def load_onnx(path: str | os.PathLike, *, threads: int | None = None):
    """A Detector (yolojax.inference.api) whose network is the raw-output ONNX export at ``path``, run by onnxruntime.

    ``predict`` / ``predict_iter`` give the same dicts as the original detector (decode and NMS are the same
    JAX code). Raises ExportError for an export with NMS in the graph (load the raw one).
    """
    meta = read_onnx_metadata(path)
    if meta.get("outputs") != "raw":
        raise ExportError(f"{path}: exported with decode + NMS in the graph; a Detector needs the raw export "
                          f"(run this one with onnxruntime: inputs images, score_threshold, iou_threshold, "
                          f"max_per_class)")
    return _detector_from_metadata(meta, _OnnxModel(onnx_session(path, threads=threads), meta["output_shape"]),
                                   os.fspath(path))


# --------------------------------------------------------------------------------------------- StableHLO
def check_platforms(platforms: Sequence[str] | str) -> tuple[str, ...]:
    """StableHLO lowering platforms (a sequence, or one comma-separated string) as a tuple; ExportError naming
    any that is not one of :data:`STABLEHLO_PLATFORMS`, or none given."""
    given = [p.strip() for p in (platforms.split(",") if isinstance(platforms, str) else platforms)]
    unknown = [p for p in given if p not in STABLEHLO_PLATFORMS]
    if unknown or not given or "" in given:
        raise ExportError(f"platforms={','.join(given)!r}: unknown platform(s) {unknown or given}; expected some of "
                          f"{', '.join(STABLEHLO_PLATFORMS)}")
    return tuple(dict.fromkeys(given))


def export_stablehlo(detector, path: str | os.PathLike, *, with_nms: bool = False,
                     score_threshold: float | None = None, iou_threshold: float | None = None,
                     max_detections: int = 100, platforms: Sequence[str] = ("cpu",),
                     tolerance: float = CHECK_TOLERANCE, images: np.ndarray | None = None) -> ExportResult:
    """Writes a serialized ``jax.export.Exported`` (StableHLO with the weights as constants) to ``path`` and
    the detector metadata to ``path + '.json'``.

    The function takes ``images [b, h, w, 3]`` float32 in [0, 1] with a symbolic batch ``b`` and returns the
    raw output (``[b, ...]``, the model's shape) or, with ``with_nms``, the dict of
    ``postprocess.batched_nms`` ({"boxes" [b, K, 4], "scores" [b, K], "classes" [b, K], "count" [b]}) at the
    given thresholds (default: the detector's drawing thresholds). Reload it with
    ``jax.export.deserialize(bytearray(open(path, 'rb').read())).call(images)``: no yolojax or Flax code is
    needed. ``platforms``: lowering targets (e.g. ("cpu", "cuda"); ExportError naming any other before anything
    is written); the export is checked here when "cpu" is one of them (``rel_error`` nan otherwise).
    """
    platforms = check_platforms(platforms)

    path = os.fspath(path)
    h, w = detector.input_hw
    variables = jax.device_get(detector.variables)  # closed over: constants of the exported module
    thresholds = detector.default_thresholds("draw")
    score_threshold = thresholds["score_threshold"] if score_threshold is None else float(score_threshold)
    iou_threshold = thresholds["iou_threshold"] if iou_threshold is None else float(iou_threshold)

    def forward(images):
        return detector.model.apply(variables, images, train=False).astype(jnp.float32)

    def detect(images):
        return detector.head.forward_detect(detector.model.apply, variables, images,
                                            score_threshold=score_threshold, iou_threshold=iou_threshold,
                                            max_detections=max_detections)

    (batch,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, h, w, 3), jnp.float32)
    exported = jax.export.export(jax.jit(detect if with_nms else forward), platforms=tuple(platforms))(spec)
    images = check_image(detector) if images is None else np.asarray(images, np.float32)
    if "cpu" in platforms:
        got = exported.call(images)
        if with_nms:  # same function, same compiler: the detections agree and the raw outputs are checked
            got, want = np.asarray(got["scores"]), np.asarray(jax.jit(detect)(images)["scores"])
        else:
            want = jax_raw_outputs(detector, images)
        err = _check(path, np.asarray(got), np.asarray(want), tolerance)
    else:
        err = float("nan")
    extra = {"platforms": list(platforms)}
    if with_nms:
        extra.update(score_threshold=score_threshold, iou_threshold=iou_threshold, max_detections=max_detections)
    meta = detector_metadata(detector, outputs="nms" if with_nms else "raw",
                             output_shape=raw_output_shape(detector)[1:], extra=extra)
    data = bytes(exported.serialize())
    _write_atomic(path, data)
    _write_atomic(path + ".json", json.dumps(meta, indent=1).encode())
    return ExportResult(path, err, len(data))


class _ExportedModel:
    """Stands in for the Flax module of a Detector: ``apply`` calls a deserialized jax.export function."""

    def __init__(self, exported):
        self.exported = exported

    def apply(self, variables, images, train: bool = False):
        del variables, train
        return self.exported.call(images)


def load_stablehlo(path: str | os.PathLike):
    """A Detector whose network is the raw-output StableHLO export at ``path`` (metadata from
    ``path + '.json'``)."""
    path = os.fspath(path)
    for p in (path, path + ".json"):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"StableHLO export file not found: {p}")
    with open(path + ".json") as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as e:
            raise ExportError(f"{path}.json: not valid JSON ({e})") from None
    if meta.get("outputs") != "raw":
        raise ExportError(f"{path}: exported with NMS; a Detector needs the raw export")
    with open(path, "rb") as f:
        try:
            exported = jax.export.deserialize(bytearray(f.read()))
        except Exception as e:  # flatbuffer / version errors
            raise ExportError(f"{path}: not a readable jax.export artifact ({type(e).__name__}: {e})") from None
    return _detector_from_metadata(meta, _ExportedModel(exported), path)


def load_exported(path: str | os.PathLike, *, threads: int | None = None):
    """A Detector from an export: ``.onnx`` (onnxruntime) or anything else as a StableHLO artifact."""
    if os.fspath(path).endswith(".onnx"):
        return load_onnx(path, threads=threads)
    return load_stablehlo(path)
