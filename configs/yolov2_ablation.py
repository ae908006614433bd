"""The YOLO9000 paper's Table 2 ablation ladder ("the path from YOLO to YOLOv2"), one rung per config argument.

  python experiments/train.py --config configs/yolov2_ablation.py:passthrough --workdir runs/abl_passthrough
  python experiments/ablate.py --root runs/ablation         # every rung, one after the other, and the table

The rungs, what each changes and the paper's mAP are defined in ``yolojax/config/ablation.py`` (shared with
experiments/ablate.py, which tabulates them).
"""

from yolojax.config.ablation import get_config  # noqa: F401  (the config-file entry point)
