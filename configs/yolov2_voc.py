"""YOLOv2-416 on VOC 07+12 -> 2007 test, the YOLO9000 paper recipe (yolov2-voc.cfg head).

160 epochs at batch 64, SGD momentum .9, decay 5e-4, lr 1e-3 /10 at epochs 60 and 90 after darknet's
burn_in of 1000 updates; multi-scale {320..608} every 10 batches; 5 k-means VOC anchors; darknet region loss.

  python experiments/train.py --config configs/yolov2_voc.py --workdir runs/yolov2
  python experiments/train.py --config configs/yolov2_voc.py:paper_era ...   # yolo-voc.2.0.cfg head
"""

from yolojax.config.base import base_config

VARIANTS = ("", "paper_era")


def get_config(variant: str = ""):
    """variant '' = current yolov2-voc.cfg (1x1x64 conv + reorg passthrough, 50.7M params);
    'paper_era' = yolo-voc.2.0.cfg (reorg of the 512-channel map, 67.2M params)."""
    if variant not in VARIANTS:
        raise ValueError(f"configs/yolov2_voc.py: unknown variant {variant!r}; expected one of {VARIANTS}")
    c = base_config()
    if variant == "paper_era":
        c.model.v2.passthrough = "reorg"
    c.lock()
    return c
