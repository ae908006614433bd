"""Augmentations: small functions on Example dicts that move the image and its boxes together.

An Example is ``{"image": uint8 [H, W, 3] RGB, "boxes": float32 [N, 4] normalized xyxy,
"classes": int32 [N], "difficult": bool [N], "truncated": bool [N], "image_id": str}``. Every function here
takes an Example and returns a new one (inputs are never modified).

Geometry is expressed as 3x3 affine matrices in *continuous* pixel coordinates (pixel ``i`` covers
``[i, i + 1)``), source pixels -> output pixels. Each geometric op has a matrix builder and a one-op
function; the training path composes all enabled ops into one matrix (``train_matrix``) and warps the image
once (crop + pad + ``cv2.resize``), which is both faster and less blurry than warping once per op. Boxes
follow through the same matrix, then are clipped to the output image; boxes left too small or mostly cut away
are dropped (``clip_and_filter_boxes``) so no zero-area box ever reaches the log-space w/h loss.

The photometric jitter (darknet HSV) of training is drawn here (``draw_hsv``, from the example's generator) and
applied either on the device to the uint8 batch (``photometric.py``) or, on a CPU-only run, by ``hsv_adjust``
here (OpenCV) in the batch threads (``data.photometric_on``); same parameters -> same pixels within 1/255.

The ops:
  * ``crop_jitter_matrix``: darknet's ``jitter`` (v2 ``jitter=.3``, v1 ``jitter=.2``): each image side moves
    independently by up to ``jitter`` x the side, so both scale, translation and aspect ratio change.
  * ``scale_translate_matrix``: the YOLOv1 paper's "random scaling and translations of up to 20% of the
    original image size" (a uniform scale in [1 - s, 1 + s] about the center, then a shift in [-t, t]).
  * ``hflip_matrix`` / ``hflip``: horizontal flip (YOLOv2).
  * ``resize_matrix`` / ``letterbox_matrix``: plain (aspect-changing) resize or aspect-preserving letterbox
    with gray (127) padding, darknet's ``letterbox_image``.
  * ``mosaic_layout`` / ``paste_boxes`` (``augment.mosaic``, beyond the papers): four images in the four
    regions around a random center of one output, each on its own map (the pipeline warps each into its region).
  * ``random_hsv`` (host reference of ``photometric.py``): darknet's ``random_distort_image``: hue shift in
    [-hue, hue] (fraction of the hue circle), saturation and exposure (HSV value) scaled by a factor in [1, s]
    or its inverse, each with probability 1/2.
"""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

Example = dict[str, Any]

# Keys holding one entry per object; filtering a box filters all of them together.
PER_OBJECT_KEYS = ("boxes", "classes", "difficult", "truncated")
GRAY = 127  # darknet pads letterboxes with 0.5


# ----------------------------------------------------------------------------------------------- helpers
def _size(example: Example) -> tuple[int, int]:
    """(width, height) of the example's image."""
    h, w = example["image"].shape[:2]
    return w, h


def select_objects(example: Example, keep: np.ndarray) -> Example:
    """Keeps the objects where ``keep [N]`` (bool or indices) is set, in every per-object field."""
    out = dict(example)
    for k in PER_OBJECT_KEYS:
        if k in out:
            out[k] = np.asarray(out[k])[keep]
    return out


