"""The YOLO9000 paper's Table 2 ablation ladder ("the path from YOLO to YOLOv2") as one config.

  python experiments/train.py --config configs/yolov2_ablation.py:passthrough --workdir runs/abl_passthrough
  python experiments/ablate.py --root runs/ablation         # every rung, one after the other, and the table

Each rung adds exactly the paper's change to the rung before it (tests/test_ablation.py diffs the configs):

  rung               paper mAP  fields set by this rung
  baseline             63.4     YOLOv1 at 448 (model.name='yolov1', v1 detection loss and recipe)
  batch_norm           65.8     model.v1.batch_norm=True, model.v1.dropout_rate=0 (BN replaces dropout)
  hires_classifier     69.5     init.hires_classifier=True: the trunk starts from its ImageNet classifier
                                 fine-tuned at 448 px (see "Pretrained trunks" below)
  anchor_boxes         69.2     convolutional + anchor boxes: model.name='yolov1_conv_anchors' (YOLOv1's trunk
                                 without its FC layers and its last maxpool, a 1x1 conv anchor head), 416 px
                                 (13x13), 9 hand-picked anchors, region-proposal offsets
                                 (model.v2.location='offset'), the region loss and the v2 recipe
  new_network          69.6     model.name='yolov2' with model.v2.passthrough='none': the Darknet-19 trunk,
                                 nothing else changes
  dimension_priors     74.4     dimension priors + location prediction: 5 k-means VOC anchors together with
                                 darknet's sigmoid form (model.v2.location='direct')
  passthrough          75.4     model.v2.passthrough='conv64_reorg'
  multi_scale          76.8     data.multiscale_sizes=(320, ..., 608)
  hires_detector       78.6     data.eval_image_size=544

The anchor_boxes rung is the one that leaves YOLOv1: with the region loss it also takes the YOLOv2 recipe of
yolojax/config/base.py (160 epochs, lr 1e-3 with burn-in, darknet v2 augmentation, score/NMS thresholds .005/.45);
the paper does not say which recipe its intermediate rungs used.

Pretrained trunks: init.hires_classifier=True says the trunk must start from a classifier fine-tuned at 448
(the YOLOv1 trunk's up to anchor_boxes, Darknet-19's, i.e. darknet19_448.conv.23, from new_network on). The
file is given with --config.init.darknet_weights=PATH (experiments/ablate.py passes its --yolov1_classifier /
--darknet19_classifier flags there). Without a file the rung still builds and trains, from random
initialization, and experiments/ablate.py marks its table row so.

Reduced-resolution ladder: ``<rung>@<px>`` (e.g. ``passthrough@128``) scales every input size of the ladder
to a detector base of ``px`` instead of 416 (multiple of 32): YOLOv1 rungs at 448/416·px rounded to a multiple
of 64, multi-scale sizes 320..608 scaled and rounded to multiples of 32, the hi-res detector at 544/416·px
rounded to 32, and the anchors (grid units of the 13x13 grid) scaled by px/416 so they keep their size in the
image. For quick sweeps on small hardware; the rungs still differ by exactly the same fields.
"""

import ml_collections

from yolojax.config.base import MULTISCALE_SIZES_PX, VOC_ANCHORS, base_config, use_yolov1

RUNGS = ("baseline", "batch_norm", "hires_classifier", "anchor_boxes", "new_network", "dimension_priors",
         "passthrough", "multi_scale", "hires_detector")
