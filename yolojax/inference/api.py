"""Notebook API: load a trained detector, run it on images, draw the detections.

    import yolojax
    det = yolojax.load("runs/quickstart")                        # a training workdir (latest checkpoint)
    det = yolojax.load("runs/quickstart/checkpoints/2000")       # one checkpoint of it
    det = yolojax.load("runs/quickstart", "raw")                 # its raw weights (default: EMA when kept)
    det = yolojax.load("yolov2-voc.cfg", "yolov2-voc.weights")   # darknet files
    found = det.predict("dog.jpg")                               # one image -> one dict; a list -> a list
    yolojax.save_image(yolojax.draw(yolojax.load_image("dog.jpg"), found), "dog_boxes.jpg")

Box formats in a detections dict (one image):
  "boxes": float32 [K, 4] normalized xyxy of the original image (clipped to it),
  "boxes_px": float32 [K, 4] pixel xyxy of the original image (continuous coordinates, x_px = x * width;
    devkit result files use ``evaluation.normalized_to_devkit_px`` instead: 1-based, clipped),
  "scores": float32 [K] (objectness x class probability), "classes": int32 [K], "class_names": list[str] [K],
  "image_size": (height, width) of the original image. Sorted by descending score; K <= max_detections.

Images are resized to the network input exactly as evaluation does (``data.augment.eval_preprocess``: plain
resize, or letterbox when the training config says so). Inference is jitted once per batch shape: batches are
padded to a fixed size so a folder of images compiles once.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from yolojax import darknet
from yolojax.config import files as config_files
from yolojax.config.classes import VOC_CLASSES
from yolojax.data import formats, pipeline, sources
from yolojax.evaluation import loop as eval_loop
from yolojax.evaluation import plots
from yolojax.inference import export
from yolojax.inference.detector import (  # noqa: F401  (the notebook API re-exports them)
    Detector,
    ImageLike,
    as_uint8_image,
    check_batch_size,
    detections_to_json,
    load_image,
    save_image,
)
from yolojax.models import build_model, heads
from yolojax.training import checkpoints
from yolojax.training import ema as ema_lib


class LoadError(ValueError):
    """A checkpoint, config or darknet file that cannot give a detector; the message names file and problem."""


# -------------------------------------------------------------------------------------------- drawing
def draw(image: ImageLike, detections: dict, *, score_threshold: float = 0.0, line_width: int = 2) -> np.ndarray:
    """Draws boxes with "class score" labels on a copy of ``image`` (``yolojax.evaluation.plots``).

    Args:
      image: the original image (uint8 [H, W, 3] RGB, path or PIL image) the detections were made on.
      detections: one image's dict from ``Detector.predict`` (uses "boxes" normalized xyxy, "scores",
        "classes", "class_names").
      score_threshold: draw only detections scoring above this.
    Returns:
      uint8 [H, W, 3] RGB.
    """
    return plots.draw_detections(as_uint8_image(image), detections, score_threshold=score_threshold,
                                   line_width=line_width)


# -------------------------------------------------------------------------------------------- loading
def workdir_config_path(path: str | os.PathLike) -> str:
    """``<workdir>/config.json`` of a workdir or of one of its checkpoints (LoadError if there is none)."""
    workdir, _ = _resolve_checkpoint(os.fspath(path))
    config_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(config_path):
        raise LoadError(f"{workdir}: no config.json (written by training); pass config=...")
    return config_path


def load_config(spec: Any):
    """A locked ConfigDict from a ConfigDict/dict, a ``config.json`` written by training, or a config file
    ``configs/x.py[:variant]`` (``yolojax.config.files.load``, the one loader); LoadError names the file."""
    try:
        return config_files.load(spec)
    except (OSError, ValueError) as e:
        raise LoadError(str(e)) from None


def _resolve_checkpoint(path: str | os.PathLike) -> tuple[str, int | None]:
    """A workdir (latest checkpoint) or ``<workdir>/checkpoints/<step>`` -> (workdir, step or None), by
    ``checkpoints.resolve_checkpoint_dir``; FileNotFoundError for a missing path, LoadError for another one."""
    try:
        directory, step = checkpoints.resolve_checkpoint_dir(path)
    except checkpoints.CheckpointError as e:
        raise (LoadError if os.path.exists(path) else FileNotFoundError)(str(e)) from None
    return os.path.dirname(directory), step


def class_names_of(config, workdir: str | None = None) -> tuple[str, ...]:
    """The class names a training config's model learned, in index order: ``<workdir>/class_names.names``
    (saved when they were discovered from the annotations), else the dataset's (``sources.class_names``), else
    generic ``class_<i>`` names when the dataset is not here any more."""
    num = int(config.model.num_classes)
    saved = os.path.join(workdir, "class_names.names") if workdir else ""
    names: tuple[str, ...] = ()
    if saved and os.path.isfile(saved):
        names = formats.read_names_file(saved)
    else:
        try:
            names = tuple(sources.class_names(config.data))
        except (ValueError, OSError, KeyError, AttributeError):  # a dataset that is not here any more
            names = VOC_CLASSES if num == len(VOC_CLASSES) else ()
    if len(names) != num:
        names = tuple(f"class_{i}" for i in range(num))
    return names


def load_checkpoint(path: str | os.PathLike, *, config: Any = None, step: int | None = None,
                    image_size: int | None = None, weights: str = "auto") -> Detector:
    """A detector from a training workdir (its latest intact checkpoint) or one checkpoint
    ``<workdir>/checkpoints/N``.

    ``weights``: "auto" (default) the EMA weights when the checkpoint holds them (training with
    ``config.optim.ema.decay > 0``), else the raw ones; "ema" or "raw" insists (LoadError naming the checkpoint
    when it has no EMA). The detector's ``weights`` says which ("ema" or "raw"), as does its ``description``.

    The model is rebuilt from ``<workdir>/config.json`` (or ``config``: a ConfigDict, config.json or
    ``configs/x.py[:variant]``); only its variables are restored (``checkpoints.restore_variables``: no
    optimizer is built), after checking that the checkpoint was written for the same model
    (``checkpoints.CheckpointMismatchError`` naming the differing fields). The input size is the config's
    ``data.eval_image_size`` unless ``image_size`` is given (YOLOv2 family: any multiple of 32; YOLOv1's fully
    connected layers fix its size).
    """
    try:
        ema_lib.check_choice(weights)
    except ValueError as e:
        raise LoadError(str(e)) from None
    workdir, path_step = _resolve_checkpoint(path)
    step = path_step if step is None else step
    config = load_config(workdir_config_path(workdir) if config is None else config)
    head = heads.Head.from_config(config)
    train_size = int(config.data.eval_image_size)
    _check_image_size(image_size, head.family, train_size, workdir)
    image_size = image_size or train_size
    try:
        variables, meta = checkpoints.restore_variables(
            workdir, step=step, weights=weights,
            check_meta=lambda m: checkpoints.check_model(m, config, f"{workdir} (step {m.get('step')})"))
    except checkpoints.CheckpointMismatchError:
        raise
    except checkpoints.CheckpointError as e:
        raise LoadError(str(e)) from None
    return Detector(
        model=build_model(config.model), variables=variables, head=head, input_hw=(image_size, image_size),
        class_names=class_names_of(config, workdir), letterbox=bool(config.data.eval_letterbox),
        description=f"{config.model.name} checkpoint step {meta.get('step')} of {workdir} "
                    f"({meta['restored_weights']} weights)", weights=meta["restored_weights"],
        step=None if meta.get("step") is None else int(meta["step"]))


def _check_image_size(image_size: int | None, family: str, native: int, where: str) -> None:
    """LoadError unless ``image_size`` (None = the model's own) is usable: a multiple of 32 for YOLOv2, the
    native size for YOLOv1 (its fully connected layers fix the input)."""
    if image_size is None:
        return
    if family == "v2" and (image_size <= 0 or image_size % 32):
        raise LoadError(f"image_size={image_size} must be a positive multiple of 32 for YOLOv2")
    if family == "v1" and image_size != native:
        raise LoadError(f"{where}: YOLOv1's fully connected layers fix the input at {native} px; "
                        f"image_size={image_size} is not possible")


def read_names(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names of a darknet ``.names`` file (``formats.read_names_file``: one per line, blank lines skipped)."""
    return formats.read_names_file(os.fspath(path))


def load_darknet(cfg_path: str | os.PathLike, weights_path: str | os.PathLike, *,
                 class_names: Sequence[str] | None = None, image_size: int | None = None) -> Detector:
    """A detector from darknet ``.cfg`` + ``.weights`` (``yolojax.darknet.load``).

    The head comes from the cfg: ``[region]`` (YOLOv2: anchors, classes) or ``[detection]`` (YOLOv1: side, num,
    classes, sqrt). The weights must cover the whole network (a partial file such as darknet19_448.conv.23
    is a backbone, not a detector: error). ``class_names`` default to VOC's when the cfg has 20 classes.
    ``image_size`` overrides the cfg's input size (YOLOv2: a multiple of 32; YOLOv1: only its own).
    """
    for what, p in (("darknet cfg", cfg_path), ("darknet weights", weights_path)):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{what} not found: {p}")
    sections = darknet.load_cfg(cfg_path)
    try:
        head = darknet.head_from_cfg(sections)
    except ValueError as e:
        raise LoadError(str(e)) from None
    model, variables, report = darknet.load_with_report(cfg_path, weights_path)
    if report.conversion.uninitialized:
        missing = list(report.conversion.missing_layers)
        raise LoadError(f"{weights_path} covers only part of {cfg_path}: layers {missing} have no weights "
                        "(a backbone file, not a detector)")
    if class_names is None:
        class_names = (VOC_CLASSES if head.num_classes == len(VOC_CLASSES)
                       else tuple(f"class_{i}" for i in range(head.num_classes)))
    if len(class_names) != head.num_classes:
        raise LoadError(f"{cfg_path}: the cfg has classes={head.num_classes} but {len(class_names)} class names "
                        "were given")
    net = sections[0]
    input_hw = (net.get_int("height"), net.get_int("width"))
    _check_image_size(image_size, head.family, input_hw[0], os.fspath(cfg_path))
    if image_size is not None:
        input_hw = (image_size, image_size)
    return Detector(model=model, variables=variables, head=head, input_hw=input_hw, class_names=tuple(class_names),
                    description=f"darknet {os.path.basename(os.fspath(cfg_path))} + "
                                f"{os.path.basename(os.fspath(weights_path))}")


def load(source: str | os.PathLike, weights: str | os.PathLike | None = None, **kwargs) -> Detector:
    """``load(workdir_or_checkpoint, weights="auto", config=None)`` or ``load(cfg_path, weights_path,
    class_names=None)``.

    ``weights`` is which weights: for a yolojax workdir or checkpoint (a folder) one of "auto" (default: EMA when
    kept), "ema", "raw" (``load_checkpoint``; another choice is a LoadError naming it); for a darknet ``.cfg`` its
    ``.weights`` file (``load_darknet``). A ``.cfg`` source, or a file with another ``weights``, is darknet.
    """
    if os.fspath(source).endswith((".onnx", ".jaxexport")):
        return export.load_exported(source, **kwargs)
    if os.path.isdir(os.fspath(source)) and weights is not None and weights not in ema_lib.WEIGHTS:
        raise LoadError(f"weights={weights!r}: {os.fspath(source)} is a yolojax workdir or checkpoint, whose "
                        f"weights are one of {', '.join(map(repr, ema_lib.WEIGHTS))} (darknet files: load(cfg, "
                        "weights))")
    if isinstance(weights, str) and weights in ema_lib.WEIGHTS and not os.fspath(source).endswith(".cfg"):
        return load_checkpoint(source, weights=weights, **kwargs)
    if weights is not None or os.fspath(source).endswith(".cfg"):
        if weights is None:
            raise LoadError(f"{source}: a darknet cfg needs its .weights file")
        return load_darknet(source, weights, **kwargs)
    return load_checkpoint(source, **kwargs)


# ------------------------------------------------------------------------------------------ evaluation
def evaluate(detector: Detector, data_cfg: Any, split: str, evaluators: Sequence[Any], *,
             score_threshold: float | None = None, iou_threshold: float | None = None, max_detections: int = 200,
             batch_size: int = 8, on_batch=None) -> dict[str, Any]:
    """Runs ``detector`` over a dataset split and feeds the evaluators (``VOCEvaluator`` and the like) through
    the one evaluation path (``yolojax.evaluation.loop``), on the same eval batches training-time evaluation uses.

    Args:
      data_cfg: a ``config.data`` describing the dataset (its ``eval_letterbox`` is replaced by the detector's).
      split: the split to score (e.g. "2007_test").
      evaluators: objects with ``add_ground_truth`` / ``add_detections`` taking VOC 1-based pixel boxes.
      score_threshold, iou_threshold: default the published evaluation ones (v2: 0.005 / 0.45; v1: 0.001 / 0.5).
    Returns ``eval_loop.evaluate_batches``' stats.
    """


    check_batch_size(batch_size)
    data_cfg = ml_collections.ConfigDict(data_cfg.to_dict() if hasattr(data_cfg, "to_dict") else dict(data_cfg))
    data_cfg.eval_letterbox = bool(detector.letterbox)
    h, w = detector.input_hw
    if h != w:
        raise ValueError(f"evaluation batches are square; the detector's input is {w}x{h} (pass image_size=...)")
    fn = detector.detect_fn(*detector.thresholds("eval", score_threshold, iou_threshold), max_detections)
    data = pipeline.EvalData(data_cfg, split)

    def detect(batch):
        return {k: np.asarray(v) for k, v in fn(detector.variables, batch["image"]).items()}

    return eval_loop.evaluate_batches(detect, data.batches(batch_size, h, process_index=0, process_count=1),
                                      evaluators, image_id=data.image_id, input_hw=detector.input_hw,
                                      letterbox=detector.letterbox, on_batch=on_batch)