def drop_difficult(example: Example) -> Example:
    """Removes objects flagged difficult (darknet's voc_label.py does this for training)."""
    difficult = np.asarray(example["difficult"], bool)
    return select_objects(example, ~difficult) if difficult.any() else example


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray, in_size: tuple[int, int],
                    out_size: tuple[int, int]) -> np.ndarray:
    """Moves boxes through an axis-aligned affine map (scale, translate, flip; no rotation).

    Args:
      boxes: float [N, 4] normalized xyxy in the input image.
      matrix: [3, 3] continuous pixel coordinates, input -> output.
      in_size, out_size: (width, height) of the input and output images.
    Returns:
      float32 [N, 4] normalized xyxy in the output image, not clipped (may exceed [0, 1]).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    (in_w, in_h), (out_w, out_h) = in_size, out_size
    (m00, _, m02), (_, m11, m12) = matrix[:2].tolist()  # Python floats: a tenth of numpy scalar arithmetic
    # normalized in -> normalized out: x' = (x * in_w * m00 + m02) / out_w (one multiply-add for all four)
    sx, sy = m00 * in_w / out_w, m11 * in_h / out_h
    tx, ty = m02 / out_w, m12 / out_h
    out = boxes * np.array([sx, sy, sx, sy]) + np.array([tx, ty, tx, ty])
    if sx < 0:  # a flip swaps the x corners
        out = out[:, [2, 1, 0, 3]]
    if sy < 0:
        out = out[:, [0, 3, 2, 1]]
    return out.astype(np.float32)


def clip_and_filter_boxes(example: Example, unclipped_boxes: np.ndarray | None = None, *,
                          min_size_px: float = 1.0, min_visible_fraction: float = 0.25) -> Example:
    """Clips boxes to the image and drops the ones that became (near) empty or were mostly cut away.

    Args:
      example: Example whose "boxes" (normalized xyxy) may exceed [0, 1].
      unclipped_boxes: [N, 4] the boxes before any cut, to measure the visible fraction; defaults to
        ``example["boxes"]``.
      min_size_px: a box narrower or lower than this many output pixels is dropped (darknet drops w or h
        below 0.001 of the image; one pixel is the smallest box a grid can learn from).
      min_visible_fraction: a box whose clipped area is below this fraction of its unclipped area is dropped
        (only its edge remains, so it would teach the wrong center).
    Returns:
      Example with boxes in [0, 1], each at least ``min_size_px`` wide and high.
    """
    w, h = _size(example)
    boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
    full = boxes if unclipped_boxes is None else np.asarray(unclipped_boxes, np.float32).reshape(-1, 4)
    clipped = np.minimum(np.maximum(boxes, 0.0), 1.0)  # = np.clip, without its wrapper's cost
    size = np.array([w, h], np.float32)
    wh = (clipped[:, 2:] - clipped[:, :2]) * size  # [N, 2] output pixels
    area = wh[:, 0] * wh[:, 1]
    full_wh = np.maximum(full[:, 2:] - full[:, :2], 0.0) * size
    keep = (wh >= min_size_px).all(1) & (area > 0) & (area >= min_visible_fraction * (full_wh[:, 0] * full_wh[:, 1]))
    out = dict(example, boxes=clipped)
    return out if keep.all() else select_objects(out, keep)


# ---------------------------------------------------------------------------------- affine matrices
def _affine(sx: float, sy: float, tx: float, ty: float) -> np.ndarray:
    return np.array([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]], np.float64)


def resize_matrix(in_size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """[3, 3] plain resize of an (in_w, in_h) image to (out_w, out_h) (aspect ratio changes)."""
    return _affine(out_size[0] / in_size[0], out_size[1] / in_size[1], 0.0, 0.0)


def letterbox_matrix(in_size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """[3, 3] aspect-preserving fit of (in_w, in_h) into (out_w, out_h), centered (darknet letterbox_image)."""
    s = min(out_size[0] / in_size[0], out_size[1] / in_size[1])
    return _affine(s, s, (out_size[0] - in_size[0] * s) / 2, (out_size[1] - in_size[1] * s) / 2)


def hflip_matrix(width: int) -> np.ndarray:
    """[3, 3] horizontal flip of an image ``width`` pixels wide: x -> width - x."""
    return _affine(-1.0, 1.0, float(width), 0.0)


def crop_jitter_matrix(rng: np.random.Generator, in_size: tuple[int, int], out_size: tuple[int, int],
                       jitter: float, *, letterbox: bool = False) -> np.ndarray:
    """[3, 3] darknet ``jitter``: crop a randomly moved window, then fit it to ``out_size``.

    As in darknet's ``load_data_region``: each of the four sides moves by ``U(-jitter, jitter)`` x the image
    side (outward moves read past the border), and the window is resized to the output (or letterboxed).
    """
    w, h = in_size
    # One draw of four is the same stream as two draws of two (left, right, then top, bottom).
    left, right, top, bottom = rng.uniform(-jitter, jitter, 4).tolist()
    left, right, top, bottom = left * w, right * w, top * h, bottom * h
    # Keep at least 1% of each side so the window never collapses (jitter >= 0.5 could otherwise do it).
    crop_w = max(w - left - right, 0.01 * w)
    crop_h = max(h - top - bottom, 0.01 * h)
    fit = (letterbox_matrix if letterbox else resize_matrix)((crop_w, crop_h), out_size)
    (sx, _, tx), (_, sy, ty) = fit[:2].tolist()
    return _affine(sx, sy, tx - left * sx, ty - top * sy)  # fit @ (shift by -left, -top)


def scale_translate_matrix(rng: np.random.Generator, size: tuple[int, int], scale: float,
                           translate: float) -> np.ndarray:
    """[3, 3] YOLOv1 paper: scale by ``U(1 - scale, 1 + scale)`` about the center, shift by ``U(-t, t)`` x size.

    Maps a ``size`` (w, h) image onto itself.
    """
    w, h = size
    s = rng.uniform(1.0 - scale, 1.0 + scale)
    tx, ty = rng.uniform(-translate, translate, 2) * np.array([w, h])
    return _affine(1.0, 1.0, w / 2 + tx, h / 2 + ty) @ _affine(s, s, 0.0, 0.0) @ _affine(1.0, 1.0, -w / 2, -h / 2)


def zoom_window_matrix(rng: np.random.Generator, size: tuple[int, int], zoom: float) -> np.ndarray:
    """[3, 3] beyond the papers (``augment.zoom``): enlarge a ``size`` (w, h) image ``zoom`` times, then keep a
    ``size`` window of it at a uniformly drawn place. Objects are seen at the scale of a ``zoom`` x ``size``
    input (train on crops, evaluate whole images at ``data.eval_image_size``), at the cost of a ``size`` input."""
    if zoom < 1.0:
        raise ValueError(f"augment.zoom={zoom}: expected >= 1")
    w, h = size
    ox, oy = rng.uniform(0.0, 1.0, 2) * np.array([(zoom - 1.0) * w, (zoom - 1.0) * h])
    return _affine(zoom, zoom, -float(ox), -float(oy))


# ------------------------------------------------------------------------------------------ warping
def _source_window(matrix: np.ndarray, out_size: tuple[int, int]
                   ) -> tuple[tuple[int, int, int, int], bool]:
    """The whole-pixel source window an axis-aligned map sends onto the output.

    Returns:
      ((x0, y0, x1, y1) source window, may reach outside the image; flip: whether the map mirrors x).
    """
    out_w, out_h = out_size
    (m00, _, m02), (_, m11, m12) = matrix[:2].tolist()  # Python floats: a tenth of numpy scalar arithmetic
    flip = m00 < 0
    if flip:  # matrix = F @ unflipped, F (x -> out_w - x) its own inverse; the window is mirrored at the end
        m00, m02 = -m00, out_w - m02
    x0 = int(round(-m02 / m00))
    x1 = max(int(round((out_w - m02) / m00)), x0 + 1)
    y0 = int(round(-m12 / m11))
    y1 = max(int(round((out_h - m12) / m11)), y0 + 1)
    return (x0, y0, x1, y1), flip


def _into(dst: np.ndarray, result: np.ndarray) -> None:
    """Makes sure a cv2 call given ``dst=dst`` wrote there (cv2 hands back ``dst`` itself when it did)."""
    if result is not dst:
        dst[:] = result


def _fill_border(out: np.ndarray, rect: tuple[int, int, int, int], border: str) -> None:
    """Fills ``out`` (uint8 [H, W, 3]) outside ``rect`` = (x0, y0, x1, y1), in place: with the rectangle's
    edge rows / columns repeated ("replicate": the pixels of ``cv2.copyMakeBorder``'s BORDER_REPLICATE) or
    with gray. Touches only the pad bands."""
    x0, y0, x1, y1 = rect
    h, w = out.shape[:2]
    if border == "gray":
        out[:y0] = GRAY
        out[y1:] = GRAY
        out[y0:y1, :x0] = GRAY
        out[y0:y1, x1:] = GRAY
        return
    if y0 > 0:  # rows first (contiguous broadcasts), then whole columns
        out[:y0, x0:x1] = out[y0, x0:x1]
    if y1 < h:
        out[y1:, x0:x1] = out[y1 - 1, x0:x1]
    # Columns: a 1-pixel column stretched by nearest-neighbour resize = that column repeated, in C.
    if x0 > 0:
        _into(out[:, :x0], cv2.resize(out[:, x0:x0 + 1], (x0, h), dst=out[:, :x0], interpolation=cv2.INTER_NEAREST))
    if x1 < w:
        _into(out[:, x1:], cv2.resize(out[:, x1 - 1:x1], (w - x1, h), dst=out[:, x1:],
                                      interpolation=cv2.INTER_NEAREST))


def _resample(image: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int], border: str,
              out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Applies an axis-aligned affine map (scale, translate, flip) with one ``cv2.resize`` of the visible part.

    The part of the source window inside the image is resized (several times faster than
    ``cv2.warpAffine``) straight into its place in the output, and the rest of the output is filled by
    repeating its edge rows / columns ("replicate": the same as resizing a border-replicated window) or with
    gray (``_fill_border``, which touches only the pad bands).
    The placement is rounded to whole output pixels, so the map actually applied differs from ``matrix`` by
    under one output pixel; it is returned and the boxes must follow *it*, so image and boxes
    stay exactly consistent.

    Args:
      out: optional uint8 [out_h, out_w, 3] array to write the result into (e.g. a batch slot).
    Returns:
      (uint8 [out_h, out_w, 3] image, [3, 3] effective matrix, source -> output continuous pixels).
    """
    if border not in ("replicate", "gray"):
        raise ValueError(f"augment border: expected 'replicate' or 'gray', got {border!r}")
    h, w = image.shape[:2]
    out_w, out_h = int(out_size[0]), int(out_size[1])
    if out is None:
        out = np.empty((out_h, out_w, 3), np.uint8)
    (x0, y0, x1, y1), flip = _source_window(matrix, (out_w, out_h))
    cx0, cx1, cy0, cy1 = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
    sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
    if cx1 <= cx0 or cy1 <= cy0:  # the window misses the image entirely: nothing to replicate
        out[:] = GRAY
        return out, (_affine(-sx, sy, out_w + x0 * sx, -y0 * sy) if flip else _affine(sx, sy, -x0 * sx, -y0 * sy))
    # Output rectangle [ox0, ox1) x [oy0, oy1) of the visible source part (unflipped), at least one pixel.
    ox0 = min(int(round((cx0 - x0) * sx)), out_w - 1)
    ox1 = max(int(round((cx1 - x0) * sx)), ox0 + 1)
    oy0 = min(int(round((cy0 - y0) * sy)), out_h - 1)
    oy1 = max(int(round((cy1 - y0) * sy)), oy0 + 1)
    rx, ry = (ox1 - ox0) / (cx1 - cx0), (oy1 - oy0) / (cy1 - cy0)
    tx, ty = ox0 - cx0 * rx, oy0 - cy0 * ry
    window = image[cy0:cy1, cx0:cx1]  # a view: cv2 reads it in place
    if flip:  # the flipped map: x -> out_w - x after the unflipped one
        ox0, ox1 = out_w - ox1, out_w - ox0
        effective = _affine(-rx, ry, out_w - tx, ty)
    else:
        effective = _affine(rx, ry, tx, ty)
    # The placed window is written straight into its rectangle of ``out`` (a strided view: cv2 writes into
    # it in place), so no pass copies a resized window into the output; only the pad bands are filled after.
    place = out[oy0:oy1, ox0:ox1]
    resized = window.shape[:2] != (oy1 - oy0, ox1 - ox0)
    if flip:
        _into(place, cv2.flip(cv2.resize(window, (ox1 - ox0, oy1 - oy0), interpolation=cv2.INTER_LINEAR)
                              if resized else window, 1, dst=place))
    elif resized:
        _into(place, cv2.resize(window, (ox1 - ox0, oy1 - oy0), dst=place, interpolation=cv2.INTER_LINEAR))
    else:
        place[:] = window
    _fill_border(out, (ox0, oy0, ox1, oy1), border)
    return out, effective


def warp_affine(example: Example, matrix: np.ndarray, out_size: tuple[int, int], *, border: str = "replicate",
                min_size_px: float = 1.0, min_visible_fraction: float = 0.25, out: np.ndarray | None = None
                ) -> Example:
    """Warps image and boxes with ``matrix`` into an ``out_size`` (w, h) image, then clips/filters the boxes.

    Args:
      example: Example.
      matrix: [3, 3] axis-aligned (scale, translate, flip) map in continuous pixel coordinates, input -> output.
      out_size: (width, height) of the output.
      border: "replicate" (darknet's crop_image clamps at the border) or "gray" (127, the letterbox fill).
      min_size_px, min_visible_fraction: see ``clip_and_filter_boxes``.
      out: optional uint8 [out_h, out_w, 3] array the image is written into (and returned as "image").
    Returns:
      Example with a uint8 [out_h, out_w, 3] image and boxes in [0, 1].
    """
    if abs(matrix[0, 1]) > 1e-12 or abs(matrix[1, 0]) > 1e-12:
        raise ValueError("warp_affine: only axis-aligned maps (no rotation or shear) are supported")
    in_size = _size(example)
    image, matrix = _resample(example["image"], matrix, out_size, border, out)
    boxes = transform_boxes(example["boxes"], matrix, in_size, out_size)
    out = dict(example, image=image, boxes=boxes)
    return clip_and_filter_boxes(out, boxes, min_size_px=min_size_px, min_visible_fraction=min_visible_fraction)


def resize(example: Example, out_size: tuple[int, int]) -> Example:
    """Plain resize to ``out_size`` (w, h); boxes keep their normalized coordinates."""
    return warp_affine(example, resize_matrix(_size(example), out_size), out_size)


def letterbox(example: Example, out_size: tuple[int, int]) -> Example:
    """Aspect-preserving resize into ``out_size`` (w, h) with gray padding; boxes move with the image."""
    return warp_affine(example, letterbox_matrix(_size(example), out_size), out_size, border="gray")


def hflip(example: Example) -> Example:
    """Exact horizontal flip (no resampling): x -> 1 - x for the boxes. Applying it twice is the identity."""
    b = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
    boxes = np.stack([1.0 - b[:, 2], b[:, 1], 1.0 - b[:, 0], b[:, 3]], axis=1).astype(np.float32)
    return dict(example, image=np.ascontiguousarray(example["image"][:, ::-1]), boxes=boxes)


def random_hflip(example: Example, rng: np.random.Generator, p: float = 0.5) -> Example:
    """Flips horizontally with probability ``p``."""
    return hflip(example) if rng.uniform() < p else example


def random_crop_jitter(example: Example, rng: np.random.Generator, jitter: float,
                       out_size: tuple[int, int] | None = None, **warp_kwargs) -> Example:
    """Darknet ``jitter`` crop (see ``crop_jitter_matrix``), resized to ``out_size`` (default: input size)."""
    out_size = out_size or _size(example)
    return warp_affine(example, crop_jitter_matrix(rng, _size(example), out_size, jitter), out_size,
                       **warp_kwargs)


def random_scale_translate(example: Example, rng: np.random.Generator, scale: float = 0.2,
                           translate: float = 0.2, **warp_kwargs) -> Example:
    """YOLOv1 paper scaling and translation up to 20% (see ``scale_translate_matrix``); size unchanged."""
    size = _size(example)
    return warp_affine(example, scale_translate_matrix(rng, size, scale, translate), size, **warp_kwargs)


# ------------------------------------------------------------------------------------- photometric
def _rand_scale(rng: np.random.Generator, s: float) -> float:
    """darknet rand_scale: a factor in [1, s], inverted with probability 1/2."""
    f = rng.uniform(1.0, s) if s > 1.0 else 1.0
    return f if rng.uniform() < 0.5 else 1.0 / f


_LEVELS_INT = np.arange(256)
_LEVELS = _LEVELS_INT.astype(np.float32)


def _hsv_tables(dhue: float, sat: float, exposure: float) -> list[np.ndarray | None]:
    """uint8 [256] lookup tables for OpenCV's 8-bit full-range H, S and V (None where the op is off)."""
    shift = int(round(dhue * 256)) % 256
    # Factors are positive, so only the top needs clamping (np.minimum: np.clip's wrapper costs more here).
    return [(_LEVELS_INT + shift).astype(np.uint8) if shift else None,  # uint8 wrap = the hue circle
            np.minimum(_LEVELS * sat + 0.5, 255).astype(np.uint8) if sat != 1.0 else None,
            np.minimum(_LEVELS * exposure + 0.5, 255).astype(np.uint8) if exposure != 1.0 else None]


def hsv_adjust(image: np.ndarray, dhue: float, sat: float, exposure: float, *,
               out: np.ndarray | None = None) -> np.ndarray:
    """Shifts hue by ``dhue`` (fraction of the circle) and scales saturation / value, uint8 RGB -> uint8 RGB.

    Uses OpenCV's 8-bit "full" HSV (hue 0..255 = the whole circle, so the shift wraps exactly modulo 256) and
    one lookup table per channel: several times faster than float HSV, within one quantization step of
    darknet's float version. Pointwise, so it commutes with cropping, padding and flipping. ``out``: a
    C-contiguous uint8 array of the image's shape to write the result into (it may be ``image`` itself).
    """
    if sat < 0 or exposure < 0:
        raise ValueError(f"hsv_adjust: saturation and exposure factors must be >= 0, got {sat}, {exposure}")
    planes = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL))
    # Per-plane 1-channel LUTs beat one 3-channel LUT call by about 2x in OpenCV 4.x.
    planes = [p if t is None else cv2.LUT(p, t) for p, t in zip(planes, _hsv_tables(dhue, sat, exposure))]
    return cv2.cvtColor(cv2.merge(planes), cv2.COLOR_HSV2RGB_FULL, dst=out)


