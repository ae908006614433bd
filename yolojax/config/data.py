"""Default data configs (``config.data``, its ``augment`` and ``synthetic`` sections) and the multi-scale sizes.

Imports only ml_collections, so experiment configs (``configs/*.py``) can build on them without pulling in the
data stack (grain, OpenCV, JAX). ``yolojax.data.pipeline`` and ``yolojax.data.synthetic`` re-export them.
"""
from __future__ import annotations

import ml_collections


def default_synthetic_config() -> ml_collections.ConfigDict:
    """Difficulty knobs of the synthetic dataset (``data_cfg.synthetic``)."""
    c = ml_collections.ConfigDict()
    c.num_classes = 5           # <= 20; classes < 10 differ in shape and colour
    c.image_width = 160         # pixels; any size works
    c.image_height = 160
    c.num_train = 2000          # examples in the "train" split
    c.num_eval = 500            # examples in the "eval" split
    c.min_objects = 1           # objects per image, uniform in [min, max]
    c.max_objects = 4
    c.min_object_size = 0.15    # object side sqrt(w*h) as a fraction of the shorter image side
    c.max_object_size = 0.45
    c.max_aspect_ratio = 2.0    # w/h drawn log-uniformly in [1/r, r]
    c.max_overlap_iou = 0.3     # placement retries while IoU with an earlier object exceeds this
    c.truncation_prob = 0.1     # chance an object may extend past the border (then clipped, truncated)
    c.clutter = 0.5             # 0 = plain background ... 1 = ~30 distractors per image
    c.noise_std = 4.0           # gaussian pixel noise (0-255 scale)
    c.difficult_visible_fraction = 0.5  # objects less visible than this (occluded) are flagged difficult
    c.seed = 0
    return c


def augment_preset(name: str) -> ml_collections.ConfigDict:
    """Augmentation settings (``data_cfg.augment``) of a paper: "v2" (darknet yolov2-voc.cfg), "v1" (paper)
    or "none".

    v2: jitter .3, flip, hue .1, saturation 1.5, exposure 1.5 (darknet yolov2-voc.cfg).
    v1: random scaling and translation up to 20% and saturation/exposure 1.5 (paper section 2.2), no flip,
        no hue (darknet's yolov1.cfg uses jitter .2 instead of scale/translate: set jitter=0.2, scale=0).
    """
    c = ml_collections.ConfigDict()
    c.jitter = 0.3               # darknet crop jitter: each side moves by up to this fraction (0 = off)
    c.scale = 0.0                # v1 paper: scale in [1 - scale, 1 + scale] (0 = off)
    c.translate = 0.0            # v1 paper: shift up to this fraction of the size (0 = off)
    c.flip = True                # random horizontal flip
    c.hue = 0.1                  # hue shift up to this fraction of the circle (0 = off)
    c.saturation = 1.5           # saturation factor in [1/s, s] (1.0 = off)
    c.exposure = 1.5             # HSV value factor in [1/e, e] (1.0 = off)
    c.letterbox = False          # aspect-preserving fit with gray padding instead of a plain resize
    c.border = "replicate"       # fill outside the source: "replicate" (darknet crop_image) or "gray"
    c.min_box_size_px = 1.0      # drop boxes narrower/lower than this in the network input
    c.min_visible_fraction = 0.25  # drop boxes with less than this fraction of their area left after a cut
    # Beyond the papers (configs/custom.py): the chance that a training image is a mosaic of four (YOLOv4), each
    # scaled to a long side of U(mosaic_scale) x the input size and placed around a random center (0 = off).
    c.mosaic = 0.0
    c.mosaic_scale = (0.5, 1.0)
    # Beyond the papers (configs/custom.py): train on a window of the image fitted to zoom x the input size, so
    # objects are seen at the scale of a zoom x larger input (evaluate at data.eval_image_size = that size; auto
    # anchors are fitted there). 1 = off. Mosaic images are not zoomed (mosaic_scale sets their size).
    c.zoom = 1.0
    if name == "v1":
        c.jitter, c.scale, c.translate, c.flip, c.hue = 0.0, 0.2, 0.2, False, 0.0
    elif name == "none":
        c.jitter, c.flip, c.hue, c.saturation, c.exposure = 0.0, False, 0.0, 1.0, 1.0
    elif name != "v2":  # the defaults above are the v2 preset
        raise ValueError(f"augment preset: expected 'v1', 'v2' or 'none', got {name!r}")
    return c


