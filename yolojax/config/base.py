"""Shared defaults for every experiment config: the YOLOv2-on-VOC paper recipe, unlocked.

Experiment configs (yolov2_voc.py, yolov1_voc.py, ...) start from :func:`base_config`, change what differs,
and lock the result, so `--config.optim.base_lr=5e-4` works and a misspelled field fails naming it.
Units are in the names (`*_epochs`, `*_steps`, `*_px`). No tunable constant lives in step code.
"""

from __future__ import annotations

import ml_collections

from yolojax.config import data as defaults  # imports only ml_collections

# k-means VOC anchors of yolov2-voc.cfg, (w, h) in grid cells of 32 px (the 13x13 grid at 416 px).
VOC_ANCHORS = ((1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892), (9.47112, 4.84053),
               (11.2364, 10.0071))
# The paper's multi-scale sizes {320, 352, ..., 608}.
MULTISCALE_SIZES_PX = defaults.darknet_multiscale_sizes()


def v2_loss() -> ml_collections.ConfigDict:
    """Darknet region layer options (yolov2-voc.cfg), passed to yolojax.ops.losses.yolov2_loss as keywords."""
    return ml_collections.ConfigDict(dict(
        coord_scale=1.0, object_scale=5.0, noobject_scale=1.0, class_scale=1.0, ignore_thresh=0.6,
        rescore=True, prior_scale=0.01, prior_warmup_images=12800, variant="darknet",
        objectness="mse"))  # "bce": beyond darknet (configs/custom.py; yolojax.ops.losses.yolov2_loss)


def v1_loss() -> ml_collections.ConfigDict:
    """Darknet detection layer options (rescore=1 sqrt=1), passed to yolojax.ops.losses.yolov1_loss."""
    return ml_collections.ConfigDict(dict(
        coord_scale=5.0, object_scale=1.0, noobject_scale=0.5, class_scale=1.0, rescore=True, sqrt=True))