def photometric_enabled(cfg: Mapping[str, Any]) -> bool:
    """Whether ``cfg`` (``data_cfg.augment``) turns on any HSV jitter (hue > 0, saturation or exposure > 1)."""
    return float(cfg["hue"]) > 0 or float(cfg["saturation"]) > 1.0 or float(cfg["exposure"]) > 1.0


IDENTITY_HSV = (0.0, 1.0, 1.0)  # (dhue, sat, exposure) that leaves an image as it is


def draw_hsv(rng: np.random.Generator, hue: float, saturation: float, exposure: float
             ) -> tuple[float, float, float]:
    """darknet random_distort_image draws: (dhue ~ U(-hue, hue), sat factor, exposure factor), each rounded to
    float32 (the device applies them in float32, so both placements see the same numbers); ``IDENTITY_HSV``
    exactly where every draw is the identity (e.g. all three ops off)."""
    dhue = rng.uniform(-hue, hue) if hue > 0 else 0.0
    dsat = _rand_scale(rng, saturation)
    dexp = _rand_scale(rng, exposure)
    return tuple(float(np.float32(x)) for x in (dhue, dsat, dexp))


def random_hsv(example: Example, rng: np.random.Generator, hue: float = 0.1, saturation: float = 1.5,
               exposure: float = 1.5) -> Example:
    """darknet random_distort_image: hue U(-hue, hue), saturation and exposure rand_scale; boxes unchanged."""
    params = draw_hsv(rng, hue, saturation, exposure)
    if params == IDENTITY_HSV:
        return example
    return dict(example, image=hsv_adjust(example["image"], *params))


