"""Notebook API: load a trained detector, run it on images, draw the detections.

    import yolojax
    det = yolojax.load("runs/quickstart")                        # a training workdir (latest checkpoint)
    det = yolojax.load("runs/quickstart/checkpoints/2000")       # one checkpoint of it
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

import dataclasses
import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from yolojax.classes import VOC_CLASSES
from yolojax.cli import one_line  # noqa: F401  (re-exported for notebooks)
from yolojax.families import config_get

ImageLike = Any  # str | os.PathLike (a file) | np.ndarray uint8 [H, W, 3] RGB (or float in [0, 1]) | PIL.Image


class LoadError(ValueError):
    """A checkpoint, config or darknet file that cannot give a detector; the message names file and problem."""


# --------------------------------------------------------------------------------------------- images
def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as uint8 ``[H, W, 3]`` RGB (grayscale / RGBA / palette images converted).

    Raises FileNotFoundError if ``path`` does not exist, ValueError if it is not a decodable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:  # PIL raises these for bad/truncated files
        raise ValueError(f"not a readable image: {path} ({type(e).__name__}: {e})") from None


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Writes uint8 ``[H, W, 3]`` RGB to ``path`` (format from the extension)."""
    from PIL import Image

    Image.fromarray(np.asarray(image, np.uint8)).save(os.fspath(path))