def base_config() -> ml_collections.ConfigDict:
    """YOLOv2-416 on VOC 07+12 with the paper's recipe (unlocked; callers lock)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.batch_size = 64  # global, split over all devices and hosts
    c.num_epochs = 160.0
    c.total_steps = -1  # > 0 cuts the run short without changing the schedule
    # > 0: the schedule's length comes from the step time measured in the first epoch, so that training and its
    # evaluations end within this many minutes (num_epochs is then not used; yolojax.training.planning).
    c.time_budget_minutes = 0.0
    c.log_every_steps = 50
    c.progress_bar = True
    # JAX's persistent compilation cache (train.enable_compilation_cache): compiled steps are kept on disk, so a
    # rerun or resume does not compile its multi-scale sizes again. "" = off; a JAX_COMPILATION_CACHE_DIR wins.
    c.compilation_cache_dir = "~/.cache/yolojax/jax_compilation_cache"

    # --- model (fields read by yolojax.models.build_model) ---
    c.model = ml_collections.ConfigDict()
    c.model.name = "yolov2"
    c.model.num_classes = 20
    c.model.width = 1.0
    c.model.dtype = "float32"  # 'bfloat16' = mixed precision: bf16 compute, f32 params and loss
    # Unit: (w, h) in grid cells of 32 px at the training input size data.image_size (13 cells at 416); the loss
    # applies them as-is on the grid the input gives, as darknet does. experiments/compute_anchors.py --config
    # CONFIG computes them in this unit. "auto" (configs/custom.py): k-means on the training boxes when training
    # starts, saved in the workdir's config.json (yolojax.training.planning).
    c.model.anchors = VOC_ANCHORS
    c.model.v1 = ml_collections.ConfigDict(dict(grid_size=7, boxes_per_cell=2, batch_norm=False,
                                                dropout_rate=0.5))
    c.model.v2 = ml_collections.ConfigDict(dict(num_anchors=5, passthrough="conv64_reorg", reorg_impl="darknet",
                                                batch_norm=True,
                                                # 'direct': darknet's sigmoid location prediction; 'offset': the
                                                # region-proposal offsets of the paper's "anchor boxes" rung
                                                location="direct"))

    # --- initialization ---
    c.init = ml_collections.ConfigDict()
    c.init.darknet_weights = ""  # e.g. darknet19_448.conv.23: backbone from an ImageNet classifier
    c.init.darknet_cfg = ""  # "" = the official cfg shipped with yolojax that matches the model's trunk
    c.init.checkpoint = ""  # fine-tune: a yolojax workdir or checkpoint dir; variables whose path+shape agree

    # --- data (fields documented in yolojax.config.data.default_data_config) ---
    c.data = defaults.default_data_config()  # VOC 07+12 -> 2007 test through TFDS, v2 augmentation, 416 px
    c.data.multiscale_sizes = MULTISCALE_SIZES_PX  # () turns multi-scale off

    # --- loss ---
    c.loss = v2_loss()

    # --- optimizer (darknet: SGD, momentum .9, decay 5e-4 on kernels only) ---
    c.optim = ml_collections.ConfigDict(dict(name="sgd", base_lr=1e-3, momentum=0.9, nesterov=False,
                                             weight_decay=5e-4, b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=0.0,
                                             # regex over "/"-joined parameter paths (e.g. "params/backbone/.*"):
                                             # no update, no weight decay; "" = train everything
                                             freeze="", freeze_batch_stats=True))
    # EMA of the variables (yolojax.training.ema; ultralytics' rule):
    # d_t = decay * (1 - exp(-t / warmup_steps)) at update
    # t, ema = d_t * ema + (1 - d_t) * variables, params and batch-norm statistics. decay 0 = off; e.g. 0.9999.
    # Evaluation, detect.py, evaluate.py and yolojax.load use the EMA weights when a checkpoint holds them.
    c.optim.ema = ml_collections.ConfigDict(dict(decay=0.0, warmup_steps=2000))

    # --- schedule (paper: /10 at epochs 60 and 90; darknet burn_in=1000 in front) ---
    c.schedule = ml_collections.ConfigDict(dict(
        name="steps", boundaries_epochs=(60.0, 90.0), scales=(0.1, 0.1), warmup="burn_in", burn_in_steps=1000,
        burn_in_power=4.0, warmup_epochs=0.0, warmup_init_lr=0.0, darknet_numbering=True))

    # --- evaluation (published VOC thresholds for v2: score .005, NMS .45) ---
    c.eval = ml_collections.ConfigDict(dict(
        every_steps=5000, batch_size=64,  # batch_size: global, images per evaluation step
        score_threshold=0.005, nms_iou_threshold=0.45, max_detections=200,
        match_iou_threshold=0.5, metric="map_07",
        # every evaluation also logs to TensorBoard a precision-recall plot, the confusion matrix and 12 fixed eval
        # images with their boxes, drawn on the host from the evaluation's detections (no extra forward pass)
        tensorboard_images=True))

    # --- checkpoints ---
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=1000, keep=3, keep_best=True, async_save=True))

    # --- profiling: a jax.profiler trace of steps [start_step, start_step + num_steps) into <workdir>/profile ---
    c.profile = ml_collections.ConfigDict(dict(start_step=10, num_steps=0))  # num_steps 0 = off
    return c


def use_yolov1(c: ml_collections.ConfigDict, name: str = "yolov1") -> ml_collections.ConfigDict:
    """Switches a base config to the YOLOv1 paper recipe (448 px, detection loss, v1 thresholds, schedule)."""
    c.model.name = name
    c.loss = v1_loss()
    c.num_epochs = 135.0
    c.data.image_size = 448
    c.data.eval_image_size = 448
    c.data.multiscale_sizes = ()
    c.data.augment = defaults.augment_preset("v1")  # scale/translate 20%, exposure/saturation 1.5
    c.optim.base_lr = 1e-2
    c.schedule.boundaries_epochs = (75.0, 105.0)
    c.schedule.warmup = "linear"
    c.schedule.warmup_epochs = 2.0
    c.schedule.warmup_init_lr = 1e-3
    c.schedule.darknet_numbering = False
    c.eval.score_threshold = 0.001
    c.eval.nms_iou_threshold = 0.5
    return c
