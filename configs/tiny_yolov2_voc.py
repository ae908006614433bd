"""Tiny YOLOv2 (yolov2-tiny-voc.cfg) on VOC 07+12 -> 2007 test with the YOLOv2 paper recipe.

Darknet's own tiny cfg warms up with steps=-1,100 scales=.1,10 (1e-4 for 100 updates); we use the same
burn_in as YOLOv2 so the two models differ only in the network. Multi-scale stays on (the cfg's random=1).
"""

from yolojax.config.base import base_config


def get_config():
    c = base_config()
    c.model.name = "tiny_yolov2"
    c.lock()
    return c
