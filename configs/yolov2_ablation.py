"""The YOLO9000 paper's Table 2 ablation ladder ("the path from YOLO to YOLOv2") as one config.

  python experiments/train.py --config configs/yolov2_ablation.py:passthrough --workdir runs/abl_passthrough

Each rung adds one change to the rung before it, and each change is a config switch:

  rung               paper mAP  switch(es) set by this rung
  baseline             63.4     YOLOv1 at 448 (model.name='yolov1', v1 loss and recipe)
  batch_norm           65.8     model.v1.batch_norm=True, model.v1.dropout_rate=0 (BN replaces dropout)
  hires_classifier     69.5     init.darknet_weights: a backbone classifier fine-tuned at 448 (you supply it;
                                 an empty value is refused at this rung and above)
  anchor_boxes         69.2     fully convolutional YOLOv2 head with anchors at 416 (13x13 grid),
                                 9 hand-picked anchors (3 scales x 3 aspect ratios), region loss
  new_network          69.6     Darknet-19 backbone
  dimension_priors     74.4     5 k-means VOC anchors (model.anchors, model.v2.num_anchors=5)
  passthrough          75.4     model.v2.passthrough='conv64_reorg' (before: 'none')
  multi_scale          76.8     data.multiscale_sizes={320..608} (before: ())
  hires_detector       78.6     data.eval_image_size=544

Limits of the ladder in this codebase (stated, not hidden): the models module has one fully convolutional
anchor head, on Darknet-19, so 'anchor_boxes' and 'new_network' are the same network (the YOLOv1 backbone with
an anchor head does not exist here); and the region loss/decoder always use darknet's sigmoid-constrained
location prediction, so 'dimension_priors' switches the priors (hand-picked -> k-means) but not the
parameterization. The 'hires_classifier' switch loads pretrained weights and needs the file.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs.base import MULTISCALE_SIZES_PX, VOC_ANCHORS, base_config, use_yolov1  # noqa: E402

RUNGS = ("baseline", "batch_norm", "hires_classifier", "anchor_boxes", "new_network", "dimension_priors",
         "passthrough", "multi_scale", "hires_detector")


def hand_picked_anchors(grid_px: int = 32) -> tuple[tuple[float, float], ...]:
    """Faster R-CNN style anchors: areas 128^2, 256^2, 512^2 px at aspect ratios 1:2, 1:1, 2:1, in grid units
    of a 32-px cell (the 13x13 grid at 416), as (w, h)."""
    out = []
    for side in (128.0, 256.0, 512.0):
        for ratio in (0.5, 1.0, 2.0):  # h / w
            w = side / ratio ** 0.5
            out.append((round(w / grid_px, 5), round(w * ratio / grid_px, 5)))
    return tuple(out)


def get_config(rung: str = "hires_detector"):
    """The config of ``rung`` (every switch of the rungs before it included)."""
    if rung not in RUNGS:
        raise ValueError(f"configs/yolov2_ablation.py: unknown rung {rung!r}; expected one of {RUNGS}")
    level = RUNGS.index(rung)
    c = base_config()
    c.data.multiscale_sizes = ()
    if level < RUNGS.index("anchor_boxes"):
        use_yolov1(c, "yolov1")
    if level >= RUNGS.index("batch_norm"):
        c.model.v1.batch_norm = True
        c.model.v1.dropout_rate = 0.0
    if level >= RUNGS.index("hires_classifier"):
        c.init.darknet_weights = "REQUIRED: --config.init.darknet_weights=PATH (448 classifier backbone)"
    if level >= RUNGS.index("anchor_boxes"):
        c.model.name = "yolov2"
        c.model.anchors = hand_picked_anchors()
        c.model.v2.num_anchors = len(c.model.anchors)
        c.model.v2.passthrough = "none"
    if level >= RUNGS.index("dimension_priors"):
        c.model.anchors = VOC_ANCHORS
        c.model.v2.num_anchors = len(VOC_ANCHORS)
    if level >= RUNGS.index("passthrough"):
        c.model.v2.passthrough = "conv64_reorg"
    if level >= RUNGS.index("multi_scale"):
        c.data.multiscale_sizes = MULTISCALE_SIZES_PX
    if level >= RUNGS.index("hires_detector"):
        c.data.eval_image_size = 544
    c.lock()
    return c