# -------------------------------------------------------------------------------- composed pipelines
def train_matrix(rng: np.random.Generator, in_size: tuple[int, int], out_size: tuple[int, int],
                 cfg: Mapping[str, Any]) -> np.ndarray:
    """[3, 3] all enabled geometric training ops of an ``in_size`` (w, h) image composed into one map.

    Order (darknet v2 load_data_region, plus the v1 paper op): jitter crop -> fit (resize or letterbox) -> zoom window
    (beyond the papers; off at 1) -> v1 scale/translate -> horizontal flip. ``cfg`` is ``data_cfg.augment`` (see
    ``pipeline.augment_preset``); a value of 0 (False for flip) turns an op off. Depends only on the image *size*,
    so it can be drawn from the JPEG header before decoding (``pipeline`` then decodes at reduced size when the map
    shrinks >= 2x).
    """
    letterboxed = bool(cfg["letterbox"])
    if cfg["jitter"] > 0:
        m = crop_jitter_matrix(rng, in_size, out_size, cfg["jitter"], letterbox=letterboxed)
    else:
        m = (letterbox_matrix if letterboxed else resize_matrix)(in_size, out_size)
    zoom = float(cfg.get("zoom", 1.0))
    if zoom != 1.0:
        m = zoom_window_matrix(rng, out_size, zoom) @ m
    if cfg["scale"] > 0 or cfg["translate"] > 0:
        m = scale_translate_matrix(rng, out_size, cfg["scale"], cfg["translate"]) @ m
    if cfg["flip"] and rng.uniform() < 0.5:  # hflip_matrix(out_w) @ m, as a row operation
        m[0] = -m[0]
        m[0, 2] += out_size[0]
    return m