def as_uint8_image(image: ImageLike, name: str = "image") -> np.ndarray:
    """Any ImageLike -> uint8 ``[H, W, 3]`` RGB. Float arrays are taken as RGB in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(image.convert("RGB"), np.uint8)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected an RGB image [H, W, 3], got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"{name}: expected uint8 or float in [0, 1], got dtype {arr.dtype}")


# ------------------------------------------------------------------------------------------- detector
@dataclasses.dataclass
class Detector:
    """A YOLO model with its variables and everything needed to turn images into detections.

    Attributes:
      model: Flax module; ``model.apply(variables, images [N, H, W, 3] float32 in [0, 1], train=False)``.
      variables: {'params', 'batch_stats' (if batch norm)}.
      head: ``yolojax.families.Head`` (family, classes, anchors or the v1 grid): decoder and thresholds.
      input_hw: (height, width) of the network input.
      class_names: one name per class index.
      letterbox: aspect-preserving input resize (as the model was evaluated) instead of a plain resize.
      description: where the detector came from (for logs).
    """

    model: Any
    variables: dict
    head: Any
    input_hw: tuple[int, int]
    class_names: tuple[str, ...]
    letterbox: bool = False
    description: str = ""
    _compiled: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        import jax

        if len(self.class_names) != self.head.num_classes:
            raise ValueError(f"Detector: {len(self.class_names)} class names for a {self.head.num_classes}-class head")
        # On the device once, not copied from host memory on every call (darknet variables are numpy).
        self.variables = jax.device_put(self.variables)

    @property
    def family(self) -> str:
        return self.head.family

    @property
    def anchors(self) -> np.ndarray | None:
        """[A, 2] anchors in grid cells (v2), None for v1."""
        return self.head.anchors_array

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def default_thresholds(self, purpose: str = "draw") -> dict[str, float]:
        """{'score_threshold', 'iou_threshold'}: published evaluation values (purpose='eval') or the drawing
        score (purpose='draw'), with the family's NMS IoU (``yolojax.families``)."""
        return self.head.thresholds(purpose)

    def decode(self, outputs):
        """Raw outputs -> (boxes [B, N, 4] normalized xyxy of the network input, scores [B, N, C])."""
        return self.head.decode(outputs)

    def detect_fn(self, score_threshold: float, iou_threshold: float, max_detections: int):
        """Jitted ``(variables, images [B, H, W, 3] uint8, or float32 in [0, 1]) -> batched_nms dict``, cached
        per thresholds (one compilation per batch shape)."""
        key = (float(score_threshold), float(iou_threshold), int(max_detections))
        if key not in self._compiled:
            import jax
            import jax.numpy as jnp

            def detect(variables, images):
                if images.dtype == jnp.uint8:
                    images = images.astype(jnp.float32) / 255.0
                outputs = self.model.apply(variables, images, train=False)
                return self.head.detect(outputs, score_threshold=key[0], iou_threshold=key[1], max_detections=key[2])

            self._compiled[key] = jax.jit(detect)
        return self._compiled[key]

    def _thresholds(self, purpose: str, score_threshold: float | None, iou_threshold: float | None):
        defaults = self.default_thresholds(purpose)
        return (defaults["score_threshold"] if score_threshold is None else score_threshold,
                defaults["iou_threshold"] if iou_threshold is None else iou_threshold)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> uint8 network input [h, w, 3] (the evaluation resize or letterbox)."""
        from yolojax.data import augment

        example = {"image": image, "boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, np.int32),
                   "difficult": np.zeros(0, bool), "truncated": np.zeros(0, bool)}
        h, w = self.input_hw
        return augment.eval_preprocess(example, (w, h), letterbox_eval=self.letterbox)["image"]

    def predict(self, images: ImageLike | Sequence[ImageLike], *, score_threshold: float | None = None,
                iou_threshold: float | None = None, max_detections: int = 100,
                batch_size: int = 8) -> dict | list[dict]:
        """Detects objects in one image (returns one dict) or a sequence of images (returns a list).

        Args:
          images: a path, a uint8 [H, W, 3] RGB array (or float in [0, 1]), a PIL image, or a sequence of them
            (a 4-D array counts as a sequence). Images may differ in size.
          score_threshold: keep scores above this; default 0.3 (drawing). Use
            ``default_thresholds('eval')`` for mAP.
          iou_threshold: per-class NMS IoU; default the family's (v2 .45, v1 .5).
          max_detections: K, detections kept per image.
          batch_size: images per device call; the last batch is padded so each size compiles once.
        Returns:
          detections dict(s) (module docstring for the keys and box formats).
        """
        single = isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3) \
            or (hasattr(images, "convert") and hasattr(images, "size"))
        items = [images] if single else list(images)
        found = list(self.predict_iter(items, score_threshold=score_threshold, iou_threshold=iou_threshold,
                                       max_detections=max_detections, batch_size=batch_size))
        return found[0] if single else found

    def predict_iter(self, images: Iterable[ImageLike], *, score_threshold: float | None = None,
                     iou_threshold: float | None = None, max_detections: int = 100,
                     batch_size: int = 8, fixed_batch: bool = False) -> Iterable[dict]:
        """Like ``predict`` on a sequence, but yields one detections dict per image as batches finish
        (images are read lazily, so a folder of thousands never sits in memory). ``fixed_batch`` pads the
        last batch to ``batch_size`` (one compilation, steady timing) instead of the next power of two.
        An item that cannot be read raises (``load_image``); see ``experiments/detect.py`` for skipping."""
        fn = self.detect_fn(*self._thresholds("draw", score_threshold, iou_threshold), max_detections)
        batch: list[np.ndarray] = []
        for i, image in enumerate(images):
            batch.append(as_uint8_image(image, name=f"image {i}" if not isinstance(image, (str, os.PathLike))
                                        else os.fspath(image)))
            if len(batch) == batch_size:
                yield from self._run_batch(fn, batch, batch_size)
                batch = []
        if batch:
            # A short last batch pads to the next power of two (at most batch_size): few shapes, few compiles.
            size = batch_size if fixed_batch else min(batch_size, 1 << (len(batch) - 1).bit_length())
            yield from self._run_batch(fn, batch, size)

    def _run_batch(self, fn, originals: list[np.ndarray], padded_size: int) -> list[dict]:
        from yolojax import eval_loop

        h, w = self.input_hw
        inputs = np.zeros((padded_size, h, w, 3), np.uint8)
        for i, image in enumerate(originals):
            inputs[i] = self.preprocess(image)
        out = {k: np.asarray(v) for k, v in fn(self.variables, inputs).items()}
        results = []
        for i, image in enumerate(originals):
            k = int(out["count"][i])
            orig_hw = image.shape[:2]
            # Clipped to the image, as darknet does before drawing or writing results.
            boxes = np.clip(eval_loop.original_boxes(out["boxes"][i, :k], orig_hw, self.input_hw, self.letterbox),
                            0.0, 1.0).astype(np.float32)
            classes = out["classes"][i, :k].astype(np.int32)
            results.append({
                "boxes": boxes,
                "boxes_px": (boxes * np.array([orig_hw[1], orig_hw[0]] * 2, np.float32)).astype(np.float32),
                "scores": out["scores"][i, :k].astype(np.float32),
                "classes": classes,
                "class_names": [self.class_names[c] for c in classes],
                "image_size": (int(orig_hw[0]), int(orig_hw[1])),
            })
        return results


def detections_to_json(detections: dict) -> list[dict]:
    """One image's detections -> JSON-ready ``[{"box": [x1, y1, x2, y2] pixel xyxy, "class": name,
    "class_id": int, "score": float}, ...]``."""
    return [{"box": [round(float(v), 2) for v in box], "class": name, "class_id": int(c), "score": float(s)}
            for box, name, c, s in zip(detections["boxes_px"], detections["class_names"], detections["classes"],
                                       detections["scores"])]


# -------------------------------------------------------------------------------------------- drawing
def draw(image: ImageLike, detections: dict, *, score_threshold: float = 0.0, line_width: int = 2) -> np.ndarray:
    """Draws boxes with "class score" labels on a copy of ``image`` (``yolojax.drawing``).

    Args:
      image: the original image (uint8 [H, W, 3] RGB, path or PIL image) the detections were made on.
      detections: one image's dict from ``Detector.predict`` (uses "boxes" normalized xyxy, "scores",
        "classes", "class_names").
      score_threshold: draw only detections scoring above this.
    Returns:
      uint8 [H, W, 3] RGB.
    """
    from yolojax import drawing

    return drawing.draw_detections(as_uint8_image(image), detections, score_threshold=score_threshold,
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
    """A ConfigDict from a ConfigDict/dict, a ``config.json`` written by training, or a config file
    ``configs/x.py[:variant]`` with ``get_config()``."""
    import ml_collections

    if isinstance(spec, ml_collections.ConfigDict):
        return spec
    if isinstance(spec, dict):
        return ml_collections.ConfigDict(spec)
    spec = os.fspath(spec)
    path, _, variant = spec.partition(":") if spec.split(":")[0].endswith(".py") else (spec, "", "")
    if not os.path.isfile(path):
        raise LoadError(f"config not found: {path}")
    if path.endswith(".json"):
        with open(path) as f:
            try:
                return ml_collections.ConfigDict(json.load(f))
            except json.JSONDecodeError as e:
                raise LoadError(f"{path}: not valid JSON ({e})") from None
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("_yolojax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def _resolve_checkpoint(path: str) -> tuple[str, int | None]:
    """A workdir (latest checkpoint) or ``<workdir>/checkpoints/<step>`` -> (workdir, step or None)."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint or workdir not found: {path}")
    parent = os.path.dirname(path)
    if os.path.basename(parent) == "checkpoints" and os.path.basename(path).isdigit():
        return os.path.dirname(parent), int(os.path.basename(path))
    if os.path.basename(path) == "checkpoints":
        return parent, None
    if not os.path.isdir(os.path.join(path, "checkpoints")):
        raise LoadError(f"{path}: not a yolojax workdir (no checkpoints/ folder) nor a checkpoint "
                        "(<workdir>/checkpoints/<step>)")
    return path, None


