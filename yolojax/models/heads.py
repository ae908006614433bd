"""Model families: the one place that says how a model's raw outputs are trained, decoded and thresholded.

Two families:

* ``"v1"`` (YOLOv1, Fast YOLO): darknet's ``[detection]`` layer. Outputs ``[N, S*S*(5B+C)]`` in darknet's flat
  layout (class probabilities of all cells, then confidences, then boxes); loss ``losses.yolov1_loss``;
  decoder ``postprocess.decode_yolov1``; published thresholds score 0.001 / NMS 0.5.
* ``"v2"`` (YOLOv2, Tiny YOLOv2): darknet's ``[region]`` layer. Outputs ``[N, S, S, A, 5+C]`` (tx, ty, tw, th, to,
  class logits) or darknet's flat channel order ``[N, S, S, A*(5+C)]``; loss ``losses.yolov2_loss``; decoder
  ``postprocess.decode_yolov2``; published thresholds score 0.005 / NMS 0.45.

Which model belongs to which family is ``yolojax.models.MODEL_FAMILIES``. A :class:`Head` holds everything
that turns outputs into boxes (family, classes, anchors or the v1 grid); it is built from a training config
(:meth:`Head.from_config`) or from a darknet cfg (``yolojax.darknet.head_from_cfg``). Training, the notebook API,
evaluation, detection, the demo and export all take their loss, decoder and thresholds from here.
"""
from __future__ import annotations

import ast
import dataclasses
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import numpy as np

from yolojax.models import MODEL_FAMILIES
from yolojax.ops import losses, postprocess
from yolojax.ops.images import to_float
from yolojax.ops.targets import check_location


@dataclasses.dataclass(frozen=True)
class Family:
    """Per-family constants: the published evaluation thresholds and the output layout (for docs/logs)."""

    name: str
    eval_score_threshold: float
    nms_iou_threshold: float
    output_layout: str


FAMILIES: dict[str, Family] = {
    "v1": Family("v1", eval_score_threshold=0.001, nms_iou_threshold=0.5,
                 output_layout="[N, S*S*(5B+C)] darknet detection layout"),
    "v2": Family("v2", eval_score_threshold=0.005, nms_iou_threshold=0.45,
                 output_layout="[N, S, S, A, 5+C] (tx, ty, tw, th, to, class logits)"),
}
# Drawing and `detect.py` keep only confident boxes; evaluation uses the family's published threshold.
DRAW_SCORE_THRESHOLD = 0.3


def family_of(model_name: str) -> str:
    """'v1' or 'v2' for a ``config.model.name``; ValueError naming the field for an unknown model."""
    if model_name not in MODEL_FAMILIES:
        raise ValueError(f"config.model.name={model_name!r}: expected one of {tuple(MODEL_FAMILIES)}")
    return MODEL_FAMILIES[model_name]


