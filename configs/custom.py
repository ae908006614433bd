"""Train on your own dataset from scratch: a few hundred photos, a CPU and a time budget (docs/own_data.md).

A small YOLOv2-family model (Tiny YOLOv2 at half width) on VOC XML, YOLO txt or COCO JSON files
(yolojax.data.formats; docs/data_formats.md), with a recipe measured for training from random initialization:

  python experiments/check_data.py --config configs/custom.py
  python experiments/train.py --config configs/custom.py --workdir runs/custom
  # your data: --config.data.format=voc --config.data.root=/data/mine --config.model.num_classes=3 ...

What the defaults do, each one a config field (docs/own_data.md has the ablation table, on the aquarium photos):
  * anchors: "auto": k-means on the training boxes at the training input size when training starts (the log gives
    the mean best IoU; the workdir's config.json then holds them, so evaluate / detect / export use the same);
  * time_budget_minutes: the learning-rate schedule's length is set from the step time measured in the first epoch,
    so that training and its final evaluation end within the budget (num_epochs is then not used);
  * Adam, linear warm-up, cosine decay to 0 at the schedule's end; an EMA of the weights is evaluated;
  * darknet's crop jitter, flips and HSV jitter, plus mosaics of four images (beyond the papers);
  * NMS IoU and input sizes chosen for many, touching and small objects.

Edit the constants below (or override on the command line, e.g. ``--config.data.root=...``):
  * FORMAT / ROOT / TRAIN_SPLIT / EVAL_SPLIT: see docs/data_formats.md for the layouts each format reads.
  * NUM_CLASSES must equal the dataset's number of classes (training stops with a one-line message if not).
  * CLASS_NAMES / NAMES_FILE: () / "" = the dataset's own list or names discovered from the annotations.
  * TIME_BUDGET_MINUTES: 0 = train NUM_EPOCHS instead (a fixed schedule, the same on every machine).
  * ANCHORS: "auto", or (w, h) pairs in grid cells of 32 px at IMAGE_SIZE_PX (experiments/compute_anchors.py).
  * INIT_DARKNET_WEIGHTS: optional darknet weights for the backbone (e.g. yolov2-tiny-voc.weights).
"""

from yolojax.config.base import base_config

FORMAT = "yolo"                       # "voc" | "yolo" | "coco"
ROOT = "data/shapes_yolo/data.yaml"   # folder, ultralytics data.yaml or darknet .data
TRAIN_SPLIT, EVAL_SPLIT = "train", "val"
CLASS_NAMES = ()                      # e.g. ("cat", "dog"); () = from the dataset
NAMES_FILE = ""                       # or a darknet .names file
NUM_CLASSES = 5
IMAGE_SIZE_PX = 320                   # training and evaluation input (a multiple of 32)
WIDTH = 0.5                           # channel multiplier of Tiny YOLOv2
ANCHORS = "auto"                      # k-means at the start of training, or ((w, h), ...) in cells of 32 px
INIT_DARKNET_WEIGHTS = ""
# Minutes for training and its evaluation (the whole train.py run but Python's start); 0 = NUM_EPOCHS. 17 keeps
# the README's own-data commands (check, train, evaluate, detect) within 20 minutes on a 2-core CPU.
TIME_BUDGET_MINUTES = 17.0
NUM_EPOCHS = 30.0                     # the schedule's length when TIME_BUDGET_MINUTES is 0
BATCH_SIZE = 8                        # twice the updates of 16 for the same images: 0.109 vs 0.067 (docs/own_data.md)


def get_config():
    c = base_config()
    c.batch_size = BATCH_SIZE
    c.num_epochs = NUM_EPOCHS
    c.time_budget_minutes = TIME_BUDGET_MINUTES
    c.log_every_steps = 50

    c.model.name = "tiny_yolov2"
    c.model.width = WIDTH
    c.model.num_classes = NUM_CLASSES
    # Unit: (w, h) in grid cells of 32 px at the training input size (data.image_size); "auto" = k-means.
    with c.ignore_type():
        c.model.anchors = ANCHORS
    c.init.darknet_weights = INIT_DARKNET_WEIGHTS

    c.data.source = "files"
    c.data.format = FORMAT
    c.data.root = ROOT
    c.data.class_names = CLASS_NAMES
    c.data.names_file = NAMES_FILE
    c.data.train_split = TRAIN_SPLIT
    c.data.eval_split = EVAL_SPLIT
    c.data.image_size = IMAGE_SIZE_PX
    c.data.eval_image_size = IMAGE_SIZE_PX
    c.data.multiscale_sizes = ()
    c.data.drop_difficult = True
    c.data.max_boxes = 128  # a mosaic of four crowded photos holds more than 64 objects
    # Augmentation: darknet's v2 jitter / flip / HSV, plus mosaics of four photos for half of the images.
    c.data.augment.mosaic = 0.5
    c.data.augment.mosaic_scale = (0.5, 1.0)

    # Adam from scratch (darknet's SGD recipe needs far more steps): linear warm-up, then cosine to 0 at the end
    # of the schedule (the time budget's, or NUM_EPOCHS).
    c.optim.name = "adam"
    c.optim.base_lr = 2e-3
    c.optim.weight_decay = 0.0
    c.schedule.name = "cosine"
    c.schedule.warmup = "linear"
    c.schedule.warmup_epochs = 2.0
    c.schedule.warmup_init_lr = 0.0
    c.schedule.darknet_numbering = False
    c.optim.ema.decay = 0.995  # evaluation, detect and export use the EMA weights
    c.optim.ema.warmup_steps = 100
    c.loss.prior_warmup_images = 3200
    # Confidence by binary cross-entropy on the logit: from scratch, darknet's squared error on s(to) stalls once
    # the empty cells have pushed every confidence to 0 (yolojax.ops.losses.yolov2_loss; docs/losses.md).
    c.loss.objectness = "bce"
    c.eval.every_steps = 0  # once, at the end
    c.eval.batch_size = 32
    c.eval.nms_iou_threshold = 0.45
    c.checkpoint.every_steps = 500
    c.lock()
    return c
