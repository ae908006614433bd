"""The one evaluation path: detections on eval batches -> devkit boxes -> evaluators.

Training-time evaluation (``yolojax.training.train``) and ``experiments/evaluate.py`` (through
``yolojax.inference.api.evaluate``) both run :func:`evaluate_batches` on the same eval batches
(``yolojax.data.pipeline.make_eval_batches``), so a checkpoint gets one mAP whichever way it is scored.

Conversions, per image (``docs/conventions.md``):
  * detections leave the network as normalized xyxy of the network input; the letterbox (if the input was
    letterboxed) is undone (``augment.input_boxes_to_original``), the boxes are clipped to the image and turned
    into the devkit's 1-based pixels the way darknet writes result files (``voc.normalized_to_devkit_px``);
  * ground truth comes from the same batch: its normalized boxes, letterbox undone, back to the annotation's
    1-based pixels (``boxes.normalized_to_voc_px``, the inverse of how the sources read the XML).
Padding rows of a batch (``index == -1``: past the end of the split, or an image that could not be decoded)
are skipped; undecodable images are counted by the pipeline (``sources.DATA_WARNINGS``).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from yolojax.data import augment
from yolojax.evaluation import voc
from yolojax.ops import boxes as box_lib

Batch = Mapping[str, np.ndarray]


def original_boxes(boxes: np.ndarray, orig_hw: tuple[int, int], input_hw: tuple[int, int], letterbox: bool
                   ) -> np.ndarray:
    """``[K, 4]`` normalized xyxy of the network input -> normalized xyxy of the original image (float64)."""

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not letterbox:
        return boxes
    return np.asarray(augment.input_boxes_to_original(boxes, orig_hw, (input_hw[1], input_hw[0]),
                                                      letterbox_eval=True), np.float64).reshape(-1, 4)


def devkit_detections(boxes: np.ndarray, orig_hw: tuple[int, int], input_hw: tuple[int, int],
                      letterbox: bool) -> np.ndarray:
    """Detections ``[K, 4]`` normalized xyxy of the network input -> ``[K, 4]`` VOC 1-based pixel xyxy of the
    original image, clipped to it (darknet's result-file conversion)."""

    height, width = orig_hw
    norm = np.clip(original_boxes(boxes, orig_hw, input_hw, letterbox), 0.0, 1.0)
    return voc.normalized_to_devkit_px(norm, width, height)


def devkit_ground_truth(boxes: np.ndarray, orig_hw: tuple[int, int], input_hw: tuple[int, int],
                        letterbox: bool) -> np.ndarray:
    """Ground truth ``[M, 4]`` normalized xyxy of the network input -> the annotation's 1-based pixel xyxy."""

    height, width = orig_hw
    return box_lib.normalized_to_voc_px(original_boxes(boxes, orig_hw, input_hw, letterbox), width, height)


def add_batch(evaluators: Sequence[Any], dets: Batch, batch: Batch, *, image_id: Callable[[int], str],
              input_hw: tuple[int, int], letterbox: bool) -> int:
    """Feeds one eval batch and its detections to every evaluator (``add_ground_truth`` / ``add_detections``
    with devkit pixel boxes). Returns the number of (non-padding) images added.

    dets: host numpy ``batched_nms`` dict for the batch's rows (boxes ``[B, K, 4]`` normalized xyxy of the
    input, scores ``[B, K]``, classes ``[B, K]``, count ``[B]``). batch: an eval batch (boxes, classes, mask,
    difficult, orig_size (height, width), index).
    """
    added = 0
    for i, index in enumerate(np.asarray(batch["index"])):
        if index < 0:
            continue
        orig_hw = tuple(int(v) for v in batch["orig_size"][i])
        valid = np.asarray(batch["mask"][i], bool)
        k = int(dets["count"][i])
        name = image_id(int(index))
        gt_boxes = devkit_ground_truth(np.asarray(batch["boxes"][i])[valid], orig_hw, input_hw, letterbox)
        det_boxes = devkit_detections(np.asarray(dets["boxes"][i][:k]), orig_hw, input_hw, letterbox)
        for ev in evaluators:
            ev.add_ground_truth(name, boxes=gt_boxes, classes=np.asarray(batch["classes"][i])[valid],
                                difficult=np.asarray(batch["difficult"][i])[valid])
            ev.add_detections(name, boxes=det_boxes, scores=np.asarray(dets["scores"][i][:k], np.float64),
                              classes=np.asarray(dets["classes"][i][:k], np.int64))
        added += 1
    return added


def evaluate_batches(detect: Callable[[Batch], Batch], batches: Iterable[Batch], evaluators: Sequence[Any], *,
                     image_id: Callable[[int], str], input_hw: tuple[int, int], letterbox: bool,
                     on_batch: Callable[[Batch, Batch], None] | None = None) -> dict[str, Any]:
    """Runs ``detect`` (eval batch -> host detections dict for its rows) over ``batches`` and feeds the
    evaluators (see :func:`add_batch`). ``on_batch(batch, dets)`` sees each batch (e.g. to keep one for drawing).

    Returns {"num_images", "seconds" (whole loop), "images_per_sec" (after the first batch, whose time includes
    compilation; the whole loop when there is only one batch)}.
    """
    start = time.perf_counter()
    first_done, num, num_after_first = None, 0, 0
    for batch in batches:
        dets = detect(batch)
        added = add_batch(evaluators, dets, batch, image_id=image_id, input_hw=input_hw, letterbox=letterbox)
        if on_batch is not None:
            on_batch(batch, dets)
        num += added
        if first_done is None:
            first_done = time.perf_counter()
        else:
            num_after_first += added
    end = time.perf_counter()
    if num_after_first:
        rate = num_after_first / max(end - first_done, 1e-9)
    else:
        rate = num / max(end - start, 1e-9)
    return {"num_images": num, "seconds": end - start, "images_per_sec": rate}
