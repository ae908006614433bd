"""YOLOv1 (paper network, 24 conv + 2 FC, 448 px) on VOC 07+12 -> 2007 test, the paper recipe.

135 epochs at batch 64, SGD momentum .9, decay 5e-4, dropout .5; lr warm-up 1e-3 -> 1e-2 over 2 epochs,
1e-2 until epoch 75, 1e-3 until 105, 1e-4 until 135; scale/translate 20% and exposure/saturation 1.5.
"""

from yolojax.config.base import base_config, use_yolov1


def get_config():
    c = use_yolov1(base_config(), "yolov1")
    c.lock()
    return c
