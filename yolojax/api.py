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

# Published thresholds (SPEC section 6): evaluation (score, NMS IoU) per family; drawing uses a higher score.
EVAL_SCORE_THRESHOLD = {"v1": 0.001, "v2": 0.005}
NMS_IOU_THRESHOLD = {"v1": 0.5, "v2": 0.45}
DRAW_SCORE_THRESHOLD = 0.3

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
      family: 'v1' (YOLOv1 / Fast YOLO: output [N, S·S·(5B+C)]) or 'v2' (YOLOv2 / Tiny YOLOv2: output
        [N, S, S, A, 5+C], or darknet's flat [N, S, S, A·(5+C)]).
      input_hw: (height, width) of the network input.
      class_names: one name per class index.
      anchors: [A, 2] anchors in grid units (v2 only).
      grid_size, boxes_per_cell, sqrt: v1 layout (S, B, sqrt-encoded w/h).
      letterbox: aspect-preserving input resize (as the model was evaluated) instead of a plain resize.
      description: where the detector came from (for logs).
    """

    model: Any
    variables: dict
    family: str
    input_hw: tuple[int, int]
    class_names: tuple[str, ...]
    anchors: np.ndarray | None = None
    grid_size: int = 7
    boxes_per_cell: int = 2
    sqrt: bool = True
    letterbox: bool = False
    description: str = ""
    _compiled: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        import jax

        if self.family not in EVAL_SCORE_THRESHOLD:
            raise ValueError(f"Detector.family must be 'v1' or 'v2', got {self.family!r}")
        if self.family == "v2" and self.anchors is None:
            raise ValueError("Detector: a YOLOv2-family detector needs anchors [A, 2] (grid units)")
        # On the device once, not copied from host memory on every call (darknet variables are numpy).
        self.variables = jax.device_put(self.variables)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def default_thresholds(self, purpose: str = "draw") -> dict[str, float]:
        """{'score_threshold', 'iou_threshold'}: published evaluation values (purpose='eval') or 0.3 for
        drawing, with the family's NMS IoU (v2 .45, v1 .5)."""
        score = EVAL_SCORE_THRESHOLD[self.family] if purpose == "eval" else DRAW_SCORE_THRESHOLD
        return {"score_threshold": score, "iou_threshold": NMS_IOU_THRESHOLD[self.family]}

    def decode(self, outputs):
        """Raw outputs -> (boxes [B, N, 4] normalized xyxy of the network input, scores [B, N, C])."""
        from yolojax import postprocess

        if self.family == "v1":
            return postprocess.decode_yolov1(outputs, grid_size=self.grid_size, boxes_per_cell=self.boxes_per_cell,
                                             num_classes=self.num_classes, sqrt=self.sqrt)
        if outputs.ndim == 4:  # darknet channel order: anchor-major, then (tx, ty, tw, th, to, classes)
            outputs = outputs.reshape(outputs.shape[:3] + (len(self.anchors), -1))
        return postprocess.decode_yolov2(outputs, self.anchors)

    def _detect_fn(self, score_threshold: float, iou_threshold: float, max_detections: int):
        """Jitted ``(variables, images [B, H, W, 3] float32) -> batched_nms dict``, cached per thresholds."""
        key = (float(score_threshold), float(iou_threshold), int(max_detections))
        if key not in self._compiled:
            import jax

            from yolojax import postprocess

            def detect(variables, images):
                outputs = self.model.apply(variables, images, train=False)
                boxes, scores = self.decode(outputs.astype("float32"))
                return postprocess.batched_nms(boxes, scores, score_threshold=key[0], iou_threshold=key[1],
                                               max_detections=key[2])

            self._compiled[key] = jax.jit(detect)
        return self._compiled[key]

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> uint8 network input [h, w, 3] (the evaluation resize or letterbox)."""
        from yolojax.data import augment

        example = {"image": image, "boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, np.int32),
                   "difficult": np.zeros(0, bool), "truncated": np.zeros(0, bool)}
        h, w = self.input_hw
        return augment.eval_preprocess(example, (w, h), letterbox_eval=self.letterbox)["image"]

    def _to_original(self, boxes: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
        """Boxes normalized to the network input -> normalized to the original image."""
        if not self.letterbox:
            return boxes
        from yolojax.data import augment

        h, w = self.input_hw
        return augment.input_boxes_to_original(boxes, orig_hw, (w, h), letterbox_eval=True).astype(np.float32)

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
        last batch to ``batch_size`` (one compilation, steady timing) instead of the next power of two."""
        defaults = self.default_thresholds("draw")
        fn = self._detect_fn(defaults["score_threshold"] if score_threshold is None else score_threshold,
                             defaults["iou_threshold"] if iou_threshold is None else iou_threshold, max_detections)
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
        h, w = self.input_hw
        inputs = np.zeros((padded_size, h, w, 3), np.float32)
        for i, image in enumerate(originals):
            inputs[i] = self.preprocess(image).astype(np.float32) / 255.0
        out = {k: np.asarray(v) for k, v in fn(self.variables, inputs).items()}
        results = []
        for i, image in enumerate(originals):
            k = int(out["count"][i])
            orig_hw = image.shape[:2]
            # Clipped to the image, as darknet does before drawing or writing results.
            boxes = np.clip(self._to_original(out["boxes"][i, :k].astype(np.float32), orig_hw), 0.0, 1.0)
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
_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
            (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
            (0, 0, 128), (128, 128, 128))


def draw(image: ImageLike, detections: dict, *, score_threshold: float = 0.0, line_width: int = 2) -> np.ndarray:
    """Draws boxes with "class score" labels on a copy of ``image``.

    Args:
      image: the original image (uint8 [H, W, 3] RGB, path or PIL image) the detections were made on.
      detections: one image's dict from ``Detector.predict`` (uses "boxes" normalized xyxy, "scores",
        "classes", "class_names").
      score_threshold: draw only detections scoring above this.
    Returns:
      uint8 [H, W, 3] RGB.
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(as_uint8_image(image).copy())
    width, height = canvas.size
    pen = ImageDraw.Draw(canvas)
    for box, score, c, name in zip(detections["boxes"], detections["scores"], detections["classes"],
                                   detections["class_names"]):
        if score <= score_threshold:
            continue
        x1, y1, x2, y2 = (float(v) for v in np.clip(box, 0.0, 1.0) * [width, height, width, height])
        colour = _PALETTE[int(c) % len(_PALETTE)]
        pen.rectangle([x1, y1, x2, y2], outline=colour, width=line_width)
        label = f"{name} {score:.2f}"
        left, top, right, bottom = pen.textbbox((x1, y1), label)
        top_y = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1  # above the box if it fits
        pen.rectangle([x1, top_y, x1 + (right - left) + 4, top_y + (bottom - top) + 2], fill=colour)
        pen.text((x1 + 2, top_y), label, fill=(0, 0, 0) if sum(colour) > 400 else (255, 255, 255))
    return np.asarray(canvas, np.uint8)


# -------------------------------------------------------------------------------------------- loading
def _config_get(cfg: Any, path: str, default: Any = None) -> Any:
    """cfg.a.b.c or default when any part is missing (configs grow fields over time)."""
    node = cfg
    for key in path.split("."):
        if node is None or key not in node:
            return default
        node = node[key]
    return node


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


def _class_names_for(config) -> tuple[str, ...]:
    num = int(_config_get(config, "model.num_classes", 20))
    try:
        from yolojax.data import sources

        names = tuple(sources.class_names(config.data))
    except Exception:  # older/other data configs: fall back on VOC or generic names
        names = VOC_CLASSES if num == len(VOC_CLASSES) else ()
    if len(names) != num:
        names = tuple(f"class_{i}" for i in range(num))
    return names


def load_checkpoint(path: str | os.PathLike, *, config: Any = None, step: int | None = None,
                    image_size: int | None = None) -> Detector:
    """A detector from a training workdir (its latest checkpoint) or one checkpoint ``<workdir>/checkpoints/N``.

    The model is rebuilt from ``<workdir>/config.json`` (or ``config``: a ConfigDict, config.json or
    ``configs/x.py[:variant]``), and the weights restored with ``yolojax.train.restore_checkpoint``, which
    refuses a checkpoint written for another model (CheckpointMismatchError naming the differing fields).
    The input size is the config's ``data.eval_image_size`` unless ``image_size`` is given (YOLOv2 family:
    any multiple of 32; YOLOv1's fully connected layers fix its size).
    """
    import jax
    import optax
    from absl import logging as absl_logging

    from yolojax import train as train_lib
    from yolojax.models import build_model

    workdir, path_step = _resolve_checkpoint(path)
    step = path_step if step is None else step
    if config is None:
        config_path = os.path.join(workdir, "config.json")
        if not os.path.isfile(config_path):
            raise LoadError(f"{workdir}: no config.json (written by training); pass config=...")
        config = config_path
    config = load_config(config)
    family = train_lib.model_family(config.model)
    train_size = int(_config_get(config, "data.eval_image_size", 0) or _config_get(config, "data.image_size", 0)
                     or (448 if family == "v1" else 416))
    _check_image_size(image_size, family, train_size, workdir)
    image_size = image_size or train_size
    model = build_model(config.model)
    # The optimizer only shapes the restored state (restore_checkpoint restores all of it); a constant
    # schedule gives the same optimizer-state structure as training's schedule function.
    tx = train_lib.make_optimizer(config.optim, optax.constant_schedule(0.0))
    mesh = train_lib.make_mesh(jax.devices()[:1])
    # Only the shapes of a fresh state (eval_shape: no random init of millions of weights), placed on one
    # device; restore_checkpoint fills it from disk.
    replicated = train_lib.replicated(mesh)
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                         jax.eval_shape(lambda: train_lib.create_train_state(config, model, tx, mesh, image_size)))
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every restore detail at INFO
    try:
        mngr = train_lib.make_checkpoint_manager(workdir, config.checkpoint)
        try:
            restored = train_lib.restore_checkpoint(mngr, state, config, workdir, step)
        except FileNotFoundError:
            raise LoadError(f"{workdir}: no checkpoint for step {step}") from None
        finally:
            mngr.close()
    finally:
        absl_logging.set_verbosity(verbosity)
    if restored is None:
        raise LoadError(f"{workdir}: the checkpoints/ folder holds no checkpoint")
    state = restored[0]
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    v1 = _config_get(config, "model.v1", {})
    return Detector(
        model=model, variables=variables, family=family, input_hw=(image_size, image_size),
        class_names=_class_names_for(config),
        anchors=np.asarray(train_lib.anchors_of(config)) if family == "v2" else None,
        grid_size=int(_config_get(v1, "grid_size", 7)), boxes_per_cell=int(_config_get(v1, "boxes_per_cell", 2)),
        sqrt=bool(_config_get(config, "loss.sqrt", True)),
        letterbox=bool(_config_get(config, "data.eval_letterbox", False)),
        description=f"{config.model.name} checkpoint step {int(jax.device_get(state.step))} of {workdir}")


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
    from yolojax import darknet

    for what, p in (("darknet cfg", cfg_path), ("darknet weights", weights_path)):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{what} not found: {p}")
    sections = darknet.load_cfg(cfg_path)
    heads = [s for s in sections if s.type in ("region", "detection")]
    if not heads:
        raise LoadError(f"{cfg_path}: no [region] or [detection] layer: not a YOLO detector cfg")
    head = heads[-1]
    model, variables, report = darknet.load_with_report(cfg_path, weights_path)
    if report.conversion.uninitialized:
        missing = list(report.conversion.missing_layers)
        raise LoadError(f"{weights_path} covers only part of {cfg_path}: layers {missing} have no weights "
                        "(a backbone file, not a detector)")
    num_classes = head.get_int("classes")
    if class_names is None:
        class_names = (VOC_CLASSES if num_classes == len(VOC_CLASSES)
                       else tuple(f"class_{i}" for i in range(num_classes)))
    if len(class_names) != num_classes:
        raise LoadError(f"{cfg_path}: [{head.type}] has classes={num_classes} but {len(class_names)} class names "
                        "were given")
    net = sections[0]
    input_hw = (net.get_int("height"), net.get_int("width"))
    common = dict(model=model, variables=variables, class_names=tuple(class_names),
                  description=f"darknet {os.path.basename(os.fspath(cfg_path))} + "
                              f"{os.path.basename(os.fspath(weights_path))}")
    family = "v2" if head.type == "region" else "v1"
    _check_image_size(image_size, family, input_hw[0], os.fspath(cfg_path))
    if image_size is not None:
        input_hw = (image_size, image_size)
    if family == "v2":
        return Detector(family="v2", input_hw=input_hw, anchors=darknet.cfg_anchors(sections), **common)
    return Detector(family="v1", input_hw=input_hw, grid_size=head.get_int("side"),
                    boxes_per_cell=head.get_int("num"), sqrt=bool(head.get_int("sqrt", 0)), **common)


def load(source: str | os.PathLike, weights: str | os.PathLike | None = None, **kwargs) -> Detector:
    """``load(workdir_or_checkpoint, config=None)`` or ``load(cfg_path, weights_path, class_names=None)``.

    A ``.cfg`` source (or any source with ``weights``) is darknet; anything else is a yolojax workdir or
    checkpoint (see ``load_checkpoint`` / ``load_darknet``).
    """
    if weights is not None or os.fspath(source).endswith(".cfg"):
        if weights is None:
            raise LoadError(f"{source}: a darknet cfg needs its .weights file")
        return load_darknet(source, weights, **kwargs)
    return load_checkpoint(source, **kwargs)


# ------------------------------------------------------------------------ evaluation on a VOC image set
def voc_samples(voc_root: str | os.PathLike, year: str, image_set: str) -> Iterable[tuple[str, np.ndarray, dict]]:
    """``(image_id, uint8 image, ground truth)`` for a devkit image set, in list order.

    Images are decoded lazily with the data pipeline's decoder (``sources.decode_image``), so the numbers
    match training-time evaluation and the TFDS path. Ground truth: {"boxes_px": [M, 4] VOC 1-based pixel
    xyxy as in the XML, "classes": [M] (VOC_CLASSES index), "difficult": [M] bool}.
    """
    from yolojax.data import sources, voc

    year_dir = voc.voc_year_dir(voc_root, year)
    for image_id, ann in voc.iter_annotations(voc_root, year, image_set):
        path = os.path.join(year_dir, "JPEGImages", f"{image_id}.jpg")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image {image_id!r} of image set {image_set!r} not found: {path}")
        with open(path, "rb") as f:
            image = sources.decode_image(f.read(), path)
        yield image_id, image, ann


def tfds_samples(split: str, data_dir: str | None = None) -> Iterable[tuple[str, np.ndarray, dict]]:
    """``(image_id, uint8 image, ground truth)`` for a named split of the prepared TFDS VOC
    (``yolojax.data.sources``: "2007_test", ...); boxes go back to VOC pixels with ``normalized_to_voc_px``."""
    from yolojax import boxes as box_lib
    from yolojax.data import sources

    src = sources.make_source({"source": "tfds", "tfds_data_dir": data_dir or ""}, split)
    for i in range(len(src)):
        ex = sources.decode_record(src[i])
        h, w = ex["image"].shape[:2]
        yield ex["image_id"], ex["image"], {"boxes_px": box_lib.normalized_to_voc_px(ex["boxes"], w, h),
                                            "classes": ex["classes"], "difficult": ex["difficult"]}


def evaluate_detector(detector: Detector, samples: Iterable[tuple[str, ImageLike, dict]], evaluator, *,
                      score_threshold: float | None = None, iou_threshold: float | None = None,
                      max_detections: int = 200, batch_size: int = 8) -> dict[str, Any]:
    """Runs ``detector`` over ``samples`` and feeds ground truth and detections to a ``VOCEvaluator``.

    Thresholds default to the published evaluation ones (v2: score 0.005, NMS 0.45; v1: 0.001, 0.5).
    Detections go in as VOC 1-based pixel xyxy (``evaluation.normalized_to_devkit_px``, darknet's
    conversion, clipped to the image). Class index c of the detector is class c of the evaluator.

    Returns {"num_images", "seconds" (whole loop), "images_per_sec" (after the first batch, whose time
    includes compilation; the whole loop if there is only one), "ground_truth": [(image_id, gt)] in order}.
    """
    import time

    from yolojax import evaluation

    if detector.num_classes > len(evaluator.class_names):
        raise ValueError(f"the detector has {detector.num_classes} classes but the evaluation has "
                         f"{len(evaluator.class_names)}")
    defaults = detector.default_thresholds("eval")
    ground_truth: list[tuple[str, dict]] = []

    def images():  # registers each image's ground truth as its pixels go to the detector
        for image_id, image, gt in samples:
            evaluator.add_ground_truth(image_id, boxes=gt["boxes_px"], classes=gt["classes"],
                                       difficult=gt["difficult"])
            ground_truth.append((image_id, gt))
            yield image

    found_iter = detector.predict_iter(
        images(), batch_size=batch_size, max_detections=max_detections, fixed_batch=True,
        score_threshold=defaults["score_threshold"] if score_threshold is None else score_threshold,
        iou_threshold=defaults["iou_threshold"] if iou_threshold is None else iou_threshold)
    start, first_batch_done, count = time.perf_counter(), None, 0
    for found in found_iter:
        h, w = found["image_size"]
        evaluator.add_detections(ground_truth[count][0], boxes=evaluation.normalized_to_devkit_px(found["boxes"], w, h),
                                 scores=found["scores"], classes=found["classes"])
        count += 1
        if count == batch_size:
            first_batch_done = time.perf_counter()
    end = time.perf_counter()
    if first_batch_done is not None and count > batch_size:
        rate = (count - batch_size) / max(end - first_batch_done, 1e-9)
    else:
        rate = count / max(end - start, 1e-9)
    return {"num_images": count, "seconds": end - start, "images_per_sec": rate, "ground_truth": ground_truth}


def precision_recall_curves(results_dir: str | os.PathLike, voc_gt: Iterable[tuple[str, dict]], *,
                            class_names: Sequence[str] = VOC_CLASSES, prefix: str = "comp4",
                            image_set: str = "test", iou_threshold: float = 0.5) -> dict[str, tuple]:
    """Per-class (recall [D], precision [D], npos) of devkit result files, matched as the devkit does
    (``evaluation.class_precision_recall``). ``voc_gt``: (image_id, ground truth) as in ``voc_samples``."""
    from yolojax import evaluation

    index, gt_rows = {}, []
    for image_id, gt in voc_gt:
        index[image_id] = len(index)
        gt_rows.append((np.full(len(gt["classes"]), index[image_id]), np.asarray(gt["boxes_px"], np.float64),
                        np.asarray(gt["classes"]), np.asarray(gt["difficult"], bool)))
    gt_img, gt_boxes, gt_cls, gt_diff = (np.concatenate(c) if gt_rows else np.zeros(0) for c in zip(*gt_rows))
    results = evaluation.read_results(results_dir, prefix=prefix, image_set=image_set, class_names=class_names,
                                      image_ids=index)
    curves = {}
    for c, name in enumerate(class_names):
        r, g = results[name], gt_cls == c
        det_img = np.fromiter((index[i] for i in r["image_ids"]), np.int64, len(r["image_ids"]))
        curves[name] = evaluation.class_precision_recall(det_img, r["scores"], r["boxes"], gt_img[g],
                                                         gt_boxes[g].reshape(-1, 4), gt_diff[g],
                                                         iou_threshold=iou_threshold)
    return curves


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


def one_line(error: BaseException) -> str:
    """An exception as one line, "Type: message" with newlines folded, for command-line tools."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"