# VOC2007 test mAP of each rung, Table 2 of the YOLO9000 paper (arXiv 1612.08242).
PAPER_MAP_07 = dict(zip(RUNGS, (63.4, 65.8, 69.5, 69.2, 69.6, 74.4, 75.4, 76.8, 78.6)))
# What each rung changes (the table's "what changed" column; the paper's row names in quotes).
CHANGES = {
    "baseline": "YOLOv1 (448 px, detection loss)",
    "batch_norm": "'batch norm' (BN on every conv, dropout removed)",
    "hires_classifier": "'hi-res classifier' (trunk from a 448-px ImageNet classifier)",
    "anchor_boxes": "'convolutional' + 'anchor boxes' (YOLOv1 trunk, conv anchor head, 416 px, 9 hand-picked "
                    "anchors, offset form, region loss)",
    "new_network": "'new network' (Darknet-19 trunk)",
    "dimension_priors": "'dimension priors' + 'location prediction' (5 k-means anchors, sigmoid form)",
    "passthrough": "'passthrough' (26x26 features, 1x1x64 conv + reorg)",
    "multi_scale": "'multi-scale' (train at 320..608)",
    "hires_detector": "'hi-res detector' (evaluate at 544)",
}
DETECTOR_PX = 416  # the ladder's detector input size (13x13 grid); YOLOv1 rungs use 448


def hand_picked_anchors(grid_px: int = 32) -> tuple[tuple[float, float], ...]:
    """Faster R-CNN style anchors: areas 128^2, 256^2, 512^2 px at aspect ratios 1:2, 1:1, 2:1, in grid units
    of a 32-px cell (the 13x13 grid at 416), as (w, h)."""
    out = []
    for side in (128.0, 256.0, 512.0):
        for ratio in (0.5, 1.0, 2.0):  # h / w
            w = side / ratio ** 0.5
            out.append((round(w / grid_px, 5), round(w * ratio / grid_px, 5)))
    return tuple(out)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def parse_arg(arg: str) -> tuple[str, int]:
    """'rung' or 'rung@px' -> (rung, detector base px); ValueError naming the file and the bad part."""
    rung, _, px = arg.partition("@")
    if rung not in RUNGS:
        raise ValueError(f"configs/yolov2_ablation.py: unknown rung {rung!r}; expected one of {RUNGS}")
    if not px:
        return rung, DETECTOR_PX
    if not px.isdigit() or int(px) < 32 or int(px) % 32:
        raise ValueError(f"configs/yolov2_ablation.py: {arg!r}: the size after '@' must be a multiple of 32 "
                         f"(>= 32), got {px!r}")
    return rung, int(px)


def get_config(arg: str = "hires_detector") -> ml_collections.ConfigDict:
    """The config of rung ``arg`` ('rung' or 'rung@px'), every switch of the rungs before it included."""
    rung, px = parse_arg(arg)
    level = RUNGS.index(rung)
    scale = px / DETECTOR_PX

    def at(name: str) -> bool:
        return level >= RUNGS.index(name)

    c = base_config()
    c.data.multiscale_sizes = ()
    c.data.image_size = c.data.eval_image_size = px
    c.model.v2.passthrough = "none"
    c.model.v2.location = "direct"  # read by the loss and the decoder (yolojax.ops.targets.LOCATIONS)
    c.init.hires_classifier = False
    if not at("anchor_boxes"):
        use_yolov1(c, "yolov1")
        c.data.image_size = c.data.eval_image_size = _round_to(448 * scale, 64)  # YOLOv1 reduces by 64
    if at("batch_norm"):
        c.model.v1.batch_norm = True
        c.model.v1.dropout_rate = 0.0
    if at("hires_classifier"):
        c.init.hires_classifier = True
    if at("anchor_boxes"):
        c.model.name = "yolov1_conv_anchors"
        c.model.anchors = hand_picked_anchors()
        c.model.v2.location = "offset"
    if at("new_network"):
        c.model.name = "yolov2"
    if at("dimension_priors"):
        c.model.anchors = VOC_ANCHORS
        c.model.v2.location = "direct"
    if at("passthrough"):
        c.model.v2.passthrough = "conv64_reorg"
    if at("multi_scale"):
        c.data.multiscale_sizes = tuple(sorted({_round_to(s * scale, 32) for s in MULTISCALE_SIZES_PX}))
    if at("hires_detector"):
        c.data.eval_image_size = _round_to(544 * scale, 32)
    c.model.anchors = tuple((round(w * scale, 5), round(h * scale, 5)) for w, h in c.model.anchors)
    c.model.v2.num_anchors = len(c.model.anchors)
    c.lock()
    return c