def mosaic_layout(rng: np.random.Generator, size: int, in_sizes: list[tuple[int, int]],
                  scale: tuple[float, float] = (0.5, 1.0), flip: bool = True
                  ) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Where the four images of a mosaic go (beyond the papers: YOLOv4's mosaic, on the affine maps above).

    A center ``(cx, cy)`` is drawn uniformly in the middle half of the ``size`` x ``size`` output; it splits the
    output into four regions (top-left, top-right, bottom-left, bottom-right). Image ``k`` of ``in_sizes``
    ((w, h) of each) is scaled so that its long side is ``U(scale) * size`` (aspect kept), flipped with
    probability 1/2 when ``flip``, and placed with its corner that faces the center on the center, reaching away
    from it: its part inside region ``k`` is what the output shows.

    Returns, for each image, ([3, 3] map of its pixels to the *region's* pixels (continuous coordinates,
    ``warp_affine`` of the region), region (x0, y0, x1, y1) in output pixels).
    """
    if len(in_sizes) != 4:
        raise ValueError(f"mosaic_layout: expected 4 image sizes, got {len(in_sizes)}")
    lo, hi = float(scale[0]), float(scale[1])
    if not 0 < lo <= hi:
        raise ValueError(f"augment.mosaic_scale={tuple(scale)}: expected 0 < low <= high")
    cx = min(max(int(round(rng.uniform(0.25, 0.75) * size)), 1), size - 1)
    cy = min(max(int(round(rng.uniform(0.25, 0.75) * size)), 1), size - 1)
    regions = [(0, 0, cx, cy), (cx, 0, size, cy), (0, cy, cx, size), (cx, cy, size, size)]
    out = []
    for k, ((w, h), region) in enumerate(zip(in_sizes, regions)):
        s = rng.uniform(lo, hi) * size / max(w, h)
        left, top = k % 2 == 0, k < 2  # the image lies left of / above the center
        tx = cx - w * s if left else float(cx)
        ty = cy - h * s if top else float(cy)
        m = _affine(s, s, tx - region[0], ty - region[1])
        if flip and rng.uniform() < 0.5:
            m = m @ hflip_matrix(w)  # mirrored in place, then placed
        out.append((m, region))
    return out


def paste_boxes(boxes: np.ndarray, region: tuple[int, int, int, int], size: int) -> np.ndarray:
    """[N, 4] boxes normalized to a ``region`` (x0, y0, x1, y1) of a ``size`` x ``size`` image -> normalized to
    the image."""
    x0, y0, x1, y1 = region
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    scale = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], np.float32) / size
    return b * scale + np.array([x0, y0, x0, y0], np.float32) / size


def train_warp(example: Example, matrix: np.ndarray, out_size: tuple[int, int], cfg: Mapping[str, Any], *,
               out: np.ndarray | None = None) -> Example:
    """Warps an Example with a ``train_matrix`` (of *this* image's size) into ``out_size`` (w, h), with the
    border, min_box_size_px and min_visible_fraction of ``cfg`` (``data_cfg.augment``); ``out``: see
    ``warp_affine``."""
    border = "gray" if cfg["letterbox"] else cfg["border"]
    return warp_affine(example, matrix, out_size, border=border, min_size_px=cfg["min_box_size_px"],
                       min_visible_fraction=cfg["min_visible_fraction"], out=out)


def train_augment(example: Example, rng: np.random.Generator, out_size: tuple[int, int],
                  cfg: Mapping[str, Any]) -> Example:
    """The host's training augmentation: the geometric ops in one warp -> Example at ``out_size`` (w, h).

    ``train_matrix`` then ``train_warp``. The photometric ops of ``cfg`` (hue, saturation, exposure) are not
    applied here: the training pipeline draws them after the matrix (``draw_hsv``) and applies them on the
    device or in its batch threads (``data.photometric_on``).
    """
    return train_warp(example, train_matrix(rng, _size(example), out_size, cfg), out_size, cfg)


def eval_preprocess(example: Example, out_size: tuple[int, int], *, letterbox_eval: bool = False) -> Example:
    """Deterministic resize (or letterbox) for evaluation; boxes are clipped but never dropped for size.

    Returns an Example at ``out_size`` (w, h) whose boxes are normalized to the *network input*; with a plain
    resize they equal the original normalized boxes, with letterbox use ``input_boxes_to_original``.
    """
    in_size = _size(example)
    m = (letterbox_matrix if letterbox_eval else resize_matrix)(in_size, out_size)
    return warp_affine(example, m, out_size, border="gray" if letterbox_eval else "replicate", min_size_px=0.0,
                       min_visible_fraction=0.0)


def input_boxes_to_original(boxes: np.ndarray, orig_size: tuple[int, int], input_size: tuple[int, int], *,
                            letterbox_eval: bool = False) -> np.ndarray:
    """Maps boxes normalized to the network input back to normalized boxes of the original image.

    Args:
      boxes: [..., 4] normalized xyxy in the (input_w, input_h) network input.
      orig_size: (height, width) of the original image, as in the eval batch's ``orig_size``.
      input_size: (width, height) of the network input.
    Returns:
      [..., 4] normalized xyxy of the original image (identity for a plain resize).
    """
    if not letterbox_eval:
        return np.asarray(boxes, np.float32)
    h, w = orig_size
    m = np.linalg.inv(letterbox_matrix((w, h), input_size))
    b = np.asarray(boxes, np.float64)
    shape = b.shape
    out = transform_boxes(b.reshape(-1, 4), m, input_size, (w, h))
    return out.reshape(shape)