def class_names_of(config) -> tuple[str, ...]:
    """The class names of a training config's dataset (``sources.class_names``), or generic
    ``class_<i>`` names when the dataset cannot be described (e.g. a moved custom dataset)."""
    num = int(config_get(config, "model.num_classes", 20))
    try:
        from yolojax.data import sources

        names = tuple(sources.class_names(config.data))
    except (ValueError, OSError, KeyError, AttributeError):  # a dataset that is not here any more
        names = VOC_CLASSES if num == len(VOC_CLASSES) else ()
    if len(names) != num:
        names = tuple(f"class_{i}" for i in range(num))
    return names


def load_checkpoint(path: str | os.PathLike, *, config: Any = None, step: int | None = None,
                    image_size: int | None = None) -> Detector:
    """A detector from a training workdir (its latest intact checkpoint) or one checkpoint
    ``<workdir>/checkpoints/N``.

    The model is rebuilt from ``<workdir>/config.json`` (or ``config``: a ConfigDict, config.json or
    ``configs/x.py[:variant]``); only its variables are restored (``checkpoints.restore_variables``: no
    optimizer is built), after checking that the checkpoint was written for the same model
    (``checkpoints.CheckpointMismatchError`` naming the differing fields). The input size is the config's
    ``data.eval_image_size`` unless ``image_size`` is given (YOLOv2 family: any multiple of 32; YOLOv1's fully
    connected layers fix its size).
    """
    from yolojax import checkpoints, families
    from yolojax.models import build_model

    workdir, path_step = _resolve_checkpoint(path)
    step = path_step if step is None else step
    config = load_config(workdir_config_path(workdir) if config is None else config)
    head = families.Head.from_config(config)
    train_size = int(config_get(config, "data.eval_image_size", 0) or config_get(config, "data.image_size", 0)
                     or (448 if head.family == "v1" else 416))
    _check_image_size(image_size, head.family, train_size, workdir)
    image_size = image_size or train_size
    try:
        variables, meta = checkpoints.restore_variables(
            workdir, step=step, check_meta=lambda m: checkpoints.check_model(m, config, f"{workdir} (step {m.get('step')})"))
    except checkpoints.CheckpointMismatchError:
        raise
    except checkpoints.CheckpointError as e:
        raise LoadError(str(e)) from None
    return Detector(
        model=build_model(config.model), variables=variables, head=head, input_hw=(image_size, image_size),
        class_names=class_names_of(config), letterbox=bool(config_get(config, "data.eval_letterbox", False)),
        description=f"{config.model.name} checkpoint step {meta.get('step')} of {workdir}")


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
    """Class names of a darknet ``.names`` file (one per line, blank lines skipped)."""
    with open(path) as f:
        return tuple(line.strip() for line in f if line.strip())