def anchors_of(model_cfg: Any) -> np.ndarray:
    """``config.model.anchors`` as float32 ``[A, 2]`` (w, h) in units of the output grid's cells (darknet's
    convention: the same numbers on every input size; 32-px cells for the stride-32 YOLOv2 models).

    ValueError naming the field and its value unless it is A = ``config.model.v2.num_anchors`` pairs of finite
    positive numbers (a flat list, triples or a negative size would otherwise be reshaped into other anchors); a
    string is read as a Python literal, except "auto" (``configs/custom.py``), which only training resolves."""
    raw, num = model_cfg.anchors, model_cfg.v2.num_anchors
    if isinstance(raw, str):  # "auto" (fitted when training starts), or a literal given on a command line
        if raw.strip() == "auto":
            raise ValueError("config.model.anchors='auto': the anchors are fitted when training starts and saved in "
                             "the workdir's config.json; use that config, or give the anchors")
        try:
            raw = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            raise ValueError(f"config.model.anchors={raw!r}: expected ((w, h), ...) or 'auto'") from None
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"config.model.v2.num_anchors={num!r}: expected an integer >= 1")
    rows = list(raw) if isinstance(raw, (list, tuple)) else []
    lengths = sorted({len(r) if isinstance(r, (list, tuple)) else 1 for r in rows})
    if not rows or lengths != [2]:
        shape = (f"{len(rows)} entries of {' or '.join(map(str, lengths))} value(s)" if rows
                 else f"a {type(raw).__name__}")
        raise ValueError(f"config.model.anchors={raw!r}: expected {num} (w, h) pairs [A, 2] in grid cells, got "
                         f"{shape}")
    try:
        anchors = np.asarray(rows, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"config.model.anchors={raw!r}: expected numbers") from None
    if not (np.isfinite(anchors).all() and (anchors > 0).all()):
        raise ValueError(f"config.model.anchors={raw!r}: every width and height must be a positive number")
    if anchors.shape[0] != num:
        raise ValueError(f"config.model.anchors has {anchors.shape[0]} (w, h) pairs but config.model.v2.num_anchors="
                         f"{num}")
    return anchors.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Head:
    """Everything that turns raw outputs into boxes and scores, and targets into a loss.

    Attributes:
      family: 'v1' or 'v2'.
      num_classes: C.
      anchors: v2: ``((w, h), ...)`` in grid cells; None for v1.
      grid_size, boxes_per_cell, sqrt: v1 layout (S, B, square-root-encoded w/h).
      location: v2 location parameterization, 'direct' (darknet: sigmoid offsets in the cell) or 'offset'
        (region-proposal offsets scaled by the anchor; docs/location_parameterization.md).
    """

    family: str
    num_classes: int
    anchors: tuple[tuple[float, float], ...] | None = None
    grid_size: int = 7
    boxes_per_cell: int = 2
    sqrt: bool = True
    location: str = "direct"

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"Head.family must be one of {tuple(FAMILIES)}, got {self.family!r}")
        if self.family == "v2" and not self.anchors:
            raise ValueError("a YOLOv2-family head needs anchors [A, 2] (grid cells)")
        if self.family == "v2" and not (np.isfinite(self.anchors_array).all() and (self.anchors_array > 0).all()):
            raise ValueError(f"anchors {self.anchors!r}: every width and height must be a positive number")

        check_location(self.location, "config.model.v2.location")

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Any) -> "Head":
        """From a complete experiment config (``config.model``, and ``config.loss.sqrt`` for v1)."""
        model = config.model
        family = family_of(model.name)
        if family == "v2":
            return cls("v2", int(model.num_classes), anchors=tuple(map(tuple, anchors_of(model).tolist())),
                       location=str(model.v2.location))
        return cls("v1", int(model.num_classes), grid_size=int(model.v1.grid_size),
                   boxes_per_cell=int(model.v1.boxes_per_cell), sqrt=bool(config.loss.sqrt))

    # ------------------------------------------------------------------------------------ behaviour
    @property
    def anchors_array(self) -> np.ndarray | None:
        """Anchors as float32 ``[A, 2]`` (v2), None for v1."""
        return None if self.anchors is None else np.asarray(self.anchors, np.float32).reshape(-1, 2)

    def thresholds(self, purpose: str = "eval") -> dict[str, float]:
        """{'score_threshold', 'iou_threshold'}: the family's published evaluation values (purpose='eval')
        or :data:`DRAW_SCORE_THRESHOLD` for drawing (purpose='draw'), with the family's NMS IoU."""
        if purpose not in ("eval", "draw"):
            raise ValueError(f"thresholds: purpose must be 'eval' or 'draw', got {purpose!r}")
        fam = FAMILIES[self.family]
        score = fam.eval_score_threshold if purpose == "eval" else DRAW_SCORE_THRESHOLD
        return {"score_threshold": score, "iou_threshold": fam.nms_iou_threshold}

    def decode(self, outputs):
        """Raw outputs -> (boxes ``[B, N, 4]`` normalized xyxy of the network input, scores ``[B, N, C]``).
        Jit-able; v2 accepts darknet's flat channel order ``[B, S, S, A*(5+C)]`` as well."""
        if self.family == "v1":
            return postprocess.decode_yolov1(outputs, grid_size=self.grid_size, boxes_per_cell=self.boxes_per_cell,
                                             num_classes=self.num_classes, sqrt=self.sqrt)
        anchors = self.anchors_array
        if outputs.ndim == 4:  # darknet channel order: anchor-major, then (tx, ty, tw, th, to, classes)
            outputs = outputs.reshape(outputs.shape[:3] + (len(anchors), -1))
        return postprocess.decode_yolov2(outputs, anchors, location=self.location)

    def detect(self, outputs, *, score_threshold: float, iou_threshold: float, max_detections: int):
        """Decode + fixed-size per-class NMS: ``postprocess.batched_nms``'s dict (boxes ``[B, K, 4]`` normalized
        xyxy of the network input, scores ``[B, K]``, classes ``[B, K]`` (-1 pad), count ``[B]``). Jit-able."""


        boxes, scores = self.decode(jnp.asarray(outputs, jnp.float32))
        return postprocess.batched_nms(boxes, scores, score_threshold=score_threshold, iou_threshold=iou_threshold,
                                       max_detections=max_detections)

    def forward_detect(self, apply_fn: Callable, variables: Any, images, *, score_threshold: float,
                       iou_threshold: float, max_detections: int):
        """The one forward-then-detect: images uint8 ``[B, H, W, 3]`` (or float32 in [0, 1]) ->
        ``apply_fn(variables, images, train=False)`` -> :meth:`detect`. Used by training's evaluation step, the
        ``Detector`` and the StableHLO export. Jit-able."""
        outputs = apply_fn(variables, to_float(images), train=False)
        return self.detect(outputs, score_threshold=score_threshold, iou_threshold=iou_threshold,
                           max_detections=max_detections)

    def loss_fn(self, loss_options: Mapping[str, Any]) -> Callable:
        """``loss(outputs, boxes, classes, mask, seen) -> (total, parts)`` with ``loss_options`` (``config.loss``)
        passed as keywords, so a misspelled option is a TypeError naming it. For v1, ``sqrt`` is both a loss
        option and part of the head (the decoder must agree): the head's value is used."""
        options = dict(loss_options)
        if self.family == "v1":
            options["sqrt"] = self.sqrt

            def loss(outputs, boxes, classes, mask, seen):
                del seen
                return losses.yolov1_loss(outputs, boxes, classes, mask, grid_size=self.grid_size,
                                          boxes_per_cell=self.boxes_per_cell, num_classes=self.num_classes, **options)
            return loss
        anchors = self.anchors_array

        def loss(outputs, boxes, classes, mask, seen):
            return losses.yolov2_loss(outputs, boxes, classes, mask, anchors=anchors, seen=seen, location=self.location,
                                      **options)
        return loss