def default_data_config() -> ml_collections.ConfigDict:
    """Default ``config.data`` (VOC 07+12 -> 2007 test, YOLOv2 augmentation, 416 px, no multi-scale).

    Fields:
      source: "tfds" | "voc_dir" | "voc_tarballs" | "synthetic" | "files" (see sources.py).
      format: "" for the sources above; with source="files": "voc" | "yolo" | "coco" (yolojax.data.formats).
      root: with source="files": the dataset folder, or its ultralytics data.yaml / darknet .data file.
      class_names: with source="files": the class names in index order; () = the dataset's own list (COCO
        categories, data.yaml names, .data names=) or discovered from the annotations (sorted).
      names_file: with source="files": a darknet .names file instead of class_names.
      tfds_data_dir: TFDS data_dir holding prepared voc/2007, voc/2012 ("" = TFDS default ~/tensorflow_datasets).
      voc_dir: an extracted VOCdevkit folder (holding VOC2007/, VOC2012/) for source="voc_dir".
      voc_tarballs: folder with the original VOC tarballs for source="voc_tarballs".
      extract_dir: where tarballs are extracted ("" = <voc_tarballs>/extracted).
      train_split, eval_split: "07+12", "2007_test", "{2007,2012}_{trainval,train,val}" (VOC) or
        "train" / "eval" (synthetic); for source="files" the dataset's split names (formats.py).
      synthetic: the synthetic dataset's knobs (synthetic.default_synthetic_config).
      image_size: training input size in px (square) when multiscale_sizes is empty.
      multiscale_sizes: e.g. (320, 352, ..., 608); one is drawn every multiscale_every_steps steps.
      multiscale_every_steps: 10 in darknet.
      eval_image_size: evaluation input size in px.
      eval_letterbox: letterbox instead of plain resize at evaluation.
      max_boxes: M, boxes per image in a batch (pad / truncate).
      drop_difficult: remove difficult objects from training batches (darknet voc_label.py does).
      shuffle: reshuffle the training records every epoch.
      num_workers: grain worker processes (0 = in this process); does not change the batches.
      num_threads: grain threads building batches in each process; does not change the batches.
      prefetch_batches: batches buffered ahead by grain.
      check: check the train and eval splits before step 1 (yolojax.data.check; docs/data_check.md).
      fast_decode: training only: decode JPEGs with libjpeg-turbo's fast integer IDCT and plain chroma
        upsampling (pipeline.decode_reduced; ~15% less decode time, pixels ~1.4 levels from the exact decode
        on average; docs/input_pipeline.md). Evaluation always decodes exactly.
      photometric_on: where the training HSV jitter (augment.hue / saturation / exposure) is applied:
        "device" (inside the jitted step, on the uint8 batch), "host" (OpenCV, in the batch threads) or
        "auto": "host" when the JAX backend is the CPU, else "device". Same draws, same pixels within 1/255.
      augment: see augment_preset.
    """
    c = ml_collections.ConfigDict()
    c.source = "tfds"
    c.tfds_data_dir = ""
    c.voc_dir = ""
    c.voc_tarballs = ""
    c.extract_dir = ""
    # Your own dataset (source="files"; fields owned by yolojax.data.formats, documented above).
    c.format = ""
    c.root = ""
    c.class_names = ()
    c.names_file = ""
    c.train_split = "07+12"
    c.eval_split = "2007_test"
    c.synthetic = default_synthetic_config()
    c.image_size = 416
    c.multiscale_sizes = ()
    c.multiscale_every_steps = 10
    c.eval_image_size = 416
    c.eval_letterbox = False
    c.max_boxes = 64
    c.drop_difficult = True
    c.shuffle = True
    c.num_workers = 0
    c.num_threads = 2
    c.prefetch_batches = 2
    # Check every annotation and listed image before step 1 (yolojax.data.check.require_clean; cached).
    c.check = True
    c.fast_decode = True
    c.photometric_on = "auto"
    c.augment = augment_preset("v2")
    return c


def anchor_input_size(data_cfg) -> float:
    """The input size (px) whose pixels the training objects are seen at: ``data.image_size``, times
    ``augment.zoom`` when training zooms (anchors in cells of 32 px there fit both training and evaluation)."""
    return float(data_cfg["image_size"]) * float(data_cfg["augment"].get("zoom", 1.0))


def darknet_multiscale_sizes(low: int = 320, high: int = 608, stride: int = 32) -> tuple[int, ...]:
    """(320, 352, ..., 608): darknet's multi-scale input sizes (multiples of the 32 px output stride)."""
    return tuple(range(low, high + 1, stride))
