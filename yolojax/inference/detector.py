"""A detector: a YOLO model with its variables, head and input size, turning images into detections.

``Detector`` is what ``yolojax.load`` returns (``yolojax.inference.api``) and what ``yolojax.inference.export``
builds around an exported network. Box formats of a detections dict: see ``yolojax.inference.api``'s module
docstring.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Sequence

import jax
import numpy as np

from yolojax.data import augment, sources
from yolojax.evaluation import loop as eval_loop

# str | os.PathLike (a file) | bytes (an encoded file) | np.ndarray [H, W, 3] RGB, [H, W] gray or [H, W, 4] RGBA,
# uint8 / uint16 / float in [0, 1] | PIL.Image
ImageLike = Any
_PIL_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


# --------------------------------------------------------------------------------------------- images
def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as uint8 ``[H, W, 3]`` RGB with the one decoder of training and evaluation
    (``sources.decode_image``: gray, palette, 16-bit, alpha and CMYK inputs converted the same way).

    Raises FileNotFoundError if ``path`` does not exist, CorruptImageError (a ValueError) naming it if it is not
    a decodable image.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    with open(path, "rb") as f:
        return sources.decode_image(f.read(), path)


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Writes uint8 ``[H, W, 3]`` RGB to ``path`` (format from the extension)."""
    from PIL import Image

    Image.fromarray(np.asarray(image, np.uint8)).save(os.fspath(path))


def _is_pil(image: Any) -> bool:
    return hasattr(image, "convert") and hasattr(image, "size") and hasattr(image, "mode")


def as_uint8_image(image: ImageLike, name: str = "image") -> np.ndarray:
    """Any ImageLike -> uint8 ``[H, W, 3]`` RGB: a path or encoded bytes through the one decoder
    (``sources.decode_image``), an array or a 16-bit PIL image by its rules (``sources.rgb8``: float in [0, 1],
    uint16 as ``v >> 8``, gray and RGBA converted), another PIL image by ``convert("RGB")``. ValueError naming
    ``name`` for anything else (None, an empty image, a float image in [0, 255], ...)."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return sources.decode_image(bytes(image), name)
    if image is None:
        raise ValueError(f"{name}: got None; expected a path, encoded bytes, an image array or a PIL image")
    if _is_pil(image):
        if image.mode in _PIL_16BIT_MODES:
            return sources.rgb8(np.asarray(image).astype(np.uint16), name)
        return sources.rgb8(np.asarray(image.convert("RGB"), np.uint8), name)
    if isinstance(image, np.ndarray) or np.ndim(image) > 0:
        return sources.rgb8(image, name)
    raise ValueError(f"{name}: expected a path, encoded bytes, an image array or a PIL image, got "
                     f"{type(image).__name__}")


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int:
    """``batch_size`` as an int >= 1; ValueError naming it otherwise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{name}={batch_size!r}: expected an integer >= 1 (images per device call)")
    return int(batch_size)


# ------------------------------------------------------------------------------------------- detector
@dataclasses.dataclass
class Detector:
    """A YOLO model with its variables and everything needed to turn images into detections.

    Attributes:
      model: Flax module; ``model.apply(variables, images [N, H, W, 3] float32 in [0, 1], train=False)``.
      variables: {'params', 'batch_stats' (if batch norm)}.
      head: ``yolojax.models.heads.Head`` (family, classes, anchors or the v1 grid): decoder and thresholds.
      input_hw: (height, width) of the network input.
      class_names: one name per class index.
      letterbox: aspect-preserving input resize (as the model was evaluated) instead of a plain resize.
      description: where the detector came from (for logs).
      weights: which weights of a yolojax checkpoint ``variables`` are, "ema" or "raw" (docs/checkpoints.md);
        "" for darknet files and exports.
      step: the training step of a yolojax checkpoint (None for darknet files and exports).
    """
    model: Any
    variables: dict
    head: Any
    input_hw: tuple[int, int]
    class_names: tuple[str, ...]
    letterbox: bool = False
    description: str = ""
    weights: str = ""
    step: int | None = None
    _compiled: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
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
        score (purpose='draw'), with the family's NMS IoU (``yolojax.models.heads``)."""
        return self.head.thresholds(purpose)

    def decode(self, outputs):
        """Raw outputs -> (boxes [B, N, 4] normalized xyxy of the network input, scores [B, N, C])."""
        return self.head.decode(outputs)

    def detect_fn(self, score_threshold: float, iou_threshold: float, max_detections: int):
        """Jitted ``(variables, images [B, H, W, 3] uint8, or float32 in [0, 1]) -> batched_nms dict``, cached
        per thresholds (one compilation per batch shape)."""
        key = (float(score_threshold), float(iou_threshold), int(max_detections))
        if key not in self._compiled:
            def detect(variables, images):
                return self.head.forward_detect(self.model.apply, variables, images, score_threshold=key[0],
                                                iou_threshold=key[1], max_detections=key[2])

            self._compiled[key] = jax.jit(detect)
        return self._compiled[key]

    def thresholds(self, purpose: str, score_threshold: float | None = None,
                   iou_threshold: float | None = None) -> tuple[float, float]:
        """(score, NMS IoU): the given values, or the defaults for ``purpose`` ('eval' / 'draw')."""
        defaults = self.default_thresholds(purpose)
        return (defaults["score_threshold"] if score_threshold is None else score_threshold,
                defaults["iou_threshold"] if iou_threshold is None else iou_threshold)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> uint8 network input [h, w, 3] (the evaluation resize or letterbox)."""
        example = {"image": image, "boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, np.int32),
                   "difficult": np.zeros(0, bool), "truncated": np.zeros(0, bool)}
        h, w = self.input_hw
        return augment.eval_preprocess(example, (w, h), letterbox_eval=self.letterbox)["image"]

    def predict(self, images: ImageLike | Sequence[ImageLike], *, score_threshold: float | None = None,
                iou_threshold: float | None = None, max_detections: int = 100,
                batch_size: int = 8) -> dict | list[dict]:
        """Detects objects in one image (returns one dict) or a sequence of images (returns a list).

        Args:
          images: a path, encoded image bytes, an image array (uint8 [H, W, 3] RGB; or [H, W] gray, [H, W, 4]
            RGBA, uint16, float in [0, 1]: ``as_uint8_image``), a PIL image, or a sequence of them (a 4-D array
            counts as a sequence). Images may differ in size.
          score_threshold: keep scores above this; default 0.3 (drawing). Use
            ``default_thresholds('eval')`` for mAP.
          iou_threshold: per-class NMS IoU; default the family's (v2 .45, v1 .5).
          max_detections: K, detections kept per image.
          batch_size: images per device call; the last batch is padded so each size compiles once.
        Returns:
          detections dict(s) (module docstring for the keys and box formats).
        """
        if images is None:
            raise ValueError("predict: got None; expected an image (a path, bytes, an array, a PIL image) or a "
                             "sequence of them")
        single = isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or _is_pil(images) \
            or (isinstance(images, np.ndarray) and images.ndim in (2, 3))
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
        check_batch_size(batch_size)
        fn = self.detect_fn(*self.thresholds("draw", score_threshold, iou_threshold), max_detections)
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