def load_darknet(cfg_path: str | os.PathLike, weights_path: str | os.PathLike, *,
                 class_names: Sequence[str] | None = None, image_size: int | None = None) -> Detector:
    """A detector from darknet ``.cfg`` + ``.weights`` (``yolojax.darknet.load``).

    The head comes from the cfg: ``[region]`` (YOLOv2: anchors, classes) or ``[detection]`` (YOLOv1: side, num,
    classes, sqrt). The weights must cover the whole network (a partial file such as darknet19_448.conv.23
    is a backbone, not a detector: error). ``class_names`` default to VOC's when the cfg has 20 classes.
    ``image_size`` overrides the cfg's input size (YOLOv2: a multiple of 32; YOLOv1: only its own).
    """
    from yolojax import darknet, families

    for what, p in (("darknet cfg", cfg_path), ("darknet weights", weights_path)):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{what} not found: {p}")
    sections = darknet.load_cfg(cfg_path)
    try:
        head = families.Head.from_darknet(sections)
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
    """``load(workdir_or_checkpoint, config=None)`` or ``load(cfg_path, weights_path, class_names=None)``.

    A ``.cfg`` source (or any source with ``weights``) is darknet; anything else is a yolojax workdir or
    checkpoint (see ``load_checkpoint`` / ``load_darknet``).
    """
    if os.fspath(source).endswith((".onnx", ".jaxexport")):
        from yolojax import export

        return export.load_exported(source, **kwargs)
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
    the one evaluation path (``yolojax.eval_loop``), on the same eval batches training-time evaluation uses.

    Args:
      data_cfg: a ``config.data`` describing the dataset (its ``eval_letterbox`` is replaced by the detector's).
      split: the split to score (e.g. "2007_test").
      evaluators: objects with ``add_ground_truth`` / ``add_detections`` taking VOC 1-based pixel boxes.
      score_threshold, iou_threshold: default the published evaluation ones (v2: 0.005 / 0.45; v1: 0.001 / 0.5).
    Returns ``eval_loop.evaluate_batches``' stats.
    """
    import ml_collections

    from yolojax import eval_loop
    from yolojax.data import pipeline

    data_cfg = ml_collections.ConfigDict(data_cfg.to_dict() if hasattr(data_cfg, "to_dict") else dict(data_cfg))
    data_cfg.eval_letterbox = bool(detector.letterbox)
    h, w = detector.input_hw
    if h != w:
        raise ValueError(f"evaluation batches are square; the detector's input is {w}x{h} (pass image_size=...)")
    fn = detector.detect_fn(*detector._thresholds("eval", score_threshold, iou_threshold), max_detections)
    data = pipeline.EvalData(data_cfg, split)

    def detect(batch):
        return {k: np.asarray(v) for k, v in fn(detector.variables, batch["image"]).items()}

    return eval_loop.evaluate_batches(detect, data.batches(batch_size, h, process_index=0, process_count=1),
                                      evaluators, image_id=data.image_id, input_hw=detector.input_hw,
                                      letterbox=detector.letterbox, on_batch=on_batch)


def plot_precision_recall(curves: dict[str, tuple], path: str | os.PathLike, title: str = "") -> None:
    """One PNG with a precision-recall panel per class that has ground truth (AP07 in each title)."""
    import math

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from yolojax import evaluation

    names = [n for n, (_, _, npos) in curves.items() if npos > 0]
    cols = min(5, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        recall, precision, _ = curves[name]
        ax.axis("on")
        ax.plot(np.concatenate([[0.0], recall]), np.concatenate([[1.0], precision]), lw=1.2)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), title=f"{name}: AP07 {100 * evaluation.voc07_ap(recall, precision):.1f}")
        ax.title.set_fontsize(8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=90)
    plt.close(fig)
